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
`scanner.LineScanner`), plus the lines after an open `key=<`; relist ticks come in batches
and cost a fixed-place slice of the klog stamp and a cached minute epoch
(`kubelet_ticks.RelistTicks.ticks`); a journald-framed klog line is read by one match of
frame and header (`common.FRAMED_KLOG_RE`, `klog_line`); the split body and events of a
repeated klog body are worked out once (`kubelet_events`). `records` counts the lines read; `unparsed` counts
candidate lines that were not kubelet lines, plus lines of the first 64 KiB that were not.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plegdoctor.model import Event, LogRecord, Ref, quote
from plegdoctor.parsers.logs.common import (
    KLOG_RE,
    KLOG_SEVERITY,
    WARNING_PLUS,
    StampResolver,
    epoch_to_dt,
)
from plegdoctor.parsers.logs.kubelet_events import Plan, events_of, split_body
from plegdoctor.parsers.logs.kubelet_ticks import KEEP_TEXT_INTERVAL, RelistTicks, _text
from plegdoctor.parsers.logs.registry import LogFormat, head_lines
from plegdoctor.parsers.logs.scanner import TAG_JSON, Needle

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "kubelet-log"

MAX_RECORDS_PER_SOURCE = 5000
PLAN_CACHE = 4096  # klog bodies whose split and events are cached (cleared when full)
PLAN_BODY_MAX = 2048  # longer bodies are not cached

# A line hit by several needles comes with the smallest tag: an event or a `key=<` opener
# must never be taken for a mere warning (warnings stop being read at the records cap).
TAG_RELIST = 0
TAG_EVENT = 1
TAG_MULTI = 2
TAG_SEVERITY = 3
TAG_CONT = 4

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
    for text, frame, proc in head_lines(lines):
        seen += 1
        if frame is not None and proc != "kubelet":
            continue
        is_json = text.startswith("{") and '"caller"' in text and '"ts"' in text
        if KLOG_RE.match(text) or text.startswith(("Log file created at:", *BARE_MESSAGES)) or is_json:
            klog += 1
    if not seen:
        return 0.0
    share = klog / seen
    return 0.8 * share if share >= 0.2 else 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    from plegdoctor.parsers.logs.engine import run_log_parser

    run_log_parser(source, ctx, default_process="kubelet", what="kubelet log")


CONTINUATION = ("\t", "        ", " >")  # lines of an open `key=<` value (tabs may be 8 spaces)


def by_content(text: str) -> bool:
    """An unframed line of a journal (`-o cat`) is a kubelet line."""
    return KLOG_RE.match(text) is not None or text.startswith(CONTINUATION)


class KubeletHandler(RelistTicks):
    """Turns kubelet lines (without journald framing) into evidence."""

    KEEP_TEXT_INTERVAL = KEEP_TEXT_INTERVAL

    def __init__(self, ctx: ParseContext, path: str, resolver: StampResolver) -> None:
        self.ctx = ctx
        self.path = path
        self.resolver = resolver
        self.evidence = ctx.evidence
        self.init_ticks(ctx.evidence.relists, path)
        self.records = 0
        self.unparsed = 0
        self.kept_records = 0
        # an open `key=<` value: (line, opener text, journald prefix, message so far up to `key=`)
        self.multi: tuple[int, str, str, str] | None = None
        self.multi_lines: list[str] = []
        # klog body -> (message, fields, the events it yields), see handle_message
        self._plans: dict[str, tuple[str, dict[str, str], Plan]] = {}
        self._klog_minutes: dict[str, tuple[float, int]] = {}  # "mmdd hh:mm" -> (its epoch, month)
        self._klog_shift = 0  # resolver.shift the cached minutes belong to

    @property
    def cap(self) -> int:
        """Warning records kept per input: lines of the capped tag are read until then."""
        return MAX_RECORDS_PER_SOURCE

    def finish(self) -> None:
        """Keep the text of the last tick (it borders the open interval to the end of log)."""
        last = len(self.series) - 1
        if last >= 0 and self.last_tick_text is not None and last not in self.series.texts:
            self.series.keep_text(last, _text(self.last_tick_text))
        self.flush_multi()

    # ---- multi-line values ---------------------------------------------------------

    def feed(self, lineno: int, prefix: str, msg: str, pid: int | None) -> None:
        """One kubelet line (journald prefix split off as `prefix`), as the engine routes it."""
        if self.multi is not None:
            if msg.startswith(CONTINUATION):
                self.continuation(msg)
                return
            self.flush_multi()
        elif msg.startswith(CONTINUATION):
            return  # continuation of a multi-line value nobody asked for
        self.handle_message(lineno, prefix, msg)

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
        e = self._klog_epoch(msg, m)
        ts = None if e is None else datetime.fromtimestamp(e, UTC)
        sev = msg[0]
        pid = m.group(8)
        body = msg[m.end() :]
        if body.endswith("=<") and self.multi is None and full_text is None:
            self.multi = (lineno, text, prefix, msg[:-1])
            self.multi_lines = []
            return
        if len(body) > PLAN_BODY_MAX or "GenericPLEG: Relisting" in body:
            message, fields, form = split_body(body)
            self._classify(lineno, text, ts, KLOG_SEVERITY[sev], int(pid), message, fields, form, body)
            return
        self._planned(lineno, text, ts, KLOG_SEVERITY[sev], int(pid), body)

    def klog_line(self, lineno: int, text: str, m: re.Match[str], g: int) -> None:
        """`feed` of a journald-framed klog line while no value is open: `handle_message`
        of its message, read from `m`, the line's `common.FRAMED_KLOG_RE` match, whose
        klog groups start at `g` (the dispatcher's hot path: one match, no slices)."""
        self.records += 1
        at = m.start(g)
        self._klog_body(lineno, text, at, self._klog_epoch(text, m, at, g), int(m.group(g + 7)), m.end())

    def klog_read(self, lineno: int, text: str, at: int, pid: int, start: int, epoch: float) -> None:
        """`klog_line` of a line the compiled loop read (see `Dispatcher.on_klog`): the klog
        header at `at`, its pid, the body from `start`, the stamp's epoch."""
        self.records += 1
        self._klog_body(lineno, text, at, epoch, pid, start)

    def _klog_body(self, lineno: int, text: str, at: int, e: float | None, pid: int, start: int) -> None:
        ts = None if e is None else datetime.fromtimestamp(e, UTC)
        body = text[start:]
        if body.endswith("=<"):
            self.multi = (lineno, text, text[:at], text[at:-1])
            self.multi_lines = []
            return
        severity = KLOG_SEVERITY[text[at]]
        if len(body) > PLAN_BODY_MAX or "GenericPLEG: Relisting" in body:
            message, fields, form = split_body(body)
            self._classify(lineno, text, ts, severity, pid, message, fields, form, body)
            return
        self._planned(lineno, text, ts, severity, pid, body)

    def _planned(self, lineno: int, text: str, ts: datetime | None, severity: str, pid: int, body: str) -> None:
        # A kubelet repeats its messages (the same CRI error for the same containers every
        # sync): the split body and the events it yields are worked out once per body.
        plans = self._plans
        hit = plans.get(body)
        if hit is None:
            message, fields, form = split_body(body)
            if len(plans) >= PLAN_CACHE:
                plans.clear()
            hit = plans[body] = (message, fields, events_of(message, fields, form, body))
        self._emit(lineno, text, ts, severity, pid, hit[0], hit[1], hit[2])

    # ---- a forked reader's share (see `split`) ---------------------------------------

    def preparse(self, msg: str) -> tuple[float | None, str, int, int] | None:
        """What `handle_message` needs of a plain klog message (no open value, no opener,
        no tick), read ahead by a forked reader: (epoch, severity letter, pid, where the
        body starts in `msg`); None when the message must be read in order by `feed`."""
        if self.multi is not None or msg.startswith(("{", *CONTINUATION)):
            return None
        m = KLOG_RE.match(msg)
        if m is None:
            return None
        body = msg[m.end() :]
        if body.endswith("=<") or len(body) > PLAN_BODY_MAX or "GenericPLEG: Relisting" in body:
            return None
        return self._klog_epoch(msg, m), msg[0], int(m.group(8)), m.end()

    def preparse_match(self, text: str, m: re.Match[str], g: int) -> tuple[float | None, str, int, int] | None:
        """`preparse` of the message of a framed klog line, from its `FRAMED_KLOG_RE`
        match `m` (klog groups from `g` on); the body's start is an index into `text`."""
        if self.multi is not None or not self._plain_body(text[m.end() :]):
            return None
        return self._klog_epoch(text, m, m.start(g), g), m.group(g), int(m.group(g + 7)), m.end()

    def preparse_read(self, text: str, at: int, pid: int, start: int, e: float) -> tuple[float, str, int, int] | None:
        """`preparse_match` of a line the compiled loop read (see `Dispatcher.on_klog`)."""
        if self.multi is not None or not self._plain_body(text[start:]):
            return None
        return e, text[at], pid, start

    @staticmethod
    def _plain_body(body: str) -> bool:
        """A body `handle_message` reads through the plan cache (see `_planned`)."""
        return not (body.endswith("=<") or len(body) > PLAN_BODY_MAX or "GenericPLEG: Relisting" in body)

    def _klog_epoch(self, msg: str, m: re.Match[str], at: int = 0, g: int = 1) -> float | None:
        """`resolver.epoch` of the klog stamp `m` matched at `at` in `msg` (its groups from
        `g` on), with the epoch of its minute cached by `mmdd hh:mm` while the resolver is in
        that month and year (so its month tracking has nothing to do): the same float, fewer ints."""
        r = self.resolver
        minutes = self._klog_minutes
        if r.shift != self._klog_shift:  # a year rollover: the cached minutes are of another year
            minutes.clear()
            self._klog_shift = r.shift
        key = msg[at + 1 : at + 11]
        hit = minutes.get(key)
        if hit is not None and hit[1] == r.last_month:
            return hit[0] + int(msg[at + 12 : at + 14]) + int(msg[at + 15 : at + 21]) / 1e6
        month, day, hour, minute = int(m.group(g + 1)), int(m.group(g + 2)), int(m.group(g + 3)), int(m.group(g + 4))
        base = r.epoch(month, day, hour, minute, 0, 0)
        if base is None:
            return None
        if r.shift != self._klog_shift:
            minutes.clear()
            self._klog_shift = r.shift
        elif len(minutes) >= 4096:
            minutes.clear()
        minutes[key] = (base, month)
        return base + int(m.group(g + 5)) + int(m.group(g + 6)) / 1e6

    def replay(self, lineno: int, text: str, pre: tuple[float | None, str, int, int]) -> None:
        """`handle_message` of a line whose `preparse` a forked reader sent (no open value;
        the body's start as an index into `text`: the line is sent once, not line and body)."""
        e, sev, pid, start = pre
        body = text[start:]
        self.records += 1
        ts = None if e is None else datetime.fromtimestamp(e, UTC)
        self._planned(lineno, text, ts, KLOG_SEVERITY[sev], pid, body)

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
        self._classify(lineno, text, ts, severity, pid, message, fields, "json", msg)

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
        if "GenericPLEG: Relisting" in message:
            if ts is not None:
                self._add_tick(ts.timestamp(), lineno, text)
            return
        self._emit(lineno, text, ts, severity, pid, message, fields, events_of(message, fields, form, body))

    def _emit(
        self,
        lineno: int,
        text: str,
        ts: datetime | None,
        severity: str,
        pid: int | None,
        message: str,
        fields: dict[str, str],
        plan: Plan,
    ) -> None:
        """The events `plan` says a line yields, and its warning record, into the evidence.
        A plan (and `fields`) may be shared by many lines: each event gets its own dicts."""
        ref = None
        if plan:
            events = self.evidence.events
            defer = getattr(events, "defer", None)  # EventList: events past the kept head
            quoted = quote(text)
            for kind, attrs in plan:
                if defer is not None and defer(ts, kind, "kubelet", self.path, lineno, quoted, attrs):
                    continue
                if ref is None:
                    ref = Ref(self.path, lineno, quoted)
                events.append(Event(ts, kind, "kubelet", ref, dict(attrs)))
        if severity in WARNING_PLUS and self.kept_records < MAX_RECORDS_PER_SOURCE:
            self.kept_records += 1
            self.evidence.add_log_record(
                LogRecord(
                    ts, "kubelet", pid, severity, message, dict(fields), ref or Ref(self.path, lineno, quote(text))
                )
            )


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


FORMAT = LogFormat(
    process="kubelet",
    handler=KubeletHandler,
    idents=("hyperkube",),
    ident_contains=("kubelet",),
    own_needles=tuple(NEEDLES),
    by_content=by_content,
    bare_messages=BARE_MESSAGES,
    json_line=lambda obj: "caller" in obj or "ts" in obj,  # kubelet JSON logging
    tick_tag=TAG_RELIST,
    capped_tag=TAG_SEVERITY,
)
