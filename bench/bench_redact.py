#!/usr/bin/env python3
"""Redaction cost: throughput on a realistic log, and linear time on hostile lines.

    python bench/bench_redact.py [--mib 32]

1. A synthetic containerd debug log (logrus lines, CRI requests with envs, registry URLs, a
   few secrets) of --mib MiB, streamed through the LineRedactor (every redacted member), the
   MinimalRedactor (members kept raw) and a pass-through, all in this process: MiB/s each,
   and the peak RSS growth while streaming (must stay flat: one line at a time).
2. Hostile single lines of 1 MiB and 4 MiB (no spaces; `password="` repeated; `a://` repeated
   with no `@`; a 4 MiB base64 run after `-----BEGIN PRIVATE KEY-----`): the 4 MiB line must
   take at most 6x the 1 MiB one (linear, not quadratic), each under a 10 s budget.

Last line: "redact bench: N/N within budget".
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from plegdoctor.live.redact import LineRedactor, MinimalRedactor

LOG = [
    'time="2026-11-28T10:00:00.123456789Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:web-{i},'
    'Uid:1c2e,Namespace:default,Attempt:0,}"\n',
    'time="2026-11-28T10:00:00.2Z" level=debug msg="CreateContainer" config="&ContainerConfig{Envs:[]*KeyValue{'
    '&KeyValue{Key:DB_PASSWORD,Value:pw{i},},&KeyValue{Key:HOME,Value:/root,},},}"\n',
    'time="2026-11-28T10:00:00.3Z" level=info msg="PullImage \\"registry.example:5000/app:{i}\\" with '
    'ref=registry.example:5000/app@sha256:3fbc632167424a6d997e74f52b878d7cc478225cffac6bc977eedfe51c7f4e79"\n',
    'time="2026-11-28T10:00:00.4Z" level=debug msg="do request" url="https://u:tok{i}@registry.example/v2/" '
    'Authorization="Bearer abcdefghijkl{i}"\n',
    "goroutine {i} [select, 12 minutes]:\n",
    "github.com/containerd/containerd/pkg/cri/server.(*criService).ListPodSandbox(0xc000a1e000, {{0x55d, 0xc0}})\n",
    "\t/go/src/github.com/containerd/containerd/pkg/cri/server/sandbox_list.go:38 +0x1a5\n",
]


def gen_log(mib: int) -> Iterator[str]:
    size, i = 0, 0
    while size < mib << 20:
        line = LOG[i % len(LOG)].replace("{i}", str(i)).replace("{{", "{").replace("}}", "}")
        size += len(line)
        i += 1
        yield line


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def stream(name: str, make: Callable[[], object], mib: int) -> tuple[float, int]:
    before = rss_kib()
    t0 = time.perf_counter()
    r = make()
    n = 0
    for out in r.lines(gen_log(mib)) if r is not None else gen_log(mib):  # type: ignore[attr-defined]
        n += len(out)
    secs = time.perf_counter() - t0
    growth = rss_kib() - before
    count = getattr(r, "count", 0)
    print(f"  {name:<16} {mib / secs:7.1f} MiB/s  {secs:6.2f} s  redactions {count:>8}  RSS growth {growth} KiB")
    return secs, growth


def hostile(size: int) -> dict[str, str]:
    return {
        "no spaces": "x" * size,
        'password="': ('password="' * (size // 10))[:size],
        "a:// no @": ("a://" * (size // 4))[:size],
        "PEM body": "-----BEGIN PRIVATE KEY-----" + "A" * size,
        "key chars": ("token_" * (size // 6))[:size],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=32)
    args = ap.parse_args()
    ok = total = 0
    print(f"1. a {args.mib} MiB containerd log, streamed")
    base, _ = stream("pass-through", lambda: None, args.mib)
    for name, make in (("MinimalRedactor", MinimalRedactor), ("LineRedactor", LineRedactor)):
        secs, growth = stream(name, make, args.mib)
        print(f"     {name}: {secs / base:.1f}x the pass-through")
        total += 1
        ok += growth < 64 << 10  # flat: less than 64 MiB of RSS growth whatever --mib
    print("2. hostile lines: seconds at 1 MiB and 4 MiB (linear means about 4x)")
    small, big = hostile(1 << 20), hostile(4 << 20)
    for name in small:
        times = []
        for text in (small[name], big[name]):
            t0 = time.perf_counter()
            LineRedactor().redact(text)
            times.append(time.perf_counter() - t0)
        ratio = times[1] / max(times[0], 1e-6)
        # linear: 4x the input takes at most ~6x the time; under 0.1 s the ratio is timer noise
        good = (ratio <= 6 or times[1] < 0.1) and times[1] < 10
        total += 1
        ok += good
        print(f"  {name:<12} {times[0]:7.3f} s {times[1]:7.3f} s  ratio {ratio:4.1f}  {'ok' if good else 'OVER'}")
    print(f"redact bench: {ok}/{total} within budget")
    return 0 if ok == total else 1


if __name__ == "__main__":
    sys.exit(main())
