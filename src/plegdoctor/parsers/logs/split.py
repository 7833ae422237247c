"""Big plain files: two processes read segments of the file. The parent reads them in file
order into the real evidence; a forked child starts `CHILD_START` of the way in and reads
ahead (relist ticks parsed, other candidate lines kept raw), sending each segment as soon as
it is read (a memfd for the data, a pipe for where it is); the parent replays the child's
segments in order as it reaches them, so the result is the sequential one, and a replay need
not wait for the child to finish everything. Whoever is faster reads more: a segment nobody took
is read by whoever reaches it, and a parent that would wait for the child reads the last free
segment out of order itself, so a busy core does not hold the other one up
(PLEG_DOCTOR_SCAN_WORKERS=1 reads sequentially). Used by `engine.run_log_parser` for journal
and kubelet inputs of `engine.SPLIT_MIN_BYTES` or more.
"""

from __future__ import annotations

import contextlib
import io
import marshal
import mmap
import os
import signal
import struct
from array import array
from typing import Any

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.model import InputReport, quote
from plegdoctor.parsers.logs.common import FRAMED_KLOG_RE, FRAMED_KLOG_SEV, MONTHS, frame_of, parse_journal_frame
from plegdoctor.parsers.logs.registry import process_of_ident
from plegdoctor.parsers.logs.scanner import TAG_FOLLOW, LineScanner, ScanStats, Ticker

SEGMENT_BYTES = 8 << 20
# Where the child starts (a fraction of the segments): the parent reads up to there at full
# parse cost and then replays the child's segments (~1/7 of what reading them cost); 0.42
# was the fastest of 0.33-0.5 on bench_logs_24h's 70 MB and 500 MB journals.
CHILD_START = 0.42
_framed_klog = FRAMED_KLOG_RE.match
_SEV = FRAMED_KLOG_SEV
# the shared page: the cap flag, the stop flag, then one byte per segment: who took it
CAPPED, _STOP, _STATE = 0, 1, 2
_FREE, _CHILD, _PARENT = 0, 1, 2
_NOTE = struct.Struct("<iQQ")  # a segment the child sent: index, offset and length in the memfd


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

    def on_ticks(self, buf: bytes, ends: list[int], pos: int, lineno: int) -> tuple[int, int]:
        return self.ticker.ticks(buf, ends, pos, lineno, self._slow_tick)

    def _slow_tick(self, lineno: int, raw: bytes) -> None:
        self.on_line(lineno, raw, self.tick_tag)

    def on_line(self, lineno: int, raw: bytes, tag: int) -> None:
        closed = not self.open  # no value can be open before this line
        if self.open or raw.endswith(b"=<"):
            self._track(raw)
        if tag == self.tick_tag and self.ticker.tick_fast(lineno, raw):
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

    def on_klog(self, lineno: int, raw: bytes, tag: int, ident: str, at: int, pid: int, body: int, e: float) -> None:
        """`on_line` of a line the compiled loop read as a journald-framed klog line (see
        `Dispatcher.on_klog`): a plain kubelet line outside any value is preparsed from what
        the loop read; any other goes to `on_line`."""
        if (
            self.open
            or tag in (self.capped_tag, self.tick_tag)
            or raw.endswith(b"=<")
            or process_of_ident(ident) != self.ticking
        ):
            self.on_line(lineno, raw, tag)
            return
        pre = self.ticker.preparse_read(raw.decode("utf-8", "replace"), at, pid, body, e)
        self.candidates.append((lineno, raw, tag) if pre is None else (lineno, raw, tag, pre))

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
            "first_text": None if k.first_tick_text is None else k.first_tick_text[:400].decode("utf-8", "replace"),
            "last_ts": k.last_tick_ts,
            "last_text": k.last_tick_text,
            "candidates": self.candidates,
            "lines": stats.lines,
            "binary": stats.binary_chunks,
            "long": stats.long_lines,
            "shift": self.resolver.shift,
        }


def _take(shared: mmap.mmap, k: int, who: int) -> bool:
    """Claim segment k if it is free. Not atomic: both processes may take the same segment
    (both read it); the parent then keeps its own reading and drops the child's."""
    if shared[_STATE + k] != _FREE:
        return False
    shared[_STATE + k] = who
    return True


def _collect(
    fh: io.FileIO, bounds: list[int], k: int, shared: mmap.mmap, scanner: LineScanner, dispatcher: Any
) -> dict[str, Any]:
    """Segment k read out of order (relist ticks parsed, other candidate lines kept raw)."""
    scanner.restore()
    if shared[CAPPED] and dispatcher.capped_tag is not None:
        scanner.drop_tag(dispatcher.capped_tag)
    collector = _Collector(dispatcher, scanner, dispatcher.path, shared)
    seg = ScanStats()
    scanner.scan(
        _Range(fh, bounds[k], bounds[k + 1]),
        collector.on_line,
        seg,
        on_ticks=collector.on_ticks,
        follow=collector.wants_next,
        ticker=Ticker(collector.ticker, collector._slow_tick, False, collector.on_klog),
        following=True,
    )
    payload = collector.payload(seg)
    if shared[CAPPED]:  # the parent keeps no more warnings: do not send them
        payload["candidates"] = [c for c in payload["candidates"] if c[2] != dispatcher.capped_tag]
    return payload


def _child(
    fh: io.FileIO, bounds: list[int], shared: mmap.mmap, scanner: LineScanner, dispatcher: Any, out: int, note: int
) -> None:
    """The child's work: from segment `CHILD_START` on, the first free segment after the last
    one it took (then the last free one before it), each written to `out` (a memfd) as
    soon as it is read and announced on the pipe `note` as (segment, offset, length)."""
    nseg = len(bounds) - 1
    cursor = int(nseg * CHILD_START)
    off = 0
    while not shared[_STOP]:
        k = next((i for i in range(cursor, nseg) if shared[_STATE + i] == _FREE), None)
        if k is None:
            k = next((i for i in range(min(cursor, nseg) - 1, -1, -1) if shared[_STATE + i] == _FREE), None)
        if k is None or not _take(shared, k, _CHILD):
            if k is None:
                return
            continue
        cursor = max(cursor, k + 1)
        data = marshal.dumps(_collect(fh, bounds, k, shared, scanner, dispatcher))  # plain data, same interpreter
        view = memoryview(data)
        while view:
            view = view[os.pwrite(out, view, off + len(data) - len(view)) :]
        os.write(note, _NOTE.pack(k, off, len(data)))  # 20 bytes: one atomic pipe write
        off += len(data)


class _Notes:
    """The parent's side of the child's pipe: where each segment the child sent is."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sent: dict[int, tuple[int, int]] = {}
        self.eof = False
        self._buf = b""

    def read(self, wait: bool) -> None:
        if self.eof:
            return
        os.set_blocking(self.fd, wait)
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
            return
        self._buf += data
        n = len(self._buf) // _NOTE.size * _NOTE.size
        for k, off, length in _NOTE.iter_unpack(self._buf[:n]):
            self.sent[k] = (off, length)
        self._buf = self._buf[n:]


def scan_parallel(fh: io.FileIO, size: int, scanner: LineScanner, dispatcher: Any, stats: ScanStats) -> None:
    bounds = _segment_bounds(fh.fileno(), size)
    nseg = len(bounds) - 1
    memfd = -1
    if nseg >= 2:
        with contextlib.suppress(AttributeError, OSError):
            memfd = os.memfd_create("pleg-doctor-split", os.MFD_CLOEXEC)
    if memfd < 0:
        dispatcher.scan(scanner, fh, stats)
        return
    shared = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous and MAP_SHARED: seen by parent and child
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (r, w, memfd):
            os.close(fd)
        shared.close()
        dispatcher.scan(scanner, fh, stats)
        return
    if pid == 0:  # child: never returns
        code = 1
        try:
            os.close(r)
            _child(fh, bounds, shared, scanner, dispatcher, memfd, w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    dispatcher.shared = shared
    notes = _Notes(r)
    try:
        warm_up = dispatcher.ctx.options.get("while_scanning")
        if callable(warm_up):  # work of the caller's that the child's segments make up for
            with contextlib.suppress(Exception):
                warm_up()
        _parent(fh, bounds, shared, scanner, dispatcher, stats, notes, memfd)
    finally:
        dispatcher.shared = None
        shared[_STOP] = 1
        with contextlib.suppress(OSError):  # what it still reads is not needed any more
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
        shared.close()
        os.close(r)
        os.close(memfd)


def _parent(
    fh: io.FileIO,
    bounds: list[int],
    shared: mmap.mmap,
    scanner: LineScanner,
    dispatcher: Any,
    stats: ScanStats,
    notes: _Notes,
    memfd: int,
) -> None:
    """Segments in file order into the real evidence: a free one is read here; one the child
    read is merged (`_merge`) as soon as it has been sent; while the next one is still being
    read by the child, the parent reads the last free segment out of order (as the child
    would) or waits for the child. A merge that cannot be done (a klog year rollover, a time
    jump across a cut) makes the parent read that segment and all after it itself."""
    nseg = len(bounds) - 1
    own: dict[int, dict[str, Any]] = {}  # segments the parent read out of order
    spare: LineScanner | None = None
    in_order = False  # a merge failed: read everything from here on
    k = 0
    while k < nseg:
        payload: dict[str, Any] | None = None
        if in_order:
            pass
        elif k in own:
            payload = own.pop(k)
        elif k in notes.sent:
            off, length = notes.sent.pop(k)
            payload = marshal.loads(_pread_all(memfd, length, off))
        elif not (_take(shared, k, _PARENT) or notes.eof):
            notes.read(wait=False)
            if k in notes.sent:
                continue
            u = next((i for i in range(nseg - 1, k, -1) if shared[_STATE + i] == _FREE), None)
            if u is not None and _take(shared, u, _PARENT):
                if spare is None:
                    spare = LineScanner(scanner.all_needles, tick_tag=scanner.tick_tag)
                own[u] = _collect(fh, bounds, u, shared, spare, dispatcher)
            else:
                notes.read(wait=True)  # the child is reading k: wait for it (or its exit)
            continue
        if payload is not None and _merge(payload, dispatcher, stats):
            k += 1
            continue
        if payload is not None:
            in_order = True
            shared[_STOP] = 1
        seg = ScanStats()
        dispatcher.scan(
            scanner, _Range(fh, bounds[k], bounds[k + 1]), seg, following=dispatcher.wants_next(), lineno=stats.lines
        )
        stats.lines = seg.lines
        stats.candidates += seg.candidates
        stats.binary_chunks += seg.binary_chunks
        stats.long_lines += seg.long_lines
        k += 1


def _pread_all(fd: int, length: int, off: int) -> bytes:
    parts = []
    while length > 0:
        data = os.pread(fd, length, off)
        if not data:
            raise OSError("short read of a forked reader's segment")
        parts.append(data)
        length -= len(data)
        off += len(data)
    return b"".join(parts)


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
