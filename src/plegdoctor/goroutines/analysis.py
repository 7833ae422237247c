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
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from plegdoctor.goroutines.buckets import Bucket, bucketize
from plegdoctor.goroutines.model import CONTAINERD, DOCKERD, KUBELET, SHIM, Dump, Goroutine, Similarity
from plegdoctor.goroutines.waits import (
    DOCKER_API_SERVERS,
    DOCKERD_DAEMON_METHOD,
    LOCK_KINDS,
    StackInfo,
    WaitKind,
    classify,
    decode_syscall,
    lock_identity,
)
from plegdoctor.model import Chain, Ref

Node = tuple[int, int]  # (dump index, goroutine id)
_tuple_new = tuple.__new__

SCHEMA = "pleg-doctor/goroutines/v1"


class Wait(NamedTuple):
    """What one blocked goroutine waits for. `holder` is the (dump index, goroutine id)
    of the goroutine inferred to hold it (None when not visible), with `confidence` and
    `reason` (the knowledge that made the inference)."""

    dump: int
    goroutine: int
    kind: str
    resource: str
    lock: str | None
    identity: tuple[str, ...]
    holder: Node | None
    confidence: float
    reason: str
    syscall: str | None
    call: str | None


@dataclass
class GoroutineAnalysis:
    dumps: list[Dump]
    buckets: list[Bucket]
    waits: list[Wait]
    chains: list[Chain]
    infos: dict[Node, StackInfo] = field(repr=False, default_factory=dict)
    similarity: Similarity = Similarity.ANY_POINTER
    _index: dict[Node, Goroutine] | None = field(default=None, repr=False)

    @property
    def goroutine_count(self) -> int:
        return sum(len(d.goroutines) for d in self.dumps)

    def goroutine(self, node: Node) -> Goroutine | None:
        if self._index is None:
            self._index = {(di, g.id): g for di, d in enumerate(self.dumps) for g in d.goroutines}
        return self._index.get(node)

    def wait_of(self, node: Node) -> Wait | None:
        for w in self.waits:
            if (w.dump, w.goroutine) == node:
                return w
        return None

    def wait_ref(self, w: Wait) -> Ref:
        """Evidence for a wait: the waiting goroutine's header and its wait site."""
        info = self.infos[(w.dump, w.goroutine)]
        return self.ref((w.dump, w.goroutine), info.site)

    def ref(self, node: Node, frame: int | None = None) -> Ref:
        g = self.goroutine(node)
        assert g is not None
        return self.dumps[node[0]].ref(g, frame)

    def to_json(self, max_waits: int | None = None) -> dict[str, Any]:
        from plegdoctor.goroutines.render import analysis_json

        return analysis_json(self, max_waits=max_waits)


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
    from plegdoctor.goroutines.parse import no_gc

    with no_gc():
        return _analyze(dumps, similarity, buckets)


def _analyze(dumps: list[Dump], similarity: Similarity, buckets: bool) -> GoroutineAnalysis:
    from plegdoctor.goroutines.chains import build_chains

    dumps = [d for d in dumps if d.goroutines]
    cache: dict[tuple[str, int], StackInfo] = {}
    infos: dict[Node, StackInfo] = {}
    holders: dict[tuple[int, str], list[_Holder]] = defaultdict(list)
    serving: dict[str, list[tuple[Node, Goroutine, StackInfo]]] = defaultdict(list)
    cri_served: dict[str, list[tuple[Node, Goroutine, StackInfo]]] = defaultdict(list)
    docker_served: dict[str, list[tuple[Node, Goroutine, StackInfo]]] = defaultdict(list)
    sync_loops: dict[int, list[tuple[Node, Goroutine, StackInfo]]] = defaultdict(list)
    pending: list[tuple[Node, Goroutine, StackInfo]] = []
    for di, dump in enumerate(dumps):
        proc = dump.process
        for g in dump.goroutines:
            key = (g.state, id(g.stack))
            info = cache.get(key)
            if info is None:
                info = classify(g.state, g.stack)
                cache[key] = info
            node = (di, g.id)
            infos[node] = info
            if info.holds:
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
            if proc == DOCKERD:
                for loc in g.stack:
                    m = DOCKERD_DAEMON_METHOD.search(loc[0])
                    if m:
                        docker_served[m.group(1)].append((node, g, info))
                        break
            if proc == KUBELET and any(loc[0].endswith("kubelet.(*Kubelet).syncLoopIteration") for loc in g.stack):
                sync_loops[di].append((node, g, info))
            if info.kind not in (WaitKind.RUNNING, WaitKind.IDLE):
                pending.append((node, g, info))

    waits: list[Wait] = []
    match_cache: dict[tuple[int, str, tuple[str, ...], str], list[tuple[float, _Holder, str]]] = {}
    for node, g, info in pending:
        di = node[0]
        dump = dumps[di]
        holder: Node | None = None
        conf = 0.0
        reason = ""
        identity: tuple[str, ...] = ()
        resource = info.lock_label or info.description
        syscall = None
        if info.kind in LOCK_KINDS:
            identity = lock_identity(g, info.id_frames)
            resource = _resource(info, identity)
            if info.lock:
                mode = "read" if info.kind == WaitKind.RWMUTEX_READ else "write"
                mkey = (di, info.lock, identity, mode)
                cands = match_cache.get(mkey)
                if cands is None:
                    cands = _match(holders.get((di, info.lock), []), identity, mode)
                    match_cache[mkey] = cands
                for c, cand, why in cands:
                    if cand.node != node:
                        holder, conf, reason = cand.node, round(c, 3), why
                        break
        elif info.kind in (WaitKind.SYSCALL, WaitKind.FSYNC, WaitKind.FDATASYNC, WaitKind.BBOLT_COMMIT_IO):
            syscall = decode_syscall(g, info)
            resource = f"syscall {syscall}" if syscall else "a syscall"
        elif info.kind == WaitKind.TTRPC_CALL:
            resource = f"ttrpc {info.call or 'call'} to the shim"
            if info.call and info.call.startswith("Task."):
                method = info.call.split(".", 1)[1]
                holder, conf, reason = _best_remote(
                    serving.get(method, []), dump, 0.8, f"shim goroutine serving {method}"
                )
        elif info.kind == WaitKind.GRPC_CALL:
            resource = f"gRPC {info.call or 'call'}"
            if info.cri_client:
                resource = f"CRI {info.cri_client} (runtime)"
                holder, conf, reason = _best_remote(
                    [c for c in cri_served.get(info.cri_client, []) if c[2].kind not in (WaitKind.RUNNING,)],
                    dump,
                    0.6,
                    f"containerd goroutine serving CRI {info.cri_client}",
                )
        elif info.kind == WaitKind.HTTP_CALL and info.call:
            api = info.call.split(".", 1)[1]
            resource = f"Docker API {api} (dockerd)"
            served = [c for m in DOCKER_API_SERVERS.get(api, ()) for c in docker_served.get(m, [])]
            holder, conf, reason = _best_remote(served, dump, 0.6, f"dockerd goroutine serving {api}")
        elif info.kind == WaitKind.CHAN and dump.process == KUBELET and "kubelet-relist" in info.tags:
            resource = "the PLEG event channel"
            busy = [c for c in sync_loops.get(di, []) if not _in_sync_select(c[1], c[2])]
            if busy:
                holder, conf, reason = (
                    busy[0][0],
                    0.6,
                    "relist blocks sending to the PLEG event channel; its reader, syncLoopIteration, is busy",
                )
        waits.append(
            _tuple_new(
                Wait,
                (di, g.id, info.kind, resource, info.lock, identity, holder, conf, reason, syscall, info.call),
            )
        )
    _generic_holders(dumps, waits, infos)
    analysis = GoroutineAnalysis(
        dumps=dumps,
        buckets=bucketize(dumps, similarity) if buckets else [],
        waits=waits,
        chains=[],
        infos=infos,
        similarity=similarity,
    )
    analysis.chains = build_chains(analysis)
    return analysis


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
    from plegdoctor.goroutines.waits import _receiver_type

    for di, dump in enumerate(dumps):
        per_stack: dict[int, list[int]] = {}
        for g in dump.goroutines:
            frames = per_stack.get(id(g.stack))
            if frames is None:
                frames = [
                    j for j, loc in enumerate(g.stack) if ".(*" in loc[0] and _receiver_type(loc[0]) in want_types
                ]
                per_stack[id(g.stack)] = frames
            if not frames:
                continue
            info = infos[(di, g.id)]
            for j in frames:
                if j == info.site and info.kind in LOCK_KINDS:
                    continue
                a = g.args[j]
                word = a.split(",", 1)[0].strip()
                if not word.startswith("0x") or word.endswith("?"):
                    continue
                key = (di, f"{_receiver_type(g.stack[j][0])}@{word}")
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
