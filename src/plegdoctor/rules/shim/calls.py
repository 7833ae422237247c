"""PD401-PD406: containerd waiting on shim calls (Delete, Update, State), the shim syncing on
umount, task deletes timing out after exit."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.knowledge import ISSUE_9770
from plegdoctor.model import RootCauseClass, Severity
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    chain_has,
    chain_has_any,
    chain_hit,
    chain_wait_minutes,
    during_stall,
    fmt_seconds,
    for_minutes,
    interval_refs,
    link,
    link_with,
    links_with,
    plural,
    step_hit,
    task_delete_failures,
    update_holds,
)

C = RootCauseClass
ISSUE_5325 = "https://github.com/containerd/containerd/issues/5325"
ISSUE_7496 = "https://github.com/containerd/containerd/issues/7496"
ISSUE_8931 = "https://github.com/containerd/containerd/issues/8931"
ISSUE_10583 = "https://github.com/containerd/containerd/issues/10583"
PR_8676 = "https://github.com/containerd/containerd/pull/8676"
PR_8954 = "https://github.com/containerd/containerd/pull/8954"
OVL_VOLATILE = "https://docs.kernel.org/filesystems/overlayfs.html#volatile-mount"

VOLATILE_REFS = (ISSUE_9770, ISSUE_5325, PR_8676, OVL_VOLATILE)


@rule(
    "PD401",
    "shim-umount-syncfs",
    title="The shim's task Delete is stuck unmounting the container rootfs (syncfs)",
    severity=Severity.CRITICAL,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix=(
        'Mount overlay snapshots volatile ([plugins."io.containerd.snapshotter.v1.overlayfs"] mount_options = '
        '["volatile"], containerd >= 1.6.24/1.7.4/2.0, kernel >= 5.10): unmount then skips the syncfs. It does '
        "not remove fsync waits elsewhere; lower dirty limits too."
    ),
    references=VOLATILE_REFS,
    role="cause",
    reads=("dumps", "versions"),
)
def shim_umount_syncfs(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a shim goroutine in the `umount2` system call while deleting a task:
    `(*Init).Delete` -> `(*Init).delete` -> `mount.UnmountAll`/`UnmountRecursive` ->
    `unix.Unmount` -> `syscall.Syscall(0xa6, ...)` in state `syscall`.

    Why it matters: unmounting a non-volatile overlay makes the kernel sync the upper
    filesystem (`ovl_sync_fs` <- `sync_filesystem`), which writes back every dirty page of the
    backing disk, including image layers being unpacked and other containers' writes. The
    shim holds its process mutex for the whole Delete, so containerd's `Update`/`State` calls
    to that shim wait too; CRI UpdateContainerResources waits under the container status
    lock, and ListContainers waits for that lock (containerd #9770).

    Example evidence (containerd-shim-runc-v2 dump)::

        goroutine 104 [syscall]:
        syscall.Syscall(0x7c?, ...)
        golang.org/x/sys/unix.Unmount(...)
        github.com/containerd/containerd/mount.UnmountAll(...)
        github.com/containerd/containerd/pkg/process.(*Init).delete(...)

    Fix: overlay `volatile` (version-aware: containerd >= 1.6.24 / 1.7.4 / 2.0, kernel >= 5.10).
    It removes this link only; fsyncs elsewhere still wait on writeback.
    """
    seen: set[tuple[str, int | None, int | None]] = set()
    for chain, lk in links_with(ctx, "umount", "syscall:umount2", "syscall:umount"):
        key = (lk.process, lk.pid, lk.goroutine)
        if key in seen:
            continue
        seen.add(key)
        minutes = lk.wait_minutes or 0
        weight = 0.7 + (0.05 if minutes >= 1 else 0.0) + (0.05 if chain.blocked else 0.0)
        if chain_has_any(chain, "nfs", "network-fs"):
            continue
        yield chain_hit(
            chain,
            f"{lk.process} goroutine {lk.goroutine} stuck in umount of a container rootfs"
            + for_minutes(minutes)
            + (f", {plural(chain.blocked, 'goroutine')} behind it" if chain.blocked else ""),
            weight,
            fix=fixes.volatile_fix(ctx.versions),
        )


@rule(
    "PD402",
    "containerd-waits-shim-delete",
    title="containerd waits for the shim to delete a task",
    severity=Severity.CRITICAL,
    cls=C.SHIM_HANG,
    fix=(
        "Dump the shim's goroutines to see what Delete waits for (kill -USR1 <shim pid>; the dump appears in "
        "containerd's log). If it is an umount, see PD401 (overlay volatile). Upgrade containerd to >= "
        "1.6.24/1.7.4/2.0 so a timed-out Delete does not leak the shim (#8954)."
    ),
    references=(ISSUE_9770, ISSUE_7496, ISSUE_8931, PR_8954),
    role="cause",
    reads=("dumps",),
)
def containerd_waits_shim_delete(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a containerd goroutine waiting for a shim ttrpc `Delete` call
    (`runtime/v2.(*shimTask).delete` -> `task.(*taskClient).Delete` -> `ttrpc.(*Client).dispatch`
    in `select`), typically from CRI TaskExit handling.

    Why it matters: the runc shim holds its per-process mutex for the whole Delete; other
    calls to the same shim (`Update` from UpdateContainerResources, `State`) queue behind
    it, and with them CRI calls holding container status locks.

    Example evidence::

        goroutine 1654 [select]:
        github.com/containerd/ttrpc.(*Client).dispatch(...)
        github.com/containerd/containerd/runtime/v2/task.(*taskClient).Delete(...)
        github.com/containerd/containerd/runtime/v2.(*shimTask).delete(...)
        github.com/containerd/containerd/pkg/cri/server.handleContainerExit(...)

    Fix: see what the shim does (shim dump); the usual answer is the rootfs umount (PD401).
    """
    for chain in ctx.chains:
        if not chain_has_any(chain, "shim:Delete", "ttrpc:containerd.task.v2.Task.Delete", "ttrpc:Task.Delete"):
            continue
        if chain_has_any(chain, "umount", "syscall:umount2"):
            continue  # the shim side is visible: PD401 carries it
        lk = link_with(chain, "shim:Delete", "ttrpc:")
        minutes = chain_wait_minutes(chain)
        yield chain_hit(
            chain,
            "containerd waits for a shim task Delete"
            + for_minutes(minutes)
            + (" (container exit handling)" if chain_has(chain, "task-exit") else ""),
            0.45 + (0.1 if minutes >= 1 else 0.0),
            facts={"detail": lk.detail if lk else None},
        )


@rule(
    "PD403",
    "task-delete-timeout-after-exit",
    title="Deleting an exited container's task timed out (containerd log)",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix=(
        "A task Delete after a container exit did not finish in containerd's 10 s event deadline; on a busy "
        "disk that is the shim unmounting the rootfs and syncing the backing filesystem. Mount overlay "
        "snapshots volatile (containerd >= 1.6.24/1.7.4/2.0, kernel >= 5.10) and lower dirty limits."
    ),
    references=(ISSUE_9770, ISSUE_7496, ISSUE_8931, PR_8954),
    role="cause",
    reads=("relists", "events", "versions"),
)
def task_delete_timeout_after_exit(ctx: RuleContext) -> Iterator[Hit]:
    """Detects containerd's `failed to handle container TaskExit event` (or a task delete
    failure) whose error is `failed to delete task: context deadline exceeded`.

    Why it matters: containerd gives each exit event 10 s; the task Delete goes to the shim,
    which unmounts the container's overlay rootfs. On a non-volatile overlay that unmount
    syncs the whole backing filesystem, so under write load it outlives the deadline; while
    it runs the shim's mutex is held and UpdateContainerResources/State calls to that shim
    wait, under the container's status lock (containerd #9770). Without a shim dump this
    log line is the strongest sign of the umount link.

    Example evidence::

        {"error":"failed to stop container: failed to delete task: context deadline exceeded: unknown",
         "level":"error","msg":"failed to handle container TaskExit event &TaskExit{ContainerID:8f71ea...}"}

    Fix: overlay `volatile` (version-aware), lower dirty limits; upgrade for the shim-leak fix
    (#8954) if older than 1.6.24 / 1.7.4.
    """
    evs = task_delete_failures(ctx, timeouts_only=True)
    if not evs:
        return
    inside = [e for e in evs if during_stall(ctx, e.ts, slack=30.0)]
    cids = sorted({str(e.attrs.get("container_id", ""))[:12] for e in evs} - {""})
    yield step_hit(
        f"task Delete timed out after container exit {plural(len(evs), 'time')}"
        + (" during the stall" if inside else ""),
        0.35 + (0.1 if inside else 0.0) + min(0.1, 0.02 * (len(evs) - 1)),
        link(
            "log",
            "containerd",
            "task Delete after container exit timed out"
            + (f" ({', '.join(cids[:3])})" if cids else "")
            + ": the shim did not finish deleting the task in 10 s (on a busy disk, usually its rootfs unmount)",
            tuple(e.ref for e in (inside or evs)[:2]),
            tags=("task-exit", "shim:Delete"),
        ),
        evidence=(e.ref for e in evs[:5]),
        fix=fixes.volatile_fix(ctx.versions),
    )


@rule(
    "PD404",
    "update-waits-shim",
    title="UpdateContainerResources waits for the shim's task Update under a status lock",
    severity=Severity.CRITICAL,
    cls=C.SHIM_HANG,
    fix=(
        "The shim does not answer Update because its process mutex is held (usually by a Delete in umount, "
        "see PD401) or the shim is stuck. Dump the shim (kill -USR1 <shim pid>)."
    ),
    references=(ISSUE_9770, ISSUE_10583),
    role="cause",
    reads=("dumps",),
)
def update_waits_shim(ctx: RuleContext) -> Iterator[Hit]:
    """Detects CRI UpdateContainerResources waiting in the shim's task `Update` ttrpc call
    (`runtime/v2.(*shimTask).Update` -> `ttrpc.(*Client).dispatch` [select]) while it holds the
    container's status write lock.

    Why it matters: the runc shim's `Init.Update` needs the process mutex that a running
    Delete holds; UpdateContainerResources then holds the status lock for as long as the
    Delete takes, and every ListContainers waits (containerd #9770, #10583).

    Example evidence: `goroutine 44180 [select, 5 minutes]: github.com/containerd/ttrpc.(*Client).dispatch`
    under `(*shimTask).Update` and `(*statusStorage).UpdateSync`.

    Fix: find what the shim is doing (shim dump); if it is an umount, overlay `volatile`.
    """
    for chain in ctx.chains:
        if not chain_has_any(chain, "shim:Update", "ttrpc:containerd.task.v2.Task.Update", "ttrpc:Task.Update"):
            continue
        if chain_has_any(chain, "umount", "syscall:umount2"):
            continue  # PD401
        minutes = chain_wait_minutes(chain)
        yield chain_hit(
            chain,
            "UpdateContainerResources waits for the shim's task Update"
            + for_minutes(minutes)
            + (", the shim's process mutex is held" if chain_has(chain, "shim-init-mutex") else ""),
            0.45 + (0.1 if minutes >= 1 else 0.0),
        )


@rule(
    "PD405",
    "update-held-across-exit-timeout",
    title="A long UpdateContainerResources overlaps a task Delete timeout (log-only umount signature)",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix=(
        "Mount overlay snapshots volatile (containerd >= 1.6.24/1.7.4/2.0, kernel >= 5.10) and lower dirty "
        "limits; confirm with a shim goroutine dump (umount2) or a hung-task trace in ovl_sync_fs."
    ),
    references=(ISSUE_9770, ISSUE_5325, PR_8676),
    role="cause",
    reads=("relists", "events", "versions"),
)
def update_held_across_exit_timeout(ctx: RuleContext) -> Iterator[Hit]:
    """Detects, from containerd's log alone, the seed incident's shape: an
    UpdateContainerResources that does not return for 10 s or more while a task Delete after a
    container exit times out.

    Why it matters: this is how containerd #9770 looks in the logs: the exited container's
    shim is unmounting its rootfs (syncfs of the whole disk), an UpdateContainerResources for
    a container of that shim waits for the shim's mutex under the status lock, and the relist
    waits for the status lock. Each line alone is weak; together they name the mechanism.

    Example evidence: `UpdateContainerResources for "8f71..."` at 05:48:07 with no return
    line, and `failed to handle container TaskExit event ... failed to delete task: context
    deadline exceeded` at 05:48:17.

    Fix: overlay `volatile` (version-aware), dirty limits.
    """
    exits = task_delete_failures(ctx, timeouts_only=True)
    if not exits:
        return
    for hold in update_holds(ctx):
        if hold.start is None or (hold.seconds is not None and hold.seconds < 10):
            continue
        end = hold.end
        for e in exits:
            if e.ts is None:
                continue
            if hold.start.timestamp() - 15 <= e.ts.timestamp() and (end is None or e.ts <= end):
                yield step_hit(
                    f"UpdateContainerResources held {fmt_seconds(hold.seconds)} across a task Delete timeout",
                    0.45,
                    link(
                        "log",
                        "containerd",
                        f"UpdateContainerResources for {hold.key[:12]} holds the status lock "
                        f"for {fmt_seconds(hold.seconds)}",
                        interval_refs(hold),
                        tags=("update-container-resources", "status-lock"),
                    ),
                    link(
                        "log",
                        "containerd",
                        "meanwhile a task Delete after container exit times out (on a busy disk, usually the shim "
                        "unmounting the rootfs)",
                        (e.ref,),
                        tags=("task-exit", "shim:Delete"),
                    ),
                    fix=fixes.volatile_fix(ctx.versions),
                )
                return


@rule(
    "PD406",
    "shim-call-stuck",
    title="containerd waits for a shim ttrpc call that does not return",
    severity=Severity.CRITICAL,
    cls=C.SHIM_HANG,
    fix=(
        "Dump the shim (kill -USR1 <shim pid>; the dump is logged by containerd with pid=<shim pid>) and "
        "check the shim's process state (cat /proc/<shim pid>/stack, ps -o stat,wchan). A shim stuck for "
        "good can be killed; its container is then recreated by the kubelet."
    ),
    references=(ISSUE_10583, ISSUE_7496),
    role="cause",
    reads=("dumps",),
)
def shim_call_stuck(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a containerd goroutine waiting for at least a minute in a ttrpc call to a shim
    (`ttrpc.(*Client).dispatch` in `select`), other than the Delete/Update calls PD402/PD404
    cover (e.g. `State`, `Create`, `Start`, `Kill`, `Exec`).

    Why it matters: a shim that does not answer keeps containerd's caller blocked, and the
    CRI call above it may hold a sandbox or container lock the relist needs.

    Example evidence::

        goroutine 812 [select, 7 minutes]:
        github.com/containerd/ttrpc.(*Client).dispatch(...)
        github.com/containerd/containerd/api/runtime/task/v2.(*taskClient).State(...)

    Fix: dump the shim to see why; kill a shim stuck for good.
    """
    for chain, lk in links_with(ctx, "ttrpc:", "shim:"):
        if chain_has_any(chain, "shim:Delete", "shim:Update", "umount", "runc", "cni", "nfs", "network-fs"):
            continue
        if any(t.endswith((".Delete", ".Update")) for t in chain.tags):
            continue
        minutes = lk.wait_minutes or chain_wait_minutes(chain)
        if minutes < 1 and not chain.blocked:
            continue
        yield chain_hit(
            chain,
            f"containerd waits for a shim call: {lk.detail}{for_minutes(minutes)}",
            0.45 + (0.1 if minutes >= 2 else 0.0),
        )
        return
