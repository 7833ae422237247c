"""What each blocked goroutine waits for, and which goroutine holds it.

Classification is done once per distinct (state, stack) — a 100 000-goroutine dump has a
few hundred — and gives a `StackInfo`: the wait kind, the frame where the wait happens,
the lock class and the frames whose receivers identify the lock, the locks this stack
*holds* while it runs, the CRI method it serves, the ttrpc/gRPC call it makes, and tags.

Wait kinds (ChainLink.kind): mutex, rwmutex-read, rwmutex-write, bbolt-writer (waiting for
bbolt's single writer lock in beginRWTx), bbolt-commit-io (bbolt Tx.Commit in pwrite /
fdatasync), fsync, fdatasync, syscall (others, named by number or wrapper), ttrpc-call
(containerd -> shim), grpc-call (client side, e.g. kubelet -> CRI), grpc-handler (a server
handler with no deeper wait found), chan, select, io (net/file poller), sleep, cond,
waitgroup, running, idle (runtime/background), unknown.

Tags (ChainLink.tags; rules match on them):
  cri:<Method>                 a CRI handler (containerd) or CRI client call (kubelet)
  status-lock                  waits for / holds a CRI container or sandbox status RWMutex
  update-container-resources   inside CRI UpdateContainerResources
  task-exit                    containerd's exit monitor (handleContainerExit), dockerd exit handling
  bbolt-writer                 waits for / holds bbolt's writer lock
  metadata-wlock               waits for / holds containerd's metadata DB wlock (GC gate)
  gc                           garbage collection
  content-commit               content store writer Commit (image pull)
  image-pull, unpack           pull / unpack code paths
  fsync, fdatasync, umount     the syscall in progress
  syscall:<name>               any syscall, decoded (amd64 numbers) or from its wrapper
  ttrpc:<Service>.<Method>     a ttrpc client call (containerd -> shim)
  grpc:<Service>.<Method>      a gRPC client call (other than CRI)
  shim:<Method>                a shim goroutine serving a task method (shim:Delete, shim:Update)
  shim-init-mutex              waits for / holds the runc shim's Init process mutex (p.mu)
  runc                         inside go-runc (a runc invocation)
  cni                          inside go-cni / libcni (CNI ADD/DEL)
  dockerd-container-lock       waits for / holds a dockerd container lock
  kubelet-relist, kubelet-pleg the PLEG relist goroutine / PLEG code
  kubelet-syncloop             the kubelet sync loop (the PLEG channel's reader)
  symptom                      a goroutine whose stall is what users see (CRI list/status
                               handlers, kubelet relist, dockerd inspect)

Holder inference: a dump never says who holds a mutex. `HOLD_RULES` lists functions known
to hold a lock while they run (with sources in facts.md: statusStorage.UpdateSync/Update,
the UpdateContainerResources closure, bbolt DB.Update/Tx.Commit past beginRWTx, metadata
GarbageCollect, the shim's Init methods, dockerd's container-lock takers). A generic rule
adds: a goroutine inside a method of the same receiver (same accurate address) as the
waiter's lock site, not itself waiting there, probably holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from plegdoctor.goroutines.model import CONTAINERD, DOCKERD, KUBELET, SHIM, Goroutine, Loc
from plegdoctor.goroutines.names import canonical_func

_tuple_new = tuple.__new__


class WaitKind(StrEnum):
    MUTEX = "mutex"
    RWMUTEX_READ = "rwmutex-read"
    RWMUTEX_WRITE = "rwmutex-write"
    BBOLT_WRITER = "bbolt-writer"
    BBOLT_COMMIT_IO = "bbolt-commit-io"
    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    SYSCALL = "syscall"
    TTRPC_CALL = "ttrpc-call"
    GRPC_CALL = "grpc-call"
    HTTP_CALL = "http-call"  # a Docker Engine API client call (dockershim, cri-dockerd, kubelet -> dockerd)
    GRPC_HANDLER = "grpc-handler"
    CHAN = "chan"
    SELECT = "select"
    IO = "io"
    SLEEP = "sleep"
    COND = "cond"
    WAITGROUP = "waitgroup"
    RUNNING = "running"
    IDLE = "idle"
    UNKNOWN = "unknown"


LOCK_KINDS = frozenset({WaitKind.MUTEX, WaitKind.RWMUTEX_READ, WaitKind.RWMUTEX_WRITE, WaitKind.BBOLT_WRITER})

# amd64 syscall numbers that matter for runtime stalls (arch/x86/entry/syscalls/syscall_64.tbl).
SYSCALLS_AMD64: dict[int, str] = {
    0x0: "read",
    0x1: "write",
    0x3: "close",
    0x7: "poll",
    0x8: "lseek",
    0x9: "mmap",
    0x10: "ioctl",
    0x11: "pread64",
    0x12: "pwrite64",
    0x13: "readv",
    0x14: "writev",
    0x17: "select",
    0x1A: "msync",
    0x2C: "sendto",
    0x2D: "recvfrom",
    0x38: "clone",
    0x3A: "vfork",
    0x3B: "execve",
    0x3D: "wait4",
    0x3E: "kill",
    0x48: "fcntl",
    0x4A: "fsync",
    0x4B: "fdatasync",
    0x4D: "ftruncate",
    0x52: "rename",
    0x53: "mkdir",
    0x57: "unlink",
    0xA2: "sync",
    0xA5: "mount",
    0xA6: "umount2",
    0xCA: "futex",
    0xE8: "epoll_wait",
    0xF7: "waitid",
    0x101: "openat",
    0x102: "mkdirat",
    0x106: "newfstatat",
    0x107: "unlinkat",
    0x108: "renameat",
    0x10F: "ppoll",
    0x113: "splice",
    0x119: "epoll_pwait",
    0x11D: "fallocate",
    0x120: "accept4",
    0x132: "syncfs",
    0x13C: "renameat2",
    0x1B3: "clone3",
}

# Wrapper function -> syscall, for when the number is printed inaccurate (`0x7c?`).
SYSCALL_BY_WRAPPER: dict[str, str] = {
    "syscall.Fsync": "fsync",
    "golang.org/x/sys/unix.Fsync": "fsync",
    "internal/poll.(*FD).Fsync": "fsync",
    "os.(*File).Sync": "fsync",
    "syscall.Fdatasync": "fdatasync",
    "golang.org/x/sys/unix.Fdatasync": "fdatasync",
    "go.etcd.io/bbolt.fdatasync": "fdatasync",
    "syscall.Unmount": "umount2",
    "golang.org/x/sys/unix.Unmount": "umount2",
    "syscall.Mount": "mount",
    "golang.org/x/sys/unix.Mount": "mount",
    "golang.org/x/sys/unix.Syncfs": "syncfs",
    "syscall.Sync": "sync",
    "golang.org/x/sys/unix.Sync": "sync",
    "syscall.read": "read",
    "syscall.Read": "read",
    "syscall.write": "write",
    "syscall.Write": "write",
    "syscall.pread": "pread64",
    "syscall.Pread": "pread64",
    "syscall.pwrite": "pwrite64",
    "syscall.Pwrite": "pwrite64",
    "syscall.openat": "openat",
    "syscall.Open": "openat",
    "syscall.wait4": "wait4",
    "syscall.Wait4": "wait4",
    "golang.org/x/sys/unix.Wait4": "wait4",
    "golang.org/x/sys/unix.EpollWait": "epoll_wait",
    "syscall.EpollWait": "epoll_wait",
    "syscall.forkExec": "clone",
    "syscall.rawVforkSyscall": "vfork",
    "golang.org/x/sys/unix.Renameat": "renameat",
    "syscall.Rename": "rename",
    "syscall.Unlinkat": "unlinkat",
    "golang.org/x/sys/unix.Unlinkat": "unlinkat",
}

_SYSCALL_FRAMES = frozenset(
    {
        "syscall.Syscall",
        "syscall.Syscall6",
        "syscall.RawSyscall",
        "syscall.RawSyscall6",
        "syscall.rawSyscallNoError",
        "internal/runtime/syscall.Syscall6",
        "runtime/internal/syscall.Syscall6",
        "golang.org/x/sys/unix.Syscall",
        "golang.org/x/sys/unix.Syscall6",
        "golang.org/x/sys/unix.RawSyscall",
        "golang.org/x/sys/unix.RawSyscallNoError",
        "golang.org/x/sys/unix.syscall_syscall",
    }
)

CRI_METHODS = frozenset(
    {
        "Version",
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "PodSandboxStatus",
        "ListPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "ListContainers",
        "ContainerStatus",
        "UpdateContainerResources",
        "ReopenContainerLog",
        "ExecSync",
        "Exec",
        "Attach",
        "PortForward",
        "ContainerStats",
        "ListContainerStats",
        "PodSandboxStats",
        "ListPodSandboxStats",
        "UpdateRuntimeConfig",
        "Status",
        "CheckpointContainer",
        "GetContainerEvents",
        "ListMetricDescriptors",
        "ListPodSandboxMetrics",
        "RuntimeConfig",
        "UpdatePodSandboxResources",
        "ListImages",
        "ImageStatus",
        "PullImage",
        "RemoveImage",
        "ImageFsInfo",
    }
)
# CRI calls whose stall the kubelet turns into "PLEG is not healthy" or NotReady.
SYMPTOM_CRI = frozenset(
    {"ListContainers", "ListPodSandbox", "ContainerStatus", "PodSandboxStatus", "Status", "ListContainerStats"}
)

# -- function roles, matched once per distinct function name ------------------------------

_CRI_SERVER = re.compile(
    r"github\.com/containerd/containerd(?:/v2)?/(?:pkg/cri/(?:server|sbserver|instrument)|internal/cri/"
    r"(?:server|instrument))(?:/podsandbox)?\.\((?:\*criService|\*instrumentedService|\*GRPCCRIImageService"
    r"|\*criImageService|\*CRIImageService)\)\.([A-Z]\w*)$"
)
# CRI servers other than containerd's: the kubelet's in-process dockershim (<= 1.23), cri-dockerd, CRI-O
# a ttrpc client call in progress (dispatch/Call; createStream and the channel send when an
# excerpt stops before them)
_TTRPC_CLIENT_FRAMES = frozenset(
    {
        "github.com/containerd/ttrpc.(*Client).dispatch",
        "github.com/containerd/ttrpc.(*Client).Call",
        "github.com/containerd/ttrpc.(*Client).createStream",
        "github.com/containerd/ttrpc.(*Client).send",
    }
)
_OTHER_CRI_SERVER = re.compile(
    r"(?:k8s\.io/kubernetes/pkg/kubelet/dockershim|github\.com/Mirantis/cri-dockerd/core)\.\(\*dockerService\)"
    r"\.([A-Z]\w*)$|github\.com/cri-o/cri-o/server\.\(\*Server\)\.([A-Z]\w*)$"
)
_CRI_HANDLER = re.compile(r"k8s\.io/cri-api/pkg/apis/runtime/v1(?:alpha2)?\._(?:Runtime|Image)Service_(\w+)_Handler")
_CRI_CLIENT = re.compile(
    r"(?:k8s\.io/cri-api/pkg/apis/runtime/v1(?:alpha2)?\.\(\*(?:runtime|image)ServiceClient\)"
    r"|k8s\.io/(?:kubernetes/pkg/kubelet/cri/remote|cri-client/pkg)\.\(\*remote(?:Runtime|Image)Service\))\.(\w+)$"
)
_TTRPC_STUB = re.compile(r"\.\(\*(?:ttrpc)?(\w+?)Client\)\.(\w+)$", re.I)
_GRPC_STUB = re.compile(r"\.\(\*(\w+?)Client\)\.(\w+)$")
_SHIM_SERVICE = re.compile(
    r"(?:runtime/v2/runc/task|containerd-shim-runc-v2/task|runtime/v2/shim|pkg/shim)\.\(\*service\)\.([A-Z]\w*)$"
)
_INIT_METHOD = re.compile(r"(?:pkg/process|containerd-shim-runc-v2/process)\.\(\*Init\)\.(\w+)$")
_INIT_LOCKING = frozenset(
    {
        "Delete",
        "Update",
        "Status",
        "Kill",
        "Start",
        "Pause",
        "Resume",
        "Checkpoint",
        "Restore",
        "Exec",
        "SetExited",
        "Resize",
    }
)
_DOCKERD_DAEMON = re.compile(r"github\.com/(?:docker/docker|moby/moby(?:/v2)?)/daemon\.\(\*Daemon\)\.(\w+)$")
DOCKERD_DAEMON_METHOD = _DOCKERD_DAEMON
_DOCKERD_LOCKERS = frozenset(
    {
        "ContainerInspectCurrent",
        "containerInspectCurrent",
        "ContainerInspect",
        "handleContainerExit",
        "ProcessEvent",
        "killWithSignal",
        "containerStart",
        "containerPause",
        "containerUnpause",
        "ContainerRename",
        "update",
        "containerExtractToDir",
        "containerStatPath",
        "containerArchivePath",
        "reducePsContainer",
    }
)
_DOCKERD_SYMPTOM = frozenset({"ContainerInspectCurrent", "ContainerInspect", "Containers", "containerInspectCurrent"})

# Function suffix -> tags (any frame of the stack)
_TAG_MARKERS: tuple[tuple[str, str], ...] = (
    ("/server.handleContainerExit", "task-exit"),
    (".(*criService).handleContainerExit", "task-exit"),
    (".(*Kubelet).syncLoopIteration", "kubelet-syncloop"),
    (".(*eventMonitor).startContainerExitMonitor", "task-exit"),
    (".(*eventMonitor).handleEvent", "task-exit"),
    ("daemon.(*Daemon).handleContainerExit", "task-exit"),
    (".(*criService).UpdateContainerResources", "update-container-resources"),
    (".(*criService).updateContainerResources", "update-container-resources"),
    ("/server.updateContainerSpec", "update-container-resources"),
    ("content/local.(*writer).Commit", "content-commit"),
    ("metadata.(*namespacedWriter).Commit", "content-commit"),
    ("metadata.(*namespacedWriter).commit", "content-commit"),
    (".(*criService).PullImage", "image-pull"),
    (".(*CRIImageService).PullImage", "image-pull"),
    (".(*GRPCCRIImageService).PullImage", "image-pull"),
    ("containerd.(*Client).Pull", "image-pull"),
    ("containerd.(*Client).fetch", "image-pull"),
    ("remotes.FetchHandler", "image-pull"),
    ("remotes.fetch", "image-pull"),
    ("transfer/local.(*localTransferService).pull", "image-pull"),
    ("containerd.(*unpacker)", "unpack"),
    ("pkg/unpack.(*Unpacker)", "unpack"),
    ("core/unpack.(*Unpacker)", "unpack"),
    ("diff/apply.(*fsApplier).Apply", "unpack"),
    ("containerd.(*image).Unpack", "unpack"),
    ("rootfs.ApplyLayer", "unpack"),
    ("metadata.(*DB).GarbageCollect", "gc"),
    ("gc/scheduler.(*gcScheduler)", "gc"),
    ("github.com/containerd/go-runc.", "runc"),
    ("github.com/containerd/go-cni.", "cni"),
    ("github.com/containernetworking/cni/libcni.", "cni"),
    (".(*criService).setupPodNetwork", "cni"),
    (".(*criService).teardownPodNetwork", "cni"),
    ("mount.UnmountAll", "umount"),
    ("mount.UnmountRecursive", "umount"),
    ("mount.Unmount", "umount"),
    ("mount.unmount", "umount"),
    ("pkg/kubelet/pleg.(*GenericPLEG).relist", "kubelet-relist"),
    ("pkg/kubelet/pleg.(*GenericPLEG).Relist", "kubelet-relist"),
    ("pkg/kubelet/pleg.", "kubelet-pleg"),
    # the dockershim's network plugin manager: per-pod network lock, then the CNI plugin
    ("pkg/kubelet/dockershim/network.(*PluginManager).", "cni"),
    ("k8s.io/kubernetes/pkg/kubelet/network.(*PluginManager).", "cni"),  # kubelet <= 1.10
    ("k8s.io/kubernetes/pkg/kubelet/network/cni.", "cni"),
    ("pkg/kubelet/dockershim/network/cni.", "cni"),
    ("github.com/Mirantis/cri-dockerd/network.(*PluginManager).", "cni"),
    ("github.com/Mirantis/cri-dockerd/network/cni.", "cni"),
    ("github.com/cri-o/cri-o/internal/config/cnimgr.", "cni"),
    ("github.com/cri-o/ocicni/pkg/ocicni.", "cni"),
    # systemd over D-Bus (runc's and the kubelet's systemd cgroup driver, go-systemd)
    ("github.com/godbus/dbus", "systemd-dbus"),
    ("github.com/coreos/go-systemd/", "systemd-dbus"),
    # runc itself (libcontainer in the runc binary): `runc start` waits in exec() on exec.fifo
    ("github.com/opencontainers/runc/libcontainer.", "runc"),
    ("github.com/opencontainers/runc/libcontainer.(*linuxContainer).exec", "runc-exec-fifo"),
    # CRI-O's container state/op locks and containers/storage's file locks
    ("github.com/cri-o/cri-o/internal/oci.", "crio-oci"),
    ("github.com/containers/storage/pkg/lockfile.", "storage-lock"),
)


class FuncRole(NamedTuple):
    """What one function name means to the analysis (computed once per name)."""

    sync: str | None  # "mutex" | "rlock" | "wlock" | "sema" | "cond" | "waitgroup" for sync frames
    syscall_frame: bool
    syscall_wrapper: str | None
    runtime: bool  # a runtime.* frame that sits above the real wait site in system tracebacks
    cri_method: str | None
    cri_client: str | None
    tags: tuple[str, ...]
    lock: str | None  # lock class this function acquires when it waits right above a sync frame
    lock_label: str | None


_role_cache: dict[str, FuncRole] = {}


def func_role(name: str) -> FuncRole:
    role = _role_cache.get(name)
    if role is None:
        # classification sees the canonical import path (vendor/, /v2, stevvooe/ttrpc
        # folded: goroutines/names.py); displayed frames keep the original text
        role = _compute_role(canonical_func(name))
        _role_cache[name] = role
    return role


def _compute_role(name: str) -> FuncRole:
    sync: str | None = None
    if name.startswith(("sync.", "internal/sync.")):
        base = name.split(".", 1)[1]
        if base in ("(*RWMutex).RLock", "(*RWMutex).rUnlockSlow"):
            sync = "rlock"
        elif base == "(*RWMutex).Lock":
            sync = "wlock"
        elif base in ("(*Mutex).Lock", "(*Mutex).lockSlow"):
            sync = "mutex"
        elif base.startswith("runtime_Semacquire") or base.startswith("runtime_SemacquireWaitGroup"):
            sync = "waitgroup" if "WaitGroup" in base else "sema"
        elif base in ("runtime_notifyListWait", "(*Cond).Wait"):
            sync = "cond"
        elif base == "(*WaitGroup).Wait":
            sync = "waitgroup"
    syscall_frame = name in _SYSCALL_FRAMES
    wrapper = SYSCALL_BY_WRAPPER.get(name)
    runtime = name.startswith("runtime.") and not syscall_frame
    cri_method = None
    m = _CRI_SERVER.search(name)
    if m and m.group(1) in CRI_METHODS:
        cri_method = m.group(1)
    else:
        m = _CRI_HANDLER.search(name)
        if m and m.group(1) in CRI_METHODS:
            cri_method = m.group(1)
    cri_client = None
    m = _CRI_CLIENT.search(name)
    if m and m.group(1) in CRI_METHODS:
        cri_client = m.group(1)
    tags: list[str] = [tag for marker, tag in _TAG_MARKERS if marker in name]
    lock, label = _lock_of(name)
    return FuncRole(sync, syscall_frame, wrapper, runtime, cri_method, cri_client, tuple(tags), lock, label)


def _lock_of(name: str) -> tuple[str | None, str | None]:
    """The lock class a function takes (as the caller of a sync frame)."""
    if name.endswith(("store/container.(*statusStorage).Get", "store/container.(*statusStorage).UpdateSync")):
        return "status-lock", "container status lock"
    if name.endswith("store/container.(*statusStorage).Update"):
        return "status-lock", "container status lock"
    if "store/sandbox.(*statusStorage)." in name:
        return "sandbox-status-lock", "sandbox status lock"
    if name.endswith(("go.etcd.io/bbolt.(*DB).beginRWTx", "github.com/boltdb/bolt.(*DB).beginRWTx")):
        return "bbolt-writer", "bbolt writer lock"
    if name.endswith(("go.etcd.io/bbolt.(*DB).beginTx", "github.com/boltdb/bolt.(*DB).beginTx")):
        # a read transaction waits on the mmap lock: a writer remapping, or a leaked transaction
        return "bbolt-mmap-lock", "bbolt mmap lock (read transaction)"
    if name.endswith(("metadata.(*DB).Update", "metadata.(*DB).GarbageCollect", "metadata.(*DB).View")):
        return "metadata-wlock", "metadata DB wlock"
    m = _INIT_METHOD.search(name)
    if m and m.group(1) in _INIT_LOCKING:
        return "shim-init-mutex", "shim Init mutex (p.mu)"
    m = _DOCKERD_DAEMON.search(name)
    if m and m.group(1) in _DOCKERD_LOCKERS:
        return "dockerd-container-lock", "dockerd container lock"
    if _DOCKERD_STATE.search(name):
        return "dockerd-container-lock", "dockerd container state lock"
    if name.startswith("github.com/cri-o/cri-o/internal/oci.(*"):
        return "crio-container-lock", "CRI-O container state/op lock"
    if name.startswith("github.com/containers/storage/pkg/lockfile."):
        return "storage-lock", "containers/storage lock"
    return None, None


# the Docker Engine API client (vendored by the dockershim and cri-dockerd)
_DOCKER_CLIENT = re.compile(r"github\.com/(?:docker/docker|moby/moby)/client\.\(\*Client\)\.([A-Z]\w*)$")
# Docker API client method -> the dockerd Daemon methods that serve it
DOCKER_API_SERVERS: dict[str, tuple[str, ...]] = {
    "ContainerInspect": ("ContainerInspect", "ContainerInspectCurrent", "containerInspectCurrent"),
    "ContainerList": ("Containers", "reducePsContainer", "foldFilter"),
    "ContainerStop": ("ContainerStop", "containerStop"),
    "ContainerRemove": ("ContainerRm", "cleanupContainer"),
    "ContainerStart": ("ContainerStart", "containerStart"),
    "ContainerCreate": ("ContainerCreate", "containerCreate"),
    "ContainerKill": ("ContainerKill", "killWithSignal"),
    "ContainerStats": ("ContainerStats",),
    "ContainerExecCreate": ("ContainerExecCreate",),
    "ContainerExecInspect": ("ContainerExecInspect",),
}

# dockerd's container: State embeds a mutex (IsRunning, SetStopped, ...), Container.Lock
_DOCKERD_STATE = re.compile(r"github\.com/(?:docker/docker|moby/moby(?:/v2)?)/container\.\(\*(?:State|Container)\)\.")


# -- holders ------------------------------------------------------------------------------


class HoldRule(NamedTuple):
    suffix: str  # matched with str.endswith on the function name
    lock: str
    mode: str  # "write" | "read"
    confidence: float
    reason: str


HOLD_RULES: tuple[HoldRule, ...] = (
    HoldRule(
        "store/container.(*statusStorage).UpdateSync",
        "status-lock",
        "write",
        0.95,
        "statusStorage.UpdateSync runs its update with the status write lock held",
    ),
    HoldRule(
        "store/container.(*statusStorage).Update",
        "status-lock",
        "write",
        0.95,
        "statusStorage.Update runs its update with the status write lock held",
    ),
    HoldRule(
        "store/sandbox.(*statusStorage).Update",
        "sandbox-status-lock",
        "write",
        0.9,
        "sandbox statusStorage.Update runs with the sandbox status write lock held",
    ),
    HoldRule(
        ".(*criService).UpdateContainerResources.func1",
        "status-lock",
        "write",
        0.85,
        "the UpdateContainerResources closure runs inside Status.UpdateSync",
    ),
    HoldRule(
        ".(*criService).updateContainerResources",
        "status-lock",
        "write",
        0.8,
        "updateContainerResources runs inside Status.UpdateSync (the status write lock is held)",
    ),
    HoldRule(
        "/server.updateContainerSpec",
        "status-lock",
        "write",
        0.65,
        "updateContainerSpec is only called by UpdateContainerResources inside Status.UpdateSync "
        "(the UpdateSync frame is not visible: excerpt cut)",
    ),
    HoldRule(
        "go.etcd.io/bbolt.(*DB).Update",
        "bbolt-writer",
        "write",
        0.95,
        "bbolt DB.Update holds the writer lock from beginRWTx until its transaction closes",
    ),
    HoldRule(
        "go.etcd.io/bbolt.(*Tx).Commit",
        "bbolt-writer",
        "write",
        0.95,
        "a writable bbolt Tx holds the writer lock until Commit returns",
    ),
    HoldRule(
        "go.etcd.io/bbolt.(*DB).Batch",
        "bbolt-writer",
        "write",
        0.6,
        "bbolt DB.Batch runs its calls in a writable transaction",
    ),
    HoldRule(
        "github.com/cri-o/cri-o/internal/oci.(*runtimeOCI).StopContainer",
        "crio-stop-lock",
        "write",
        0.7,
        "CRI-O's runtimeOCI.StopContainer holds the container's stop lock while it waits out the stop timeout "
        "(WaitOnStopTimeout; cri-o#8030, fixed by cri-o#8300)",
    ),
    HoldRule(
        "metadata.(*DB).GarbageCollect",
        "metadata-wlock",
        "write",
        0.9,
        "metadata GarbageCollect holds the wlock write lock for its mark phase",
    ),
    HoldRule(
        "metadata.(*DB).Update",
        "metadata-wlock",
        "read",
        0.9,
        "metadata DB.Update holds the wlock read lock around its bbolt transaction",
    ),
)


class Hold(NamedTuple):
    lock: str
    mode: str
    frame: int  # frame whose receiver identifies the lock instance
    confidence: float
    reason: str


# -- per-stack classification ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackInfo:
    kind: WaitKind
    site: int  # index of the frame where the goroutine waits (the lock taker, the syscall wrapper, ...)
    lock: str | None = None
    lock_label: str | None = None
    id_frames: tuple[int, ...] = ()  # frames whose accurate receivers identify the lock instance
    syscall: str | None = None  # syscall name from the wrapper (when the number is not readable)
    syscall_frame: int = -1
    holds: tuple[Hold, ...] = ()
    cri_method: str | None = None
    cri_client: str | None = None
    call: str | None = None  # "Task.Delete" for ttrpc, "RuntimeService.ListContainers" for gRPC
    serving: str | None = None  # shim method served ("Delete")
    tags: frozenset[str] = field(default_factory=frozenset)
    symptom: bool = False
    description: str = ""


_STATE_KIND = {
    "chan receive": WaitKind.CHAN,
    "chan send": WaitKind.CHAN,
    "chan receive (nil chan)": WaitKind.CHAN,
    "chan send (nil chan)": WaitKind.CHAN,
    "select": WaitKind.SELECT,
    "select (no cases)": WaitKind.SELECT,
    "IO wait": WaitKind.IO,
    "sleep": WaitKind.SLEEP,
    "sync.Cond.Wait": WaitKind.COND,
    "sync.WaitGroup.Wait": WaitKind.WAITGROUP,
    "running": WaitKind.RUNNING,
    "runnable": WaitKind.RUNNING,
    "syscall": WaitKind.SYSCALL,
    "sync.Mutex.Lock": WaitKind.MUTEX,
    "sync.RWMutex.RLock": WaitKind.RWMUTEX_READ,
    "sync.RWMutex.Lock": WaitKind.RWMUTEX_WRITE,
    "semacquire": WaitKind.MUTEX,
}


def _service_name(type_name: str) -> str:
    t = type_name
    if t.lower().startswith("ttrpc"):
        t = t[5:]
    return t[:1].upper() + t[1:]


def classify(state: str, stack: tuple[Loc, ...]) -> StackInfo:
    """Classify one distinct (state, stack). Function names are read canonical (no `vendor/`,
    `/v2/`, `stevvooe/ttrpc`), so one table serves every version; frame indexes are kept."""
    stack = tuple(_tuple_new(type(loc), (canonical_func(loc[0]), *loc[1:])) for loc in stack)
    n = len(stack)
    roles = [func_role(loc[0]) for loc in stack]
    tags: set[str] = set()
    for r in roles:
        tags.update(r.tags)
    cri_method = next((r.cri_method for r in roles if r.cri_method), None)
    cri_client = next((r.cri_client for r in roles if r.cri_client), None)
    symptom = False
    if cri_method is None:
        for loc in stack:
            m = _OTHER_CRI_SERVER.search(loc[0])
            if m and (m.group(1) or m.group(2)) in CRI_METHODS:
                cri_method = m.group(1) or m.group(2)
                break
    if cri_method:
        tags.add(f"cri:{cri_method}")
        symptom = cri_method in SYMPTOM_CRI
    if cri_client:
        tags.add(f"cri:{cri_client}")
    if "kubelet-relist" in tags:
        symptom = True
    for loc in stack:
        m = _DOCKERD_DAEMON.search(loc[0])
        if m and m.group(1) in _DOCKERD_SYMPTOM:
            symptom = True
            tags.add(f"dockerd:{m.group(1)}")
    serving = None
    for loc in stack:
        m = _SHIM_SERVICE.search(loc[0])
        if m:
            serving = m.group(1)
            tags.add(f"shim:{serving}")
            break
    # skip runtime frames printed above the real wait in system tracebacks
    top = 0
    while top < n and roles[top].runtime:
        top += 1

    kind = _STATE_KIND.get(state, WaitKind.UNKNOWN)
    site = top
    lock = lock_label = None
    id_frames: tuple[int, ...] = ()
    syscall = None
    syscall_frame = -1
    call = None
    description = state

    # 1. lock waits: a run of sync frames at the top
    i = top
    outer_sync = None
    while i < n and roles[i].sync is not None:
        outer_sync = roles[i].sync
        i += 1
    if outer_sync is not None and outer_sync not in ("cond", "waitgroup"):
        site = i if i < n else n - 1
        if outer_sync == "rlock":
            kind = WaitKind.RWMUTEX_READ
        elif outer_sync == "wlock":
            kind = WaitKind.RWMUTEX_WRITE
        elif outer_sync == "mutex":
            kind = WaitKind.MUTEX
        elif state in ("sync.RWMutex.RLock", "sync.RWMutex.Lock", "sync.Mutex.Lock"):
            kind = _STATE_KIND[state]
        else:
            kind = WaitKind.MUTEX
        if i < n:
            lock, lock_label = roles[i].lock, roles[i].lock_label
            id_frames = (i,)
            if lock == "bbolt-writer":
                kind = WaitKind.BBOLT_WRITER
                # the containerd metadata DB that owns this bbolt DB identifies it too
                id_frames = (i, *(j for j in range(i + 1, n) if stack[j][0].endswith("metadata.(*DB).Update")))
            if lock == "dockerd-container-lock" and _DOCKERD_DAEMON.search(stack[i][0]):
                id_frames = ()  # the Daemon receiver is shared by every container lock
            if lock is None:
                lock_label = f"lock taken in {_short(stack[i][0])}"
        description = f"waits for {lock_label or 'a lock'}"
    elif outer_sync == "cond":
        kind = WaitKind.COND
        site = i if i < n else top
    elif outer_sync == "waitgroup":
        kind = WaitKind.WAITGROUP
        site = i if i < n else top
    # 2. syscalls
    if state == "syscall" or any(r.syscall_frame for r in roles[top : top + 2]):
        j = top
        while j < n and roles[j].syscall_frame:
            j += 1
        syscall_frame = top if top < n and roles[top].syscall_frame else -1
        k = j
        while k < n and syscall is None:
            syscall = roles[k].syscall_wrapper
            k += 1
            if k - j > 6:
                break
        site = j if j < n else top
        if state == "syscall" or syscall_frame >= 0:
            kind = WaitKind.SYSCALL
            if syscall == "fsync":
                kind = WaitKind.FSYNC
            elif syscall == "fdatasync":
                kind = WaitKind.FDATASYNC
            if any(loc[0].startswith("go.etcd.io/bbolt.(*Tx).") for loc in stack[:12]) and syscall in (
                "fdatasync",
                "pwrite64",
                "fsync",
                None,
            ):
                kind = WaitKind.BBOLT_COMMIT_IO
                tags.add("bbolt-writer")
            description = f"in syscall {syscall}" if syscall else "in a syscall"
        if stack and stack[0][0] == "os/signal.signal_recv":
            kind = WaitKind.IDLE
    # 3. RPC clients
    funcs = [loc[0] for loc in stack]
    if any(f in _TTRPC_CLIENT_FRAMES for f in funcs):
        if kind == WaitKind.IO and "github.com/containerd/ttrpc.(*channel).send" in funcs:
            # the request cannot even be written: the shim does not read its socket (ttrpc#174)
            tags.add("ttrpc-send-blocked")
        last = max(j for j, f in enumerate(funcs) if f.startswith("github.com/containerd/ttrpc."))
        if last + 1 < n:
            m = _TTRPC_STUB.search(funcs[last + 1])
            if m:
                call = f"{_service_name(m.group(1))}.{m.group(2)}"
                tags.add(f"ttrpc:{call}")
            site = last + 1
        kind = WaitKind.TTRPC_CALL
        description = f"waits for ttrpc {call or 'call'} (shim)"
    elif any(f in ("google.golang.org/grpc.(*ClientConn).Invoke", "google.golang.org/grpc.invoke") for f in funcs):
        last = max(j for j, f in enumerate(funcs) if f.startswith("google.golang.org/grpc."))
        if last + 1 < n:
            m = _GRPC_STUB.search(funcs[last + 1])
            if m:
                call = f"{_service_name(m.group(1))}.{m.group(2)}"
                if m.group(2) not in CRI_METHODS or not cri_client:
                    tags.add(f"grpc:{call}")
            site = last + 1
        kind = WaitKind.GRPC_CALL
        description = f"waits for gRPC {call or 'call'}"
    elif any(
        f.startswith("net/http.(*persistConn).roundTrip") or f == "net/http.(*Transport).roundTrip" for f in funcs
    ):
        # the Docker Engine API client (docker/client) over HTTP: the call is the client method
        api = next((m.group(1) for f in funcs if (m := _DOCKER_CLIENT.search(f))), None)
        if api is not None:
            call = f"Docker.{api}"
            tags.add(f"docker-api:{api}")
            kind = WaitKind.HTTP_CALL
            site = next(j for j, f in enumerate(funcs) if _DOCKER_CLIENT.search(f))
            description = f"waits for the Docker API {api} (dockerd)"
    if cri_method and kind in (WaitKind.UNKNOWN, WaitKind.SELECT):
        kind = WaitKind.GRPC_HANDLER
    if kind in (WaitKind.IO, WaitKind.SELECT, WaitKind.CHAN) and _is_background(stack):
        kind = WaitKind.IDLE if kind == WaitKind.IO and not cri_method else kind
    if state in ("idle", "GC worker (idle)", "finalizer wait", "force gc (idle)", "GC sweep wait", "GC scavenge wait"):
        kind = WaitKind.IDLE
    # what this stack holds while it runs
    holds = _holds(stack, site, lock, kind)
    for h in holds:
        tags.add(_LOCK_TAG.get(h.lock, h.lock))
    if lock:
        tags.add(_LOCK_TAG.get(lock, lock))
    if syscall:
        tags.add(f"syscall:{syscall}")
        if syscall in ("fsync", "fdatasync"):
            tags.add(syscall)
        if syscall == "umount2":
            tags.add("umount")
    if symptom:
        tags.add("symptom")
    return StackInfo(
        kind=kind,
        site=min(site, n - 1) if n else 0,
        lock=lock,
        lock_label=lock_label,
        id_frames=id_frames,
        syscall=syscall,
        syscall_frame=syscall_frame,
        holds=holds,
        cri_method=cri_method,
        cri_client=cri_client,
        call=call,
        serving=serving,
        tags=frozenset(tags),
        symptom=symptom,
        description=description,
    )


_LOCK_TAG = {
    "status-lock": "status-lock",
    "sandbox-status-lock": "status-lock",
    "bbolt-writer": "bbolt-writer",
    "bbolt-mmap-lock": "bbolt-lock",
    "metadata-wlock": "metadata-wlock",
    "shim-init-mutex": "shim-init-mutex",
    "dockerd-container-lock": "dockerd-container-lock",
    "crio-container-lock": "crio-container-lock",
    "storage-lock": "storage-lock",
    "crio-stop-lock": "crio-stop-lock",
}


def _is_background(stack: tuple[Loc, ...]) -> bool:
    """Accept loops and poll loops: blocked by design, never a stall by themselves."""
    for loc in stack[:8]:
        f = loc[0]
        if f.endswith((".(*netFD).accept", "(*TCPListener).accept", "(*UnixListener).accept", "(*FD).Accept")):
            return True
    return False


def _holds(stack: tuple[Loc, ...], site: int, waiting_lock: str | None, kind: WaitKind) -> tuple[Hold, ...]:
    out: list[Hold] = []
    seen: set[str] = set()
    n = len(stack)
    for j in range(n):
        f = stack[j][0]
        for rule in HOLD_RULES:
            if not f.endswith(rule.suffix):
                continue
            # a frame that is itself waiting to take this lock does not hold it
            if waiting_lock == rule.lock and j == site:
                continue
            if rule.lock == "bbolt-writer" and kind == WaitKind.BBOLT_WRITER:
                continue
            out.append(Hold(rule.lock, rule.mode, j, rule.confidence, rule.reason))
        m = _INIT_METHOD.search(f)
        if (
            m is not None
            and m.group(1) in _INIT_LOCKING
            and "shim-init-mutex" not in seen
            and not (waiting_lock == "shim-init-mutex" and j == site)
        ):
            # Delete -> (*stoppedState).Delete -> delete: p.mu is held by the outermost Init method
            outer, method = j, m.group(1)
            for k in range(j + 1, min(n, j + 4)):
                mk = _INIT_METHOD.search(stack[k][0])
                if mk and mk.group(1) in _INIT_LOCKING:
                    outer, method = k, mk.group(1)
            seen.add("shim-init-mutex")
            why = f"the runc shim's Init.{method} holds the process mutex p.mu while it runs"
            out.append(Hold("shim-init-mutex", "write", outer, 0.85, why))
        m = _DOCKERD_DAEMON.search(f)
        if (
            m is not None
            and m.group(1) in _DOCKERD_LOCKERS
            and "dockerd-container-lock" not in seen
            and not (waiting_lock == "dockerd-container-lock" and j == site)
        ):
            seen.add("dockerd-container-lock")
            why = f"dockerd's Daemon.{m.group(1)} takes the container lock and holds it while it runs"
            out.append(Hold("dockerd-container-lock", "write", j, 0.7, why))
    # one hold per lock: the most certain rule (UpdateSync covers updateContainerSpec when visible)
    best: dict[str, Hold] = {}
    for h in out:
        cur = best.get(h.lock)
        if cur is None or h.confidence > cur.confidence:
            best[h.lock] = h
    return tuple(best.values())


def _short(func: str) -> str:
    slash = func.rfind("/", 0, func.find(".(") if ".(" in func else len(func))
    return func[slash + 1 :]


# -- per-goroutine values ---------------------------------------------------------------------


def decode_syscall(g: Goroutine, info: StackInfo) -> str | None:
    """The syscall name: from the accurate trap number of `syscall.Syscall(0xa6, ...)`,
    else from the wrapper frame (e.g. unix.Unmount) when Go printed `0x7c?`."""
    if info.syscall_frame >= 0:
        a = g.args[info.syscall_frame]
        end = a.find(",")
        word = (a if end < 0 else a[:end]).strip()
        if word.startswith("0x") and not word.endswith("?"):
            try:
                name = SYSCALLS_AMD64.get(int(word, 16))
            except ValueError:
                name = None
            if name:
                return name
    return info.syscall


def lock_identity(g: Goroutine, frames: tuple[int, ...]) -> tuple[str, ...]:
    """Accurate receiver addresses (`type@0x...`) of the frames identifying a lock."""
    out: list[str] = []
    for j in frames:
        if 0 <= j < len(g.stack):
            a = g.args[j]
            if not a or a[0] != "0":
                continue
            end = a.find(",")
            word = (a if end < 0 else a[:end]).strip()
            if word.startswith("0x") and not word.endswith("?"):
                out.append(f"{_receiver_type(g.stack[j][0])}@{word}")
    return tuple(out)


def _receiver_type(func: str) -> str:
    """`.../store/container.(*statusStorage).Get` -> `container.statusStorage`."""
    short = _short(func)
    if ".(*" in short:
        pkg, _, rest = short.partition(".(*")
        return f"{pkg}.{rest.split(')', 1)[0]}"
    return short.rsplit(".", 1)[0]


PROCESS_OF_TAG = {CONTAINERD: CONTAINERD, SHIM: SHIM, KUBELET: KUBELET, DOCKERD: DOCKERD}
