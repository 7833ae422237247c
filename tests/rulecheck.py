"""Helpers for the rule tests: every rule has a case where it fires and a look-alike where it
must stay quiet. `tests/test_rules_coverage.py` checks statically that every registered code
appears in at least one `assert_fires(...)` and one `assert_quiet(...)` call.

Evidence is given as files (paths), or as a dict {file name: text} written to `tmp_path`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from plegdoctor.pipeline import analyze_paths

Evidence = Iterable[str | Path] | Mapping[str, str]


def _paths(evidence: Evidence, tmp_path: Path | None) -> list[str]:
    if isinstance(evidence, Mapping):
        if tmp_path is None:
            raise ValueError("a dict of file texts needs tmp_path")
        out = []
        for name, text in evidence.items():
            p = tmp_path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
            out.append(str(p))
        return out
    return [str(p) for p in evidence]


def diagnose(evidence: Evidence, tmp_path: Path | None = None, **kw: Any) -> Any:
    """analyze_paths over the evidence; returns the Diagnosis."""
    return analyze_paths(_paths(evidence, tmp_path), **kw)


def assert_fires(code: str, evidence: Evidence, tmp_path: Path | None = None, **kw: Any) -> Any:
    """The rule `code` produces at least one finding; returns those findings."""
    dg = diagnose(evidence, tmp_path, **kw)
    hits = [f for f in dg.findings if f.code == code]
    assert hits, f"{code} did not fire; fired: {sorted({f.code for f in dg.findings})}"
    return hits


def assert_quiet(code: str, evidence: Evidence, tmp_path: Path | None = None, **kw: Any) -> Any:
    """The rule `code` produces no finding; returns the Diagnosis."""
    dg = diagnose(evidence, tmp_path, **kw)
    hits = [f for f in dg.findings if f.code == code]
    assert not hits, f"{code} fired on a look-alike: {[f.title for f in hits]}"
    return dg
