"""CPU cost of one watch sampler tick, now that samples are parsed by plegdoctor.parsers.

    .venv/bin/python bench/bench_sampler.py [--ticks 2000]

Measures, on this machine's real /proc, the CPU time of `NodeSampler.sample()` (reads the
sampled SOURCES lines, keeps the raw text, parses each with its registered parser: the same
code `analyze` runs) against a peer in the same run: a bare loop that reads the same files
and splits them with str.split (what samplers.py did before it parsed through parsers/, and
the floor of any sampler). watch ticks once per second: the per-tick figure is the share of
one core it costs (100 us per tick = 0.01 % of a core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from plegdoctor.live.samplers import NodeSampler
from plegdoctor.live.sources import sampled

FILES = [s.proc_path for s in sampled()]


def peer_tick() -> int:
    """Read the same files and split them the way the former samplers did."""
    n = 0
    for path in FILES:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            n += len(parts)
            if path.endswith("diskstats") and len(parts) >= 14:
                n += sum(int(x) for x in parts[3:])
            elif path.startswith("/proc/pressure/"):
                for kv in parts[1:]:
                    n += int(float(kv.partition("=")[2]) > 0)
    return n


def cpu_per_tick(fn: object, ticks: int) -> float:
    assert callable(fn)
    fn()  # warm up (imports, caches)
    t0 = time.process_time()
    for _ in range(ticks):
        fn()
    return (time.process_time() - t0) / ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=2000)
    args = ap.parse_args()
    sampler = NodeSampler(keep=300)
    ours = cpu_per_tick(sampler.sample, args.ticks)
    peer = cpu_per_tick(peer_tick, args.ticks)
    print(f"files per tick: {len(FILES)} ({', '.join(FILES)})")
    print(f"NodeSampler.sample (parsers/): {ours * 1e6:8.1f} us CPU per tick = {ours * 100:.4f} % of a core at 1 s")
    print(f"peer (read + str.split):       {peer * 1e6:8.1f} us CPU per tick = {peer * 100:.4f} % of a core at 1 s")
    print(f"ratio: {ours / peer:.2f}x the peer")


if __name__ == "__main__":
    main()
