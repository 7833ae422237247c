"""One pass over parsed dumps: buckets, the wait-for graph, and blocking chains.

`analyze(dumps)` classifies each distinct (state, stack) once (plegdoctor.goroutines.waits),
then walks the goroutines: every blocked goroutine gets a `Wait` (what it waits for), every
goroutine's held locks go into an index, and each waiter is matched to the most likely
holder — within its own dump for locks, across dumps for ttrpc (containerd -> shim), CRI
gRPC (kubelet -> containerd) and containerd task calls (dockerd -> containerd). The work is
linear in goroutines; matching is cached per (dump, lock, lock identity).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import compress, repeat
from operator import attrgetter, itemgetter
from typing import NamedTuple

from plegdoctor.goroutines.buckets import bucketize
from plegdoctor.goroutines.chains import build_chains
from plegdoctor.goroutines.gcpause import no_gc
from plegdoctor.goroutines.model import (
    CONTAINERD,
    DOCKERD,
    KUBELET,
    SHIM,
    Dump,
    Goroutine,
    GoroutineAnalysis,
    Node,
    Similarity,
    StackInfo,
    Wait,
)
from plegdoctor.goroutines.roles import DOCKER_API_SERVERS, DOCKERD_DAEMON_METHOD
from plegdoctor.goroutines.syscalls import decode_syscall
from plegdoctor.goroutines.tags import LOCK_KINDS, Tag, WaitKind
from plegdoctor.goroutines.waits import classify, lock_identity, receiver_type

_tuple_new = tuple.__new__


class _Holder(NamedTuple):
    node: Node
    g: Goroutine
    mode: str
    identity: tuple[str, ...]
    confidence: float
    reason: str
    waiting: bool  # a pending writer (waits for the lock in write mode), not a holder


def analyze(
    dumps: list[Dump],
    *,
    similarity: Similarity = Similarity.ANY_POINTER,
    buckets: bool = True,
) -> GoroutineAnalysis:
    with no_gc():
        return _analyze(dumps, similarity, buckets)


_STATE = attrgetter("state")
_STACK = attrgetter("stack")
_ID = attrgetter("id")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_THIRD = itemgetter(2)
_NO_WAIT = frozenset({WaitKind.RUNNING, WaitKind.IDLE})
_SYSCALL_KINDS = frozenset({WaitKind.SYSCALL, WaitKind.FSYNC, WaitKind.FDATASYNC, WaitKind.BBOLT_COMMIT_IO})
Served = list[tuple[Node, Goroutine, StackInfo]]


def _analyze(dumps: list[Dump], similarity: Similarity, buckets: bool) -> GoroutineAnalysis:
    dumps = [d for d in dumps if d.goroutines]
    cache: dict[tuple[str, int], StackInfo] = {}
    infos: dict[Node, StackInfo] = {}
    index: dict[Node, Goroutine] = {}  # GoroutineAnalysis.goroutine(), sharing the node tuples of `infos`
    holders: dict[tuple[int, str], list[_Holder]] = defaultdict(list)
    serving: dict[str, Served] = defaultdict(list)
    cri_served: dict[str, Served] = defaultdict(list)
    docker_served: dict[str, Served] = defaultdict(list)
    sync_loops: dict[int, Served] = defaultdict(list)
    pending: list[tuple[Node, Goroutine, StackInfo]] = []
    for di, dump in enumerate(dumps):
        proc = dump.process
        # per distinct (state, stack) of this dump: its info, and whether the goroutine is
        # indexed beyond `infos` (holds a lock, serves a call, ...) or waits
        # (the per-goroutine passes are C-level: map, zip, compress)
        gs = dump.goroutines
        keys = list(zip(map(_STATE, gs), map(id, map(_STACK, gs)), strict=True))
        plans: dict[tuple[str, int], tuple[StackInfo, bool, bool, str | None]] = {}
        for key, g in dict(zip(keys, gs, strict=True)).items():  # one goroutine per distinct (state, stack)
            info = cache.get(key)
            if info is None:
                info = cache[key] = classify(g.state, g.stack)
            plans[key] = _plan(info, g, proc)
        planned = list(map(plans.__getitem__, keys))
        del keys
        nodes = list(zip(repeat(di), map(_ID, gs), strict=False))  # repeat() never ends
        stack_infos = list(map(_FIRST, planned))
        infos.update(zip(nodes, stack_infos, strict=True))
        index.update(zip(nodes, gs, strict=True))
        for node, g, (info, _, _, docker_method) in compress(
            zip(nodes, gs, planned, strict=True), map(_SECOND, planned)
        ):
            for h in info.holds:
                frames = (h.frame, *_metadata_frames(g)) if h.lock == "bbolt-writer" else (h.frame,)
                holders[(di, h.lock)].append(
                    _Holder(node, g, h.mode, lock_identity(g, frames), h.confidence, h.reason, False)
                )
            if info.kind == WaitKind.RWMUTEX_WRITE and info.lock:
                holders[(di, info.lock)].append(
                    _Holder(
                        node,
                        g,
                        "write",
                        lock_identity(g, info.id_frames),
                        0.7,
                        "a pending writer: Go's RWMutex makes new readers wait behind it",
                        True,
                    )
                )
            if info.serving and proc == SHIM:
                serving[info.serving].append((node, g, info))
            if info.cri_method and proc == CONTAINERD:
                cri_served[info.cri_method].append((node, g, info))
            if docker_method is not None:
                docker_served[docker_method].append((node, g, info))
            if proc == KUBELET and any(loc[0].endswith(_SYNC_LOOP) for loc in g.stack):
                sync_loops[di].append((node, g, info))
        pending.extend(compress(zip(nodes, gs, stack_infos, strict=True), map(_THIRD, planned)))

    waits: list[Wait] = []
    match_cache: dict[tuple[int, str, tuple[str, ...], str], list[tuple[float, _Holder, str]]] = {}
    # (kind, resource, lock, identity, holder, confidence, reason, syscall, call) of waits that
    # depend on the stack only (RPC calls, channels, ...), per (dump, info)
    same: dict[tuple[int, int], tuple[object, ...]] = {}
    for node, g, info in pending:
        di = node[0]
        found = same.get((di, id(info)))
        if found is not None:  # the common case first
            waits.append(_tuple_new(Wait, (di, g.id, *found)))
            continue
        kind = info.kind
        if kind in LOCK_KINDS:
            holder: Node | None = None
            conf = 0.0
            reason = ""
            identity = lock_identity(g, info.id_frames)
            resource = _resource(info, identity)
            if info.lock:
                mode = "read" if kind == WaitKind.RWMUTEX_READ else "write"
                mkey = (di, info.lock, identity, mode)
                cands = match_cache.get(mkey)
                if cands is None:
                    cands = _match(holders.get((di, info.lock), []), identity, mode)
                    match_cache[mkey] = cands
                for c, cand, why in cands:
                    if cand.node != node:
                        holder, conf, reason = cand.node, round(c, 3), why
                        break
            fields: tuple[object, ...] = (kind, resource, info.lock, identity, holder, conf, reason, None, info.call)
        elif kind in _SYSCALL_KINDS:
            syscall = decode_syscall(g, info)
            resource = f"syscall {syscall}" if syscall else "a syscall"
            fields = (kind, resource, info.lock, (), None, 0.0, "", syscall, info.call)
        else:
            fields = same[(di, id(info))] = _stack_wait(
                info, dumps[di], di, serving, cri_served, docker_served, sync_loops
            )
        waits.append(_tuple_new(Wait, (di, g.id, *fields)))
    _generic_holders(dumps, waits, infos)
    analysis = GoroutineAnalysis(
        dumps=dumps,
        buckets=bucketize(dumps, similarity) if buckets else [],
        waits=waits,
        chains=[],
        infos=infos,
        similarity=similarity,
        _index=index,
    )
    analysis.chains = build_chains(analysis)
    return analysis


_SYNC_LOOP = "kubelet.(*Kubelet).syncLoopIteration"


def _plan(info: StackInfo, g: Goroutine, proc: str) -> tuple[StackInfo, bool, bool, str | None]:
    """(info, indexed beyond `infos`, waits, the dockerd Daemon method it serves) of a stack."""
    docker_method = None
    if proc == DOCKERD:
        for loc in g.stack:
            m = DOCKERD_DAEMON_METHOD.search(loc[0])
            if m:
                docker_method = m.group(1)
                break
    special = bool(
        info.holds
        or (info.kind == WaitKind.RWMUTEX_WRITE and info.lock)
        or (info.serving and proc == SHIM)
        or (info.cri_method and proc == CONTAINERD)
        or docker_method is not None
        or proc == KUBELET
    )
    return info, special, info.kind not in _NO_WAIT, docker_method


def _stack_wait(
    info: StackInfo,
    dump: Dump,
    di: int,
    serving: dict[str, Served],
    cri_served: dict[str, Served],
    docker_served: dict[str, Served],
    sync_loops: dict[int, Served],
) -> tuple[object, ...]:
    """The wait fields of a goroutine whose wait depends on its stack only (not a lock or a
    syscall): an RPC call matched to the remote goroutine serving it, the PLEG channel."""
    holder: Node | None = None
    conf = 0.0
    reason = ""
    resource = info.lock_label or info.description
    kind = info.kind
    if kind == WaitKind.TTRPC_CALL:
        resource = f"ttrpc {info.call or 'call'} to the shim"
        if info.call and info.call.startswith("Task."):
            method = info.call.split(".", 1)[1]
            holder, conf, reason = _best_remote(serving.get(method, []), dump, 0.8, f"shim goroutine serving {method}")
    elif kind == WaitKind.GRPC_CALL:
        resource = f"gRPC {info.call or 'call'}"
        if info.cri_client:
            resource = f"CRI {info.cri_client} (runtime)"
            holder, conf, reason = _best_remote(
                [c for c in cri_served.get(info.cri_client, []) if c[2].kind not in (WaitKind.RUNNING,)],
                dump,
                0.6,
                f"containerd goroutine serving CRI {info.cri_client}",
            )
    elif kind == WaitKind.HTTP_CALL and info.call:
        api = info.call.split(".", 1)[1]
        resource = f"Docker API {api} (dockerd)"
        served = [c for m in DOCKER_API_SERVERS.get(api, ()) for c in docker_served.get(m, [])]
        holder, conf, reason = _best_remote(served, dump, 0.6, f"dockerd goroutine serving {api}")
    elif kind == WaitKind.CHAN and dump.process == KUBELET and Tag.KUBELET_RELIST in info.tags:
        resource = "the PLEG event channel"
        busy = [c for c in sync_loops.get(di, []) if not _in_sync_select(c[1], c[2])]
        if busy:
            holder, conf, reason = (
                busy[0][0],
                0.6,
                "relist blocks sending to the PLEG event channel; its reader, syncLoopIteration, is busy",
            )
    return (kind, resource, info.lock, (), holder, conf, reason, None, info.call)


def _metadata_frames(g: Goroutine) -> tuple[int, ...]:
    return tuple(j for j, loc in enumerate(g.stack) if loc[0].endswith("metadata.(*DB).Update"))


def _resource(info: StackInfo, identity: tuple[str, ...]) -> str:
    label = info.lock_label or "a lock"
    if info.lock in ("status-lock", "sandbox-status-lock", "metadata-wlock"):
        if info.kind == WaitKind.RWMUTEX_READ:
            label = label.replace(" lock", " read lock", 1) if label.endswith(" lock") else label + " (read)"
        elif info.kind == WaitKind.RWMUTEX_WRITE:
            label = label.replace(" lock", " write lock", 1) if label.endswith(" lock") else label + " (write)"
    if identity:
        return f"{label} ({identity[0]})"
    return label


def _match(cands: list[_Holder], identity: tuple[str, ...], mode: str) -> list[tuple[float, _Holder, str]]:
    """Holder candidates for a waiter, best first."""
    out: list[tuple[float, _Holder, str]] = []
    wtypes = {i.split("@", 1)[0]: i for i in identity}
    for h in cands:
        if mode == "read" and h.mode == "read":
            continue  # readers do not block readers
        if h.waiting and mode != "read":
            continue
        if identity and h.identity:
            if set(identity) & set(h.identity):
                out.append((h.confidence, h, f"{h.reason}; same lock address"))
                continue
            htypes = {i.split("@", 1)[0] for i in h.identity}
            if htypes & set(wtypes):
                continue  # same type, other instance
        out.append((h.confidence * 0.75, h, f"{h.reason}; matched by lock type (address not printed)"))
    if not out:
        return out
    typed = [c for c in out if "lock type" in c[2]]
    if len(typed) > 1:
        n = len(typed)
        out = [
            (c * (0.85 if "lock type" in why else 1.0), h, why + (f"; {n} candidates" if "lock type" in why else ""))
            for c, h, why in out
        ]
    # prefer exact matches, then real holders over pending writers, then the longest wait
    out.sort(key=lambda c: (-c[0], c[1].waiting, -(c[1].g.wait_minutes or 0), c[1].g.id))
    return out


def _best_remote(
    cands: list[tuple[Node, Goroutine, StackInfo]], caller: Dump, base: float, why: str
) -> tuple[Node | None, float, str]:
    if not cands:
        return None, 0.0, ""

    # the stuck server goroutine is the one that waits longest or is deepest in a syscall/lock
    def rank(c: tuple[Node, Goroutine, StackInfo]) -> tuple[int, int]:
        kind = c[2].kind
        busy = 0 if kind in (WaitKind.RUNNING, WaitKind.IDLE) else 1
        return (busy, c[1].wait_minutes or 0)

    ordered = sorted(cands, key=rank, reverse=True)
    conf = base if len(cands) == 1 else base * 0.75
    extra = "" if len(cands) == 1 else f" ({len(cands)} candidates, the longest-waiting chosen)"
    return ordered[0][0], conf, why + extra


def _in_sync_select(g: Goroutine, info: StackInfo) -> bool:
    return info.kind == WaitKind.SELECT and g.stack and g.stack[0][0].endswith(".(*Kubelet).syncLoopIteration")  # type: ignore[return-value]


def _generic_holders(dumps: list[Dump], waits: list[Wait], infos: dict[Node, StackInfo]) -> None:
    """Generic rule: for a lock no rule knows, a goroutine inside a method of the same
    receiver (same accurate address) that is not itself waiting there probably holds it."""
    wanted: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, w in enumerate(waits):
        if w.holder is None and w.kind in LOCK_KINDS and w.lock is None and w.identity:
            wanted[(w.dump, w.identity[0])].append(i)
    if not wanted:
        return
    want_types = {key[1].split("@", 1)[0] for key in wanted}
    found: dict[tuple[int, str], Node] = {}
    for di, dump in enumerate(dumps):
        per_stack: dict[int, list[int]] = {}
        for g in dump.goroutines:
            frames = per_stack.get(id(g.stack))
            if frames is None:
                frames = [j for j, loc in enumerate(g.stack) if ".(*" in loc[0] and receiver_type(loc[0]) in want_types]
                per_stack[id(g.stack)] = frames
            if not frames:
                continue
            info = infos[(di, g.id)]
            for j in frames:
                if j == info.site and info.kind in LOCK_KINDS:
                    continue
                a = g.arg(j)
                word = a.split(",", 1)[0].strip()
                if not word.startswith("0x") or word.endswith("?"):
                    continue
                key = (di, f"{receiver_type(g.stack[j][0])}@{word}")
                if key in wanted and key not in found:
                    found[key] = (di, g.id)
    for key, idxs in wanted.items():
        holder = found.get(key)
        if holder is None:
            continue
        for i in idxs:
            w = waits[i]
            if holder == (w.dump, w.goroutine):
                continue
            waits[i] = w._replace(
                holder=holder,
                confidence=0.5,
                reason="generic rule: it is inside a method of the same object and not waiting for its lock",
            )
