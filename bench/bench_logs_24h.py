#!/usr/bin/env python3
"""`pleg-doctor analyze` against grep+awk on realistic 24 h kubelet journals (70 MB, 500 MB).

Generates each journal with bench/gen_journal_24h.py (seeded: the same bytes every run) into
a temporary directory it removes, then, in this one run, best of --repeat wall times,
interleaved:
- peer: grep -F 'GenericPLEG: Relisting' FILE | awk '<max and list of relist gaps>'
- cli:  pleg-doctor analyze FILE -o json   (the venv console script, bytecode compiled once
        into a private PYTHONPYCACHEPREFIX, as an installed package has it)
- py:   the same with PLEG_DOCTOR_NO_NATIVE=1: the scanner's Python loop instead of the
        compiled one (what an install without a C compiler runs)
and the peak RSS of analyze (GNU time when present). It checks both found the injected
gaps, prints the ratio cli / peer per size (bar: <= 3x, goal 1.5x) and the start-up time
of analyze on a 1-line file (compare bench/bench_cli_startup.py, which times --help).

    python bench/bench_logs_24h.py [--sizes 70,500] [--repeat 5]
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

HERE = os.path.dirname(os.path.abspath(__file__))
# gaps of at least G seconds between relist ticks; the klog stamp is field 6 (Lmmdd) and 7
# (hh:mm:ss.uuuuuu) of `Mon DD hh:mm:ss.uuuuuu host kubelet[pid]: Lmmdd hh:mm:ss.uuuuuu ...`
AWK = (
    '{ md=substr($6,2,4); split($7,a,":"); t=a[1]*3600+a[2]*60+a[3];'
    ' if (md!=pmd && pmd!="") off+=86400; pmd=md; t+=off;'
    ' if (n>0 && t-pt>=G) { printf "%s %s %.6f\\n", pst, $7, t-pt; if (t-pt>mx) mx=t-pt }'
    " pt=t; pst=$7; n++ }"
    ' END { printf "max %.6f\\n", mx }'
)


def measure(cmd: list[str], stdout_path: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the process tree; 0 without GNU time) of one run."""
    with open(stdout_path, "wb") as out, tempfile.NamedTemporaryFile("r+") as tfile:
        if os.path.exists("/usr/bin/time"):
            t0 = time.perf_counter()
            subprocess.run(["/usr/bin/time", "-o", tfile.name, "-f", "%M", *cmd], stdout=out, check=True, env=env)
            wall = time.perf_counter() - t0
            tfile.seek(0)
            return wall, float(tfile.read().split()[-1]) / 1024
        t0 = time.perf_counter()  # pragma: no cover - machines without GNU time
        subprocess.run(cmd, stdout=out, check=True, env=env)
        return time.perf_counter() - t0, 0.0


def cli_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "pleg-doctor")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-c", "import sys; from plegdoctor.cli import main; sys.exit(main())"]


def bench_size(size_mb: float, tmp: str, repeat: int, env: dict[str, str]) -> dict[str, float | int | bool]:
    log = os.path.join(tmp, f"journal-{size_mb:g}mb.log")
    truth_path = log + ".truth.json"
    gen = [sys.executable, os.path.join(HERE, "gen_journal_24h.py"), "--size-mb", str(size_mb), "--out", log]
    subprocess.run(
        [*gen, "--truth", truth_path],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    with open(truth_path, encoding="utf-8") as fh:
        truth = json.load(fh)
    peer = ["sh", "-c", f"grep -F 'GenericPLEG: Relisting' \"$1\" | awk -v G=3 '{AWK}'", "sh", log]
    cli = [*cli_command(), "analyze", log, "-o", "json", "--year", truth["first"][:4]]
    out_peer, out_cli = os.path.join(tmp, "peer.out"), os.path.join(tmp, "cli.out")
    subprocess.run(cli, stdout=subprocess.DEVNULL, check=True, env=env)  # compiles; warms the page cache
    walls: dict[str, list[float]] = {"peer": [], "cli": [], "py": []}
    rss = 0.0
    py_env = {**env, "PLEG_DOCTOR_NO_NATIVE": "1"}
    for _ in range(repeat):
        walls["peer"].append(measure(peer, out_peer)[0])
        wall, peak = measure(cli, out_cli, env)
        walls["cli"].append(wall)
        rss = max(rss, peak)
        walls["py"].append(measure(cli, os.path.join(tmp, "py.out"), py_env)[0])
    with open(out_peer, encoding="utf-8") as fh:
        peer_gaps = [ln for ln in fh.read().splitlines() if ln and not ln.startswith("max ")]
    with open(out_cli, encoding="utf-8") as fh:
        cli_gaps = [g for g in json.load(fh)["pleg"]["gaps"] if not g.get("open")]
    want = [(g["start"], g["end"]) for g in truth["gaps"]]
    got = [(g["start"], g["end"]) for g in cli_gaps]
    os.unlink(log)
    return {
        "mb": truth["bytes"] / 1e6,
        "peer": min(walls["peer"]),
        "cli": min(walls["cli"]),
        "py": min(walls["py"]),
        "rss": rss,
        "exact": got == want and len(peer_gaps) == len(want),
        "gaps": len(want),
    }


def startup(tmp: str, repeat: int, env: dict[str, str]) -> float:
    one = os.path.join(tmp, "one.log")
    with open(one, "w", encoding="utf-8") as fh:
        fh.write(
            "Jun 15 00:00:00.000000 node-7 kubelet[1679]: I0615 00:00:00.000000    1679 generic.go:191] "
            '"GenericPLEG: Relisting"\n'
        )
    cmd = [*cli_command(), "analyze", one, "-o", "json", "--year", "2023"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
    return min(measure(cmd, os.path.join(tmp, "one.out"), env)[0] for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="70,500", help="journal sizes in MB, comma-separated")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if shutil.which("grep") is None or shutil.which("awk") is None:
        print("grep and awk are needed", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="pd-bench-logs-")
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        rows = [bench_size(float(s), tmp, args.repeat, env) for s in args.sizes.split(",") if s.strip()]
        start = startup(tmp, args.repeat, env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"best of {args.repeat} wall times; peer = grep -F | awk (relist gaps)")
    head = f"{'size MB':>8} {'peer s':>7} {'analyze s':>9} {'ratio':>6} {'RSS MB':>7} {'py-loop s':>9} {'ratio':>6}"
    print(head + "  gaps")
    ok = True
    for r in rows:
        ratio = float(r["cli"]) / float(r["peer"])
        ok &= bool(r["exact"]) and ratio <= 3.0
        py_ratio = float(r["py"]) / float(r["peer"])
        print(
            f"{r['mb']:8.1f} {r['peer']:7.3f} {r['cli']:9.3f} {ratio:5.2f}x {r['rss']:7.1f} {r['py']:9.3f} "
            f"{py_ratio:5.2f}x  {r['gaps']} {'exact' if r['exact'] else 'MISMATCH'}"
        )
    print(f"analyze start-up (1-line file): {start:.3f} s")
    print(f"bar: analyze <= 3x grep+awk on every size (goal 1.5x): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
