"""PD801-PD803: long waits, lock convoys, the symptom path caught in a subsystem."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from plegdoctor.model import Chain, ChainLink, Severity
from plegdoctor.rules.generic.mechanisms import (
    _CALL_KINDS,
    _LOCK_KINDS,
    _SYSCALL_KINDS,
    CONVOY_BY_SITE_MIN,
    CONVOY_MIN,
    LONG_WAIT_MINUTES,
    MAX_CONVOY_LINKS,
    RUNTIMES,
    C,
    _classify,
    _deepest,
    _long_wait_counts,
    _minutes,
    _weight,
    mechanism_of,
    symptom_refs,
)
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import chain_refs, plural


@rule(
    "PD801",
    "long-wait",
    title="A goroutine has waited minutes for a lock or a call",
    severity=Severity.WARNING,
    cls=C.UNKNOWN,
    fix="Follow the chain to the goroutine that holds what this one waits for; dump the process that serves the "
    "call (kill -USR1 for containerd and its shims, SIGQUIT for runc, pprof for the kubelet) if it is missing.",
    references=(
        "https://github.com/cri-o/cri-o/issues/9406",
        "https://github.com/containerd/ttrpc/issues/174",
        "https://github.com/maruel/panicparse",
    ),
    generic=True,
    role="cause",
    reads=("dumps",),
)
def long_wait(ctx: RuleContext) -> Iterator[Hit]:
    """Detects any goroutine of any Go daemon that has waited a minute or more (`[sync.Mutex.Lock, 215
    minutes]`, `[semacquire, 19 minutes]`) for a lock, or for an RPC call to return, or on the
    symptom path (a CRI list/status handler, the kubelet relist).

    Why it matters: Go prints `, N minutes` only when a goroutine has been parked that long. A lock or a
    call that waits minutes is a stall whatever the version, even when no signature rule
    knows the lock. The class comes from the mechanism the wait shows (`MECHANISMS`: inside
    CNI, runc, a shim call, a network filesystem, fsync; a lock of containerd, CRI-O, dockerd,
    the kubelet), or `unknown` when the wait is of no known subsystem. Server loops that idle
    in `select`/`chan receive`/`IO wait` for hours are not counted.

    Example evidence: `goroutine 41391428 [sync.Mutex.Lock, 215 minutes]:` in CRI-O's
    `stopContainer -> UpdateContainerStatus -> (*RWMutex).Lock` (runtime-lock-contention).

    Fix: see what holds the lock or serves the call; the chain says where to look next.
    """
    for chain in ctx.chains:
        if not _long_wait_counts(chain):
            continue
        cls, text = _classify(chain)
        last = _deepest(chain)
        minutes = _minutes(chain)
        head = chain.links[0]
        who = f"{head.process} goroutine {head.goroutine}" if head.goroutine is not None else head.process
        title = f"{who} has waited {minutes} min; the deepest wait {text} ({last.detail.split(' (', 1)[0]})"
        base = 0.3 if cls == C.UNKNOWN else 0.45
        yield Hit(title=title, evidence=chain_refs(chain), weight=_weight(base, chain, minutes), chain=chain, cls=cls)


def goroutine_link(
    dump: Any, g: Any, info: Any, detail: str, resource: str, *, kind: str | None = None, extra_tags: Iterable[str] = ()
) -> ChainLink:
    """A chain link for one goroutine of a dump: its header and wait-site lines as evidence,
    the function it waits in, its wait minutes and its stack's tags (plus `extra_tags`)."""
    site = min(info.site, len(g.stack) - 1) if g.stack else None
    return ChainLink(
        kind=kind or str(info.kind),
        process=dump.process,
        detail=detail,
        evidence=(dump.ref(g),) + ((dump.ref(g, site),) if site is not None else ()),
        goroutine=g.id,
        pid=dump.pid,
        function=g.stack[site][0] if site is not None else None,
        resource=resource,
        wait_minutes=g.wait_minutes,
        tags=frozenset(set(info.tags) | set(extra_tags)),
    )


def _lock_address(g: Any, info: Any) -> str | None:
    """The lock's own address: the first accurate pointer argument among the sync frames at
    the top of the stack (`sync.(*Mutex).Lock(0xc820354f50)`, `runtime_Semacquire(0xc820354f54)`
    is the mutex's sema field, 4 bytes in: normalised to the mutex)."""
    stack = getattr(g, "stack", ())
    args = getattr(g, "args", ())
    site = getattr(info, "site", 0)
    for j in range(min(site + 1, len(stack))):
        func = stack[j][0]
        if not func.startswith(("sync.", "internal/sync.")):
            continue
        a = args[j] if j < len(args) else ""
        word = a.split(",", 1)[0].strip()
        if word.startswith("0x") and not word.endswith("?"):
            try:
                addr = int(word, 16)
            except ValueError:
                continue
            if "Semacquire" in func:
                addr -= 4  # Mutex{state int32; sema uint32}: the sema is 4 bytes after the mutex
            return hex(addr)
    return None


@rule(
    "PD802",
    "lock-convoy",
    title="Goroutines queue on one lock whose holder is not visible",
    severity=Severity.WARNING,
    cls=C.UNKNOWN,
    fix="Find the goroutine that holds the lock (the dump of the same process, all goroutines) and what it waits "
    "for; restart the process only after saving the dump.",
    references=("https://github.com/moby/moby/issues/27827",),
    generic=True,
    role="cause",
    reads=("dumps",),
)
def lock_convoy(ctx: RuleContext) -> Iterator[Hit]:
    """Detects goroutines of one process waiting for the same lock — the same address
    (`sync.(*Mutex).Lock(0xc820354f50)` in every stack, or `runtime_Semacquire(0xc820354f54)`,
    the mutex's sema 4 bytes in) or the same receiver at the same lock site — with no holder
    found: a convoy behind a goroutine that does not let go.

    Why it matters: a lock nobody visible holds, with a queue that grows, is a holder that
    never lets go (a leaked lock, a holder in a call that never returns). Fires at three or
    more waiters, or two when one has waited a minute or more. The class
    comes from the process and the lock (a dockerd container lock, a containerd or CRI-O
    internal lock, a kubelet lock; `MECHANISMS`).

    Example evidence: dockerd goroutines 82238 (`ContainerStop -> (*State).IsRunning`, 19 minutes) and
    82255 (5 minutes) both in `sync.(*Mutex).Lock(0xc820354f50)`: `docker ps` and `docker stop`
    hang on one container's state mutex (moby#27827).

    Fix: find the holder in a full dump of the same process and what it waits for.
    """
    ga = ctx.goroutines
    if ga is None:
        return
    groups: dict[tuple[int, str], list[tuple[Any, Any, Any]]] = defaultdict(list)
    for w in getattr(ga, "waits", None) or ():
        if str(w.kind) not in _LOCK_KINDS or w.holder is not None:
            continue
        node = (w.dump, w.goroutine)
        g = ga.goroutine(node)
        info = ga.infos.get(node)
        if g is None or info is None:
            continue
        addr = _lock_address(g, info)
        if addr is not None:
            key = f"lock@{addr}"
        elif w.identity:
            key = "recv:" + "|".join(w.identity)
        elif g.stack:
            # no address printed (register ABI, aggregated stacks): the same lock-taking site
            key = "site:" + g.stack[min(info.site, len(g.stack) - 1)][0]
        else:
            continue
        groups[(w.dump, key)].append((w, g, info))
    for (di, key), members in groups.items():
        minutes = [getattr(g, "wait_minutes", None) or 0 for _, g, _ in members]
        if key.startswith("site:"):
            # one site is many locks (one per container, say): only a crowd there is a convoy
            if len(members) < CONVOY_BY_SITE_MIN:
                continue
        elif len(members) < CONVOY_MIN and not (len(members) >= 2 and max(minutes) >= LONG_WAIT_MINUTES):
            continue
        dump = ga.dumps[di]
        members.sort(key=lambda m: (-(getattr(m[1], "wait_minutes", None) or 0), getattr(m[1], "id", 0)))
        if key.startswith("lock@"):
            what = key.split("@", 1)[1]
        elif key.startswith("site:"):
            what = f"taken in {key[5:].rsplit('/', 1)[-1]} (one site; the dump prints no lock address)"
        else:
            what = "one lock (same receiver)"
        links: list[ChainLink] = []
        tags: set[str] = set()
        for w, g, info in members[:MAX_CONVOY_LINKS]:
            gid = getattr(g, "id", None)
            site = min(getattr(info, "site", 0), len(g.stack) - 1) if g.stack else None
            func = g.stack[site][0] if site is not None else None
            gm = getattr(g, "wait_minutes", None)
            lt = set(getattr(info, "tags", ()))
            tags |= lt
            where = f"{dump.label} goroutine {gid}" + (f", {gm} min" if gm is not None else "")
            taker = func.rsplit("/", 1)[-1] if func else "?"
            links.append(
                goroutine_link(
                    dump,
                    g,
                    info,
                    f"{taker} ({where}) waits for lock {what}",
                    f"lock {what}",
                    kind=str(w.kind),
                    extra_tags=("convoy",),
                )
            )
        chain = Chain(links=tuple(links), blocked=len(members), max_wait_minutes=max(minutes) or None, score=0.0)
        lead = links[0]
        m = mechanism_of(frozenset(tags), lead.kind, dump.process, None)
        cls = m.cls if m is not None else C.UNKNOWN
        longest = f", the longest {max(minutes)} min" if max(minutes) else ""
        title = (
            f"{plural(len(members), 'goroutine')} of {dump.process} queue on lock {what}{longest}; no holder visible"
        )
        base = 0.45 if cls != C.UNKNOWN else 0.3
        yield Hit(
            title=title, evidence=chain_refs(chain), weight=_weight(base, chain, max(minutes)), chain=chain, cls=cls
        )


@rule(
    "PD803",
    "symptom-path-caught",
    title="The stalled call is caught inside a subsystem in the dump",
    severity=Severity.WARNING,
    cls=C.UNKNOWN,
    fix="Follow the stalled call into the subsystem it is caught in (see the chain); collect a full dump of that "
    "process while the stall lasts.",
    references=("https://github.com/kubernetes/kubernetes/issues/98044",),
    generic=True,
    role="cause",
    reads=("relists", "events", "dumps"),
)
def symptom_path_caught(ctx: RuleContext) -> Iterator[Hit]:
    """Detects the node showing the stall (a relist gap, PLEG unhealthy, NotReady, a CRI deadline) and a
    dump catches a goroutine on the stalled path — a CRI list/status handler of any runtime
    (containerd, the dockershim, cri-dockerd, CRI-O) or the kubelet relist — inside a
    subsystem that can hang: CNI, runc, a shim call, a network filesystem, fsync, umount.

    Why it matters: dumps without wait times (pprof `debug=1`, excerpts, fragments without headers) do
    not say how long a goroutine has waited; the stall in the logs does. The handler the
    relist waits for, caught in CNI code while PLEG is unhealthy, is the CNI hang.

    Example evidence: kubelet `PLEG is not healthy: pleg was last seen active 3m4.6s ago` with the
    dockershim's `PodSandboxStatus -> getIPs -> getIPsFromPlugin -> GetPodNetworkStatus`
    (the per-pod network lock, then the CNI plugin) in the kubelet's goroutine profile
    (kubernetes#98044).

    Fix: follow the call into that subsystem (the chain) and dump it while the stall lasts.
    """
    ga = ctx.goroutines
    if ga is None:
        return
    symptoms = symptom_refs(ctx)
    if not symptoms:
        return
    seen: set[tuple[str, str]] = set()
    waits_by_node = {(w.dump, w.goroutine): w for w in getattr(ga, "waits", None) or ()}
    # the stalled path itself first, then any runtime goroutine held in a named lock, call or syscall
    ordered = sorted(
        (getattr(ga, "infos", None) or {}).items(),
        key=lambda item: not (item[1].symptom or "kubelet-relist" in item[1].tags),
    )
    for node, info in ordered:
        on_path = info.symptom or "kubelet-relist" in info.tags
        if str(info.kind) in ("running", "idle", "io"):
            continue
        if not on_path and not _named_wait(info, ga.dumps[node[0]].process):
            continue
        g = ga.goroutine(node)
        if g is None:
            continue
        dump = ga.dumps[node[0]]
        w = waits_by_node.get(node)
        if w is not None and w.holder is not None:
            continue  # the engine's chain follows it to the holder; the signature rules read that
        m = mechanism_of(info.tags, str(info.kind), dump.process, info.syscall)
        if m is None or m.name in ("relist-channel",):
            continue
        key = (dump.process, m.name)
        if key in seen:
            continue
        seen.add(key)
        if on_path:
            what = (info.cri_method and f"CRI {info.cri_method}") or "the kubelet relist"
        else:
            what = f"a {dump.process} goroutine"
        link = goroutine_link(dump, g, info, f"{what} ({dump.label} goroutine {g.id}) {m.text}", m.name)
        chain = Chain(links=(link,), blocked=0, max_wait_minutes=g.wait_minutes, score=0.0)
        title = f"{what} ({dump.process}) is caught in the dump while the evidence shows a stall: it {m.text}"
        # on the stalled path the dump shows the stall's own call; elsewhere in the runtime, a
        # goroutine held in a named lock or call during the stall is likelier than not its cause
        weight = 0.5 if on_path else 0.4
        yield Hit(title=title, evidence=(*chain_refs(chain), *symptoms[:2]), weight=weight, chain=chain, cls=m.cls)


def _named_wait(info: Any, process: str) -> bool:
    """A runtime goroutine whose wait is on something the knowledge names: a known lock
    (status, bbolt, metadata, shim Init, dockerd container, CRI-O), an RPC call, or a syscall
    of a named subsystem (fsync, umount)."""
    if process not in RUNTIMES:
        return False
    kind = str(info.kind)
    if kind in _LOCK_KINDS:
        return info.lock is not None
    if kind in _CALL_KINDS:
        return True
    return kind in _SYSCALL_KINDS and bool(info.tags & {"fsync", "fdatasync", "umount", "bbolt-writer"})
