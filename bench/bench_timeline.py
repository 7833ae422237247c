#!/usr/bin/env python3
"""Benchmark the PLEG timeline against `grep | awk` on the same kubelet journal.

    python bench/gen_kubelet_journal.py --size 500M --out /tmp/k.log --truth /tmp/k.truth.json
    python bench/bench_timeline.py /tmp/k.log --truth /tmp/k.truth.json

Measures, best of --repeat runs each (wall time and peak RSS of the command's process
tree, from /usr/bin/time when present, else getrusage of a wrapper):
- peer:   grep 'GenericPLEG: Relisting' FILE | awk '<gap finder over the klog stamp>'
- cli:    pleg-doctor analyze FILE -o json   (the whole product: parse, rules, report)
- parser: the kubelet-log parser + build_timeline in a fresh interpreter (this area's code)
Checks that the gaps found are exactly the injected ones (truth file of the generator)
and prints the ratios against the peer. Targets: time <= 3x peer, peak RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

AWK = (
    '{ md=substr($6,2,4); split($7,a,":"); t=a[1]*3600+a[2]*60+a[3];'
    ' if (md!=pmd && pmd!="") off+=86400; pmd=md; t+=off;'
    ' if (n>0 && t-pt>=G) printf "%s %s %.6f\\n", pst, $7, t-pt; pt=t; pst=$7; n++ }'
)

PARSER_SCRIPT = """
import json, sys
from plegdoctor.analysis.pleg_timeline import build_timeline
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import InputReport
from plegdoctor.parsers import get, sniff
from plegdoctor.timeutil import TimeContext
ev = Evidence()
time = TimeContext(year=int(sys.argv[3]) if sys.argv[3] else None)
for src in iter_sources([sys.argv[1]]):
    kind = sniff(src.head())[0]
    ctx = ParseContext(ev, InputReport(src.display, kind), time)
    get(kind).parse(src, ctx)
print(json.dumps(build_timeline(ev, float(sys.argv[2])).to_json()))
"""


def measure(cmd: list[str], repeat: int, stdout_path: str) -> tuple[float, float]:
    """(best wall seconds, max peak RSS MB) over `repeat` runs; stdout of the last run saved."""
    best = float("inf")
    peak = 0.0
    gnu_time = shutil.which("time") if os.path.exists("/usr/bin/time") else None
    for _ in range(repeat):
        with open(stdout_path, "wb") as out, tempfile.NamedTemporaryFile("r+") as tfile:
            if gnu_time:
                full = ["/usr/bin/time", "-o", tfile.name, "-f", "%e %M", *cmd]
                t0 = time.perf_counter()
                subprocess.run(full, stdout=out, check=True)
                wall = time.perf_counter() - t0
                tfile.seek(0)
                rss_kb = float(tfile.read().split()[-1])
            else:  # pragma: no cover - machines without GNU time
                wrapper = (
                    "import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True);"
                    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr)"
                )
                t0 = time.perf_counter()
                res = subprocess.run(
                    [sys.executable, "-c", wrapper, *cmd], stdout=out, stderr=subprocess.PIPE, check=True
                )
                wall = time.perf_counter() - t0
                rss_kb = float(res.stderr.split()[-1])
        best = min(best, wall)
        peak = max(peak, rss_kb / 1024)
    return best, peak


def cli_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "pleg-doctor")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-c", "import sys; from plegdoctor.cli import main; sys.exit(main())"]


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def gaps_match(found: list[dict], truth: list[dict]) -> bool:
    if len(found) != len(truth):
        return False
    return all(
        f["start"] == t["start"] and f["end"] == t["end"] and abs(f["seconds"] - t["seconds"]) < 1e-5
        for f, t in zip(found, truth, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--truth", help="truth file of gen_kubelet_journal.py (default: FILE.truth.json)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gap", type=float, default=3.0)
    ap.add_argument("--year", type=int, help="year of the log (default: from the truth file)")
    args = ap.parse_args(argv)
    truth_path = args.truth or os.path.splitext(args.file)[0] + ".truth.json"
    truth_doc = _load_json(truth_path) if os.path.exists(truth_path) else None
    truth = truth_doc["gaps"] if truth_doc else None
    # The generated journal has no year (klog and journald short stamps): give the truth's.
    year = args.year or (truth_doc["first"][:4] if truth_doc else None)
    size_mb = os.path.getsize(args.file) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        peer_out = os.path.join(tmp, "peer.txt")
        cli_out = os.path.join(tmp, "cli.json")
        parser_out = os.path.join(tmp, "parser.json")
        peer_cmd = [
            "sh",
            "-c",
            f"grep 'GenericPLEG: Relisting' \"$1\" | awk -v G={args.gap} '{AWK}'",
            "sh",
            args.file,
        ]
        runs = {
            "peer": measure(peer_cmd, args.repeat, peer_out),
            "cli": measure(
                [*cli_command(), "analyze", args.file, "-o", "json", *(["--year", str(year)] if year else [])],
                args.repeat,
                cli_out,
            ),
            "parser": measure(
                [sys.executable, "-c", PARSER_SCRIPT, args.file, str(args.gap), str(year or "")],
                args.repeat,
                parser_out,
            ),
        }
        with open(peer_out, encoding="utf-8") as fh:
            peer_gaps = [ln for ln in fh.read().splitlines() if ln.strip()]
        cli_gaps = _load_json(cli_out)["pleg"]["gaps"]
        parser_gaps = _load_json(parser_out)["gaps"]
    peer_t, _ = runs["peer"]
    print(f"input: {args.file} ({size_mb:.0f} MB)")
    print(f"{'run':8} {'wall s':>8} {'peak MB':>8} {'x peer':>7}  gaps")
    ok = True
    for name, (wall, rss) in runs.items():
        if name == "peer":
            found = len(peer_gaps)
            exact = truth is None or found == len(truth)
        else:
            gaps = cli_gaps if name == "cli" else parser_gaps
            found = len(gaps)
            exact = truth is None or gaps_match([g for g in gaps if not g.get("open")], truth)
        ratio = wall / peer_t if peer_t else float("nan")
        print(f"{name:8} {wall:8.3f} {rss:8.1f} {ratio:7.2f}  {found} {'exact' if exact else 'MISMATCH'}")
        if name != "peer":
            ok &= exact and rss <= 200
    if truth is not None:
        print(f"truth: {len(truth)} injected gaps")
    cli_ratio = runs["cli"][0] / peer_t
    parser_ratio = runs["parser"][0] / peer_t
    print(f"targets: time <= 3x peer (cli {cli_ratio:.2f}x, parser {parser_ratio:.2f}x), peak RSS <= 200 MB")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
