"""PD9xx: process states (T, D, Z; wchan) from ps and /proc, frozen runtimes, node resources.

Rules here read TaskState records (ps tables, /proc/<pid>/{stat,status,wchan}, the
collector's kernel stacks), cgroup freezer states, the bundle's capture trigger (the relist
probe's stalled call), meminfo, PSI, load average and kernel OOM kills.

Where a D-state thread waits is named by the shared kernel-function table
(plegdoctor.kernelnames: class hints nfs, syncfs, fsync, io-wait, freezer, ...), with a local
fallback of the same names (`_LOCAL_HINTS`) for builds without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from plegdoctor.model import (
    ChainLink,
    EventKind,
    Ref,
    RootCauseClass,
    Severity,
    StallTrigger,
    TaskState,
)
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import events, fmt_seconds, kernel_stack_has, link, stall_windows, step_hit

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


@rule(
    "PD901",
    "relist-probe-stalled",
    title="pleg-doctor watch saw the relist's CRI call stall (why this bundle was captured)",
    severity=Severity.CRITICAL,
    cls=C.UNKNOWN,
    fix=(
        "This rule records the stall the bundle was captured for; the other rules explain it. If none does, "
        "capture again with goroutine dumps (watch without --no-dump, or kill -USR1 $(pidof containerd)), "
        "the runtime's kernel stacks (cat /proc/$(pidof containerd)/task/*/stack) and the kubelet and "
        "containerd logs of the stall (journalctl -u kubelet -u containerd --since -15min)."
    ),
    references=(PLEG_DOC,),
    role="symptom",
    reads=("triggers",),
)
def relist_probe_stalled(ctx: RuleContext) -> Iterator[Hit]:
    """Detects the `trigger` record of a bundle captured by `pleg-doctor watch`: the relist
    probe's CRI call (ListPodSandbox or ListContainers, the calls the kubelet's relist makes)
    that had not returned after the stall threshold, with how long, since when, and on which
    runtime endpoint.

    Why it matters: this is the symptom, observed directly: the runtime did not answer the
    relist. A bundle with a stalled call is never "no PLEG stall": when no other rule explains
    it, the answer is `unknown` with what to collect next, not silence.

    Example evidence (manifest.json)::

        "trigger": {
          "reason": "ListPodSandbox in flight for 6.2s (threshold 5s)",
          "method": "ListPodSandbox", "in_flight_seconds": 6.214,
          "call_started_at": "2026-11-28T14:29:12.004Z",
          "runtime_endpoint": "unix:///run/containerd/containerd.sock"}

    Fix: this rule only locates the stall; the other rules explain it.
    """
    for t in triggers(ctx):
        yield step_hit(
            f"the relist probe's {_call_text(t)}",
            0.0,
            probe_link(t),
            evidence=(t.ref,),
            facts={"stall_seconds": t.seconds, "method": t.method, "endpoint": t.endpoint},
        )


# ---------------------------------------------------------------------------------------
# Stopped and frozen processes


def _stop_cause(p: Proc, threads: list[Thread]) -> str:
    """Who stopped it, as far as the evidence tells."""
    tracer = p.tracer or next((t.tracer for t in threads if t.tracer), None)
    if tracer:
        return f"traced by pid {tracer} (TracerPid)"
    if any(t.letter == "t" or t.waits_in(("ptrace_stop",)) for t in threads):
        return "in a tracing stop (a debugger or strace attached)"
    return "stopped by a signal (SIGSTOP/SIGTSTP)"


def _stop_fix(p: Proc, frozen: bool) -> str:
    if frozen:
        if p.frozen_cgroup and "/freezer/" in p.frozen_cgroup[0]:
            thaw = f"`echo THAWED > {p.frozen_cgroup[0]}/freezer.state` (cgroup v1)"
        else:
            where = p.frozen_cgroup[0] if p.frozen_cgroup else "/sys/fs/cgroup/<its cgroup>"
            thaw = (
                f"`echo 0 > {where}/cgroup.freeze` (cgroup v2; v1: echo THAWED > "
                "/sys/fs/cgroup/freezer/<path>/freezer.state)"
            )
        return (
            f"Thaw the cgroup {p.comm} is in: cat /proc/{p.pid}/cgroup, then {thaw}. Find what froze it (a "
            "`runc pause`/`docker pause` of the wrong cgroup, a systemd freeze: `systemctl thaw <unit>`, a "
            "checkpoint tool)."
        )
    return (
        f"Resume it: kill -CONT {p.pid}. Then find who stopped it: `grep TracerPid /proc/{p.pid}/status` names an "
        "attached debugger or tracer (a `gdb -p`/`strace -p`/`dlv attach` left running: detach or end it); "
        "otherwise a `kill -STOP` (a script, an operator, a test); also check the freezer "
        f"(cat /sys/fs/cgroup/$(cut -d: -f3 /proc/{p.pid}/cgroup)/cgroup.freeze)."
    )


@rule(
    "PD902",
    "runtime-process-stopped",
    title="The container runtime process is stopped (T) or frozen and answers nothing",
    severity=Severity.CRITICAL,
    cls=C.RUNTIME_FROZEN,
    fix=(
        "Resume it (kill -CONT <pid>), then find who stopped it: `grep TracerPid /proc/<pid>/status` (a "
        "debugger, `gdb -p`/`strace -p` left attached), a freezer cgroup (cat /sys/fs/cgroup/<its cgroup>/"
        "cgroup.freeze; echo 0 to thaw), or a `kill -STOP`."
    ),
    references=(SIGNAL7, PTRACE2, PROC5, CGROUP_V2_FREEZE, CGROUP_V1_FREEZER),
    role="cause",
    reads=("tasks", "triggers", "cgroup_freezes", "proc_cgroups"),
)
def runtime_process_stopped(ctx: RuleContext) -> Iterator[Hit]:
    """Detects containerd, CRI-O or dockerd whose main thread, or most of whose threads, are in
    state `T` (stopped by a signal) or `t` (tracing stop), or wait in `do_signal_stop` /
    `ptrace_stop`; or that the cgroup freezer holds (wait channel `__refrigerator` on cgroup v1,
    `do_freezer_trap` on v2, or its cgroup's `cgroup.freeze`/`freezer.state` says frozen). Read
    from ps (`ps -eLo pid,tid,stat,wchan:32,comm,args`), /proc/<pid>/task/*/stat and status, and
    the bundle's `tasks/ps.txt` and `tasks/runtime-status.txt`.

    Why it matters: a stopped process runs no instruction. Its socket still accepts
    connections (the kernel does that), so every CRI call, the kubelet's relist included, waits
    until its deadline; nothing is logged, no goroutine dump can be written. It needs no other
    explanation, and it is easy to miss: the process is "running" to systemd. A stalled call of
    the relist probe while it was stopped makes it near-certain.

    Example evidence::

        PID   TID STAT WCHAN            COMMAND   CMD
        812   812 Tsl  do_signal_stop   containerd /usr/bin/containerd
        812   840 Tsl  do_signal_stop   containerd /usr/bin/containerd

    with, in the bundle's manifest, `"reason": "ListPodSandbox in flight for 6.2s"`.

    Fix: `kill -CONT <pid>`; find who stopped it (TracerPid, a freezer cgroup, a `kill -STOP`).
    """
    for p in processes(ctx).values():
        if not _is_daemon(p.comm) or not p.threads:
            continue
        threads = list(p.threads.values())
        stopped = [t for t in threads if t.stopped]
        frozen = [t for t in threads if t.frozen and not t.stopped]
        main = p.main
        n = len(threads)
        trig = _trigger_for(ctx, p)
        if p.frozen_cgroup is not None or (frozen and (len(frozen) * 2 >= n or (main and main.frozen))):
            affected = frozen or threads
            mechanism = frozen[0].waits_in(FREEZER_WCHANS) if frozen else None
            detail = f"{p.label()} is frozen by the cgroup freezer"
            if mechanism:
                detail += f": {len(affected)} of {n} threads in {mechanism}"
            if p.frozen_cgroup:
                detail += f" ({p.frozen_cgroup[0]} says frozen)"
            evidence = p.refs(affected) + ([p.frozen_cgroup[1]] if p.frozen_cgroup else [])
            is_frozen = True
        elif stopped and (len(stopped) * 2 >= n or (main is not None and main.stopped)):
            letters = "/".join(sorted({t.letter for t in stopped if t.letter})) or "T"
            wchan = next((w for t in stopped if (w := t.waits_in(STOP_WCHANS))), None)
            share = "all" if len(stopped) == n else f"{len(stopped)} of"
            detail = (
                f"{p.label()} is {_stop_cause(p, stopped)}: {share} {n} thread{'s' if n != 1 else ''} in state "
                f"{letters}" + (f" ({wchan})" if wchan else "")
            )
            evidence = p.refs(stopped)
            affected = stopped
            is_frozen = False
        elif stopped:
            # some threads only (a tracer attached to single TIDs): the calls those threads
            # serve hang, the rest of the daemon runs
            yield step_hit(
                f"{len(stopped)} of {n} threads of {p.label()} are stopped (T/t): a tracer on single threads",
                # weak: a partial stop slows or blocks some calls, not necessarily the relist's
                0.35,
                link("process", p.comm, f"{len(stopped)} of {n} threads of {p.label()} stopped", p.refs(stopped)),
                evidence=p.refs(stopped),
                fix=_stop_fix(p, False),
            )
            continue
        else:
            continue
        # a kernel stack in do_signal_stop/__refrigerator shows the mechanism itself (the
        # kernel's own view of where each thread is), not just a state letter
        shown = any(t.stack and kernel_stack_has(t.stack, *STOP_WCHANS, *FREEZER_WCHANS) for t in affected)
        kind = "kernel" if shown else "process"
        steps = [link(kind, p.comm, detail, evidence[:3], pid=p.pid, tags=("runtime-stopped",))]
        refs = list(evidence)
        if trig is not None:
            steps.insert(0, probe_link(trig))
            refs.insert(0, trig.ref)
            title = f"{detail}, while the relist probe's {_call_text(trig)}"
            # near-certain: the daemon that serves the relist's calls cannot run, and the stall
            # was observed at the same moment (the bundle was captured for it)
            weight = 0.95
        else:
            title = detail
            # strong but not certain: stopping the daemon stops every CRI call, but nothing here
            # shows that the snapshot was taken during the stall
            weight = 0.8 if len(affected) * 2 >= n else 0.7
        yield step_hit(
            title,
            weight,
            *steps,
            evidence=refs,
            fix=_stop_fix(p, is_frozen),
            facts={"pid": p.pid, "threads": n, "stopped": len(affected)},
        )


@rule(
    "PD903",
    "runc-frozen",
    title="runc (or the container's runc init) is frozen or stopped",
    severity=Severity.CRITICAL,
    cls=C.RUNC_HANG,
    fix=(
        "Thaw the container's cgroup (cgroup v2: echo 0 > /sys/fs/cgroup/<container cgroup>/cgroup.freeze; v1: "
        "echo THAWED > .../freezer.state) or resume the process (kill -CONT <pid>); runc then finishes or "
        "fails and the shim's call returns. Check what froze the cgroup (a `runc update`/`pause` interrupted "
        "half-way, systemd's cgroup driver freezing the unit during an update)."
    ),
    references=(
        CGROUP_V2_FREEZE,
        CGROUP_V1_FREEZER,
        "https://github.com/opencontainers/runc/blob/main/libcontainer/cgroups/",
    ),
    role="cause",
    reads=("tasks", "cgroup_freezes", "proc_cgroups"),
)
def runc_frozen(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `runc` processes (`runc`, `runc:[1:CHILD]`, `runc:[2:INIT]`, `crun`) held by the
    cgroup freezer (wait channel `__refrigerator`/`do_freezer_trap`, or a frozen cgroup) or
    stopped (state T/t, `do_signal_stop`).

    Why it matters: the shim runs runc for every create, start, exec, update and delete and
    waits for it while holding the container's state; containerd's CRI calls for that
    container (ListContainers takes every container's status lock) queue behind it. runc
    freezes a container's cgroup itself for some updates; if it is frozen in the middle, or
    the container's runc init is in a frozen cgroup, runc never returns.

    Example evidence::

        PID  STAT WCHAN            CMD
        9931 D    __refrigerator   runc:[2:INIT]

    Fix: thaw the cgroup (or kill -CONT); find what froze it.
    """
    found: list[tuple[Proc, Thread, str]] = []
    for p in processes(ctx).values():
        if not _is_runc(p.comm):
            continue
        for t in p.threads.values():
            how = t.waits_in(FREEZER_WCHANS) or (
                "a frozen cgroup" if p.frozen_cgroup else (t.waits_in(STOP_WCHANS) or ("T" if t.stopped else None))
            )
            if how:
                found.append((p, t, how))
                break
    if not found:
        return
    p0, _, how0 = found[0]
    more = f", {len(found) - 1} more runc process(es)" if len(found) > 1 else ""
    yield step_hit(
        f"{p0.label()} is frozen or stopped ({how0}){more}",
        # runc not returning is what the shim's call waits on; frozen is a definite "will not
        # return" (unlike D, which may be slow I/O), so as strong as a runc chain in a dump
        0.6 + (0.05 if len(found) > 1 else 0.0),
        *(
            link("process", "runc", f"{p.label()} frozen/stopped ({how})", p.refs([t]), pid=p.pid, tags=("runc",))
            for p, t, how in found[:2]
        ),
        evidence=[r for p, t, _ in found[:4] for r in p.refs([t], 1)],
    )


@rule(
    "PD904",
    "shim-zombie-or-stopped",
    title="containerd shims are zombies (Z) or stopped, or many runc processes are defunct",
    severity=Severity.WARNING,
    cls=C.SHIM_HANG,
    fix=(
        "A defunct shim no longer serves its task: find its containers (ps -o pid,ppid,stat,cmd -p <pid>; "
        "crictl ps -a), stop and remove their pods, and restart containerd if its parent is containerd and it "
        "does not reap it. A stopped shim: kill -CONT <pid>. Many defunct runc under one shim: that shim's "
        "reaper is stuck: dump it (kill -USR1 <shim pid>) and restart the pod."
    ),
    references=("https://github.com/containerd/containerd/issues/4734", PROC5),
    role="cause",
    reads=("tasks", "cgroup_freezes", "proc_cgroups"),
)
def shim_zombie_or_stopped(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `containerd-shim*` processes in state `Z` (defunct) or `T` (stopped), and three
    or more defunct `runc` processes.

    Why it matters: containerd talks to each container's shim over ttrpc; a zombie shim's
    socket is gone and a stopped one's never answers, so containerd's calls for that task
    wait or fail until their timeout while holding the task's state. runc processes are
    children of the shim, which reaps them; several defunct ones mean the shim's reaper is
    stuck, and with it every runc call of that shim.

    Example evidence (`ps aux`)::

        root  4121  0.0  0.0      0     0 ?  Z  10:02  0:00 [containerd-shim] <defunct>

    Fix: clean up the shim's pods; restart containerd if it does not reap them.
    """
    procs = list(processes(ctx).values())
    zombies = [p for p in procs if p.comm.startswith(SHIM_PREFIX) and p.main and p.main.letter == "Z"]
    stopped = [
        p for p in procs if p.comm.startswith(SHIM_PREFIX) and p.main and p.main.stopped and p.main.letter != "Z"
    ]
    runc_z = [p for p in procs if _is_runc(p.comm) and p.main and p.main.letter == "Z"]
    if stopped:
        p = stopped[0]
        yield step_hit(
            f"{p.label()} is stopped (T)" + (f", {len(stopped) - 1} more shim(s)" if len(stopped) > 1 else ""),
            # a stopped shim answers no ttrpc call: the calls for its task hang (as a stopped
            # runtime does, but for one container's calls only)
            0.6,
            link(
                "process",
                "containerd-shim",
                f"{p.label()} stopped",
                p.refs([p.main] if p.main else []),
                pid=p.pid,
                tags=("shim:State",),
            ),
            evidence=[r for q in stopped[:4] for r in q.refs([q.main] if q.main else [], 1)],
        )
    if zombies:
        p = zombies[0]
        yield step_hit(
            f"{len(zombies)} containerd-shim process(es) defunct (Z), e.g. pid {p.pid}",
            # a sign that shims died abnormally and their tasks' calls fail or wait; not proof
            # that the relist waits on one of them
            0.4 + min(0.15, 0.05 * (len(zombies) - 1)),
            link("process", "containerd-shim", f"{p.label()} defunct", p.refs([p.main] if p.main else []), pid=p.pid),
            evidence=[r for q in zombies[:4] for r in q.refs([q.main] if q.main else [], 1)],
        )
    if len(runc_z) >= 3:
        yield step_hit(
            f"{len(runc_z)} runc processes defunct (Z): their shim does not reap its children",
            # an unreaped child means the shim's reaper loop is stuck: weaker than a stopped or
            # defunct shim (the containers' other calls may still work)
            0.35 + min(0.15, 0.03 * (len(runc_z) - 3)),
            link(
                "process",
                "runc",
                f"{len(runc_z)} runc defunct",
                [r for q in runc_z[:2] for r in q.refs(q.threads.values(), 1)],
            ),
            evidence=[r for q in runc_z[:4] for r in q.refs(q.threads.values(), 1)],
        )


# ---------------------------------------------------------------------------------------
# D state, classified by where the threads wait

# where a D-state thread waits -> the class it names. The meaning of kernel functions comes
# from the shared table plegdoctor.kernelnames (class hints) when this build has it; the
# local prefixes below are the fallback, and cover the same names.
_HINT_CLASSES: dict[str, tuple[RootCauseClass, str, tuple[str, ...]]] = {
    "nfs": (C.NETWORK_STORAGE_HANG, "a network filesystem", ("nfs", "network-fs")),
    "syncfs": (C.OVERLAY_UMOUNT_SYNC, "syncing a whole filesystem (syncfs, overlay unmount)", ("umount", "syncfs")),
    "fsync": (C.FSYNC_IO_PRESSURE, "fsync (journal commit, writeback of a file)", ("fsync",)),
    "io-wait": (C.DISK_IO_PRESSURE, "block I/O", ("io-wait",)),
    "netdev": (C.KERNEL_D_STATE, "network device teardown (RTNL)", ("netdev",)),
    "cgroup": (C.KERNEL_D_STATE, "the cgroup core", ("cgroup",)),
    "srcu": (C.KERNEL_D_STATE, "an RCU/SRCU grace period", ()),
}
_LOCAL_HINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nfs", ("nfs_", "nfs4_", "rpc_", "__rpc_", "cifs_", "smb2_", "ceph_", "fuse_", "request_wait_answer")),
    ("syncfs", ("wb_wait_for_completion", "sync_inodes_sb", "sync_filesystem", "ovl_sync_fs")),
    (
        "fsync",
        (
            "jbd2_",
            "ext4_sync_file",
            "xfs_file_fsync",
            "xfs_log_force",
            "btrfs_sync_file",
            "do_fsync",
            "file_write_and_wait_range",
            "filemap_write_and_wait_range",
            "__filemap_fdatawait_range",
            "filemap_fdatawait",
        ),
    ),
    ("io-wait", ("io_schedule", "blk_mq_get_tag", "balance_dirty_pages", "wait_on_page_bit", "folio_wait_bit")),
    ("netdev", ("rtnl_lock", "netdev_run_todo", "unregister_netdevice", "cleanup_net", "copy_net_ns")),
    ("cgroup", ("cgroup_",)),
)


def _hint(t: Thread) -> tuple[str | None, str]:
    """(class hint, the function that gave it) of where a thread waits."""
    try:
        from plegdoctor import kernelnames
    except ImportError:
        kernelnames = None  # type: ignore[assignment]
    if kernelnames is not None:
        if t.stack:
            w = kernelnames.waits_in(t.stack)
            if w is not None and w.hint:
                return w.hint, w.known or w.function
        if t.wchan:
            known = kernelnames.lookup(t.wchan)
            if known is not None:
                return known[0], t.wchan
    for hint, names in _LOCAL_HINTS:
        fn = t.waits_in(names)
        if fn:
            return hint, fn
    return None, t.wchan or (t.stack[0].split("+", 1)[0] if t.stack else "?")


def classify_wait(t: Thread) -> tuple[RootCauseClass, str, tuple[str, ...], str]:
    """(class, what, chain tags, the function matched) for a D-state thread."""
    hint, fn = _hint(t)
    if hint in _HINT_CLASSES:
        cls, what, tags = _HINT_CLASSES[hint]
        return cls, what, tags, fn
    return C.KERNEL_D_STATE, "the kernel", (), fn


@rule(
    "PD905",
    "runtime-threads-d-state",
    title="Threads of a runtime process are in D state (uninterruptible), classified by their wait channel",
    severity=Severity.WARNING,
    cls=C.KERNEL_D_STATE,
    fix=(
        "Read what they wait on: cat /proc/<pid>/task/*/stack (or echo w > /proc/sysrq-trigger; dmesg). NFS/"
        "CIFS/FUSE: the server or network (umount -f -l the hung mount); fsync/journal: the disk is saturated "
        "(lower dirty limits, separate disk for /var/lib/containerd); syncfs/writeback: overlay unmounts sync "
        "the disk (mount overlay snapshots volatile)."
    ),
    references=(PROC5, "https://docs.kernel.org/admin-guide/sysctl/kernel.html#hung-task-timeout-secs"),
    role="cause",
    reads=("tasks", "cgroup_freezes", "proc_cgroups"),
)
def runtime_threads_d_state(ctx: RuleContext) -> Iterator[Hit]:
    """Detects threads of containerd, CRI-O, dockerd, the shims, runc or the kubelet in state `D`
    (uninterruptible sleep), grouped per process and classified by their wait channel or kernel
    stack: network filesystems (`nfs_*`, `rpc_wait_bit_killable`, `cifs_*`, `fuse_*`) ->
    network-storage-hang; syncfs/writeback waits (`wb_wait_for_completion`, `sync_inodes_sb`) ->
    overlay-umount-sync; journal commits and fsync (`jbd2_log_wait_commit`, `ext4_sync_file`,
    `do_fsync`) -> fsync-io-pressure; block I/O (`io_schedule`, `blk_mq_get_tag`) ->
    disk-io-pressure; anything else (netdev, cgroup core, unknown) -> kernel-d-state. Tasks held
    by the cgroup freezer are left to PD902/PD903.

    Why it matters: a runtime thread in D cannot be interrupted until the kernel operation
    completes; the goroutine on it, and every lock it holds, is stuck. The share of the
    process's threads in D says how much of the runtime is blocked (a daemon with most of its
    threads in D answers almost nothing). PD6xx rules weigh each stuck task; this rule adds
    the per-process view, so its weight grows with that share.

    Example evidence (`ps -eLo pid,tid,stat,wchan:32,comm,args`)::

        PID   TID STAT WCHAN                     COMMAND    COMMAND
        812   901 Dsl  jbd2_log_wait_commit      containerd /usr/bin/containerd
        812   903 Dsl  jbd2_log_wait_commit      containerd /usr/bin/containerd

    Fix: depends on the wait channel (see above).
    """
    for p in processes(ctx).values():
        if not _is_runtime(p.comm):
            continue
        threads = list(p.threads.values())
        d = [t for t in threads if t.letter == "D" and not t.frozen]
        if not d:
            continue
        groups: dict[RootCauseClass, list[tuple[Thread, str, tuple[str, ...], str]]] = {}
        for t in d:
            cls, what, tags, fn = classify_wait(t)
            groups.setdefault(cls, []).append((t, what, tags, fn))
        for cls, items in groups.items():
            _, what, tags, fn = items[0]
            share = len(items) / max(1, len(threads))
            # base 0.3 (one thread in D may be a slow but progressing I/O), up to +0.3 with the
            # share of the process's threads stuck there; a CRI daemon (or a shim) blocked that
            # way blocks the calls it serves: +0.05
            weight = 0.3 + 0.3 * share + (0.05 if _is_daemon(p.comm) or p.comm.startswith(SHIM_PREFIX) else 0.0)
            n = len(threads)
            detail = f"{len(items)} of {n} thread{'s' if n != 1 else ''} of {p.label()} in D state in {what} ({fn})"
            yield step_hit(
                detail,
                min(weight, 0.65),
                link(
                    "kernel",
                    p.comm,
                    detail,
                    p.refs([t for t, *_ in items], 3),
                    pid=p.pid,
                    function=fn,
                    tags=("d-state", *tags),
                ),
                evidence=p.refs([t for t, *_ in items]),
                cls=cls,
            )


# ---------------------------------------------------------------------------------------
# Node resources: memory, CPU, OOM kills

MEM_AVAILABLE_LOW = 0.05  # MemAvailable below 5 % of MemTotal
MEM_AVAILABLE_CRITICAL = 0.02
PSI_MEMORY_FULL_HIGH = 10.0  # % of time all non-idle tasks stalled on memory (avg10)
PSI_MEMORY_FULL_SEVERE = 30.0
PSI_CPU_SOME_HIGH = 80.0  # % of time at least one runnable task waited for a CPU (avg10)
PSI_CPU_FULL_HIGH = 10.0  # cgroup-level only: node-level cpu `full` is always 0
PSI_IO_FULL_BUSY = 10.0  # above this, a high load average is I/O (D tasks), not CPU
LOAD_PER_CPU_HIGH = 4.0
LOAD_PER_CPU_SEVERE = 10.0
OOM_RUNTIME = ("kubelet", "containerd", "dockerd", "crio", "containerd-shim", "conmon")


@dataclass(frozen=True, slots=True)
class _Signal:
    weight: float
    text: str
    ref: Ref


def _placed(ctx: RuleContext, ts: datetime | None) -> tuple[bool, str]:
    """(usable, suffix): a figure outside every known stall does not count."""
    inside = in_stall(ctx, ts)
    if inside is False:
        return False, ""
    return True, " during the stall" if inside else ""


def _memory_signals(ctx: RuleContext) -> list[_Signal]:
    out: list[_Signal] = []
    worst: tuple[float, _Signal] | None = None
    figures = [(m.ts, m.mem_total_kb, m.mem_available_kb, m.ref) for m in ctx.evidence.meminfo] + [
        (f.ts, f.mem_total_kb, f.mem_available_kb, f.ref) for f in ctx.evidence.memory
    ]  # /proc/meminfo, and the summaries of top/free
    for ts, mem_total_kb, mem_available_kb, ref in figures:
        if not mem_total_kb or mem_available_kb is None:
            continue
        share = mem_available_kb / mem_total_kb
        ok, when = _placed(ctx, ts)
        if not ok or share >= MEM_AVAILABLE_LOW:
            continue
        # below 5 % the kernel reclaims in every allocation (direct reclaim stalls the runtime's
        # and kubelet's threads); below 2 % the OOM killer is next
        w = 0.55 if share < MEM_AVAILABLE_CRITICAL else 0.4
        sig = _Signal(
            w,
            f"MemAvailable {mem_available_kb // 1024} MiB of {mem_total_kb // 1024} MiB ({share:.1%}){when}",
            ref,
        )
        if worst is None or share < worst[0]:
            worst = (share, sig)
    if worst is not None:
        out.append(worst[1])
    best: tuple[float, _Signal] | None = None
    for s in ctx.evidence.pressure:
        if s.resource != "memory" or s.full_avg10 is None or s.full_avg10 < PSI_MEMORY_FULL_HIGH:
            continue
        ok, when = _placed(ctx, s.ts)
        if not ok:
            continue
        # `full` = every non-idle task stalled on memory at once that share of the time: the
        # kubelet and the runtime made no progress then
        w = 0.6 if s.full_avg10 >= PSI_MEMORY_FULL_SEVERE else 0.45
        where = "" if s.scope == "node" else f" ({s.scope})"
        sig = _Signal(w, f"PSI memory full avg10 {s.full_avg10:.0f}%{where}{when}", s.ref)
        if best is None or s.full_avg10 > best[0]:
            best = (s.full_avg10, sig)
    if best is not None:
        out.append(best[1])
    return out


def _cpu_signals(ctx: RuleContext) -> list[_Signal]:
    out: list[_Signal] = []
    best: tuple[float, _Signal] | None = None
    io_busy = any(
        s.resource == "io" and (s.full_avg10 or 0.0) >= PSI_IO_FULL_BUSY and _placed(ctx, s.ts)[0]
        for s in ctx.evidence.pressure
    )
    for s in ctx.evidence.pressure:
        if s.resource != "cpu":
            continue
        ok, when = _placed(ctx, s.ts)
        if not ok:
            continue
        where = "" if s.scope == "node" else f" ({s.scope})"
        if s.full_avg10 is not None and s.full_avg10 >= PSI_CPU_FULL_HIGH and s.scope != "node":
            # a cgroup whose tasks all wait for CPU (e.g. the runtime's, throttled by its quota)
            sig = _Signal(0.45, f"PSI cpu full avg10 {s.full_avg10:.0f}%{where}{when}", s.ref)
            value = 100.0 + s.full_avg10
        elif s.some_avg10 >= PSI_CPU_SOME_HIGH:
            # runnable tasks wait for a CPU most of the time: the kubelet's relist goroutine and
            # containerd's handlers are late, not stuck; weak alone
            sig = _Signal(0.3, f"PSI cpu some avg10 {s.some_avg10:.0f}%{where}{when}", s.ref)
            value = s.some_avg10
        else:
            continue
        if best is None or value > best[0]:
            best = (value, sig)
    if best is not None:
        out.append(best[1])
    d_tasks = sum(1 for t in ctx.evidence.tasks if t.state[:1] == "D")
    for ld in ctx.evidence.loads:
        if not ld.cpus:
            continue
        per_cpu = ld.load1 / ld.cpus
        ok, when = _placed(ctx, ld.ts)
        # the load average counts D-state tasks too: with the disk saturated or many tasks in
        # D, a high load is I/O, not CPU starvation
        if not ok or per_cpu < LOAD_PER_CPU_HIGH or io_busy or d_tasks * 2 >= ld.load1:
            continue
        w = 0.4 if per_cpu >= LOAD_PER_CPU_SEVERE else 0.25
        out.append(_Signal(w, f"load average {ld.load1:.1f} on {ld.cpus} CPUs ({per_cpu:.1f} per CPU){when}", ld.ref))
    return out


def _oom_signals(ctx: RuleContext) -> list[_Signal]:
    """Node-wide OOM kills (not a container's own memory limit) of processes other than the
    runtime (PD907 covers those)."""
    out = []
    for e in events(ctx, EventKind.OOM_KILL):
        comm = str(e.attrs.get("comm", ""))
        if e.attrs.get("cgroup") or comm.startswith(OOM_RUNTIME):
            continue
        ok, when = _placed(ctx, e.ts)
        if ok:
            # the kernel ran out of memory node-wide: allocations everywhere stalled before it
            out.append(_Signal(0.35, f"the kernel OOM-killed {comm} (pid {e.attrs.get('pid')}){when}", e.ref))
            break
    return out


def _noisy_or(weights: Iterable[float]) -> float:
    p = 1.0
    for w in weights:
        p *= 1.0 - w
    return 1.0 - p


@rule(
    "PD906",
    "node-resource-starvation",
    title="The node is out of memory or CPU: the kubelet and the runtime are starved",
    severity=Severity.CRITICAL,
    cls=C.NODE_RESOURCE_STARVATION,
    fix=(
        "Reserve resources for the node's daemons (kubelet --system-reserved/--kube-reserved, "
        "--eviction-hard memory.available<500Mi so pods are evicted before the node starves); find the "
        "consumers (ps aux --sort=-rss | head; top -o %CPU); set pod memory/CPU limits; run containerd and "
        "the kubelet in a reserved cgroup (systemd slice with MemoryLow/CPUWeight)."
    ),
    references=(PSI_DOC, RESERVED_DOC, OOM_DOC),
    role="cause",
    reads=("relists", "events", "pressure", "meminfo", "memory", "tasks", "triggers", "loads"),
)
def node_resource_starvation(ctx: RuleContext) -> Iterator[Hit]:
    """Detects memory or CPU exhaustion during the stall: MemAvailable below 5 % of MemTotal
    (/proc/meminfo), PSI memory `full` avg10 >= 10 % or cpu `some` avg10 >= 80 % (cgroup cpu
    `full` >= 10 %), a node-wide OOM kill, or a load average of 4 per CPU or more (bundle
    manifest `node_load`) that I/O does not explain. Figures outside a known stall window do not
    count; a high load with a saturated disk or many D-state tasks is I/O, not CPU, and is left
    to the I/O rules.

    Why it matters: the kubelet's relist and containerd's CRI handlers need CPU time and memory
    like any process; on a node without reserved resources they stall in direct reclaim or wait
    for a CPU, and the relist takes longer than its 3-minute threshold without any lock or disk
    being at fault.

    Example evidence::

        MemTotal:        8041432 kB
        MemAvailable:     101220 kB
        full avg10=42.17 avg60=30.02 avg300=12.50 total=912345678   (/proc/pressure/memory)

    Fix: reserve resources for the node's daemons; evict before the node starves.
    """
    signals = _memory_signals(ctx) + _cpu_signals(ctx) + _oom_signals(ctx)
    if not signals:
        return
    signals.sort(key=lambda s: -s.weight)
    # independent figures (memory, CPU, OOM, load) combine as a noisy-or; capped at 0.8
    # because /proc figures alone never show the stalled call waiting on them: a
    # chain-backed mechanism must still outrank starvation
    weight = min(0.8, _noisy_or(s.weight for s in signals))
    yield step_hit(
        "; ".join(s.text for s in signals[:3]),
        weight,
        *(link("memory", "kernel", s.text, (s.ref,), tags=("starvation",)) for s in signals[:2]),
        evidence=(s.ref for s in signals[:4]),
    )


@rule(
    "PD907",
    "runtime-oom-killed",
    title="The kernel OOM-killed the kubelet or the container runtime",
    severity=Severity.CRITICAL,
    cls=C.NODE_RESOURCE_STARVATION,
    fix=(
        "Protect the node's daemons: reserve memory (kubelet --system-reserved/--kube-reserved, "
        "--eviction-hard memory.available<500Mi), keep their oom_score_adj at -999 (containerd's systemd unit "
        "sets OOMScoreAdjust=-999), find what used the memory (dmesg: the OOM report's task list)."
    ),
    references=(OOM_DOC, RESERVED_DOC),
    role="cause",
    reads=("relists", "events", "triggers"),
)
def runtime_oom_killed(ctx: RuleContext) -> Iterator[Hit]:
    """Detects kernel OOM kills of the kubelet, containerd, its shims, dockerd or CRI-O
    (`Out of memory: Killed process 812 (containerd)`), node-wide or in their own cgroup.

    Why it matters: a killed runtime drops every call in flight; the relist fails until it is
    restarted and has reloaded every task, and a killed shim orphans its container. The node
    ran out of memory to the point where the kernel chose a system daemon.

    Example evidence (dmesg)::

        Out of memory: Killed process 812 (containerd) total-vm:2104280kB, anon-rss:1203112kB

    Fix: reserve memory for the daemons; find what used it.
    """
    found = [e for e in events(ctx, EventKind.OOM_KILL) if str(e.attrs.get("comm", "")).startswith(OOM_RUNTIME)]
    found = [e for e in found if in_stall(ctx, e.ts) is not False]
    if not found:
        return
    e = found[0]
    inside = in_stall(ctx, e.ts)
    comm = e.attrs.get("comm")
    more = f", {len(found) - 1} more" if len(found) > 1 else ""
    yield step_hit(
        f"the kernel OOM-killed {comm} (pid {e.attrs.get('pid')}){' during the stall' if inside else ''}{more}",
        # a killed daemon answers nothing until restarted: strong; in the stall window stronger
        0.6 + (0.15 if inside else 0.0),
        link("memory", "kernel", f"OOM kill of {comm} pid {e.attrs.get('pid')}", (e.ref,), tags=("oom",)),
        evidence=(x.ref for x in found[:4]),
    )


@rule(
    "PD908",
    "cgroup-stuck-freezing",
    title="A container's cgroup is stuck in FREEZING: runc waits for a freeze that never completes",
    severity=Severity.CRITICAL,
    cls=C.RUNC_HANG,
    fix=(
        "Thaw the cgroup (`echo THAWED > <cgroup>/freezer.state`) so the stuck runc (update, pause, exec) returns, "
        "then upgrade runc: 1.0.0-rc92 with the systemd cgroup driver froze the container on every `runc update` "
        "and could leave it FREEZING (runc#2753; fixed by runc#2774 and #2791 in 1.0.0-rc93)."
    ),
    references=(
        CGROUP_V1_FREEZER,
        "https://github.com/opencontainers/runc/issues/2753",
        "https://github.com/opencontainers/runc/pull/2774",
        "https://github.com/containerd/containerd/issues/4961",
    ),
    role="cause",
    reads=("cgroup_freezes",),
)
def cgroup_stuck_freezing(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a cgroup v1 `freezer.state` read as `FREEZING`: by a traced process polling it
    (strace of a stuck `runc update`: `read(7, "FREEZING\\n", 512) = 9`), or in a collected
    freezer.state file.

    Why it matters: FREEZING lasts milliseconds when every task can be frozen; a cgroup that
    stays FREEZING has a task that does not freeze (D state, a race with a concurrent exec),
    and runc's freeze loop waits for FROZEN with no deadline, holding up the shim's call and
    every CRI call queued behind that container. A process seen polling it is that wait.

    Example evidence::

        openat(AT_FDCWD, "/sys/fs/cgroup/freezer/kubepods.slice/.../freezer.state", O_RDONLY|O_CLOEXEC) = 7
        read(7, "FREEZING\\n", 512)              = 9

    Fix: thaw the cgroup; upgrade runc past the freezer races.
    """
    freezing = [f for f in ctx.evidence.cgroup_freezes if f.state == "FREEZING"]
    if not freezing:
        return
    polled = [f for f in freezing if f.source == "strace"]
    f0 = (polled or freezing)[0]
    how = "polled by the traced process" if polled else "read from its freezer.state"
    name = f0.path.rsplit("/", 1)[-1]
    detail = f"cgroup {name} is FREEZING ({how})"
    # a traced process polling the state is runc's wait itself; a file snapshot could be a
    # freeze in progress, so it weighs less
    yield step_hit(
        detail,
        0.55 if polled else 0.4,
        link("cgroup-freezer", "runc", detail, tuple(f.ref for f in freezing[:2]), tags=("runc", "cgroup")),
        evidence=tuple(f.ref for f in freezing[:3]),
    )
