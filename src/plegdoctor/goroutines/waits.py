"""What each blocked goroutine waits for: `classify` turns one distinct (state, stack) into a
`StackInfo` (model.py), and `lock_identity` names the lock instance a goroutine waits on.

Classification is done once per distinct (state, stack) — a 100 000-goroutine dump has a
few hundred — and gives the wait kind, the frame where the wait happens, the lock class and
the frames whose receivers identify the lock, the locks this stack *holds* while it runs
(roles.HOLD_RULES), the CRI method it serves, the ttrpc/gRPC call it makes, and tags
(tags.Tag).

Wait kinds (ChainLink.kind, tags.WaitKind): mutex, rwmutex-read, rwmutex-write,
bbolt-writer (waiting for bbolt's single writer lock in beginRWTx), bbolt-commit-io (bbolt
Tx.Commit in pwrite / fdatasync), fsync, fdatasync, syscall (others, named by number or
wrapper), ttrpc-call (containerd -> shim), grpc-call (client side, e.g. kubelet -> CRI),
http-call (Docker API client), grpc-handler (a server handler with no deeper wait found),
chan, select, io (net/file poller), sleep, cond, waitgroup, running, idle
(runtime/background), unknown.

Holder inference: a dump never says who holds a mutex. `roles.HOLD_RULES` lists functions
known to hold a lock while they run. A generic rule (analysis.py) adds: a goroutine inside a
method of the same receiver (same accurate address) as the waiter's lock site, not itself
waiting there, probably holds it.
"""

from __future__ import annotations

from plegdoctor.goroutines.model import (
    CONTAINERD,
    DOCKERD,
    KUBELET,
    SHIM,
    Goroutine,
    Hold,
    Loc,
    StackInfo,
    short_func,
)
from plegdoctor.goroutines.names import canonical_func
from plegdoctor.goroutines.roles import (
    CRI_METHODS,
    DOCKER_CLIENT,
    DOCKERD_DAEMON,
    DOCKERD_LOCKERS,
    DOCKERD_SYMPTOM,
    GRPC_STUB,
    HOLD_RULES,
    INIT_LOCKING,
    INIT_METHOD,
    OTHER_CRI_SERVER,
    SHIM_SERVICE,
    SYMPTOM_CRI,
    TTRPC_CLIENT_FRAMES,
    TTRPC_STUB,
    func_role,
)
from plegdoctor.goroutines.tags import LOCK_KINDS, Tag, WaitKind

__all__ = ["LOCK_KINDS", "WaitKind", "classify", "lock_identity", "receiver_type"]

_tuple_new = tuple.__new__


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
            m = OTHER_CRI_SERVER.search(loc[0])
            if m and (m.group(1) or m.group(2)) in CRI_METHODS:
                cri_method = m.group(1) or m.group(2)
                break
    if cri_method:
        tags.add(Tag.CRI.of(cri_method))
        symptom = cri_method in SYMPTOM_CRI
    if cri_client:
        tags.add(Tag.CRI.of(cri_client))
    if Tag.KUBELET_RELIST in tags:
        symptom = True
    for loc in stack:
        m = DOCKERD_DAEMON.search(loc[0])
        if m and m.group(1) in DOCKERD_SYMPTOM:
            symptom = True
            tags.add(Tag.DOCKERD.of(m.group(1)))
    serving = None
    for loc in stack:
        m = SHIM_SERVICE.search(loc[0])
        if m:
            serving = m.group(1)
            tags.add(Tag.SHIM.of(serving))
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
            if lock == "dockerd-container-lock" and DOCKERD_DAEMON.search(stack[i][0]):
                id_frames = ()  # the Daemon receiver is shared by every container lock
            if lock is None:
                lock_label = f"lock taken in {short_func(stack[i][0])}"
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
                tags.add(Tag.BBOLT_WRITER)
            description = f"in syscall {syscall}" if syscall else "in a syscall"
        if stack and stack[0][0] == "os/signal.signal_recv":
            kind = WaitKind.IDLE
    # 3. RPC clients
    funcs = [loc[0] for loc in stack]
    if any(f in TTRPC_CLIENT_FRAMES for f in funcs):
        if kind == WaitKind.IO and "github.com/containerd/ttrpc.(*channel).send" in funcs:
            # the request cannot even be written: the shim does not read its socket (ttrpc#174)
            tags.add(Tag.TTRPC_SEND_BLOCKED)
        last = max(j for j, f in enumerate(funcs) if f.startswith("github.com/containerd/ttrpc."))
        if last + 1 < n:
            m = TTRPC_STUB.search(funcs[last + 1])
            if m:
                call = f"{_service_name(m.group(1))}.{m.group(2)}"
                tags.add(Tag.TTRPC.of(call))
            site = last + 1
        kind = WaitKind.TTRPC_CALL
        description = f"waits for ttrpc {call or 'call'} (shim)"
    elif any(f in ("google.golang.org/grpc.(*ClientConn).Invoke", "google.golang.org/grpc.invoke") for f in funcs):
        last = max(j for j, f in enumerate(funcs) if f.startswith("google.golang.org/grpc."))
        if last + 1 < n:
            m = GRPC_STUB.search(funcs[last + 1])
            if m:
                call = f"{_service_name(m.group(1))}.{m.group(2)}"
                if m.group(2) not in CRI_METHODS or not cri_client:
                    tags.add(Tag.GRPC.of(call))
            site = last + 1
        kind = WaitKind.GRPC_CALL
        description = f"waits for gRPC {call or 'call'}"
    elif any(
        f.startswith("net/http.(*persistConn).roundTrip") or f == "net/http.(*Transport).roundTrip" for f in funcs
    ):
        # the Docker Engine API client (docker/client) over HTTP: the call is the client method
        api = next((m.group(1) for f in funcs if (m := DOCKER_CLIENT.search(f))), None)
        if api is not None:
            call = f"Docker.{api}"
            tags.add(Tag.DOCKER_API.of(api))
            kind = WaitKind.HTTP_CALL
            site = next(j for j, f in enumerate(funcs) if DOCKER_CLIENT.search(f))
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
        tags.add(Tag.SYSCALL.of(syscall))
        if syscall in ("fsync", "fdatasync"):
            tags.add(syscall)
        if syscall == "umount2":
            tags.add(Tag.UMOUNT)
    if symptom:
        tags.add(Tag.SYMPTOM)
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


_LOCK_TAG: dict[str, Tag] = {
    "status-lock": Tag.STATUS_LOCK,
    "sandbox-status-lock": Tag.STATUS_LOCK,
    "bbolt-writer": Tag.BBOLT_WRITER,
    "bbolt-mmap-lock": Tag.BBOLT_LOCK,
    "metadata-wlock": Tag.METADATA_WLOCK,
    "shim-init-mutex": Tag.SHIM_INIT_MUTEX,
    "dockerd-container-lock": Tag.DOCKERD_CONTAINER_LOCK,
    "crio-container-lock": Tag.CRIO_CONTAINER_LOCK,
    "storage-lock": Tag.STORAGE_LOCK,
    "crio-stop-lock": Tag.CRIO_STOP_LOCK,
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
        m = INIT_METHOD.search(f)
        if (
            m is not None
            and m.group(1) in INIT_LOCKING
            and "shim-init-mutex" not in seen
            and not (waiting_lock == "shim-init-mutex" and j == site)
        ):
            # Delete -> (*stoppedState).Delete -> delete: p.mu is held by the outermost Init method
            outer, method = j, m.group(1)
            for k in range(j + 1, min(n, j + 4)):
                mk = INIT_METHOD.search(stack[k][0])
                if mk and mk.group(1) in INIT_LOCKING:
                    outer, method = k, mk.group(1)
            seen.add("shim-init-mutex")
            why = f"the runc shim's Init.{method} holds the process mutex p.mu while it runs"
            out.append(Hold("shim-init-mutex", "write", outer, 0.85, why))
        m = DOCKERD_DAEMON.search(f)
        if (
            m is not None
            and m.group(1) in DOCKERD_LOCKERS
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


# -- per-goroutine values ---------------------------------------------------------------------


def lock_identity(g: Goroutine, frames: tuple[int, ...]) -> tuple[str, ...]:
    """Accurate receiver addresses (`type@0x...`) of the frames identifying a lock."""
    out: list[str] = []
    for j in frames:
        if 0 <= j < len(g.stack):
            a = g.arg(j)
            if not a or a[0] != "0":
                continue
            end = a.find(",")
            word = (a if end < 0 else a[:end]).strip()
            if word.startswith("0x") and not word.endswith("?"):
                out.append(f"{receiver_type(g.stack[j][0])}@{word}")
    return tuple(out)


def receiver_type(func: str) -> str:
    """`.../store/container.(*statusStorage).Get` -> `container.statusStorage`."""
    short = short_func(func)
    if ".(*" in short:
        pkg, _, rest = short.partition(".(*")
        return f"{pkg}.{rest.split(')', 1)[0]}"
    return short.rsplit(".", 1)[0]


PROCESS_OF_TAG = {CONTAINERD: CONTAINERD, SHIM: SHIM, KUBELET: KUBELET, DOCKERD: DOCKERD}
