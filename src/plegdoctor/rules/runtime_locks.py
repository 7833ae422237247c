"""PD2xx: lock chains inside containerd (CRI status locks, bbolt, metadata GC lock)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from plegdoctor.knowledge import ISSUE_9770
from plegdoctor.model import Chain, RootCauseClass, Severity
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    chain_has,
    chain_has_any,
    chain_hit,
    chain_wait_minutes,
    chains_with,
    cri_method,
    during_stall,
    fmt_seconds,
    interval_refs,
    last_link_with,
    link,
    plural,
    step_hit,
    update_holds,
)

C = RootCauseClass
ISSUE_8698 = "https://github.com/containerd/containerd/issues/8698"
ISSUE_10583 = "https://github.com/containerd/containerd/issues/10583"
ISSUE_12680 = "https://github.com/containerd/containerd/issues/12680"
PR_11558 = "https://github.com/containerd/containerd/pull/11558"
PR_10128 = "https://github.com/containerd/containerd/pull/10128"
PR_10745 = "https://github.com/containerd/containerd/pull/10745"

IO_TAGS = ("fsync", "fdatasync")


def _blocked_text(chain: Chain) -> str:
    parts = []
    if chain.blocked:
        parts.append(f"{plural(chain.blocked, 'goroutine')} blocked")
    minutes = chain_wait_minutes(chain)
    if minutes:
        parts.append(f"waiting {minutes} min")
    return f" ({', '.join(parts)})" if parts else ""


def _waits_for_bbolt(chain: Chain) -> bool:
    """Some goroutine of the chain is queued on bbolt's writer lock (not merely holding it)."""
    return any(lk.kind == "bbolt-writer" for lk in chain.links)


def _chain_weight(base: float, chain: Chain) -> float:
    """More blocked goroutines and longer waits make a chain more convincing."""
    w = base
    if chain.blocked >= 5:
        w += 0.05
    if chain_wait_minutes(chain) >= 1:
        w += 0.05
    return min(w, 0.95)


def _lock_hit(chain: Chain, what: str, base: float, **extra: Any) -> Hit:
    """A lock-chain hit: `what`, then how many goroutines wait and for how long; the weight
    grows from `base` with both."""
    return chain_hit(chain, f"{what}{_blocked_text(chain)}", _chain_weight(base, chain), **extra)


@rule(
    "PD201",
    "cri-read-blocked-on-status-lock",
    title="CRI list/status calls wait for a container status lock",
    severity=Severity.CRITICAL,
    cls=C.CRI_STATUS_LOCK,
    fix=fixes.status_lock_fix(),
    references=(ISSUE_9770, ISSUE_8698, ISSUE_12680, PR_11558),
    role="cause",
    reads=("dumps",),
)
def cri_read_blocked_on_status_lock(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a CRI read (ListContainers, ContainerStatus, ...) that waits for a container's
    status read lock.

    Why it matters: containerd's ListContainers builds a CRI object for *every* container and
    takes each container's status `RWMutex` read lock before filtering. One container whose
    status write lock is held (by UpdateContainerResources or exit handling) blocks every
    relist of the kubelet: PLEG goes unhealthy after 3 minutes and the node NotReady. The lock
    itself is a link, not the cause: the diagnosis follows the chain to what the holder waits
    for.

    Example evidence (containerd goroutine dump, Go <= 1.19)::

        goroutine 1665 [semacquire]:
        sync.runtime_SemacquireMutex(...)
        sync.(*RWMutex).RLock(...)
        github.com/containerd/containerd/pkg/cri/store/container.(*statusStorage).Get(...)
        github.com/containerd/containerd/pkg/cri/server.toCRIContainer(...)
        github.com/containerd/containerd/pkg/cri/server.(*criService).ListContainers(...)

    Fix: find and remove the slow operation under the lock (see the chain); the lock scope is
    an upstream issue (containerd #9770, PR #11558).
    """
    for chain in chains_with(ctx, "cri:", "status-lock"):
        method = cri_method(chain) or "CRI call"
        if method == "UpdateContainerResources":
            continue
        yield _lock_hit(chain, f"{method} waits for a container status lock", 0.55)


@rule(
    "PD202",
    "status-lock-held-by-update",
    title="UpdateContainerResources holds a container status lock across a slow call",
    severity=Severity.CRITICAL,
    cls=C.CRI_STATUS_LOCK,
    fix=fixes.status_lock_fix(),
    references=(ISSUE_9770, ISSUE_10583, ISSUE_12680, PR_11558),
    role="cause",
    reads=("dumps",),
)
def status_lock_held_by_update(ctx: RuleContext) -> Iterator[Hit]:
    """Detects CRI UpdateContainerResources holding a container's status write lock while it
    waits (for bbolt, for the shim's task Update, or for the status checkpoint fsync).

    Why it matters: containerd runs the whole of UpdateContainerResources inside
    `container.Status.UpdateSync`: the container spec update (a bbolt write transaction), the
    ttrpc `Update` call to the shim and the checkpoint write with fsync all happen under the
    write lock. While it waits, every ListContainers waits too.

    Example evidence: a goroutine in `(*statusStorage).UpdateSync` ->
    `(*criService).updateContainerResources` -> `updateContainerSpec` -> `metadata.(*DB).Update`
    -> `bbolt.(*DB).beginRWTx` (waiting for bbolt), or -> `(*shimTask).Update` ->
    `ttrpc.(*Client).dispatch` in `select` (waiting for the shim).

    Fix: remove the slow operation under the lock; the lock scope itself is upstream
    (containerd #9770, PR #11558 open).
    """
    for chain in chains_with(ctx, "status-lock", "update-container-resources"):
        yield _lock_hit(
            chain, f"UpdateContainerResources holds a status lock while waiting: {chain.links[-1].detail}", 0.55
        )


@rule(
    "PD203",
    "status-lock-held-by-exit-handler",
    title="Container exit handling holds a status lock across task Delete",
    severity=Severity.CRITICAL,
    cls=C.CRI_STATUS_LOCK,
    fix=fixes.status_lock_fix(),
    references=(ISSUE_9770, "https://github.com/containerd/containerd/issues/7496"),
    role="cause",
    reads=("dumps",),
)
def status_lock_held_by_exit_handler(ctx: RuleContext) -> Iterator[Hit]:
    """Detects CRI TaskExit handling (`handleContainerExit`) in a chain with a container status
    lock: the exit path deletes the task through the shim and then records the exit under the
    status write lock.

    Why it matters: when the shim's Delete is slow (typically its rootfs umount flushing dirty
    pages), exit handling and every status reader of that container queue behind it; each
    event gets a 10 s deadline and is retried with backoff, so the stall recurs.

    Example evidence: `pkg/cri/server.handleContainerExit` -> `(*task).Delete` ->
    `runtime/v2.(*shimTask).delete` -> `task.(*taskClient).Delete` ->
    `ttrpc.(*Client).dispatch` [select], plus status readers in `(*statusStorage).Get`.

    Fix: remove the slow shim Delete (overlay `volatile`, less dirty data); upgrade to a
    containerd with the high-I/O shim cleanup fix (1.6.24 / 1.7.4 / 2.0).
    """
    for chain in chains_with(ctx, "status-lock", "task-exit"):
        yield _lock_hit(chain, f"container exit handling holds a status lock: {chain.links[-1].detail}", 0.45)


@rule(
    "PD204",
    "long-update-container-resources",
    title="UpdateContainerResources did not return for a long time (containerd log)",
    severity=Severity.WARNING,
    cls=C.CRI_STATUS_LOCK,
    fix=fixes.status_lock_fix(),
    references=(ISSUE_9770, ISSUE_12680, PR_11558),
    role="cause",
    reads=("relists", "events"),
)
def long_update_container_resources(ctx: RuleContext) -> Iterator[Hit]:
    """Detects, from containerd's own log, an `UpdateContainerResources for "<id>"` start
    without its `returns successfully`/`failed` line for 10 s or more (or never, up to the end
    of the log), especially across a relist stall.

    Why it matters: the start and end lines bracket exactly the time the container's status
    write lock was held; ListContainers cannot finish during that time. Without a goroutine
    dump this is the best log-only evidence that the stall is a status-lock convoy.

    Example evidence::

        time="2023-06-02T05:48:07.9Z" level=info msg="UpdateContainerResources for \\"8f71ea...\\" with Linux: ..."
        (no "returns successfully" until 05:48:49)

    Fix: take a goroutine dump of containerd while it happens to see what the update waits
    for; the lock scope is upstream (containerd #9770).
    """
    for hold in update_holds(ctx)[:3]:
        secs = hold.seconds
        if secs is None and not hold.open:
            continue
        if secs is not None and secs < 10:
            continue
        inside = during_stall(ctx, hold.start, slack=5.0)
        weight = 0.35 + (0.15 if inside else 0.0) + (0.05 if hold.open else 0.0)
        what = "never returned in the log" if hold.open else f"took {fmt_seconds(secs)}"
        if hold.open and secs is not None:
            what = f"had not returned after {fmt_seconds(secs)} (log ends)"
        cid = hold.key[:12]
        yield step_hit(
            f"UpdateContainerResources for {cid} {what}",
            weight,
            link(
                "log",
                "containerd",
                f"UpdateContainerResources for {cid} {what}: it holds the container's status write lock",
                interval_refs(hold),
                tags=("update-container-resources", "status-lock"),
            ),
            facts={"hold_seconds": secs, "open": hold.open, "container_id": hold.key},
        )


@rule(
    "PD205",
    "bbolt-writer-queue",
    title="Requests queue on containerd's metadata DB (bbolt) writer lock",
    severity=Severity.CRITICAL,
    cls=C.BBOLT_LOCK_CONTENTION,
    fix=(
        "Find the writer lock holder: take a containerd goroutine dump (kill -USR1 $(pidof containerd), "
        "then read /tmp/containerd.<pid>.stacks.log) and look for the goroutine inside bbolt (*DB).Update "
        "that is not waiting in beginRWTx. Usually it is an image-pull content commit or a bbolt commit "
        "in fsync/fdatasync on a busy disk (then see fsync-io-pressure fixes). containerd >= 2.0 moves the "
        "blob fsync out of the transaction (#10128); >= 2.1 offers bbolt no_sync (#10745)."
    ),
    references=(ISSUE_8698, ISSUE_9770, PR_10128, PR_10745),
    role="cause",
    reads=("dumps",),
)
def bbolt_writer_queue(ctx: RuleContext) -> Iterator[Hit]:
    """Detects goroutines waiting for bbolt's single writer lock (`go.etcd.io/bbolt.(*DB).beginRWTx`
    -> `sync.(*Mutex).Lock`) when the holder is not visible or is not doing I/O.

    Why it matters: containerd keeps all metadata (containers, images, content, snapshots,
    leases) in one bbolt file; bbolt allows one write transaction at a time and holds the lock
    until commit, including its fdatasync calls. A container update made by
    UpdateContainerResources under a status lock then waits for whoever holds the writer
    lock, so the relist waits too.

    Example evidence::

        goroutine 1723 [semacquire]:
        sync.(*Mutex).Lock(...)
        go.etcd.io/bbolt.(*DB).beginRWTx(...)
        go.etcd.io/bbolt.(*DB).Update(...)
        github.com/containerd/containerd/metadata.(*DB).Update(...)
        github.com/containerd/containerd/services/containers.(*local).Update(...)

    Fix: identify the holder (it is usually an image-pull content commit fsyncing a blob inside
    the transaction on containerd 1.x, see PD206); containerd 2.0 moved that fsync out
    (#10128), 2.1 can disable bbolt fsync (`no_sync`, #10745).
    """
    for chain in chains_with(ctx, "bbolt-writer"):
        if chain_has_any(chain, *IO_TAGS) or not _waits_for_bbolt(chain):
            continue  # holder visible and doing I/O: PD206; nobody queued on bbolt: not this rule
        holder = last_link_with(chain, "bbolt-writer")
        detail = holder.detail if holder else "bbolt writer lock"
        yield _lock_hit(chain, f"waiting for bbolt's writer lock, holder not visible or not in I/O: {detail}", 0.55)


@rule(
    "PD206",
    "bbolt-held-across-fsync",
    title="bbolt's writer lock is held by a commit stuck in fsync/fdatasync",
    severity=Severity.CRITICAL,
    cls=C.FSYNC_IO_PRESSURE,
    fix=(
        "The writer lock holder is flushing to a saturated disk. Reduce the dirty data the flush "
        "waits behind (vm.dirty_bytes=256MiB, vm.dirty_background_bytes=64MiB), put /var/lib/containerd on "
        "its own disk, throttle image pulls; on containerd 1.6/1.7 upgrade to >= 2.0 to move the blob fsync "
        "out of the transaction (#10128); on >= 2.1 consider bbolt no_sync (#10745)."
    ),
    references=(ISSUE_8698, ISSUE_9770, PR_10128, PR_10745),
    role="cause",
    reads=("dumps", "versions"),
)
def bbolt_held_across_fsync(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a goroutine that holds bbolt's writer lock (inside `bbolt.(*DB).Update`) and sits in
    `fsync`/`fdatasync`, with other goroutines queued on the lock.

    Why it matters: in containerd 1.6/1.7 an image pull's content `Commit` fsyncs the whole
    blob *inside* the bbolt transaction (`content/local.(*writer).Commit` -> `os.(*File).Sync`),
    and bbolt's own `Tx.Commit` calls fdatasync twice. On a disk saturated by writeback the
    flush takes tens of seconds, the lock is held all that time, and every metadata update
    behind it (including UpdateContainerResources under a status lock) stalls the relist.

    Example evidence::

        goroutine 1268 [syscall]:
        syscall.Fsync(...)
        os.(*File).Sync(...)
        github.com/containerd/containerd/content/local.(*writer).Commit(...)
        github.com/containerd/containerd/metadata.(*namespacedWriter).Commit.func1(...)
        go.etcd.io/bbolt.(*DB).Update(...)

    Fix: less dirty data to wait behind (dirty limits, a separate disk, fewer parallel
    pulls); containerd >= 2.0 pre-syncs blobs outside the lock (#10128); >= 2.1 can set bbolt
    `no_sync` (#10745, crash-safety trade-off).
    """
    versions = ctx.versions
    for chain in chains_with(ctx, "bbolt-writer"):
        if not chain_has_any(chain, *IO_TAGS) or not _waits_for_bbolt(chain):
            continue
        io_link = last_link_with(chain, *IO_TAGS)
        what = "content commit" if chain_has(chain, "content-commit") else "bbolt commit"
        specific = (
            fixes.content_presync_fix(versions)
            if chain_has(chain, "content-commit")
            else fixes.bbolt_no_sync_fix(versions)
        )
        yield _lock_hit(
            chain,
            f"bbolt writer lock held by a {what} in {'fsync' if chain_has(chain, 'fsync') else 'fdatasync'}",
            0.65,
            fix=specific,
            facts={"io_detail": io_link.detail if io_link else None},
        )


@rule(
    "PD207",
    "status-checkpoint-fsync",
    title="A container status checkpoint fsync runs under the status write lock",
    severity=Severity.CRITICAL,
    cls=C.FSYNC_IO_PRESSURE,
    fix=(
        "The CRI status checkpoint (write, fsync, rename) runs under the container's status write lock: an "
        "upstream code issue (containerd #9770, PR #11558), not a setting. Make the fsync fast: lower dirty "
        "limits (vm.dirty_bytes=256MiB, vm.dirty_background_bytes=64MiB), a separate disk for "
        "/var/lib/containerd, I/O limits on heavy writers."
    ),
    references=(ISSUE_9770, PR_11558),
    role="cause",
    reads=("dumps",),
)
def status_checkpoint_fsync(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a goroutine holding a container status write lock (`(*statusStorage).UpdateSync`)
    while it fsyncs the status checkpoint (`continuity.AtomicWriteFile` -> `(*os.File).Sync`).

    Why it matters: every `UpdateSync` (UpdateContainerResources, exit and OOM handling)
    writes the container's status file with an fsync while holding the write lock. Under
    heavy writeback that fsync waits behind unrelated dirty data, and ListContainers waits
    for the lock. Overlay `volatile` does not help here: in the project lab the relist still
    stalled ~30 s with volatile until dirty limits were lowered.

    Example evidence: `(*statusStorage).UpdateSync` -> `continuity.AtomicWriteFile` ->
    `os.(*File).Sync` -> `syscall.Fsync` [syscall, 1 minutes], and ListContainers goroutines in
    `(*statusStorage).Get`.

    Fix: dirty limits / separate disk make the fsync fast; the lock scope is upstream
    (containerd #9770, PR #11558).
    """
    for chain in chains_with(ctx, "status-lock"):
        if chain_has(chain, "bbolt-writer") or not chain_has_any(chain, *IO_TAGS):
            continue
        yield _lock_hit(
            chain,
            f"status write lock held across an fsync: {chain.links[-1].detail}",
            0.6,
            fix=fixes.dirty_limits_fix(),
        )


@rule(
    "PD208",
    "metadata-gc-lock",
    title="containerd metadata GC lock convoy",
    severity=Severity.WARNING,
    cls=C.RUNTIME_LOCK_CONTENTION,
    fix=(
        "A metadata garbage collection waits for the metadata write lock (wlock) behind a slow update, and "
        "every new update queues behind the GC. Remove the slow update below it (usually I/O, see the chain); "
        "avoid mass image/container deletion while the node is busy."
    ),
    references=("https://github.com/containerd/containerd/blob/release/1.7/metadata/db.go",),
    role="cause",
    reads=("dumps",),
)
def metadata_gc_lock(ctx: RuleContext) -> Iterator[Hit]:
    """Detects goroutines queued on containerd's metadata `wlock` (`metadata.(*DB).Update` ->
    `sync.(*RWMutex).RLock`) or a garbage collection (`metadata.(*DB).GarbageCollect`) waiting
    for `wlock.Lock()`.

    Why it matters: containerd takes its own RWMutex in front of bbolt; GC takes it
    exclusively for the mark phase. A GC waiting for the write side behind one slow update
    blocks every new metadata update (Go RWMutex writer preference), which includes container
    updates done under a CRI status lock.

    Example evidence: `metadata.(*DB).GarbageCollect` [sync.RWMutex.Lock] and many
    `metadata.(*DB).Update` [sync.RWMutex.RLock].

    Fix: the slow update below the GC is the cause; see the chain.
    """
    for chain in chains_with(ctx, "metadata-wlock", "gc"):
        yield _lock_hit(chain, f"metadata write lock convoy (GC): {chain.links[-1].detail}", 0.5)


_SPECIFIC = (
    "status-lock",
    "bbolt-writer",
    "metadata-wlock",
    "ttrpc:",
    "shim:",
    "umount",
    "fsync",
    "fdatasync",
    "cni",
    "nfs",
    "network-fs",
    "runc",
    "dockerd-container-lock",
    "kubelet-relist",
    "kubelet-pleg",
)


@rule(
    "PD209",
    "containerd-lock-convoy",
    title="Many containerd goroutines queue on one lock",
    severity=Severity.WARNING,
    cls=C.RUNTIME_LOCK_CONTENTION,
    fix=(
        "A containerd-internal lock is held by a slow goroutine (see the chain's last step for what it "
        "does). Search containerd issues for the holder's function; upgrading containerd often helps."
    ),
    references=("https://github.com/containerd/containerd/issues",),
    role="cause",
    reads=("dumps",),
)
def containerd_lock_convoy(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a lock convoy in containerd (5 or more goroutines waiting, directly or
    transitively, on one mutex) that is none of the known chains (status lock, bbolt, GC,
    shim calls, fsync, umount).

    Why it matters: containerd has other shared locks (sandbox store, metrics collection,
    event exchange); a convoy on any of them delays CRI calls the kubelet depends on.

    Example evidence: 40 goroutines `[sync.Mutex.Lock, 3 minutes]` on the same mutex, the
    holder in a network or exec call.

    Fix: depends on the holder; the chain shows it.
    """
    for chain in ctx.chains:
        if chain.blocked < 5 or chain_has_any(chain, *_SPECIFIC):
            continue
        if not any(lk.process == "containerd" for lk in chain.links):
            continue
        yield _lock_hit(chain, f"lock convoy in containerd: {chain.links[-1].detail}", 0.4)
