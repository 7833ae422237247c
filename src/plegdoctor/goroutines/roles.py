"""What a function name means to the wait analysis, computed once per distinct name
(`func_role`), and the knowledge tables behind it: the CRI methods and which of them are
symptoms, the CRI/ttrpc/gRPC/shim/dockerd/CRI-O function patterns, `TAG_MARKERS` (function
text -> tag), the lock each lock-taking function takes (`lock_of`), and `HOLD_RULES`
(functions known to hold a lock while they run, with sources in facts.md:
statusStorage.UpdateSync/Update, the UpdateContainerResources closure, bbolt DB.Update /
Tx.Commit past beginRWTx, metadata GarbageCollect, the shim's Init methods, dockerd's
container-lock takers). Names are matched canonical (goroutines/names.py).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from plegdoctor.goroutines.names import canonical_func
from plegdoctor.goroutines.syscalls import SYSCALL_BY_WRAPPER, SYSCALL_FRAMES
from plegdoctor.goroutines.tags import Tag

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
TTRPC_CLIENT_FRAMES = frozenset(
    {
        "github.com/containerd/ttrpc.(*Client).dispatch",
        "github.com/containerd/ttrpc.(*Client).Call",
        "github.com/containerd/ttrpc.(*Client).createStream",
        "github.com/containerd/ttrpc.(*Client).send",
    }
)
OTHER_CRI_SERVER = re.compile(
    r"(?:k8s\.io/kubernetes/pkg/kubelet/dockershim|github\.com/Mirantis/cri-dockerd/core)\.\(\*dockerService\)"
    r"\.([A-Z]\w*)$|github\.com/cri-o/cri-o/server\.\(\*Server\)\.([A-Z]\w*)$"
)
_CRI_HANDLER = re.compile(r"k8s\.io/cri-api/pkg/apis/runtime/v1(?:alpha2)?\._(?:Runtime|Image)Service_(\w+)_Handler")
_CRI_CLIENT = re.compile(
    r"(?:k8s\.io/cri-api/pkg/apis/runtime/v1(?:alpha2)?\.\(\*(?:runtime|image)ServiceClient\)"
    r"|k8s\.io/(?:kubernetes/pkg/kubelet/cri/remote|cri-client/pkg)\.\(\*remote(?:Runtime|Image)Service\))\.(\w+)$"
)
TTRPC_STUB = re.compile(r"\.\(\*(?:ttrpc)?(\w+?)Client\)\.(\w+)$", re.I)
GRPC_STUB = re.compile(r"\.\(\*(\w+?)Client\)\.(\w+)$")
SHIM_SERVICE = re.compile(
    r"(?:runtime/v2/runc/task|containerd-shim-runc-v2/task|runtime/v2/shim|pkg/shim)\.\(\*service\)\.([A-Z]\w*)$"
)
INIT_METHOD = re.compile(r"(?:pkg/process|containerd-shim-runc-v2/process)\.\(\*Init\)\.(\w+)$")
INIT_LOCKING = frozenset(
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
DOCKERD_DAEMON = re.compile(r"github\.com/(?:docker/docker|moby/moby(?:/v2)?)/daemon\.\(\*Daemon\)\.(\w+)$")
DOCKERD_DAEMON_METHOD = DOCKERD_DAEMON
DOCKERD_LOCKERS = frozenset(
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
DOCKERD_SYMPTOM = frozenset({"ContainerInspectCurrent", "ContainerInspect", "Containers", "containerInspectCurrent"})

# Function suffix -> tags (any frame of the stack)
TAG_MARKERS: tuple[tuple[str, Tag], ...] = (
    ("/server.handleContainerExit", Tag.TASK_EXIT),
    (".(*criService).handleContainerExit", Tag.TASK_EXIT),
    (".(*Kubelet).syncLoopIteration", Tag.KUBELET_SYNCLOOP),
    (".(*eventMonitor).startContainerExitMonitor", Tag.TASK_EXIT),
    (".(*eventMonitor).handleEvent", Tag.TASK_EXIT),
    ("daemon.(*Daemon).handleContainerExit", Tag.TASK_EXIT),
    (".(*criService).UpdateContainerResources", Tag.UPDATE_CONTAINER_RESOURCES),
    (".(*criService).updateContainerResources", Tag.UPDATE_CONTAINER_RESOURCES),
    ("/server.updateContainerSpec", Tag.UPDATE_CONTAINER_RESOURCES),
    ("content/local.(*writer).Commit", Tag.CONTENT_COMMIT),
    ("metadata.(*namespacedWriter).Commit", Tag.CONTENT_COMMIT),
    ("metadata.(*namespacedWriter).commit", Tag.CONTENT_COMMIT),
    (".(*criService).PullImage", Tag.IMAGE_PULL),
    (".(*CRIImageService).PullImage", Tag.IMAGE_PULL),
    (".(*GRPCCRIImageService).PullImage", Tag.IMAGE_PULL),
    ("containerd.(*Client).Pull", Tag.IMAGE_PULL),
    ("containerd.(*Client).fetch", Tag.IMAGE_PULL),
    ("remotes.FetchHandler", Tag.IMAGE_PULL),
    ("remotes.fetch", Tag.IMAGE_PULL),
    ("transfer/local.(*localTransferService).pull", Tag.IMAGE_PULL),
    ("containerd.(*unpacker)", Tag.UNPACK),
    ("pkg/unpack.(*Unpacker)", Tag.UNPACK),
    ("core/unpack.(*Unpacker)", Tag.UNPACK),
    ("diff/apply.(*fsApplier).Apply", Tag.UNPACK),
    ("containerd.(*image).Unpack", Tag.UNPACK),
    ("rootfs.ApplyLayer", Tag.UNPACK),
    ("metadata.(*DB).GarbageCollect", Tag.GC),
    ("gc/scheduler.(*gcScheduler)", Tag.GC),
    ("github.com/containerd/go-runc.", Tag.RUNC),
    ("github.com/containerd/go-cni.", Tag.CNI),
    ("github.com/containernetworking/cni/libcni.", Tag.CNI),
    (".(*criService).setupPodNetwork", Tag.CNI),
    (".(*criService).teardownPodNetwork", Tag.CNI),
    ("mount.UnmountAll", Tag.UMOUNT),
    ("mount.UnmountRecursive", Tag.UMOUNT),
    ("mount.Unmount", Tag.UMOUNT),
    ("mount.unmount", Tag.UMOUNT),
    ("pkg/kubelet/pleg.(*GenericPLEG).relist", Tag.KUBELET_RELIST),
    ("pkg/kubelet/pleg.(*GenericPLEG).Relist", Tag.KUBELET_RELIST),
    ("pkg/kubelet/pleg.", Tag.KUBELET_PLEG),
    # the dockershim's network plugin manager: per-pod network lock, then the CNI plugin
    ("pkg/kubelet/dockershim/network.(*PluginManager).", Tag.CNI),
    ("k8s.io/kubernetes/pkg/kubelet/network.(*PluginManager).", Tag.CNI),  # kubelet <= 1.10
    ("k8s.io/kubernetes/pkg/kubelet/network/cni.", Tag.CNI),
    ("pkg/kubelet/dockershim/network/cni.", Tag.CNI),
    ("github.com/Mirantis/cri-dockerd/network.(*PluginManager).", Tag.CNI),
    ("github.com/Mirantis/cri-dockerd/network/cni.", Tag.CNI),
    ("github.com/cri-o/cri-o/internal/config/cnimgr.", Tag.CNI),
    ("github.com/cri-o/ocicni/pkg/ocicni.", Tag.CNI),
    # systemd over D-Bus (runc's and the kubelet's systemd cgroup driver, go-systemd)
    ("github.com/godbus/dbus", Tag.SYSTEMD_DBUS),
    ("github.com/coreos/go-systemd/", Tag.SYSTEMD_DBUS),
    # runc itself (libcontainer in the runc binary): `runc start` waits in exec() on exec.fifo
    ("github.com/opencontainers/runc/libcontainer.", Tag.RUNC),
    ("github.com/opencontainers/runc/libcontainer.(*linuxContainer).exec", Tag.RUNC_EXEC_FIFO),
    # CRI-O's container state/op locks and containers/storage's file locks
    ("github.com/cri-o/cri-o/internal/oci.", Tag.CRIO_OCI),
    ("github.com/containers/storage/pkg/lockfile.", Tag.STORAGE_LOCK),
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
    syscall_frame = name in SYSCALL_FRAMES
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
    tags: list[str] = [tag for marker, tag in TAG_MARKERS if marker in name]
    lock, label = lock_of(name)
    return FuncRole(sync, syscall_frame, wrapper, runtime, cri_method, cri_client, tuple(tags), lock, label)


def lock_of(name: str) -> tuple[str | None, str | None]:
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
    m = INIT_METHOD.search(name)
    if m and m.group(1) in INIT_LOCKING:
        return "shim-init-mutex", "shim Init mutex (p.mu)"
    m = DOCKERD_DAEMON.search(name)
    if m and m.group(1) in DOCKERD_LOCKERS:
        return "dockerd-container-lock", "dockerd container lock"
    if _DOCKERD_STATE.search(name):
        return "dockerd-container-lock", "dockerd container state lock"
    if name.startswith("github.com/cri-o/cri-o/internal/oci.(*"):
        return "crio-container-lock", "CRI-O container state/op lock"
    if name.startswith("github.com/containers/storage/pkg/lockfile."):
        return "storage-lock", "containers/storage lock"
    return None, None


# the Docker Engine API client (vendored by the dockershim and cri-dockerd)
DOCKER_CLIENT = re.compile(r"github\.com/(?:docker/docker|moby/moby)/client\.\(\*Client\)\.([A-Z]\w*)$")
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
