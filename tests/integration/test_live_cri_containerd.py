"""CRI client and testbed against a real containerd and a real docker-registry, both started here."""

from __future__ import annotations

import os
import time
from pathlib import Path

from plegdoctor.live.cri import api
from plegdoctor.live.cri.client import CRIClient, CRIError, container_config, host_network_sandbox_config
from plegdoctor.testbed import procs
from plegdoctor.testbed.containerd import ContainerdProcess


def test_pod_lifecycle_with_images_from_local_registry(containerd: ContainerdProcess, images: dict[str, str]) -> None:
    spec = containerd.spec
    client = CRIClient(containerd.endpoint, timeout=30)
    v = client.version()
    assert v.runtime_name == "containerd" and v.runtime_api_version == "v1"
    assert client.list_pod_sandbox() == [] and client.list_containers() == []

    ref = client.pull_image(images["busybox"], timeout=60)
    assert ref.startswith("sha256:")
    assert images["busybox"] in {t for i in client.list_images() for t in i.repo_tags}

    logs = Path(spec.base_dir) / "pod-logs"
    sc = host_network_sandbox_config("lifecycle", cgroup_parent=spec.cgroup_parent, log_directory=str(logs))
    sid = client.run_pod_sandbox(sc, timeout=60)
    cid = client.create_container(
        sid,
        container_config("sleeper", images["busybox"], command=["/bin/sleep"], args=["300"], log_path="sleeper.log"),
        sc,
    )
    client.start_container(cid)
    running = api.enum_value("ContainerState", "CONTAINER_RUNNING")
    (listed,) = client.list_containers()
    assert (listed.id, listed.pod_sandbox_id, listed.state, listed.metadata.name) == (cid, sid, running, "sleeper")
    status = client.container_status(cid).status
    assert status.state == running and status.started_at > 0
    assert client.pod_sandbox_status(sid).status.state == api.enum_value("PodSandboxState", "SANDBOX_READY")

    # the container is a real process under our shim, in our cgroup parent
    shims = containerd.shim_pids()
    assert shims, "no shim found by our unique socket path"
    kids = [procs.read_proc(p) for p in procs.descendants(shims)]
    assert any(k is not None and k.cmdline[:2] == ("/bin/sleep", "300") for k in kids)

    client.update_container_resources(cid, cpu_shares=512, memory_limit_in_bytes=64 << 20)
    res = client.container_status(cid).status.resources.linux
    assert (res.cpu_shares, res.memory_limit_in_bytes) == (512, 64 << 20)

    client.stop_container(cid, grace_seconds=0)
    exited = api.enum_value("ContainerState", "CONTAINER_EXITED")
    assert client.container_status(cid).status.state == exited
    client.remove_container(cid)
    client.stop_pod_sandbox(sid)
    client.remove_pod_sandbox(sid)
    assert client.list_containers() == [] and client.list_pod_sandbox() == []


def test_stop_cleans_up_shims_mounts_and_run_dir(containerd: ContainerdProcess, images: dict[str, str]) -> None:
    run_existed = os.path.exists("/run/containerd")
    spec = containerd.spec
    client = CRIClient(containerd.endpoint, timeout=60)
    client.pull_image(images["busybox"])
    sc = host_network_sandbox_config("left-running", cgroup_parent=spec.cgroup_parent)
    sid = client.run_pod_sandbox(sc)
    cid = client.create_container(sid, container_config("c", images["busybox"], args=["300"]), sc)
    client.start_container(cid)
    shims = containerd.shim_pids()
    children = procs.descendants(shims)
    assert procs.mounts_under([spec.state]), "expected rootfs mounts under state"
    report = containerd.stop()  # pod left running on purpose: stop() must clean it all
    assert report.errors == []
    assert not any(procs.alive(p) for p in [containerd.pid, *shims, *children])
    assert procs.mounts_under([spec.base_dir]) == []
    assert not os.path.exists(spec.base_dir)
    if not run_existed:
        assert not os.path.exists("/run/containerd")
    assert not list(Path("/sys/fs/cgroup").glob(f"*{spec.cgroup_parent}"))


def test_frozen_containerd_gives_deadline_exceeded(containerd: ContainerdProcess) -> None:
    client = CRIClient(containerd.endpoint)
    client.version(timeout=5)
    containerd.freeze()
    try:
        t0 = time.monotonic()
        try:
            client.list_containers(timeout=1.0)
            raise AssertionError("a frozen containerd answered")
        except CRIError as exc:
            assert exc.kind == "deadline-exceeded"
        assert time.monotonic() - t0 < 3
    finally:
        containerd.thaw()
    assert client.list_containers(timeout=10) == []
