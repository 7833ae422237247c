"""Big plain files: two processes read segments of the file, the parent from the front (in
order, into the real evidence), a forked child from the back (relist ticks parsed, other
candidate lines kept raw); the parent then replays the child's segments in file order, so
the result is the sequential one. Whoever is faster reads more, so a busy core does not
hold the other one up (PLEG_DOCTOR_SCAN_WORKERS=1 reads sequentially). Used by
`engine.run_log_parser` for journal and kubelet inputs of `engine.SPLIT_MIN_BYTES` or more.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import marshal
import mmap
import os
from array import array
from typing import Any

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.model import InputReport, quote
from plegdoctor.parsers.logs.common import FRAMED_KLOG_RE, FRAMED_KLOG_SEV, MONTHS, frame_of, parse_journal_frame
from plegdoctor.parsers.logs.registry import process_of_ident
from plegdoctor.parsers.logs.scanner import TAG_FOLLOW, LineScanner, ScanStats
from plegdoctor.parsers.logs.scanner import line_of as _line

SEGMENT_BYTES = 8 << 20
PIPE_BYTES = 1 << 20  # the default /proc/sys/fs/pipe-max-size (64 KiB pipes: ~16x the round trips)
_framed_klog = FRAMED_KLOG_RE.match
_SEV = FRAMED_KLOG_SEV
_FRONT, _BACK, CAPPED = 0, 1, 2  # bytes of the shared page: next front segment, back bound, cap flag


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
    stay sequential); a plain klog line outside any multi-line value also carries what
    the parent's handler needs of it (stamp, severity, pid, body: `KubeletHandler.preparse`),
    so the parent skips its framing and header parse. Lines after a possible `key=<` opener are asked for as long as a
    multi-line value may be open (a superset of what the parent's parser would ask for);
    a segment starts as if one were open."""

    FOLLOW_CAP = 20_000

    def __init__(self, dispatcher: Any, scanner: LineScanner, path: str, shared: mmap.mmap) -> None:
        self.evidence = Evidence()
        ctx = ParseContext(self.evidence, InputReport(path, "split"), dispatcher.ctx.time)
        self.resolver = dispatcher.resolver.fresh()
        self.ticker = dispatcher.ticking.handler(ctx, path, self.resolver)
        self.ticking = dispatcher.ticking.process
        self.by_content = dispatcher.ticking.by_content
        self.content_tests = dispatcher.content_tests
        self.tick_tag = dispatcher.tick_tag
        self.capped_tag = dispatcher.capped_tag
        self.scanner = scanner
        self.shared = shared
        self.default = dispatcher.default
        self.candidates: list[tuple[Any, ...]] = []  # (line, raw, tag) or (line, raw, tag, preparsed)
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
            if process_of_ident(frame.ident) != self.ticking:
                return  # another unit's line: the kubelet's value stays open
            msg = text[frame.end :]
        elif self.default is None and not (self.by_content is not None and self.by_content(text)):
            return  # a journal's unframed line that does not go to the kubelet
        else:
            msg = text
        if msg.startswith(("\t", "        ")):
            self.followed += 1
            self.open = self.followed <= self.FOLLOW_CAP
            return
        self.open = False  # the ` >` closer or any other kubelet line

    def on_ticks(self, buf: bytes, flat: list[int]) -> None:
        k = self.ticker
        empty = len(k.series) == 0
        k.ticks(buf, flat, self._slow_tick)
        if empty and self.first_text is None and len(k.series):
            first = k.series.line[0]
            for i in range(0, len(flat), 3):
                if flat[i] == first:
                    self.first_text = _line(buf, flat[i + 1], flat[i + 2])[:400].decode("utf-8", "replace")
                    break

    def _slow_tick(self, lineno: int, raw: bytes) -> None:
        self.on_line(lineno, raw, self.tick_tag)

    def on_line(self, lineno: int, raw: bytes, tag: int) -> None:
        closed = not self.open  # no value can be open before this line
        if self.open or raw.endswith(b"=<"):
            self._track(raw)
        if tag == self.tick_tag:
            first = len(self.ticker.series) == 0
            if self.ticker.tick_fast(lineno, raw):
                if first:
                    self.first_text = raw[:400].decode("utf-8", "replace")
                return
        if tag == self.capped_tag:
            self.severity += 1
            if self.shared[CAPPED] or self.severity > self.ticker.cap:
                self.scanner.drop_tag(tag)  # none of them would be kept
                return
        plain = closed and tag not in (TAG_FOLLOW, self.tick_tag) and not raw.endswith(b"=<")
        pre = self._preparse(raw) if plain else None
        if pre is not None:
            self.candidates.append((lineno, bytes(raw), tag, pre))
        else:
            self.candidates.append((lineno, bytes(raw), tag))

    def _preparse(self, raw: bytes) -> tuple[float | None, str, int, int] | None:
        """A plain line of the ticking format, read here as far as it is independent of
        what comes before it (see `KubeletHandler.preparse`); None: the parent reads it."""
        text = raw.decode("utf-8", "replace")
        if text.startswith("{"):
            return None
        m = _framed_klog(text)
        if m is not None and m.start(_SEV) >= 0 and m.group(1) in MONTHS:  # a klog line, year-less frame
            if process_of_ident(m.group(8)) != self.ticking:
                return None
            return self.ticker.preparse_match(text, m, _SEV)
        frame = None if m is None else frame_of(m, m.start(_SEV) if m.start(_SEV) >= 0 else m.end())
        if frame is not None:
            ident, _pid, end, ts = frame
            if ts is not None or process_of_ident(ident) != self.ticking:
                return None  # a dated frame teaches the time context: in order only
            pre = self.ticker.preparse(text[end:])
            return None if pre is None else (pre[0], pre[1], pre[2], end + pre[3])  # the body's start in the line
        if self.default is not None:
            proc = self.default
        else:
            proc = next((p for test, p in self.content_tests if test(text)), None)
        return self.ticker.preparse(text) if proc == self.ticking else None

    def payload(self, stats: ScanStats) -> dict[str, Any]:
        k = self.ticker
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
    fh: io.FileIO, bounds: list[int], shared: mmap.mmap, scanner: LineScanner, dispatcher: Any
) -> list[tuple[int, bytes]]:
    """The child's segments, each serialized as soon as it is read (marshal: plain data,
    same interpreter), so that little is left to do between its last segment and the
    parent's merge."""
    parts: list[tuple[int, bytes]] = []
    while True:
        k = shared[_BACK] - 1
        if k < shared[_FRONT]:
            return parts
        shared[_BACK] = k
        scanner.restore()
        if shared[CAPPED] and dispatcher.capped_tag is not None:
            scanner.drop_tag(dispatcher.capped_tag)
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
        payload = collector.payload(stats)
        if shared[CAPPED]:  # the parent keeps no more warnings: do not send them
            payload["candidates"] = [c for c in payload["candidates"] if c[2] != dispatcher.capped_tag]
        parts.append((k, marshal.dumps(payload)))


def scan_parallel(fh: io.FileIO, size: int, scanner: LineScanner, dispatcher: Any, stats: ScanStats) -> None:
    bounds = _segment_bounds(fh.fileno(), size)
    nseg = len(bounds) - 1
    if nseg < 2:
        scanner.scan(fh, dispatcher.on_line, stats, on_ticks=dispatcher.on_ticks, follow=dispatcher.wants_next)
        return
    shared = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous and MAP_SHARED: seen by parent and child
    shared[_FRONT] = 0
    shared[_BACK] = nseg
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # fewer round trips for the child's payload
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
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
            with os.fdopen(w, "wb") as out:
                out.write(marshal.dumps(parts))
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
        done_parts: dict[int, bytes] = dict(marshal.loads(data)) if status == 0 and data else {}
    finally:
        dispatcher.shared = None
        shared.close()
        if not done:
            import signal

            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    k = front.taken
    while k < nseg and k in done_parts and _merge(marshal.loads(done_parts[k]), dispatcher, stats):
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


def _merge(payload: dict[str, Any], dispatcher: Any, stats: ScanStats) -> bool:
    k = dispatcher.ticker
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
        if k.last_tick_ts >= 0 and abs(ts[0] - k.last_tick_ts) >= k.KEEP_TEXT_INTERVAL:
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
    severity = dispatcher.capped_tag
    for item in payload["candidates"]:
        lineno, raw, tag = item[0], item[1], item[2]
        if tag == severity and k.kept_records >= k.cap:
            continue  # warnings past the cap (the child could not know it was reached)
        if len(item) > 3 and k.multi is None:
            k.replay(offset + lineno, raw.decode("utf-8", "replace"), item[3])  # read ahead by the child
            continue
        dispatcher.on_line(offset + lineno, raw, tag)
    stats.lines = offset + payload["lines"]
    stats.candidates += len(payload["candidates"]) + len(ts)
    stats.binary_chunks += payload["binary"]
    stats.long_lines += payload["long"]
    return True
