"""Benchmark the goroutine engine against Debian's panicparse on the same large dump.

Generates (or reuses) a 100 000-goroutine dump with bench/gen_goroutine_dump.py, then runs,
each as its own process so peak RSS is per process:

  panicparse -parse=false DUMP > /dev/null                  (Debian panicparse 2.3)
  python -m plegdoctor.cli goroutines DUMP -o json > /dev/null   (parse + buckets + wait graph + chains)

and prints wall time and peak RSS (from wait4's rusage) of each, the median of --runs runs,
and the ratios ours/panicparse. Bar (issue #11): time <= 0.30x, RSS <= 0.15x (exit 1 when
missed); goal: 0.25x and 0.10x.

    python bench/bench_goroutines.py [--dump FILE] [--goroutines 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BAR = (0.30, 0.15)  # (wall, peak RSS) as a fraction of panicparse's, issue #11
GOAL = (0.25, 0.10)


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of `cmd`, stdout discarded."""
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return wall, usage.ru_maxrss


def dump_options(doc: str | None) -> tuple[argparse.Namespace, str]:
    """The options of the goroutine benches (--dump, --goroutines, --runs) and panicparse's path."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", help="use this dump instead of generating one")
    ap.add_argument("--goroutines", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    pp = shutil.which("panicparse") or shutil.which("pp")
    if pp is None:
        raise SystemExit("panicparse not found: apt-get install -y panicparse")
    return args, pp


def bench_dump(args: argparse.Namespace, tmp: str) -> str:
    """`--dump`, or a dump of `--goroutines` goroutines generated into `tmp`."""
    if args.dump is not None:
        return str(args.dump)
    dump = os.path.join(tmp, "goroutines.txt")
    subprocess.run(
        [sys.executable, str(HERE / "gen_goroutine_dump.py"), dump, "--goroutines", str(args.goroutines)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return dump


def main() -> None:
    args, pp = dump_options(__doc__)
    tmp = tempfile.mkdtemp(prefix="pleg-doctor-bench-")
    try:
        dump = bench_dump(args, tmp)
        size = os.path.getsize(dump) / 1e6
        ours_cmd = [sys.executable, "-m", "plegdoctor.cli", "goroutines", dump, "-o", "json"]
        pp_cmd = [pp, "-parse=false", dump]
        results: dict[str, list[tuple[float, int]]] = {"panicparse": [], "pleg-doctor": []}
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            results["panicparse"].append(run(pp_cmd))
            results["pleg-doctor"].append(run(ours_cmd))
        print(f"dump: {dump} ({size:.1f} MB, {args.goroutines} goroutines), {args.runs} runs each, median wall")
        summary: dict[str, tuple[float, int]] = {}
        for name, rs in results.items():
            wall = statistics.median(r[0] for r in rs)
            rss = max(r[1] for r in rs)
            summary[name] = (wall, rss)
            print(
                f"  {name:<12} {wall:6.2f} s   peak RSS {rss / 1024:7.1f} MiB   runs: "
                + ", ".join(f"{r[0]:.2f}s" for r in rs)
            )
        t_ratio = summary["pleg-doctor"][0] / summary["panicparse"][0]
        m_ratio = summary["pleg-doctor"][1] / summary["panicparse"][1]
        print(
            f"  ratio time {t_ratio:.2f}x (bar <= {BAR[0]:.2f}, goal <= {GOAL[0]:.2f})"
            f"   ratio RSS {m_ratio:.2f}x (bar <= {BAR[1]:.2f}, goal <= {GOAL[1]:.2f})"
        )
        ok = t_ratio <= BAR[0] and m_ratio <= BAR[1]
        goal = t_ratio <= GOAL[0] and m_ratio <= GOAL[1]
        print("  PASS" + (" (goal met)" if goal else "") if ok else "  FAIL")
        if not ok:
            sys.exit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
