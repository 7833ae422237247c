"""What the diagnosis knows of each root-cause class: one `CauseClass` record per
`model.RootCauseClass`, in one table, `CAUSE_CLASSES`.

A new class is one record here (and its value in `model.RootCauseClass`); ranking
(rank.py), the sentences (explain.py) and the chains (chain.py) read the record.

- `meaning` / `remedy`: what the class means and the remediation that sets it apart (the
  vocabulary `pleg-doctor rules` and docs/rules.md print);
- `depth`: how far from the symptom the mechanism sits (the deepest cause shown wins; a
  deeper class's chain is folded after a shallower one's);
- `deeper`: the classes that explain this one when they are shown too (this one then becomes
  their contributing link), in order of preference on a tie;
- `signature`: chain tags by which a finding shows it leads into this class (a shallower
  finding carrying them is folded here rather than into the strongest deeper class);
- `loaded_disk`: the class's definition includes a loaded disk (its score depends on the I/O
  figures, its summary quotes them or says they are missing);
- `boosted_by_disk`: disk-pressure findings strengthen it when other evidence shows it;
- `mechanism`: the sentence the summary uses when explain.py has no sharper wording from
  the findings;
- `fixes`: the class's own fixes, before those its findings carry.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from plegdoctor.model import Finding, RootCauseClass, Versions
from plegdoctor.rules import fixes

C = RootCauseClass


class FixInputs(msgspec.Struct, frozen=True):
    """What a class's fixes may depend on: the versions, the tags of its findings' chains,
    its findings (own and folded), and whether overlay-umount-sync is shown on the node."""

    versions: Versions
    tags: frozenset[str]
    findings: tuple[Finding, ...]
    umount_seen: bool


def _no_fixes(_: FixInputs) -> list[str]:
    return []


class CauseClass(msgspec.Struct, frozen=True):
    cls: RootCauseClass
    meaning: str
    remedy: str
    depth: int
    mechanism: str
    deeper: tuple[RootCauseClass, ...] = ()
    signature: frozenset[str] = frozenset()
    loaded_disk: bool = False
    boosted_by_disk: bool = False
    fixes: Callable[[FixInputs], list[str]] = _no_fixes


def _overlay_fixes(x: FixInputs) -> list[str]:
    return [fixes.volatile_fix(x.versions), fixes.dirty_limits_fix(), fixes.pull_parallelism_fix()]


def _fsync_fixes(x: FixInputs) -> list[str]:
    out = [fixes.dirty_limits_fix(), fixes.separate_disk_fix()]
    if "content-commit" in x.tags:
        out.append(fixes.content_presync_fix(x.versions))
    if "bbolt-writer" in x.tags or "fdatasync" in x.tags:
        out.append(fixes.bbolt_no_sync_fix(x.versions))
    if x.umount_seen or "umount" in x.tags:
        out.append(fixes.volatile_fix(x.versions))
    out.append(fixes.pull_parallelism_fix())
    if "status-lock" in x.tags:
        out.append(fixes.status_lock_fix())
    return out


def _disk_fixes(_: FixInputs) -> list[str]:
    return [fixes.separate_disk_fix(), fixes.dirty_limits_fix(), fixes.pull_parallelism_fix()]


BBOLT_QUEUE_RULE = "PD205"  # the bbolt writer-queue rule: its version-aware fix comes first


def _bbolt_fixes(x: FixInputs) -> list[str]:
    own = [f.fix for f in x.findings if f.code == BBOLT_QUEUE_RULE][:1]
    return [*own, fixes.content_presync_fix(x.versions), fixes.bbolt_no_sync_fix(x.versions), fixes.dirty_limits_fix()]


def _status_lock_fixes(_: FixInputs) -> list[str]:
    return [fixes.status_lock_fix()]


_RECORDS = (
    CauseClass(
        C.KUBELET_INTERNAL,
        meaning=("the stall is inside the kubelet (PLEG goroutine blocked on a channel or lock); the runtime answers"),
        remedy="restart the kubelet after saving its goroutines; upgrade the kubelet",
        depth=0,
        mechanism="kubelet goroutines waited on a lock or channel inside the kubelet",
    ),
    CauseClass(
        C.TOO_MANY_CONTAINERS,
        meaning="relist is slow because of the number of containers/sandboxes, with no blocking chain",
        remedy="garbage-collect exited containers; fewer pods per node",
        depth=0,
        mechanism="each relist had to list and inspect too many containers",
        deeper=(
            C.FSYNC_IO_PRESSURE,
            C.BBOLT_LOCK_CONTENTION,
            C.OVERLAY_UMOUNT_SYNC,
            C.CRI_STATUS_LOCK,
            C.SHIM_HANG,
            C.DISK_IO_PRESSURE,
        ),
    ),
    CauseClass(
        C.CRI_STATUS_LOCK,
        meaning=(
            "CRI calls (ListContainers, ContainerStatus) queue on a container/sandbox status lock held "
            "across a slow call (containerd's status storage; CRI-O's per-container state/op lock on its "
            "stop and status paths)"
        ),
        remedy="upgrade past the status-lock fixes; remove the slow call under the lock",
        depth=1,
        mechanism="a container status lock was held across a slow call (ListContainers needs every container's "
        "status lock)",
        deeper=(
            C.FSYNC_IO_PRESSURE,
            C.BBOLT_LOCK_CONTENTION,
            C.OVERLAY_UMOUNT_SYNC,
            C.SHIM_HANG,
            C.RUNC_HANG,
            C.NETWORK_STORAGE_HANG,
            C.KERNEL_D_STATE,
            C.CNI_HANG,
            C.RUNTIME_LOCK_CONTENTION,
            C.DISK_IO_PRESSURE,
            C.SYSTEMD_DBUS_HANG,
            C.RUNTIME_KNOWN_BUG,
        ),
        fixes=_status_lock_fixes,
    ),
    CauseClass(
        C.DOCKERD_LOCK,
        meaning="a dockerd/dockershim/cri-dockerd operation is blocked on a daemon container lock",
        remedy="restart dockerd after saving its dump; upgrade",
        depth=1,
        mechanism="dockerd operations queued on a container lock",
        deeper=(C.NETWORK_STORAGE_HANG, C.KERNEL_D_STATE, C.OVERLAY_UMOUNT_SYNC, C.RUNTIME_KNOWN_BUG),
    ),
    CauseClass(
        C.RUNTIME_LOCK_CONTENTION,
        meaning=(
            "another runtime-internal lock convoy: containerd (metrics, sandbox store, GC wlock) or CRI-O "
            "(containers/storage lock, server-wide locks)"
        ),
        remedy="find and free the holder; upgrade if the convoy is a known bug",
        depth=2,
        mechanism="runtime goroutines (containerd, CRI-O) queued on an internal lock held by a slow goroutine",
        deeper=(C.FSYNC_IO_PRESSURE, C.BBOLT_LOCK_CONTENTION, C.RUNTIME_KNOWN_BUG),
        signature=frozenset({"metadata-wlock"}),
    ),
    CauseClass(
        C.BBOLT_LOCK_CONTENTION,
        meaning=("requests queue on containerd's metadata DB (bbolt) writer lock; the holder is slow or not visible"),
        remedy="find the slow writer; fewer parallel pulls",
        depth=2,
        mechanism="requests queued on containerd's metadata DB (bbolt) writer lock, whose holder is slow or not "
        "visible",
        deeper=(C.FSYNC_IO_PRESSURE, C.RUNTIME_KNOWN_BUG),
        signature=frozenset({"bbolt-writer"}),
        boosted_by_disk=True,
        fixes=_bbolt_fixes,
    ),
    CauseClass(
        C.SHIM_HANG,
        meaning="containerd waits on a shim ttrpc call that does not return (or on the ttrpc client's send lock)",
        remedy="kill the stuck shim; ttrpc deadlines (upgrade)",
        depth=2,
        mechanism="containerd waited on a shim call that did not return",
        deeper=(
            C.OVERLAY_UMOUNT_SYNC,
            C.RUNC_HANG,
            C.NETWORK_STORAGE_HANG,
            C.KERNEL_D_STATE,
            C.CNI_HANG,
            C.SYSTEMD_DBUS_HANG,
            C.RUNTIME_KNOWN_BUG,
        ),
        signature=frozenset({"shim:Delete", "shim:Update", "shim:State", "shim-init-mutex"}),
    ),
    CauseClass(
        C.DISK_IO_PRESSURE,
        meaning=(
            "the disk is saturated (PSI io, iowait, slow du/stat, DeadlineExceeded) with no more specific culprit"
        ),
        remedy="a faster or separate disk, I/O limits on heavy writers",
        depth=3,
        mechanism="the evidence points at slow I/O",
        deeper=(C.FSYNC_IO_PRESSURE, C.OVERLAY_UMOUNT_SYNC),
        loaded_disk=True,
        fixes=_disk_fixes,
    ),
    CauseClass(
        C.KERNEL_D_STATE,
        meaning=("a kernel-level hang puts runtime tasks in D state (hung_task traces), e.g. netdev teardown, cgroup"),
        remedy="the kernel fix for that path; reboot the node",
        depth=3,
        mechanism="runtime tasks were stuck in D state in the kernel",
        deeper=(C.NETWORK_STORAGE_HANG, C.OVERLAY_UMOUNT_SYNC),
        signature=frozenset({"netdev", "cgroup"}),
    ),
    CauseClass(
        C.RUNC_HANG,
        meaning="a runc/crun invocation hangs (frozen cgroup, D-state init, stuck exec, exec.fifo never opened)",
        remedy="kill the stuck runc; fix what its container's init waits for",
        depth=3,
        mechanism="a runc invocation did not return",
        deeper=(C.SYSTEMD_DBUS_HANG, C.NETWORK_STORAGE_HANG, C.KERNEL_D_STATE),
        signature=frozenset({"runc"}),
    ),
    CauseClass(
        C.CNI_HANG,
        meaning="CNI ADD/DEL does not return",
        remedy="fix or restart the CNI plugin/daemon; CNI timeouts",
        depth=3,
        mechanism="a CNI ADD/DEL call did not return",
        signature=frozenset({"cni"}),
    ),
    CauseClass(
        C.OVERLAY_UMOUNT_SYNC,
        meaning="unmount of an overlay rootfs/snapshot flushes dirty pages (syncfs) and stalls under write load",
        remedy="overlay `volatile` mount option; lower dirty limits",
        depth=4,
        mechanism="unmounting a container's overlay rootfs synced its backing filesystem",
        signature=frozenset({"umount", "syncfs", "syscall:umount2"}),
        loaded_disk=True,
        boosted_by_disk=True,
        fixes=_overlay_fixes,
    ),
    CauseClass(
        C.FSYNC_IO_PRESSURE,
        meaning=(
            "a metadata or content commit (bbolt, content store, status checkpoint) sits in fsync/fdatasync "
            "on a saturated disk"
        ),
        remedy="less dirty data on the runtime's disk, heavy writers on another disk, bbolt no_sync (2.1+)",
        depth=4,
        mechanism="a containerd flush sat in fsync",
        signature=frozenset({"fsync", "fdatasync"}),
        loaded_disk=True,
        boosted_by_disk=True,
        fixes=_fsync_fixes,
    ),
    CauseClass(
        C.NETWORK_STORAGE_HANG,
        meaning="a hung NFS/CIFS/remote mount blocks container operations or the kubelet's stat/statfs",
        remedy="force-unmount the stale mount, restore the server; soft/timeo mount options",
        depth=4,
        mechanism="a hung network filesystem blocked container operations",
        signature=frozenset({"nfs", "network-fs"}),
    ),
    CauseClass(
        C.SYSTEMD_DBUS_HANG,
        meaning=(
            "runc, a shim or the kubelet waits on systemd over D-Bus (systemd cgroup driver) and systemd "
            "does not answer"
        ),
        remedy="make systemd/dbus answer (reload, connection limits); cgroupfs driver where appropriate",
        depth=4,
        mechanism="a runtime call waited on systemd over D-Bus (the systemd cgroup driver), which did not answer",
        signature=frozenset({"systemd-dbus"}),
    ),
    CauseClass(
        C.NODE_RESOURCE_STARVATION,
        meaning="CPU or memory exhaustion starves the kubelet and the runtime (OOM kills, memory/CPU pressure)",
        remedy="system-reserved/kube-reserved, eviction thresholds, fewer or smaller pods",
        depth=4,
        mechanism="the node ran out of CPU or memory, starving the kubelet and the runtime",
    ),
    CauseClass(
        C.RUNTIME_FROZEN,
        meaning=("the runtime process is stopped (T state: SIGSTOP, a debugger, a frozen cgroup) and answers nothing"),
        remedy="kill -CONT; find who stopped it (debugger, freezer)",
        depth=4,
        mechanism="the runtime process was stopped (T state) and answered nothing",
    ),
    CauseClass(
        C.RUNTIME_KNOWN_BUG,
        meaning="the runtime's version has a known deadlock or regression, and its signature is in the evidence",
        remedy="upgrade to the fixed-in version named",
        depth=5,  # a matched known bug explains the mechanism it produces
        mechanism="the runtime's version has a known deadlock or regression, and its signature is in the evidence",
    ),
    CauseClass(
        C.UNKNOWN,
        meaning="the evidence shows a stall or a long wait, but not its mechanism",
        remedy="collect what next steps name",
        depth=9,
        mechanism="the evidence does not show why",
    ),
)

CAUSE_CLASSES: dict[RootCauseClass, CauseClass] = {r.cls: r for r in _RECORDS}
assert len(CAUSE_CLASSES) == len(_RECORDS), "two CauseClass records for one class"


def cause_class(cls: RootCauseClass) -> CauseClass:
    """The record of `cls` (every RootCauseClass has one)."""
    return CAUSE_CLASSES[cls]
