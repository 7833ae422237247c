"""One CauseClass record per root-cause class, and what the diagnosis reads from a rule's
declaration instead of its code (role, proof, io_load, facts)."""

from __future__ import annotations

import pytest

from plegdoctor.diagnosis import diagnose
from plegdoctor.diagnosis.classes import _RECORDS, CAUSE_CLASSES, cause_class
from plegdoctor.diagnosis.rank import evidence_kinds
from plegdoctor.evidence import Evidence
from plegdoctor.model import Finding, Ref, RootCauseClass, Severity
from plegdoctor.rules import load_all
from plegdoctor.rules.registry import Hit, Proof, Role, RuleContext

C = RootCauseClass
RULES = load_all()


def test_each_root_cause_class_has_exactly_one_record() -> None:
    assert [r.cls for r in _RECORDS].count(C.UNKNOWN) == 1
    for cls in RootCauseClass:
        assert [r.cls for r in _RECORDS].count(cls) == 1, cls
        assert cause_class(cls).cls is cls
    assert set(CAUSE_CLASSES) == set(RootCauseClass)


def test_deeper_classes_are_no_shallower_and_never_circle_back() -> None:
    def reach(cls: RootCauseClass, seen: tuple[RootCauseClass, ...]) -> None:
        for d in cause_class(cls).deeper:
            assert d not in (*seen, cls), f"{cls} -> {d} circles back"
            assert cause_class(d).depth >= cause_class(cls).depth, f"{d} is shallower than {cls}"
            reach(d, (*seen, cls))

    for cls in RootCauseClass:
        reach(cls, ())


def test_loaded_disk_classes() -> None:
    loaded = {c for c, r in CAUSE_CLASSES.items() if r.loaded_disk}
    assert loaded == {C.FSYNC_IO_PRESSURE, C.OVERLAY_UMOUNT_SYNC, C.DISK_IO_PRESSURE}
    assert not cause_class(C.CRI_STATUS_LOCK).loaded_disk


def _finding(code: str, cls: RootCauseClass, weight: float = 0.5, **facts: float) -> Finding:
    return Finding(
        code=code,
        severity=Severity.WARNING,
        title=f"{code} finding",
        root_cause=cls,
        weight=weight,
        evidence=(Ref("log", 1, "line"),),
        fix=f"fix of {code}",
        facts=dict(facts),
    )


def test_a_condition_rule_alone_makes_no_cause_but_strengthens_one_shown() -> None:
    condition = next(c for c, r in RULES.items() if r.role is Role.CONDITION and r.root_cause == C.SHIM_HANG)
    cause = next(c for c, r in RULES.items() if r.role is Role.CAUSE and r.root_cause == C.SHIM_HANG)
    ctx = RuleContext(Evidence())

    alone = diagnose(ctx, [_finding(condition, C.SHIM_HANG, 0.4)])
    assert not any(rc.cls == C.SHIM_HANG for rc in alone.root_causes)

    with_cause = diagnose(RuleContext(Evidence()), [_finding(cause, C.SHIM_HANG), _finding(condition, C.SHIM_HANG)])
    top = with_cause.root_causes[0]
    assert top.cls == C.SHIM_HANG and condition in top.findings
    only_cause = diagnose(RuleContext(Evidence()), [_finding(cause, C.SHIM_HANG)])
    assert top.confidence > only_cause.root_causes[0].confidence


def test_kernel_proof_comes_from_the_rule_declaration() -> None:
    kernel = next(c for c, r in RULES.items() if r.proof is Proof.KERNEL)
    logs = next(c for c, r in RULES.items() if r.proof is Proof.LOGS and r.role is Role.CAUSE)
    assert evidence_kinds([_finding(kernel, C.KERNEL_D_STATE)], RULES) == {"kernel"}
    assert evidence_kinds([_finding(logs, C.KERNEL_D_STATE)], RULES) == {"logs"}


def test_hit_facts_reach_the_finding_but_not_the_json() -> None:
    r = RULES["PD901"]
    f = r.to_finding(Hit(title="the relist probe's ListPodSandbox in flight", facts={"stall_seconds": 6.2}))
    assert f.facts == {"stall_seconds": 6.2}
    assert "facts" not in f.to_json()


@pytest.mark.parametrize("facts, want", [({"stall_seconds": 6.2}, 6.2), ({}, None)])
def test_stall_seconds_falls_back_to_a_symptom_fact(facts: dict[str, float], want: float | None) -> None:
    # no relist log: the timeline shows no stall; the trigger's stalled call says how long
    dg = diagnose(RuleContext(Evidence()), [_finding("PD901", C.UNKNOWN, 0.0, **facts)])
    assert dg.stall_seconds == want
    assert all("facts" not in f for f in dg.to_json()["findings"])


def test_a_stall_without_a_length_is_not_said_to_last_0_ms() -> None:
    from types import SimpleNamespace

    from plegdoctor.diagnosis.explain import _stopped

    assert _stopped(SimpleNamespace(seconds=0.0)) == "Relisting stopped for an unknown time"
    assert _stopped(SimpleNamespace(seconds=None)) == "Relisting stopped for an unknown time"
    assert _stopped(SimpleNamespace(seconds=42.0)) == "Relisting stopped for 42 s"  # look-alike: a real length
