"""One disposable node: the registry, a slow disk holding containerd's root, and one containerd.

Layout under the lab directory (default /var/lib/pleg-doctor-lab):

    state.json            the ledger (lab.state): PIDs, mounts, loop devices, sysctls to undo
    registry/             docker-registry storage (the lab's "remote", on the fast disk)
    containerd/<ver>/     downloaded containerd builds (cached)   apt/, debs/: their private apt
    disk/                 the slow disk's sparse image, nbdkit socket, nbdfuse file
    node/                 the slow disk's mountpoint; node/root is containerd's root
    run/                  containerd's state dir, sockets, TMPDIR (goroutine dumps)
    runs/<stamp>/<variant>/  logs, evidence bundles, results of each run
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from plegdoctor.errors import UserError
from plegdoctor.lab.slowdisk import DiskSpec, SlowDisk
from plegdoctor.lab.state import LabState, Resource, alive, is_mounted
from plegdoctor.lab.variants import DIRTY_BACKGROUND_BYTES, DIRTY_BYTES, Variant
from plegdoctor.lab.versions import ContainerdBuild
from plegdoctor.testbed.containerd import RUN_CONTAINERD, ContainerdProcess, ContainerdSpec, TestbedError
from plegdoctor.testbed.procs import remove_cgroup_tree
from plegdoctor.testbed.registry import RegistryProcess

DEFAULT_LAB_DIR = "/var/lib/pleg-doctor-lab"
REGISTRY_PORT = 5000


def cgroup_parent(lab_dir: Path) -> str:
    """The pods' cgroup parent, unique per lab directory (two labs must never clean each other's)."""
    digest = hashlib.sha256(str(Path(lab_dir).resolve()).encode()).hexdigest()[:10]
    return f"/pleg-doctor-lab-{digest}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # like the registry itself (Go sets SO_REUSEADDR): TIME_WAIT leftovers do not block it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LabRegistry:
    """The lab's registry: reuses a running one recorded in the state, else starts it on 127.0.0.1:5000."""

    def __init__(self, state: LabState):
        self.state = state
        self.url = ""
        self._proc: RegistryProcess | None = None

    def up(self) -> str:
        info = self.state.info.get("registry")
        if info:
            res = next((r for r in self.state.resources if r.kind == "process" and r.name == "docker-registry"), None)
            if res and alive(res.pid, res.start_time):
                self.url = str(info["url"])
                return self.url
        port = REGISTRY_PORT if _port_free(REGISTRY_PORT) else 0
        storage = self.state.lab_dir / "registry" / "storage"
        proc = RegistryProcess(str(storage), port=port or None)
        try:
            proc.start()
        except TestbedError as exc:
            raise UserError(f"docker-registry: {exc}") from None
        self._proc = proc
        self.state.track_process("docker-registry", proc.pid)
        self.url = proc.url
        self.state.set_info(registry={"url": proc.url, "pid": proc.pid})
        return self.url

    def detach(self) -> None:
        """Keep the registry running after this process exits (`lab up`); `lab down` stops it by PID."""
        if self._proc is not None:
            atexit.unregister(self._proc.stop)

    def down(self) -> None:
        for res in [r for r in self.state.resources if r.kind == "process" and r.name == "docker-registry"]:
            self.state.undo(res)
        self.state.info.pop("registry", None)
        self.state.save()


class LabNode:
    """Slow disk + containerd for one variant. up() then down(); down() is safe after a failure."""

    def __init__(
        self,
        state: LabState,
        build: ContainerdBuild,
        variant: Variant,
        disk: DiskSpec,
        registry_url: str,
        pause_image: str,
        run_dir: Path,
        log: Callable[[str], None] | None = None,
    ):
        self.state = state
        self.build = build
        self.variant = variant
        self.disk_spec = disk
        self.registry_url = registry_url
        self.pause_image = pause_image
        self.run_dir = Path(run_dir)
        self.log = log or (lambda msg: None)
        lab = state.lab_dir
        self.mountpoint = lab / "node"
        self.disk = SlowDisk(state, disk, self.mountpoint)
        self.ctd: ContainerdProcess | None = None
        self.spec = ContainerdSpec(
            root=str(self.mountpoint / "root"),
            state=str(lab / "run" / "state"),
            address=str(lab / "run" / "containerd.sock"),
            binary=str(build.binary),
            shim_dir=str(build.shim_dir),
            config_schema=build.config_schema,
            overlay_mount_options=("volatile",) if variant.volatile else (),
            bbolt_no_sync=variant.no_sync,
            log_path=str(self.run_dir / "containerd.log"),
            log_level="info",
            debug_address=str(lab / "run" / "debug.sock"),
            sandbox_image=pause_image,
            registry_hosts=(registry_url.split("://", 1)[-1],),
            cgroup_parent=cgroup_parent(lab),
            tmpdir=str(lab / "run" / "tmp"),
        )

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint

    def check(self) -> None:
        v, b = self.variant, self.build
        if v.volatile and not b.supports_mount_options:
            raise UserError(
                f"variant {v.name}: containerd {b.version} has no overlay mount_options (volatile needs "
                "1.6.24+, 1.7.4+ or 2.0+); use 1.7 or 2.1"
            )
        if v.no_sync and not b.supports_bbolt_no_sync:
            raise UserError(f"variant {v.name}: containerd {b.version} has no bbolt no_sync (needs 2.1+)")

    def up(self) -> LabNode:
        self.check()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.disk.up()
            mbps = self.disk.spec.mb_per_s
            self.log(
                f"slow disk {self.disk.device} ({self.disk_spec.size_gib} GiB, {mbps:g} MB/s) at {self.mountpoint}"
            )
            run = self.state.lab_dir / "run"
            if run.exists() and not is_mounted(str(run)):
                shutil.rmtree(run / "state", ignore_errors=True)
            if self.variant.dirty_limits:
                self.state.set_sysctl("vm.dirty_bytes", str(DIRTY_BYTES))
                self.state.set_sysctl("vm.dirty_background_bytes", str(DIRTY_BACKGROUND_BYTES))
                self.log("vm.dirty_bytes=256MiB vm.dirty_background_bytes=64MiB (restored afterwards)")
            # what /run looked like, so `lab down` after a crash leaves it as it was
            self.state.info.setdefault("run_containerd_existed", os.path.exists(RUN_CONTAINERD))
            self.state.info.setdefault("run_containerd_s_existed", os.path.exists(RUN_CONTAINERD + "/s"))
            self.state.save()
            self.ctd = ContainerdProcess(self.spec, remove_base=False, install_signal_handlers=False)
            try:
                self.ctd.start(timeout=60)
            except TestbedError as exc:
                raise UserError(f"containerd {self.build.version} did not start: {exc}") from None
            self.state.add(Resource("process", "containerd", pid=self.ctd.pid, start_time=_start(self.ctd.pid)))
            self.state.set_info(
                node={"variant": self.variant.name, "containerd": self.build.version, "endpoint": self.endpoint}
            )
            self.log(f"containerd {self.build.version} pid {self.ctd.pid} (config schema v{self.build.config_schema})")
        except BaseException:
            self.down()
            raise
        return self

    def detach(self) -> None:
        """Keep containerd running after this process exits (`lab up`); `lab down` stops it by PID."""
        if self.ctd is not None:
            atexit.unregister(self.ctd.stop)

    def down(self) -> list[str]:
        errors: list[str] = []
        if self.ctd is not None:
            rep = self.ctd.stop()
            errors += rep.errors
            for res in [r for r in self.state.resources if r.kind == "process" and r.name == "containerd"]:
                self.state.undo(res)
            self.ctd = None
        errors += self._restore_sysctls()
        errors += self.disk.down()
        self.state.info.pop("node", None)
        self.state.save()
        return errors

    def _restore_sysctls(self) -> list[str]:
        return self.state.restore_sysctls()

    def shim_pids(self) -> list[int]:
        return self.ctd.shim_pids() if self.ctd else []


def _start(pid: int) -> int:
    from plegdoctor.lab.state import proc_start_time

    return proc_start_time(pid)


def cleanup_leftovers(state: LabState) -> list[str]:
    """After the ledger's teardown: what containerd made outside the lab dir (shim sockets under
    /run/containerd/s, the pods' cgroups). Needed after a crash, harmless otherwise."""
    errors: list[str] = []
    task_root = state.lab_dir / "run" / "state" / "io.containerd.runtime.v2.task"
    for address_file in task_root.glob("*/*/address"):
        with contextlib.suppress(OSError):
            sock = address_file.read_text().strip().removeprefix("unix://")
            if sock.startswith(RUN_CONTAINERD + "/s/"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(sock)
    errors += remove_cgroup_tree(cgroup_parent(state.lab_dir))
    for key, path in (("run_containerd_s_existed", RUN_CONTAINERD + "/s"), ("run_containerd_existed", RUN_CONTAINERD)):
        if state.info.get(key) is False:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only when empty: another containerd may use it now
    state.info.pop("run_containerd_existed", None)
    state.info.pop("run_containerd_s_existed", None)
    state.save()
    return errors
