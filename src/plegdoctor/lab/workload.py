"""The workload that reproduces the seed stall on a real containerd, and the samplers that time it.

Recipe (GitHub issue #6, measured on a ~30 MB/s disk):

1. setup: N pods (hostNetwork), each with a writer container that writes `write_mib` MiB with
   busybox `dd` into its rootfs (or, for the "volume" mitigation, into a host directory on
   another, fast disk), then sleeps. The data stays dirty in the page cache.
2. stall phase, while a relister calls ListPodSandbox + ListContainers like kubelet's PLEG
   (1 s sliding period): `stop` of the writers are stopped (StopContainer, grace 0; the shim's
   Delete then unmounts the overlay rootfs), UpdateContainerResources runs on every container
   every `update_period_s` (as the CPU manager's reconcile loop or an in-place resize does), and
   the large image is pulled. The phase ends when the one-shot calls returned, the dirty data
   has drained and relists have been fast for `settle_s`, or after `max_phase_s`.
3. churn: the remaining containers are stopped, every container and pod removed.

Every CRI call is recorded (method, start, seconds, error). Two samplers run beside it: one
reads the kernel state of the shims' threads (in umount2? in sync_filesystem?) to time the
unmounts, one reads Dirty/Writeback from /proc/meminfo. When an in-flight relist exceeds
`trigger_s`, `on_stall` is called (the lab captures an evidence bundle there).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from plegdoctor.live.cri.client import CRIClient, CRIError, container_config, host_network_sandbox_config
from plegdoctor.live.probe import RelistProbe, RelistResult
from plegdoctor.testbed import procs

UMOUNT2_SYSCALL = "166"  # x86_64


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    writers: int = 3
    write_mib: int = 1024
    stop: int = 2
    writers_on_volume: bool = False
    update_period_s: float = 5.0
    relist_period_s: float = 1.0
    call_timeout_s: float = 300.0
    pull_timeout_s: float = 900.0
    settle_s: float = 5.0
    drained_mib: int = 64  # Dirty+Writeback under this counts as drained
    max_phase_s: float = 600.0
    trigger_s: float = 3.0
    max_captures: int = 3


@dataclass(slots=True)
class CallRecord:
    method: str
    target: str
    start: float  # seconds since the workload's t0
    seconds: float
    error: str = ""
    phase: str = ""


@dataclass(slots=True)
class RelistRecord:
    start: float
    seconds: float
    sandboxes_seconds: float
    containers_seconds: float
    error: str = ""


@dataclass(slots=True)
class Interval:
    what: str  # "umount2" | "syncfs"
    pid: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class WorkloadResult:
    t0_wall: float
    stall_start: float = 0.0
    stall_end: float = 0.0
    relists: list[RelistRecord] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    umounts: list[Interval] = field(default_factory=list)
    dirty: list[tuple[float, int, int]] = field(default_factory=list)  # (t, Dirty kB, Writeback kB)
    captures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Recorder:
    """Thread-safe collection of records, with times relative to t0."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.result = WorkloadResult(t0_wall=time.time())
        self.lock = threading.Lock()
        self.phase = "setup"

    def now(self) -> float:
        return time.monotonic() - self.t0

    def call(self, method: str, target: str, fn: Callable[[], Any]) -> tuple[Any, CallRecord]:
        start = self.now()
        out: Any = None
        err = ""
        try:
            out = fn()
        except CRIError as exc:
            err = f"{exc.kind}: {exc}"
        rec = CallRecord(method, target, start, self.now() - start, err, self.phase)
        with self.lock:
            self.result.calls.append(rec)
        return out, rec


class Relister:
    """kubelet's generic PLEG relist (live.probe.RelistProbe), with every relist recorded."""

    def __init__(self, endpoint: str, rec: Recorder, period: float, timeout: float):
        self.rec = rec
        self.client = CRIClient(endpoint, timeout=timeout)
        self.probe = RelistProbe(self.client, period=period, call_timeout=timeout, on_relist=self._record)

    def _record(self, r: RelistResult) -> None:
        start = r.started - self.rec.result.t0_wall
        by = {c.method: c.seconds for c in r.calls}
        with self.rec.lock:
            self.rec.result.relists.append(
                RelistRecord(
                    round(start, 3),
                    r.seconds,
                    by.get("ListPodSandbox", 0.0),
                    by.get("ListContainers", 0.0),
                    "" if r.ok else f"{r.error_kind}: {r.error}",
                )
            )

    def start(self) -> None:
        self.probe.start()

    def stop(self, timeout: float) -> None:
        self.probe.stop(timeout=timeout)
        self.client.close()

    def inflight_seconds(self) -> float:
        """Age of the relist in flight (0 when none): read without waiting for the call."""
        st = self.probe.status()
        return st.in_flight_seconds if st.in_flight_method else 0.0

    def completed(self) -> int:
        return self.probe.relists


class KernelSampler(threading.Thread):
    """Samples shim threads (umount2 / sync_filesystem) and /proc/meminfo Dirty+Writeback."""

    def __init__(self, address: str, rec: Recorder, interval: float = 0.2):
        super().__init__(name="kernel-sampler", daemon=True)
        self.address = address
        self.rec = rec
        self.interval = interval
        self.stop_event = threading.Event()
        self._open: dict[tuple[str, int], float] = {}
        self._last_meminfo = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            now = self.rec.now()
            active: set[tuple[str, int]] = set()
            for pid in procs.pids_with_cmdline(self.address):
                for what in shim_kernel_state(pid):
                    active.add((what, pid))
            for key in active - set(self._open):
                self._open[key] = now
            for key in set(self._open) - active:
                self._close(key, now)
            if now - self._last_meminfo >= 1.0:
                self._last_meminfo = now
                dirty, wb = dirty_kib()
                with self.rec.lock:
                    self.rec.result.dirty.append((round(now, 2), dirty, wb))
            self.stop_event.wait(self.interval)
        for key in list(self._open):
            self._close(key, self.rec.now())

    def _close(self, key: tuple[str, int], now: float) -> None:
        start = self._open.pop(key)
        with self.rec.lock:
            self.rec.result.umounts.append(Interval(key[0], key[1], start, now))


def shim_kernel_state(pid: int) -> set[str]:
    """{'umount2', 'syncfs'} for what any thread of `pid` is doing in the kernel right now."""
    out: set[str] = set()
    try:
        tids = [e.name for e in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return out
    for tid in tids:
        try:
            syscall = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split(" ", 1)[0]
        except OSError:
            continue
        if syscall == UMOUNT2_SYSCALL:
            out.add("umount2")
            with contextlib.suppress(OSError):
                stack = Path(f"/proc/{pid}/task/{tid}/stack").read_text()
                if "sync_filesystem" in stack or "ovl_sync_fs" in stack:
                    out.add("syncfs")
    return out


def dirty_kib() -> tuple[int, int]:
    dirty = wb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Dirty:"):
                dirty = int(line.split()[1])
            elif line.startswith("Writeback:"):
                wb = int(line.split()[1])
    return dirty, wb


@dataclass(slots=True)
class Pod:
    name: str
    sandbox_id: str = ""
    container_id: str = ""
    log_path: Path | None = None
    stopped: bool = False


class Workload:
    """Runs the recipe against one containerd (CRI endpoint) and returns a WorkloadResult."""

    def __init__(
        self,
        endpoint: str,
        address: str,
        spec: WorkloadSpec,
        busybox: str,
        big_image: str,
        work_dir: Path,
        cgroup_parent: str = "",
        on_stall: Callable[[float], dict[str, Any] | None] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.endpoint = endpoint
        self.address = address
        self.spec = spec
        self.busybox = busybox
        self.big_image = big_image
        self.work_dir = Path(work_dir)
        self.cgroup_parent = cgroup_parent
        self.on_stall = on_stall
        self.relister: Relister | None = None  # the stall phase's (for stall_trigger)
        self.log = log or (lambda msg: None)
        self.rec = Recorder()
        self.client = CRIClient(endpoint, timeout=spec.call_timeout_s)
        self.pods: list[Pod] = []

    # -- the recipe ------------------------------------------------------------------------
    def run(self) -> WorkloadResult:
        spec = self.spec
        relister = Relister(self.endpoint, self.rec, spec.relist_period_s, spec.call_timeout_s)
        self.relister = relister
        sampler = KernelSampler(self.address, self.rec)
        stop_trigger = threading.Event()
        trigger = threading.Thread(target=self._trigger_loop, args=(relister, stop_trigger), daemon=True)
        relister.start()
        sampler.start()
        trigger.start()
        try:
            self._setup()
            self._stall_phase(relister)
            self._churn()
        finally:
            # short joins: on Ctrl-C a call may still hang in the runtime (daemon threads are abandoned)
            stop_trigger.set()
            relister.stop(timeout=10)
            sampler.stop_event.set()
            sampler.join(timeout=10)
            trigger.join(timeout=60)  # a capture in progress needs ~5-20 s
            self.client.close()
        return self.rec.result

    def _setup(self) -> None:
        spec = self.spec
        self.rec.phase = "setup"
        self.rec.call("PullImage", self.busybox, lambda: self.client.pull_image(self.busybox, timeout=300))
        for i in range(spec.writers):
            pod = Pod(f"writer-{i}")
            logs = self.work_dir / "pods" / pod.name
            logs.mkdir(parents=True, exist_ok=True)
            pod.log_path = logs / "writer.log"
            pod.log_path.unlink(missing_ok=True)
            sandbox = host_network_sandbox_config(
                pod.name, namespace="pleg-doctor-lab", log_directory=str(logs), cgroup_parent=self.cgroup_parent
            )
            sid, rec = self.rec.call("RunPodSandbox", pod.name, partial(self.client.run_pod_sandbox, sandbox))
            if rec.error:
                raise RuntimeError(f"RunPodSandbox {pod.name}: {rec.error}")
            pod.sandbox_id = sid
            target = "/fill"
            mounts: list[tuple[str, str]] = []
            if spec.writers_on_volume:
                vol = self.work_dir / "volumes" / pod.name
                vol.mkdir(parents=True, exist_ok=True)
                mounts = [(str(vol), "/vol")]
                target = "/vol/fill"
            script = (
                f"dd if=/dev/zero of={target} bs=1M count={spec.write_mib} 2>/dev/null; echo written; exec sleep 100000"
            )
            cfg = container_config(
                "writer", self.busybox, command=["/bin/sh", "-c", script], log_path="writer.log", mounts=mounts
            )
            cid, rec = self.rec.call(
                "CreateContainer", pod.name, partial(self.client.create_container, sid, cfg, sandbox)
            )
            if rec.error:
                raise RuntimeError(f"CreateContainer {pod.name}: {rec.error}")
            pod.container_id = cid
            self.pods.append(pod)
        for pod in self.pods:
            _, rec = self.rec.call("StartContainer", pod.name, partial(self.client.start_container, pod.container_id))
            if rec.error:
                raise RuntimeError(f"StartContainer {pod.name}: {rec.error}")
        self.log(f"writers started: {spec.writers} x {spec.write_mib} MiB")
        # the writers may be throttled to the disk's speed (low dirty limits): allow for that
        deadline = time.monotonic() + 120 + spec.writers * spec.write_mib / 2.0
        while time.monotonic() < deadline:
            if all(p.log_path and p.log_path.exists() and "written" in p.log_path.read_text() for p in self.pods):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the writers did not finish writing in time")
        dirty, wb = dirty_kib()
        self.log(f"writers done at {self.rec.now():.1f}s; Dirty {dirty // 1024} MiB, Writeback {wb // 1024} MiB")

    def _stall_phase(self, relister: Relister) -> None:
        spec = self.spec
        self.rec.phase = "stall"
        self.rec.result.stall_start = self.rec.now()
        done = threading.Event()
        threads: list[threading.Thread] = []

        def stop(pod: Pod) -> None:
            self.rec.call("StopContainer", pod.name, lambda: self.client.stop_container(pod.container_id, 0))
            pod.stopped = True

        def update_loop(pod: Pod) -> None:
            shares = 512
            while not done.is_set():
                if pod.stopped:  # kubelet's CPU manager reconciles running containers only
                    break
                shares = 1024 if shares == 512 else 512
                self.rec.call(
                    "UpdateContainerResources",
                    pod.name,
                    partial(
                        self.client.update_container_resources,
                        pod.container_id,
                        cpu_shares=shares,
                        cpu_period=100000,
                        cpu_quota=200000,
                    ),
                )
                done.wait(spec.update_period_s)

        def pull() -> None:
            self.rec.call(
                "PullImage", self.big_image, lambda: self.client.pull_image(self.big_image, timeout=spec.pull_timeout_s)
            )

        one_shot = [threading.Thread(target=stop, args=(p,), daemon=True) for p in self.pods[: spec.stop]]
        for t in one_shot:
            t.start()
        time.sleep(0.3)  # the kill lands first; the updates then meet the exiting containers
        loops = [threading.Thread(target=update_loop, args=(p,), daemon=True) for p in self.pods]
        puller = threading.Thread(target=pull, daemon=True)
        one_shot.append(puller)
        for t in [*loops, puller]:
            t.start()
        threads = one_shot + loops
        healthy_since: float | None = None
        end = time.monotonic() + spec.max_phase_s
        while time.monotonic() < end:
            time.sleep(0.5)
            if any(t.is_alive() for t in one_shot):
                healthy_since = None
                continue
            dirty, wb = dirty_kib()
            fast = relister.inflight_seconds() < 1.0 and self._last_relist_fast()
            if (dirty + wb) // 1024 <= spec.drained_mib and fast:
                healthy_since = healthy_since or time.monotonic()
                if time.monotonic() - healthy_since >= spec.settle_s:
                    break
            else:
                healthy_since = None
        else:
            self.rec.result.notes.append(f"stall phase hit its limit of {spec.max_phase_s:g}s")
        done.set()
        for t in threads:
            t.join(timeout=spec.call_timeout_s)
        self.rec.result.stall_end = self.rec.now()
        self.log(f"stall phase over at {self.rec.now():.1f}s")

    def _last_relist_fast(self) -> bool:
        with self.rec.lock:
            last = self.rec.result.relists[-1] if self.rec.result.relists else None
        return last is not None and last.seconds < 1.0

    def _churn(self) -> None:
        self.rec.phase = "churn"
        for pod in self.pods:
            if not pod.stopped:
                self.rec.call("StopContainer", pod.name, partial(self.client.stop_container, pod.container_id, 0))
                pod.stopped = True
        for pod in self.pods:
            self.rec.call("RemoveContainer", pod.name, partial(self.client.remove_container, pod.container_id))
            self.rec.call("StopPodSandbox", pod.name, partial(self.client.stop_pod_sandbox, pod.sandbox_id))
            self.rec.call("RemovePodSandbox", pod.name, partial(self.client.remove_pod_sandbox, pod.sandbox_id))

    def stall_trigger(self) -> dict[str, Any] | None:
        """The `trigger` record of a capture taken now (as watch writes it): the stalled call
        and the relist probe's recent calls, so the bundle's report draws the CRI latency."""
        from plegdoctor.live.trigger import trigger_record

        relister = self.relister
        if relister is None:
            return None
        probe = relister.probe
        return trigger_record(
            probe.status(),
            self.endpoint,
            self.spec.trigger_s,
            self.spec.call_timeout_s,
            source="lab",
            history=probe.recent_calls(),
        )

    def _trigger_loop(self, relister: Relister, stop: threading.Event) -> None:
        """Call on_stall while a relist is stalled, so the last bundle is from deep in the worst stall.

        The first capture comes when a relist has been in flight for trigger_s; the same stall
        is captured again at 4x and 16x that age (a chain can change while a stall lasts: in
        containerd 2.1 UpdateContainerResources first waits on bbolt's fdatasync, later on the
        shim stuck in the unmount), and a later stall only once it already lasts longer than
        every relist so far. At most max_captures bundles."""
        count = 0
        current = -1  # relists completed when the stall in flight began (identifies it)
        next_at = self.spec.trigger_s
        while not stop.wait(0.2):
            if self.on_stall is None or count >= self.spec.max_captures:
                continue
            inflight = relister.inflight_seconds()
            if inflight <= 0:
                continue
            done = relister.completed()
            if done != current:  # a new relist in flight
                with self.rec.lock:
                    worst = max((r.seconds for r in self.rec.result.relists), default=0.0)
                current = done
                next_at = self.spec.trigger_s if count == 0 else max(self.spec.trigger_s, worst)
            if inflight >= next_at:
                count += 1
                next_at = inflight * 4
                info = self.on_stall(inflight)
                if info:
                    info = {**info, "relist_inflight_seconds": round(inflight, 2), "at": round(self.rec.now(), 2)}
                    with self.rec.lock:
                        self.rec.result.captures.append(info)
