"""Evidence records shared by parsers, analyses, rules and reporters.

Every record that can support a claim carries a `Ref` (file, line, quoted text) so the
report can quote it. Times are timezone-aware `datetime`s in UTC (parsers convert after
inferring year and zone; see `TimeContext`).

Only plain data lives here: no parsing, no judgement. Parsers fill an `Evidence`;
analyses (plegdoctor.analysis.*) derive summaries from it; rules (plegdoctor.rules.*)
read both and emit `Finding`s; plegdoctor.diagnosis ranks them into `RootCause`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec


class RootCauseClass(StrEnum):
    """Public root-cause vocabulary (contract: shared design, never rename)."""

    OVERLAY_UMOUNT_SYNC = "overlay-umount-sync"
    FSYNC_IO_PRESSURE = "fsync-io-pressure"
    DISK_IO_PRESSURE = "disk-io-pressure"
    BBOLT_LOCK_CONTENTION = "bbolt-lock-contention"
    CRI_STATUS_LOCK = "cri-status-lock"
    RUNTIME_LOCK_CONTENTION = "runtime-lock-contention"
    SHIM_HANG = "shim-hang"
    RUNC_HANG = "runc-hang"
    DOCKERD_LOCK = "dockerd-lock"
    NETWORK_STORAGE_HANG = "network-storage-hang"
    KERNEL_D_STATE = "kernel-d-state"
    CNI_HANG = "cni-hang"
    KUBELET_INTERNAL = "kubelet-internal"
    TOO_MANY_CONTAINERS = "too-many-containers"
    SYSTEMD_DBUS_HANG = "systemd-dbus-hang"  # runc/shim/kubelet waits on systemd over D-Bus
    NODE_RESOURCE_STARVATION = "node-resource-starvation"  # CPU or memory exhaustion starves kubelet/runtime
    RUNTIME_KNOWN_BUG = "runtime-known-bug"  # a version matched to a known deadlock/regression (fixed-in)
    RUNTIME_FROZEN = "runtime-frozen"  # the runtime process is stopped (T: SIGSTOP, debugger, frozen cgroup)
    UNKNOWN = "unknown"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Ref(msgspec.Struct, frozen=True):
    """Where a piece of evidence came from: display path (archive members as
    `archive.tgz:member`), 1-based line number, and the quoted line (truncated)."""

    path: str
    line: int
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "text": self.text}


MAX_QUOTE = 300


def quote(text: str) -> str:
    """Shorten a line for quoting in a report (evidence stays one line)."""
    text = text.rstrip("\r\n")
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "..."


# ---------------------------------------------------------------------------------------
# Log-derived events


class EventKind(StrEnum):
    """Kinds of timeline events parsers emit (extend here, never rename)."""

    # kubelet
    PLEG_UNHEALTHY = "pleg-unhealthy"  # attrs: last_seen_seconds (float|None), form (legacy|structured)
    RELIST_ERROR = "relist-error"  # "GenericPLEG: Unable to retrieve pods"; attrs: error
    CRI_CALL_FAILED = "cri-call-failed"  # attrs: method, code (e.g. DeadlineExceeded), error
    NODE_NOT_READY = "node-not-ready"  # attrs: message
    NODE_READY = "node-ready"
    EVENTED_PLEG_FALLBACK = "evented-pleg-fallback"
    SKIPPING_POD_SYNC = "skipping-pod-sync"  # attrs: error
    CONTAINER_FINISHED = "container-finished"  # attrs: container_id, exit_code
    KUBELET_DU_KILLED = "kubelet-du-slow"  # kubelet's du/fs stats took too long
    # containerd
    UPDATE_RESOURCES_START = "update-resources-start"  # attrs: container_id
    UPDATE_RESOURCES_END = "update-resources-end"  # attrs: container_id, ok (bool)
    TASK_EXIT_FAILED = "task-exit-failed"  # attrs: container_id, error
    TASK_DELETE_FAILED = "task-delete-failed"  # attrs: container_id, error
    PULL_START = "pull-start"  # attrs: image
    PULL_END = "pull-end"  # attrs: image, ok
    STOP_CONTAINER_START = "stop-container-start"
    STOP_CONTAINER_END = "stop-container-end"
    STOP_SANDBOX_START = "stop-sandbox-start"
    STOP_SANDBOX_END = "stop-sandbox-end"
    RUNTIME_ERROR = "runtime-error"  # any other containerd error line; attrs: msg, error
    GOROUTINE_DUMP = "goroutine-dump"  # a dump was logged at this time; attrs: process, pid
    # kernel
    HUNG_TASK = "hung-task"  # attrs: comm, pid, seconds
    NFS_NOT_RESPONDING = "nfs-not-responding"  # attrs: server, detail ("still trying"|"timed out")
    NFS_OK = "nfs-ok"  # attrs: server
    IO_ERROR = "io-error"  # attrs: device, msg
    OOM_KILL = "oom-kill"  # attrs: pid, comm, cgroup (bool)
    CPU_LOCKUP = "cpu-lockup"  # watchdog soft/hard lockup, RCU stall; attrs: what, cpu, seconds, comm, pid
    NETDEV_WAIT = "netdev-wait"  # "unregister_netdevice: waiting for X to become free"; attrs: device, usage
    OVERLAY_VOLATILE_INCOMPAT = "overlay-volatile-incompat"  # remount of a volatile overlay refused
    # dockerd
    DOCKERD_ERROR = "dockerd-error"


class Event(msgspec.Struct, frozen=True):
    """One point on the timeline. `process` is kubelet|containerd|containerd-shim|kernel|dockerd."""

    ts: datetime | None
    kind: EventKind
    process: str
    ref: Ref
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


class LogRecord(msgspec.Struct, frozen=True):
    """A parsed log line, kept only where a rule may need it (errors/warnings, capped)."""

    ts: datetime | None
    process: str
    pid: int | None
    level: str  # info|warning|error|fatal|debug|trace
    msg: str
    fields: dict[str, str]
    ref: Ref


# ---------------------------------------------------------------------------------------
# Node-level evidence (pressure, disks, memory, kernel, config)


class PressureSample(msgspec.Struct, frozen=True):
    ts: datetime | None
    resource: str  # io|memory|cpu|irq
    scope: str  # "node" or the cgroup path
    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_us: int
    full_avg10: float | None
    full_avg60: float | None
    full_avg300: float | None
    full_total_us: int | None
    ref: Ref


class DiskStat(msgspec.Struct, frozen=True):
    """One device line of /proc/diskstats (raw counters)."""

    ts: datetime | None
    device: str
    reads: int
    sectors_read: int
    ms_reading: int
    writes: int
    sectors_written: int
    ms_writing: int
    in_flight: int
    io_ticks_ms: int
    weighted_ms: int
    flushes: int | None
    ms_flushing: int | None
    ref: Ref


class DiskSample(msgspec.Struct, frozen=True):
    """iostat-like figures for one device over one interval (derived or from iostat -x)."""

    start: datetime | None
    end: datetime | None
    device: str
    util: float  # percent
    r_await: float | None  # ms
    w_await: float | None  # ms
    w_per_s: float
    wkb_per_s: float
    aqu_sz: float | None
    ref: Ref


class Meminfo(msgspec.Struct, frozen=True):
    ts: datetime | None
    dirty_kb: int
    writeback_kb: int
    mem_total_kb: int | None
    mem_available_kb: int | None
    ref: Ref


class MemoryFigures(msgspec.Struct, frozen=True):
    """Total and available memory from a tool's summary (`top`, `free`), when /proc/meminfo's
    other fields (Dirty, Writeback) are not known. `ts` is None when the tool printed only a
    time of day."""

    ts: datetime | None
    mem_total_kb: int
    mem_available_kb: int | None
    swap_total_kb: int | None
    iowait_percent: float | None  # `wa` of top's %Cpu(s) line
    source: str  # top | free
    ref: Ref


class Mount(msgspec.Struct, frozen=True):
    source: str
    target: str
    fstype: str
    options: tuple[str, ...]
    ref: Ref


class HungTask(msgspec.Struct, frozen=True):
    ts: datetime | None
    comm: str
    pid: int
    seconds: int | None
    kernel_stack: tuple[str, ...]  # function names, innermost first
    ref: Ref
    state: str | None = None  # task state letter from the task line (D, ...)
    syscall_nr: int | None = None  # from `ORIG_RAX:` (x86_64; 0xa6 = umount2)
    stack_refs: tuple[Ref, ...] = ()  # the `Call Trace:` frame lines, innermost first


class TaskState(msgspec.Struct, frozen=True):
    """A task from `ps -eo pid,stat,wchan,cmd` or /proc/<pid>/{stat,wchan,stack}."""

    pid: int
    comm: str
    state: str  # D, S, R, ...
    wchan: str | None
    kernel_stack: tuple[str, ...]
    cmd: str
    ref: Ref
    # `pid` is the task's own id (a thread's TID for per-thread lines); `tgid` is its process
    # (thread group) id when the evidence says so (`ps -L` PID column, /proc/<pid>/task/<tid>)
    tgid: int | None = None
    ppid: int | None = None
    tracer_pid: int | None = None  # /proc/<pid>/status TracerPid (a debugger or strace attached)
    source: str = ""  # ps | proc-status | proc-stat | proc-stack

    @property
    def process_id(self) -> int:
        """The process this task belongs to (its tgid when known, else its own pid)."""
        return self.tgid if self.tgid is not None else self.pid

    @property
    def state_letter(self) -> str:
        """The scheduler state letter (`Ssl` -> S, `T (stopped)` -> T), '' when unknown."""
        return self.state[:1]


class CgroupFreeze(msgspec.Struct, frozen=True):
    """A cgroup's freezer state: cgroup v2 `cgroup.freeze`/`cgroup.events frozen`, v1
    `freezer.state` (FROZEN/FREEZING/THAWED). `path` as given (a /sys/fs/cgroup path)."""

    path: str
    frozen: bool
    ref: Ref
    state: str = ""  # v1 freezer.state as read (FROZEN, FREEZING, THAWED); "" for v2
    source: str = ""  # file | strace (read by a traced process)


class ProcCgroup(msgspec.Struct, frozen=True):
    """One line of /proc/<pid>/cgroup: which cgroup (path relative to the hierarchy root) a
    process is in."""

    pid: int
    hierarchy: str  # "0::" for v2, or the v1 controller list ("freezer", "cpu,cpuacct")
    path: str
    ref: Ref


class StallTrigger(msgspec.Struct, frozen=True):
    """Why a bundle was captured: the relist probe's call that did not return in time
    (`pleg-doctor watch`, manifest key `trigger`). Times are aware UTC."""

    method: str  # the CRI call that stalled (ListPodSandbox, ListContainers), '' if unknown
    seconds: float | None  # how long it had been in flight (or took) when the capture started
    started: datetime | None  # when the stalled call was sent
    detected: datetime | None  # when the stall was seen (the capture decision)
    endpoint: str  # the CRI endpoint probed
    reason: str  # the probe's own words
    ref: Ref  # the manifest line that records it
    threshold: float | None = None  # the stall threshold in force (seconds)
    last_success: datetime | None = None  # start of the last relist that succeeded
    runtime_pid: int | None = None  # the runtime process serving the endpoint (manifest `runtime`)
    runtime_error: str = ""  # what collect got when it asked the runtime, if anything
    source: str = "watch"
    # the probe's calls before the capture: (start epoch, method, seconds, ok), and their line
    calls: tuple[tuple[float, str, float, bool], ...] = ()
    calls_ref: Ref | None = None


class NodeLoad(msgspec.Struct, frozen=True):
    """Load average and CPU count (/proc/loadavg and the online CPUs, from a bundle manifest
    or a loadavg file)."""

    ts: datetime | None
    load1: float
    load5: float
    load15: float
    cpus: int | None
    ref: Ref


class Versions(msgspec.Struct, frozen=True):
    kernel: str | None = None
    containerd: str | None = None
    kubelet: str | None = None
    runc: str | None = None
    go: str | None = None  # Go version of the containerd binary, when known
    refs: tuple[Ref, ...] = ()


class MetricSample(msgspec.Struct, frozen=True):
    """One Prometheus text-format sample (e.g. kubelet /metrics)."""

    name: str
    labels: dict[str, str]
    value: float
    ts: datetime | None
    ref: Ref


# ---------------------------------------------------------------------------------------
# Wait-for chains (produced by plegdoctor.goroutines, consumed by rules and reports)


class ChainLink(msgspec.Struct, frozen=True):
    """One step of a blocking chain, symptom first.

    `kind` is what this goroutine (or task) is doing/waiting on: a WaitKind value from
    plegdoctor.goroutines (e.g. "rwmutex-read", "bbolt-writer", "syscall", "ttrpc-call")
    or "kernel" for kernel stacks. `tags` are the semantic labels rules match on, e.g.
    "cri:ListContainers", "status-lock", "update-container-resources", "bbolt-writer",
    "content-commit", "fsync", "fdatasync", "umount", "shim:Delete", "shim:Update",
    "task-exit", "runc", "cni", "nfs", "dockerd-container-lock", "kubelet-relist".
    """

    kind: str
    process: str
    detail: str
    evidence: tuple[Ref, ...]
    goroutine: int | None = None
    pid: int | None = None
    function: str | None = None
    resource: str | None = None
    wait_minutes: int | None = None
    confidence: float = 1.0
    tags: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "process": self.process,
            "pid": self.pid,
            "goroutine": self.goroutine,
            "function": self.function,
            "resource": self.resource,
            "wait_minutes": self.wait_minutes,
            "confidence": round(self.confidence, 3),
            "tags": sorted(self.tags),
            "detail": self.detail,
            "evidence": [r.to_json() for r in self.evidence],
        }


class Chain(msgspec.Struct, frozen=True):
    """A blocking chain from a symptom goroutine to the deepest cause found."""

    links: tuple[ChainLink, ...]
    blocked: int  # goroutines blocked behind this chain (directly or transitively)
    max_wait_minutes: int | None
    score: float  # ranking score (higher = worse)

    @property
    def tags(self) -> frozenset[str]:
        out: set[str] = set()
        for link in self.links:
            out |= link.tags
        return frozenset(out)


# ---------------------------------------------------------------------------------------
# Input accounting


class InputReport(msgspec.Struct):
    """What the report says about one input: its kind, records, warnings, inferences."""

    path: str
    kind: str
    records: int = 0
    unparsed: int = 0  # lines not understood (counted, never fatal)
    warnings: list[str] = msgspec.field(default_factory=list)
    inferred: list[str] = msgspec.field(default_factory=list)  # e.g. "year 2023 from file mtime"

    def warn(self, message: str) -> None:
        if len(self.warnings) < 20:
            self.warnings.append(message)
        elif len(self.warnings) == 20:
            self.warnings.append("further warnings suppressed")

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "records": self.records,
            "unparsed_lines": self.unparsed,
            "warnings": list(self.warnings),
            "inferred": list(self.inferred),
        }


# ---------------------------------------------------------------------------------------
# Diagnosis output


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # PDxxx
    severity: Severity
    title: str
    root_cause: RootCauseClass
    weight: float  # how strongly this finding supports its class (0..1)
    evidence: tuple[Ref, ...]
    fix: str
    references: tuple[str, ...] = ()
    chain: Chain | None = None
    facts: dict[str, Any] = field(default_factory=dict, compare=False)  # the hit's figures (not in JSON)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "title": self.title,
            "class": str(self.root_cause),
            "evidence": [r.to_json() for r in self.evidence],
            "fix": self.fix,
            "references": list(self.references),
        }


class RootCause(msgspec.Struct, frozen=True):
    cls: RootCauseClass
    confidence: float
    summary: str
    chain: tuple[ChainLink, ...]
    fixes: tuple[str, ...]
    references: tuple[str, ...]
    findings: tuple[str, ...] = ()  # codes supporting it
    contributing: tuple[RootCauseClass, ...] = ()  # shallower classes this one explains (folded in)

    def to_json(self) -> dict[str, Any]:
        return {
            "class": str(self.cls),
            "confidence": round(self.confidence, 2),
            "summary": self.summary,
            "chain": [link.to_json() for link in self.chain],
            "fixes": list(self.fixes),
            "references": list(self.references),
            "findings": list(self.findings),
            "contributing": [str(c) for c in self.contributing],
        }
