"""The rule registry: codes, documentation, coverage of every root-cause class, docs, CLI."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from plegdoctor.evidence import Evidence
from plegdoctor.model import RootCauseClass, Severity
from plegdoctor.rules import REGISTRY, load_all, rule
from plegdoctor.rules.docs import render
from plegdoctor.rules.registry import EvidenceKind, Role
from plegdoctor.rulescmd import explain_command, rules_command

ROOT = Path(__file__).resolve().parents[1]
RULES = load_all()


def test_codes_are_stable_and_families_match_modules():
    assert len(RULES) >= 40
    family_module = {
        "PD1": "kubelet",
        "PD2": "runtime_locks",
        "PD3": "storage",
        "PD4": "shim",
        "PD5": "config",
        "PD6": "kernel",
        "PD7": "docker",
        "PD8": "generic",
        "PD9": "process",
    }
    for code, r in RULES.items():
        assert re.fullmatch(r"PD[1-9]\d\d", code)
        family = f"plegdoctor.rules.{family_module[code[:3]]}"  # the module, or a module of its package
        assert r.check.__module__ == family or r.check.__module__.startswith(family + "."), code
        assert isinstance(r.severity, Severity) and isinstance(r.root_cause, RootCauseClass)
        assert re.fullmatch(r"[a-z0-9-]+", r.name)
    names = [r.name for r in RULES.values()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("code", sorted(RULES))
def test_every_rule_is_documented_like_a_ruff_rule(code):
    r = RULES[code]
    doc = r.doc
    assert doc.startswith("Detects"), code
    assert "Why it matters" in doc, code
    assert "Example evidence" in doc, code
    assert "Fix" in doc, code
    assert r.fix and len(r.fix) > 30
    assert r.references, code
    for url in r.references:
        assert url.startswith("https://"), url


def test_every_root_cause_class_has_causal_rules():
    """Each class (except unknown) is shown by at least one rule that is neither a symptom
    rule nor a condition (configuration, version) rule, i.e. by evidence of the mechanism itself."""
    for cls in RootCauseClass:
        if cls == RootCauseClass.UNKNOWN:
            continue
        causal = [c for c, r in RULES.items() if r.root_cause == cls and r.role is Role.CAUSE]
        assert causal, f"no causal rule for {cls}"


def test_classes_are_shown_by_several_kinds_of_evidence():
    by_class: dict[RootCauseClass, set[str]] = {}
    for code, r in RULES.items():
        by_class.setdefault(r.root_cause, set()).add(code[:3])
    # overlay umount: shim dump (PD4), kernel trace (PD6), log (PD4 log rules), config (PD5)
    assert {"PD4", "PD6", "PD5"} <= by_class[RootCauseClass.OVERLAY_UMOUNT_SYNC]
    assert {"PD2", "PD3", "PD6"} <= by_class[RootCauseClass.FSYNC_IO_PRESSURE]
    assert {"PD3", "PD6"} <= by_class[RootCauseClass.DISK_IO_PRESSURE]
    assert {"PD3"} <= by_class[RootCauseClass.NETWORK_STORAGE_HANG]


def test_docs_rules_md_is_current():
    path = ROOT / "docs" / "rules.md"
    assert path.read_text(encoding="utf-8") == render(), "run: python -m plegdoctor.rules.docs"


def test_docs_check_mode_detects_drift(tmp_path):
    stale = tmp_path / "rules.md"
    stale.write_text("# old\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "plegdoctor.rules.docs", "--check", str(stale)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "out of date" in proc.stderr


def test_rules_command_lists_every_code():
    out = CliRunner().invoke(rules_command, []).output
    for code in RULES:
        assert code in out
    assert "overlay-umount-sync" in out


def test_rules_command_json():
    import json

    out = CliRunner().invoke(rules_command, ["-o", "json"]).output
    doc = json.loads(out)
    assert {d["code"] for d in doc} == set(RULES)


def test_explain_prints_the_rule_page():
    res = CliRunner().invoke(explain_command, ["pd401"])
    assert res.exit_code == 0
    assert res.output.startswith("PD401 shim-umount-syncfs")
    assert "root cause class: overlay-umount-sync" in res.output
    assert "role: cause" in res.output and "reads: dumps, versions" in res.output
    assert "goroutine 104 [syscall]" in res.output
    assert "https://github.com/containerd/containerd/issues/5325" in res.output


def test_explain_unknown_code_is_one_line_and_exit_2():
    proc = subprocess.run(
        [sys.executable, "-c", "from plegdoctor.cli import main; main(['explain', 'PD999'])"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown rule code 'PD999'" in proc.stderr


# ---------------------------------------------------------------------------------------
# What each rule declares: role and the evidence kinds it reads


def _declare(**kwargs):
    def check(ctx):
        """Detects nothing (a test rule)."""
        return []

    return rule("PD999", "test-rule", title="t", severity=Severity.INFO, cls=RootCauseClass.UNKNOWN, fix="f", **kwargs)(
        check
    )


def test_registry_rejects_an_unknown_evidence_kind():
    with pytest.raises(ValueError, match="unknown evidence kind 'dmesg'"):
        _declare(reads=("hung_tasks", "dmesg"))
    with pytest.raises(ValueError, match="tuple of evidence kinds"):
        _declare(reads="hung_tasks")
    assert "PD999" not in REGISTRY


def test_registry_rejects_an_unknown_role():
    with pytest.raises(ValueError, match="unknown role 'config'"):
        _declare(role="config", reads=("versions",))
    assert "PD999" not in REGISTRY


def test_registry_accepts_known_kinds_and_roles():
    try:
        _declare(role="condition", reads=("versions", EvidenceKind.MOUNTS))
        r = REGISTRY["PD999"]
        assert r.role is Role.CONDITION and r.reads == (EvidenceKind.VERSIONS, EvidenceKind.MOUNTS)
        assert not r.symptom
    finally:
        REGISTRY.pop("PD999", None)


def test_evidence_kinds_are_the_evidence_lists():
    lists = {f.name for f in dataclasses.fields(Evidence)} - {"inputs", "notes", "manifest_kinds", "boot_time"}
    assert {str(k) for k in EvidenceKind} == lists


def test_every_rule_declares_its_role_and_what_it_reads():
    for code, r in RULES.items():
        assert r.reads, f"{code} declares no evidence kinds"
        assert all(isinstance(k, EvidenceKind) for k in r.reads), code
        assert isinstance(r.role, Role), code
    assert {c for c, r in RULES.items() if r.role is Role.SYMPTOM} == {
        "PD101",
        "PD102",
        "PD103",
        "PD104",
        "PD108",
        "PD901",
    }
    # the configuration and version rules only strengthen a class other evidence shows
    assert {c for c, r in RULES.items() if r.role is Role.CONDITION} == {c for c in RULES if c.startswith("PD5")}
