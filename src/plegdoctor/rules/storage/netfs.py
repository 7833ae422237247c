"""PD310, PD311: runtime goroutines and kernel tasks waiting on a network filesystem."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from plegdoctor.kernelnames import waits_in
from plegdoctor.model import EventKind, Ref, Severity
from plegdoctor.parsers.mounts import is_network as is_network_mount
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    events,
    fmt_seconds,
    kernel_stack_has,
    link,
    links_with,
    plural,
    step_hit,
)
from plegdoctor.rules.storage.io import K8S_94829, C

_NETFS_TYPES = ("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.sshfs", "9p", "lustre", "fuse.s3fs")
_NETFS_KERNEL = ("nfs_", "nfs4_", "rpc_wait", "__rpc_", "rpc_execute", "cifs_", "smb2_", "ceph_", "fuse_", "p9_")


# -- PD310: the kubelet or runtime blocked on a network filesystem ----------------------------

# Go wrappers of filesystem-metadata syscalls (the frame right under syscall.Syscall*) -> syscall
_FS_WRAPPERS: tuple[tuple[str, str], ...] = (
    ("syscall.Statfs", "statfs"),
    ("syscall.Fstatfs", "fstatfs"),
    ("golang.org/x/sys/unix.Statfs", "statfs"),
    ("golang.org/x/sys/unix.Fstatfs", "fstatfs"),
    ("syscall.fstatat", "newfstatat"),
    ("syscall.Fstatat", "newfstatat"),
    ("golang.org/x/sys/unix.Fstatat", "newfstatat"),
    ("syscall.Stat", "stat"),
    ("syscall.Lstat", "lstat"),
    ("golang.org/x/sys/unix.Stat", "stat"),
    ("golang.org/x/sys/unix.Lstat", "lstat"),
    ("golang.org/x/sys/unix.Statx", "statx"),
    ("syscall.openat", "openat"),
    ("syscall.Open", "openat"),
    ("golang.org/x/sys/unix.Openat", "openat"),
    ("syscall.Getdents", "getdents64"),
    ("syscall.ReadDirent", "getdents64"),
    ("golang.org/x/sys/unix.Getdents", "getdents64"),
    ("os.statNolog", "stat"),
    ("os.lstatNolog", "lstat"),
    ("os.Stat", "stat"),
    ("os.Lstat", "lstat"),
    ("os.ReadDir", "getdents64"),
    ("os.(*File).readdir", "getdents64"),
    # mount(2) of a network filesystem waits for its server (docker's local volume driver, volume plugins)
    ("syscall.mount", "mount"),
    ("syscall.Mount", "mount"),
    ("golang.org/x/sys/unix.Mount", "mount"),
)
# amd64 trap numbers of the same syscalls (`syscall.Syscall(0x89, ...)` = statfs)
_FS_TRAPS = {
    0x89: "statfs",
    0x8A: "fstatfs",
    0x4: "stat",
    0x6: "lstat",
    0x106: "newfstatat",
    0x14C: "statx",
    0x101: "openat",
    0x2: "open",
    0xD9: "getdents64",
    0x4E: "getdents",
    0xA5: "mount",
}
_SYSCALL_FRAMES = (
    "syscall.Syscall",
    "syscall.Syscall6",
    "syscall.RawSyscall",
    "syscall.syscall",
    "golang.org/x/sys/unix.Syscall",
    "golang.org/x/sys/unix.Syscall6",
    "internal/runtime/syscall.",
    "runtime/internal/syscall.",
    "syscall.RawSyscall6",
    "runtime.",
)
# callers that touch every mount or a volume's mount point: the paths a dead server hangs
_MOUNT_CALLERS: tuple[tuple[str, str], ...] = (
    ("github.com/google/cadvisor/fs.getVfsStats", "cadvisor fs.getVfsStats (statfs of each mount)"),
    (
        "github.com/google/cadvisor/fs.(*RealFsInfo).GetFsInfoForPath",
        "cadvisor GetFsInfoForPath (statfs of each mount)",
    ),
    ("github.com/google/cadvisor/fs.(*RealFsInfo).GetDirFsDevice", "cadvisor GetDirFsDevice"),
    ("github.com/google/cadvisor/fs.", "cadvisor filesystem stats"),
    (
        "k8s.io/mount-utils.(*Mounter).IsLikelyNotMountPoint",
        "mount-utils IsLikelyNotMountPoint (stat of a mount point)",
    ),
    ("k8s.io/mount-utils.", "mount-utils mount point check"),
    ("k8s.io/utils/mount.", "mount point check"),
    ("k8s.io/kubernetes/pkg/util/mount.", "mount point check"),
    ("k8s.io/kubernetes/pkg/volume/util/fs.", "volume filesystem stats"),
    ("k8s.io/kubernetes/pkg/volume/", "a volume plugin"),
    (
        "github.com/docker/docker/volume/local.(*localVolume).mount",
        "docker's local volume driver (a volume with mount options)",
    ),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).getMountedVolumePathListFromDisk", "the kubelet's volume dir scan"),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).cleanupOrphanedPodDirs", "the kubelet's orphaned pod dir cleanup"),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).podVolumesExist", "the kubelet's pod volume check"),
    ("k8s.io/kubernetes/pkg/kubelet/volumemanager", "the kubelet volume manager"),
)
# frames naming a network volume plugin: the stat is on a network filesystem by construction
_NETWORK_VOLUME = (
    # docker's local driver mounts only volumes created with mount options (type=nfs|cifs, o=addr=...)
    "github.com/docker/docker/volume/local.(*localVolume).mount",
    "pkg/volume/nfs.",
    "pkg/volume/cephfs.",
    "pkg/volume/glusterfs.",
    "pkg/volume/quobyte.",
    "csi-driver-nfs",
    "csi-driver-smb",
    "pkg/volume/azure_file.",
    "pkg/volume/azurefile.",
)
# the paths the kubelet cannot make progress without (a hang here is the node's hang)
_BLOCKING_PATHS: tuple[tuple[str, str], ...] = (
    ("github.com/google/cadvisor/machine.Info", "kubelet start (cadvisor machine.Info)"),
    ("github.com/google/cadvisor/manager.New", "kubelet start (cadvisor manager.New)"),
    ("k8s.io/kubernetes/pkg/kubelet/cadvisor.New", "kubelet start (cadvisor.New)"),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).initializeModules", "kubelet start (initializeModules)"),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).initializeRuntimeDependentModules", "kubelet start"),
    ("k8s.io/kubernetes/cmd/kubelet/app.run", "kubelet start (app.run)"),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).HandlePodCleanups", "the kubelet sync loop (HandlePodCleanups)"),
    ("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).syncLoopIteration", "the kubelet sync loop"),
    ("k8s.io/kubernetes/pkg/kubelet/pleg.", "the PLEG relist"),
)
_RUNTIME_PROCS = ("kubelet", "containerd", "dockerd", "crio", "cri-o", "containerd-shim")


class _FsWait(msgspec.Struct, frozen=True):
    """A goroutine blocked in a filesystem-metadata syscall."""

    process: str
    pid: int | None
    goroutine: int
    minutes: int | None
    syscall: str
    caller: str | None  # what touches the mount (cadvisor getVfsStats, IsLikelyNotMountPoint, ...)
    path: str | None  # the blocking path it is on (kubelet start, sync loop, relist)
    network_volume: bool
    refs: tuple[Ref, ...]


def _fs_wait(dump: Any, g: Any) -> _FsWait | None:
    if g.state != "syscall" or not g.stack:
        return None
    funcs = [loc[0] for loc in g.stack[:64]]
    top = 0
    while top < len(funcs) and funcs[top].startswith(_SYSCALL_FRAMES):
        top += 1
    syscall = None
    site = top
    for j in range(top, min(top + 4, len(funcs))):
        name = next((sc for w, sc in _FS_WRAPPERS if funcs[j] == w), None)
        if name:
            syscall, site = name, j
            break
    if syscall is None and top > 0:
        word = g.args[top - 1].split(",", 1)[0].strip()
        if word.startswith("0x") and not word.endswith("?"):
            try:
                syscall = _FS_TRAPS.get(int(word, 16))
            except ValueError:
                syscall = None
    if syscall is None:
        return None
    caller = None
    caller_at = None
    for j, f in enumerate(funcs[site:], site):
        caller = next((what for prefix, what in _MOUNT_CALLERS if f.startswith(prefix)), None)
        if caller:
            caller_at = j
            break
    path = next((what for f in funcs for prefix, what in _BLOCKING_PATHS if f.startswith(prefix)), None)
    if path is None and g.id == 1 and funcs and any(f.startswith("github.com/google/cadvisor/") for f in funcs):
        path = "kubelet start (goroutine 1)"
    process = str(dump.process)
    if process in ("unknown", "") and any(
        f.startswith(("k8s.io/kubernetes/pkg/kubelet", "github.com/google/cadvisor/")) for f in funcs
    ):
        process = "kubelet"
    refs = [dump.ref(g), dump.ref(g, site)]
    if caller_at is not None and caller_at != site:
        refs.append(dump.ref(g, caller_at))
    return _FsWait(
        process,
        dump.pid,
        g.id,
        g.wait_minutes,
        syscall,
        caller,
        path,
        any(n in f for f in funcs for n in _NETWORK_VOLUME),
        tuple(refs),
    )


def _fs_waits(ctx: RuleContext) -> list[_FsWait]:
    def compute() -> list[_FsWait]:
        out: list[_FsWait] = []
        for dump in ctx.evidence.dumps:
            for g in getattr(dump, "goroutines", ()):
                w = _fs_wait(dump, g)
                if w is not None:
                    out.append(w)
                    if len(out) >= 200:
                        return out
        return out

    return ctx.memo("fs_waits", compute)  # type: ignore[no-any-return]


def _is_runtime_comm(comm: str) -> bool:
    return comm.startswith(("containerd", "dockerd", "kubelet", "runc", "crio", "conmon", "crun"))


@rule(
    "PD310",
    "runtime-waits-on-network-fs",
    title="The kubelet or the runtime waits on a network filesystem",
    severity=Severity.CRITICAL,
    cls=C.NETWORK_STORAGE_HANG,
    fix=(
        "Fix or force-unmount the hung remote mount (umount -f -l <mountpoint>), then restart the kubelet and "
        "the pods using it; mount NFS with timeo/retrans limits (soft where data loss is acceptable); keep "
        "remote mounts out of paths the kubelet and the runtime stat (cadvisor statfs's every mount at start)."
    ),
    references=(
        "https://github.com/kubernetes/kubernetes/issues/122491",
        "https://github.com/kubernetes/kubernetes/issues/101622",
        "https://github.com/kubernetes/kubernetes/issues/31272",
        "https://github.com/kubernetes/kubernetes/issues/90593",
        K8S_94829,
    ),
    role="cause",
    reads=("events", "dumps", "mounts", "hung_tasks", "tasks"),
)
def runtime_waits_on_network_fs(ctx: RuleContext) -> Iterator[Hit]:
    """Detects the kubelet or the runtime blocked on a network filesystem, from any of:

    (a) a goroutine in a filesystem-metadata syscall (`statfs`, `fstatfs`, `stat`, `lstat`,
        `newfstatat`, `statx`, `openat`, `getdents64`: the wrapper frame `syscall.Statfs`,
        `syscall.fstatat`, `os.Stat`..., or the amd64 trap number) whose caller touches
        mounts: cadvisor `fs.getVfsStats`/`GetFsInfoForPath` (statfs of every mount),
        mount-utils `IsLikelyNotMountPoint`, the kubelet's volume dir scans, a volume plugin;
        or a wait chain tagged `nfs`/`network-fs` by the goroutine engine;
    (b) a kubelet or runtime task (hung-task report, sysrq-w, /proc/<pid>/stack) waiting in
        NFS/SUNRPC/CIFS/Ceph/FUSE code (`rpc_wait_bit_killable`, `nfs_*`; the `nfs` hint of
        plegdoctor.kernelnames);
    (c) kernel messages `nfs: server X not responding, still trying|timed out`.

    When is a goroutine in `statfs` a hang and not a snapshot of a fast call? A dump catches
    whatever is in flight, and a local statfs takes microseconds, so (a) needs one more
    sign that the call is stuck: it has waited a minute or more (`[syscall, 12 minutes]`),
    or it is the step the kubelet cannot go on without (kubelet start: goroutine 1 in
    cadvisor `machine.Info`/`cadvisor.New`; the sync loop's `HandlePodCleanups`; the PLEG
    relist), or the evidence shows network storage (a network mount in /proc/mounts:
    nfs, nfs4, cifs, smb3, ceph, glusterfs, fuse.sshfs, ...; NFS kernel messages or
    frames; a network volume plugin on the stack). A short `Statfs` of the volume stats
    collector with none of these stays quiet. Network mounts and kernel NFS evidence raise
    the weight of every form.

    Why it matters: on a hard NFS mount whose server is gone every stat, statfs or open
    blocks in the kernel without a timeout. cadvisor statfs's every mount when the kubelet
    starts, so the kubelet never finishes starting (kubernetes #122491); the sync loop's
    mount point checks hang the same way (#101622, #31272); a runtime call on such a path
    holds its locks meanwhile and the relist stalls behind it (#94829).

    Example evidence (kubernetes #122491, kubelet goroutine dump)::

        goroutine 1 gp=0xc0000061c0 m=7 mp=0xc000600008 [syscall]:
        syscall.Syscall(0x89, 0xc00074c360, 0xc000a238a0, 0x0)
        syscall.Statfs({0xc000b62010?, 0xc000a238c0?}, 0xc000a238a0)
        github.com/google/cadvisor/fs.getVfsStats({0xc000b62010?, 0x5?})
        github.com/google/cadvisor/fs.(*RealFsInfo).GetFsInfoForPath(0xc000b47b30, 0x0)
        github.com/google/cadvisor/machine.Info(...)

    Fix: repair or force-unmount the mount; use timeouts on NFS mounts.

    References: kubernetes #122491 (kubelet start hangs in cadvisor statfs), #101622 and
    #31272 (sync loop hangs in os.Stat of an NFS volume), #90593 (kubelet hangs on a broken
    NFS share, dmesg `nfs: server ... not responding`), #94829.
    """
    netmounts = [m for m in ctx.evidence.mounts if is_network_mount(m)]
    nfs_events = events(ctx, EventKind.NFS_NOT_RESPONDING)
    nfs_ok = events(ctx, EventKind.NFS_OK)
    nfs_tasks = _nfs_kernel_tasks(ctx)
    kernel_nfs = bool(nfs_events or nfs_tasks)
    boost = (0.1 if netmounts else 0.0) + (0.1 if kernel_nfs else 0.0)
    extra_links = []
    extra_refs: list[Ref] = []
    if netmounts:
        m0 = netmounts[0]
        extra_refs.append(m0.ref)
        extra_links.append(
            link(
                "mounts",
                "kernel",
                f"{len(netmounts)} network mount(s), e.g. {m0.fstype} {m0.source} on {m0.target}",
                (m0.ref,),
                tags=("network-fs",),
            )
        )
    if nfs_events:
        e0 = nfs_events[-1]
        still = not any(ok.ts and e0.ts and ok.ts > e0.ts for ok in nfs_ok) if nfs_ok else True
        extra_links.append(
            link(
                "log",
                "kernel",
                f"nfs: server {e0.attrs.get('server')} not responding"
                f" ({e0.attrs.get('detail')}), {plural(len(nfs_events), 'time')}"
                + ("" if still else ", answered again later"),
                (e0.ref,),
                tags=("nfs",),
            )
        )
        extra_refs.append(e0.ref)

    # (a) goroutines: the engine's chains first, then filesystem syscalls found directly
    for chain, lk in links_with(ctx, "nfs", "network-fs"):
        yield Hit(
            title=f"{lk.process} goroutine {lk.goroutine} blocked on a network filesystem: {lk.detail}",
            evidence=lk.evidence + tuple(extra_refs[:2]),
            weight=min(0.9, 0.6 + (0.1 if chain.blocked else 0.0) + boost),
            chain=chain,
        )
        return
    best: tuple[float, _FsWait] | None = None
    for w in _fs_waits(ctx):
        if w.process not in _RUNTIME_PROCS and not w.process.startswith(_RUNTIME_PROCS):
            continue
        if w.caller is None and not w.network_volume and not (w.minutes and w.minutes >= 1 and kernel_nfs):
            continue  # a stat of some file, not of a mount: not this rule's evidence
        long_wait = (w.minutes or 0) >= 1
        if not (long_wait or w.path or netmounts or kernel_nfs or w.network_volume):
            continue  # a stat caught in flight, nothing says it is stuck (see the docstring)
        weight = 0.5 + (0.15 if long_wait else 0.0) + (0.1 if w.path else 0.0) + (0.1 if w.network_volume else 0.0)
        weight = min(0.9, weight + boost)
        if best is None or weight > best[0]:
            best = (weight, w)
    if best is not None:
        weight, w = best
        how = f", {w.minutes} min" if w.minutes else ""
        on = f" on {w.path}" if w.path else ""
        detail = f"{w.process} goroutine {w.goroutine} in {w.syscall}(2){how} from {w.caller or 'a volume plugin'}{on}"
        gl = link(
            "syscall",
            w.process,
            detail,
            w.refs,
            tags=("nfs", "network-fs", f"syscall:{w.syscall}")
            + (("kubelet-start",) if w.path and "start" in w.path else ()),
            pid=w.pid,
            goroutine=w.goroutine,
            function=w.caller,
            wait_minutes=w.minutes,
        )
        why = "" if (w.minutes or 0) >= 1 or w.path else " (network storage is in the evidence)"
        yield step_hit(
            f"{detail}: a {'mount' if w.syscall == 'mount' else 'stat'} of a network filesystem that does not "
            f"return{why}",
            weight,
            gl,
            *extra_links,
            evidence=w.refs + tuple(extra_refs[:2]),
            facts={"syscall": w.syscall, "goroutine": w.goroutine},
        )
        return
    # (b) the kubelet or a runtime process in NFS kernel code
    runtime_tasks = [(comm, pid, fn, refs) for comm, pid, fn, refs in nfs_tasks if _is_runtime_comm(comm)]
    if runtime_tasks:
        comm, pid, fn, refs = runtime_tasks[0]
        yield step_hit(
            f"{comm}:{pid} is blocked in network filesystem code ({fn})",
            min(0.9, 0.55 + (0.1 if netmounts else 0.0) + (0.05 if nfs_events else 0.0)),
            link("kernel", "kernel", f"{comm}:{pid} waits in {fn}", refs, tags=("nfs",), pid=pid, function=fn),
            *extra_links,
            evidence=tuple(r for *_, rs in runtime_tasks[:3] for r in rs) + tuple(extra_refs[:2]),
        )
        return
    # (c) the NFS server stopped answering (kernel messages)
    if nfs_events:
        e0 = nfs_events[-1]
        yield step_hit(
            f"nfs: server {e0.attrs.get('server')} not responding ({plural(len(nfs_events), 'message')})",
            0.4 + (0.1 if netmounts else 0.0) + (0.05 if nfs_tasks else 0.0),
            *extra_links,
            evidence=tuple(e.ref for e in nfs_events[:3]) + tuple(extra_refs[:1]),
        )


def _nfs_kernel_tasks(ctx: RuleContext) -> list[tuple[str, int, str, tuple[Ref, ...]]]:
    """Tasks whose kernel stack waits in network filesystem code: (comm, pid, function, refs)."""
    out: list[tuple[str, int, str, tuple[Ref, ...]]] = []
    for ht in ctx.evidence.hung_tasks:
        w = waits_in(ht.kernel_stack)
        fn = w.known if w is not None and w.hint == "nfs" else kernel_stack_has(ht.kernel_stack, *_NETFS_KERNEL)
        if fn:
            refs = (ht.ref,) + ((ht.stack_refs[w.at],) if w is not None and w.at < len(ht.stack_refs) else ())
            out.append((ht.comm, ht.pid, fn, refs))
    for t in ctx.evidence.tasks:
        if not t.state.startswith("D"):
            continue
        w = waits_in(t.kernel_stack or ((t.wchan,) if t.wchan else ()))
        fn = w.known if w is not None and w.hint == "nfs" else kernel_stack_has(t.kernel_stack, *_NETFS_KERNEL)
        if fn:
            out.append((t.comm, t.pid, fn, (t.ref,)))
    return out[:50]


@rule(
    "PD311",
    "tasks-stuck-on-network-fs",
    title="Tasks are in D state inside network filesystem code",
    severity=Severity.CRITICAL,
    cls=C.NETWORK_STORAGE_HANG,
    fix=(
        "The remote server or network is not answering: check `mount -t nfs,nfs4,cifs`, the server and the "
        "network path; force-unmount (umount -f -l) the hung mount and recreate the pods that use it."
    ),
    references=(K8S_94829, "https://docs.kernel.org/filesystems/nfs/index.html"),
    role="cause",
    reads=("mounts", "hung_tasks", "tasks"),
)
def tasks_stuck_on_network_fs(ctx: RuleContext) -> Iterator[Hit]:
    """Detects kernel evidence of a hung network filesystem: a hung-task trace or a task's
    kernel stack/wchan inside NFS/SUNRPC/CIFS/Ceph/FUSE code (`nfs_*`, `rpc_wait_bit_killable`,
    `cifs_*`, ...), strengthened when `/proc/mounts` shows such a mount.

    Why it matters: a process blocked in NFS code is in uninterruptible sleep until the
    server answers; if it is the runtime (or a process it waits for), the relist stalls.

    Example evidence::

        INFO: task containerd:1203 blocked for more than 120 seconds.
        Call Trace:
         rpc_wait_bit_killable+0x1e/0xa0 [sunrpc]
         nfs4_proc_getattr+0x...

    Fix: repair or force-unmount the mount.
    """
    netmounts = [m for m in ctx.evidence.mounts if m.fstype in _NETFS_TYPES]
    hits = []
    for ht in ctx.evidence.hung_tasks:
        fn = kernel_stack_has(ht.kernel_stack, *_NETFS_KERNEL)
        if fn:
            hits.append(
                (f"task {ht.comm}:{ht.pid} hung {fmt_seconds(ht.seconds) if ht.seconds else ''} in {fn}", ht.ref)
            )
    for t in ctx.evidence.tasks:
        if t.state.startswith("D"):
            fn = kernel_stack_has(t.kernel_stack, *_NETFS_KERNEL) or (
                t.wchan if t.wchan and t.wchan.startswith(_NETFS_KERNEL) else None
            )
            if fn:
                hits.append((f"{t.comm}:{t.pid} in D state in {fn}", t.ref))
    if not hits:
        return
    refs = tuple(r for _, r in hits[:4]) + tuple(m.ref for m in netmounts[:2])
    weight = 0.6 + (0.1 if netmounts else 0.0)
    mount_txt = f"; {len(netmounts)} network mount(s), e.g. {netmounts[0].target}" if netmounts else ""
    yield step_hit(
        hits[0][0] + mount_txt,
        weight,
        *(link("kernel", "kernel", d, (r,), tags=("nfs",)) for d, r in hits[:2]),
        evidence=refs,
    )
