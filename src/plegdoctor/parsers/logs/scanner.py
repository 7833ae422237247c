"""The chunked candidate-line scanner of the log engine.

It is what keeps a 500 MB kubelet log cheap: it reads the input in 1 MiB binary chunks,
finds *candidate* lines with one multi-literal search over each chunk (Hyperscan when
installed, else one `bytes.find` loop per needle), counts newlines only to number those
lines (StringZilla's SIMD count when installed, else `bytes.count`), and decodes and
parses nothing else. Formats say what is interesting with needles; a format that must see
every line (containerd) asks for all lines instead.
"""

from __future__ import annotations

import io
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import msgspec

from plegdoctor import native
from plegdoctor.parsers.logs import lines as lines_mod

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext

try:  # Hyperscan: one pass over a chunk for all needles (several times faster than N finds).
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised when the wheel is missing
    _hs = None  # type: ignore[assignment]
# the compiled candidate loop (src/plegdoctor/_fastscan.c) when the install built it (benches
# and tests compare both loops)
_fast = native.fast
CHUNK = 1 << 20  # small enough to stay in the L2/L3 cache between the scan and the counts
MAX_LINE = 64 << 20  # a longer line is skipped with a warning (same limit as plegdoctor.inputs)

# Tags the engine itself uses (format modules use 0..9 and 12..31, see their needles).
TAG_IDENT = 10  # a line of another unit, found by its journald identifier
TAG_JSON = 11  # a JSON line (journalctl -o json entry, kubelet JSON logging)

TAG_FOLLOW = -2  # tag of a line delivered because the parser asked for the next line
_TAG_BITS = 5  # matches are ints: end offset << _TAG_BITS | tag (tags 0..31)


class Needle(msgspec.Struct, frozen=True):
    """A substring marking an interesting line (with `line_start`, only at the start of
    a line; with `regex`, a bytes regex valid for both Hyperscan and `re`, matched in
    multi-line mode: slower, avoid). `tag` (0..31) is handed back to the parser with the line."""

    pattern: bytes
    tag: int
    regex: bool = False
    line_start: bool = False  # a literal that must start a line


class Ticker(NamedTuple):
    """What the compiled loop reads relist ticks through, besides `on_ticks`: the handler
    (`kubelet_ticks.RelistTicks`), the callable for a tick line it does not take (the same
    one the handler's `ticks` is given), and whether an open multi-line value sends ticks
    to that callable (the dispatcher's `on_ticks` does so; a forked reader's does not)."""

    handler: Any
    slow: Callable[[int, bytes], None]
    check_multi: bool
    # `on_line` of a line the compiled loop read as a journald-framed klog line, with what
    # it read: (lineno, line, tag, identifier, severity at, pid, body at, epoch); see
    # _fastscan_klog.c. None: every candidate line goes to `on_line`.
    klog: Callable[[int, bytes, int, str, int, int, int, float], None] | None = None


TicksHandler = Callable[[bytes, list[int], int, int], tuple[int, int]]  # see LineScanner: on_ticks
_Built = tuple[Any, list[tuple[Any, int, bool]], list[tuple[bytes, int]]]
_BUILT: dict[tuple[tuple[bytes, int, bool, bool], ...], _Built] = {}


class ScanStats:
    __slots__ = ("binary_chunks", "candidates", "lines", "long_lines")

    def __init__(self) -> None:
        self.lines = 0
        self.candidates = 0
        self.long_lines = 0
        self.binary_chunks = 0


class LineScanner:
    """Delivers candidate lines (1-based line number, raw bytes without newline, tag) of
    a binary stream. With `needles=None` every line is a candidate (tag -1).

    Hot-path options of `scan`:
    - `on_ticks(buf, ends, pos, lineno) -> (pos, lineno)`: lines whose tag is `tick_tag` are
      not delivered one by one but in batches: `ends` = where the tick needle ends in each
      (sorted; rarely two in one line), `lineno` = the lines that end before `pos`; it
      returns the same pair for a later place it counted lines to. A batch is handed over
      before any other line, so the parser still sees all lines in file order.
    - `follow()`: asked after each line given to `on_line`; while it returns True, the
      following lines are delivered too (tag TAG_FOLLOW), needles or not. This is how a
      multi-line value is read without a needle for every continuation line.
    """

    def __init__(self, needles: Sequence[Needle] | None, *, tick_tag: int | None = None) -> None:
        self.all_needles = list(needles) if needles is not None else None
        self.needles = self.all_needles
        self.tick_tag = tick_tag
        self._dbs: dict[frozenset[int], tuple[Any, list[tuple[Any, int, bool]], list[tuple[bytes, int]]]] = {}
        self._dropped: frozenset[int] = frozenset()
        self._on_ticks: TicksHandler | None = None
        self._follow: Callable[[], bool] | None = None
        self._following = False
        self._ticker: Ticker | None = None
        self._compile()

    def drop_tag(self, tag: int) -> None:
        """Stop looking for needles with `tag` (from the next chunk on)."""
        if self.needles is None or tag in self._dropped or all(n.tag != tag for n in self.needles):
            return
        self._dropped = self._dropped | {tag}
        self._compile()

    def restore(self) -> None:
        """Look for all needles again (after `drop_tag`)."""
        if self._dropped:
            self._dropped = frozenset()
            self._compile()

    def _compile(self) -> None:
        if self.all_needles is None:
            self.needles = None
            return
        self.needles = [n for n in self.all_needles if n.tag not in self._dropped]
        cached = self._dbs.get(self._dropped)
        if cached is None:
            key = tuple((n.pattern, n.tag, n.regex, n.line_start) for n in self.needles)
            cached = _BUILT.get(key)  # one compile per needle set per process (archives: per member)
            if cached is None:
                cached = _BUILT[key] = self._build(self.needles)
            self._dbs[self._dropped] = cached
        self._db, self._fallback, self._line_starts = cached

    @staticmethod
    def _build(needles: list[Needle]) -> tuple[Any, list[tuple[Any, int, bool]], list[tuple[bytes, int]]]:
        db: Any = None
        fallback: list[tuple[Any, int, bool]] = []
        for n in needles:
            if not 0 <= n.tag < 1 << _TAG_BITS:
                raise ValueError(f"needle tag out of range: {n.tag}")
        if needles and _hs is not None:
            db = _hs.Database()
            db.compile(
                expressions=[_hs_expression(n) for n in needles],
                ids=[n.tag for n in needles],  # the id reported is the tag itself
                elements=len(needles),
                flags=[_hs.HS_FLAG_MULTILINE] * len(needles),
            )
        elif needles:
            for n in needles:
                if n.regex:
                    fallback.append((re.compile(n.pattern, re.M), n.tag, True))
                else:
                    fallback.append((b"\n" + n.pattern if n.line_start else n.pattern, n.tag, False))
        return db, fallback, [(n.pattern, n.tag) for n in needles if n.line_start]

    def _matches(self, buf: bytes, start: int, end: int) -> list[int]:
        """`end offset << _TAG_BITS | tag` of all needle matches in buf[start:end], sorted."""
        out: list[int] = []
        if not self.needles:
            return out
        for pat, tag in self._line_starts:  # "\n" + literal misses the region's first line
            if buf.startswith(pat, start):
                out.append((start + len(pat)) << _TAG_BITS | tag)
        append = out.append
        if self._db is not None:
            if start == 0 and end == len(buf):

                def on_match(tag: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                    append(to << _TAG_BITS | tag)

                self._db.scan(buf, match_event_handler=on_match)
            else:

                def on_match(tag: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                    append((to + start) << _TAG_BITS | tag)

                self._db.scan(memoryview(buf)[start:end], match_event_handler=on_match)
        else:
            for pat, tag, is_re in self._fallback:
                if is_re:
                    out.extend(m.end() << _TAG_BITS | tag for m in pat.finditer(buf, start, end))
                    continue
                find = buf.find
                ln = len(pat)
                i = find(pat, start, end)
                while i != -1:
                    append((i + ln) << _TAG_BITS | tag)
                    i = find(pat, i + ln, end)
        out.sort()
        return out

    def _process(
        self,
        buf: bytes,
        start: int,
        end: int,
        lineno: int,
        on_line: Callable[[int, bytes, int], None],
        stats: ScanStats,
    ) -> int:
        if self.needles is None:
            return self._every_line(buf, start, end, lineno, on_line, stats)
        return self._candidates(buf, start, end, lineno, on_line, stats)

    def scan(
        self,
        stream: BinaryIO | io.RawIOBase,
        on_line: Callable[[int, bytes, int], None],
        stats: ScanStats,
        *,
        on_ticks: TicksHandler | None = None,
        follow: Callable[[], bool] | None = None,
        following: bool = False,
        lineno: int = 0,
        ticker: Ticker | None = None,
    ) -> None:
        """Read `stream` to its end. Chunks are scanned in place (no copy); only a line cut
        by a chunk boundary is copied to be joined with the next chunk. `lineno`: lines
        before the stream's start; `following`: deliver the first lines as if `follow`
        had asked for them (a stream that starts inside a file). `ticker`: lets the
        compiled loop read the ticks itself (same evidence as `on_ticks`, see Ticker)."""
        self._on_ticks = on_ticks if self.tick_tag is not None else None
        self._ticker = ticker if self._on_ticks is not None else None
        self._follow = follow
        self._following = following and follow is not None
        carry = b""
        skipping = False  # inside a line longer than MAX_LINE
        # Candidate mode reads into one reused buffer (a fresh 1 MiB object per chunk
        # would make the allocator grow and trim its heap, a page fault per 4 KiB).
        readinto = getattr(stream, "readinto", None) if self.needles is not None else None
        buf = bytearray(CHUNK) if readinto is not None else b""
        read = stream.read
        while True:
            if readinto is not None:
                size = readinto(buf)
                if not size:
                    break
                block: bytes | bytearray = buf
            else:
                block = read(CHUNK)
                if not block:
                    break
                size = len(block)
            start = 0
            if skipping:
                nl = block.find(b"\n", 0, size)
                if nl == -1:
                    continue
                start = nl + 1
                skipping = False
                lineno += 1
            if block.find(b"\x00", 0, size) != -1:
                stats.binary_chunks += 1
            if carry:
                nl = block.find(b"\n", start, size)
                if nl == -1:
                    carry += block[start:size]
                    if len(carry) > MAX_LINE:
                        stats.long_lines += 1
                        carry = b""
                        skipping = True
                    continue
                head = carry + block[start : nl + 1]
                carry = b""
                lineno = self._process(head, 0, len(head), lineno, on_line, stats)
                start = nl + 1
            cut = block.rfind(b"\n", start, size)
            if cut == -1:
                carry = bytes(block[start:size])
                if len(carry) > MAX_LINE:
                    stats.long_lines += 1
                    carry = b""
                    skipping = True
                continue
            lineno = self._process(block, start, cut + 1, lineno, on_line, stats)  # type: ignore[arg-type]
            carry = bytes(block[cut + 1 : size])
        if skipping:
            lineno += 1
        if carry:  # the last line has no newline
            carry += b"\n"
            lineno = self._process(carry, 0, len(carry), lineno, on_line, stats)
        stats.lines = lineno

    @staticmethod
    def _every_line(
        buf: bytes, start: int, end: int, lineno: int, on_line: Callable[[int, bytes, int], None], stats: ScanStats
    ) -> int:
        pos = start
        find = buf.find
        first = lineno
        while pos < end:
            nl = find(b"\n", pos, end)
            lineno += 1
            line = buf[pos:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            on_line(lineno, line, -1)
            pos = nl + 1
        stats.candidates += lineno - first
        stats.lines = lineno
        return lineno

    def _follow_lines(
        self,
        buf: bytes,
        pos: int,
        end: int,
        lineno: int,
        on_line: Callable[[int, bytes, int], None],
        matches: list[int],
    ) -> tuple[int, int]:
        """Deliver the lines from `pos` on while the parser asks for them; (new pos, lineno).
        A line hit by needles keeps their smallest tag, any other comes as TAG_FOLLOW."""
        follow = self._follow
        assert follow is not None
        find = buf.find
        mask = (1 << _TAG_BITS) - 1
        while pos < end:
            nl = find(b"\n", pos, end)
            lineno += 1
            line = bytes(buf[pos:nl])
            tag = TAG_FOLLOW
            i = bisect_left(matches, (pos + 1) << _TAG_BITS)  # matches ending in this line
            last = nl << _TAG_BITS | mask
            while i < len(matches) and matches[i] <= last:
                t = matches[i] & mask
                tag = t if tag == TAG_FOLLOW or t < tag else tag
                i += 1
            on_line(lineno, line[:-1] if line.endswith(b"\r") else line, tag)
            pos = nl + 1
            if not follow():
                self._following = False
                return pos, lineno
        self._following = True  # the next region starts with a line asked for
        return pos, lineno

    def _candidates(
        self,
        buf: bytes,
        start: int,
        end: int,
        lineno: int,
        on_line: Callable[[int, bytes, int], None],
        stats: ScanStats,
    ) -> int:
        matches = self._matches(buf, start, end)
        count = lines_mod.count_sub
        rfind = buf.rfind
        find = buf.find
        on_ticks = self._on_ticks
        follow = self._follow
        tick_tag = self.tick_tag if on_ticks is not None and self.tick_tag is not None else -1
        ticks: list[int] = []  # where the tick needle ends in each tick line not handed over yet
        counted_to = start  # `cur` = lines that end before counted_to
        cur = lineno
        n = 0
        skip_to = start  # matches ending at or before this lie in lines already delivered
        if self._following:
            skip_to, cur = self._follow_lines(buf, start, end, cur, on_line, matches)
            n += cur - lineno
            counted_to = skip_to
        ticker = self._ticker
        if _fast is not None and (on_ticks is None or ticker is not None):
            cur, more = _fast.scan_matches(
                buf,
                start,
                end,
                matches,
                skip_to,
                counted_to,
                cur,
                tick_tag,
                on_line,
                follow,
                lambda pos, first: self._follow_lines(buf, pos, end, first, on_line, matches),
                None if ticker is None else ticker.handler,
                None if ticker is None else ticker.slow,
                ticker is not None and ticker.check_multi,
                None if ticker is None else ticker.klog,
            )
            stats.lines = cur
            stats.candidates += n + more
            return cur
        # Several needles may hit one line: deliver it once, with the smallest tag. The tick
        # tag is the smallest: a line the tick needle hits is a tick line, whatever else it holds.
        pend_start = -1  # the line to deliver once the next line with a match is found
        pend_end = -1
        pend_tag = 0
        last_tick = -1  # needle end of the latest tick, until a match in a later line
        mask = (1 << _TAG_BITS) - 1
        for code in chain(matches, (_END_TO << _TAG_BITS | (tick_tag == 0),)):  # a sentinel, not a tick
            to = code >> _TAG_BITS
            if to <= skip_to:
                continue
            tag = code & mask
            if tag == tick_tag:
                if pend_start < 0:
                    ticks.append(to)
                    last_tick = to
                    continue
                if to <= pend_end:  # the pending line holds the tick needle: a tick line
                    pend_start = -1
                    ticks.append(to)
                    last_tick = to
                    continue
            elif to <= pend_end:
                if tag < pend_tag:
                    pend_tag = tag
                continue
            elif last_tick >= 0:
                if to != _END_TO and find(b"\n", last_tick, to) == -1:
                    continue  # in the latest tick's line
                last_tick = -1
            if pend_start >= 0:  # a match in a later line: deliver the pending line
                if ticks:  # after the ticks before it
                    counted_to, cur = on_ticks(buf, ticks, counted_to, cur)  # type: ignore[misc]
                    n += len(ticks)
                    ticks = []
                cur += count(buf, b"\n", counted_to, pend_start)
                counted_to = pend_start
                n += 1
                line = bytes(buf[pend_start:pend_end])  # buf may be the scanner's bytearray
                on_line(cur + 1, line[:-1] if line.endswith(b"\r") else line, pend_tag)
                pend_start = -1
                if follow is not None and follow():
                    first = cur + 1
                    counted_to, cur = self._follow_lines(buf, pend_end + 1, end, first, on_line, matches)
                    n += cur - first
                    skip_to = counted_to
                    if to <= skip_to:
                        continue
            if to == _END_TO:
                break
            if tag == tick_tag:
                ticks.append(to)
                last_tick = to
                continue
            ls = rfind(b"\n", start, to)
            pend_start = ls + 1 if ls != -1 else start
            pend_end = find(b"\n", to - 1 if to > start else start, end)
            pend_tag = tag
        if ticks:
            counted_to, cur = on_ticks(buf, ticks, counted_to, cur)  # type: ignore[misc]
            n += len(ticks)
        cur += count(buf, b"\n", counted_to, end)
        stats.lines = cur
        stats.candidates += n
        return cur


_END_TO = (1 << 62) - 1  # needle end of the sentinel match that closes the region's matches


def _hs_expression(n: Needle) -> bytes:
    if n.regex:
        return n.pattern
    return re.escape(b"\n" + n.pattern if n.line_start else n.pattern)


def finish_report(ctx: ParseContext, stats: ScanStats, what: str) -> None:
    """Warnings common to all log parsers (binary data, overlong lines, nothing found)."""
    if stats.binary_chunks:
        ctx.report.warn(
            f"input contains binary data (NUL bytes in {stats.binary_chunks} chunk(s)); skipped what did not parse"
        )
    if stats.long_lines:
        ctx.report.warn(f"{stats.long_lines} line(s) longer than {MAX_LINE >> 20} MiB skipped")
    if stats.lines == 0:
        ctx.report.warn(f"empty input: no {what} lines")
