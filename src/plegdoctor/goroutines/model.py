"""The data model of the goroutine engine: a parsed dump (Frame, Goroutine, Dump, Problem) and
its analysis (StackInfo, Hold, Wait, Bucket, GoroutineAnalysis; `Node` names a goroutine).

Designed for dumps of 10^5 goroutines: records are NamedTuples (immutable, created by a
C-level constructor, 8 bytes per field) rather than dataclasses, and everything that
repeats is shared. A goroutine keeps its stack as a tuple of interned *locations*
(function, file, line) that is itself interned (the 40 000 goroutines of a convoy share
one stack tuple), plus one tuple of raw argument strings; `Goroutine.frames` rebuilds
`Frame` records on demand. Comparison and similarity live on the types (panicparse's
style): `Goroutine.signature(level)` is the bucket key at a `Similarity` level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, NamedTuple

import msgspec

from plegdoctor.goroutines.flags import ELIDED, GAP, HEADERLESS, ONE_LINE, PROFILE, SCAN, SPACED, TRUNCATED
from plegdoctor.goroutines.tags import WaitKind
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Chain, Ref

# A code location, interned: (function, file, line). `file` is "" and `line` 0 when the
# file line was lost (pasted excerpt cut after the function line).
Loc = tuple[str, str, int]

# Ids of goroutines the dump printed no id for (PROFILE / HEADERLESS) are synthetic and
# negative: -1, -2, ... in source order, unique within their Dump (real ids are >= 0), so
# every (dump, id) key of the analysis stays unique. A debug=1 record of N goroutines
# (`N @ ...`) becomes N goroutines that share one stack (as N identical goroutines of a
# debug=2 dump would), each with its own synthetic id; their state is "unknown"
# (UNKNOWN_STATE) and `line` is the record's `N @` line (its `# labels:` line when it has
# one), or the first frame line of a headerless fragment, so `Dump.ref()` quotes real lines.
UNKNOWN_STATE = "unknown"


class Similarity(IntEnum):
    """How alike two goroutines must be to share a bucket (panicparse's ordered levels)."""

    EXACT_FLAGS = 0  # same state, stack, arguments and flags (locked to thread)
    EXACT_LINES = 1  # same state, stack and arguments
    ANY_POINTER = 2  # pointer-like argument values may differ
    ANY_VALUE = 3  # any argument value may differ

    @classmethod
    def parse(cls, name: str) -> Similarity:
        names = {"exact": cls.EXACT_FLAGS, "lines": cls.EXACT_LINES, "pointer": cls.ANY_POINTER, "value": cls.ANY_VALUE}
        return names[name]


_HEX_WORD = lazy_re(r"0x[0-9a-f]+\??")
# Go heap/stack/data pointers on amd64/arm64 are >= 1 MiB; smaller words are values
# (lengths, flags, small ints). panicparse uses the same kind of threshold.
_POINTER = lazy_re(r"0x[0-9a-f]{6,}\??")


class Frame(NamedTuple):
    """One call: `func(args)` and its `file:line`. `args` is the raw text between the
    parentheses: "..." for inlined frames, words ending in "?" are inaccurate (the
    register ABI value may be stale, Go 1.17+)."""

    func: str
    args: str
    file: str
    line: int

    @property
    def inlined(self) -> bool:
        return self.args == "..."

    @property
    def args_inaccurate(self) -> tuple[bool, ...]:
        """Per top-level argument word: True where Go printed a trailing `?`."""
        return tuple(w.endswith("?") for w in split_args(self.args))

    @property
    def receiver(self) -> str | None:
        """The first argument word when it is an accurate hex value (a method's receiver
        or a function's first pointer), else None."""
        return accurate_first_word(self.args)

    @property
    def package(self) -> str:
        return package_of(self.func)

    @property
    def short_func(self) -> str:
        return short_func(self.func)


def split_args(args: str) -> list[str]:
    """Top-level argument words of `args` (aggregates `{...}` kept whole)."""
    if not args or args == "...":
        return []
    out: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(args):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(args[start:i].strip())
            start = i + 1
    out.append(args[start:].strip())
    return out


def accurate_first_word(args: str) -> str | None:
    if not args or args[0] != "0":
        return None
    end = args.find(",")
    word = args if end < 0 else args[:end]
    word = word.strip()
    if word.endswith("?") or not word.startswith("0x"):
        return None
    return word


def package_of(func: str) -> str:
    """Import path of a function name: `github.com/a/b/pkg.(*T).M` -> `github.com/a/b/pkg`."""
    slash = func.rfind("/")
    dot = func.find(".", slash + 1)
    return func if dot < 0 else func[:dot]


def short_func(func: str) -> str:
    """Last path element plus the rest: `github.com/a/b/pkg.(*T).M` -> `pkg.(*T).M`."""
    slash = func.rfind("/", 0, func.find(".(") if ".(" in func else len(func))
    return func[slash + 1 :]


def normalize_args(args: str, level: Similarity) -> str:
    """The argument text as compared at `level`."""
    if level <= Similarity.EXACT_LINES or not args or args == "...":
        return args
    if level == Similarity.ANY_POINTER:
        return _POINTER.sub("*", args)
    return _HEX_WORD.sub("*", args)


ARG_SEP = "\n"  # between the argument texts of `Goroutine.argtext` (never inside a dump line)


class Goroutine(NamedTuple):
    """One goroutine of a dump. `stack` is innermost first; `args[i]` belongs to
    `stack[i]` (kept as one string, `argtext`, the texts joined by ARG_SEP: one object per
    goroutine instead of one per frame). `wait_minutes` is None when the header printed no
    minutes (running, or blocked < 1 minute). `line` is the source line of the header."""

    id: int
    state: str
    wait_minutes: int | None
    locked: bool
    stack: tuple[Loc, ...]
    argtext: str
    created_by: Loc | None
    parent_id: int | None
    line: int
    flags: int = 0
    elided: int = 0  # frames elided: N for "...N frames elided...", -1 for "additional"

    @property
    def args(self) -> tuple[str, ...]:
        """The argument text of each frame (`args[i]` belongs to `stack[i]`)."""
        return tuple(self.argtext.split(ARG_SEP)) if self.stack else ()

    def arg(self, index: int) -> str:
        """`args[index]`, without splitting the others."""
        if not 0 <= index < len(self.stack):
            raise IndexError(index)
        return self.argtext.split(ARG_SEP, index + 1)[index]

    @property
    def frames(self) -> tuple[Frame, ...]:
        return tuple(Frame(loc[0], a, loc[1], loc[2]) for loc, a in zip(self.stack, self.args, strict=False))

    def frame(self, index: int) -> Frame:
        loc = self.stack[index]
        return Frame(loc[0], self.arg(index), loc[1], loc[2])

    @property
    def funcs(self) -> tuple[str, ...]:
        return tuple(loc[0] for loc in self.stack)

    @property
    def top(self) -> str:
        return self.stack[0][0] if self.stack else ""

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TRUNCATED)

    @property
    def scan(self) -> bool:
        return bool(self.flags & SCAN)

    @property
    def synthetic_id(self) -> bool:
        """True when the dump printed no id for this goroutine (PROFILE / HEADERLESS)."""
        return self.id < 0

    def header_text(self) -> str:
        """The header line as Go prints it (used to quote evidence); for goroutines without
        one (pprof debug=1 records, headerless fragments) a description that says so."""
        if self.id < 0:
            what = "pprof debug=1 record" if self.flags & PROFILE else "stack fragment without a goroutine header"
            return f"{what} (synthetic id {self.id}, state unknown):"
        parts = [self.state + (" (scan)" if self.flags & SCAN else "")]
        if self.wait_minutes is not None:
            parts.append(f"{self.wait_minutes} minutes")
        if self.locked:
            parts.append("locked to thread")
        return f"goroutine {self.id} [{', '.join(parts)}]:"

    def frame_line(self, index: int) -> int:
        """Source line of frame `index`'s function line: exact for one-line dumps and
        unbroken raw dumps, pprof debug=1 records and headerless fragments, else the header
        line."""
        flags = self.flags
        if flags & (ONE_LINE | GAP | TRUNCATED | SPACED):
            return self.line
        if flags & PROFILE:  # one `#\t0x..` line per frame
            return self.line + index + (0 if flags & HEADERLESS else 1)
        if flags & HEADERLESS:  # `line` is the first function line
            return self.line + 2 * index
        return self.line + 1 + 2 * index

    def signature(self, level: Similarity) -> tuple[Any, ...]:
        """Bucket key: goroutines with equal signatures share a bucket at `level`.
        Wait minutes never split buckets (they become the bucket's range); `(scan)`
        never does either (unlike panicparse, where it is part of the state)."""
        created = self.created_by[0] if self.created_by else None
        if level == Similarity.ANY_VALUE:
            return (self.state, self.stack, created, self.flags & (ELIDED | TRUNCATED))
        norm = self.args if level <= Similarity.EXACT_LINES else tuple(normalize_args(a, level) for a in self.args)
        locked = self.locked if level == Similarity.EXACT_FLAGS else None
        return (self.state, self.stack, created, self.flags & (ELIDED | TRUNCATED), norm, locked)


class Problem(NamedTuple):
    """A line that could not be parsed (or a goroutine that is incomplete)."""

    line: int
    reason: str
    text: str = ""


# Process names used throughout pleg-doctor.
CONTAINERD = "containerd"
SHIM = "containerd-shim-runc-v2"
KUBELET = "kubelet"
DOCKERD = "dockerd"
SHIM_V1 = "containerd-shim"  # containerd 1.0-1.x v1 shim (`linux/shim`, `runtime/v1/shim`)
RUNC = "runc"
CRIO = "crio"
CRI_DOCKERD = "cri-dockerd"
UNKNOWN_PROCESS = "unknown"

MAX_PROBLEMS_KEPT = 200


class Dump(msgspec.Struct, frozen=True):
    """One goroutine dump of one process at one time.

    `process` is containerd | containerd-shim-runc-v2 | containerd-shim | runc | crio |
    kubelet | dockerd | cri-dockerd | unknown (or a journald identifier); `process_source`
    says how it was learnt ("log fields", "journald prefix", "file name", "frames", "caller"). `sandbox` is the shim's
    container/sandbox id (from the logrus `path=` field) when known. `problems` holds
    the first MAX_PROBLEMS_KEPT unparsable lines; `problem_count` counts them all.
    """

    source: str
    process: str
    pid: int | None
    goroutines: tuple[Goroutine, ...]
    first_line: int
    last_line: int
    process_source: str = "frames"
    sandbox: str | None = None
    namespace: str | None = None
    dump_time: datetime | None = None
    framing: str = "raw"
    go_version: str | None = None  # a lower bound read from format features, e.g. ">= 1.21"
    problems: tuple[Problem, ...] = ()
    problem_count: int = 0
    notes: tuple[str, ...] = ()

    def ref(self, g: Goroutine, frame: int | None = None) -> Ref:
        """Evidence pointer to goroutine `g` (its header, or one of its frames)."""
        text = g.header_text()
        line = g.line
        if frame is not None and 0 <= frame < len(g.stack):
            loc = g.stack[frame]
            where = f" {loc[1]}:{loc[2]}" if loc[1] else ""
            text = f"{text} ... {loc[0]}({g.arg(frame)}){where}"
            line = g.frame_line(frame)
        return Ref(self.source, line, text[:300])

    @property
    def label(self) -> str:
        """Human label: `containerd[1234]`, `containerd-shim-runc-v2[6996] 7088920af56d`."""
        out = self.process if self.pid is None else f"{self.process}[{self.pid}]"
        if self.sandbox:
            out += f" {self.sandbox[:12]}"
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "process": self.process,
            "pid": self.pid,
            "sandbox": self.sandbox,
            "namespace": self.namespace,
            "dump_time": self.dump_time.isoformat() if self.dump_time else None,
            "framing": self.framing,
            "go_version": self.go_version,
            "goroutines": len(self.goroutines),
            "lines": [self.first_line, self.last_line],
            "process_source": self.process_source,
            "problems": self.problem_count,
            "problem_lines": [p.line for p in self.problems],
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------
# The analysis: what each distinct stack does, what each goroutine waits for, buckets

Node = tuple[int, int]  # (dump index, goroutine id)


class Hold(NamedTuple):
    """A lock a stack holds while it runs (from the knowledge tables of roles.py)."""

    lock: str
    mode: str
    frame: int  # frame whose receiver identifies the lock instance
    confidence: float
    reason: str


class StackInfo(msgspec.Struct, frozen=True):
    """What one distinct (state, stack) means (waits.classify)."""

    kind: WaitKind
    site: int  # index of the frame where the goroutine waits (the lock taker, the syscall wrapper, ...)
    lock: str | None = None
    lock_label: str | None = None
    id_frames: tuple[int, ...] = ()  # frames whose accurate receivers identify the lock instance
    syscall: str | None = None  # syscall name from the wrapper (when the number is not readable)
    syscall_frame: int = -1
    holds: tuple[Hold, ...] = ()
    cri_method: str | None = None
    cri_client: str | None = None
    call: str | None = None  # "Task.Delete" for ttrpc, "RuntimeService.ListContainers" for gRPC
    serving: str | None = None  # shim method served ("Delete")
    tags: frozenset[str] = msgspec.field(default_factory=frozenset)
    symptom: bool = False
    description: str = ""


class Wait(NamedTuple):
    """What one blocked goroutine waits for. `holder` is the (dump index, goroutine id)
    of the goroutine inferred to hold it (None when not visible), with `confidence` and
    `reason` (the knowledge that made the inference)."""

    dump: int
    goroutine: int
    kind: str
    resource: str
    lock: str | None
    identity: tuple[str, ...]
    holder: Node | None
    confidence: float
    reason: str
    syscall: str | None
    call: str | None


class Bucket(msgspec.Struct, frozen=True):
    """Goroutines of one dump that share a signature. `sample` is the goroutine with the
    longest wait (its frames and arguments are what the bucket shows)."""

    dump: int  # index into the analysed dumps
    state: str
    ids: tuple[int, ...]
    wait_min: int | None
    wait_max: int | None
    locked: bool
    sample: Goroutine
    args_vary: bool  # some argument values differ between members

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def frames(self) -> tuple[Frame, ...]:
        return self.sample.frames

    def to_json(self, dump: Dump) -> dict[str, Any]:
        g = self.sample
        return {
            "process": dump.process,
            "pid": dump.pid,
            "sandbox": dump.sandbox,
            "state": self.state,
            "count": self.count,
            "ids": list(self.ids),
            "wait_minutes": [self.wait_min, self.wait_max],
            "locked": self.locked,
            "truncated": bool(g.flags & TRUNCATED),
            "elided": bool(g.flags & ELIDED),
            "created_by": (
                {"func": g.created_by[0], "file": g.created_by[1], "line": g.created_by[2]} if g.created_by else None
            ),
            "frames": [
                {"func": loc[0], "args": a, "file": loc[1], "line": loc[2]}
                for loc, a in zip(g.stack, g.args, strict=False)
            ],
            "evidence": {"path": dump.source, "line": g.line},
        }


@dataclass
class GoroutineAnalysis:
    """Buckets, waits and chains of some dumps (goroutines.analysis.analyze). Rendering is
    goroutines.render's (the CLI calls it); this record only answers lookups."""

    dumps: list[Dump]
    buckets: list[Bucket]
    waits: list[Wait]
    chains: list[Chain]
    infos: dict[Node, StackInfo] = field(repr=False, default_factory=dict)
    similarity: Similarity = Similarity.ANY_POINTER
    _index: dict[Node, Goroutine] | None = field(default=None, repr=False)

    @property
    def goroutine_count(self) -> int:
        return sum(len(d.goroutines) for d in self.dumps)

    def goroutine(self, node: Node) -> Goroutine | None:
        return self.goroutine_index().get(node)

    def goroutine_index(self) -> dict[Node, Goroutine]:
        """Every goroutine by (dump index, goroutine id)."""
        if self._index is None:
            self._index = {(di, g.id): g for di, d in enumerate(self.dumps) for g in d.goroutines}
        return self._index

    def wait_of(self, node: Node) -> Wait | None:
        for w in self.waits:
            if (w.dump, w.goroutine) == node:
                return w
        return None

    def wait_ref(self, w: Wait) -> Ref:
        """Evidence for a wait: the waiting goroutine's header and its wait site."""
        info = self.infos[(w.dump, w.goroutine)]
        return self.ref((w.dump, w.goroutine), info.site)

    def ref(self, node: Node, frame: int | None = None) -> Ref:
        g = self.goroutine(node)
        assert g is not None
        return self.dumps[node[0]].ref(g, frame)
