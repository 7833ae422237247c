"""The log engine: reads a log input, frames each candidate line and routes it to the
handler of its format (the formats and their handlers are in `registry`).

`run_log_parser` is the one engine behind the journal, kubelet-log, containerd-log and
dockerd-log kinds: the scanner (`scanner.LineScanner`) finds candidate lines by the
formats' needles, framed lines go by journald identifier, unframed lines to the kind's own
format (in a journal: by content). Long messages that journald cut into LineMax pieces
(48K) are joined again by the handler (goroutine dumps). A plain file of 64 MiB or more
(journal or kubelet kind) is read by two processes (`split`).
"""

from __future__ import annotations

import gc
import io
import json
import mmap
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from plegdoctor.evidence import ParseContext
from plegdoctor.parsers.logs.common import (
    FRAMED_KLOG_RE,
    FRAMED_KLOG_SEV,
    KLOG_RE,
    MONTHS,
    StampResolver,
    epoch_to_dt,
    frame_of,
    parse_iso,
    parse_journal_frame,
    realtime_to_dt,
)
from plegdoctor.parsers.logs.lines import count_lines, open_binary, tick_line
from plegdoctor.parsers.logs.registry import formats, get_format, process_of_ident
from plegdoctor.parsers.logs.scanner import (
    TAG_FOLLOW,
    TAG_JSON,
    LineScanner,
    Needle,
    ScanStats,
    Ticker,
    finish_report,
)
from plegdoctor.parsers.logs.split import CAPPED, scan_parallel

if TYPE_CHECKING:
    from plegdoctor.inputs import Source

SPLIT_MIN_BYTES = 64 << 20  # a plain file this big is read by two processes (`split`)
_framed_klog = FRAMED_KLOG_RE.match
_SEV = FRAMED_KLOG_SEV


def journal_needles() -> list[Needle]:
    """Needles of a journal of several units: the ticking format's own (the kubelet's),
    every format's journal needles, and journalctl -o json entries."""
    out: list[Needle] = []
    for f in formats():
        if f.tick_tag is not None and f.own_needles is not None:
            out.extend(f.own_needles)
    for f in formats():
        out.extend(f.needles)
    out.append(Needle(b'{ "', TAG_JSON, line_start=True))  # journalctl -o json puts a space after `{`
    return out


def split_allowed() -> bool:
    if os.environ.get("PLEG_DOCTOR_SCAN_WORKERS", "") == "1" or not hasattr(os, "fork"):
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


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
    """Routes each line to the handler of its format (see `registry`): framed lines by
    journald identifier, unframed ones to the kind's own format (`default_process`) or, in a
    journal, by content. The format with `tick_tag` (the kubelet) has the hot paths:
    relist ticks in batches, lines asked for after an opener, warnings read up to a cap."""

    def __init__(self, ctx: ParseContext, path: str, mtime: float | None, default_process: str | None) -> None:
        self.ctx = ctx
        self.path = path
        self.default = default_process
        self.resolver = StampResolver(ctx.time, mtime)
        self.formats = formats()
        self.handlers: dict[str, Any] = {f.process: f.handler(ctx, path, self.resolver) for f in self.formats}
        ticking = next(f for f in self.formats if f.tick_tag is not None)
        self.ticking = ticking
        self.tick_tag: int = ticking.tick_tag  # type: ignore[assignment]
        self.capped_tag = ticking.capped_tag
        self.ticker = self.handlers[ticking.process]  # the ticking format's handler (the kubelet's)
        self.tick_ref = Ticker(self.ticker, self._slow_tick, True, self.on_klog)  # the compiled loop's way to it
        self.content_tests = [(f.by_content, f.process) for f in self.formats if f.by_content is not None]
        self.null_messages = 0
        self.null_containerd = 0
        self.byte_messages = 0
        self.other_units = 0
        self.unparsed = 0
        self.scanner: LineScanner | None = None
        self._procs: dict[str, str | None] = {}  # journald identifier -> handler
        self.shared: mmap.mmap | None = None  # byte CAPPED set: tells a forked reader the warnings cap is reached

    # -- entry points of the scanner
    def on_ticks(self, buf: bytes, ends: list[int], pos: int, lineno: int) -> tuple[int, int]:
        """A batch of relist lines (see LineScanner.scan)."""
        k = self.ticker
        if k.multi is None:  # the common case: no value open
            return k.ticks(buf, ends, pos, lineno, self._slow_tick)
        i = 0
        while i < len(ends) and k.multi is not None:  # a tick closes an open multi-line value
            to = ends[i]
            i += 1
            nl = count_lines(buf, pos, to)
            if not nl and pos and buf[pos - 1] != 10:
                continue  # a second needle in the line of the previous one
            lineno += nl
            pos = to
            self.on_line(lineno + 1, tick_line(buf, to), self.tick_tag)
        if i < len(ends):
            return k.ticks(buf, ends[i:] if i else ends, pos, lineno, self._slow_tick)
        return pos, lineno

    def _slow_tick(self, lineno: int, raw: bytes) -> None:
        self.on_line(lineno, raw, self.tick_tag)

    def scan(self, scanner: LineScanner, stream: Any, stats: ScanStats, **options: Any) -> None:
        """`scanner.scan` of `stream` into this dispatcher (its lines, ticks and follow-ups);
        `options`: `following`, `lineno` (see LineScanner.scan)."""
        scanner.scan(
            stream,
            self.on_line,
            stats,
            on_ticks=self.on_ticks,
            follow=self.wants_next,
            ticker=self.tick_ref,
            **options,
        )

    def wants_next(self) -> bool:
        """The scanner asks after each line: a kubelet `key=<` value is open."""
        return self.ticker.multi is not None

    def on_line(self, lineno: int, raw: bytes, tag: int) -> None:
        k = self.ticker
        if tag == self.tick_tag and k.multi is None and k.tick_fast(lineno, raw):
            return
        if tag == TAG_FOLLOW and k.multi is None:
            return  # asked for by a forked reader that could not know the value was closed
        if tag == self.capped_tag and k.kept_records >= k.cap:
            # enough kubelet warnings kept: stop looking for them (events have their own needles)
            if self.scanner is not None:
                self.scanner.drop_tag(tag)
            if self.shared is not None:
                self.shared[CAPPED] = 1
            return
        text = raw.decode("utf-8", "replace")
        if text.startswith("{"):
            if tag != TAG_FOLLOW:  # json entries all come by their needles
                self._json_line(lineno, text)
            return
        ticking = self.ticking.process
        m = _framed_klog(text)
        if m is not None:
            end = m.start(_SEV)
            if end >= 0 and k.multi is None and m.group(1) in MONTHS:
                # the hot path: a klog line in a year-less frame (no time to learn), read
                # straight by the kubelet handler when it is the kubelet's
                ident = m.group(8)
                proc = self._procs.get(ident, "")
                if proc == "":
                    proc = self._procs[ident] = process_of_ident(ident)
                if proc == ticking:
                    k.klog_line(lineno, text, m, _SEV)
                    return
            frame = frame_of(m, end if end >= 0 else m.end())
        else:
            frame = None
        if frame is not None:
            ident, pid, end, ts = frame
            if ts is not None:
                self.ctx.time.learn(ts, zone=ts.tzinfo is not None)
            proc = self._procs.get(ident, "")
            if proc == "":
                proc = self._procs[ident] = process_of_ident(ident)
            if tag == TAG_FOLLOW and proc != ticking:
                return  # another unit's line inside a kubelet value: only needles bring those
            if proc is None:
                self.other_units += 1
                return
            self.handlers[proc].feed(lineno, text[:end], text[end:], pid)
            return
        proc = self.default or self._content_of(text)
        if tag == TAG_FOLLOW and proc != ticking:
            return
        if proc is None:
            self.unparsed += 1
            return
        self.handlers[proc].feed(lineno, "", text, None)

    def on_klog(self, lineno: int, raw: bytes, tag: int, ident: str, at: int, pid: int, body: int, e: float) -> None:
        """`on_line` of a line the compiled loop read as a journald-framed klog line (year-less
        frame, see _fastscan_klog.c): its identifier, where the klog header and the body
        start, the header's pid, and the stamp's epoch from the kubelet handler's minute cache.
        The hot path of `on_line` without its regex: the kubelet's lines while no value is
        open; any other goes to `on_line`."""
        k = self.ticker
        if (
            k.multi is not None
            or tag == self.tick_tag
            or (tag == self.capped_tag and k.kept_records >= k.cap)
            or self._procs.get(ident, "") != self.ticking.process
        ):
            self.on_line(lineno, raw, tag)
            return
        k.klog_read(lineno, raw.decode("utf-8", "replace"), at, pid, body, e)

    def _content_of(self, text: str) -> str | None:
        for test, process in self.content_tests:
            if test(text):
                return process
        return None

    def route(self, proc: str, lineno: int, prefix: str, msg: str, pid: int | None) -> None:
        self.handlers[proc].feed(lineno, prefix, msg, pid)

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
                proc = next((f.process for f in self.formats if f.json_line is not None and f.json_line(obj)), None)
                if proc is None:
                    self.unparsed += 1
                    return
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
        relist = proc == self.ticking.process and "GenericPLEG: Relisting" in msg and self.ticker.multi is None
        if relist and self.ticker.tick_fast(lineno, (prefix + msg).encode()):
            return
        self.route(proc, lineno, prefix, msg, pid)

    def finish(self, stats: ScanStats) -> None:
        for h in self.handlers.values():
            h.finish()
        report = self.ctx.report
        report.records = stats.lines
        report.unparsed += self.unparsed + sum(h.unparsed for h in self.handlers.values())
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
        if any(msg.startswith(f.bare_messages) for f in dispatcher.formats if f.bare_messages):
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
    needles = journal_needles() if default_process is None else get_format(default_process).own_needles
    scanner = LineScanner(needles, tick_tag=dispatcher.tick_tag)
    dispatcher.scanner = scanner
    stats = ScanStats()
    stream = open_binary(source)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the scan makes no reference cycles; collections would only re-walk the heap
    try:
        size = source.size or 0
        if needles is not None and isinstance(stream, io.FileIO) and size >= SPLIT_MIN_BYTES and split_allowed():
            scan_parallel(stream, size, scanner, dispatcher, stats)
        else:
            dispatcher.scan(scanner, stream, stats)
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


def _dump_summary(dispatcher: Dispatcher, ctx: ParseContext) -> None:
    n = sum(len(getattr(h, "dumps", ())) for h in dispatcher.handlers.values())
    if n:
        ctx.report.inferred.append(f"{n} goroutine dump(s) embedded in the log extracted")
