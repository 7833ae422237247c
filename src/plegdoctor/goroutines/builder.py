"""From goroutines to `Dump`s: what the framing says about a dump (`DumpMeta`), the interning
tables of one parse (`Caches`), and `DumpAssembly`, the dump-level half of the scanner
(scan.py): problems, notes, the Go version, the process a dump belongs to, and the split of
pasted excerpts that mix processes.

A goroutine knows its process from the framing, or else from its frames: the one registry
of import-path markers in goroutines/names.py (`infer_process`, matched on canonical names:
vendored, `/v2` and module-cache spellings alike).
"""

from __future__ import annotations

from datetime import datetime
from operator import attrgetter
from typing import Any

from msgspec.structs import replace

from plegdoctor.goroutines.flags import HEADERLESS, PROFILE
from plegdoctor.goroutines.lines import go_version
from plegdoctor.goroutines.model import MAX_PROBLEMS_KEPT, UNKNOWN_PROCESS, Dump, Goroutine, Loc, Problem
from plegdoctor.goroutines.names import infer_process

_STATE = attrgetter("state")
_STACK = attrgetter("stack")


class Caches:
    """Interning tables shared by every scanner of one parse: function names, file paths,
    locations and whole stacks repeat across goroutines and are stored once."""

    __slots__ = ("creators", "fast", "files", "known", "locs", "stacks", "states", "strings", "tails")

    def __init__(self) -> None:
        self.files: dict[str, Loc] = {}  # raw file line -> last location seen with it
        # the subset of `files` whose location came from a readable function line, with what
        # the bulk path (bulk.read_blocks) checks and cuts: (loc, "func(", slice of the args)
        self.fast: dict[str, tuple[Loc, str, slice]] = {}
        # whole stacks the bulk path has read: file lines -> (stack, "func(" checks, argument slices)
        self.known: dict[tuple[str, ...], tuple[tuple[Loc, ...], tuple[str, ...], tuple[slice, ...]]] = {}
        self.locs: dict[Loc, Loc] = {}
        self.stacks: dict[tuple[Loc, ...], tuple[Loc, ...]] = {}
        self.states: dict[str, tuple[str, int | None, bool, int]] = {}
        # (`created by` line, its file line) -> (location, parent id, `in goroutine N`) (bulk.read_blocks)
        self.creators: dict[tuple[str, str], tuple[Loc, int | None, bool]] = {}
        # header text after the id -> (parsed state, gp= header) (bulk._tail)
        self.tails: dict[str, tuple[tuple[str, int | None, bool, int], bool]] = {}
        self.strings: dict[str, str] = {}

    def intern(self, s: str) -> str:
        return self.strings.setdefault(s, s)


class DumpMeta:
    """What the framing says about the process of a dump."""

    __slots__ = ("dump_time", "framing", "namespace", "pid", "process", "process_source", "sandbox")

    def __init__(
        self,
        process: str | None = None,
        pid: int | None = None,
        sandbox: str | None = None,
        namespace: str | None = None,
        dump_time: datetime | None = None,
        framing: str = "raw",
        process_source: str = "caller",
    ) -> None:
        self.process = process
        self.pid = pid
        self.sandbox = sandbox
        self.namespace = namespace
        self.dump_time = dump_time
        self.framing = framing
        self.process_source = process_source

    def copy(self, **changes: Any) -> DumpMeta:
        new = DumpMeta(
            self.process, self.pid, self.sandbox, self.namespace, self.dump_time, self.framing, self.process_source
        )
        for k, v in changes.items():
            setattr(new, k, v)
        return new


class GoroutineBuilder:
    """The goroutine under construction (scan.py). `id` is None for a goroutine the dump
    printed no id for (its synthetic ids are handed out when it closes, `count` of them)."""

    __slots__ = (
        "args",
        "count",
        "created",
        "elided",
        "flags",
        "id",
        "line",
        "locked",
        "locs",
        "minutes",
        "parent",
        "state",
    )

    def __init__(
        self, gid: int | None, state: str, minutes: int | None, locked: bool, flags: int, line: int, count: int = 1
    ) -> None:
        self.id = gid
        self.state = state
        self.minutes = minutes
        self.locked = locked
        self.flags = flags
        self.line = line
        self.elided = 0
        self.count = count
        self.locs: list[Loc] = []
        self.args: list[str] = []
        self.created: Loc | None = None
        self.parent: int | None = None


def lines_text(lines: list[int]) -> str:
    return ", ".join(str(x) for x in lines[:10]) + (" ..." if len(lines) > 10 else "")


class DumpAssembly:
    """The dump under construction: its goroutines, problems and notes, and how it closes."""

    def __init__(self, source: str, meta: DumpMeta, caches: Caches, out: list[Dump], explicit_process: bool) -> None:
        self.source = source
        self.meta = meta
        self.caches = caches
        self.out = out
        self.explicit = explicit_process
        self.goroutines: list[Goroutine] = []
        self.ids: set[int] = set()
        self.problems: list[Problem] = []
        self.problem_count = 0
        self.first_line = 0
        self.last_line = 0
        self.created_in = False  # `created by X in goroutine N` (Go 1.21+)
        self.elided_new = False  # `...N frames elided...` (Go 1.21+)
        self.gp_header = False  # `goroutine N gp=0x.. m=..` (Go 1.22+)
        self.notes: list[str] = []
        self.excerpt = False  # goroutines were ended by prose (pasted excerpts)
        self.synth = 0  # synthetic ids handed out in this dump (-1, -2, ...)
        self.expanded = 0  # goroutines asked for by counted records in this input (MAX_EXPANDED)
        self.records = 0  # pprof debug=1 records
        self.profile_total: int | None = None  # `goroutine profile: total N`
        self.profile_line = 0  # its line

    def problem(self, line: int, reason: str, text: str = "") -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(Problem(line, reason, text[:200]))

    def close_dump(self) -> None:
        """Turn the goroutines gathered so far into `Dump`s (appended to `out`)."""
        if not self.goroutines:
            if self.problem_count:
                # problems without goroutines are kept for the "no goroutines" reason
                self.out.append(self._make_dump((), UNKNOWN_PROCESS, "frames"))
            self._reset_dump()
            return
        gs = tuple(self.goroutines)
        meta = self.meta
        funcs: set[str] = set()
        files: set[str] = set()
        paths: set[str] = set()
        states = set(map(_STATE, gs))
        for stack in {id(st): st for st in map(_STACK, gs)}.values():  # stacks are interned
            for loc in stack:
                funcs.add(loc[0])
                paths.add(loc[1])
            if stack:
                files.add(stack[-1][1])  # the outermost file: main.go paths name the binary
        gover = go_version(states, funcs, self.created_in, self.elided_new, self.gp_header)
        self._synthetic_notes()
        proc, score = infer_process(funcs, files, paths)
        process = meta.process
        source_of = meta.process_source
        if self.explicit and process is not None:
            self.out.append(self._make_dump(gs, process, source_of, meta, gover))
            self._reset_dump()
            return
        if self.excerpt and score > 0:
            # Pasted excerpts may mix processes (a ticket quoting containerd and a shim):
            # each goroutine with markers of its own goes to that process's dump.
            groups: dict[str, list[Goroutine]] = {}
            by_stack: dict[int, tuple[str, int]] = {}  # stacks are interned: one inference each
            for g in gs:
                inferred = by_stack.get(id(g.stack))
                if inferred is None:
                    inferred = by_stack[id(g.stack)] = infer_process(loc[0] for loc in g.stack)
                gp, gscore = inferred
                groups.setdefault(gp if gscore > 0 else proc, []).append(g)
            if len(groups) > 1:
                for i, (gp, members) in enumerate(groups.items()):
                    pmeta = meta if gp == process else meta.copy(pid=None)
                    dump = self._make_dump(tuple(members), gp, "frames", pmeta, gover)
                    if i:
                        dump = replace(dump, problems=(), problem_count=0)
                    self.out.append(dump)
                self._reset_dump()
                return
        if score > 0:
            if process is not None and process != proc and source_of in ("journald prefix", "journald fields"):
                # e.g. a shim's raw text relayed through containerd's stderr
                self.notes.append(f"frames say {proc}, the log prefix says {process}: frames win")
                meta = meta.copy(pid=None)
            process, source_of = proc, "frames"
        elif process is None:
            process, source_of = UNKNOWN_PROCESS, "unknown"
        self.out.append(self._make_dump(gs, process or UNKNOWN_PROCESS, source_of, meta, gover))
        self._reset_dump()

    def _synthetic_notes(self) -> None:
        gs = self.goroutines
        if self.records:
            total = sum(1 for g in gs if g.flags & PROFILE)
            runs = [g.line for g in gs if g.flags & PROFILE and g.flags & HEADERLESS]
            note = f"pprof goroutine profile (debug=1): {self.records} record(s) of {total} goroutine(s)"
            if runs:
                note += f", {len(runs)} of them frame runs without an 'N @' record line (line(s) {lines_text(runs)})"
            note += "; the format has no goroutine ids or states: synthetic (negative) ids, state unknown"
            if self.profile_total is not None and self.profile_total != total:
                note += f"; the profile header says total {self.profile_total} (an excerpt?)"
            self.notes.append(note)
        plain = [g.line for g in gs if g.flags & HEADERLESS and not g.flags & PROFILE]
        if plain:
            self.notes.append(
                f"{len(plain)} stack fragment(s) without a 'goroutine N [state]:' header (line(s) "
                f"{lines_text(plain)}): kept as goroutines with synthetic (negative) ids and state unknown"
            )

    def _make_dump(
        self,
        gs: tuple[Goroutine, ...],
        process: str,
        source_of: str,
        meta: DumpMeta | None = None,
        gover: str | None = None,
    ) -> Dump:
        meta = meta or self.meta
        return Dump(
            source=self.source,
            process=process,
            pid=meta.pid,
            goroutines=gs,
            # a dump of unreadable lines only (no header opened it) starts at its first problem
            first_line=self.first_line or min((p.line for p in self.problems), default=0),
            last_line=self.last_line,
            process_source=source_of,
            sandbox=meta.sandbox,
            namespace=meta.namespace,
            dump_time=meta.dump_time,
            framing=meta.framing,
            go_version=gover,
            problems=tuple(self.problems),
            problem_count=self.problem_count,
            notes=tuple(self.notes),
        )

    def _reset_dump(self) -> None:
        self.goroutines = []
        self.ids = set()
        self.problems = []
        self.problem_count = 0
        self.first_line = 0
        self.created_in = self.elided_new = self.gp_header = False
        self.notes = []
        self.excerpt = False
        self.synth = 0
        self.records = 0
        self.profile_total = None
        self.profile_line = 0
