"""Next steps come from what the rules declare they read: a step collecting a kind is shown
when a candidate rule (not part of a confirmed root cause) reads it and the inputs lacked it."""

from __future__ import annotations

from datetime import UTC, datetime

from plegdoctor.diagnosis.next_steps import STEPS, missing_kinds, next_steps
from plegdoctor.evidence import Evidence
from plegdoctor.model import PressureSample, Ref, RootCause, RootCauseClass, Severity
from plegdoctor.rules.registry import EvidenceKind, Role, Rule, RuleContext

C = RootCauseClass
K = EvidenceKind
T0 = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)


def _rule(code: str, *reads: EvidenceKind) -> Rule:
    return Rule(
        code=code,
        name=f"test-{code.lower()}",
        title="a test rule",
        severity=Severity.WARNING,
        root_cause=C.DISK_IO_PRESSURE,
        fix="Test fix.",
        references=(),
        check=lambda ctx: [],
        role=Role.CAUSE,
        reads=reads,
    )


def _cause(confidence: float, *codes: str) -> RootCause:
    return RootCause(
        cls=C.DISK_IO_PRESSURE,
        confidence=confidence,
        summary="I/O was slow.",
        chain=(),
        fixes=(),
        references=(),
        findings=codes,
    )


def _steps_collecting(kind: EvidenceKind) -> list[str]:
    return [s.text for s in STEPS if kind in s.collects and isinstance(s.text, str)]


def _with_psi() -> RuleContext:
    ev = Evidence()
    ev.pressure.append(PressureSample(T0, "io", "node", 81.0, 70.2, 30.1, 1, 74.0, 66.0, 25.0, 1, Ref("psi", 2)))
    return RuleContext(ev)


def test_a_fired_unconfirmed_rule_asks_for_the_kind_it_reads_that_is_missing() -> None:
    ctx = _with_psi()
    rules = {"PD998": _rule("PD998", K.PRESSURE, K.MEMINFO)}
    causes = [_cause(0.4, "PD998")]  # fired, but its cause is not confirmed

    steps = next_steps(ctx, causes, None, rules)

    assert missing_kinds(ctx, causes, rules) == {K.MEMINFO}
    (meminfo_step,) = _steps_collecting(K.MEMINFO)
    assert meminfo_step in steps
    # PSI is in the inputs: not asked for, although the rule reads it
    assert not set(_steps_collecting(K.PRESSURE)) & set(steps)
    # no candidate rule reads the disks' figures: not asked for, although they are missing too
    assert not set(_steps_collecting(K.DISKSTATS)) & set(steps)


def test_a_confirmed_cause_asks_for_nothing_its_rules_read() -> None:
    ctx = _with_psi()
    rules = {"PD998": _rule("PD998", K.PRESSURE, K.MEMINFO)}
    causes = [_cause(0.9, "PD998")]

    assert missing_kinds(ctx, causes, rules) == frozenset()
    assert next_steps(ctx, causes, None, rules) == []


def test_a_rule_that_did_not_fire_is_a_candidate_too() -> None:
    ctx = _with_psi()
    rules = {"PD998": _rule("PD998", K.PRESSURE), "PD997": _rule("PD997", K.DISKSTATS, K.DISK_SAMPLES)}
    causes = [_cause(0.9, "PD998")]  # PD997 could not fire: its evidence is missing

    steps = next_steps(ctx, causes, None, rules)

    assert missing_kinds(ctx, causes, rules) == {K.DISKSTATS, K.DISK_SAMPLES}
    assert set(_steps_collecting(K.DISKSTATS)) <= set(steps)
    assert not set(_steps_collecting(K.MEMINFO)) & set(steps)
