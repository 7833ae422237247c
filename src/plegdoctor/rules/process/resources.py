"""PD906-PD908: node resources (memory, CPU, OOM kills of the runtime) and cgroups stuck freezing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import msgspec

from plegdoctor.model import (
    EventKind,
    Ref,
    Severity,
)
from plegdoctor.rules.process.procs import CGROUP_V1_FREEZER, OOM_DOC, PSI_DOC, RESERVED_DOC, C, in_stall
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import events, link, step_hit

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


class _Signal(msgspec.Struct, frozen=True):
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
