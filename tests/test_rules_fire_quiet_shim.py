# ruff: noqa: E501  (log and goroutine lines are quoted with their real lengths)
"""PD4xx (shim, runc, CNI): each rule fires on a real or internally consistent case and stays
quiet on a plausible look-alike. Log lines written here use the kubelet's and containerd's real
formats (see tests/fixtures/logs and tests/fixtures/rules/containerd-1.6.20-pod-lifecycle.log,
copied from a real containerd 1.6.20 log) and are marked SYNTHETIC."""

from __future__ import annotations

from pathlib import Path

from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
GOROUTINES = TESTS / "fixtures" / "goroutines"
LOGS = TESTS / "fixtures" / "logs"
RULES = TESTS / "fixtures" / "rules"
NODE = TESTS / "fixtures" / "node"
INCIDENTS = TESTS / "incidents"

STALL_16 = GOROUTINES / "containerd-1.6-stall-go1.19-raw.txt"
UPDATE_VIA_SHIM = GOROUTINES / "containerd-1.7-update-via-shim-go1.22-raw.txt"
STATUS_FSYNC_21 = GOROUTINES / "containerd-2.1-status-fsync-go1.24-raw.txt"
HEALTHY_1620 = GOROUTINES / "containerd-1.6.20-go1.19-sigusr1-raw.txt"
HEALTHY_SHIM = GOROUTINES / "shim-runc-v2-1.6.20-sigusr1-raw-markers.txt"
SHIM_UMOUNT = GOROUTINES / "shim-runc-v2-1.6-delete-umount-raw.txt"
SEED = GOROUTINES / "seed-ticket-excerpts-zh.txt"
SHIM_09 = INCIDENTS / "09-shim-hang-ttrpc-kill" / "tmp" / "containerd.1012.stacks.log"
PS_10 = INCIDENTS / "10-runc-hang-frozen-cgroup" / "ps-eo.txt"
CNI_14 = INCIDENTS / "14-cni-hang-log"
POD_LIFECYCLE = RULES / "containerd-1.6.20-pod-lifecycle.log"


# -- PD401 shim umount syncfs ---------------------------------------------------------------


def test_pd401_fires_on_the_shim_stuck_in_umount2_deleting_a_task() -> None:
    hits = assert_fires("PD401", [SHIM_UMOUNT])
    assert "umount" in hits[0].title


def test_pd401_quiet_on_an_idle_shim() -> None:
    # a real SIGUSR1 dump of an idle containerd-shim-runc-v2 1.6.20
    assert_quiet("PD401", [HEALTHY_SHIM])


# -- PD402 containerd waits for the shim's Delete ---------------------------------------------


def test_pd402_fires_on_exit_handling_waiting_for_the_shims_delete() -> None:
    hits = assert_fires("PD402", [STALL_16])
    assert "container exit handling" in hits[0].title


def test_pd402_quiet_when_the_shim_side_is_visible_in_umount() -> None:
    # the seed ticket's dumps show the shim's side (umount2): PD401 carries that link
    assert_quiet("PD402", [SEED])


def test_pd402_quiet_on_an_idle_containerd() -> None:
    assert_quiet("PD402", [HEALTHY_1620])


# -- PD403 task delete timeout after exit (containerd log) ---------------------------------


def test_pd403_fires_on_taskexit_delete_deadline_exceeded() -> None:
    hits = assert_fires("PD403", [LOGS / "containerd-json.log"])
    assert "timed out" in hits[0].title


def test_pd403_quiet_when_the_delete_fails_because_the_shim_is_gone(tmp_path: Path) -> None:
    # SYNTHETIC (containerd's text): the shim's connection closed; the Delete failed at once, no timeout
    line = 'time="2024-03-11T09:15:09.020417226Z" level=error msg="failed to handle container TaskExit event &TaskExit{ContainerID:5b0e1c6b8f2d4b9b2e0f3fa1ad6c1d07c6a9e2b44f1e0d8c7a6b5d4c3b2a1f09,ID:5b0e1c6b8f2d4b9b2e0f3fa1ad6c1d07c6a9e2b44f1e0d8c7a6b5d4c3b2a1f09,Pid:48211,ExitStatus:137,ExitedAt:2024-03-11 09:14:59.00681124 +0000 UTC,XXX_unrecognized:[],}" error="failed to stop container: failed to delete task: ttrpc: closed: unknown"'
    assert_quiet("PD403", {"containerd.log": line + "\n"}, tmp_path)


# -- PD404 UpdateContainerResources waits for the shim's Update ---------------------------


def test_pd404_fires_on_the_update_waiting_for_the_shims_task_update() -> None:
    hits = assert_fires("PD404", [UPDATE_VIA_SHIM])
    assert "task Update" in hits[0].title


def test_pd404_quiet_when_the_update_holds_the_lock_across_its_own_fsync() -> None:
    # UpdateContainerResources holds the status lock, but waits for the checkpoint fsync, not the shim
    assert_quiet("PD404", [STATUS_FSYNC_21])


# -- PD405 long update across an exit-delete timeout (log-only) --------------------------


def test_pd405_fires_on_an_update_held_across_a_task_delete_timeout() -> None:
    assert_fires("PD405", [LOGS / "containerd-json.log"])


def test_pd405_quiet_on_a_long_update_without_any_delete_timeout() -> None:
    # incident 07: an update that never returns, but no container exit timed out meanwhile
    assert_quiet("PD405", [INCIDENTS / "07-cri-status-lock-update-resources" / "containerd.journal"], year=2024)


# -- PD406 shim call stuck -----------------------------------------------------------------


def test_pd406_fires_on_containerd_waiting_9_minutes_for_the_shims_kill() -> None:
    hits = assert_fires("PD406", [SHIM_09])
    assert "9 min" in hits[0].title


def test_pd406_quiet_on_shim_calls_in_flight_for_under_a_minute(tmp_path: Path) -> None:
    # the same goroutines caught mid-call ([select], no minutes): calls in flight, not stuck
    text = SHIM_09.read_text(encoding="utf-8").replace("[select, 9 minutes]", "[select]")
    assert_quiet("PD406", {"containerd.1012.stacks.log": text}, tmp_path)


# -- PD407 runc hang -----------------------------------------------------------------------


def test_pd407_fires_on_runc_in_d_state_in_a_frozen_cgroup() -> None:
    hits = assert_fires("PD407", [PS_10])
    assert "D state" in hits[0].title


def test_pd407_fires_on_a_runc_goroutine_waiting_for_its_child() -> None:
    assert_fires("PD407", [GOROUTINES / "framings" / "raw-runc-1882.txt"])


def test_pd407_quiet_on_runc_processes_that_are_merely_sleeping(tmp_path: Path) -> None:
    # the same listing with runc sleeping (S, futex wait): an update in progress, not stuck
    text = (
        PS_10.read_text(encoding="utf-8")
        .replace(" D    __refrigerator  ", " Sl   futex_wait_queue")
        .replace(" Ds   __refrigerator  ", " Ssl  futex_wait_queue")
    )
    assert "__refrigerator" not in text
    assert_quiet("PD407", {"ps-eo.txt": text}, tmp_path)


# -- PD420 CNI hang (goroutines) -----------------------------------------------------------


def test_pd420_fires_on_the_dockershim_waiting_in_a_cni_plugin() -> None:
    assert_fires("PD420", [GOROUTINES / "framings" / "pprof-debug1-grep-kubelet-98044.txt"])


def test_pd420_quiet_on_containerds_idle_cni_config_syncer() -> None:
    # a real idle containerd: its cniNetConfSyncer waits for CNI config changes, no plugin runs
    assert_quiet("PD420", [HEALTHY_1620])


# -- PD421 CNI timeouts in logs ------------------------------------------------------------

_RUN_SANDBOX_CNI_TIMEOUT = 'E0619 02:12:31.402215    2210 remote_runtime.go:193] "RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = failed to setup network for sandbox \\"9b2e7d1c4a6f8e0b3d5c7a9f1e2b4d6c8a0f3e5b7d9c1a2e4f6b8d0c2e4a6f8b\\": plugin type=\\"calico\\" failed (add): error getting ClusterInformation: Get \\"https://10.96.0.1:443/apis/crd.projectcalico.org/v1/clusterinformations/default\\": dial tcp 10.96.0.1:443: i/o timeout"'
_PULL_KUBELET = 'E0619 02:12:31.402215    2210 remote_image.go:180] "PullImage from image service failed" err="rpc error: code = Unknown desc = failed to pull and unpack image \\"docker.io/calico/cni:v3.26.1\\": failed to resolve reference \\"docker.io/calico/cni:v3.26.1\\": failed to do request: Head \\"https://registry-1.docker.io/v2/calico/cni/manifests/v3.26.1\\": dial tcp 54.227.20.253:443: i/o timeout" image="docker.io/calico/cni:v3.26.1"'
_PULL_CONTAINERD = 'time="2024-06-19T02:12:31.401872113Z" level=error msg="PullImage \\"docker.io/calico/cni:v3.26.1\\" failed" error="failed to pull and unpack image \\"docker.io/calico/cni:v3.26.1\\": failed to resolve reference \\"docker.io/calico/cni:v3.26.1\\": failed to do request: Head \\"https://registry-1.docker.io/v2/calico/cni/manifests/v3.26.1\\": dial tcp 54.227.20.253:443: i/o timeout"'


def test_pd421_fires_on_calico_delete_deadline_exceeded_in_containerds_log() -> None:
    hits = assert_fires("PD421", [CNI_14 / "containerd-journal.txt", CNI_14 / "kubelet-journal.txt"], year=2024)
    assert hits[0].root_cause == "cni-hang"


def test_pd421_fires_on_a_kubelet_runpodsandbox_cni_add_timeout(tmp_path: Path) -> None:
    # SYNTHETIC, calico's real error text as the kubelet quotes the runtime's answer
    assert_fires("PD421", {"kubelet.log": _RUN_SANDBOX_CNI_TIMEOUT + "\n"}, tmp_path, year=2024)


def test_pd421_counts_each_repeated_timeout_and_not_the_same_message_without_one(tmp_path: Path) -> None:
    # SYNTHETIC: the kubelet repeats one sandbox's error every sync; the same message whose
    # error is not a timeout (a refused connection) is no CNI hang, however often it repeats
    refused = _RUN_SANDBOX_CNI_TIMEOUT.replace("i/o timeout", "connect: connection refused")
    lines = [_RUN_SANDBOX_CNI_TIMEOUT.replace("02:12:31", f"02:1{i}:31") for i in range(3)]
    lines += [refused.replace("02:12:31", f"02:2{i}:31") for i in range(4)]
    hits = assert_fires("PD421", {"kubelet.log": "\n".join(lines) + "\n"}, tmp_path, year=2024)
    assert "timed out 3 times" in hits[0].title, hits[0].title
    assert_quiet("PD421", {"kubelet.log": "\n".join(lines[3:]) + "\n"}, tmp_path / "refused", year=2024)


def test_pd421_quiet_on_a_timed_out_pull_of_the_calico_cni_image(tmp_path: Path) -> None:
    # an image whose name contains "cni" failing to pull is an image pull failure, not a CNI hang
    dg = assert_quiet(
        "PD421", {"kubelet.log": _PULL_KUBELET + "\n", "containerd.log": _PULL_CONTAINERD + "\n"}, tmp_path, year=2024
    )
    assert all(str(rc.cls) != "cni-hang" for rc in dg.root_causes)


def test_pd421_quiet_on_sandbox_teardowns_that_succeed() -> None:
    # a real containerd 1.6.20 pod lifecycle: RunPodSandbox, StopPodSandbox, `TearDown network ... successfully`
    assert_quiet("PD421", [POD_LIFECYCLE])
