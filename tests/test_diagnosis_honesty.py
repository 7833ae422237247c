"""Summaries claim only what the evidence shows; the relist's own path decides the ranking.

The seed chain (ListContainers -> UpdateContainerResources -> content commit in fsync) is
fed with no I/O figures, with figures that show a saturated disk, and with figures that show
an idle one; the wording and the confidence must follow.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from plegdoctor.diagnosis import diagnose
from plegdoctor.evidence import Evidence
from plegdoctor.model import DiskSample, PressureSample, RootCause, RootCauseClass
from plegdoctor.rules import RuleContext, run_rules
from test_rules_builders import T0, chain, glink, ref, seed_chains, seed_evidence

C = RootCauseClass
IN_GAP = T0 + timedelta(seconds=60)  # seed gap: T0+37 s .. T0+79.3 s


def _causes(ev: Evidence, chains: list) -> list[RootCause]:
    ctx = RuleContext(ev, goroutines=SimpleNamespace(chains=chains))
    return diagnose(ctx, run_rules(ctx)).root_causes


def _by_class(causes: list[RootCause]) -> dict[RootCauseClass, RootCause]:
    return {rc.cls: rc for rc in causes}


def _psi(full10: float, some10: float) -> PressureSample:
    return PressureSample(IN_GAP, "io", "node", some10, some10, 0.0, 0, full10, full10 * 0.8, 0.0, 0, ref("io", 4))


def _disk(util: float, w_await: float) -> DiskSample:
    return DiskSample(
        IN_GAP - timedelta(seconds=5), IN_GAP, "sdb", util, 2.0, w_await, 80.0, 9000.0, 30.0, ref("io", 9)
    )


def test_no_io_figures_the_summary_says_so_and_does_not_call_the_disk_saturated() -> None:
    top = _causes(seed_evidence(), seed_chains())[0]
    assert top.cls == C.FSYNC_IO_PRESSURE
    assert "the disk's load is not in the evidence: collect PSI/diskstats to confirm" in top.summary
    assert "saturated" not in top.summary
    # what the dumps do show is said: who flushed, and that the relist waited behind it
    assert "a content commit holding bbolt's writer lock sat in fsync" in top.summary
    assert "the relist's ListContainers waited behind it" in top.summary


def test_figures_that_show_saturation_are_quoted_and_raise_confidence() -> None:
    bare = _causes(seed_evidence(), seed_chains())[0]
    ev = seed_evidence()
    ev.pressure.append(_psi(63.0, 71.0))
    ev.disk_samples.append(_disk(100.0, 850.0))
    top = _causes(ev, seed_chains())[0]
    assert top.cls == C.FSYNC_IO_PRESSURE
    assert "on a saturated disk (PSI io full avg10 63%; sdb 100% util, w_await 850 ms during the stall)" in top.summary
    assert "not in the evidence" not in top.summary
    assert top.confidence > bare.confidence + 0.1


def test_figures_that_show_an_idle_disk_lower_confidence_and_are_quoted() -> None:
    bare = _causes(seed_evidence(), seed_chains())[0]
    ev = seed_evidence()
    ev.pressure.append(_psi(1.0, 3.0))
    ev.disk_samples.append(_disk(12.0, 4.0))
    top = _by_class(_causes(ev, seed_chains()))[C.FSYNC_IO_PRESSURE]
    assert "the I/O figures given do not show a loaded disk (PSI io full avg10 1%; sdb 12% util" in top.summary
    assert "saturated" not in top.summary
    assert top.confidence < bare.confidence


def test_the_chain_that_reaches_the_relist_ranks_first_with_a_margin_and_the_other_says_why() -> None:
    causes = _causes(seed_evidence(), seed_chains())
    assert [rc.cls for rc in causes[:2]] == [C.FSYNC_IO_PRESSURE, C.OVERLAY_UMOUNT_SYNC]
    first, second = causes[:2]
    assert first.confidence - second.confidence >= 0.08
    assert "Ranked below fsync-io-pressure: not on the relist's path in the dumps" in second.summary
    assert "waited behind it" not in second.summary and "queued behind it" not in second.summary


def test_umount_chain_that_reaches_the_relist_says_so_and_ranks_first() -> None:
    # containerd #9770's shape: the update waits for the shim, whose Delete is in umount
    list_wait = seed_chains()[0].links[0]
    umount = seed_chains()[1].links[1]
    update = glink(
        "containerd",
        1723,
        "UpdateContainerResources holds the status lock and waits for the shim's Update",
        {"cri:UpdateContainerResources", "update-container-resources", "status-lock", "shim:Update"},
        kind="ttrpc-call",
    )
    top = _causes(seed_evidence(), [chain(list_wait, update, umount, blocked=2)])[0]
    assert top.cls == C.OVERLAY_UMOUNT_SYNC
    assert "the relist's ListContainers waited behind it" in top.summary
    assert "Ranked below" not in top.summary
