"""Write the golden `analyze -o json` outputs (tests/golden/*.json) from the current build.

Run from the repository root: `.venv/bin/python tests/golden/regen.py`. Only regenerate when
a change of output is intended, and say why in the commit: tests/test_golden.py checks that a
refactor leaves every corpus case, every synthetic incident and the demo unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
NOT_EVIDENCE = {"source.md", "expected.json", "SYNTHETIC.md"}


def cases() -> dict[str, list[str]]:
    """name -> the paths (relative to the repository root) `analyze` reads for it."""
    out: dict[str, list[str]] = {}
    real = ROOT / "tests" / "corpus" / "real"
    for case in sorted(p for p in real.iterdir() if p.is_dir()):
        files = [p for p in sorted(case.iterdir()) if p.is_file() and p.name not in NOT_EVIDENCE]
        out[f"real-{case.name}"] = [str(p.relative_to(ROOT)) for p in files]
    for case in sorted(p for p in (ROOT / "tests" / "incidents").iterdir() if p.is_dir()):
        out[f"incident-{case.name}"] = [str(case.relative_to(ROOT))]
    out["demo-seed-incident"] = [str((ROOT / "src" / "plegdoctor" / "demo" / "seed-incident").relative_to(ROOT))]
    return out


def render(paths: list[str]) -> str:
    """`pleg-doctor analyze PATHS -o json`, run in this process from the repository root."""
    import os

    from click.testing import CliRunner

    from plegdoctor.cli import cli

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(cli, ["analyze", *paths, "-o", "json"], catch_exceptions=False)
    finally:
        os.chdir(old)
    # analyze exits 1 when it finds a stall: the output is what matters here
    if result.exit_code not in (0, 1):
        raise SystemExit(f"analyze {paths} exited {result.exit_code}: {result.output[-400:]}")
    json.loads(result.stdout)  # it must be JSON
    return result.stdout


def main() -> int:
    for name, paths in cases().items():
        (GOLDEN / f"{name}.json").write_text(render(paths), encoding="utf-8")
    print(f"wrote {len(cases())} golden outputs to {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
