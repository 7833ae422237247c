#!/usr/bin/env python3
"""Benchmark the PLEG timeline against `grep | awk` on the same kubelet journal.

    python bench/gen_kubelet_journal.py --size 500M --out /tmp/k.log --truth /tmp/k.truth.json
    python bench/bench_timeline.py /tmp/k.log --truth /tmp/k.truth.json

Measures, --repeat runs each, interleaved (wall time and peak RSS of the command's process
tree, from /usr/bin/time when present, else getrusage of a wrapper); reports the median
and the best wall time:
- peer:   grep 'GenericPLEG: Relisting' FILE | awk '<gap finder over the klog stamp>'
- cli:    pleg-doctor analyze FILE -o json   (the whole product: parse, rules, report), with
          pleg-doctor's bytecode compiled once beforehand, as an installed package has it
          (pip compiles it at install time): into a private PYTHONPYCACHEPREFIX
- cli-src: the same with the caller's environment as it is; where PYTHONDONTWRITEBYTECODE
          is set (as on the shared dev machine) every run compiles pleg-doctor's sources
          first (~0.1 s more)
- parser: the kubelet-log parser + build_timeline in a fresh interpreter (this area's code)
Checks that the gaps found are exactly the injected ones (truth file of the generator)
and prints the ratios of the medians against the peer. Targets: cli time <= 3x peer,
peak RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def measure(cmd: list[str], stdout_path: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one run; its stdout saved to stdout_path."""
    gnu_time = shutil.which("time") if os.path.exists("/usr/bin/time") else None
    with open(stdout_path, "wb") as out, tempfile.NamedTemporaryFile("r+") as tfile:
        if gnu_time:
            full = ["/usr/bin/time", "-o", tfile.name, "-f", "%e %M", *cmd]
            t0 = time.perf_counter()
            subprocess.run(full, stdout=out, check=True, env=env)
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
                [sys.executable, "-c", wrapper, *cmd], stdout=out, stderr=subprocess.PIPE, check=True, env=env
            )
            wall = time.perf_counter() - t0
            rss_kb = float(res.stderr.split()[-1])
    return wall, rss_kb / 1024


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
    ap.add_argument("--repeat", type=int, default=5)
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
        outs = {name: os.path.join(tmp, name + ".out") for name in ("peer", "cli", "cli-src", "parser")}
        peer_cmd = [
            "sh",
            "-c",
            f"grep 'GenericPLEG: Relisting' \"$1\" | awk -v G={args.gap} '{AWK}'",
            "sh",
            args.file,
        ]
        cli_cmd = [*cli_command(), "analyze", args.file, "-o", "json", *(["--year", str(year)] if year else [])]
        parser_cmd = [sys.executable, "-c", PARSER_SCRIPT, args.file, str(args.gap), str(year or "")]
        # An installed package has its bytecode: compile ours once into a private cache.
        compiled = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        compiled["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        subprocess.run(cli_cmd, stdout=subprocess.DEVNULL, check=True, env=compiled)  # also warms the page cache
        subprocess.run(parser_cmd, stdout=subprocess.DEVNULL, check=True, env=compiled)
        plan = {
            "peer": (peer_cmd, None),
            "cli": (cli_cmd, compiled),
            "cli-src": (cli_cmd, None),
            "parser": (parser_cmd, compiled),
        }
        walls: dict[str, list[float]] = {name: [] for name in plan}
        peaks: dict[str, float] = dict.fromkeys(plan, 0.0)
        for _ in range(args.repeat):  # interleaved: load changes on a shared machine hit all alike
            for name, (cmd, env) in plan.items():
                wall, rss = measure(cmd, outs[name], env)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], rss)
        with open(outs["peer"], encoding="utf-8") as fh:
            peer_gaps = [ln for ln in fh.read().splitlines() if ln.strip()]
        found_gaps = {
            "cli": _load_json(outs["cli"])["pleg"]["gaps"],
            "cli-src": _load_json(outs["cli-src"])["pleg"]["gaps"],
            "parser": _load_json(outs["parser"])["gaps"],
        }
    med = {name: statistics.median(w) for name, w in walls.items()}
    peer_t = med["peer"]
    print(f"input: {args.file} ({size_mb:.0f} MB), {args.repeat} runs each")
    print(f"{'run':8} {'median s':>8} {'best s':>7} {'peak MB':>8} {'x peer':>7}  gaps")
    ok = True
    for name in plan:
        if name == "peer":
            found = len(peer_gaps)
            exact = truth is None or found == len(truth)
        else:
            gaps = found_gaps[name]
            found = len(gaps)
            exact = truth is None or gaps_match([g for g in gaps if not g.get("open")], truth)
        ratio = med[name] / peer_t if peer_t else float("nan")
        print(
            f"{name:8} {med[name]:8.3f} {min(walls[name]):7.3f} {peaks[name]:8.1f} {ratio:7.2f}  {found} "
            f"{'exact' if exact else 'MISMATCH'}"
        )
        if name != "peer":
            ok &= exact and peaks[name] <= 200
    if truth is not None:
        print(f"truth: {len(truth)} injected gaps")
    print(
        f"targets: time <= 3x peer (cli {med['cli'] / peer_t:.2f}x, cli-src {med['cli-src'] / peer_t:.2f}x, "
        f"parser {med['parser'] / peer_t:.2f}x; medians), peak RSS <= 200 MB"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
