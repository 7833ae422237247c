"""PD6xx: kernel evidence (hung-task traces, task states and kernel stacks).

Where a stuck task waits is named by plegdoctor.kernelnames (the first frame that is not a
scheduler or generic wait helper, with its class hint: io-wait, fsync, syncfs, nfs, freezer,
srcu, netdev, cgroup); the rules below match those hints and their own signature frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from plegdoctor.kernelnames import KernelWait, waits_in
from plegdoctor.knowledge import ISSUE_9770
from plegdoctor.model import EventKind, Ref, RootCauseClass, Severity
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import fmt_seconds, kernel_stack_has, link, step_hit

C = RootCauseClass
ISSUE_5325 = "https://github.com/containerd/containerd/issues/5325"
ISSUE_6406 = "https://github.com/containerd/containerd/issues/6406"
HUNG_TASK_DOC = "https://docs.kernel.org/admin-guide/sysctl/kernel.html#hung-task-timeout-secs"

RUNTIME_COMMS = (
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "dockerd",
    "kubelet",
    "runc",
    "crun",
    "conmon",
    "crio",
)

OVL_SYNC = ("ovl_sync_fs",)
UMOUNT_PATH = ("deactivate_locked_super", "cleanup_mnt", "generic_shutdown_super", "ksys_umount", "path_umount")
SYNC_FS = ("sync_filesystem",)
FSYNC_PATH = (
    "jbd2_log_wait_commit",
    "jbd2_complete_transaction",
    "ext4_sync_file",
    "xfs_file_fsync",
    "xfs_log_force",
    "btrfs_sync_file",
    "file_write_and_wait_range",
    "filemap_write_and_wait_range",
    "__filemap_fdatawait_range",
    "filemap_fdatawait",
    "do_fsync",
    "__x64_sys_fsync",
    "__x64_sys_fdatasync",
    "wb_wait_for_completion",
    "sync_inodes_sb",
)
BLOCK_IO = (
    "xfs_buf_iowait",
    "xfs_buf_lock",
    "submit_bio_wait",
    "dm_wait_for_completion",
    "folio_wait_writeback",
    "wait_on_page_writeback",
    "io_schedule",
    "blk_mq_get_tag",
    "wait_on_page_bit",
    "folio_wait_bit",
    "__lock_page",
    "balance_dirty_pages",
    "wait_on_buffer",
    "__wait_on_buffer",
    "bit_wait_io",
)
NETDEV = (
    "netdev_run_todo",
    "unregister_netdevice",
    "rtnl_lock",
    "rtnetlink_rcv_msg",
    "cleanup_net",
    "copy_net_ns",
    "default_device_exit",
    "ops_exit_list",
    "tun_chr_close",
    "veth_dellink",
    "__dev_change_net_namespace",
)
CGROUP = (
    "cgroup_mutex",
    "cgroup_kn_lock_live",
    "cgroup_rmdir",
    "cgroup_mkdir",
    "cgroup_procs_write",
    "__cgroup_procs_write",
    "cgroup_attach_task",
    "cgroup_freeze",
    "cgroup_update_frozen",
    "freezer_write",
    "freezer_change_state",
    "mem_cgroup_css_offline",
    "css_killed_work_fn",
    "cgroup_destroy_locked",
    "percpu_down_write",
    "cgroup_threadgroup_change_begin",
    "proc_cgroup_show",
)


# hints PD603 leaves to their own rules even when an I/O frame is also on the stack
_OTHER_SUBSYSTEMS = ("nfs", "netdev", "cgroup", "freezer", "srcu", "syncfs")


@dataclass(frozen=True, slots=True)
class Stuck:
    """A kernel-side stuck task from either a hung-task trace or a task sample."""

    comm: str
    pid: int
    seconds: int | None
    stack: tuple[str, ...]
    wchan: str | None
    ref: Ref
    source: str  # hung-task | task
    workqueue: str | None = None  # `Workqueue: writeback wb_workfn (flush-254:1)` of a kworker
    frame_refs: tuple[Ref, ...] = ()  # the trace's frame lines, innermost first (hung-task reports)

    def describe(self) -> str:
        how = f"blocked {fmt_seconds(self.seconds)}" if self.seconds else "in D state"
        who = f"{self.comm}:{self.pid}"
        if self.workqueue:
            who += f" ({self.workqueue.split(' (', 1)[0]} worker)"
        return f"{who} {how}"

    @property
    def where(self) -> KernelWait | None:
        """Where the task waits (kernelnames: first non-helper frame and its class hint)."""
        w = waits_in(self.stack)
        if w is None and self.wchan:
            w = waits_in((self.wchan,))
        return w

    @property
    def hint(self) -> str | None:
        w = self.where
        return w.hint if w is not None else None

    @property
    def top_frame(self) -> str:
        """Where the task waits: the first meaningful kernel function (scheduler and wait
        helpers skipped), else the wait channel, else the innermost frame."""
        w = self.where
        if w is not None:
            return w.function
        return self.wchan or (self.stack[0].split("+", 1)[0] if self.stack else "?")

    def refs(self) -> tuple[Ref, ...]:
        """The task's line, and the frame line where it waits when the trace has one."""
        w = self.where
        if w is not None and w.at < len(self.frame_refs):
            return (self.ref, self.frame_refs[w.at])
        return (self.ref,)

    @property
    def where_text(self) -> str:
        w = self.where
        return w.describe() if w is not None else self.top_frame


def stuck_tasks(ctx: RuleContext) -> list[Stuck]:
    def compute() -> list[Stuck]:
        workqueues = {
            (e.ref.path, e.ref.line): str(e.attrs["workqueue"])
            for e in ctx.evidence.events
            if e.kind == EventKind.HUNG_TASK and e.attrs.get("workqueue")
        }
        out = [
            Stuck(
                h.comm,
                h.pid,
                h.seconds,
                h.kernel_stack,
                None,
                h.ref,
                "hung-task",
                workqueues.get((h.ref.path, h.ref.line)),
                h.stack_refs,
            )
            for h in ctx.evidence.hung_tasks
        ]
        for t in ctx.evidence.tasks:
            if t.state.startswith("D"):
                out.append(Stuck(t.comm, t.pid, None, t.kernel_stack, t.wchan, t.ref, "task"))
        return out

    return ctx.memo("stuck_tasks", compute)  # type: ignore[no-any-return]


def _match(s: Stuck, names: tuple[str, ...], hints: tuple[str, ...] = ()) -> str | None:
    """The function by which a stuck task matches a signature: a frame of `names`, its wait
    channel, or where it waits when that has one of the class `hints`."""
    if hints:
        w = s.where
        if w is not None and w.hint in hints:
            return w.function
    fn = kernel_stack_has(s.stack, *names)
    if fn:
        return fn
    if s.wchan and s.wchan.startswith(names):
        return s.wchan
    return None


def _is_runtime(comm: str) -> bool:
    return comm.startswith(RUNTIME_COMMS) or comm.startswith("containerd")


def _stuck_hit(
    found: list[tuple[Stuck, str]], title: str, weight: float, what: str, tags: tuple[str, ...], **extra: Any
) -> Hit:
    """A hit for stuck tasks (each with the kernel function it matched): the first four as
    evidence, the first two as chain steps "<task> <what> (<function>)"."""
    steps = (
        link("kernel", "kernel", f"{s.describe()} {what} ({fn})", s.refs(), tags=tags, pid=s.pid, function=fn)
        for s, fn in found[:2]
    )
    return step_hit(title, weight, *steps, evidence=(r for s, _ in found[:4] for r in s.refs()), **extra)


def _more(found: list[Any], what: str = "more") -> str:
    return f", {len(found) - 1} {what}" if len(found) > 1 else ""


def _stuck_in_subsystem(ctx: RuleContext, names: tuple[str, ...], where: str, tag: str) -> Iterator[Hit]:
    """Tasks stuck in one kernel subsystem (any task: runc, CNI plugins and the shim all
    block there); a runtime process among them weighs a little more."""
    found = [(s, fn) for s in stuck_tasks(ctx) if (fn := _match(s, names))]
    if not found:
        return
    s0, fn0 = found[0]
    yield _stuck_hit(
        found,
        f"{s0.describe()} in {where} ({fn0}){_more(found)}",
        0.6 + (0.05 if any(_is_runtime(s.comm) for s, _ in found) else 0.0),
        f"waiting in {where}",
        (tag,),
    )


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
    evs = [e for e in ctx.evidence.events if e.kind == EventKind.CPU_LOCKUP]
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
