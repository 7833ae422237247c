"""PD9xx readers: threads and processes from TaskState records, the bundle trigger, stall spans."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from plegdoctor.model import (
    ChainLink,
    Ref,
    RootCauseClass,
    StallTrigger,
    TaskState,
)
from plegdoctor.rules.registry import RuleContext
from plegdoctor.rules.signals import fmt_seconds, kernel_stack_has, link, stall_windows

C = RootCauseClass

PROC5 = "https://man7.org/linux/man-pages/man5/proc.5.html"
SIGNAL7 = "https://man7.org/linux/man-pages/man7/signal.7.html"
PTRACE2 = "https://man7.org/linux/man-pages/man2/ptrace.2.html"
CGROUP_V2_FREEZE = "https://docs.kernel.org/admin-guide/cgroup-v2.html#core-interface-files"
CGROUP_V1_FREEZER = "https://docs.kernel.org/admin-guide/cgroup-v1/freezer-subsystem.html"
PSI_DOC = "https://docs.kernel.org/accounting/psi.html"
OOM_DOC = "https://docs.kernel.org/admin-guide/mm/concepts.html#oom-killer"
PLEG_DOC = "https://github.com/kubernetes/kubernetes/blob/master/pkg/kubelet/pleg/generic.go"
RESERVED_DOC = "https://kubernetes.io/docs/tasks/administer-cluster/reserve-compute-resources/"

# the daemons that serve CRI (a stopped one answers no call at all); comm is at most 15 chars
DAEMONS = ("containerd", "crio", "dockerd")
SHIM_PREFIX = "containerd-shim"
RUNC_COMMS = ("runc", "runc:[0:PARENT]", "runc:[1:CHILD]", "runc:[2:INIT]", "crun")
RUNTIME_PREFIXES = (*DAEMONS, SHIM_PREFIX, "runc", "crun", "conmon", "kubelet")

# wait channels / kernel frames of a task stopped by a signal or a tracer
STOP_WCHANS = ("do_signal_stop", "ptrace_stop", "do_jobctl_trap")
# ... and of a task held by the cgroup freezer (v1: __refrigerator, D; v2: do_freezer_trap, S)
FREEZER_WCHANS = ("__refrigerator", "refrigerator", "do_freezer_trap", "try_to_freeze")


def _is_daemon(comm: str) -> bool:
    return comm in DAEMONS


def _is_runtime(comm: str) -> bool:
    return comm.startswith(RUNTIME_PREFIXES)


def _is_runc(comm: str) -> bool:
    return comm in RUNC_COMMS or comm.startswith("runc:[")


# ---------------------------------------------------------------------------------------
# Processes: every record of a task merged, tasks grouped by process


@dataclass
class Thread:
    tid: int
    comm: str
    state: str
    wchan: str | None
    stack: tuple[str, ...]
    refs: list[Ref] = field(default_factory=list)
    tracer: int | None = None

    @property
    def letter(self) -> str:
        return self.state[:1]

    def waits_in(self, names: tuple[str, ...]) -> str | None:
        """The wait channel or kernel frame among `names` (prefix match), else None."""
        if self.wchan and self.wchan.startswith(names):
            return self.wchan
        return kernel_stack_has(self.stack, *names)

    @property
    def stopped(self) -> bool:
        """Stopped by a signal (T) or a tracer (t), by state or by where it waits."""
        return self.letter in ("T", "t") or self.waits_in(STOP_WCHANS) is not None

    @property
    def frozen(self) -> bool:
        return self.waits_in(FREEZER_WCHANS) is not None


@dataclass
class Proc:
    pid: int
    comm: str
    cmd: str
    threads: dict[int, Thread] = field(default_factory=dict)
    tracer: int | None = None  # TracerPid of the process (its status file)
    frozen_cgroup: tuple[str, Ref] | None = None  # a frozen cgroup it is in

    @property
    def main(self) -> Thread | None:
        return self.threads.get(self.pid)

    def label(self) -> str:
        return f"{self.comm} (pid {self.pid})"

    def refs(self, threads: Iterable[Thread], limit: int = 6) -> list[Ref]:
        out: list[Ref] = []
        for t in threads:
            for r in t.refs[:1]:
                if r not in out:
                    out.append(r)
        return out[:limit]


def processes(ctx: RuleContext) -> dict[int, Proc]:
    """Every process the task records show, by pid, with its threads (records of the same
    task from ps, /proc status/stat and kernel stacks merged)."""

    def compute() -> dict[int, Proc]:
        tasks: list[TaskState] = list(ctx.evidence.tasks)
        tgid_of = {t.pid: t.tgid for t in tasks if t.tgid is not None}
        out: dict[int, Proc] = {}
        for t in tasks:
            pid = t.tgid if t.tgid is not None else tgid_of.get(t.pid, t.pid)
            p = out.get(pid)
            if p is None:
                p = out[pid] = Proc(pid, t.comm, t.cmd)
            if t.pid == pid:
                p.comm = p.comm if p.comm and p.comm != "-" else t.comm
                if t.cmd and not p.cmd:
                    p.cmd = t.cmd
                if t.tracer_pid:
                    p.tracer = t.tracer_pid
            th = p.threads.get(t.pid)
            if th is None:
                th = p.threads[t.pid] = Thread(t.pid, t.comm, t.state, t.wchan, t.kernel_stack)
            else:
                th.state = th.state or t.state
                th.wchan = th.wchan or t.wchan
                th.stack = th.stack or t.kernel_stack
                th.comm = th.comm or t.comm
            if t.tracer_pid:
                th.tracer = t.tracer_pid
            # quote a ps/proc line before a kernel-stack header
            if t.source in ("ps", "proc"):
                th.refs.insert(0, t.ref)
            else:
                th.refs.append(t.ref)
        # a process in a frozen cgroup (its /proc/<pid>/cgroup path, or an ancestor, is frozen)
        frozen = {f.path: f for f in ctx.evidence.cgroup_freezes if f.frozen}
        if frozen:
            for pc in ctx.evidence.proc_cgroups:
                p = out.get(pc.pid)
                if p is None:
                    continue
                for path, f in frozen.items():
                    base = path.split("/sys/fs/cgroup", 1)[-1]
                    for hierarchy in ("/freezer", "/unified"):
                        base = base.removeprefix(hierarchy)
                    if pc.path == base or pc.path.startswith(base.rstrip("/") + "/"):
                        p.frozen_cgroup = (path, f.ref)
        return out

    return ctx.memo("pd9_processes", compute)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# The capture trigger (the relist probe's stalled call)


def triggers(ctx: RuleContext) -> list[StallTrigger]:
    return list(ctx.evidence.triggers)


def _hhmmss(ts: datetime | None) -> str:
    return ts.strftime("%H:%M:%S UTC") if ts is not None else "?"


def _call_text(t: StallTrigger) -> str:
    method = t.method or "a relist call"
    took = f" for {fmt_seconds(t.seconds)}" if t.seconds else ""
    where = f" on {t.endpoint}" if t.endpoint else ""
    return f"{method}{where} did not return{took} (sent {_hhmmss(t.started)})"


def probe_link(t: StallTrigger) -> ChainLink:
    """The chain step of the probe's stalled call; tagged with its CRI method, so the cause
    below it is shown on the relist's own path (the probe makes the kubelet's relist calls)."""
    tags = ["probe-stall"] + ([f"cri:{t.method}"] if t.method else [])
    return link("cri-call", "pleg-doctor watch", f"the relist probe's {_call_text(t)}", (t.ref,), tags=tags)


def _trigger_for(ctx: RuleContext, p: Proc) -> StallTrigger | None:
    """The trigger whose runtime is this daemon: the same pid, or (pid not recorded) the only
    daemon of the evidence."""
    trigs = triggers(ctx)
    if not trigs:
        return None
    for t in trigs:
        if t.runtime_pid == p.pid:
            return t
    daemons = [q for q in processes(ctx).values() if _is_daemon(q.comm)]
    if all(t.runtime_pid is None for t in trigs) and len(daemons) == 1 and daemons[0].pid == p.pid:
        return trigs[0]
    return None


def stall_spans(ctx: RuleContext) -> list[tuple[datetime, datetime]]:
    """Known stall windows: relist gaps / unhealthy windows, and each trigger's stalled call
    (from when it was sent to two minutes after the capture started, while collect ran)."""
    spans = list(stall_windows(ctx))
    for t in triggers(ctx):
        start = t.started or t.detected
        end = t.detected or t.started
        if start is not None and end is not None:
            spans.append((start - timedelta(seconds=15), end + timedelta(seconds=120)))
    return spans


def in_stall(ctx: RuleContext, ts: datetime | None) -> bool | None:
    """True/False when `ts` falls in/out of a known stall; None when that cannot be told."""
    spans = stall_spans(ctx)
    if ts is None or not spans:
        return None
    return any(a <= ts <= b for a, b in spans)
