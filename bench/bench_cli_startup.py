"""How long `pleg-doctor --help` takes (target: under 0.3 s), against `python -c pass`.

Subcommands are imported lazily (cli.COMMANDS), so --help must not pay for grpc, rich,
jinja2 or the parsers. Usage: python bench/bench_cli_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    exe = shutil.which("pleg-doctor") or ""
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "plegdoctor.cli", "--help"]
    base = timed([sys.executable, "-c", "pass"], args.runs)
    ours = timed(cmd, args.runs)
    med_base, med_ours = statistics.median(base), statistics.median(ours)
    print(f"python -c pass       median {med_base * 1000:6.1f} ms")
    print(f"pleg-doctor --help   median {med_ours * 1000:6.1f} ms  (max {max(ours) * 1000:.1f} ms)")
    print(f"ratio to bare python start: {med_ours / med_base:.2f}x")
    ok = med_ours < 0.3
    print(f"target < 300 ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
