"""Behaviour preserved: `analyze -o json` of every real corpus case, every synthetic incident and
the demo equals its golden file in tests/golden/ (written by tests/golden/regen.py).

A refactor must leave these unchanged. When an output change is intended, regenerate with
`.venv/bin/python tests/golden/regen.py` and say in the commit which cases changed and why.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"

_spec = importlib.util.spec_from_file_location("pd_golden_regen", GOLDEN / "regen.py")
assert _spec is not None and _spec.loader is not None
regen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regen)

CASES = regen.cases()


def test_every_case_has_a_golden_and_no_golden_is_stale() -> None:
    on_disk = {p.stem for p in GOLDEN.glob("*.json")}
    assert on_disk == set(CASES), (
        f"missing goldens: {sorted(set(CASES) - on_disk)}; stale goldens: {sorted(on_disk - set(CASES))}"
    )
    # the corpus, the incidents and the demo are all covered
    assert sum(n.startswith("real-") for n in CASES) >= 40
    assert sum(n.startswith("incident-") for n in CASES) >= 10
    assert "demo-seed-incident" in CASES


@pytest.mark.parametrize("name", sorted(CASES))
def test_analyze_json_is_unchanged(name: str) -> None:
    want = (GOLDEN / f"{name}.json").read_text(encoding="utf-8")
    got = regen.render(CASES[name])
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(keepends=True),
                got.splitlines(keepends=True),
                fromfile=f"golden/{name}.json",
                tofile="now",
                n=2,
            )
        )
        pytest.fail(f"`analyze -o json` of {name} changed:\n{diff[:6000]}")


def test_golden_files_are_findings_not_empty_shells() -> None:
    # a golden that records a crash or an empty report would make the check above meaningless
    demo = json.loads((GOLDEN / "demo-seed-incident.json").read_text(encoding="utf-8"))
    assert demo["findings"], "the demo golden has no findings"
    assert demo["root_causes"][0]["class"] == "fsync-io-pressure"
    reports = {n: json.loads((GOLDEN / f"{n}.json").read_text(encoding="utf-8")) for n in CASES}
    assert all(r["inputs"] for r in reports.values()), [n for n, r in reports.items() if not r["inputs"]]
    # only the parse-only corpus cases (panicparse format fixtures, dumps of a healthy kubelet) find nothing
    quiet = sorted(n for n, r in reports.items() if not r["findings"])
    assert len(quiet) <= 4, quiet
