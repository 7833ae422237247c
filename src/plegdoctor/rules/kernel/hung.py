"""PD601-PD609: hung and D-state runtime tasks (overlay syncfs, fsync, block I/O, netdev,
cgroups, RCU), frozen tasks, CPU lockups."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.knowledge import ISSUE_9770
from plegdoctor.model import EventKind, Severity
from plegdoctor.rules import fixes
from plegdoctor.rules.kernel.stuck import (
    _OTHER_SUBSYSTEMS,
    BLOCK_IO,
    CGROUP,
    FSYNC_PATH,
    HUNG_TASK_DOC,
    ISSUE_5325,
    ISSUE_6406,
    NETDEV,
    OVL_SYNC,
    SYNC_FS,
    UMOUNT_PATH,
    C,
    _is_runtime,
    _match,
    _more,
    _stuck_hit,
    _stuck_in_subsystem,
    stuck_tasks,
)
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import all_events, link, step_hit


@rule(
    "PD601",
    "hung-task-overlay-syncfs",
    title="A task hangs in overlayfs sync on unmount (ovl_sync_fs / sync_filesystem)",
    severity=Severity.CRITICAL,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix=(
        'Mount overlay snapshots volatile ([plugins."io.containerd.snapshotter.v1.overlayfs"] mount_options = '
        '["volatile"], containerd >= 1.6.24/1.7.4/2.0, kernel >= 5.10) so unmount skips the syncfs; lower '
        "dirty limits."
    ),
    references=(ISSUE_5325, ISSUE_6406, ISSUE_9770, "https://github.com/containerd/containerd/pull/8676"),
    role="cause",
    reads=("events", "hung_tasks", "tasks", "versions"),
    proof="kernel",
    io_load=True,
)
def hung_task_overlay_syncfs(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a hung-task trace or kernel stack in `ovl_sync_fs`, or in `sync_filesystem` on the
    unmount path (`generic_shutdown_super`, `deactivate_locked_super`, `cleanup_mnt`).

    Why it matters: that is the overlay unmount of a container rootfs syncing the whole
    upper (backing) filesystem (containerd #5325). It waits for every dirty page on the disk,
    including image layers being unpacked; the shim doing it holds its mutex, and CRI calls
    for that container queue under its status lock.

    Example evidence (dmesg)::

        INFO: task containerd-shim:2471 blocked for more than 120 seconds.
        Call Trace:
         rwsem_down_read_slowpath+0x...
         ovl_sync_fs+0x.../0x... [overlay]
         sync_filesystem+0x...
         generic_shutdown_super+0x...
         cleanup_mnt+0x...
         task_work_run+0x...

    Fix: overlay `volatile` (version-aware), lower dirty limits.
    """
    found = []
    for s in stuck_tasks(ctx):
        fn = _match(s, OVL_SYNC)
        if fn is None and _match(s, SYNC_FS) and _match(s, UMOUNT_PATH):
            fn = "sync_filesystem"
        if fn:
            found.append((s, fn))
    if not found:
        return
    s0, fn0 = found[0]
    yield _stuck_hit(
        found,
        f"{s0.describe()} in overlay unmount sync ({fn0}){_more(found, 'more task(s)')}",
        0.7 + (0.05 if _is_runtime(s0.comm) else 0.0) + (0.05 if len(found) > 1 else 0.0),
        "unmounting an overlay: syncfs of the backing filesystem",
        ("umount", "syncfs"),
        fix=fixes.volatile_fix(ctx.versions),
    )


@rule(
    "PD602",
    "runtime-hung-in-fsync",
    title="A runtime process hangs in fsync/writeback in the kernel",
    severity=Severity.CRITICAL,
    cls=C.FSYNC_IO_PRESSURE,
    fix=" ".join([fixes.dirty_limits_fix(), fixes.separate_disk_fix()]),
    references=(ISSUE_9770, HUNG_TASK_DOC),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
    io_load=True,
)
def runtime_hung_in_fsync(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a hung-task trace or D-state stack of a runtime process (containerd, shim,
    kubelet, dockerd) inside the fsync/writeback path: `do_fsync`, `ext4_sync_file`,
    `jbd2_log_wait_commit`, `xfs_log_force`, `file_write_and_wait_range`,
    `wb_wait_for_completion`.

    Why it matters: containerd fsyncs its metadata DB, pulled blobs and status checkpoints
    while holding locks; the kernel trace proves the flush itself is what is slow (the
    journal commit waits behind the disk's writeback queue).

    Example evidence::

        INFO: task containerd:1187 blocked for more than 122 seconds.
         jbd2_log_wait_commit+0xb5/0x140
         ext4_sync_file+0x15c/0x3b0
         do_fsync+0x38/0x70

    Fix: lower dirty limits, separate disk for /var/lib/containerd.
    """
    found = [(s, fn) for s in stuck_tasks(ctx) if _is_runtime(s.comm) and (fn := _match(s, FSYNC_PATH))]
    if not found:
        return
    s0, fn0 = found[0]
    yield _stuck_hit(
        found,
        f"{s0.describe()} in fsync/writeback ({fn0})",
        0.55 + (0.05 if len(found) > 1 else 0.0),
        "flushing to disk",
        ("fsync",),
    )


@rule(
    "PD603",
    "tasks-hung-in-block-io",
    title="Tasks hang waiting for block I/O",
    severity=Severity.WARNING,
    cls=C.DISK_IO_PRESSURE,
    fix=(
        "The disk does not keep up: find the writers (iotop -ao, pidstat -d 1), move them or cap them with "
        "io.max, lower dirty limits (vm.dirty_bytes=256MiB, vm.dirty_background_bytes=64MiB)."
    ),
    references=(HUNG_TASK_DOC, "https://github.com/NixOS/nixpkgs/issues/144787"),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
    io_load=True,
)
def tasks_hung_in_block_io(ctx: RuleContext) -> Iterator[Hit]:
    """Detects hung-task traces or D-state stacks waiting for block I/O (`io_schedule`,
    `blk_mq_get_tag`, `balance_dirty_pages`, `wait_on_page_bit`, `xfs_buf_iowait`,
    journal/writeback waits: where the task waits has the `io-wait` or `fsync` hint of
    plegdoctor.kernelnames) in processes that are not the runtime (PD602 covers those),
    writeback kworkers included.

    Why it matters: several unrelated processes blocked on I/O for minutes means the disk is
    saturated; the runtime's own flushes wait in the same queue.

    Example evidence (NixOS/nixpkgs#144787, `dmesg -T`)::

        [Fri Nov  5 21:02:26 2021] INFO: task kworker/u64:5:325 blocked for more than 122 seconds.
        [Fri Nov  5 21:02:26 2021] task:kworker/u64:5   state:D stack:    0 pid:  325 ppid:     2 flags:0x00004000
        [Fri Nov  5 21:02:26 2021] Workqueue: writeback wb_workfn (flush-254:1)
        [Fri Nov  5 21:02:26 2021]  schedule_timeout+0xff/0x140
        [Fri Nov  5 21:02:26 2021]  __wait_for_common+0xae/0x160
        [Fri Nov  5 21:02:26 2021]  xfs_buf_iowait+0x1f/0xa0 [xfs]

    Fix: find the heavy writers; cap or move them; if the disk is idle, the device itself
    (or its driver, a device-mapper target) is not completing I/O: check its errors.
    """
    found = [
        (s, fn)
        for s in stuck_tasks(ctx)
        if not _is_runtime(s.comm)
        and (fn := _match(s, BLOCK_IO + FSYNC_PATH, ("io-wait", "fsync")))
        and not _match(s, OVL_SYNC)
        and s.hint not in _OTHER_SUBSYSTEMS
    ]
    if not found:
        return
    s0, fn0 = found[0]
    w0 = s0.where
    what = w0.describe() if w0 is not None and w0.function == fn0 else fn0
    yield _stuck_hit(
        found,
        f"{len(found)} task(s) hung on block I/O, e.g. {s0.describe()} in {what}",
        0.35 + min(0.15, 0.05 * (len(found) - 1)),
        "waiting for the disk",
        ("io-wait",),
    )


@rule(
    "PD604",
    "hung-task-netdev-teardown",
    title="Tasks hang in network device teardown (rtnl_lock / netdev_run_todo)",
    severity=Severity.CRITICAL,
    cls=C.KERNEL_D_STATE,
    fix=(
        "A network namespace or device cannot be released (dmesg: `unregister_netdevice: waiting for <dev> "
        "to become free. Usage count = N`) and everything needing rtnl_lock waits: sandbox teardown, CNI, "
        "runc. Upgrade the kernel (many refcount leaks were fixed) and the CNI plugin; the node usually "
        "needs a reboot."
    ),
    references=(
        "https://github.com/moby/moby/issues/5618",
        "https://github.com/kubernetes/kubernetes/issues/70427",
    ),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
)
def hung_task_netdev_teardown(ctx: RuleContext) -> Iterator[Hit]:
    """Detects hung-task traces or D-state stacks in network device or namespace teardown:
    `rtnl_lock`, `netdev_run_todo`, `unregister_netdevice`, `cleanup_net`, `copy_net_ns`.

    Why it matters: a leaked reference on a device in a dying network namespace makes
    `netdev_run_todo` wait forever while holding or wanting `rtnl_lock`; runc, CNI plugins
    and the shim block in D state when they create or delete pod network namespaces, and the
    runtime calls above them never return.

    Example evidence::

        unregister_netdevice: waiting for eth0 to become free. Usage count = 1
        INFO: task runc:[2:INIT]:8812 blocked for more than 120 seconds.
         rtnl_lock+0x15/0x20
         copy_net_ns+0x...

    Fix: kernel/CNI upgrade; reboot the node.
    """
    yield from _stuck_in_subsystem(ctx, NETDEV, "network device teardown", "netdev")


@rule(
    "PD605",
    "hung-task-cgroup",
    title="Tasks hang on cgroup operations (cgroup_mutex, freezer, rmdir)",
    severity=Severity.CRITICAL,
    cls=C.KERNEL_D_STATE,
    fix=(
        "A cgroup operation is stuck in the kernel (cgroup_mutex held, a frozen cgroup, memcg offlining). "
        "Find the holder in the hung-task traces (echo w > /proc/sysrq-trigger), thaw frozen cgroups, "
        "upgrade the kernel; the node may need a reboot."
    ),
    references=("https://github.com/opencontainers/runc/issues/3904", HUNG_TASK_DOC),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
)
def hung_task_cgroup(ctx: RuleContext) -> Iterator[Hit]:
    """Detects hung-task traces or D-state stacks in cgroup code: `cgroup_mutex`,
    `cgroup_kn_lock_live`, `cgroup_rmdir`/`cgroup_mkdir`, `__cgroup_procs_write`, the freezer,
    `percpu_down_write` on the threadgroup rwsem, memcg offlining.

    Why it matters: runc and the shim create, move tasks into and remove cgroups for every
    container start and stop; when the cgroup core is stuck they block in D state and the
    runtime calls above them (and the locks those hold) never return.

    Example evidence::

        INFO: task runc:9931 blocked for more than 241 seconds.
         __mutex_lock.constprop.0+0x...
         cgroup_kn_lock_live+0x4d/0xe0
         cgroup_rmdir+0x15/0x40

    Fix: kernel upgrade, thaw frozen cgroups; reboot.
    """
    yield from _stuck_in_subsystem(ctx, CGROUP, "cgroup code", "cgroup")


_KNOWN = OVL_SYNC + SYNC_FS + FSYNC_PATH + BLOCK_IO + NETDEV + CGROUP
# hints a more specific rule covers (PD601-PD605, PD607, PD608, PD311)
_COVERED_HINTS = ("io-wait", "fsync", "syncfs", "nfs", "netdev", "cgroup", "freezer", "srcu")
_NETFS = ("nfs_", "nfs4_", "rpc_wait", "__rpc_", "cifs_", "smb2_", "ceph_", "fuse_")


@rule(
    "PD606",
    "runtime-task-d-state",
    title="Runtime processes are stuck in D state in the kernel",
    severity=Severity.WARNING,
    cls=C.KERNEL_D_STATE,
    fix=(
        "Read the stuck tasks' kernel stacks (cat /proc/<pid>/stack; echo w > /proc/sysrq-trigger then dmesg) "
        "to see what they wait for; search the top kernel frames in the kernel's and your distribution's bug "
        "trackers."
    ),
    references=(HUNG_TASK_DOC,),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
)
def runtime_task_d_state(ctx: RuleContext) -> Iterator[Hit]:
    """Detects runtime processes (containerd, shim, runc, kubelet, dockerd) in D state or in a
    hung-task trace whose kernel stack matches none of the specific signatures (overlay
    sync, fsync, block I/O, netdev, cgroup, network filesystems).

    Why it matters: a task in uninterruptible sleep cannot be interrupted or killed; if it is
    the runtime or a process the runtime waits for, the CRI call above it hangs.

    Where the task waits is its first kernel frame that is not a scheduler or generic wait
    helper (`__schedule`, `schedule_timeout`, `__wait_for_common`, `rwsem_down_*`,
    `mutex_lock`...), as the kernel's own wchan is computed.

    Example evidence: `ps -eo pid,stat,wchan:32,comm` showing `containerd-shim  D
    some_kernel_function`, or `INFO: task containerd:...` with an unfamiliar stack.

    Fix: read the kernel stack; it names the subsystem.
    """
    found = [
        s
        for s in stuck_tasks(ctx)
        if _is_runtime(s.comm)
        and not _match(s, _KNOWN)
        and not _match(s, _NETFS)
        and s.hint not in _COVERED_HINTS
        and (s.stack or s.wchan)
    ]
    if not found:
        return
    s0 = found[0]
    yield step_hit(
        f"{s0.describe()} in {s0.where_text}{_more(found, 'more runtime task(s)')}",
        0.4 + (0.05 if s0.source == "hung-task" else 0.0),
        *(link("kernel", "kernel", f"{s.describe()} in {s.where_text}", s.refs(), pid=s.pid) for s in found[:2]),
        evidence=(r for s in found[:4] for r in s.refs()),
    )


@rule(
    "PD607",
    "runtime-task-frozen",
    title="A runtime process is frozen in the kernel (cgroup freezer)",
    severity=Severity.CRITICAL,
    cls=C.RUNTIME_FROZEN,
    fix=(
        "Thaw the cgroup the runtime process is in (cgroup v2: echo 0 > <cgroup>/cgroup.freeze; v1: echo "
        "THAWED > <cgroup>/freezer.state) and find who froze it (a `runc pause`/`ctr task pause` left behind, "
        "a backup or checkpoint agent, a systemd unit freeze); never run containerd or the shim inside a "
        "cgroup a tool may freeze."
    ),
    references=("https://docs.kernel.org/admin-guide/cgroup-v2.html#core-interface-files", HUNG_TASK_DOC),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
)
def runtime_task_frozen(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a runtime process (containerd, shim, runc, kubelet, dockerd, CRI-O) whose kernel
    stack waits in the freezer (`__refrigerator`, `do_freezer_trap`): a hung-task report, a
    sysrq-w dump or /proc/<pid>/stack.

    Why it matters: a frozen task does not run at all until its cgroup is thawed. A frozen
    shim never answers containerd's ttrpc calls; a frozen containerd never answers the
    kubelet; the relist then waits for its whole timeout every time. Frozen *workload*
    tasks are normal (a paused container) and do not fire this rule.

    Example evidence (/proc/<pid>/stack of the shim)::

        # pid=3658 comm=containerd-shim state=D
        [<0>] __refrigerator+0x4c/0x130
        [<0>] get_signal+0x7d7/0x8a0
        [<0>] arch_do_signal_or_restart+0x2e/0x260

    Fix: thaw the cgroup; find and stop what froze it.
    """
    found = [(s, fn) for s in stuck_tasks(ctx) if _is_runtime(s.comm) and (fn := _match(s, (), ("freezer",)))]
    if not found:
        return
    s0, fn0 = found[0]
    yield _stuck_hit(
        found,
        f"{s0.describe()} is frozen ({fn0}){_more(found, 'more runtime task(s)')}",
        0.65 + (0.05 if len(found) > 1 else 0.0),
        "frozen by the cgroup freezer",
        ("frozen",),
    )


@rule(
    "PD608",
    "hung-task-rcu-grace-period",
    title="Tasks hang waiting for an RCU/SRCU grace period",
    severity=Severity.WARNING,
    cls=C.KERNEL_D_STATE,
    fix=(
        "An RCU or SRCU grace period does not end: a CPU or a reader is stuck (look for `rcu_sched "
        "detected stalls` / `rcu: INFO:` and soft-lockup messages in dmesg, and for the task holding the SRCU "
        "read side). Upgrade the kernel; the node usually needs a reboot."
    ),
    references=("https://docs.kernel.org/RCU/stallwarn.html", HUNG_TASK_DOC),
    role="cause",
    reads=("events", "hung_tasks", "tasks"),
    proof="kernel",
)
def hung_task_rcu_grace_period(ctx: RuleContext) -> Iterator[Hit]:
    """Detects hung-task traces or D-state stacks whose wait is an RCU or SRCU grace period:
    `__synchronize_srcu`, `synchronize_srcu`, `synchronize_rcu`, `rcu_barrier` (after the
    scheduler and completion helpers `schedule_timeout`, `wait_for_completion`,
    `__wait_rcu_gp`).

    Why it matters: network namespace teardown, mount and cgroup operations, and KVM wait
    for a grace period; when one never ends (a stalled CPU, a reader that never leaves its
    SRCU section) runc, the shim and CNI plugins block in D state inside those operations
    and the CRI calls above them hang. A runtime process among the tasks weighs more.

    Example evidence::

        INFO: task exe:1990875 blocked for more than 120 seconds.
         schedule_timeout+0x1e6/0x330
         wait_for_completion+0x10a/0x170
         __wait_rcu_gp+0x117/0x140
         synchronize_rcu+0x6f/0x80

    Fix: find the stalled CPU or reader (RCU stall warnings); kernel upgrade; reboot.
    """
    found = [(s, fn) for s in stuck_tasks(ctx) if (fn := _match(s, (), ("srcu",)))]
    if not found:
        return
    s0, fn0 = found[0]
    runtime = any(_is_runtime(s.comm) for s, _ in found)
    yield _stuck_hit(
        found,
        f"{s0.describe()} waits for a grace period ({fn0}){_more(found, 'more task(s)')}",
        0.45 + (0.1 if runtime else 0.0),
        "waiting for an RCU/SRCU grace period",
        ("rcu",),
    )


@rule(
    "PD609",
    "cpu-lockup",
    title="The kernel's watchdog reports a CPU locked up (soft/hard lockup, RCU stall)",
    severity=Severity.CRITICAL,
    cls=C.KERNEL_D_STATE,
    fix=(
        "A CPU is held in the kernel: read the full report (RIP, Call Trace, the task named in brackets) to find "
        "the code path; check the kernel version against known fixes for it (e.g. the EKS 4.14 soft lockups "
        "fixed in 4.14.198-152.320); the node usually needs a reboot. Meanwhile every process that needs that "
        "CPU or the lock it holds, the kubelet and the runtime included, stalls."
    ),
    references=(
        "https://docs.kernel.org/admin-guide/lockup-watchdogs.html",
        "https://docs.kernel.org/RCU/stallwarn.html",
        "https://github.com/awslabs/amazon-eks-ami/issues/454",
    ),
    role="cause",
    reads=("events",),
    proof="kernel",
)
def cpu_lockup(ctx: RuleContext) -> Iterator[Hit]:
    """Detects the kernel watchdog's `BUG: soft lockup - CPU#5 stuck for 23s! [kworker/u16:2:62]`,
    `Watchdog detected hard LOCKUP on cpu N` and `rcu: INFO: rcu_sched detected stalls`.

    Why it matters: a soft lockup is a CPU that has not scheduled for 20+ seconds because
    kernel code loops or spins on a lock; everything that waits for that lock or CPU, the
    kubelet's relist and the runtime's calls included, waits too, and from user space it
    looks like a node that stops answering with no cause in any log but the kernel's.
    Repeated reports weigh more than one.

    Example evidence::

        [  288.053638] watchdog: BUG: soft lockup - CPU#5 stuck for 23s! [kworker/u16:2:62]

    Fix: the kernel path in the report; a kernel upgrade; reboot.
    """
    evs = all_events(ctx, EventKind.CPU_LOCKUP)
    if not evs:
        return
    e0 = evs[0]
    a = e0.attrs
    what = str(a.get("what", "lockup"))
    who = f" in {a['comm']}:{a['pid']}" if a.get("comm") else ""
    cpu = f" CPU#{a['cpu']}" if a.get("cpu") is not None else ""
    secs = f" for {a['seconds']} s" if a.get("seconds") else ""
    detail = f"kernel {what}:{cpu} stuck{secs}{who}" + (f" ({len(evs)} reports)" if len(evs) > 1 else "")
    yield step_hit(
        detail,
        0.45 + (0.1 if len(evs) > 1 else 0.0),
        link("kernel", "kernel", detail, tuple(e.ref for e in evs[:3]), tags=("kernel-lockup",)),
        evidence=tuple(e.ref for e in evs[:4]),
    )
