"""Start a real containerd as a child process (no systemd) for tests and the lab, and clean up after it.

    spec = ContainerdSpec.temporary(sandbox_image="127.0.0.1:5000/pause:1", registry_hosts=["127.0.0.1:5000"])
    with ContainerdProcess(spec) as ctd:         # waits until CRI Version answers
        client = CRIClient(ctd.endpoint)
        client.list_containers()  # any CRI call
    # containerd stopped (SIGTERM, then SIGKILL), shims and their containers killed by PID,
    # mounts under root/state unmounted, our shim sockets under /run/containerd removed,
    # cgroups under spec.cgroup_parent removed, the temporary base dir removed.

Gotchas this encodes (found running containerd by hand here): the CRI plugin needs
`restrict_oom_score_adj = true` in an unprivileged-oom container; CRI uses namespace k8s.io;
shims put their sockets under /run/containerd/s whatever `state` says; no internet, so the
sandbox (pause) image must come from a local registry reachable over plain HTTP.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from plegdoctor.testbed import procs

RUN_CONTAINERD = "/run/containerd"


class TestbedError(RuntimeError):
    """The testbed could not start or stop a component (one-line message, log tail attached)."""


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


@dataclass(frozen=True, slots=True)
class ContainerdSpec:
    """Everything that makes one containerd instance distinct. Paths must not be shared between instances."""

    root: str
    state: str
    address: str  # grpc socket path (unique per instance: we find our shims by it)
    binary: str = "containerd"  # name on PATH or a path
    shim_dir: str | None = None  # prepended to PATH, so its containerd-shim-runc-v2 is used
    config_schema: int = 2  # 2 for containerd 1.x, 3 for 2.x
    overlay_mount_options: tuple[str, ...] = ()
    bbolt_no_sync: bool = False  # containerd >= 2.1 only
    extra_toml: str = ""
    log_path: str = ""
    log_level: str = "info"
    log_format: str = "text"
    debug_address: str = ""  # pprof/debug socket ("" = off)
    sandbox_image: str = ""  # pause image, e.g. 127.0.0.1:5000/pause:1 (must be pullable offline)
    registry_hosts: tuple[str, ...] = ()  # "127.0.0.1:5000": allowed over plain HTTP
    cgroup_parent: str = ""  # pods of tests/lab should use it; removed on stop
    tmpdir: str = ""  # TMPDIR of containerd: where SIGUSR1 writes containerd.<pid>.stacks.log
    cni_bin_dir: str = "/usr/lib/cni"
    cni_conf_dir: str = ""  # "" = an empty dir under root (hostNetwork pods only)
    base_dir: str = ""  # set by temporary(): removed on stop
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def temporary(cls, prefix: str = "pd-ctd-", **kwargs: Any) -> ContainerdSpec:
        """A spec whose root, state, socket, log and TMPDIR live in a new temporary directory."""
        base = tempfile.mkdtemp(prefix=prefix)
        os.chmod(base, 0o711)
        uniq = uuid.uuid4().hex[:10]
        defaults: dict[str, Any] = {
            "root": f"{base}/root",
            "state": f"{base}/state",
            "address": f"{base}/containerd.sock",
            "log_path": f"{base}/containerd.log",
            "tmpdir": f"{base}/tmp",
            "cgroup_parent": f"/pleg-doctor-{uniq}",
            "base_dir": base,
        }
        defaults.update(kwargs)
        for key in ("overlay_mount_options", "registry_hosts"):
            if key in defaults and not isinstance(defaults[key], tuple):
                defaults[key] = tuple(defaults[key])
        if isinstance(defaults.get("env"), dict):
            defaults["env"] = tuple(defaults["env"].items())
        return cls(**defaults)

    @property
    def endpoint(self) -> str:
        return f"unix://{self.address}"

    @property
    def config_path(self) -> str:
        return str(Path(self.state).parent / f"{Path(self.address).stem}-config.toml")

    @property
    def hosts_dir(self) -> str:
        return f"{self.root}/certs.d"

    def render_config(self) -> str:
        """The config.toml for this instance (schema 2 for containerd 1.x, 3 for 2.x)."""
        if self.config_schema not in (2, 3):
            raise ValueError(f"config_schema must be 2 or 3, not {self.config_schema}")
        cni_conf = self.cni_conf_dir or f"{self.root}/cni-conf"
        lines = [
            f"version = {self.config_schema}",
            f"root = {_toml_str(self.root)}",
            f"state = {_toml_str(self.state)}",
            "",
            "[grpc]",
            f"  address = {_toml_str(self.address)}",
            "",
            "[ttrpc]",
            f"  address = {_toml_str(self.address + '.ttrpc')}",
            "",
            "[debug]",
            f"  address = {_toml_str(self.debug_address)}",
            f"  level = {_toml_str(self.log_level)}",
            f"  format = {_toml_str(self.log_format)}",
            "",
            "[metrics]",
            '  address = ""',
            "",
            "[plugins]",
            # the opt plugin would create /opt/containerd otherwise
            '  [plugins."io.containerd.internal.v1.opt"]',
            f"    path = {_toml_str(self.root + '/opt')}",
        ]
        runc_options = f"    Root = {_toml_str(self.state + '/runc')}\n    SystemdCgroup = false"
        if self.config_schema == 2:
            cri = '[plugins."io.containerd.grpc.v1.cri"]'
            lines += [
                f"  {cri}",
                "    restrict_oom_score_adj = true",
                f"    sandbox_image = {_toml_str(self.sandbox_image or 'registry.k8s.io/pause:3.6')}",
                "    enable_cdi = false",
                '  [plugins."io.containerd.grpc.v1.cri".cni]',
                f"    bin_dir = {_toml_str(self.cni_bin_dir)}",
                f"    conf_dir = {_toml_str(cni_conf)}",
                '  [plugins."io.containerd.grpc.v1.cri".containerd]',
                '    snapshotter = "overlayfs"',
                '    default_runtime_name = "runc"',
                '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
                '    runtime_type = "io.containerd.runc.v2"',
                '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
                runc_options,
                '  [plugins."io.containerd.grpc.v1.cri".registry]',
                f"    config_path = {_toml_str(self.hosts_dir)}",
            ]
        else:
            lines += [
                '  [plugins."io.containerd.cri.v1.runtime"]',
                "    restrict_oom_score_adj = true",
                "    enable_cdi = false",
                '  [plugins."io.containerd.cri.v1.runtime".cni]',
                f"    bin_dir = {_toml_str(self.cni_bin_dir)}",
                f"    conf_dir = {_toml_str(cni_conf)}",
                '  [plugins."io.containerd.cri.v1.runtime".containerd]',
                '    default_runtime_name = "runc"',
                '  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]',
                '    runtime_type = "io.containerd.runc.v2"',
                '  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]',
                runc_options,
                '  [plugins."io.containerd.cri.v1.images"]',
                '    snapshotter = "overlayfs"',
                '  [plugins."io.containerd.cri.v1.images".pinned_images]',
                f"    sandbox = {_toml_str(self.sandbox_image or 'registry.k8s.io/pause:3.10')}",
                '  [plugins."io.containerd.cri.v1.images".registry]',
                f"    config_path = {_toml_str(self.hosts_dir)}",
                # NRI is on by default in 2.x and would create /run/nri; it plays no part here.
                '  [plugins."io.containerd.nri.v1.nri"]',
                "    disable = true",
            ]
        if self.overlay_mount_options:
            lines += [
                '  [plugins."io.containerd.snapshotter.v1.overlayfs"]',
                f"    mount_options = {_toml_list(list(self.overlay_mount_options))}",
            ]
        if self.bbolt_no_sync:
            lines += ['  [plugins."io.containerd.metadata.v1.bolt"]', "    no_sync = true"]
        text = "\n".join(lines) + "\n"
        if self.extra_toml:
            text += "\n" + self.extra_toml.strip() + "\n"
        return text

    def write_files(self) -> None:
        """Create the directories, the config file and the hosts.toml of each plain-HTTP registry."""
        for d in (self.root, self.state, Path(self.address).parent, self.tmpdir or None, self.cni_conf_dir or None):
            if d:
                Path(d).mkdir(parents=True, exist_ok=True)
        Path(self.cni_conf_dir or f"{self.root}/cni-conf").mkdir(parents=True, exist_ok=True)
        for host in self.registry_hosts:
            d = Path(self.hosts_dir) / host
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts.toml").write_text(
                f"server = {_toml_str('http://' + host)}\n\n"
                f"[host.{_toml_str('http://' + host)}]\n"
                '  capabilities = ["pull", "resolve", "push"]\n'
                "  skip_verify = true\n"
            )
        Path(self.config_path).write_text(self.render_config())


@dataclass
class CleanupReport:
    killed: list[int] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ContainerdProcess:
    """One running containerd. Context manager; `stop()` is idempotent and also runs at exit."""

    def __init__(self, spec: ContainerdSpec, remove_base: bool = True, install_signal_handlers: bool = True):
        self.spec = spec
        self.remove_base = remove_base and bool(spec.base_dir)
        self.install_signal_handlers = install_signal_handlers
        self.proc: subprocess.Popen[bytes] | None = None
        self.cleanup = CleanupReport()
        self._run_existed = os.path.exists(RUN_CONTAINERD)
        self._run_s_existed = os.path.exists(f"{RUN_CONTAINERD}/s")
        self._shim_sockets: set[str] = set()
        self._stopped = False
        self._lock = threading.Lock()
        self._old_handlers: dict[int, Any] = {}
        self._log_fh: Any = None

    # -- properties -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TestbedError("containerd is not started")
        return self.proc.pid

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint

    @property
    def stacks_file(self) -> str:
        """Where SIGUSR1 makes containerd write its goroutine dump (os.TempDir() = $TMPDIR)."""
        return os.path.join(self.spec.tmpdir or "/tmp", f"containerd.{self.pid}.stacks.log")

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.spec.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16384))
                return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ContainerdProcess:
        from plegdoctor.live.cri.client import CRIClient, CRIError

        binary = shutil.which(self.spec.binary) if "/" not in self.spec.binary else self.spec.binary
        if not binary or not os.access(binary, os.X_OK):
            raise TestbedError(f"containerd binary {self.spec.binary!r} not found")
        self.spec.write_files()
        env = dict(os.environ)
        env.update(dict(self.spec.env))
        if self.spec.shim_dir:
            env["PATH"] = f"{self.spec.shim_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        if self.spec.tmpdir:
            env["TMPDIR"] = self.spec.tmpdir
        log_path = self.spec.log_path or os.devnull
        self._log_fh = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        atexit.register(self.stop)
        self._install_handlers()
        self.proc = subprocess.Popen(
            [binary, "--config", self.spec.config_path],
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C goes to us; we stop it in order
        )
        deadline = time.monotonic() + timeout
        last = ""
        try:
            with CRIClient(self.spec.endpoint, timeout=2.0) as client:
                while True:
                    if self.proc.poll() is not None:
                        raise TestbedError(
                            f"containerd exited with {self.proc.returncode} at start; log tail:\n{self.log_tail()}"
                        )
                    try:
                        client.version(timeout=2.0)
                        return self
                    except CRIError as exc:
                        last = str(exc)
                    if time.monotonic() > deadline:
                        raise TestbedError(
                            f"containerd CRI not ready after {timeout:g}s ({last}); log:\n{self.log_tail()}"
                        )
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> ContainerdProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _install_handlers(self) -> None:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            current = signal.getsignal(sig)
            if current in (signal.SIG_DFL, None):
                self._old_handlers[sig] = current
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop()
        raise SystemExit(128 + signum)

    def shim_pids(self) -> list[int]:
        """containerd-shim processes started by this containerd (their cmdline holds our socket path)."""
        return [pid for pid in procs.pids_with_cmdline(self.spec.address) if self.proc is None or pid != self.proc.pid]

    def _record_shim_sockets(self) -> None:
        task_root = Path(self.spec.state) / "io.containerd.runtime.v2.task"
        for address_file in task_root.glob("*/*/address"):
            with contextlib.suppress(OSError):
                addr = address_file.read_text().strip().removeprefix("unix://")
                if addr.startswith(f"{RUN_CONTAINERD}/"):
                    self._shim_sockets.add(addr)

    def stop(self, grace: float = 10.0) -> CleanupReport:
        """Stop containerd and everything it left; safe to call twice, and from atexit."""
        with self._lock:
            if self._stopped:
                return self.cleanup
            self._stopped = True
        rep = self.cleanup
        self._record_shim_sockets()
        shims = self.shim_pids()
        # containers are children of their shim (the shim is their subreaper)
        victims = procs.descendants(shims)
        if self.proc is not None:
            procs.terminate(self.proc.pid, grace=grace)
            rep.killed.append(self.proc.pid)
        shims = sorted(set(shims) | set(self.shim_pids()))
        victims = sorted(set(victims) | set(procs.descendants(shims)))
        procs.kill_now(victims)
        procs.kill_now(shims)
        rep.killed += victims + shims
        left = procs.wait_gone(victims + shims, timeout=10)
        rep.errors += [f"pid {p} still alive after SIGKILL" for p in left]
        for target in procs.mounts_under([self.spec.root, self.spec.state, self.spec.base_dir]):
            err = procs.umount(target)
            if err:
                rep.errors.append(err)
            else:
                rep.unmounted.append(target)
        for sock in sorted(self._shim_sockets):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)
                rep.removed.append(sock)
        if self.spec.cgroup_parent:
            rep.errors += procs.remove_cgroup_tree(self.spec.cgroup_parent)
        # leave /run as we found it: remove the dirs shims created if they were not there before
        for d, existed in ((f"{RUN_CONTAINERD}/s", self._run_s_existed), (RUN_CONTAINERD, self._run_existed)):
            if not existed:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
                    rep.removed.append(d)
        if self._log_fh is not None:
            self._log_fh.close()
        if self.remove_base and os.path.isdir(self.spec.base_dir):
            if procs.mounts_under([self.spec.base_dir]):
                rep.errors.append(f"not removing {self.spec.base_dir}: still mounted")
            else:
                shutil.rmtree(self.spec.base_dir, ignore_errors=True)
                rep.removed.append(self.spec.base_dir)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(Exception):
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, handler)
        return rep

    def freeze(self) -> None:
        """SIGSTOP containerd (a stalled runtime that keeps its socket)."""
        procs.signal_pid(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        procs.signal_pid(self.pid, signal.SIGCONT)


def containerd_available(binary: str = "containerd") -> str | None:
    """Path of the containerd binary, or None."""
    return shutil.which(binary)


def with_overrides(spec: ContainerdSpec, **changes: Any) -> ContainerdSpec:
    return replace(spec, **changes)
