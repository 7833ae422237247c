"""The runtime of this collection (manifest `runtime`): the process serving the CRI socket, never a
process picked by name (plegdoctor.live.discover), what the CRI Version call says it is, and
the facts the containerd sources share, each found once (`CollectRun.once`): its config files,
its shims, its log file, the kubelet's pid.

CRI calls have their own deadlines (Version 3 s, ListContainers 5 s), and none is made when
watch captures during a stall (`query_runtime=False`: its probe's call is already pending).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plegdoctor.live.actions import Actions
from plegdoctor.live.containerd_config import config_path_of, containerd_configs, grpc_address
from plegdoctor.live.cri.client import CRIClient, CRIError, socket_path
from plegdoctor.live.discover import find_kubelet_pid, find_runtime_pid, runtime_program, shim_pids_of
from plegdoctor.live.procfs import ProcInfo, read_proc, stderr_log_file
from plegdoctor.live.sources.base import CollectRun, NodeSource

Config = tuple[str, str | None, str | None]  # (path, text or None, error)


@dataclass
class Runtime:
    pid: int | None
    how: str  # how the pid was found
    info: ProcInfo | None
    record: dict[str, Any]  # manifest `runtime`
    is_containerd: bool

    @property
    def containerd(self) -> bool:
        """A containerd process was found: the containerd-specific sources may run."""
        return self.info is not None and self.is_containerd


def _cri_call(actions: Actions, endpoint: str, name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.monotonic()
    try:
        result = fn()
    except CRIError as exc:
        actions.socket(endpoint, name, time.monotonic() - t0, error=str(exc))
        raise
    actions.socket(endpoint, name, time.monotonic() - t0)
    return result


def _discover(run: CollectRun) -> Runtime:
    opts, actions, w = run.opts, run.actions, run.w
    if opts.containerd_pid:
        ctd_pid: int | None = opts.containerd_pid
        how = "--containerd-pid"
    else:
        ctd_pid, how = find_runtime_pid(opts.runtime_endpoint, actions)
    info = read_proc(ctd_pid) if ctd_pid else None
    runtime: dict[str, Any] = {"endpoint": opts.runtime_endpoint, "containerd_pid": ctd_pid, "found_by": how}
    if ctd_pid:
        runtime["program"] = runtime_program(ctd_pid)
    try:
        if not opts.query_runtime:
            raise CRIError("skipped", "CRI not queried during a stall (the relist probe's call is pending)")
        with CRIClient(opts.runtime_endpoint) as client:
            v = _cri_call(actions, opts.runtime_endpoint, "CRI Version", lambda: client.version(timeout=3))
            runtime.update(name=v.runtime_name, version=v.runtime_version, api=v.runtime_api_version)
            t0 = time.monotonic()
            n = len(
                _cri_call(
                    actions, opts.runtime_endpoint, "CRI ListContainers", lambda: client.list_containers(timeout=5)
                )
            )
            runtime.update(containers=n, list_containers_seconds=round(time.monotonic() - t0, 3))
    except CRIError as exc:
        runtime["error"] = str(exc)
        run.say(f"runtime: {exc}")
    w.extra["runtime"] = runtime
    program = runtime.get("program") or ""
    is_containerd = info is not None and (
        runtime.get("name") == "containerd"
        or (runtime.get("name") is None and (program.startswith("github.com/containerd/") or not program))
    )
    if runtime.get("name") not in (None, "containerd"):
        w.notes.append(f"runtime is {runtime['name']}, not containerd: containerd-specific steps skipped")
    if ctd_pid is None:
        w.notes.append(
            f"no containerd process found for {opts.runtime_endpoint} ({how}): dumps, config and its log skipped"
        )
    return Runtime(ctd_pid, how, info, runtime, is_containerd)


def runtime_of(run: CollectRun) -> Runtime:
    rt: Runtime = run.once("runtime", lambda: _discover(run))
    return rt


def configs_of(run: CollectRun) -> list[Config]:
    """containerd's config file and its imports (none when the runtime is not containerd)."""
    rt = runtime_of(run)

    def read() -> list[Config]:
        if not rt.containerd or rt.info is None:
            return []
        return containerd_configs(rt.pid, config_path_of(rt.info))

    configs: list[Config] = run.once("configs", read)
    return configs


def config_text_of(run: CollectRun) -> str:
    """The main config file's text ('' when unread)."""
    configs = configs_of(run)
    return (configs[0][1] or "") if configs else ""


def kubelet_pid_of(run: CollectRun) -> int | None:
    pid: int | None = run.once("kubelet_pid", find_kubelet_pid)
    return pid


def shims_of(run: CollectRun) -> list[int]:
    """The containerd-shim processes of this containerd (its gRPC address, its mount namespace)."""
    rt = runtime_of(run)

    def find() -> list[int]:
        if not rt.containerd or rt.info is None:
            return []
        # the CRI endpoint is containerd's gRPC address (the shims' -address); else its flags/config say it
        address = socket_path(run.opts.runtime_endpoint) or grpc_address(rt.info, config_text_of(run))
        return shim_pids_of(address, rt.pid)

    shims: list[int] = run.once("shims", find)
    return shims


def log_file_of(run: CollectRun) -> str | None:
    """The regular file containerd writes its stderr to, if any."""
    rt = runtime_of(run)
    path: str | None = run.once("log_file", lambda: stderr_log_file(rt.pid) if rt.pid else None)
    return path


def collect(run: CollectRun, src: NodeSource) -> None:
    runtime_of(run)
