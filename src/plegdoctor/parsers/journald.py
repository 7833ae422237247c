"""journalctl output of several units mixed (kubelet, containerd, dockerd, kernel).

Accepted variants (each has a fixture under tests/fixtures/logs/):
- `-o short` (`Jun 02 05:48:06 host ident[pid]: msg`), `short-precise` (`.uuuuuu`),
  `short-iso` / `short-iso-precise` (`2023-06-02T05:48:06+08:00` or older `+0800`),
  `short-monotonic`, classic syslog files (`Jun  2 ...`), and bare `ident[pid]: msg`
  excerpts (as quoted in incident write-ups);
- `-o cat` (no framing: each line is routed by its content: klog -> kubelet, logrus ->
  containerd, `INFO: task ... blocked` -> kernel);
- `-o json`: one entry per line; `MESSAGE` as a string, as `null` (field over 4096 bytes
  exported without `--all`: counted and warned, the content is lost) or as an array of
  byte values (non-UTF-8 or non-printable content); identifier from SYSLOG_IDENTIFIER,
  else _COMM, else _SYSTEMD_UNIT; time from __REALTIME_TIMESTAMP.

Entries are dispatched by identifier to the kubelet (any identifier containing
"kubelet"), containerd (also shim lines it forwards), dockerd and kernel handlers. Long
messages that journald cut into LineMax pieces (48K) are joined again (goroutine dumps).
This module also holds `run_log_parser`, the one engine behind the journal,
kubelet-log, containerd-log and dockerd-log kinds: framed lines always go by identifier,
unframed lines to the kind's own handler. A plain file of 64 MiB or more (journal or
kubelet kind) is read by two processes: the parent takes 8 MiB segments from the front
and parses them as usual, a forked child takes them from the back, parses the relist
ticks and keeps the other candidate lines raw; the parent replays those in file order,
so the result is the sequential one (PLEG_DOCTOR_SCAN_WORKERS=1 reads sequentially).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import marshal
import mmap
import os
import re
from array import array
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.model import Event, EventKind, InputReport, Ref, quote
from plegdoctor.parsers import kubelet_log
from plegdoctor.parsers._logcommon import (
    KLOG_RE,
    TAG_FOLLOW,
    LineScanner,
    Needle,
    ScanStats,
    StampResolver,
    epoch_to_dt,
    finish_report,
    head_frames,
    open_binary,
    parse_iso,
    parse_journal_frame,
    process_of_ident,
    realtime_to_dt,
    to_utc,
)
from plegdoctor.parsers.containerd_log import ContainerdHandler

if TYPE_CHECKING:
    from plegdoctor.inputs import Source

KIND = "journal"

TAG_IDENT = 10
TAG_JSON = kubelet_log.TAG_JSON
TAG_KERNEL = 12

# Lines of the other units, json entries and unframed logrus/kernel lines.
EXTRA_NEEDLES: list[Needle] = [
    Needle(b" containerd[", TAG_IDENT),
    Needle(b" containerd-shim", TAG_IDENT),
    Needle(b" dockerd[", TAG_IDENT),
    Needle(b" kernel: ", TAG_IDENT),
    Needle(b"containerd[", TAG_IDENT, line_start=True),
    Needle(b"dockerd[", TAG_IDENT, line_start=True),
    Needle(b'time="', TAG_IDENT, line_start=True),
    Needle(b"level=", TAG_IDENT, line_start=True),
    Needle(b'{ "', TAG_JSON, line_start=True),  # journalctl -o json puts a space after `{`
    Needle(b"INFO: task ", TAG_KERNEL),
]
NEEDLES = kubelet_log.NEEDLES + EXTRA_NEEDLES

_HUNG = re.compile(r"INFO: task (\S+):(\d{1,20}) blocked for more than (\d{1,20}) seconds")


def sniff(lines: list[str]) -> float:
    """journald framing with several identifiers, or `journalctl -o json` entries."""
    seen = framed = 0
    idents: set[str] = set()
    json_entries = 0
    for line, frame in zip(lines[:400], head_frames(lines), strict=True):
        if not line.strip():
            continue
        seen += 1
        if line.startswith("{") and '"MESSAGE"' in line and ("__REALTIME_TIMESTAMP" in line or "_PID" in line):
            json_entries += 1
            continue
        if frame is not None and (frame.host is not None or frame.pid is not None):
            framed += 1
            idents.add(process_of_ident(frame.ident) or frame.ident)
    if not seen:
        return 0.0
    if json_entries / seen >= 0.5:
        return 0.95
    share = framed / seen
    if share < 0.3:
        return 0.0
    known = idents & {"kubelet", "containerd", "dockerd", "kernel"}
    if len(idents) >= 2 and known - {"kernel"}:
        # several units incl. a runtime or the kubelet: beats a dmesg reading of the kernel lines
        return 0.96
    return 0.5 * share  # one unit only: its own kind scores higher


def parse(source: Source, ctx: ParseContext) -> None:
    run_log_parser(source, ctx, default_process=None, what="journal")


# ---------------------------------------------------------------------------------------


def prime_time(head: bytes, ctx: ParseContext) -> None:
    """Learn year and zone from the first lines before any year-less stamp is resolved."""
    time = ctx.time
    for n, raw in enumerate(head.split(b"\n")):
        if n > 2000 or (time.reference_year is not None and time.learned_tz is not None):
            break
        text = raw.decode("utf-8", "replace")
        if text.startswith("{"):
            _prime_json(text, ctx)
            continue
        frame = parse_journal_frame(text)
        msg = text
        if frame is not None:
            if frame.ts is not None:
                time.learn(frame.ts, zone=frame.ts.tzinfo is not None)
            msg = text[frame.end :]
        if msg.startswith('time="'):
            end = msg.find('"', 6)
            ts = parse_iso(msg[6:end]) if end != -1 else None
            if ts is not None and ts.tzinfo is not None:
                time.learn(ts, zone=True)
        elif msg.startswith("Log file created at:") and time.reference_year is None:
            try:
                created = datetime.strptime(msg[len("Log file created at:") :].strip(), "%Y/%m/%d %H:%M:%S")
            except ValueError:
                continue
            time.reference_year = created.year
            time.note(f"year {created.year} for klog stamps, from the klog file header")


def _prime_json(text: str, ctx: ParseContext) -> None:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return
    if not isinstance(obj, dict):
        return
    time = ctx.time
    when = realtime_to_dt(obj.get("__REALTIME_TIMESTAMP"))
    if when is not None:
        time.learn(when, zone=False)  # an absolute instant says nothing about the local zone
        msg = obj.get("MESSAGE")
        if isinstance(msg, str) and time.tz is None and time.learned_tz is None:
            m = KLOG_RE.match(msg)
            if m is not None:
                # klog prints local wall-clock time: local - UTC = the node's offset
                try:
                    local = datetime(
                        when.year,
                        int(m.group("mon")),
                        int(m.group("day")),
                        int(m.group("h")),
                        int(m.group("m")),
                        int(m.group("s")),
                    )
                except ValueError:
                    return
                delta = local - when.replace(tzinfo=None, microsecond=0)
                quarter = round(delta.total_seconds() / 900) * 900
                if abs(quarter) <= 14 * 3600:
                    time.learn_offset(timedelta(seconds=quarter), "journald realtime vs klog local stamps")
    elif "ts" in obj and isinstance(obj["ts"], (int, float)):
        secs = obj["ts"] / 1000.0 if obj["ts"] > 1e11 else float(obj["ts"])
        learnt = epoch_to_dt(secs)
        if learnt is not None:
            time.learn(learnt, zone=False)
    elif isinstance(obj.get("time"), str):
        ts = parse_iso(obj["time"])
        if ts is not None and ts.tzinfo is not None:
            time.learn(ts, zone=True)


class Dispatcher:
    """Routes lines to the kubelet / containerd / dockerd / kernel handlers."""

    def __init__(self, ctx: ParseContext, path: str, mtime: float | None, default_process: str | None) -> None:
        self.ctx = ctx
        self.path = path
        self.default = default_process
        self.resolver = StampResolver(ctx.time, mtime)
        self.kubelet = kubelet_log.KubeletHandler(ctx, path, self.resolver)
        self.containerd = ContainerdHandler(ctx, path, "containerd")
        self.dockerd = ContainerdHandler(ctx, path, "dockerd")
        self.null_messages = 0
        self.null_containerd = 0
        self.byte_messages = 0
        self.other_units = 0
        self.unparsed = 0
        self.records = 0
        self.scanner: LineScanner | None = None
        self._procs: dict[str, str | None] = {}  # journald identifier -> handler
        self.shared: mmap.mmap | None = None  # byte 2 set: tells a forked reader the warnings cap is reached

    # -- entry points of the scanner
    def on_ticks(self, buf: bytes, flat: list[int]) -> None:
        """A batch of relist lines (see LineScanner.scan)."""
        k = self.kubelet
        i = 0
        while i < len(flat) and k.multi is not None:  # a tick closes an open multi-line value
            self.on_line(flat[i], _line(buf, flat[i + 1], flat[i + 2]), kubelet_log.TAG_RELIST)
            i += 3
        if i < len(flat):
            k.ticks(buf, flat[i:] if i else flat, self._slow_tick)

    def _slow_tick(self, lineno: int, raw: bytes) -> None:
        self.on_line(lineno, raw, kubelet_log.TAG_RELIST)

    def wants_next(self) -> bool:
        """The scanner asks after each line: a kubelet `key=<` value is open."""
        return self.kubelet.multi is not None

    def on_line(self, lineno: int, raw: bytes, tag: int) -> None:
        if tag == kubelet_log.TAG_RELIST and self.kubelet.multi is None and self.kubelet.tick_fast(lineno, raw):
            return
        if tag == TAG_FOLLOW and self.kubelet.multi is None:
            return  # asked for by a forked reader that could not know the value was closed
        if tag == kubelet_log.TAG_SEVERITY and self.kubelet.kept_records >= kubelet_log.MAX_RECORDS_PER_SOURCE:
            # enough kubelet warnings kept: stop looking for them (events have their own needles)
            if self.scanner is not None:
                self.scanner.drop_tag(kubelet_log.TAG_SEVERITY)
            if self.shared is not None:
                self.shared[_CAPPED] = 1
            return
        text = raw.decode("utf-8", "replace")
        if text.startswith("{"):
            if tag != TAG_FOLLOW:  # json entries all come by their needles
                self._json_line(lineno, text)
            return
        frame = parse_journal_frame(text)
        if frame is not None:
            if frame.ts is not None:
                self.ctx.time.learn(frame.ts, zone=frame.ts.tzinfo is not None)
            proc = self._procs.get(frame.ident, "")
            if proc == "":
                proc = self._procs[frame.ident] = process_of_ident(frame.ident)
            if tag == TAG_FOLLOW and proc != "kubelet":
                return  # another unit's line inside a kubelet value: only needles bring those
            if proc is None:
                self.other_units += 1
                return
            self.route(proc, lineno, text[: frame.end], text[frame.end :], frame.pid)
            return
        proc = self.default or self._by_content(text)
        if tag == TAG_FOLLOW and proc != "kubelet":
            return
        if proc is None:
            self.unparsed += 1
            return
        self.route(proc, lineno, "", text, None)

    @staticmethod
    def _by_content(text: str) -> str | None:
        if KLOG_RE.match(text) or text.startswith(("\t", "        ", " >")):
            return "kubelet"
        if text.startswith(('time="', "level=")):
            return "containerd"
        if "INFO: task " in text or text.startswith("["):
            return "kernel"
        return None

    def route(self, proc: str, lineno: int, prefix: str, msg: str, pid: int | None) -> None:
        if proc == "kubelet":
            k = self.kubelet
            if k.multi is not None:
                if msg.startswith(("\t", "        ", " >")):
                    k.continuation(msg)
                    return
                k.flush_multi()
            elif msg.startswith(("\t", "        ", " >")):
                return  # continuation of a multi-line value nobody asked for
            k.handle_message(lineno, prefix, msg)
        elif proc == "containerd":
            self.containerd.feed(lineno, prefix, msg, pid)
        elif proc == "dockerd":
            self.dockerd.feed(lineno, prefix, msg, pid)
        elif proc == "kernel":
            self._kernel(lineno, prefix + msg, msg)

    def _kernel(self, lineno: int, text: str, msg: str) -> None:
        m = _HUNG.search(msg)
        if m is None:
            return
        self.records += 1
        self.ctx.evidence.events.append(
            Event(
                None,
                EventKind.HUNG_TASK,
                "kernel",
                Ref(self.path, lineno, quote(text)),
                {"comm": m.group(1), "pid": int(m.group(2)), "seconds": int(m.group(3))},
            )
        )

    def _json_line(self, lineno: int, text: str) -> None:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            self.unparsed += 1
            return
        if not isinstance(obj, dict):
            self.unparsed += 1
            return
        if "MESSAGE" not in obj and "__REALTIME_TIMESTAMP" not in obj:
            # not a journal entry: kubelet JSON logging or logrus JSON, routed by content
            proc = self.default
            if proc is None:
                proc = "kubelet" if "caller" in obj or "ts" in obj else "containerd"
            self.route(proc, lineno, "", text, None)
            return
        ident = str(obj.get("SYSLOG_IDENTIFIER") or obj.get("_COMM") or obj.get("_SYSTEMD_UNIT") or "")
        proc = process_of_ident(ident) if ident else None
        if proc is None:
            unit = obj.get("_SYSTEMD_UNIT")
            proc = process_of_ident(str(unit)) if unit else None
        msg = obj.get("MESSAGE")
        pid_raw = obj.get("_PID") or obj.get("SYSLOG_PID")
        pid = (
            int(pid_raw)
            if isinstance(pid_raw, str) and len(pid_raw) <= 20 and pid_raw.isascii() and pid_raw.isdigit()
            else None
        )
        if msg is None:
            self.null_messages += 1
            if proc == "containerd":
                self.null_containerd += 1
            return
        if isinstance(msg, list):
            if msg and all(isinstance(b, int) for b in msg):
                self.byte_messages += 1
                msg = bytes(b & 0xFF for b in msg).decode("utf-8", "replace")
            else:
                msg = "\n".join(str(x) for x in msg)  # repeated field: all values
        msg = str(msg).rstrip("\n")
        when = realtime_to_dt(obj.get("__REALTIME_TIMESTAMP"))
        if when is not None:
            self.ctx.time.learn(when, zone=False)
        if proc is None:
            self.other_units += 1
            return
        prefix = f"{ident}[{pid}]: " if pid is not None else f"{ident}: "
        relist = proc == "kubelet" and "GenericPLEG: Relisting" in msg and self.kubelet.multi is None
        if relist and self.kubelet.tick_fast(lineno, (prefix + msg).encode()):
            return
        self.route(proc, lineno, prefix, msg, pid)

    def finish(self, stats: ScanStats) -> None:
        self.kubelet.finish()
        self.containerd.finish()
        self.dockerd.finish()
        report = self.ctx.report
        report.records = stats.lines
        report.unparsed += self.unparsed + self.kubelet.unparsed + self.containerd.unparsed + self.dockerd.unparsed
        if self.null_messages:
            extra = f" ({self.null_containerd} from containerd: likely goroutine dumps)" if self.null_containerd else ""
            report.warn(
                f"{self.null_messages} journal entries have MESSAGE null (over 4096 bytes, exported without "
                f"--all){extra}; re-export with `journalctl -o json --all`"
            )
        if self.byte_messages:
            report.warn(
                f"{self.byte_messages} journal entries had MESSAGE as a byte array (decoded, invalid UTF-8 replaced)"
            )


def _head_sample_check(head: bytes, dispatcher: Dispatcher) -> int:
    """How many of the first lines are not log lines of a known shape (for the report)."""
    bad = 0
    lines = head.split(b"\n")
    if len(head) >= 64 * 1024:
        lines = lines[:-1]
    for raw in lines[:1000]:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if not text.strip() or text.startswith(("{", "-- ")):
            continue  # json entries are checked when parsed; "-- Journal begins at ..." banners
        frame = parse_journal_frame(text)
        msg = text[frame.end :] if frame is not None else text
        if frame is not None:
            continue
        if KLOG_RE.match(msg) or msg.startswith(
            ('time="', "level=", "\t", "        ", " >", "Log file ", "Running on", "Binary:", "Log line format")
        ):
            continue
        if msg.startswith(kubelet_log.BARE_MESSAGES):
            continue  # a kubelet message quoted without its header is read (with no time)
        if dispatcher.default is None and ("INFO: task" in msg or msg.startswith("[")):
            continue
        bad += 1
    return bad


def run_log_parser(source: Source, ctx: ParseContext, default_process: str | None, what: str) -> None:
    """Scan `source` and fill `ctx.evidence` (shared by the four log kinds)."""
    head = source.head()
    prime_time(head, ctx)
    dispatcher = Dispatcher(ctx, source.display, source.mtime, default_process)
    head_bad = _head_sample_check(head, dispatcher)
    # containerd/dockerd logs: every line matters; kubelet logs: kubelet needles only (a file
    # with other units in it is sniffed as a journal); journals: kubelet needles + other units
    if default_process in ("containerd", "dockerd"):
        needles = None
    elif default_process == "kubelet":
        needles = kubelet_log.NEEDLES
    else:
        needles = NEEDLES
    scanner = LineScanner(needles, tick_tag=kubelet_log.TAG_RELIST)
    dispatcher.scanner = scanner
    stats = ScanStats()
    stream = open_binary(source)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the scan makes no reference cycles; collections would only re-walk the heap
    try:
        size = source.size or 0
        if needles is not None and isinstance(stream, io.FileIO) and size >= SPLIT_MIN_BYTES and _split_allowed():
            _scan_parallel(stream, size, scanner, dispatcher, stats)
        else:
            scanner.scan(stream, dispatcher.on_line, stats, on_ticks=dispatcher.on_ticks, follow=dispatcher.wants_next)
    finally:
        if gc_was_enabled:
            gc.enable()
        if stream is not getattr(source, "_stream", None):
            stream.close()
    dispatcher.finish(stats)
    if needles is not None:
        ctx.report.unparsed += head_bad
    if head_bad and stats.lines and head_bad >= min(stats.lines, 1000) // 2:
        ctx.report.warn(f"most of the first lines are not {what} lines ({head_bad} not understood)")
    if source.error:
        ctx.report.warn(source.error)
    finish_report(ctx, stats, what)
    _dump_summary(dispatcher, ctx)


# ---------------------------------------------------------------------------------------
# Big plain files: two processes read segments of the file, the parent from the front (in
# order, into the real evidence), a forked child from the back (ticks parsed, other
# candidate lines kept raw); the parent then replays the child's segments in file order.
# Whoever is faster reads more, so a busy core does not hold the other one up.

SPLIT_MIN_BYTES = 64 << 20
SEGMENT_BYTES = 8 << 20
_FRONT, _BACK, _CAPPED = 0, 1, 2  # bytes of the shared page: next front segment, back bound, cap flag


def _split_allowed() -> bool:
    if os.environ.get("PLEG_DOCTOR_SCAN_WORKERS", "") == "1" or not hasattr(os, "fork"):
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


def _line(buf: bytes, start: int, end: int) -> bytes:
    line = bytes(buf[start:end])
    return line[:-1] if line.endswith(b"\r") else line


def _segment_bounds(fd: int, size: int) -> list[int]:
    """Offsets [0, ..., size] cutting the file after a newline into at most 255 segments."""
    nseg = max(2, min(255, size // SEGMENT_BYTES))
    bounds = [0]
    for i in range(1, nseg):
        off = size * i // nseg
        if off <= bounds[-1]:
            continue
        nl = os.pread(fd, 4096, off).find(b"\n")
        if nl == -1:
            nl = os.pread(fd, 1 << 16, off).find(b"\n")
        if nl != -1 and bounds[-1] < off + nl + 1 < size:
            bounds.append(off + nl + 1)  # no cut inside a line longer than 64 KiB
    bounds.append(size)
    return bounds


class _Range(io.RawIOBase):
    """Reads bytes [start, end) of a file with pread: parent and forked child share the
    descriptor's offset, so neither may seek or read() it."""

    def __init__(self, fh: io.FileIO, start: int, end: int) -> None:
        self._fd = fh.fileno()
        self._pos = start
        self._end = end

    def readable(self) -> bool:
        return True

    def _more(self) -> int:
        return self._end - self._pos

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        left = self._more()
        if left <= 0:
            return b""
        n = left if n is None or n < 0 else min(n, left)
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        left = self._more()
        if left <= 0:
            return 0
        view = memoryview(b)
        n = os.preadv(self._fd, [view[:left] if len(view) > left else view], self._pos)
        self._pos += n
        return n


class _FrontSegments(_Range):
    """The parent's stream: segment after segment from the front, as long as the child
    has not taken the next one. `taken` = how many segments the parent read."""

    def __init__(self, fh: io.FileIO, bounds: list[int], shared: mmap.mmap) -> None:
        super().__init__(fh, 0, 0)
        self._bounds = bounds
        self._shared = shared
        self.taken = 0

    def _more(self) -> int:
        if self._pos >= self._end:
            k = self.taken
            if k >= self._shared[_BACK]:
                return 0
            self._shared[_FRONT] = k + 1  # a race with the child can only make both read k
            self.taken = k + 1
            self._end = self._bounds[k + 1]
        return self._end - self._pos


class _Collector:
    """The child's side, one per segment: relist ticks parsed here, other candidate lines
    kept raw for the parent to replay in order (events, multi-line values and warnings
    stay sequential). Lines after a possible `key=<` opener are asked for as long as a
    multi-line value may be open (a superset of what the parent's parser would ask for);
    a segment starts as if one were open."""

    FOLLOW_CAP = 20_000

    def __init__(self, dispatcher: Dispatcher, scanner: LineScanner, path: str, shared: mmap.mmap) -> None:
        self.evidence = Evidence()
        ctx = ParseContext(self.evidence, InputReport(path, "split"), dispatcher.ctx.time)
        self.resolver = dispatcher.resolver.fresh()
        self.kubelet = kubelet_log.KubeletHandler(ctx, path, self.resolver)
        self.scanner = scanner
        self.shared = shared
        self.default = dispatcher.default
        self.candidates: list[tuple[int, bytes, int]] = []
        self.severity = 0
        self.first_text: str | None = None
        self.open = True
        self.followed = 0

    def wants_next(self) -> bool:
        return self.open

    def _track(self, raw: bytes) -> None:
        if raw.endswith(b"=<"):
            self.open = True
            self.followed = 0
            return
        text = raw.decode("utf-8", "replace")
        frame = None if text.startswith("{") else parse_journal_frame(text)
        if frame is not None:
            if process_of_ident(frame.ident) != "kubelet":
                return  # another unit's line: the kubelet's value stays open
            msg = text[frame.end :]
        elif self.default is None and not (KLOG_RE.match(text) or text.startswith(("\t", "        ", " >"))):
            return  # a journal's unframed line that does not go to the kubelet
        else:
            msg = text
        if msg.startswith(("\t", "        ")):
            self.followed += 1
            self.open = self.followed <= self.FOLLOW_CAP
            return
        self.open = False  # the ` >` closer or any other kubelet line

    def on_ticks(self, buf: bytes, flat: list[int]) -> None:
        k = self.kubelet
        empty = len(k.series) == 0
        k.ticks(buf, flat, self._slow_tick)
        if empty and self.first_text is None and len(k.series):
            first = k.series.line[0]
            for i in range(0, len(flat), 3):
                if flat[i] == first:
                    self.first_text = _line(buf, flat[i + 1], flat[i + 2])[:400].decode("utf-8", "replace")
                    break

    def _slow_tick(self, lineno: int, raw: bytes) -> None:
        self.on_line(lineno, raw, kubelet_log.TAG_RELIST)

    def on_line(self, lineno: int, raw: bytes, tag: int) -> None:
        if self.open or raw.endswith(b"=<"):
            self._track(raw)
        if tag == kubelet_log.TAG_RELIST:
            first = len(self.kubelet.series) == 0
            if self.kubelet.tick_fast(lineno, raw):
                if first:
                    self.first_text = raw[:400].decode("utf-8", "replace")
                return
        if tag == kubelet_log.TAG_SEVERITY:
            self.severity += 1
            if self.shared[_CAPPED] or self.severity > kubelet_log.MAX_RECORDS_PER_SOURCE:
                self.scanner.drop_tag(kubelet_log.TAG_SEVERITY)  # none of them would be kept
                return
        self.candidates.append((lineno, bytes(raw), tag))

    def payload(self, stats: ScanStats) -> dict[str, Any]:
        k = self.kubelet
        return {
            "ts": k.series.ts.tobytes(),
            "line": k.series.line.tobytes(),
            "texts": k.series.texts,
            "first_text": self.first_text,
            "last_ts": k.last_tick_ts,
            "last_text": k.last_tick_text,
            "candidates": self.candidates,
            "lines": stats.lines,
            "binary": stats.binary_chunks,
            "long": stats.long_lines,
            "shift": self.resolver.shift,
        }


def _child_segments(
    fh: io.FileIO, bounds: list[int], shared: mmap.mmap, scanner: LineScanner, dispatcher: Dispatcher
) -> list[tuple[int, dict[str, Any]]]:
    parts: list[tuple[int, dict[str, Any]]] = []
    while True:
        k = shared[_BACK] - 1
        if k < shared[_FRONT]:
            return parts
        shared[_BACK] = k
        scanner.restore()
        if shared[_CAPPED]:
            scanner.drop_tag(kubelet_log.TAG_SEVERITY)
        collector = _Collector(dispatcher, scanner, dispatcher.path, shared)
        stats = ScanStats()
        scanner.scan(
            _Range(fh, bounds[k], bounds[k + 1]),
            collector.on_line,
            stats,
            on_ticks=collector.on_ticks,
            follow=collector.wants_next,
            following=True,
        )
        parts.append((k, collector.payload(stats)))


def _scan_parallel(fh: io.FileIO, size: int, scanner: LineScanner, dispatcher: Dispatcher, stats: ScanStats) -> None:
    bounds = _segment_bounds(fh.fileno(), size)
    nseg = len(bounds) - 1
    if nseg < 2:
        scanner.scan(fh, dispatcher.on_line, stats, on_ticks=dispatcher.on_ticks, follow=dispatcher.wants_next)
        return
    shared = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous and MAP_SHARED: seen by parent and child
    shared[_FRONT] = 0
    shared[_BACK] = nseg
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        scanner.scan(fh, dispatcher.on_line, stats, on_ticks=dispatcher.on_ticks, follow=dispatcher.wants_next)
        return
    if pid == 0:  # child: never returns
        code = 1
        try:
            os.close(r)
            parts = _child_segments(fh, bounds, shared, scanner, dispatcher)
            if shared[_CAPPED]:  # the parent keeps no more warnings: do not send any
                severity = kubelet_log.TAG_SEVERITY
                for _, part in parts:
                    part["candidates"] = [c for c in part["candidates"] if c[2] != severity]
            with os.fdopen(w, "wb") as out:
                out.write(marshal.dumps(parts))  # plain data; same interpreter
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    dispatcher.shared = shared
    front = _FrontSegments(fh, bounds, shared)
    done = False
    try:
        warm_up = dispatcher.ctx.options.get("while_scanning")
        if callable(warm_up):  # work of the caller's that the child's segments make up for
            with contextlib.suppress(Exception):
                warm_up()
        scanner.scan(front, dispatcher.on_line, stats, on_ticks=dispatcher.on_ticks, follow=dispatcher.wants_next)
        with os.fdopen(r, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        done = True
        done_parts: dict[int, dict[str, Any]] = dict(marshal.loads(data)) if status == 0 and data else {}
    finally:
        dispatcher.shared = None
        shared.close()
        if not done:
            import signal

            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    k = front.taken
    while k < nseg and k in done_parts and _merge(done_parts[k], dispatcher, stats):
        k += 1
    if k < nseg:  # the child failed or a year rollover crossed a cut: read the rest here
        rest = ScanStats()
        scanner.scan(
            _Range(fh, bounds[k], size),
            dispatcher.on_line,
            rest,
            on_ticks=dispatcher.on_ticks,
            follow=dispatcher.wants_next,
            following=dispatcher.wants_next(),
            lineno=stats.lines,
        )
        stats.lines = rest.lines
        stats.candidates += rest.candidates
        stats.binary_chunks += rest.binary_chunks
        stats.long_lines += rest.long_lines


def _merge(payload: dict[str, Any], dispatcher: Dispatcher, stats: ScanStats) -> bool:
    k = dispatcher.kubelet
    series = k.series
    ts = array("d")
    ts.frombytes(payload["ts"])
    lines = array("q")
    lines.frombytes(payload["line"])
    if dispatcher.resolver.shift or payload["shift"]:
        return False  # klog year rollover: the year of later segments is only known sequentially
    if len(ts) and k.last_tick_ts >= 0 and ts[0] < k.last_tick_ts - 30 * 86400:
        return False
    offset = stats.lines
    base_index = len(series)
    if len(ts):
        if k.last_tick_ts >= 0 and abs(ts[0] - k.last_tick_ts) >= kubelet_log.KEEP_TEXT_INTERVAL:
            k.finish_tick_text()
            if payload["first_text"] is not None:
                series.texts[base_index] = quote(payload["first_text"])
        series.ts.extend(ts)
        series.src.extend(array("i", [k.src_id]) * len(ts))
        series.line.extend(array("q", map(offset.__add__, lines)))
        for idx, text in payload["texts"].items():
            series.texts[base_index + idx] = text
        k.last_tick_ts = payload["last_ts"]
        k.last_tick_text = payload["last_text"]
    severity = kubelet_log.TAG_SEVERITY
    for lineno, raw, tag in payload["candidates"]:
        if tag == severity and k.kept_records >= kubelet_log.MAX_RECORDS_PER_SOURCE:
            continue  # warnings past the cap (the child could not know it was reached)
        dispatcher.on_line(offset + lineno, raw, tag)
    stats.lines = offset + payload["lines"]
    stats.candidates += len(payload["candidates"]) + len(ts)
    stats.binary_chunks += payload["binary"]
    stats.long_lines += payload["long"]
    return True


def _dump_summary(dispatcher: Dispatcher, ctx: ParseContext) -> None:
    n = len(dispatcher.containerd.dumps) + len(dispatcher.dockerd.dumps)
    if n:
        ctx.report.inferred.append(f"{n} goroutine dump(s) embedded in the log extracted")


def dumps_of(dispatcher: Any) -> list[Any]:  # pragma: no cover - convenience for callers
    return list(dispatcher.containerd.dumps) + list(dispatcher.dockerd.dumps)


__all__ = ["KIND", "Dispatcher", "parse", "parse_iso", "run_log_parser", "sniff", "to_utc"]
