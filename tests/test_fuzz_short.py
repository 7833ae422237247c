"""The short fuzz run of CI: each atheris target of fuzz/ runs a few thousand inputs as a
subprocess, starting from the committed seeds, and must end with 0 crashes and 0 hangs
(`make fuzz` is the long run: 10^6 inputs per target, fuzz/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
RUNS = 2000
MAX_SECONDS = 20  # per target; a slow machine runs fewer inputs, not longer
MIN_RUNS = 300  # ... but at least these many beyond the seeds
HANG_SECONDS = 10  # an input taking longer is a hang (libFuzzer -timeout)

pytest.importorskip("atheris")


@pytest.mark.parametrize("target", ["goroutines", "logs"])
def test_fuzz_target_short_run(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = FUZZ / "seeds" / target
    n_seeds = sum(1 for _ in seeds.iterdir())
    cmd = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        str(corpus),  # new inputs go to the first directory: never into the seeds
        str(seeds),
        f"-runs={RUNS}",
        f"-max_total_time={MAX_SECONDS}",
        f"-timeout={HANG_SECONDS}",
        "-max_len=4096",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_SECONDS + 60, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    artifacts = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert proc.returncode == 0 and artifacts == [], log[-4000:]
    done = re.search(r"stat::number_of_executed_units: (\d+)", log)
    assert done is not None, log[-4000:]
    assert int(done.group(1)) >= n_seeds + MIN_RUNS, log[-2000:]
