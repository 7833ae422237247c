"""The vocabulary of the wait analysis: `WaitKind` (what a goroutine waits for) and `Tag`
(what a stack is doing; rules and the generic layer match on them). Both are StrEnums, so a
member is its string: JSON, sorting and `"status-lock" in tags` see the plain text.

Tags (ChainLink.tags; rules match on them). Fixed tags are members; parameterised ones are
a prefix member followed by a name (`Tag.CRI + "ListContainers"` is `cri:ListContainers`):
  cri:<Method>                 a CRI handler (containerd) or CRI client call (kubelet)
  status-lock                  waits for / holds a CRI container or sandbox status RWMutex
  update-container-resources   inside CRI UpdateContainerResources
  task-exit                    containerd's exit monitor (handleContainerExit), dockerd exit handling
  bbolt-writer                 waits for / holds bbolt's writer lock
  bbolt-lock                   waits for bbolt's mmap lock (a read transaction)
  metadata-wlock               waits for / holds containerd's metadata DB wlock (GC gate)
  gc                           garbage collection
  content-commit               content store writer Commit (image pull)
  image-pull, unpack           pull / unpack code paths
  fsync, fdatasync, umount     the syscall in progress
  syscall:<name>               any syscall, decoded (amd64 numbers) or from its wrapper
  ttrpc:<Service>.<Method>     a ttrpc client call (containerd -> shim)
  ttrpc-send-blocked           a ttrpc request that cannot even be written (the shim does not read)
  grpc:<Service>.<Method>      a gRPC client call (other than CRI)
  docker-api:<Method>          a Docker Engine API client call
  dockerd:<Method>             a dockerd Daemon method that users wait on (inspect, list)
  shim:<Method>                a shim goroutine serving a task method (shim:Delete, shim:Update)
  shim-init-mutex              waits for / holds the runc shim's Init process mutex (p.mu)
  runc, runc-exec-fifo         inside go-runc or libcontainer; runc start waiting on exec.fifo
  cni                          inside go-cni / libcni (CNI ADD/DEL), or a kubelet network plugin
  systemd-dbus                 talking to systemd over D-Bus
  dockerd-container-lock       waits for / holds a dockerd container lock
  crio-oci, crio-container-lock, crio-stop-lock, storage-lock   CRI-O and containers/storage locks
  kubelet-relist, kubelet-pleg the PLEG relist goroutine / PLEG code
  kubelet-syncloop             the kubelet sync loop (the PLEG channel's reader)
  symptom                      a goroutine whose stall is what users see (CRI list/status
                               handlers, kubelet relist, dockerd inspect)
"""

from __future__ import annotations

from enum import StrEnum


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


class Tag(StrEnum):
    """Every tag a stack can carry (see the module docstring)."""

    # prefixes of parameterised tags
    CRI = "cri:"
    SYSCALL = "syscall:"
    TTRPC = "ttrpc:"
    GRPC = "grpc:"
    DOCKER_API = "docker-api:"
    DOCKERD = "dockerd:"
    SHIM = "shim:"
    # fixed tags
    STATUS_LOCK = "status-lock"
    UPDATE_CONTAINER_RESOURCES = "update-container-resources"
    TASK_EXIT = "task-exit"
    BBOLT_WRITER = "bbolt-writer"
    BBOLT_LOCK = "bbolt-lock"
    METADATA_WLOCK = "metadata-wlock"
    GC = "gc"
    CONTENT_COMMIT = "content-commit"
    IMAGE_PULL = "image-pull"
    UNPACK = "unpack"
    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    UMOUNT = "umount"
    TTRPC_SEND_BLOCKED = "ttrpc-send-blocked"
    SHIM_INIT_MUTEX = "shim-init-mutex"
    RUNC = "runc"
    RUNC_EXEC_FIFO = "runc-exec-fifo"
    CNI = "cni"
    SYSTEMD_DBUS = "systemd-dbus"
    DOCKERD_CONTAINER_LOCK = "dockerd-container-lock"
    CRIO_OCI = "crio-oci"
    CRIO_CONTAINER_LOCK = "crio-container-lock"
    CRIO_STOP_LOCK = "crio-stop-lock"
    STORAGE_LOCK = "storage-lock"
    KUBELET_RELIST = "kubelet-relist"
    KUBELET_PLEG = "kubelet-pleg"
    KUBELET_SYNCLOOP = "kubelet-syncloop"
    SYMPTOM = "symptom"

    def of(self, name: str) -> str:
        """A parameterised tag: `Tag.CRI.of("ListContainers")` -> `cri:ListContainers`."""
        return self.value + name
