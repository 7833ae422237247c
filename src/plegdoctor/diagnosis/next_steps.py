"""Next steps: the commands that collect the evidence that is missing, most useful first.

Each rule declares the evidence kinds it reads (`@rule(reads=...)`). The kinds that matter
now are those the *candidate* rules read: every rule but those whose root cause is already
confirmed (confidence >= CONFIRMED) — a rule that fired into a weak or unnamed cause, and a
rule that could not fire because its evidence was missing. Each step in `STEPS` collects
some kinds; it is shown when a candidate rule reads one of them and the inputs lacked it
(`when`, which also holds the step's own conditions: a class it confirms, a process whose
goroutine dump is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from plegdoctor.model import RootCause, RootCauseClass
from plegdoctor.rules.registry import EvidenceKind, Rule, RuleContext, load_all

C = RootCauseClass
K = EvidenceKind
CONFIRMED = 0.8  # a root cause this sure needs no more evidence (below it: "gather all" too)
KERNEL_LOG_INPUTS = ("dmesg", "kernel-log")  # inputs that show hung tasks when there are any


class StepInputs(msgspec.Struct, frozen=True):
    """What a step's condition and text read."""

    ctx: RuleContext
    classes: frozenset[RootCauseClass]  # of the root causes
    top: RootCause | None
    procs: frozenset[str]  # processes with a goroutine dump
    input_kinds: frozenset[str]  # parser kinds of the inputs
    since: str  # ten minutes before the stall, when known

    def lacks(self, *kinds: EvidenceKind) -> bool:
        """None of these kinds is in the evidence."""
        ev = self.ctx.evidence
        return not any(len(getattr(ev, str(k))) for k in kinds)

    @property
    def frozen(self) -> bool:
        return C.RUNTIME_FROZEN in self.classes


class Step(msgspec.Struct, frozen=True):
    """A command to run. `collects`: the evidence kinds it yields (the step is only shown
    when a candidate rule reads one of them; empty: always considered); `when`: the inputs
    lacked it (and its own conditions hold)."""

    collects: tuple[EvidenceKind, ...]
    when: Callable[[StepInputs], bool]
    text: str | Callable[[StepInputs], str]

    def render(self, x: StepInputs) -> str:
        return self.text(x) if callable(self.text) else self.text


def _no_relist_log(x: StepInputs) -> bool:
    ev = x.ctx.evidence
    return not len(ev.relists) and not any(e for e in ev.events if e.process == "kubelet")


def _logs_text(x: StepInputs) -> str:
    window = f"--since '{x.since}' " if x.since else "--since '-2h' "
    return (
        f"Get the kubelet and containerd logs: journalctl -u kubelet -u containerd {window}-o short-precise --all "
        "(the kubelet logs each relist at -v=5)."
    )


def _no_containerd_log(x: StepInputs) -> bool:
    return (
        not _no_relist_log(x)
        and bool(x.since)
        and not any(e.process == "containerd" for e in x.ctx.evidence.events)
        and "containerd-log" not in x.input_kinds
    )


STEPS: tuple[Step, ...] = (
    Step(
        (K.TASKS, K.PROC_CGROUPS, K.CGROUP_FREEZES, K.DUMPS),
        lambda x: x.frozen,
        # a stopped process cannot handle SIGUSR1: its dump waits until it runs again
        "The runtime is stopped: record who stopped it first (grep -E 'State|TracerPid' /proc/<pid>/status; "
        "cat /proc/<pid>/cgroup and that cgroup's cgroup.freeze or freezer.state), then resume it with "
        "kill -CONT <pid> (or thaw the cgroup); a goroutine dump (SIGUSR1) is only written once it runs.",
    ),
    Step(
        (K.DUMPS,),
        lambda x: not x.frozen and "crio" in x.procs,
        "Dump CRI-O's goroutines again while the stall lasts: kill -USR1 $(pidof crio), then read "
        "/tmp/crio-goroutine-stacks-<timestamp>.log (all goroutines: the holder of the lock is in it).",
    ),
    Step(
        (K.DUMPS,),
        lambda x: not x.frozen and "crio" not in x.procs and "containerd" not in x.procs,
        "Dump containerd's goroutines while the relist is stalled: kill -USR1 $(pidof containerd), then read "
        "/tmp/containerd.<pid>.stacks.log (also logged by containerd as one line: journalctl -u containerd "
        "--all | grep -F 'goroutine stack dump').",
    ),
    Step(
        (K.DUMPS,),
        lambda x: (
            bool(x.classes & {C.SHIM_HANG, C.OVERLAY_UMOUNT_SYNC, C.RUNC_HANG, C.UNKNOWN})
            and "containerd-shim" not in x.procs
        ),
        "Dump the shim of the stuck container: "
        "kill -USR1 $(pgrep -f 'containerd-shim-runc-v2.*-id <container id>'); the shim logs its goroutines "
        "through containerd's journal (journalctl -u containerd --all), then cat /proc/<shim pid>/stack.",
    ),
    Step(
        (K.PRESSURE,),
        lambda x: x.lacks(K.PRESSURE),
        "Read I/O pressure during the stall: cat /proc/pressure/io (PSI needs kernel >= 4.20; psi=1 on some distros).",
    ),
    Step(
        (K.DISKSTATS, K.DISK_SAMPLES),
        lambda x: x.lacks(K.DISKSTATS, K.DISK_SAMPLES),
        "Measure the disks: cat /proc/diskstats; sleep 5; cat /proc/diskstats (or iostat -x 5 3).",
    ),
    Step(
        (K.MEMINFO,),
        lambda x: x.lacks(K.MEMINFO),
        "Check the writeback backlog: grep -E '^(Dirty|Writeback):' /proc/meminfo.",
    ),
    Step(
        (K.HUNG_TASKS,),
        lambda x: x.lacks(K.HUNG_TASKS) and not any(k in x.input_kinds for k in KERNEL_LOG_INPUTS),
        "Look for hung tasks: dmesg -T | grep -A 30 'blocked for more than' (or journalctl -k).",
    ),
    Step((K.RELISTS, K.EVENTS), _no_relist_log, _logs_text),
    Step(
        (K.EVENTS,),
        _no_containerd_log,
        lambda x: (
            f"Get containerd's log for the stall: journalctl -u containerd --since '{x.since}' -o short-precise --all."
        ),
    ),
    Step(
        (K.VERSIONS,),
        lambda x: not (x.ctx.versions.containerd and x.ctx.versions.kernel),
        "Record versions: containerd --version; uname -r; kubelet --version; runc --version.",
    ),
    Step(
        (K.RUNTIME_CONFIGS,),
        lambda x: (
            x.lacks(K.RUNTIME_CONFIGS) and bool(x.classes & {C.OVERLAY_UMOUNT_SYNC, C.FSYNC_IO_PRESSURE, C.UNKNOWN})
        ),
        "Show the effective containerd config: containerd config dump.",
    ),
    Step(
        (K.MOUNTS,),
        lambda x: x.lacks(K.MOUNTS) and C.OVERLAY_UMOUNT_SYNC in x.classes,
        "Check whether overlay mounts are volatile: grep overlay /proc/mounts.",
    ),
    Step(
        (K.DUMPS,),
        lambda x: (
            C.KUBELET_INTERNAL in x.classes
            or (x.top is not None and x.top.cls == C.UNKNOWN and "kubelet" not in x.procs)
        ),
        "Dump the kubelet's goroutines without restarting it: kubectl get --raw "
        "'/api/v1/nodes/<node>/proxy/debug/pprof/goroutine?debug=2' > kubelet-goroutines.txt.",
    ),
    Step(
        (),
        lambda x: x.top is None or x.top.confidence < CONFIRMED,
        "Or gather all of the above in one go on the node: pleg-doctor collect --since 2h.",
    ),
)


def candidate_reads(root_causes: list[RootCause], rules: dict[str, Rule]) -> frozenset[EvidenceKind]:
    """The evidence kinds the candidate rules read: every rule's but those of rules whose
    root cause is confirmed (a named class with confidence >= CONFIRMED)."""
    confirmed = {
        code for rc in root_causes if rc.cls != C.UNKNOWN and rc.confidence >= CONFIRMED for code in rc.findings
    }
    return frozenset(k for code, r in rules.items() if code not in confirmed for k in r.reads)


def missing_kinds(ctx: RuleContext, root_causes: list[RootCause], rules: dict[str, Rule]) -> frozenset[EvidenceKind]:
    """The kinds candidate rules read that the evidence lacks."""
    ev = ctx.evidence
    return frozenset(k for k in candidate_reads(root_causes, rules) if not len(getattr(ev, str(k))))


def next_steps(
    ctx: RuleContext, root_causes: list[RootCause], stall: Any, rules: dict[str, Rule] | None = None
) -> list[str]:
    """Commands that collect the evidence that is missing, most useful first (`rules`: the
    registry by default)."""
    rules = load_all() if rules is None else rules
    since = ""
    if stall is not None and getattr(stall, "start", None) is not None:
        start: datetime = stall.start - timedelta(minutes=10)
        since = start.strftime("%Y-%m-%d %H:%M:%S")
    x = StepInputs(
        ctx=ctx,
        classes=frozenset(rc.cls for rc in root_causes),
        top=root_causes[0] if root_causes else None,
        procs=frozenset(ctx.dump_processes()),
        input_kinds=frozenset(i.kind for i in ctx.evidence.inputs),
        since=since,
    )
    wanted = candidate_reads(root_causes, rules)
    return [s.render(x) for s in STEPS if (not s.collects or wanted & set(s.collects)) and s.when(x)]
