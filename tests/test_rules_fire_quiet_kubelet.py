# ruff: noqa: E501  (log and goroutine lines are quoted with their real lengths)
"""PD1xx (kubelet and PLEG): each rule fires on a real or internally consistent case and stays
quiet on a plausible look-alike. Lines written here use the kubelet's real klog formats (as in
tests/fixtures/logs); the ones built by a helper are marked SYNTHETIC."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
LOGS = TESTS / "fixtures" / "logs"
GOROUTINES = TESTS / "fixtures" / "goroutines"
INCIDENTS = TESTS / "incidents"
T0 = datetime(2023, 6, 2, 5, 48, 5, 348117)


def _klog(t: datetime, body: str, sev: str = "I", pid: int = 1679) -> str:
    return f"{sev}{t:%m%d %H:%M:%S.%f} {pid:>8} {body}"


def relists(*gaps: float, start: datetime = T0, every: float = 1.003) -> list[str]:
    """SYNTHETIC: `GenericPLEG: Relisting` ticks ~1 s apart, with the given extra gaps (s)
    inserted after the 5th, 10th, ... tick."""
    out, t = [], start
    pending = list(gaps)
    for i in range(30):
        out.append(_klog(t, 'generic.go:191] "GenericPLEG: Relisting"'))
        t += timedelta(seconds=every + (0.000417 * (i % 7)))
        if i % 5 == 4 and pending:
            t += timedelta(seconds=pending.pop(0))
    return out


def _log(lines: list[str]) -> dict[str, str]:
    return {"kubelet.log": "\n".join(lines) + "\n"}


# -- PD101 relist gap ---------------------------------------------------------------------


def test_pd101_fires_on_a_42s_relist_gap_in_the_real_seed_excerpt() -> None:
    hits = assert_fires("PD101", [LOGS / "kubelet-seed-excerpt.log"])
    assert hits[0].chain.links[0].tags >= {"kubelet-relist", "symptom"}


def test_pd101_quiet_when_relisting_pauses_2s(tmp_path: Path) -> None:
    # a 2 s pause (one slow relist) is under the 3 s gap threshold: not a stall
    assert_quiet("PD101", _log(relists(1.0)), tmp_path, year=2023)


# -- PD102 PLEG unhealthy -----------------------------------------------------------------


def test_pd102_fires_on_skipping_pod_synchronization_pleg_not_healthy() -> None:
    hits = assert_fires("PD102", [LOGS / "kubelet-klog-structured.log"], year=2023)
    assert "PLEG is not healthy" in hits[0].title


def test_pd102_quiet_on_skipping_pod_sync_for_a_runtime_network_reason(tmp_path: Path) -> None:
    # the same kubelet message, but the runtime's network is not ready (CNI not initialised): not PLEG
    line = _klog(
        T0,
        'kubelet.go:2359] "Skipping pod synchronization" err="container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"',
        "E",
    )
    assert_quiet("PD102", _log([*relists(), line]), tmp_path, year=2023)


# -- PD103 relist errors ------------------------------------------------------------------


def test_pd103_fires_on_genericpleg_unable_to_retrieve_pods() -> None:
    hits = assert_fires("PD103", [LOGS / "kubelet-klog-legacy.log"], year=2020)
    assert "DeadlineExceeded" in hits[0].title


def test_pd103_quiet_on_a_container_status_error_outside_the_relist(tmp_path: Path) -> None:
    # ContainerStatus failing for one removed container is a pod worker's error, not the relist's
    line = _klog(
        T0 + timedelta(seconds=3.2),  # between the 4th and 5th tick
        'remote_runtime.go:625] "ContainerStatus from runtime service failed" err="rpc error: code = NotFound desc = an error occurred when try to find container \\"8f71eadd772ffde7f9537998844aa3f7a8a4f15ec182a5943ef0d60f242b1929\\": not found" containerID="8f71eadd772ffde7f9537998844aa3f7a8a4f15ec182a5943ef0d60f242b1929"',
        "E",
    )
    ticks = relists()
    assert_quiet("PD103", _log([*ticks[:4], line, *ticks[4:]]), tmp_path, year=2023)


# -- PD104 evented PLEG fallback ----------------------------------------------------------


def test_pd104_fires_on_fall_back_to_generic_pleg() -> None:
    assert_fires("PD104", [LOGS / "kubelet-klog-structured.log"], year=2023)


def test_pd104_quiet_when_evented_pleg_starts_normally(tmp_path: Path) -> None:
    line = _klog(T0, 'evented.go:103] "Starting Evented PLEG"')
    assert_quiet("PD104", _log([line, *relists()]), tmp_path, year=2023)


# -- PD108 node NotReady because of the runtime ------------------------------------------


_NOT_READY = 'setters.go:547] "Node became not ready" node="node-7" condition={{"type":"Ready","status":"False","lastHeartbeatTime":"2023-06-02T05:51:07Z","lastTransitionTime":"2023-06-02T05:51:07Z","reason":"KubeletNotReady","message":"{msg}"}}'


def test_pd108_fires_when_the_node_goes_notready_for_pleg() -> None:
    assert_fires("PD108", [LOGS / "kubelet-klog-structured.log"], year=2023)


def test_pd108_quiet_when_the_node_goes_notready_for_a_csi_reason(tmp_path: Path) -> None:
    line = _klog(T0, _NOT_READY.format(msg="CSINode is not yet initialized"))
    assert_quiet("PD108", _log([line, *relists()]), tmp_path, year=2023)


# -- PD110 relist blocked inside the kubelet ---------------------------------------------


def test_pd110_fires_on_the_relist_goroutine_blocked_on_its_event_channel() -> None:
    hits = assert_fires("PD110", [GOROUTINES / "kubelet-1.20-pleg-relist-chan-send-go1.15-sigquit.txt"])
    assert all(lk.process == "kubelet" for lk in hits[0].chain.links)


def test_pd110_quiet_when_the_kubelet_relist_waits_in_a_cri_call() -> None:
    # a containerd dump whose CRI ListContainers waits: the relist waits on the runtime, not inside the kubelet
    assert_quiet("PD110", [GOROUTINES / "containerd-1.6-stall-go1.19-raw.txt"])


# -- PD111 runtime idle during the stall -------------------------------------------------


def test_pd111_fires_when_containerd_is_idle_during_a_relist_stall() -> None:
    inc = INCIDENTS / "15-kubelet-internal-relist-chan"
    assert_fires("PD111", [inc / "kubelet.log", inc / "tmp" / "containerd.822.stacks.log"], year=2019)


def test_pd111_quiet_when_containerd_shows_a_blocked_list_call(tmp_path: Path) -> None:
    # the same stall, but containerd's dump shows ListContainers waiting for a status lock
    inc = INCIDENTS / "15-kubelet-internal-relist-chan"
    assert_quiet("PD111", [inc / "kubelet.log", GOROUTINES / "containerd-1.6-stall-go1.19-raw.txt"], year=2019)


def test_pd111_quiet_without_a_stall() -> None:
    # an idle containerd with no relist stall: nothing to explain
    inc = INCIDENTS / "15-kubelet-internal-relist-chan"
    assert_quiet("PD111", [inc / "tmp" / "containerd.822.stacks.log"])


# -- PD120 too many containers -----------------------------------------------------------


_METRICS = """# HELP kubelet_pleg_relist_duration_seconds [ALPHA] Duration in seconds for relisting pods in PLEG.
# TYPE kubelet_pleg_relist_duration_seconds histogram
kubelet_pleg_relist_duration_seconds_sum {sum}
kubelet_pleg_relist_duration_seconds_count 4120
# HELP kubelet_running_containers [ALPHA] Number of containers currently running
# TYPE kubelet_running_containers gauge
kubelet_running_containers{{container_state="exited"}} {exited}
kubelet_running_containers{{container_state="running"}} {running}
# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox
# TYPE kubelet_running_pods gauge
kubelet_running_pods {pods}
"""


def test_pd120_fires_on_slow_relists_with_thousands_of_containers() -> None:
    inc = INCIDENTS / "16-too-many-containers"
    hits = assert_fires("PD120", [inc / "kubelet-metrics.prom", inc / "journal-kubelet.txt"])
    assert "containers" in hits[0].title


def test_pd120_quiet_on_many_containers_that_relist_fast(tmp_path: Path) -> None:
    # SYNTHETIC metrics: 2600 containers but a mean relist of 0.21 s: the count is not slowing the relist
    text = _METRICS.format(sum=865.2, exited=2210, running=412, pods=236)
    assert_quiet("PD120", {"kubelet-metrics.prom": text, **_log(relists())}, tmp_path, year=2023)


def test_pd120_quiet_on_slow_relists_with_few_containers(tmp_path: Path) -> None:
    # slow relists (mean 2.5 s) with 40 containers: something else is slow, not the count
    text = _METRICS.format(sum=10422.7, exited=12, running=28, pods=14)
    assert_quiet("PD120", {"kubelet-metrics.prom": text}, tmp_path)
