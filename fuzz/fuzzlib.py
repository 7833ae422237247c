"""What the fuzz targets and the property tests (tests/test_fuzz_properties.py) share: feed
bytes to a parser the way `pipeline.collect_evidence` does, and check what came back.

A parser may end an input with `UserError` (and its `InputError`), which the CLI prints as
one line; any other exception, or a broken invariant (`Broken`), is a crash:

- every `Ref` a record carries names the input and a real line of it (1..lines);
- counts are non-negative (`InputReport.records`, `.unparsed`, dump problem counts);
- a goroutine's header line and a dump's first/last line are lines of the input, and a
  goroutine id the dump printed (id > 0; synthetic ids are negative) occurs in the input.

Determinism (same input, same result) is checked by `fingerprint`, which the callers
compare over two parses.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from plegdoctor import parsers
from plegdoctor.errors import UserError
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.goroutines.model import Dump
from plegdoctor.inputs import Source
from plegdoctor.model import InputReport, Ref
from plegdoctor.parsers.logs import scanner as _logcommon
from plegdoctor.timeutil import TimeContext

DISPLAY = "fuzz-input.log"
LOG_KINDS = ("kubelet-log", "containerd-log", "journal", "dockerd-log")
# Fixed, so that two parses of one input are comparable (TimeContext defaults to now()).
NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def speed_up_for_fuzzing() -> None:
    """For the fuzz targets' process only (never in the test session, where other tests rely
    on the defaults): what made a small input 20x slower than its parse.

    - compile each set of log needles once per process, not once per input: the Hyperscan
      compile (~4 ms) was most of a run's time; `LineScanner._build` is a pure function of
      its needles, so what is fuzzed is unchanged;
    - read 4 KiB chunks, not 1 MiB ones (zeroing a fresh 1 MiB buffer per input cost ~1.5 ms);
      this also makes most inputs cross a chunk boundary (the carry of a cut line).
    """
    scanner = _logcommon.LineScanner
    build = scanner._build
    memo: dict[tuple[Any, ...], Any] = {}

    def cached(needles: list[Any]) -> Any:
        key = tuple(needles)
        if key not in memo:
            memo[key] = build(needles)
        return memo[key]

    scanner._build = staticmethod(cached)  # type: ignore[method-assign]
    _logcommon.CHUNK = 4096


class Broken(AssertionError):
    """An invariant of a parser's output does not hold (a fuzz crash)."""


def line_count(data: bytes) -> int:
    """Lines as `Source.lines()` numbers them (split at `\\n`; a last line without one counts)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def source_of(data: bytes, display: str = DISPLAY) -> Source:
    return Source(display, None, len(data), [], None, io.BytesIO(data))


@dataclasses.dataclass
class Result:
    kind: str
    evidence: Evidence
    report: InputReport
    error: UserError | None  # the documented refusal, if the parser raised one


def parse_bytes(data: bytes, kind: str | None = None, display: str = DISPLAY) -> Result:
    """Parse `data` as `kind` (sniffed when None), as `collect_evidence` does for one file,
    except that only `UserError` is caught: anything else propagates (a crash)."""
    src = source_of(data, display)
    head = src.head()
    if kind is None:
        kind = parsers.sniff(head)[0]
    evidence = Evidence()
    report = InputReport(path=display, kind=kind)
    evidence.inputs.append(report)
    available = parsers.available()
    if not head or kind not in available:
        return Result(kind, evidence, report, None)
    ctx = ParseContext(evidence=evidence, report=report, time=TimeContext(year=2023, now=NOW), options={"mtime": None})
    error: UserError | None = None
    try:
        available[kind].parse(src, ctx)
    except UserError as exc:  # documented: one clear line, exit 2
        error = exc
    return Result(kind, evidence, report, error)


def parse_bytes_python_loop(data: bytes, kind: str | None = None, display: str = DISPLAY) -> Result:
    """`parse_bytes` with the log scanner's Python candidate loop instead of the compiled
    one (src/plegdoctor/_fastscan.c): the two must give the same evidence."""
    fast = _logcommon._fast
    _logcommon._fast = None
    try:
        return parse_bytes(data, kind, display)
    finally:
        _logcommon._fast = fast


def _walk(obj: Any, depth: int = 0) -> Iterator[Any]:
    """Every object reachable from `obj` through dataclasses, msgspec Structs, tuples,
    lists and dicts."""
    if depth > 12:
        return
    yield obj
    if isinstance(obj, str | bytes | int | float | bool | datetime) or obj is None:
        return
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk(v, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _walk(v, depth + 1)
    elif isinstance(obj, msgspec.Struct):
        for name in obj.__struct_fields__:
            yield from _walk(getattr(obj, name), depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), depth + 1)


def _check_line(what: str, line: int, nlines: int) -> None:
    if not 1 <= line <= max(nlines, 1):
        raise Broken(f"{what} points at line {line}, the input has {nlines} line(s)")


def check_dumps(dumps: list[Dump], data: bytes, display: str = DISPLAY, nlines: int | None = None) -> None:
    """Invariants of parsed goroutine dumps of the input `data` (see the module docstring).
    `nlines`: the input's line count when it is not `line_count(data)` (`parse_dump_text`
    numbers the empty piece after a final newline too)."""
    if nlines is None:
        nlines = line_count(data)
    text = data.decode("utf-8", "replace")
    for d in dumps:
        if d.source != display:
            raise Broken(f"dump source {d.source!r} is not the input {display!r}")
        if d.problem_count < 0 or d.problem_count < len(d.problems):
            raise Broken(f"dump problem count {d.problem_count} < {len(d.problems)} problems kept")
        if d.goroutines or d.problems or (d.first_line, d.last_line) != (0, 0):  # (0, 0): a note on no line
            _check_line("dump first line", d.first_line, nlines)
            _check_line("dump last line", d.last_line, nlines)
            if d.first_line > d.last_line:
                raise Broken(f"dump lines {d.first_line}-{d.last_line} are reversed")
        for p in d.problems:
            _check_line("problem", p.line, nlines)
        if not d.goroutines:
            continue
        # a pprof record of N goroutines is N goroutines: check them in bulk
        lines = [g.line for g in d.goroutines]
        _check_line("a goroutine", min(lines), nlines)
        _check_line("a goroutine", max(lines), nlines)
        for gid in {g.id for g in d.goroutines if g.id > 0}:
            if str(gid) not in text:
                raise Broken(f"goroutine id {gid} does not occur in the input")
        for wait, nargs, nframes in {(g.wait_minutes, len(g.args), len(g.stack)) for g in d.goroutines}:
            if wait is not None and wait < 0:
                raise Broken(f"a goroutine waits a negative {wait} minutes")
            if nargs != nframes:
                raise Broken(f"a goroutine has {nargs} argument lists for {nframes} frames")


def check_result(res: Result, data: bytes, display: str = DISPLAY) -> None:
    """Invariants of one parse (see the module docstring)."""
    nlines = line_count(data)
    rep = res.report
    if rep.records < 0 or rep.unparsed < 0:
        raise Broken(f"negative counts: records={rep.records} unparsed={rep.unparsed}")
    ev = res.evidence
    for i in range(len(ev.relists)):
        ref = ev.relists.ref(i)
        if ref.path != display:
            raise Broken(f"relist tick names {ref.path!r}, not the input")
        _check_line("relist tick", ref.line, nlines)
    fields = [f.name for f in dataclasses.fields(ev) if f.name not in ("relists", "dumps", "inputs")]
    for name in fields:
        for obj in _walk(getattr(ev, name)):
            if isinstance(obj, Ref):
                if obj.path != display:
                    raise Broken(f"{name}: Ref names {obj.path!r}, not the input")
                _check_line(f"{name} Ref", obj.line, nlines)
    check_dumps(ev.dumps, data, display)


def fingerprint(res: Result) -> str:
    """A text that differs when two parses of one input differ."""
    ev = res.evidence
    relists = (list(ev.relists.ts), list(ev.relists.line), sorted(ev.relists.texts.items()))
    parts = [res.kind, repr(res.report), repr(relists), repr(res.error)]
    parts += [repr(getattr(ev, f.name)) for f in dataclasses.fields(ev) if f.name not in ("relists", "inputs")]
    return "\n".join(parts)
