"""The seed incident (the built-in demo: containerd 1.6.21, kernel 5.15) diagnosed end to end."""

from __future__ import annotations

from plegdoctor.commands import demo_dir
from plegdoctor.model import RootCauseClass
from plegdoctor.pipeline import analyze_paths

C = RootCauseClass


def test_seed_incident_end_to_end():
    dg = analyze_paths([str(demo_dir())])
    top = dg.root_causes[0]
    assert top.cls in (C.FSYNC_IO_PRESSURE, C.BBOLT_LOCK_CONTENTION, C.OVERLAY_UMOUNT_SYNC)
    # full chain, symptom first: kubelet gap -> ListContainers -> UpdateContainerResources -> content commit
    assert top.chain[0].process == "kubelet" and "42 s" in top.chain[0].detail
    goroutines = [lk.goroutine for lk in top.chain if lk.goroutine is not None]
    assert goroutines[:3] == [1665, 1723, 1268]
    assert "fsync" in top.chain[-1].tags
    # the umount mechanism is reported too, and the status lock is only a link
    classes = [rc.cls for rc in dg.root_causes]
    assert C.OVERLAY_UMOUNT_SYNC in classes and C.CRI_STATUS_LOCK not in classes
    # the volatile fix is stated for the user's version (1.6.21 needs >= 1.6.24)
    fixes = " ".join(top.fixes)
    assert "Your containerd 1.6.21 ignores mount_options: upgrade to >= 1.6.24" in fixes
    assert "Your kernel 5.15.0 supports it" in fixes
    assert "Does NOT remove" in fixes
    # thin node evidence (no PSI, diskstats, dmesg in the article): say what to collect
    steps = " ".join(dg.next_steps)
    assert "cat /proc/pressure/io" in steps and "cat /proc/diskstats; sleep 5; cat /proc/diskstats" in steps


def test_seed_summary_claims_only_what_the_demo_shows_and_explains_the_ranking():
    dg = analyze_paths([str(demo_dir())])
    first, second = dg.root_causes[:2]
    # the demo has no PSI, diskstats, meminfo or dmesg: the disk's load is not claimed
    assert first.cls == C.FSYNC_IO_PRESSURE
    assert "saturated" not in first.summary
    assert "the disk's load is not in the evidence: collect PSI/diskstats to confirm" in first.summary
    assert "the relist's ListContainers waited behind it" in first.summary
    # the umount chain comes from a TaskExit handler, not from the relist's CRI calls
    assert second.cls == C.OVERLAY_UMOUNT_SYNC
    assert first.confidence - second.confidence >= 0.08
    assert "Ranked below fsync-io-pressure: not on the relist's path in the dumps" in second.summary
