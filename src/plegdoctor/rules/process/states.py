"""PD901-PD905: the relist probe stall, stopped, frozen or zombie runtime processes, runtime threads in D state."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.model import (
    RootCauseClass,
    Severity,
)
from plegdoctor.rules.process.procs import (
    CGROUP_V1_FREEZER,
    CGROUP_V2_FREEZE,
    FREEZER_WCHANS,
    PLEG_DOC,
    PROC5,
    PTRACE2,
    SHIM_PREFIX,
    SIGNAL7,
    STOP_WCHANS,
    C,
    Proc,
    Thread,
    _call_text,
    _is_daemon,
    _is_runc,
    _is_runtime,
    _trigger_for,
    probe_link,
    processes,
    triggers,
)
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import kernel_stack_has, link, step_hit


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
