"""PD8xx: generic waits that hold on any Go daemon and any version (long waits, lock convoys,
RPC client waits, symptom paths, stuck CLIs), beneath the known signatures of the other
families.

The signature rules (PD2xx-PD7xx) know named locks and calls of named versions. These rules
reason from what any goroutine dump shows: how long a goroutine has waited (`[..., N
minutes]`), how many wait on the same lock (the address or the receiver), which RPC client
call has no answer, which symptom path (a CRI list/status handler, the kubelet relist) is
caught in which subsystem. Each hit names its class by *mechanism* (`MECHANISMS`, first match
wins), so a build that has never seen a version still answers with the right family of
cause, and `unknown` — never nothing — when the mechanism is not one we can name.

They are declared `generic=True`: when a signature rule explains the same wait (a chain that
shares the generic hit's deepest goroutine), the diagnosis keeps the signature finding and
drops the generic one, so the same evidence is never counted twice. Their weights are lower
than the signature rules': a known signature sharpens the class; its absence lowers
confidence, never the answer to nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from plegdoctor.goroutines.model import CONTAINERD, CRI_DOCKERD, CRIO, DOCKERD, KUBELET, RUNC, SHIM, SHIM_V1
from plegdoctor.model import Chain, ChainLink, EventKind, Ref, RootCauseClass, Severity
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import chain_refs, events, plural, worst_stall

C = RootCauseClass
LONG_WAIT_MINUTES = 1  # Go prints `, N minutes` from one minute on: any printed wait is long for a lock or a call
CONVOY_MIN = 3  # goroutines on one lock that make a convoy by count alone
CONVOY_BY_SITE_MIN = 50  # goroutines at one lock site (no address) that make a convoy
MAX_CONVOY_LINKS = 5
SHIMS = frozenset({SHIM, SHIM_V1})
RUNTIMES = frozenset({CONTAINERD, *SHIMS, CRIO, DOCKERD, CRI_DOCKERD, KUBELET, RUNC})

_LOCK_KINDS = frozenset({"mutex", "rwmutex-read", "rwmutex-write", "bbolt-writer"})
_CALL_KINDS = frozenset({"ttrpc-call", "grpc-call", "http-call"})
_SYSCALL_KINDS = frozenset({"syscall", "fsync", "fdatasync", "bbolt-commit-io"})
_FS_METADATA_SYSCALLS = frozenset(
    {"newfstatat", "fstatat", "stat", "lstat", "statx", "statfs", "fstatfs", "getdents64", "getdents", "openat"}
)


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One row of the mechanism table: what a wait must show, the class it names and the
    words for it. A row matches when every given condition holds: some tag of `tags_any`
    among the chain's tags, the deepest wait's kind in `kinds`, its process in `processes`,
    its syscall in `syscalls`."""

    name: str
    cls: RootCauseClass
    text: str
    tags_any: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    processes: frozenset[str] = frozenset()
    syscalls: frozenset[str] = frozenset()

    def matches(self, tags: frozenset[str], kind: str, process: str, syscall: str | None) -> bool:
        if self.tags_any and not (self.tags_any & tags):
            return False
        if self.kinds and kind not in self.kinds:
            return False
        if self.processes and process not in self.processes:
            return False
        return not (self.syscalls and syscall not in self.syscalls)


def _m(name: str, cls: RootCauseClass, text: str, **kw: frozenset[str] | set[str]) -> Mechanism:
    return Mechanism(name, cls, text, **{k: frozenset(v) for k, v in kw.items()})  # type: ignore[arg-type]


# Ordered: the most specific subsystem first (what the wait is *inside* decides before what it
# waits *on*: a lock wait inside CNI code is a CNI hang).
MECHANISMS: tuple[Mechanism, ...] = (
    _m("systemd-dbus", C.SYSTEMD_DBUS_HANG, "waits on systemd over D-Bus", tags_any={"systemd-dbus"}),
    _m("cni", C.CNI_HANG, "is inside a CNI call (pod network setup, teardown or status)", tags_any={"cni"}),
    _m("network-fs", C.NETWORK_STORAGE_HANG, "is in a network filesystem", tags_any={"nfs", "network-fs"}),
    _m(
        "umount",
        C.OVERLAY_UMOUNT_SYNC,
        "is unmounting a filesystem (the kernel flushes its dirty pages first)",
        tags_any={"umount", "syncfs", "syscall:umount2", "syscall:syncfs"},
    ),
    _m(
        "fsync",
        C.FSYNC_IO_PRESSURE,
        "is in fsync/fdatasync",
        tags_any={"fsync", "fdatasync", "syscall:sync"},
    ),
    _m("bbolt-io", C.FSYNC_IO_PRESSURE, "is committing a bbolt transaction to disk", kinds={"bbolt-commit-io"}),
    _m(
        "fs-metadata-hung",
        C.NETWORK_STORAGE_HANG,
        "is in a filesystem metadata call (stat, statfs, getdents) that has not returned for minutes: a "
        "filesystem that does not answer, most often a hung network mount (a dead local disk shows I/O errors "
        "in dmesg)",
        kinds={"syscall"},
        syscalls=_FS_METADATA_SYSCALLS,
    ),
    _m("runc", C.RUNC_HANG, "is inside runc", tags_any={"runc", "runc-exec-fifo"}),
    _m("runc-process", C.RUNC_HANG, "is runc itself", processes={"runc"}),
    _m(
        "ttrpc-send-blocked",
        C.SHIM_HANG,
        "cannot write its ttrpc request to the shim's socket (the shim does not read it; the client's send lock is "
        "held meanwhile)",
        tags_any={"ttrpc-send-blocked"},
    ),
    _m("ttrpc", C.SHIM_HANG, "waits for a shim to answer a ttrpc call", kinds={"ttrpc-call"}),
    _m("shim", C.SHIM_HANG, "is inside the shim", processes=SHIMS),
    _m("docker-api", C.DOCKERD_LOCK, "waits for dockerd to answer a Docker API call", kinds={"http-call"}),
    _m(
        "bbolt-lock",
        C.BBOLT_LOCK_CONTENTION,
        "queues on a bbolt metadata DB lock",
        tags_any={"bbolt-writer", "bbolt-lock"},
    ),
    _m(
        "crio-stop-lock",
        C.RUNTIME_LOCK_CONTENTION,
        "holds CRI-O's per-container stop lock while it waits out the stop timeout (later stops of that container "
        "queue behind it)",
        tags_any={"crio-stop-lock"},
    ),
    _m(
        "storage-lock",
        C.RUNTIME_LOCK_CONTENTION,
        "queues on a containers/storage lock (CRI-O's image and layer store)",
        tags_any={"storage-lock"},
        kinds=_LOCK_KINDS,
    ),
    _m(
        "status-lock",
        C.CRI_STATUS_LOCK,
        "queues on a CRI container/sandbox status lock",
        tags_any={"status-lock"},
        kinds=_LOCK_KINDS,
    ),
    _m(
        "dockerd-lock",
        C.DOCKERD_LOCK,
        "queues on a dockerd lock",
        kinds=_LOCK_KINDS,
        processes={"dockerd", "cri-dockerd"},
    ),
    _m("kubelet-lock", C.KUBELET_INTERNAL, "queues on a kubelet lock", kinds=_LOCK_KINDS, processes={"kubelet"}),
    _m(
        "runtime-lock",
        C.RUNTIME_LOCK_CONTENTION,
        "queues on a runtime-internal lock",
        kinds=_LOCK_KINDS,
        processes={"containerd", "crio"},
    ),
    _m(
        "relist-channel",
        C.KUBELET_INTERNAL,
        "is the kubelet's relist, blocked on a channel inside the kubelet",
        tags_any={"kubelet-relist"},
        kinds={"chan", "select"},
    ),
)


def mechanism_of(tags: frozenset[str], kind: str, process: str, syscall: str | None) -> Mechanism | None:
    """The first row of MECHANISMS the wait matches, else None (the class is `unknown`)."""
    for m in MECHANISMS:
        if m.matches(tags, kind, process, syscall):
            return m
    return None


def _deepest(chain: Chain) -> ChainLink:
    return chain.links[-1]


def _syscall(link: ChainLink) -> str | None:
    for t in link.tags:
        if t.startswith("syscall:"):
            return t[8:]
    return None


def _classify(chain: Chain) -> tuple[RootCauseClass, str]:
    last = _deepest(chain)
    m = mechanism_of(chain.tags, last.kind, last.process, _syscall(last))
    if m is None:
        return C.UNKNOWN, f"{last.kind} wait the mechanism table does not name"
    return m.cls, m.text


def _minutes(chain: Chain) -> int:
    return max((lk.wait_minutes or 0 for lk in chain.links), default=0)


def _long_wait_counts(chain: Chain) -> bool:
    """A printed wait of minutes means a stall for a lock, an RPC call, or a symptom path; a
    server loop's `select`/`chan receive`/`IO wait` of hours is how daemons idle."""
    for lk in chain.links:
        if (lk.wait_minutes or 0) < LONG_WAIT_MINUTES:
            continue
        if lk.kind in _LOCK_KINDS or lk.kind in _CALL_KINDS:
            return True
        if lk.kind in _SYSCALL_KINDS and (
            _syscall(lk) in _FS_METADATA_SYSCALLS
            or lk.kind != "syscall"
            or lk.tags & {"fsync", "fdatasync", "umount", "runc", "cni", "nfs", "network-fs"}
        ):
            # minutes on a filesystem call or a flush: it has not returned (a sleep, a poll or a
            # child wait of minutes is how some programs idle)
            return True
        if lk.kind in ("chan", "select", "cond", "waitgroup") and lk.tags & {"symptom", "kubelet-relist"}:
            return True
        if any(t.startswith("cri:") for t in lk.tags) and lk.kind not in ("io", "idle"):
            return True
    return False


def symptom_refs(ctx: RuleContext) -> tuple[Ref, ...]:
    """Evidence that the node showed the stall (a relist gap, PLEG unhealthy, NotReady, a CRI
    deadline, a capture trigger): what makes a goroutine caught mid-call meaningful."""
    refs: list[Ref] = []
    stall = worst_stall(ctx)
    if stall is not None:
        refs.extend(getattr(stall, "refs", ()) or ())
    for e in events(
        ctx, EventKind.PLEG_UNHEALTHY, EventKind.NODE_NOT_READY, EventKind.SKIPPING_POD_SYNC, EventKind.RELIST_ERROR
    ):
        refs.append(e.ref)
    for e in events(ctx, EventKind.CRI_CALL_FAILED):
        if "deadline" in str(e.attrs.get("code", "")).lower() or "deadline" in str(e.attrs.get("error", "")).lower():
            refs.append(e.ref)
    # a goroutine dump of runc: a CLI that exits in milliseconds was dumped because it hung
    ga = ctx.goroutines
    for dump in getattr(ga, "dumps", None) or ():
        if dump.process == RUNC and dump.goroutines:
            refs.append(dump.ref(dump.goroutines[0]))
            break
    if stall is not None and not refs:
        return (Ref("(relist timeline)", 0, f"relist gap of {stall.seconds:.0f} s"),)
    return tuple(dict.fromkeys(refs))[:4]


def _weight(base: float, chain: Chain, minutes: int) -> float:
    w = base
    if minutes >= 10:
        w += 0.05
    if chain.blocked >= CONVOY_MIN:
        w += 0.05
    return min(w, 0.65)


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


@rule(
    "PD804",
    "runc-stuck",
    title="runc itself is stuck (its goroutine dump shows where)",
    severity=Severity.WARNING,
    cls=C.RUNC_HANG,
    fix="Find what runc waits for: for `runc start` blocked opening exec.fifo, the container's init never reached "
    "exec (check the init process: cat /proc/<init pid>/stack, its cgroup's freezer state); kill the stuck runc "
    "and let the shim retry.",
    references=("https://github.com/containerd/containerd/issues/1882",),
    role="cause",
    reads=("dumps",),
)
def runc_stuck(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a goroutine dump of runc — a short-lived CLI, so a dump of it exists because it did not
    exit (SIGQUIT to a hung `runc start`, `runc delete`, `runc exec`) — whose main goroutine
    is blocked in a syscall or a lock.

    Why it matters: `runc start` blocked in `openat` inside `(*linuxContainer).exec` waits for the
    container's init side of `exec.fifo`: the init process never got to exec (frozen cgroup,
    D state, a hook that hangs).

    Example evidence: runc `goroutine 1 [syscall]: syscall.Syscall6(0x101, ...) ... os.OpenFile ...
    libcontainer.(*linuxContainer).exec` (containerd#1882).

    Fix: see what the container's init waits for (its kernel stack, its cgroup's freezer).
    """
    ga = ctx.goroutines
    if ga is None:
        return
    for di, dump in enumerate(getattr(ga, "dumps", None) or ()):
        if dump.process != "runc":
            continue
        for g in dump.goroutines:
            info = ga.infos.get((di, g.id))
            if info is None or str(info.kind) in ("running", "idle", "io", "select", "sleep", "unknown"):
                continue
            if g.id != 1 and "runc" not in info.tags:
                continue
            fifo = "runc-exec-fifo" in info.tags
            doing = (
                "waits in exec() to open exec.fifo: the container's init never reached exec"
                if fifo
                else f"is blocked ({info.description})"
            )
            link = goroutine_link(
                dump,
                g,
                info,
                f"runc ({dump.label} goroutine {g.id}) {doing}",
                "exec.fifo" if fifo else info.description,
                extra_tags=("runc",),
            )
            chain = Chain(links=(link,), blocked=0, max_wait_minutes=g.wait_minutes, score=0.0)
            yield Hit(
                title=f"runc goroutine {g.id} {doing}",
                evidence=chain_refs(chain),
                weight=0.6 if fifo else 0.45,
                chain=chain,
            )
            break


@rule(
    "PD805",
    "systemd-dbus-wait",
    title="A runtime call waits on systemd over D-Bus",
    severity=Severity.CRITICAL,
    cls=C.SYSTEMD_DBUS_HANG,
    fix="Check systemd: `systemctl status` (does it answer?), `busctl status`, the journal of systemd and "
    "dbus-daemon (D-Bus connection limits, a reload that hangs). Restart dbus/systemd-logind where safe; with the "
    "systemd cgroup driver, runc and the kubelet create every container's scope through systemd, so a systemd that "
    "does not answer stops container start and stop.",
    references=(
        "https://github.com/opencontainers/runc/issues/3904",
        "https://github.com/opencontainers/runc/issues/1959",
        "https://github.com/opencontainers/runc/issues/4481",
    ),
    role="cause",
    reads=("relists", "events", "dumps"),
)
def systemd_dbus_wait(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a goroutine of runc, a shim, containerd, CRI-O or the kubelet blocked inside a D-Bus
    client (`github.com/godbus/dbus`) or go-systemd's unit calls (`StartTransientUnit`,
    `startJob`, `StopUnit`), for a minute or more or on the stalled path while the node shows
    the stall.

    Why it matters: with the systemd cgroup driver every container's cgroup is a systemd scope created
    over D-Bus; when systemd or dbus-daemon does not answer (a hung reload, the D-Bus
    connection limit), runc create/start and the kubelet's cgroup manager wait with no
    deadline, and so does every CRI call behind them.

    Example evidence: `github.com/coreos/go-systemd/v22/dbus.(*Conn).startJob` -> `chan
    receive` under `libcontainer/cgroups/systemd.startUnit` (runc#3904, runc#1959).

    Fix: make systemd answer again (see the fix text); a timeout on runc's D-Bus calls is
    discussed upstream (runc#4481).
    """
    symptom = bool(symptom_refs(ctx))
    seen: set[tuple[str, int | None]] = set()
    for chain in ctx.chains:
        if "systemd-dbus" not in chain.tags:
            continue
        minutes = _minutes(chain)
        if minutes < LONG_WAIT_MINUTES and not symptom:
            continue
        link = next(lk for lk in reversed(chain.links) if "systemd-dbus" in lk.tags)
        key = (link.process, link.goroutine)
        if key in seen:
            continue
        seen.add(key)
        wait = f" for {minutes} min" if minutes else " while the node stalls"
        yield Hit(
            title=f"{link.process} goroutine {link.goroutine} waits on systemd over D-Bus{wait}",
            evidence=chain_refs(chain),
            weight=0.6 if minutes >= LONG_WAIT_MINUTES else 0.45,
            chain=chain,
        )
    if seen:
        return
    # A dump of runc — a CLI that exits in milliseconds, so a dump means it hung — with a live
    # D-Bus connection: runc was talking to systemd when it stopped (its caller may be cut from
    # the excerpt; the connection's reader and writer goroutines are what is left).
    ga = ctx.goroutines
    for di, dump in enumerate(getattr(ga, "dumps", None) or ()):
        if dump.process != "runc":
            continue
        dbus = [g for g in dump.goroutines if "systemd-dbus" in ga.infos[(di, g.id)].tags]
        if not dbus:
            continue
        g = dbus[0]
        info = ga.infos[(di, g.id)]
        detail = (
            f"runc ({dump.label} goroutine {g.id}) has a D-Bus connection to systemd open while it hangs "
            f"({plural(len(dbus), 'D-Bus goroutine')})"
        )
        link = goroutine_link(dump, g, info, detail, "systemd over D-Bus", extra_tags=("runc",))
        chain = Chain(links=(link,), blocked=0, max_wait_minutes=None, score=0.0)
        yield Hit(
            title=f"runc hangs with a D-Bus connection to systemd open ({plural(len(dbus), 'goroutine')} in godbus)",
            evidence=chain_refs(chain),
            weight=0.45,
            chain=chain,
        )


@rule(
    "PD806",
    "known-runtime-bug",
    title="The runtime version has a known deadlock, and its signature is in the dump",
    severity=Severity.CRITICAL,
    cls=C.RUNTIME_KNOWN_BUG,
    fix="Upgrade the runtime to the fixed release named in the finding; restart it to clear the deadlock now "
    "(after saving the dump).",
    references=("https://github.com/containerd/containerd/issues/10085",),
    role="cause",
    reads=("dumps", "versions"),
)
def known_runtime_bug(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a runtime version in the affected range of a known deadlock or regression
    (`knowledge.KNOWN_BUGS`: introduced in, fixed in per release branch, with sources) *and*
    a goroutine of its dump waits for a lock inside the bug's signature functions.

    Why it matters: neither alone is enough: an affected version without the signature is a risk (the
    configuration audit says so), the signature on a fixed version is another bug. Together
    the remediation is an upgrade, not a setting.

    Example evidence: containerd 1.7.13 with goroutines waiting for locks in
    `nri/pkg/adaptation.(*Adaptation).acceptPluginConnections` and `pkg/nri.(*local)`:
    containerd#10085, fixed in 1.7.16.

    Fix: upgrade to the fixed release; restart the runtime to clear the deadlock now.
    """
    from plegdoctor.errors import UserError
    from plegdoctor.knowledge import KNOWN_BUGS, ContainerdVersion

    raw = ctx.versions.containerd
    if not raw:
        return
    try:
        version = ContainerdVersion.parse(str(raw))
    except UserError:
        return
    for bug in KNOWN_BUGS:
        if not bug.affects(version):
            continue
        for chain in ctx.chains:
            hit = next(
                (
                    lk
                    for lk in chain.links
                    if lk.kind in _LOCK_KINDS and any(sig in " ".join(_frames_of(ctx, lk)) for sig in bug.signature)
                ),
                None,
            )
            if hit is None:
                continue
            refs = (*chain_refs(chain), *ctx.versions.refs[:1])
            yield Hit(
                title=f"containerd {version.raw or raw} is affected by {bug.fix.id} (fixed in "
                f"{bug.fix.fixed_in_text()}): {hit.process} goroutine {hit.goroutine} waits for a lock in its code",
                evidence=refs,
                weight=0.7,
                chain=chain,
                fix=f"Upgrade containerd to {bug.fix.fixed_in_text()} or later ({bug.fix.title}); restart it now to "
                f"clear the deadlock ({bug.symptom}). Sources: {', '.join(bug.fix.references)}.",
            )
            break


def _frames_of(ctx: RuleContext, link: ChainLink) -> list[str]:
    """Every function of the goroutine behind a link (canonical names where the engine has them)."""
    ga = ctx.goroutines
    if ga is None or link.goroutine is None:
        return [link.function or ""]
    for di, dump in enumerate(getattr(ga, "dumps", None) or ()):
        if dump.process != link.process or dump.pid != link.pid:
            continue
        g = ga.goroutine((di, link.goroutine))
        if g is not None:
            return [loc[0] for loc in g.stack]
    return [link.function or ""]
