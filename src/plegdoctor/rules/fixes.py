"""Version-aware fix texts: each says which link of the chain it removes and which it does not.

Version facts (first releases containing a change) come from plegdoctor.knowledge, the
project's single table of them (fact sheet §7.4, §8, §3.2): overlay `mount_options`
(volatile), temp-mount volatile stripping, `fsync=volatile` spelling, content pre-sync
outside bbolt, bbolt `no_sync`, the high-I/O shim-leak fix; overlay volatile needs kernel 5.10.

Measured in the project lab on a ~30 MB/s disk (shared design, "Real components"): with
volatile the worst ListContainers still stalled ~30 s on 1.7.24 and 19 s on 2.1.9; bbolt
no_sync brought 2.1.9 to 6.4 s; volatile plus vm.dirty_bytes=256 MiB and
vm.dirty_background_bytes=64 MiB brought both to ~1 s.
"""

from __future__ import annotations

from plegdoctor import knowledge as k
from plegdoctor.errors import UserError
from plegdoctor.model import Versions

VOLATILE_TOML = '[plugins."io.containerd.snapshotter.v1.overlayfs"] mount_options = ["volatile"]'
NO_SYNC_TOML = '[plugins."io.containerd.metadata.v1.bolt"] no_sync = true'
DIRTY_SYSCTL = "vm.dirty_bytes=268435456 vm.dirty_background_bytes=67108864"


def containerd_version(versions: Versions) -> k.ContainerdVersion | None:
    """The containerd version of `versions` (None when absent or unparseable)."""
    try:
        return k.ContainerdVersion.parse(versions.containerd) if versions.containerd else None
    except UserError:
        return None


def kernel_version(versions: Versions) -> k.KernelVersion | None:
    """The kernel release of `versions` (None when absent or unparseable)."""
    try:
        return k.KernelVersion.parse(versions.kernel) if versions.kernel else None
    except UserError:
        return None


# ---------------------------------------------------------------------------------------
# Fix texts


def volatile_fix(versions: Versions) -> str:
    """Overlay `volatile`: removes the umount syncfs link; says what the user must upgrade."""
    cv = containerd_version(versions)
    kv = kernel_version(versions)
    parts = [
        f"Mount overlay snapshots volatile: {VOLATILE_TOML} (needs containerd >= 1.6.24 / 1.7.4 / 2.0 "
        "and kernel >= 5.10; overlay then skips the syncfs on unmount)."
    ]
    if cv is not None:
        ok, target = k.MOUNT_OPTIONS.fixed_in(cv)
        if not ok:
            to = str(target) if target else "1.6.24"
            parts.append(
                f"Your containerd {cv} ignores mount_options: upgrade to >= {to} first"
                + _temp_mount_note(cv, target)
                + "."
            )
        else:
            parts.append(f"Your containerd {cv} supports it" + _temp_mount_note(cv, cv) + ".")
    if kv is not None:
        if not k.KERNEL_VOLATILE.has(kv):
            parts.append(f"Your kernel {kv} lacks overlay volatile: it needs a kernel >= 5.10.")
        else:
            parts.append(f"Your kernel {kv} supports it.")
    parts.append(
        "Removes the link: shim Delete -> umount -> syncfs of the whole backing disk. Does NOT remove "
        "fsync/fdatasync under writeback (bbolt commit, CRI status checkpoint): in the lab the relist still "
        "stalled ~30 s (1.7.24) and 19 s (2.1.9) with volatile alone. Caveat: after a host crash a volatile "
        "snapshot cannot be remounted until its work/incompat/volatile directory is removed; containers are "
        "recreated by the kubelet."
    )
    return " ".join(parts)


def _temp_mount_note(cv: k.ContainerdVersion, target: k.ContainerdVersion | None) -> str:
    base = target or cv
    ok, strip_at = k.TEMP_MOUNT_STRIP_VOLATILE.fixed_in(base)
    if ok:
        return ""
    return f" (prefer >= {strip_at}, which also strips volatile from temporary mounts, #9555)" if strip_at else ""


def dirty_limits_fix() -> str:
    return (
        f"Lower the dirty page limits so writeback never builds up gigabytes: sysctl -w {DIRTY_SYSCTL} "
        "(256 MiB / 64 MiB). Removes the link: fsync/fdatasync (bbolt commit, content commit, status "
        "checkpoint) waiting behind background writeback of unrelated dirty data. Lab: with volatile this "
        "brought the worst relist stall from ~30 s (1.7.24) / 19 s (2.1.9) to ~1 s."
    )


def separate_disk_fix() -> str:
    return (
        "Give /var/lib/containerd its own disk, or move heavy writers (logs, emptyDir, databases) to volumes "
        "on another disk, or cap them with io.max: containerd's fsyncs then stop queueing behind other "
        "workloads' writeback. Removes the shared-disk link."
    )


def pull_parallelism_fix() -> str:
    return (
        "Throttle image pulls and unpacks during churn: kubelet serializeImagePulls=true (or a small "
        "maxParallelImagePulls), containerd max_concurrent_downloads; pre-pull images on node boot. "
        "Removes part of the write load that fills the disk."
    )


def bbolt_no_sync_fix(versions: Versions) -> str:
    cv = containerd_version(versions)
    base = (
        f"Disable bbolt fsync: {NO_SYNC_TOML} (containerd >= 2.1). Removes the link: bbolt Tx.Commit "
        "fdatasync while holding the single metadata writer lock (lab: 19 s -> 6.4 s on 2.1.9). Risk: the "
        "metadata DB can lose recent writes on a host crash."
    )
    if cv is not None and not k.BBOLT_NO_SYNC.contains(cv):
        base += f" Your containerd {cv} does not have no_sync: upgrade to >= 2.1."
    return base


def content_presync_fix(versions: Versions) -> str:
    cv = containerd_version(versions)
    text = (
        "containerd >= 2.0 fsyncs a pulled blob before taking the bbolt writer lock (#10128); in 1.6/1.7 "
        "the whole-blob fsync runs inside the metadata transaction. Removes the link: content commit "
        "fsync while holding bbolt's writer lock."
    )
    if cv is not None and not k.CONTENT_COMMIT_PRESYNC.contains(cv):
        text += f" Your containerd {cv} still fsyncs inside the transaction: upgrade to >= 2.0."
    elif cv is not None:
        text += f" Your containerd {cv} already has it."
    return text


def status_lock_fix() -> str:
    return (
        "No setting removes it: CRI UpdateContainerResources (and exit handling) hold the container's status "
        "write lock across the metadata update, the shim call and the status checkpoint fsync, and "
        "ListContainers needs that lock for every container (upstream: containerd #9770, PR #11558 open). "
        "Remove the slow link below the lock (see the other fixes) and reduce UpdateContainerResources churn "
        "(CPU-manager/in-place-resize reconcile loops)."
    )


def shim_leak_fix(versions: Versions) -> str:
    cv = containerd_version(versions)
    text = (
        "Upgrade containerd to a release with the high-I/O-pressure shim cleanup fix (#8954, 1.6.24 / 1.7.4 "
        "/ 2.0): a task Delete that timed out is retried instead of leaking the shim."
    )
    if cv is not None:
        ok, target = k.SHIM_LEAK_FIX.fixed_in(cv)
        if not ok and target:
            text += f" Your containerd {cv} lacks it: upgrade to >= {target}."
    return text


def fsync_volatile_spelling_fix(versions: Versions) -> str:
    cv = containerd_version(versions)
    target = k.FSYNC_VOLATILE_SPELLING.upgrade_target(cv)
    return (
        "The kernel prints the option as `fsync=volatile` (6.12.80+); containerd recognises that spelling "
        f"only from 1.7.32 / 2.0.9 / 2.1.8 / 2.2.4 / 2.3.0 (#13256). Upgrade containerd ({target})."
    )
