"""Kernel stuck-task readers: the kernel function tables of each subsystem and matching hung tasks to them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from plegdoctor.kernelnames import KernelWait, waits_in
from plegdoctor.model import EventKind, Ref, RootCauseClass
from plegdoctor.rules.registry import Hit, RuleContext
from plegdoctor.rules.signals import all_events, fmt_seconds, kernel_stack_has, link, step_hit

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


class Stuck(msgspec.Struct, frozen=True):
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
            for e in all_events(ctx, EventKind.HUNG_TASK)
            if e.attrs.get("workqueue")
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
