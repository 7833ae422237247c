"""The line scanner: canonical dump lines (raw `runtime.Stack` text) -> goroutines -> dumps.

Canonical lines are what Go prints: headers and function lines at column 0, file lines
starting with a TAB, blank separators; pasted text is brought to this form first
(pasted.py), and prose lines are passed with the `TEXT` prefix (they end an excerpt).

The scanner is a state machine over `ScanState` (one state per line, named), and builds the
open goroutine in a slotted `builder.GoroutineBuilder`. One loop over the lines dispatches
on the first character, with no regular expression per line; file lines, locations and
whole stacks are interned (builder.Caches), so 10^5 goroutines of a convoy share one stack.
A header met outside a goroutine first goes to `bulk.read_blocks`, which takes the
goroutines that follow whole when their stacks were seen before.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from itertools import islice
from typing import Any

from plegdoctor.goroutines.builder import DumpAssembly, GoroutineBuilder
from plegdoctor.goroutines.bulk import read_blocks, remember
from plegdoctor.goroutines.flags import ELIDED, GAP, GP_HEADER, HEADERLESS, ONE_LINE, PROFILE, TRUNCATED
from plegdoctor.goroutines.lines import (
    BEGIN_MARK,
    END_MARK,
    TEXT,
    broken_header,
    parse_file_line,
    parse_header,
    parse_state,
    small_int,
)
from plegdoctor.goroutines.model import ARG_SEP, UNKNOWN_STATE, Goroutine, Loc

MAX_RECORD_COUNT = 2_000_000  # a pprof record claiming more goroutines is counted as 1
# Goroutines built from counted records (pprof `N @`, `uniq -c`) per input (all its dumps): a 100-byte record of
# 1,999,999 took 25 s and 1.3 GB; past this budget a record keeps what is left and says so.
MAX_EXPANDED = 100_000

LineMap = Callable[[int], int]

_tuple_new = tuple.__new__


class ScanState(IntEnum):
    """Where the scanner is, between two lines."""

    OUTSIDE = 0  # no goroutine open
    ORPHAN = 1  # no goroutine open; a function-like line is held (a file line next: a headerless fragment)
    SKIP = 2  # a section that is not goroutines: `runtime stack:`, an unreadable header's goroutine,
    # `[originating from goroutine N]:` ancestors (the goroutine stays open); ends at a blank line
    FRAMES = 3  # in a goroutine, between frames
    FUNC = 4  # in a goroutine: a function line waits for its file line
    CREATED = 5  # in a goroutine: `created by X` waits for its file line


OUTSIDE, ORPHAN, SKIP, FRAMES, FUNC, CREATED = tuple(ScanState)


class Scanner(DumpAssembly):
    """Scans canonical lines of one process's stream into that stream's dumps."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.g: GoroutineBuilder | None = None
        self.state = OUTSIDE
        self.pend = ""  # the function line (FUNC) or `created by` function (CREATED) waiting for its file line
        self.pend_ln = 0
        self.orphan = ""  # the held function-like line (ORPHAN)
        self.orphan_ln = 0

    # -- the hot loop

    def scan(self, lines: list[str], base: int, lnmap: int | list[int] | LineMap | None = None) -> None:
        """Consume canonical `lines`; line i is source line `base + i` (lnmap None), the
        constant `lnmap` (int: a one-line dump), `lnmap[i]` (list) or `lnmap(i)`."""
        caches = self.caches
        files = caches.files
        one_line = ONE_LINE if isinstance(lnmap, int) else 0
        direct = lnmap is None

        def ln(i: int) -> int:
            if lnmap is None:
                return base + i
            if isinstance(lnmap, int):
                return lnmap
            if isinstance(lnmap, list):
                return lnmap[i]
            return lnmap(i)

        state = self.state
        g: Any = self.g  # GoroutineBuilder | None (Any: the state says which, mypy cannot)
        pend = self.pend
        pend_ln = self.pend_ln
        locs: list[Loc] = g.locs if g is not None else []
        args: list[str] = g.args if g is not None else []
        idx = -1
        it = iter(lines)
        for line in it:
            idx += 1
            if state == FUNC:
                # the common case first: the file line of a function line
                if line and line[0] == "\t":
                    loc = files.get(line)
                    if loc is not None:
                        n = len(loc[0])
                        if not pend.startswith("(", n) or not pend.startswith(loc[0]):
                            loc = self._new_loc(pend, line)
                            n = len(loc[0])
                    else:
                        loc = self._new_loc(pend, line)
                        n = len(loc[0])
                    if loc[2] == 0:
                        self.problem(
                            base + idx if direct else ln(idx), f"unreadable file line in goroutine {g.id}", line
                        )
                        g.flags |= TRUNCATED
                    locs.append(loc)
                    if pend[-1] == ")":
                        args.append(pend[n + 1 : -1])
                    else:
                        args.append(pend[n + 1 :])
                        g.flags |= TRUNCATED
                    state = FRAMES
                    continue
            elif state == FRAMES and line:
                c = line[0]
                if c != "\t" and c != "g" and c != "c" and c != "." and c != TEXT and c != "[" and c != "=":
                    # the common case: a function line
                    p = line.find("(")
                    if p <= 0 or " " in line[:p]:
                        if not line.startswith("goroutine running on other thread"):
                            self.problem(
                                base + idx if direct else ln(idx), f"unrecognized line in goroutine {g.id}", line
                            )
                        continue
                    pend = line
                    pend_ln = base + idx if direct else ln(idx)
                    state = FUNC
                    continue
            if not line:
                if g is not None:
                    self.state, self.pend, self.pend_ln = state, pend, pend_ln
                    self._finish_goroutine(base + idx if direct else ln(idx))
                    g = None
                state = OUTSIDE
                continue
            c = line[0]
            if c == "\t":
                if state == SKIP:
                    continue
                if state == ORPHAN:
                    # frames with no header above them: a headerless fragment
                    g = self._start_synthetic(self.orphan_ln, HEADERLESS | one_line)
                    locs = g.locs
                    args = g.args
                    pend = self.orphan
                    pend_ln = self.orphan_ln
                    state = FUNC
                elif state != CREATED:  # OUTSIDE, FRAMES
                    if not line.startswith("\tgoroutine running on other thread"):
                        why = "file line without a function line" if g is not None else "frame outside a goroutine"
                        self.problem(base + idx if direct else ln(idx), why, line)
                    continue
                loc = files.get(line)
                if state == CREATED:
                    if loc is None or not pend.startswith(loc[0]) or len(pend) != len(loc[0]):
                        loc = self._new_loc(pend, line, created=True)
                    if loc[2] == 0:
                        self.problem(
                            base + idx if direct else ln(idx), f"unreadable file line in goroutine {g.id}", line
                        )
                        g.flags |= TRUNCATED
                    g.created = loc
                    state = FRAMES
                    continue
                if loc is not None:
                    n = len(loc[0])
                    if not pend.startswith("(", n) or not pend.startswith(loc[0]):
                        loc = self._new_loc(pend, line)
                        n = len(loc[0])
                else:
                    loc = self._new_loc(pend, line)
                    n = len(loc[0])
                if loc[2] == 0:
                    self.problem(base + idx if direct else ln(idx), f"unreadable file line in goroutine {g.id}", line)
                    g.flags |= TRUNCATED
                locs.append(loc)
                if pend[-1] == ")":
                    args.append(pend[n + 1 : -1])
                else:
                    args.append(pend[n + 1 :])
                    g.flags |= TRUNCATED
                state = FRAMES
                continue
            if c == "g" and line.startswith("goroutine "):
                if state == OUTSIDE and direct:
                    k = read_blocks(self, lines, idx, base)
                    if k:
                        if k > 1:
                            next(islice(it, k - 2, k - 1), None)
                        idx += k - 1
                        continue
                hdr = parse_header(line)
                if hdr is None and broken_header(line):
                    hdr = (None, "")  # skipped below, like an unreadable id
                if hdr is not None:
                    here = base + idx if direct else ln(idx)
                    if g is not None:
                        self.state, self.pend, self.pend_ln = state, pend, pend_ln
                        self._finish_goroutine(here)
                        g = None
                    gid, inner = hdr
                    if gid is None:
                        what = "id" if inner else "header"
                        self.problem(here, f"unreadable goroutine {what}: goroutine skipped", line)
                        state = SKIP
                        continue
                    if gid in self.ids:
                        self.state = OUTSIDE
                        self.finish_dump()
                    st = caches.states.get(inner)
                    if st is None:
                        st = parse_state(inner)
                        caches.states[inner] = st
                    flags = st[3] | one_line
                    if " gp=" in line:
                        flags |= GP_HEADER
                        self.gp_header = True
                    if not self.goroutines and not self.ids:
                        self.first_line = here
                    self.ids.add(gid)
                    g = self.g = GoroutineBuilder(gid, st[0], st[1], st[2], flags, here)
                    locs = g.locs
                    args = g.args
                    state = FRAMES
                    continue
            if g is None or state == SKIP:  # OUTSIDE, ORPHAN, SKIP
                if c == "=":
                    here = base + idx if direct else ln(idx)
                    if here > self.last_line:
                        self.last_line = here
                    skip = state == SKIP
                    self.state, self.pend, self.pend_ln = state, pend, pend_ln
                    self._marker(line)
                    g = self.g  # a marker closes the dump (and an ancestors section's goroutine)
                    state = SKIP if skip else OUTSIDE
                elif state == SKIP:
                    pass
                elif c == TEXT:
                    state = OUTSIDE
                elif line.startswith("runtime stack:"):
                    state = SKIP
                else:
                    p = line.find("(")
                    if p > 0 and " " not in line[:p] and c != "[":
                        self.orphan = line  # a headerless fragment if a file line follows
                        self.orphan_ln = base + idx if direct else ln(idx)
                        state = ORPHAN
                    else:
                        state = OUTSIDE
                continue
            if state != FRAMES:  # FUNC, CREATED: the previous function line got no file line
                if state == FUNC and not pend.endswith(")"):
                    self.problem(pend_ln, f"goroutine {g.id} is cut mid-line", pend)
                elif c != TEXT and c != ".":
                    self.problem(pend_ln, f"no file line after a function line in goroutine {g.id}", pend)
                self._frame_without_file(pend, state == CREATED, g)
                state = FRAMES
            if c == "c" and line.startswith("created by "):
                rest = line[11:]
                p = rest.find(" in goroutine ")
                if p >= 0:
                    g.parent = small_int(rest[p + 14 :])
                    rest = rest[:p]
                    self.created_in = True
                pend = caches.intern(rest)
                pend_ln = base + idx if direct else ln(idx)
                state = CREATED
                continue
            if c == ".":
                if line.endswith("elided..."):
                    g.flags |= ELIDED
                    if line.startswith("...additional"):
                        g.elided = -1
                    else:
                        num = small_int(line[3:].split(" ", 1)[0])
                        g.elided = -1 if num is None else num
                        self.elided_new = True
                    continue
                if line in ("...", "…"):
                    g.flags |= GAP
                    continue
            elif c == TEXT:
                # Prose after a pasted excerpt: the goroutine ends here.
                self.excerpt = True
                self.state, self.pend, self.pend_ln = state, pend, pend_ln
                self._finish_goroutine(base + idx if direct else ln(idx))
                g = None
                state = OUTSIDE
                continue
            elif c == "[" and line.startswith("[originating from goroutine"):
                state = SKIP
                continue
            elif c == "=":
                self.state, self.pend, self.pend_ln = state, pend, pend_ln
                self._finish_goroutine(base + idx if direct else ln(idx))
                g = None
                state = OUTSIDE
                self.state = state
                self._marker(line)
                continue
            p = line.find("(")
            if p <= 0 or " " in line[:p]:
                if not line.startswith("goroutine running on other thread"):
                    self.problem(base + idx if direct else ln(idx), f"unrecognized line in goroutine {g.id}", line)
                continue
            pend = line
            pend_ln = base + idx if direct else ln(idx)
            state = FUNC
        self.state = state
        self.pend = pend
        self.pend_ln = pend_ln
        if lines:
            self.last_line = max(self.last_line, ln(len(lines) - 1))

    def _new_loc(self, func_line: str, file_line: str, created: bool = False) -> Loc:
        caches = self.caches
        if created:
            func = func_line
        else:
            p = func_line.rfind("(")
            func = func_line[:p] if p > 0 else func_line
        parsed = parse_file_line(file_line)
        if parsed is None:
            fname, fline = caches.intern(file_line.strip()), 0
        else:
            fname, fline = caches.intern(parsed[0]), parsed[1]
        loc = (caches.intern(func), fname, fline)
        loc = caches.locs.setdefault(loc, loc)
        if " fp=" not in file_line and len(caches.files) < 200_000:
            remember(caches, file_line, loc, created)
        return loc

    def _frame_without_file(self, pend: str, created: bool, g: GoroutineBuilder) -> None:
        caches = self.caches
        if created:
            loc = (pend, "", 0)
            g.created = caches.locs.setdefault(loc, loc)
            return
        p = pend.rfind("(")
        func = pend[:p] if p > 0 else pend
        loc = (caches.intern(func), "", 0)
        loc = caches.locs.setdefault(loc, loc)
        g.locs.append(loc)
        if p > 0:
            g.args.append(pend[p + 1 : -1] if pend.endswith(")") else pend[p + 1 :])
        else:
            g.args.append("")
        g.flags |= TRUNCATED

    # -- goroutines the dump printed no header for

    def _start_synthetic(self, line: int, flags: int, count: int = 1) -> GoroutineBuilder:
        """Open a goroutine with no id or state of its own (a headerless fragment, a pprof
        debug=1 record of `count` goroutines); its ids are handed out when it closes."""
        if self.g is not None:
            self._finish_goroutine(line)
        if not self.goroutines and not self.ids:
            self.first_line = self.profile_line or line
        if flags & HEADERLESS:
            self.excerpt = True  # fragments may come from several processes
        g = self.g = GoroutineBuilder(None, UNKNOWN_STATE, None, False, flags, line, count)
        if self.state != SKIP:
            self.state = FRAMES
        return g

    def profile_record(self, line: int, count: int, headerless: bool) -> None:
        """A pprof debug=1 record starts: `N @ 0x..` (or, in a grep excerpt with no such
        line, its first `#\t0x..` frame line)."""
        self.flush_pending()
        if count > MAX_RECORD_COUNT:
            self.problem(line, f"pprof record of {count} goroutines: counted as 1")
            count = 1
        left = max(1, MAX_EXPANDED - self.expanded)
        if count > left:
            self.problem(
                line,
                f"record of {count} goroutines: {left} kept (at most {MAX_EXPANDED} per input from counted records)",
            )
            count = left
        self.expanded += count
        self.records += 1
        if self.meta.framing in ("raw", "pasted"):
            self.meta = self.meta.copy(framing="pprof-debug1")
        self._start_synthetic(line, PROFILE | (HEADERLESS if headerless else 0), count)

    def profile_labels(self, line: int) -> None:
        """`# labels: {...}` after a record header: frames start after it."""
        g = self.g
        if g is not None and g.flags & PROFILE and not g.locs and self.state not in (FUNC, CREATED):
            g.line = line

    def profile_header(self, line: int, total: int | None) -> None:
        """`goroutine profile: total N`: a new profile (and dump) starts."""
        self.flush_pending()
        if self.g is not None:
            self._finish_goroutine(line)
        if self.goroutines:
            self.finish_dump()
        self.first_line = self.profile_line = line
        self.profile_total = total

    def flush_pending(self) -> None:
        """A function line waiting for its file line gets none (end of a record)."""
        if self.g is not None and self.state in (FUNC, CREATED):
            self._frame_without_file(self.pend, self.state == CREATED, self.g)
            self.state = FRAMES

    def _marker(self, line: str) -> None:
        if line.startswith(BEGIN_MARK):
            if self.goroutines:
                self.finish_dump()
        elif line.startswith(END_MARK):
            self.finish_dump()

    def _finish_goroutine(self, line: int) -> None:
        g = self.g
        if g is None:
            return
        if line > self.last_line:
            self.last_line = line
        if self.state in (FUNC, CREATED):
            pend = self.pend
            self._frame_without_file(pend, self.state == CREATED, g)
            if not pend.endswith(")"):
                self.problem(self.pend_ln, f"goroutine {g.id} is cut mid-line", pend)
        stacks = self.caches.stacks
        stack = tuple(g.locs)
        stack = stacks.setdefault(stack, stack)
        gid = g.id
        if not stack and not g.flags & TRUNCATED:
            self.problem(g.line, f"goroutine {'without a header' if gid is None else gid} has no frames")
        args = ARG_SEP.join(g.args)
        if gid is None:
            # synthetic ids: a debug=1 record of N goroutines is N goroutines sharing a stack
            if stack:
                fields = [0, g.state, g.minutes, g.locked, stack, args, g.created, g.parent, g.line, g.flags, g.elided]
                for _ in range(g.count):
                    self.synth += 1
                    fields[0] = -self.synth
                    self.goroutines.append(_tuple_new(Goroutine, tuple(fields)))
        else:
            self.goroutines.append(
                _tuple_new(
                    Goroutine,
                    (gid, g.state, g.minutes, g.locked, stack, args, g.created, g.parent, g.line, g.flags, g.elided),
                )
            )
        self.g = None
        if self.state != SKIP:
            self.state = OUTSIDE

    def finish(self) -> None:
        """End of input: close the open goroutine and dump."""
        g = self.g
        if g is not None:
            if self.state in (FUNC, CREATED) and not self.pend.endswith(")"):
                g.flags |= TRUNCATED
            self._finish_goroutine(self.last_line)
        self.finish_dump()

    def finish_dump(self) -> None:
        if self.g is not None:
            self._finish_goroutine(self.last_line)
        self.close_dump()
