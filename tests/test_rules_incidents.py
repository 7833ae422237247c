"""The public incident corpus (tests/incidents/): every incident analyzed end to end.

Each incident is a directory of evidence in real formats (journald/klog/logrus logs,
goroutine dumps, /proc files, dmesg, configs) and an `expected.json`:

    {"class": "<root-cause class of the top cause>",
     "chain_tags": [tags some link of the top chain must carry],
     "chain_details": [substrings some link detail must contain],
     "fix": "substring of one of the top cause's fixes",
     "findings": [rule codes that must fire],
     "next_steps": [substrings of next steps] (optional),
     "summary": [substrings of the top cause's summary] (optional),
     "year": year of the year-less log stamps, as `--year` gives it (optional),
     "needs": [parser kinds the incident needs] (optional)}
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plegdoctor import parsers
from plegdoctor.commands import analyze_paths
from plegdoctor.model import RootCauseClass

HERE = Path(__file__).resolve().parent / "incidents"
INCIDENTS = sorted(p for p in HERE.iterdir() if p.is_dir())


def _files(incident: Path) -> list[str]:
    return [str(p) for p in sorted(incident.rglob("*")) if p.is_file() and p.name != "expected.json"]


def _expected(incident: Path) -> dict:
    return json.loads((incident / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("incident", INCIDENTS, ids=[p.name for p in INCIDENTS])
def test_incident_diagnosed_end_to_end(incident: Path) -> None:
    exp = _expected(incident)
    missing = sorted(set(exp.get("needs", [])) - parsers.known_kinds())
    if missing:
        pytest.skip(f"parser(s) not in this build yet: {', '.join(missing)}")
    dg = analyze_paths(_files(incident), year=exp.get("year"))
    for inp in dg.inputs:
        assert inp.kind != "unknown", f"{inp.path} not recognised"
    assert dg.root_causes, "no root cause"
    top = dg.root_causes[0]
    assert str(top.cls) == exp["class"], [(str(rc.cls), rc.confidence) for rc in dg.root_causes]
    tags = set().union(*(lk.tags for lk in top.chain)) if top.chain else set()
    for tag in exp.get("chain_tags", []):
        assert any(t == tag or (tag.endswith(":") and t.startswith(tag)) for t in tags), (tag, sorted(tags))
    details = " | ".join(lk.detail for lk in top.chain)
    for sub in exp.get("chain_details", []):
        assert sub in details, (sub, details)
    if "fix" in exp:
        assert any(exp["fix"] in f for f in top.fixes), (exp["fix"], top.fixes)
    codes = {f.code for f in dg.findings}
    for code in exp.get("findings", []):
        assert code in codes, (code, sorted(codes))
    for sub in exp.get("summary", []):
        assert sub in top.summary, (sub, top.summary)
    steps = " ".join(dg.next_steps)
    for sub in exp.get("next_steps", []):
        assert sub in steps, (sub, dg.next_steps)
    if exp["class"] != "unknown":
        assert top.chain[0].process == "kubelet", "the chain starts with the symptom"
        assert top.confidence >= 0.5


def test_corpus_covers_every_root_cause_class() -> None:
    classes = {_expected(p)["class"] for p in INCIDENTS}
    assert classes == {str(c) for c in RootCauseClass}, sorted({str(c) for c in RootCauseClass} - classes)


def test_corpus_is_small() -> None:
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    assert total < 1_500_000, total
