# ruff: noqa: E501  (log lines are quoted with their real lengths)
"""PD7xx (dockerd / dockershim): each rule fires on a real or internally consistent case and
stays quiet on a plausible look-alike. Log lines written here use the kubelet's legacy klog
format of the dockershim era (tests/fixtures/logs/kubelet-klog-legacy.log) and are SYNTHETIC."""

from __future__ import annotations

from pathlib import Path

from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
GOROUTINES = TESTS / "fixtures" / "goroutines"
INCIDENTS = TESTS / "incidents"
DOCKERD_11 = INCIDENTS / "11-dockerd-lock-inspect"


# -- PD701 dockerd container lock ------------------------------------------------------------


def test_pd701_fires_on_inspects_queued_on_a_container_lock() -> None:
    hits = assert_fires("PD701", [DOCKERD_11 / "var" / "run" / "docker" / "goroutine-stacks-2020-10-14T171502Z.log"])
    assert "container lock" in hits[0].title


def test_pd701_fires_on_the_real_journald_wrapped_dockerd_dump() -> None:
    assert_fires("PD701", [GOROUTINES / "framings" / "journald-dockerd-moby-27827.txt"])


def test_pd701_quiet_on_a_containerd_dump_with_a_status_lock_convoy() -> None:
    # a lock convoy of the other runtime: containerd's CRI status lock is not dockerd's container lock
    assert_quiet("PD701", [GOROUTINES / "containerd-1.6-stall-go1.19-raw.txt"])


# -- PD702 dockershim timeouts ---------------------------------------------------------------


def test_pd702_fires_on_docker_operation_timeouts() -> None:
    hits = assert_fires("PD702", [DOCKERD_11 / "kubelet.log"], year=2020)
    assert "timed out" in hits[0].title


def test_pd702_quiet_on_a_docker_error_that_is_not_a_timeout(tmp_path: Path) -> None:
    # dockerd restarting: the list fails at once with "Cannot connect to the Docker daemon"
    line = "E1014 17:10:30.400213    2261 remote_runtime.go:295] ListContainers with filter &ContainerFilter{Id:,State:nil,PodSandboxId:,LabelSelector:map[string]string{},} from runtime service failed: rpc error: code = Unknown desc = Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    assert_quiet("PD702", {"kubelet.log": line + "\n"}, tmp_path, year=2020)
