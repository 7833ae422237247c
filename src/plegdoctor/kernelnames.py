"""Kernel function names -> what a blocked task waits for (one table, used by the kernel-log
and /proc/<pid>/stack parsers and by the kernel and storage rules).

A kernel stack of a blocked task starts with scheduler and generic wait helpers
(`__schedule`, `schedule`, `schedule_timeout`, `io_schedule`, `__wait_for_common`,
`rwsem_down_read_slowpath`, `__mutex_lock`, ...). They say *that* the task sleeps, not
*where*. The kernel's own `wchan` skips them the same way (`get_wchan` skips functions in
the `.sched.text` section, where all of these live), so `waits_in()` names the first frame
that is not one of them: `xfs_buf_iowait`, `rpc_wait_bit_killable`, `__refrigerator`, ...

`KERNEL_WAITS` maps meaningful functions (exact names, or prefixes ending in `_` or `*`) to
a class hint and a sentence. Class hints:

- `io-wait`: block I/O does not complete (the disk or its queue);
- `fsync`: a file or journal flush (ext4/jbd2, xfs log force, fdatawait);
- `syncfs`: a whole-filesystem flush (syncfs, umount, overlay sync);
- `nfs`: a network filesystem (NFS/SUNRPC, CIFS/SMB, Ceph, 9p, FUSE);
- `freezer`: the task is frozen (cgroup freezer);
- `srcu`: an RCU or SRCU grace period does not end;
- `netdev`: network device/namespace teardown or the RTNL lock;
- `cgroup`: the cgroup core (cgroup_mutex, rmdir, attach, threadgroup rwsem).

Names are compared without offsets (`+0x1f/0xa0`), module tags (`[xfs]`) and compiler
suffixes (`.isra.0`, `.constprop.0`, `.cold`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

# Scheduler and generic wait helpers: skipped when naming where a task waits. Exact names,
# and prefixes where they end in `*`.
WAIT_HELPERS: tuple[str, ...] = (
    "__schedule",
    "schedule",
    "schedule_timeout",
    "schedule_timeout_*",
    "schedule_preempt_disabled",
    "schedule_hrtimeout*",
    "io_schedule",
    "io_schedule_timeout",
    "preempt_schedule*",
    "_cond_resched",
    "__cond_resched",
    "__switch_to",
    "__switch_to_asm",
    "context_switch",
    "__wait_for_common",
    "wait_for_common",
    "wait_for_common_io",
    "do_wait_for_common",
    "wait_for_completion*",
    "__wait_on_bit*",
    "out_of_line_wait_on_bit*",
    "bit_wait",
    "bit_wait_io",
    "bit_wait_timeout",
    "wait_woken",
    "prepare_to_wait*",
    "finish_wait",
    "autoremove_wake_function",
    "rwsem_down_*",
    "__rwsem_down_*",
    "call_rwsem_down_*",
    "down_read*",
    "down_write*",
    "__down*",
    "down",
    "down_killable",
    "down_interruptible",
    "down_timeout",
    "mutex_lock*",
    "__mutex_lock*",
    "__mutex_lock_slowpath",
    "__mutex_lock_killable_slowpath",
    "__mutex_lock_interruptible_slowpath",
    "rt_mutex_slowlock*",
    "__rt_mutex_slowlock*",
    "percpu_rwsem_wait",
    "__percpu_down_read",
    "percpu_down_write",
    "usleep_range*",
    "msleep",
    "msleep_interruptible",
    "do_nanosleep",
    "hrtimer_nanosleep",
    "ret_from_fork",
    "kthread",
    "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64",
)

# The meaningful functions: (name or prefix ending in `_`/`*`, class hint, meaning).
# Order matters: the first entry that matches a frame wins; specific names come first.
KERNEL_WAITS: tuple[tuple[str, str, str], ...] = (
    # frozen tasks
    ("__refrigerator", "freezer", "frozen by the cgroup freezer (or system suspend)"),
    ("do_freezer_trap", "freezer", "frozen by the cgroup v2 freezer"),
    ("try_to_freeze*", "freezer", "frozen by the cgroup freezer"),
    ("freezer_write", "cgroup", "writing a cgroup v1 freezer.state"),
    ("freezer_change_state", "cgroup", "changing a cgroup v1 freezer state"),
    ("cgroup_freeze*", "cgroup", "freezing a cgroup v2"),
    # RCU / SRCU
    ("__synchronize_srcu", "srcu", "waiting for an SRCU grace period"),
    ("synchronize_srcu*", "srcu", "waiting for an SRCU grace period"),
    ("synchronize_rcu*", "srcu", "waiting for an RCU grace period"),
    ("synchronize_sched*", "srcu", "waiting for an RCU-sched grace period"),
    ("rcu_barrier*", "srcu", "waiting for pending RCU callbacks"),
    ("wait_rcu_gp", "srcu", "waiting for an RCU grace period"),
    # network filesystems
    ("rpc_wait_bit_killable", "nfs", "waiting for an NFS/SUNRPC reply from the server"),
    ("__rpc_execute", "nfs", "running an NFS/SUNRPC call"),
    ("rpc_execute", "nfs", "running an NFS/SUNRPC call"),
    ("rpc_*", "nfs", "in SUNRPC (NFS transport)"),
    ("__rpc_*", "nfs", "in SUNRPC (NFS transport)"),
    ("nfs_wait_bit_killable", "nfs", "waiting for an NFS page or inode operation"),
    ("nfs4_*", "nfs", "in NFSv4 client code"),
    ("nfs_*", "nfs", "in NFS client code"),
    ("_nfs4_*", "nfs", "in NFSv4 client code"),
    ("cifs_*", "nfs", "in CIFS/SMB client code"),
    ("smb2_*", "nfs", "in CIFS/SMB client code"),
    ("wait_for_response", "nfs", "waiting for a CIFS/SMB server reply"),
    ("ceph_*", "nfs", "in CephFS client code"),
    ("p9_*", "nfs", "in 9p client code"),
    ("request_wait_answer", "nfs", "waiting for a FUSE daemon's answer"),
    ("fuse_*", "nfs", "in FUSE (a userspace filesystem daemon)"),
    # whole-filesystem flushes
    ("ovl_sync_fs", "syncfs", "overlayfs syncing its upper filesystem (umount/syncfs)"),
    ("wb_wait_for_completion", "syncfs", "waiting for writeback of a whole filesystem (syncfs, umount flush)"),
    ("sync_inodes_sb", "syncfs", "writing back every inode of a filesystem (syncfs, umount flush)"),
    ("sync_filesystem", "syncfs", "syncing a whole filesystem"),
    ("writeback_inodes_sb*", "syncfs", "writing back a filesystem's inodes"),
    # file and journal flushes
    ("jbd2_log_wait_commit", "fsync", "waiting for an ext4 journal commit (fsync)"),
    ("jbd2_complete_transaction", "fsync", "waiting for an ext4 journal transaction (fsync)"),
    ("jbd2__journal_start", "fsync", "waiting to start an ext4 journal handle"),
    ("wait_transaction_locked", "fsync", "waiting for a locked ext4 journal transaction"),
    ("add_transaction_credits", "fsync", "waiting for ext4 journal space"),
    ("jbd2_*", "fsync", "in the ext4 journal (jbd2)"),
    ("xfs_log_force*", "fsync", "forcing the XFS log to disk (fsync)"),
    ("xlog_wait*", "fsync", "waiting for XFS log I/O"),
    ("xlog_*", "fsync", "in the XFS log"),
    ("xfs_file_fsync", "fsync", "XFS fsync"),
    ("ext4_sync_file", "fsync", "ext4 fsync"),
    ("btrfs_sync_file", "fsync", "btrfs fsync"),
    ("file_write_and_wait_range", "fsync", "writing and waiting for a file's dirty pages"),
    ("filemap_write_and_wait*", "fsync", "writing and waiting for a file's dirty pages"),
    ("__filemap_fdatawait_range", "fsync", "waiting for a file's pages under writeback"),
    ("filemap_fdatawait*", "fsync", "waiting for a file's pages under writeback"),
    ("do_fsync", "fsync", "fsync/fdatasync"),
    # block I/O
    ("xfs_buf_iowait", "io-wait", "XFS metadata buffer I/O not completing"),
    ("xfs_buf_lock", "io-wait", "waiting for an XFS metadata buffer (held across its I/O)"),
    ("xfs_buf_*", "io-wait", "reading or writing XFS metadata buffers"),
    ("_xfs_buf_*", "io-wait", "reading or writing XFS metadata buffers"),
    ("blk_mq_get_tag", "io-wait", "no free request tag on the block device queue (queue full)"),
    ("blk_mq_*", "io-wait", "in the block layer"),
    ("submit_bio_wait", "io-wait", "waiting for a block I/O to complete"),
    ("balance_dirty_pages*", "io-wait", "throttled by the dirty-page limits (writeback too slow)"),
    ("wait_on_page_bit*", "io-wait", "waiting for a page under I/O"),
    ("wait_on_page_writeback", "io-wait", "waiting for a page under writeback"),
    ("folio_wait_bit*", "io-wait", "waiting for a page (folio) under I/O"),
    ("folio_wait_writeback", "io-wait", "waiting for a page (folio) under writeback"),
    ("__folio_lock*", "io-wait", "waiting for a locked page (folio), usually under I/O"),
    ("__lock_page*", "io-wait", "waiting for a locked page, usually under I/O"),
    ("__wait_on_buffer", "io-wait", "waiting for a buffer head under I/O"),
    ("wait_on_buffer", "io-wait", "waiting for a buffer head under I/O"),
    ("__bread_gfp", "io-wait", "reading a metadata block"),
    ("dm_wait_for_completion", "io-wait", "device-mapper waiting for in-flight I/O"),
    ("wb_workfn", "io-wait", "writeback worker"),
    # network devices and namespaces
    ("netdev_wait_allrefs*", "netdev", "waiting for a network device's references to drop (unregister_netdevice)"),
    ("netdev_run_todo", "netdev", "finishing network device unregistration"),
    ("rtnl_lock*", "netdev", "waiting for the RTNL lock (network configuration)"),
    ("rtnetlink_rcv_msg", "netdev", "handling an rtnetlink request (RTNL)"),
    ("unregister_netdevice*", "netdev", "unregistering a network device"),
    ("cleanup_net", "netdev", "tearing down a network namespace"),
    ("copy_net_ns", "netdev", "creating a network namespace"),
    ("default_device_exit*", "netdev", "moving devices out of a dying network namespace"),
    ("tun_chr_close", "netdev", "closing a tun/tap device"),
    ("veth_dellink", "netdev", "deleting a veth pair"),
    # cgroup core
    ("cgroup_kn_lock_live", "cgroup", "waiting for cgroup_mutex"),
    ("cgroup_lock", "cgroup", "waiting for cgroup_mutex"),
    ("cgroup_rmdir", "cgroup", "removing a cgroup"),
    ("cgroup_mkdir", "cgroup", "creating a cgroup"),
    ("cgroup_procs_write", "cgroup", "moving a task into a cgroup"),
    ("__cgroup_procs_write", "cgroup", "moving a task into a cgroup"),
    ("cgroup_attach_task", "cgroup", "moving a task into a cgroup"),
    ("cgroup_threadgroup_change_begin", "cgroup", "waiting for the cgroup threadgroup rwsem"),
    ("cgroup_destroy_locked", "cgroup", "destroying a cgroup"),
    ("css_killed_work_fn", "cgroup", "offlining a cgroup"),
    ("mem_cgroup_css_offline", "cgroup", "offlining a memory cgroup"),
    ("cgroup_*", "cgroup", "in the cgroup core"),
    ("__cgroup_*", "cgroup", "in the cgroup core"),
    ("proc_cgroup_show", "cgroup", "reading /proc/<pid>/cgroup (cgroup_mutex)"),
)

CLASS_HINTS = ("io-wait", "fsync", "syncfs", "nfs", "freezer", "srcu", "netdev", "cgroup")


class KernelWait(NamedTuple):
    """Where a kernel stack waits: the first meaningful frame (index and name) and, when the
    table knows it or one of the next frames, the class hint, its meaning and the function
    that gave them (`known`)."""

    at: int  # index of the frame in the stack
    function: str
    hint: str | None
    meaning: str
    known: str | None = None

    def describe(self) -> str:
        """`xfs_buf_iowait (XFS metadata buffer I/O not completing)`."""
        if not self.meaning:
            return self.function
        via = f" via {self.known}" if self.known and self.known != self.function else ""
        return f"{self.function} ({self.meaning}{via})"


def bare(frame: str) -> str:
    """`? xfs_buf_iowait.isra.0+0x1f/0xa0 [xfs]` -> `xfs_buf_iowait`."""
    name = frame.strip()
    if name.startswith("? "):
        name = name[2:].lstrip()
    if name.startswith("[<"):
        end = name.find("]")
        name = name[end + 1 :].lstrip() if end >= 0 else name
    cut = len(name)
    for sep in ("+", " ", "."):
        i = name.find(sep)
        if 0 < i < cut:
            cut = i
    return name[:cut]


def _matches(name: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    if pattern.endswith("_") and len(pattern) > 1:
        return name.startswith(pattern)
    return name == pattern


def is_wait_helper(frame: str) -> bool:
    """True for scheduler and generic wait frames (`schedule`, `io_schedule`, `mutex_lock`...)."""
    name = bare(frame)
    return any(_matches(name, p) for p in WAIT_HELPERS)


def lookup(frame: str) -> tuple[str, str] | None:
    """(class hint, meaning) of a kernel function, or None when the table does not know it."""
    name = bare(frame)
    if not name:
        return None
    for pattern, hint, meaning in KERNEL_WAITS:
        if _matches(name, pattern):
            return hint, meaning
    return None


LOOK_AHEAD = 3  # frames after the first meaningful one searched for a known function


def waits_in(stack: Iterable[str], *, limit: int = 64) -> KernelWait | None:
    """Where a kernel stack (innermost first) waits: its first frame that is not a scheduler
    or generic wait helper, with the class hint of that frame or, when the table does not
    know it, of the first known frame among the next LOOK_AHEAD meaningful ones. None for an
    empty stack or one made only of helpers."""
    first: tuple[int, str] | None = None
    seen = 0
    for i, frame in enumerate(stack):
        if i >= limit:
            break
        name = bare(frame)
        if not name or is_wait_helper(name):
            continue
        if first is None:
            first = (i, name)
        known = lookup(name)
        if known is not None:
            return KernelWait(first[0], first[1], known[0], known[1], name)
        seen += 1
        if seen > LOOK_AHEAD:
            break
    if first is None:
        return None
    return KernelWait(first[0], first[1], None, "")


def hint_of(stack: Iterable[str]) -> str | None:
    """The class hint of where a kernel stack waits (None when unknown)."""
    w = waits_in(stack)
    return w.hint if w is not None else None


PS_WCHAN_WIDTH = 6  # `ps -l` prints WCHAN in 6 columns: `refrig` is `__refrigerator`


def expand_wchan(wchan: str) -> str:
    """A wait channel as `ps -l` truncates it, made whole when exactly one function of the
    table (leading underscores aside) starts with it: `refrig` -> `__refrigerator`. Any other
    value is returned as given."""
    w = wchan.strip()
    if len(w) != PS_WCHAN_WIDTH or lookup(w) is not None:
        return wchan
    matches = {
        pattern
        for pattern, _, _ in KERNEL_WAITS
        if not pattern.endswith(("*", "_")) and pattern.lstrip("_").startswith(w.lstrip("_"))
    }
    return matches.pop() if len(matches) == 1 else wchan
