"""Blocking chains: from a symptom goroutine along "waits for a thing held by" edges to the
deepest cause, as `plegdoctor.model.Chain` of `ChainLink`s (symptom first).

Heads are symptom goroutines (CRI list/status handlers, the kubelet relist goroutine,
dockerd inspect) that are blocked, and any other blocked goroutine that waits on a known
holder while nobody waits on it (e.g. containerd's TaskExit handler in a ttrpc Delete).
Heads that share the same stack and the same path of holders are one chain (the head with
the longest wait represents them). Ranking: goroutines blocked behind the chain's deepest
cause (transitively) times (1 + the longest wait in minutes), doubled for symptoms.
"""

from __future__ import annotations

from plegdoctor.goroutines.model import Goroutine, GoroutineAnalysis, Node, StackInfo, Wait, short_func
from plegdoctor.goroutines.tags import LOCK_KINDS, Tag, WaitKind
from plegdoctor.model import Chain, ChainLink, Ref

MAX_DEPTH = 12
MAX_CHAINS = 50

_WHAT_BY_TAG = (
    (Tag.KUBELET_SYNCLOOP, "the kubelet sync loop (syncLoopIteration)"),
    (Tag.UPDATE_CONTAINER_RESOURCES, "UpdateContainerResources"),
    (Tag.CONTENT_COMMIT, "the content writer Commit"),
    (Tag.TASK_EXIT, "the TaskExit handler (handleContainerExit)"),
    (Tag.KUBELET_RELIST, "the PLEG relist"),
    (Tag.GC, "metadata garbage collection"),
    (Tag.IMAGE_PULL, "an image pull"),
    (Tag.UNPACK, "an image unpack"),
)


def describe_actor(info: StackInfo, g: Goroutine) -> str:
    """Who this goroutine is, in words: `CRI ListContainers`, `shim Delete`, ..."""
    if info.cri_method and Tag.UPDATE_CONTAINER_RESOURCES not in info.tags:
        return f"CRI {info.cri_method}"
    for tag, what in _WHAT_BY_TAG:
        if tag in info.tags:
            return what
    if info.serving:
        return f"shim {info.serving}"
    if info.kind == WaitKind.BBOLT_COMMIT_IO:
        return "a bbolt transaction commit"
    for t in sorted(info.tags):
        if t.startswith(Tag.DOCKERD):
            return f"dockerd {t[len(Tag.DOCKERD) :]}"
    if info.cri_client:
        return f"CRI client {info.cri_client}"
    if g.stack:
        site = g.stack[min(info.site, len(g.stack) - 1)][0]
        return short_func(site)
    return f"goroutine {g.id}"


def describe_wait(w: Wait | None, info: StackInfo) -> str:
    if w is None:
        return "runs" if info.kind == WaitKind.RUNNING else info.description
    if w.kind in LOCK_KINDS:
        return f"waits for the {w.resource}"
    if w.syscall:
        return f"is in {w.syscall}"
    if w.kind in (WaitKind.SYSCALL, WaitKind.FSYNC, WaitKind.FDATASYNC, WaitKind.BBOLT_COMMIT_IO):
        return "is in a syscall"
    if w.kind in (WaitKind.TTRPC_CALL, WaitKind.GRPC_CALL, WaitKind.HTTP_CALL):
        return f"waits for {w.resource}"
    return f"waits ({w.kind}: {w.resource})"


def build_chains(analysis: GoroutineAnalysis) -> list[Chain]:
    waits = {(w.dump, w.goroutine): w for w in analysis.waits}
    nxt: dict[Node, Node] = {n: w.holder for n, w in waits.items() if w.holder is not None}
    # goroutines blocked behind each node (transitively)
    behind: dict[Node, int] = {}
    max_wait_behind: dict[Node, int] = {}
    for start in nxt:
        g = analysis.goroutine(start)
        minutes = g.wait_minutes or 0 if g else 0
        seen = {start}
        cur = nxt.get(start)
        while cur is not None and cur not in seen:
            seen.add(cur)
            behind[cur] = behind.get(cur, 0) + 1
            if minutes > max_wait_behind.get(cur, -1):
                max_wait_behind[cur] = minutes
            cur = nxt.get(cur)
    targets = set(nxt.values())
    heads: list[Node] = []
    for node in waits:
        info = analysis.infos[node]
        if info.symptom or (node in nxt and node not in targets):
            heads.append(node)
    groups: dict[tuple[object, ...], list[Node]] = {}
    for head in heads:
        path = _path(head, nxt)
        g = analysis.goroutine(head)
        assert g is not None
        key = (head[0], g.state, id(g.stack), tuple(path[1:]))
        groups.setdefault(key, []).append(head)
    chains: list[Chain] = []
    for members in groups.values():
        rep = max(members, key=lambda n: ((analysis.goroutine(n).wait_minutes or 0), -n[1]))  # type: ignore[union-attr]
        path = _path(rep, nxt)
        links = tuple(_link(analysis, path, i, waits) for i in range(len(path)))
        first_holder = path[1] if len(path) > 1 else None
        # everything queued behind the deepest cause of this chain
        blocked = max(behind.get(path[-1], 0), len(members))
        waits_min = [analysis.goroutine(n).wait_minutes for n in members + path]  # type: ignore[union-attr]
        known = [m for m in waits_min if m is not None]
        if first_holder is not None and path[-1] in max_wait_behind:
            known.append(max_wait_behind[path[-1]])
        max_wait = max(known) if known else None
        symptom = analysis.infos[rep].symptom
        score = blocked * (1 + (max_wait or 0)) * (2 if symptom else 1) * (1 + 0.1 * (len(path) - 1))
        chains.append(Chain(links=links, blocked=blocked, max_wait_minutes=max_wait, score=round(score, 2)))
    chains.sort(key=lambda c: (-c.score, -len(c.links), c.links[0].goroutine or 0))
    return chains[:MAX_CHAINS]


def _path(head: Node, nxt: dict[Node, Node]) -> list[Node]:
    path = [head]
    seen = {head}
    cur = nxt.get(head)
    while cur is not None and cur not in seen and len(path) < MAX_DEPTH:
        path.append(cur)
        seen.add(cur)
        cur = nxt.get(cur)
    return path


def _link(analysis: GoroutineAnalysis, path: list[Node], i: int, waits: dict[Node, Wait]) -> ChainLink:
    node = path[i]
    dump = analysis.dumps[node[0]]
    g = analysis.goroutine(node)
    assert g is not None
    info = analysis.infos[node]
    w = waits.get(node)
    actor = describe_actor(info, g)
    doing = describe_wait(w, info)
    where = f"{dump.label} goroutine {g.id}" + (f", {g.wait_minutes} min" if g.wait_minutes is not None else "")
    tags = set(info.tags)
    confidence = 1.0
    if i == 0:
        detail = f"{actor} ({where}) {doing}"
    else:
        prev = waits[path[i - 1]]
        confidence = prev.confidence
        held = prev.resource.replace(" read lock", " lock").replace(" write lock", " lock")
        how = prev.reason
        verb = {
            "ttrpc-call": "serves",
            "grpc-call": "serves",
            "http-call": "serves",
            "chan": "should receive from",
        }.get(prev.kind, "holds")
        detail = f"{actor} ({where}) {verb} {held} [{how}] and {doing}"
    evidence: list[Ref] = [dump.ref(g)]
    if g.stack:
        evidence.append(dump.ref(g, min(info.site, len(g.stack) - 1)))
    resource = w.resource if w is not None else None
    function = g.stack[min(info.site, len(g.stack) - 1)][0] if g.stack else None
    kind = w.kind if w is not None else str(info.kind)
    if w is not None and w.syscall:
        tags.add(Tag.SYSCALL.of(w.syscall))
        if w.syscall in ("fsync", "fdatasync"):
            tags.add(w.syscall)
        if w.syscall == "umount2":
            tags.add(Tag.UMOUNT)
    return ChainLink(
        kind=kind,
        process=dump.process,
        detail=detail,
        evidence=tuple(evidence),
        goroutine=g.id,
        pid=dump.pid,
        function=function,
        resource=resource,
        wait_minutes=g.wait_minutes,
        confidence=confidence,
        tags=frozenset(tags),
    )


def chain_text(chain: Chain) -> str:
    """One line: `CRI ListContainers -> container status lock (read lock) held by ... -> fsync`."""
    parts: list[str] = []
    for i, link in enumerate(chain.links):
        actor = link.detail.split(" (", 1)[0]
        if i == 0:
            parts.append(actor)
        if link.resource and i + 1 < len(chain.links):
            nxt = chain.links[i + 1].detail.split(" (", 1)[0]
            verb = {
                "ttrpc-call": "served by",
                "grpc-call": "served by",
                "http-call": "served by",
                "chan": "not received by",
            }.get(link.kind, "held by")
            parts.append(f"{link.resource} {verb} {nxt}")
        elif i + 1 == len(chain.links):
            parts.append((link.resource or link.kind).removeprefix("syscall "))
    return " -> ".join(parts)
