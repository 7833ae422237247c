"""kubelet logs: PLEG relist ticks and the kubelet lines that explain a PLEG stall.

Accepted variants (each has a fixture under tests/fixtures/logs/):
- klog text, all severities (I/W/E/F), structured `"msg" key=value` (InfoS/ErrorS) and
  legacy printf forms; multi-line string values written `key=<`, TAB-indented lines, ` >`
  (klog >= 2.40; also with journald framing, where tabs may have been expanded to spaces);
- kubelet JSON logging (`--logging-format=json`: `{"ts":<ms>,"caller":...,"msg":...}`);
- `kubelet.INFO`-style klog files with the `Log file created at: YYYY/MM/DD ...` header
  (which also gives the year);
- any of the above inside journald framing (`journalctl -o short|short-precise|short-iso|
  short-iso-precise|cat`, syslog files, and bare `kubelet_init[1680]: ...` excerpts); any
  identifier containing "kubelet" is accepted, with any spacing.

What is extracted: every `GenericPLEG: Relisting` tick (RelistSeries), events
(EventKind PLEG_UNHEALTHY with the last-seen duration, SKIPPING_POD_SYNC, RELIST_ERROR,
CRI_CALL_FAILED with method and gRPC code, NODE_NOT_READY/NODE_READY, EVENTED_PLEG_FALLBACK,
CONTAINER_FINISHED, KUBELET_DU_KILLED for slow or killed `du`/`find` fs-stats runs) and
warning+ lines as LogRecords (at most MAX_RECORDS_PER_SOURCE per input).

Speed: only lines that contain one of NEEDLES are decoded and parsed (see
plegdoctor.parsers._logcommon.LineScanner), plus the lines after an open `key=<`; relist
ticks come in batches and cost a fixed-place slice of the klog stamp and a cached
minute epoch (`KubeletHandler.ticks`). `records` counts the lines read; `unparsed` counts
candidate lines that were not kubelet lines, plus lines of the first 64 KiB that were not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plegdoctor.model import Event, EventKind, LogRecord, Ref, quote
from plegdoctor.parsers._logcommon import (
    GO_QUOTED,
    KLOG_RE,
    KLOG_SEVERITY,
    WARNING_PLUS,
    Needle,
    StampResolver,
    epoch_to_dt,
    go_unquote,
    head_frames,
    parse_go_duration,
    process_of_ident,
)

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "kubelet-log"

MAX_RECORDS_PER_SOURCE = 5000
KEEP_TEXT_INTERVAL = 1.5  # keep the text of ticks that border an interval at least this long

# A line hit by several needles comes with the smallest tag: an event or a `key=<` opener
# must never be taken for a mere warning (warnings stop being read at the records cap).
TAG_RELIST = 0
TAG_EVENT = 1
TAG_MULTI = 2
TAG_SEVERITY = 3
TAG_CONT = 4
TAG_JSON = 11

# Needles never contain a newline: a match is attributed to the line it ends in. A needle
# only makes a line a candidate (the handlers check the full text), so the event needles
# are the parts of the texts that are cheapest to look for: Hyperscan's literal matcher
# gets false hits from common endings ("...node" meets every "node-7" host name, "...pods"
# every pod line); these choices cut the scan of a kubelet journal by a fifth.
# ("pleg has yet to be successful" never comes without "PLEG is not healthy".)
NEEDLES: list[Needle] = [
    Needle(b"GenericPLEG: Relisting", TAG_RELIST),
    Needle(b"PLEG is not healthy", TAG_EVENT),
    Needle(b"GenericPLEG: Unable to retrieve pods", TAG_EVENT),
    Needle(b"Fall back to Generic PLEG", TAG_EVENT),
    Needle(b"(PLEG): container finished", TAG_EVENT),
    Needle(b"pod synchroniz", TAG_EVENT),  # "Skipping pod synchronization"
    Needle(b"service failed", TAG_EVENT),  # "<RPC> from runtime|image service failed"
    Needle(b"became not ready", TAG_EVENT),  # "Node became not ready"
    Needle(b"event messag", TAG_EVENT),  # "Recording event message for node"
    Needle(b"following dirs", TAG_EVENT),  # cadvisor fsHandler: "... on following dirs took"
    Needle(b"du command failed", TAG_EVENT),
    Needle(b"illing cmd", TAG_EVENT),  # "killing cmd"
    # warning+ klog lines (month 01-12 starts with 0 or 1), framed or not; JSON errors
    *(Needle(b"]: " + s + m, TAG_SEVERITY) for s in (b"E", b"W", b"F") for m in (b"0", b"1")),
    *(Needle(s + m, TAG_SEVERITY, line_start=True) for s in (b"E", b"W", b"F") for m in (b"0", b"1")),
    Needle(b'"level":"error', TAG_SEVERITY),
    Needle(b'"level":"warn', TAG_SEVERITY),
    # multi-line values: the `key=<` opener; the TAB (or 8 spaces) lines and the ` >` closer
    # that follow it are read because the parser asks the scanner for the next lines
    Needle(b"=<", TAG_MULTI),
    # kubelet JSON logging lines
    Needle(b'{"', TAG_JSON, line_start=True),
]

_TICK_STAMP = re.compile(rb"[IWEF](\d{4} \d\d):(\d\d):(\d\d\.\d{6}) ")
# Every pattern here is linear on a line of any length (lines may be 64 MiB): no pattern is
# searched from every position of a long run it then fails on, and runs are possessive.
_LAST_SEEN = re.compile(r"pleg was last seen active (\S++) ago")
_CRI_FAILED = re.compile(r" from (runtime|image) service failed")  # the method: _cri_method
_WORD = re.compile(r"\w++")
_GRPC_CODE = re.compile(r"code = (\w++)")
# key=value: a key starts where a run of key characters starts (the lookbehind; a search
# from every letter of a long run would be quadratic), at its first letter
_KV = re.compile(
    r"(?<![\w.\-])(?:(?![A-Za-z_])[\w.\-])*+([A-Za-z_][\w.\-]*+)=("
    + GO_QUOTED
    + r"|\{[^{}]*+(?:\{[^{}]*+\}[^{}]*+)*+\}|[^ ]*+)"
)
_FIRST_QUOTED = re.compile(GO_QUOTED)
_EXIT_CODE = re.compile(r"-?[0-9]{1,10}")  # an int32 exit code; 5000 digits stay text
# the path list's closing `]` is found with str.find (see _du): a pattern would scan to the
# end of the line from every unclosed `[`
_DU_TOOK = re.compile(r"(?:du and find|`du`|disk usage and inodes count) on following dirs took (\S+?): \[")
_NODE_EVENT = re.compile(r"(NodeNotReady|NodeReady)")


# kubelet messages pasted without their klog header (issue threads quote the message alone):
# read with no time, so they count as symptoms but place nothing on the time axis
BARE_MESSAGES = (
    "skipping pod synchronization - ",
    "Skipping pod synchronization",
    "PLEG is not healthy: ",
    "Node became not ready: ",
    "GenericPLEG: ",
)


def sniff(lines: list[str]) -> float:
    """kubelet klog lines (framed by journald with a kubelet identifier, or bare), or
    kubelet JSON logging."""
    seen = klog = 0
    for line, frame in zip(lines[:400], head_frames(lines), strict=True):
        if not line.strip():
            continue
        seen += 1
        text = line
        if frame is not None:
            if process_of_ident(frame.ident) != "kubelet":
                continue
            text = line[frame.end :]
        is_json = text.startswith("{") and '"caller"' in text and '"ts"' in text
        if KLOG_RE.match(text) or text.startswith(("Log file created at:", *BARE_MESSAGES)) or is_json:
            klog += 1
    if not seen:
        return 0.0
    share = klog / seen
    return 0.8 * share if share >= 0.2 else 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    from plegdoctor.parsers.journald import run_log_parser

    run_log_parser(source, ctx, default_process="kubelet", what="kubelet log")


def _fields(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if "=" not in rest:  # no key=value at all: skip the scan (it tries every position)
        return out
    for m in _KV.finditer(rest):
        v = m.group(2)
        if v.startswith('"') and len(v) >= 2:
            v = go_unquote(v[1:-1])
        out[m.group(1)] = v
    return out


def split_body(body: str) -> tuple[str, dict[str, str], str]:
    """klog body -> (message, fields, form) where form is structured|legacy."""
    if body.startswith('"'):
        m = _FIRST_QUOTED.match(body)
        if m is not None:
            return go_unquote(m.group(0)[1:-1]), _fields(body[m.end() :]), "structured"
    return body, {}, "legacy"


class KubeletHandler:
    """Turns kubelet lines (without journald framing) into evidence."""

    def __init__(self, ctx: ParseContext, path: str, resolver: StampResolver) -> None:
        self.ctx = ctx
        self.path = path
        self.resolver = resolver
        self.evidence = ctx.evidence
        self.series = ctx.evidence.relists
        self.src_id = self.series.source_id(path)
        self.last_tick_ts = -1.0
        self.last_tick_text: bytes | None = None
        self._hour_cache: dict[bytes, float] = {}
        self._minute_cache: dict[bytes, float] = {}  # b"I0615 00:00" -> epoch of that minute
        self._ts_append = self.series.ts.append
        self._src_append = self.series.src.append
        self._line_append = self.series.line.append
        self.records = 0
        self.unparsed = 0
        self.kept_records = 0
        # an open `key=<` value: (line, opener text, journald prefix, message so far up to `key=`)
        self.multi: tuple[int, str, str, str] | None = None
        self.multi_lines: list[str] = []

    # ---- relist ticks (hot path) ----------------------------------------------------

    def tick_fast(self, lineno: int, raw: bytes) -> bool:
        """A `GenericPLEG: Relisting` line; False if the fast path cannot read it.

        The klog stamp is matched on bytes right after the journald frame (or at the line
        start), the epoch of its local hour is cached by the raw `MMDD hh` bytes, and the
        tick goes straight into the RelistSeries arrays. It also fills the minute cache
        that `ticks` reads."""
        i = raw.find(b"]: ")
        m = _TICK_STAMP.match(raw, i + 3) if i != -1 else None
        if m is None:
            m = _TICK_STAMP.match(raw)
            if m is None:
                return False
        hour_key, minute, sec = m.groups()
        base = self._hour_cache.get(hour_key)
        if base is None:
            base = self._hour_base(hour_key)
            if base is None:
                return False
        minute_base = base + int(minute) * 60
        self._minute_cache[raw[m.start() : m.start() + 11]] = minute_base
        ts = minute_base + float(sec)
        last = self.last_tick_ts
        if last >= 0 and (ts - last >= KEEP_TEXT_INTERVAL or last - ts >= KEEP_TEXT_INTERVAL):
            self._add_tick(ts, lineno, raw)
            return True
        self._ts_append(ts)
        self._src_append(self.src_id)
        self._line_append(lineno)
        self.last_tick_ts = ts
        self.last_tick_text = raw
        return True

    def ticks(self, buf: bytes, flat: list[int], slow: Callable[[int, bytes], None]) -> None:
        """A batch of relist lines from the scanner: `flat` = [lineno, start, end, ...],
        each line `buf[start:end]` (see LineScanner.scan). This runs once per second of
        log, so it is written for speed: the 22-byte klog stamp `Lmmdd hh:mm:ss.uuuuuu `
        is sliced at a fixed place (after the journald frame, or at the line start), its
        `Lmmdd hh:mm` part looked up in a cache of minute epochs (filled by `tick_fast`
        from validated stamps) and the seconds added. A line the cache does not know, or
        that is not shaped like that, goes to `slow(lineno, line)`, in order."""
        cache = self._minute_cache
        find = buf.find
        ts_append = self._ts_append
        src_append = self._src_append
        line_append = self._line_append
        src_id = self.src_id
        keep = KEEP_TEXT_INTERVAL
        last = self.last_tick_ts
        prev_s = prev_e = -1  # the previous tick, while it is in buf and its text not taken
        it = iter(flat)
        for lineno, s, e in zip(it, it, it, strict=True):
            p = find(b"]: ", s, e)
            p = s if p == -1 else p + 3
            base = cache.get(bytes(buf[p : p + 11]))  # b"I0615 00:00"; bytes: buf may be a bytearray
            try:
                # "." before the micros and " " after them, inside the line
                if base is None or p + 22 > e or buf[p + 14] != 46 or buf[p + 21] != 32:
                    raise ValueError
                ts = base + float(buf[p + 12 : p + 21])
            except ValueError:
                self.last_tick_ts = last
                if prev_s >= 0:
                    self.last_tick_text = _line(buf, prev_s, prev_e)
                slow(lineno, _line(buf, s, e))
                last = self.last_tick_ts
                prev_s = -1
                continue
            if last >= 0 and not -keep < ts - last < keep:
                self.last_tick_ts = last
                if prev_s >= 0:
                    self.last_tick_text = _line(buf, prev_s, prev_e)
                self._add_tick(ts, lineno, _line(buf, s, e))
                last = ts
                prev_s = -1
                continue
            ts_append(ts)
            src_append(src_id)
            line_append(lineno)
            last = ts
            prev_s = s
            prev_e = e
        self.last_tick_ts = last
        if prev_s >= 0:
            self.last_tick_text = _line(buf, prev_s, prev_e)

    def _hour_base(self, hour_key: bytes) -> float | None:
        shift = self.resolver.shift
        base = self.resolver.epoch(int(hour_key[0:2]), int(hour_key[2:4]), int(hour_key[5:7]), 0, 0, 0)
        if self.resolver.shift != shift:
            self._hour_cache.clear()  # year rollover: cached hours belong to the old year
            self._minute_cache.clear()
        if base is not None:
            self._hour_cache[hour_key] = base
        return base

    def _add_tick(self, ts: float, lineno: int, raw: bytes | str) -> None:
        series = self.series
        prev = len(series) - 1
        if self.last_tick_ts >= 0 and abs(ts - self.last_tick_ts) >= KEEP_TEXT_INTERVAL:
            if prev >= 0 and prev not in series.texts and self.last_tick_text is not None:
                series.keep_text(prev, _text(self.last_tick_text))
            series.append(ts, self.src_id, lineno, _text(raw))
        else:
            series.append(ts, self.src_id, lineno)
        self.last_tick_ts = ts
        self.last_tick_text = raw if isinstance(raw, bytes) else raw.encode()

    def finish_tick_text(self) -> None:
        """Keep the text of the latest tick (it borders a long interval)."""
        last = len(self.series) - 1
        if last >= 0 and self.last_tick_text is not None and last not in self.series.texts:
            self.series.keep_text(last, _text(self.last_tick_text))

    def finish(self) -> None:
        """Keep the text of the last tick (it borders the open interval to the end of log)."""
        last = len(self.series) - 1
        if last >= 0 and self.last_tick_text is not None and last not in self.series.texts:
            self.series.keep_text(last, _text(self.last_tick_text))
        self.flush_multi()

    # ---- multi-line values ---------------------------------------------------------

    def continuation(self, msg: str) -> bool:
        """Feed a continuation line (message part); True if it belonged to an open value.

        klog writes `key=<`, then each line of the value after a TAB, then ` >` followed by
        the remaining key/value pairs of the entry (which may open another `key=<`). In
        `journalctl -o short*` output without --all the TAB shows as eight spaces."""
        if self.multi is None:
            return False
        line = msg.rstrip("\r")
        if line.startswith(" >"):
            rest = line[2:]
            lineno, text, prefix, so_far = self.multi
            so_far += _go_quote("\n".join(self.multi_lines)) + rest
            self.multi_lines = []
            if rest.endswith("=<"):
                self.multi = (lineno, text, prefix, so_far[:-1])
                return True
            self.multi = None
            self.handle_message(lineno, prefix, so_far, full_text=text)
            return True
        if line.startswith("\t"):
            line = line[1:]
        elif line.startswith("        "):
            line = line[8:]
        self.multi_lines.append(line)
        if len(self.multi_lines) > 10_000:
            self.flush_multi()
        return True

    def flush_multi(self) -> None:
        """Close an open multi-line value whose ` >` never came."""
        if self.multi is None:
            return
        lineno, text, prefix, so_far = self.multi
        self.multi = None
        so_far += _go_quote("\n".join(self.multi_lines))
        self.multi_lines = []
        self.handle_message(lineno, prefix, so_far, full_text=text)

    # ---- everything else -----------------------------------------------------------

    def handle_message(
        self, lineno: int, prefix: str, msg: str, frame_ts: datetime | None = None, full_text: str | None = None
    ) -> None:
        """One kubelet message (klog text or JSON), journald prefix already split off."""
        text = full_text if full_text is not None else prefix + msg
        if msg.startswith("{"):
            self._handle_json(lineno, text, msg)
            return
        m = KLOG_RE.match(msg)
        if m is None:
            if msg.startswith("Log file created at:") or msg.startswith("Running on machine:"):
                self._klog_file_header(msg)
                return
            if msg.startswith(BARE_MESSAGES):
                self.records += 1
                message, fields, form = split_body(msg)
                self._classify(lineno, text, None, KLOG_SEVERITY["E"], 0, message, fields, form, msg)
                return
            self.unparsed += 1
            return
        self.records += 1
        sev, mon, day, hour, minute, sec, micro, pid, _file, _line = m.groups()
        ts = self.resolver.dt(int(mon), int(day), int(hour), int(minute), int(sec), int(micro))
        body = msg[m.end() :]
        if body.endswith("=<") and self.multi is None and full_text is None:
            self.multi = (lineno, text, prefix, msg[:-1])
            self.multi_lines = []
            return
        message, fields, form = split_body(body)
        self._classify(lineno, text, ts, KLOG_SEVERITY[sev], int(pid), message, fields, form, body)

    def _klog_file_header(self, msg: str) -> None:
        if msg.startswith("Log file created at:"):
            stamp = msg[len("Log file created at:") :].strip()
            try:
                created = datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S")
            except ValueError:
                return
            if self.resolver.time.year is None and self.resolver.time.reference_year is None:
                self.resolver.time.reference_year = created.year
                self.resolver.time.note(f"year {created.year} for klog stamps, from the klog file header")

    def _handle_json(self, lineno: int, text: str, msg: str) -> None:
        try:
            obj = json.loads(msg)
        except (ValueError, RecursionError):
            self.unparsed += 1
            return
        if not isinstance(obj, dict) or "msg" not in obj:
            self.unparsed += 1
            return
        self.records += 1
        ts = None
        raw_ts = obj.get("ts")
        if isinstance(raw_ts, (int, float)):
            # kubelet JSON: float milliseconds since the epoch (older: seconds)
            secs = raw_ts / 1000.0 if raw_ts > 1e11 else float(raw_ts)
            ts = epoch_to_dt(secs)  # None when out of range (a hostile `ts`)
            if ts is not None:
                self.ctx.time.learn(ts)
        message = str(obj.get("msg", ""))
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items() if k not in ("msg", "ts")}
        severity = "error" if "err" in obj or obj.get("level") == "error" else "info"
        pid = obj.get("pid") if isinstance(obj.get("pid"), int) else None
        if message == "GenericPLEG: Relisting" and ts is not None:
            self._add_tick(ts.timestamp(), lineno, text)
            return
        self._classify(lineno, text, ts, severity, pid, message, fields, "json", msg)

    def _event(self, kind: EventKind, ts: datetime | None, lineno: int, text: str, **attrs: Any) -> None:
        self.evidence.events.append(Event(ts, kind, "kubelet", Ref(self.path, lineno, quote(text)), attrs))

    def _classify(
        self,
        lineno: int,
        text: str,
        ts: datetime | None,
        severity: str,
        pid: int | None,
        message: str,
        fields: dict[str, str],
        form: str,
        body: str,
    ) -> None:
        err = fields.get("err", "")
        if "GenericPLEG: Relisting" in message:
            if ts is not None:
                self._add_tick(ts.timestamp(), lineno, text)
            return
        if "PLEG" in body or "pleg" in body:
            self._pleg(lineno, text, ts, message, fields, form, body, err)
        if "kipping pod synchronization" in message:
            error = err or message.split("skipping pod synchronization - ", 1)[-1]
            self._event(EventKind.SKIPPING_POD_SYNC, ts, lineno, text, error=error)
        if "from runtime service failed" in message or "from image service failed" in message:
            self._cri_failed(lineno, text, ts, message, err)
        if message.startswith("Node became not ready"):
            self._event(
                EventKind.NODE_NOT_READY,
                ts,
                lineno,
                text,
                message=fields.get("condition", message),
                node=fields.get("node"),
            )
        elif "event message for node" in message:
            ev = fields.get("event") or ""
            if not ev:
                m = _NODE_EVENT.search(message)
                ev = m.group(1) if m else ""
            if ev == "NodeNotReady":
                self._event(EventKind.NODE_NOT_READY, ts, lineno, text, message=ev, node=fields.get("node"))
            elif ev == "NodeReady":
                self._event(EventKind.NODE_READY, ts, lineno, text, node=fields.get("node"))
        if "following dirs took" in message or "du command failed" in message or "killing cmd" in message:
            self._du(lineno, text, ts, message)
        if severity in WARNING_PLUS and self.kept_records < MAX_RECORDS_PER_SOURCE:
            self.kept_records += 1
            self.evidence.add_log_record(
                LogRecord(ts, "kubelet", pid, severity, message, fields, Ref(self.path, lineno, quote(text)))
            )

    def _pleg(
        self,
        lineno: int,
        text: str,
        ts: datetime | None,
        message: str,
        fields: dict[str, str],
        form: str,
        body: str,
        err: str,
    ) -> None:
        if message.startswith("GenericPLEG: Unable to retrieve pods"):
            error = err or message.partition("GenericPLEG: Unable to retrieve pods")[2].lstrip(": ")
            m = _GRPC_CODE.search(error)
            self._event(EventKind.RELIST_ERROR, ts, lineno, text, error=error, code=m.group(1) if m else None)
            return
        if "Fall back to Generic PLEG" in message:
            self._event(EventKind.EVENTED_PLEG_FALLBACK, ts, lineno, text, message=message)
            return
        if "container finished" in message and "PLEG" in message:
            exit_code = fields.get("exitCode")
            self._event(
                EventKind.CONTAINER_FINISHED,
                ts,
                lineno,
                text,
                container_id=fields.get("containerID"),
                pod_id=fields.get("podID"),
                exit_code=int(exit_code) if exit_code and _EXIT_CODE.fullmatch(exit_code) else exit_code,
            )
            return
        if "PLEG is not healthy" not in body:
            return
        m = _LAST_SEEN.search(body)
        last_seen = parse_go_duration(m.group(1)) if m else None
        if message.startswith("Node became not ready"):
            shape = "node-condition"
        elif form == "json":
            shape = "json"
        elif "kipping pod synchronization" in message and form == "legacy":
            shape = "legacy"
        elif "kipping pod synchronization" in message:
            shape = "structured"
        else:
            shape = "other"
        self._event(
            EventKind.PLEG_UNHEALTHY,
            ts,
            lineno,
            text,
            last_seen_seconds=last_seen,
            form=shape,
            error=err or message,
            yet_to_be_successful="pleg has yet to be successful" in body,
        )

    def _cri_failed(self, lineno: int, text: str, ts: datetime | None, message: str, err: str) -> None:
        m, method = _cri_method(message)
        error = err or message.split("service failed", 1)[-1].lstrip(": ")
        c = _GRPC_CODE.search(error) or _GRPC_CODE.search(message)
        self._event(
            EventKind.CRI_CALL_FAILED,
            ts,
            lineno,
            text,
            method=method,
            code=c.group(1) if c else None,
            service=m.group(1) if m else None,
            error=error,
        )

    def _du(self, lineno: int, text: str, ts: datetime | None, message: str) -> None:
        m = _DU_TOOK.search(message)
        close = message.find("]", m.end()) if m is not None else -1
        if m is not None and close >= 0:
            secs = parse_go_duration(m.group(1))
            self._event(
                EventKind.KUBELET_DU_KILLED,
                ts,
                lineno,
                text,
                seconds=secs,
                killed=False,
                paths=message[m.end() - 1 : close + 1],
                message=message,
            )
            return
        killed = "killed" in message or "timeout" in message
        if "killing cmd" in message and "du" not in message and "find" not in message:
            return
        self._event(EventKind.KUBELET_DU_KILLED, ts, lineno, text, seconds=None, killed=killed, message=message)


def _cri_method(message: str) -> tuple[re.Match[str] | None, str | None]:
    """(the ` from runtime|image service failed` match, the method: the first word of its
    line before it), as `(\\w+)\\b.*? from (runtime|image) service failed` searched, but
    in linear time (that pattern scans to the end of the line from every word character)."""
    for m in _CRI_FAILED.finditer(message):
        start = message.rfind("\n", 0, m.start()) + 1
        w = _WORD.search(message, start, m.start())
        if w is not None:
            return m, w.group(0)
    return None, None


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _line(buf: bytes, start: int, end: int) -> bytes:
    line = bytes(buf[start:end])
    return line[:-1] if line.endswith(b"\r") else line


def _text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return quote(raw)
    return quote(raw[:400].decode("utf-8", "replace"))
