#!/usr/bin/env python3
"""Per-line time of every parser on pathological 64 KiB lines (issue #10: linear regexes).

A regular expression with nested or adjacent unbounded quantifiers, or one searched from
every position of a long run it cannot match, costs O(n^2) (or worse) on one line; with
lines of up to 64 MiB that hangs the DaemonSet. This bench feeds each target long lines
built to hit those shapes and times every line through it:

- targets: every parser of the registry (`plegdoctor.parsers.PARSERS`, which includes the
  goroutine dump parser and the log scanner behind journal / kubelet / containerd / dockerd
  logs), content sniffing (`parsers.sniff`, every sniffer on the head), the goroutine
  engine's analysis (buckets, waits, chains) and `rules.fixes.parse_version`;
- lines: real lines of the test fixtures of each kind (and hand-written needles of the
  issue, e.g. `pleg was last seen active <digits> ago`), with a filler inserted at a few
  places of the line (right after a needle, between tokens, at the end): long runs of
  digits, Arabic-Indic digits, spaces, `=`, quotes, `key=`, `[`, `](`, markdown links,
  backslashes, braces, `0x`, ... repeated to 64 KiB; each line sits between its fixture's
  first line and its neighbours, so table and dump parsers are in the state they would be;
- each line is timed at 2 KiB, then 8 KiB, then 64 KiB, stopping at the first size over
  the budget (a quadratic line would take minutes at 64 KiB); the budget is per line,
  whatever its size up to 64 KiB (default 20 ms: linear, ~3 MB/s at worst).

Prints, per target, the number of lines, the worst per-line time at 64 KiB and the line
that took it, every line over budget, and a PASS/FAIL summary; exits 1 on FAIL (a line
over budget, or a parser raising on it).

    python bench/bench_pathological.py [--budget-ms 20] [--quick] [--target KIND ...] [--show N]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from plegdoctor.evidence import Evidence, ParseContext  # noqa: E402
from plegdoctor.inputs import Source  # noqa: E402
from plegdoctor.model import InputReport  # noqa: E402
from plegdoctor.parsers import available, sniff  # noqa: E402
from plegdoctor.timeutil import TimeContext  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
SIZES = (2 << 10, 8 << 10, 64 << 10)

# Fillers: each is repeated until the line is 64 KiB long.
FILLERS: dict[str, str] = {
    "digits": "7",
    "arabic-digits": "\u0663",
    "spaces": " ",
    "tabs": "\t",
    "eq": "=",
    "quote": '"',
    "backslash": "\\",
    "esc-quote": '\\"',
    "key=": "key=",
    "a=": "a=",
    'k="': 'k="',
    "9a": "9a",
    "word": "a",
    "words": "ab ",
    "[": "[",
    "](": "](",
    "](url": "](http://x",
    "md-link": "[a](http://x",
    "{": "{",
    "(": "(",
    ")": ")",
    "0x": "0x",
    "+0x": " +0x1",
    ":": ":",
    ":1": ":1 ",
    "/": "/",
    ".": ".",
    "1.": "1.",
    "1m": "1m",
    "=<": "=<",
    ",": ", ",
    "goroutine": "goroutine 1 [",
    "mixed": 'a=1 b="x" [c](d) 0x1 ',
}
QUICK_FILLERS = ("digits", "arabic-digits", "spaces", "eq", "quote", "key=", "9a", "[", "](", "md-link", "1.", ":1")

# Needles of the issue and of the parsers, for kinds whose fixtures may not have them.
EXTRA_LINES: dict[str, list[str]] = {
    "kubelet-log": [
        'E0615 10:00:00.000000    1679 kubelet.go:2359] "Skipping pod synchronization" err="PLEG is not healthy:'
        ' pleg was last seen active 3m2.5s ago; threshold is 3m0s"',
        "E0615 10:00:00.000000    1679 kubelet.go:2359] Skipping pod synchronization - PLEG is not healthy:"
        " pleg was last seen active 3m2.5s ago; threshold is 3m0s",
        'E0615 10:00:00.000000    1679 remote_runtime.go:1] "ListPodSandbox with filter from runtime service failed"'
        ' err="rpc error: code = DeadlineExceeded desc = context deadline exceeded" filter="nil"',
        'I0615 10:00:00.000000    1679 fsHandler.go:1] "fs: disk usage and inodes count on following dirs took 1m2s:'
        ' [/var/lib/a /var/lib/b]"',
        'E0615 10:00:00.000000    1679 generic.go:1] "GenericPLEG: Unable to retrieve pods" err="rpc error: code ='
        ' Unknown desc = x"',
    ],
    "goroutine-dump": [
        "goroutine 1 [chan receive, 5 minutes]:",
        "created by main.g in goroutine 1",
        'time="2024-01-01T00:00:00Z" level=info msg="=== BEGIN goroutine stack dump ===\\ngoroutine 1 [running]:'
        '\\nmain.f()\\n\\t/a.go:1 +0x1\\n"',
        "[main.f](https://github.com/x/y/blob/main/a.go#L1)(0x1)",
    ],
}
PARSE_VERSION_LINES = ["containerd containerd.io 1.6.20 2806fc1", "v1.27.3", "Linux node 5.15.0-1 x86_64"]


@dataclass
class Case:
    target: str
    seed: str  # fixture:line or "extra"
    place: int  # where the filler goes in the line
    filler: str
    before: list[str]
    line: str
    after: list[str]

    def text(self, size: int) -> str:
        """The line with the filler repeated at `place`, about `size` bytes long."""
        unit = FILLERS[self.filler]
        units = max(1, (size - len(self.line.encode())) // len(unit.encode()))
        return self.line[: self.place] + unit * units + self.line[self.place :]

    def data(self, size: int) -> bytes:
        return "\n".join([*self.before, self.text(size), *self.after, ""]).encode()

    def label(self) -> str:
        return f"{self.seed} @{self.place} +{self.filler}"


def _fixture_kind(path: Path) -> str | None:
    head = path.read_bytes()[: 64 << 10]
    kind, _ = sniff(head)
    return None if kind == "unknown" else kind


def _shape(line: str) -> str:
    out = []
    for ch in line[:60]:
        out.append("0" if ch.isdigit() else "a" if ch.isalpha() else ch)
    return "".join(out)


def _places(line: str, n: int) -> list[int]:
    """Up to n insertion points: after token delimiters near the start, the middle, the end."""
    points = {len(line)}
    for i, ch in enumerate(line[:300]):
        if ch in ' =:"[({/,<\t':
            points.add(i + 1)
    ordered = sorted(points)
    if len(ordered) <= n:
        return ordered
    step = (len(ordered) - 1) / (n - 1)
    return sorted({ordered[round(i * step)] for i in range(n)})


def seeds(per_kind: int) -> dict[str, list[tuple[str, list[str], str, list[str]]]]:
    """kind -> [(label, lines before, line, lines after)] from the fixtures of that kind."""
    out: dict[str, list[tuple[str, list[str], str, list[str]]]] = {}
    shapes: dict[str, set[str]] = {}
    for path in sorted(FIXTURES.rglob("*")):
        if not path.is_file() or path.suffix == ".md":
            continue
        kind = _fixture_kind(path)
        if kind is None:
            continue
        lines = path.read_text("utf-8", "replace").splitlines()
        for i, line in enumerate(lines):
            if not line.strip() or len(line) > 2000:
                continue
            sh = _shape(line)
            seen = shapes.setdefault(kind, set())
            if sh in seen:
                continue
            seen.add(sh)
            before = ([lines[0]] if i > 3 else []) + lines[max(0, i - 3) : i]
            after = lines[i + 1 : i + 3]
            out.setdefault(kind, []).append((f"{path.name}:{i + 1}", before, line, after))
    for kind, items in out.items():
        if len(items) > per_kind:
            step = len(items) / per_kind
            out[kind] = [items[int(i * step)] for i in range(per_kind)]
    for kind, extra in EXTRA_LINES.items():
        out.setdefault(kind, []).extend(("extra", [], line, []) for line in extra)
    return out


def _parser_runner(mod: object) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        ctx = ParseContext(Evidence(), InputReport("bench.txt", mod.KIND), TimeContext(year=2024))  # type: ignore[attr-defined]
        src = Source("bench.txt", None, len(data), _stream=io.BytesIO(data))
        mod.parse(src, ctx)  # type: ignore[attr-defined]

    return run


def _analysis_runner(data: bytes) -> None:
    from plegdoctor.goroutines import analyze, parse_dump_binary

    dumps = parse_dump_binary(io.BytesIO(data), source="bench.txt")
    if dumps:
        analyze(dumps)


def _sniff_runner(data: bytes) -> None:
    sniff(data[: 64 << 10])


def _version_runner(data: bytes) -> None:
    from plegdoctor.rules.fixes import parse_version

    for line in data.decode("utf-8", "replace").splitlines():
        parse_version(line)


def cases(targets: list[str] | None, quick: bool) -> Iterator[tuple[str, Callable[[bytes], None], list[Case]]]:
    per_kind, n_places = (4, 3) if quick else (10, 5)
    fillers = list(QUICK_FILLERS if quick else FILLERS)
    by_kind = seeds(per_kind)
    mods = available()
    all_targets: dict[str, tuple[Callable[[bytes], None], list[tuple[str, list[str], str, list[str]]]]] = {
        kind: (_parser_runner(mod), by_kind.get(kind, [])) for kind, mod in mods.items()
    }
    every = [s for k in sorted(by_kind) for s in by_kind[k][:2]]
    all_targets["sniff"] = (_sniff_runner, every)
    all_targets["goroutine-analysis"] = (_analysis_runner, by_kind.get("goroutine-dump", []))
    all_targets["fixes.parse_version"] = (_version_runner, [("extra", [], ln, []) for ln in PARSE_VERSION_LINES])
    for name, (runner, items) in all_targets.items():
        if targets and name not in targets:
            continue
        if not items:
            items = [("empty", [], "", [])]
        cs = [
            Case(name, label, place, filler, before, line, after)
            for label, before, line, after in items
            for place in _places(line, n_places)
            for filler in fillers
        ]
        yield name, runner, cs


@dataclass
class Result:
    case: Case
    size: int
    seconds: float
    error: str | None = None


def time_case(runner: Callable[[bytes], None], case: Case, budget: float) -> Result:
    """Time the case at growing sizes; stop at the first size over budget (or an error)."""
    res = Result(case, 0, 0.0)
    for size in SIZES:
        data = case.data(size)
        t0 = time.process_time()
        try:
            runner(data)
        except Exception as exc:  # a parser raising on a line is a failure of this bench
            return Result(case, size, time.process_time() - t0, f"{type(exc).__name__}: {str(exc)[:120]}")
        res = Result(case, size, time.process_time() - t0)
        if res.seconds > budget:
            return res
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-ms", type=float, default=20.0, help="per-line budget (default 20 ms per 64 KiB line)")
    ap.add_argument("--quick", action="store_true", help="fewer seed lines, places and fillers")
    ap.add_argument("--target", action="append", help="only this target (repeatable)")
    ap.add_argument("--show", type=int, default=10, help="failing lines listed per target")
    args = ap.parse_args(argv)
    budget = args.budget_ms / 1000.0
    failed = 0
    total = 0
    t_start = time.perf_counter()
    print(f"budget {args.budget_ms:.0f} ms per line, sizes {', '.join(f'{s >> 10} KiB' for s in SIZES)}")
    print(f"{'target':<22} {'lines':>6} {'max@64K ms':>11} {'over':>5}  worst line")
    for name, runner, cs in cases(args.target, args.quick):
        runner(b"warm up\n")
        worst: Result | None = None
        bad: list[Result] = []
        for case in cs:
            r = time_case(runner, case, budget)
            total += 1
            if r.error is not None or r.seconds > budget:
                bad.append(r)
            elif worst is None or r.seconds > worst.seconds:
                worst = r
        failed += len(bad)
        worst_ms = f"{worst.seconds * 1000:.2f}" if worst else "-"
        print(f"{name:<22} {len(cs):>6} {worst_ms:>11} {len(bad):>5}  {worst.case.label() if worst else ''}")
        for r in sorted(bad, key=lambda r: (r.error is None, -r.seconds / r.size))[: args.show]:
            what = r.error or f"{r.seconds * 1000:.0f} ms at {r.size >> 10} KiB"
            print(f"    OVER {r.case.label()}: {what}")
    verdict = "PASS" if failed == 0 else "FAIL"
    print(
        f"{verdict}: {total - failed}/{total} lines within {args.budget_ms:.0f} ms"
        f" ({time.perf_counter() - t_start:.0f} s)"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
