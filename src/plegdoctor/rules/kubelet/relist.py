"""PD101-PD104, PD108, PD110, PD111: relist gaps, PLEG unhealthy, relist errors, Evented PLEG fallback, NotReady,
a relist blocked inside the kubelet or while the runtime is idle."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.model import EventKind, Ref, RootCauseClass, Severity
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    chain_has_any,
    chain_hit,
    chain_wait_minutes,
    events,
    fmt_seconds,
    for_minutes,
    link,
    plural,
    stalls,
    step_hit,
)

C = RootCauseClass
PLEG_DOC = "https://github.com/kubernetes/kubernetes/blob/master/pkg/kubelet/pleg/generic.go"
K8S_45419 = "https://github.com/kubernetes/kubernetes/issues/45419"
K8S_101056 = "https://github.com/kubernetes/kubernetes/issues/101056"
KEP_3386 = "https://github.com/kubernetes/enhancements/issues/3386"

COLLECT = (
    "Collect what the runtime was doing: containerd goroutines (kill -USR1 $(pidof containerd), then "
    "/tmp/containerd.<pid>.stacks.log), /proc/pressure/io, /proc/diskstats twice 5 s apart, and "
    "journalctl -u kubelet -u containerd -o short-precise --all; or run `pleg-doctor collect` on the node."
)


def _when(ts: object) -> str:
    return ts.strftime("%H:%M:%S") if hasattr(ts, "strftime") else "?"


@rule(
    "PD101",
    "relist-gap",
    title="The kubelet stopped relisting pods",
    severity=Severity.WARNING,
    cls=C.UNKNOWN,
    fix=COLLECT,
    references=(PLEG_DOC, K8S_45419),
    role="symptom",
    reads=("relists", "events"),
)
def relist_gap(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a gap between consecutive `GenericPLEG: Relisting` lines of the kubelet (logged at
    -v=5) longer than the gap threshold (default 3 s; a healthy kubelet relists every ~1 s).

    Why it matters: this is the symptom. The relist calls CRI ListPodSandbox and
    ListContainers; while one of them does not return, no pod status is updated, and after
    3 minutes without a relist the kubelet reports `PLEG is not healthy` and the node goes
    NotReady. The gap's start and end bound the window in which to look for the cause.

    Example evidence::

        I0602 05:48:07.352436 1679 generic.go:191] "GenericPLEG: Relisting"
        I0602 05:48:49.669827 1679 generic.go:191] "GenericPLEG: Relisting"

    Fix: this rule only locates the stall; the other rules explain it.
    """
    gaps = [s for s in stalls(ctx) if s.kind == "gap"]
    if not gaps:
        return
    worst = gaps[0]
    sev = Severity.CRITICAL if worst.seconds >= 180 else Severity.WARNING
    more = f"; {len(gaps) - 1} more gap(s) over {fmt_seconds(ctx.gap_seconds)}" if len(gaps) > 1 else ""
    detail = f"relisting stopped for {fmt_seconds(worst.seconds)} ({_when(worst.start)} -> {_when(worst.end)})"
    yield step_hit(
        f"kubelet {detail}{more}",
        0.0,
        link("relist-gap", "kubelet", detail, worst.refs, tags=("kubelet-relist", "symptom")),
        evidence=worst.refs,
        severity=sev,
        facts={"stall_seconds": worst.seconds, "gaps": len(gaps)},
    )


@rule(
    "PD102",
    "pleg-unhealthy",
    title="The kubelet reported PLEG is not healthy",
    severity=Severity.CRITICAL,
    cls=C.UNKNOWN,
    fix=COLLECT,
    references=(PLEG_DOC, K8S_45419, K8S_101056),
    role="symptom",
    reads=("events",),
)
def pleg_unhealthy(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `PLEG is not healthy: pleg was last seen active <d> ago; threshold is 3m0s` (in
    `Skipping pod synchronization` lines or the node's Ready condition message).

    Why it matters: the kubelet declares PLEG unhealthy when no relist *started* successfully
    for 3 minutes; pod synchronization stops and the node is reported NotReady. The
    `last seen` figure dates the start of the stall even when relist lines are not logged.

    Example evidence::

        E0826 17:00:14.128025 1445 kubelet.go:1882] "Skipping pod synchronization"
        err="PLEG is not healthy: pleg was last seen active 3m2.3s ago; threshold is 3m0s"

    Fix: this rule only locates the stall; the other rules explain it.
    """
    evs = events(ctx, EventKind.PLEG_UNHEALTHY)
    nodes = [e for e in events(ctx, EventKind.NODE_NOT_READY) if "pleg" in str(e.attrs.get("message", "")).lower()]
    if not evs and not nodes:
        return
    last_seen = [float(e.attrs["last_seen_seconds"]) for e in evs if e.attrs.get("last_seen_seconds") is not None]
    worst = max(last_seen) if last_seen else None
    refs = tuple(e.ref for e in (evs[:1] + evs[-1:] + nodes[:1]))
    detail = "PLEG is not healthy" + (f": last relist {fmt_seconds(worst)} before" if worst else "")
    yield step_hit(
        f"{detail} ({plural(len(evs), 'report')}" + (", node NotReady)" if nodes else ")"),
        0.0,
        link("pleg-unhealthy", "kubelet", detail, refs[:2], tags=("kubelet-pleg", "symptom")),
        evidence=refs,
        facts={"max_last_seen_seconds": worst},
    )


@rule(
    "PD103",
    "relist-errors",
    title="The relist fails: the runtime returns errors to GetPods",
    severity=Severity.WARNING,
    cls=C.UNKNOWN,
    fix=COLLECT,
    references=(PLEG_DOC,),
    role="symptom",
    reads=("events",),
)
def relist_errors(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `GenericPLEG: Unable to retrieve pods` errors.

    Why it matters: a relist that fails does not update the PLEG's last-seen time; repeated
    failures make PLEG unhealthy just like a hung relist. The error text says which CRI call
    failed and how (DeadlineExceeded means the runtime hung for the whole request timeout).

    Example evidence::

        E0602 05:50:07.1 1679 generic.go:205] "GenericPLEG: Unable to retrieve pods"
        err="rpc error: code = DeadlineExceeded desc = context deadline exceeded"

    Fix: see what the runtime waited on (the other rules).
    """
    evs = events(ctx, EventKind.RELIST_ERROR)
    if not evs:
        return
    yield Hit(
        title=f"relist failed {plural(len(evs), 'time')}: " + str(evs[0].attrs.get("error", ""))[:120],
        evidence=tuple(e.ref for e in evs[:4]),
        weight=0.0,
    )


@rule(
    "PD104",
    "evented-pleg-fallback",
    title="Evented PLEG fell back to generic relisting",
    severity=Severity.INFO,
    cls=C.UNKNOWN,
    fix="Check the runtime's GetContainerEvents stream (containerd >= 1.7); the generic PLEG carries on meanwhile.",
    references=(KEP_3386,),
    role="symptom",
    reads=("events",),
)
def evented_pleg_fallback(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `Fall back to Generic PLEG relisting since Evented PLEG is not working`.

    Why it matters: with the EventedPLEG feature gate the kubelet relies on the runtime's
    event stream and relists only every 300 s; after 5 failed stream attempts it returns to
    1 s relisting. A fallback during a stall means the runtime's event stream broke too.

    Example evidence::

        I0311 10:02:14.5 912 evented.go:169] "Fall back to Generic PLEG relisting since Evented PLEG is not working"

    Fix: informational.
    """
    evs = events(ctx, EventKind.EVENTED_PLEG_FALLBACK)
    if evs:
        yield Hit(title="Evented PLEG fell back to generic relisting", evidence=(evs[0].ref,), weight=0.0)


# Node Ready-condition messages that blame the runtime (kubelet's runtimeState errors,
# pkg/kubelet/runtime.go): each is a relist-or-runtime symptom
_RUNTIME_NOT_READY = ("pleg", "container runtime", "runtime network not ready", "runtime is down")


@rule(
    "PD108",
    "node-not-ready-runtime",
    title="The node went NotReady because of the runtime or PLEG",
    severity=Severity.CRITICAL,
    cls=C.UNKNOWN,
    fix=COLLECT,
    references=(PLEG_DOC, K8S_45419),
    role="symptom",
    reads=("events",),
)
def node_not_ready_runtime(ctx: RuleContext) -> Iterator[Hit]:
    """Detects the kubelet setting its node NotReady with a runtime reason: `PLEG is not
    healthy`, `container runtime is down`, `container runtime status check may not have
    completed yet`, `runtime network not ready`.

    Why it matters: the Ready condition is what the cluster acts on (evictions, node repair);
    its message says the kubelet's own runtime checks failed, so the cause is in the relist or
    the runtime even when no relist line is logged.

    Example evidence::

        I0109 19:48:52.460707 9136 setters.go:559] Node became not ready: {Type:Ready
        Status:False ... Reason:KubeletNotReady Message:container runtime is down}

    Fix: this rule only locates the stall; the other rules explain it.
    """
    nodes = [
        e
        for e in events(ctx, EventKind.NODE_NOT_READY)
        if any(k in str(e.attrs.get("message", "")).lower() for k in _RUNTIME_NOT_READY)
    ]
    if not nodes:
        return
    msg = str(nodes[0].attrs.get("message", ""))
    reason = "PLEG is not healthy" if "pleg" in msg.lower() else "the container runtime is not ready"
    refs = tuple(e.ref for e in nodes[:1] + nodes[-1:])
    detail = f"node NotReady: {reason}"
    yield step_hit(
        f"{detail} ({plural(len(nodes), 'report')})",
        0.0,
        link("node-not-ready", "kubelet", detail, refs[:1], tags=("kubelet-pleg", "symptom")),
        evidence=refs,
    )


@rule(
    "PD110",
    "kubelet-relist-blocked-inside-kubelet",
    title="The kubelet's relist goroutine is blocked inside the kubelet, not in a CRI call",
    severity=Severity.CRITICAL,
    cls=C.KUBELET_INTERNAL,
    fix=(
        "The runtime is not what the relist waits for: read the kubelet goroutine chain (the lock or channel "
        "the PLEG goroutine waits on and its holder), search kubernetes issues for the holder's function, and "
        "upgrade the kubelet. Restarting the kubelet clears the state."
    ),
    references=(K8S_101056, "https://github.com/kubernetes/kubernetes/issues/104648"),
    role="cause",
    reads=("dumps",),
)
def kubelet_relist_blocked_inside_kubelet(ctx: RuleContext) -> Iterator[Hit]:
    """Detects, in a kubelet goroutine dump (`/debug/pprof/goroutine?debug=2`), the PLEG relist
    goroutine (`pleg.(*GenericPLEG).Relist` / `relist` / `updateCache`) waiting on a kubelet
    lock or channel instead of a CRI call to the runtime.

    Why it matters: PLEG can stop without any runtime problem, e.g. when `updateCache` waits
    for the pod cache lock held by a goroutine that is itself stuck, or when the relist sends
    on a full channel. Runtime fixes will not help then.

    Example evidence::

        goroutine 412 [sync.Mutex.Lock, 4 minutes]:
        sync.(*Mutex).Lock(...)
        k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).updateCache(...)
        k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Relist(...)

    Fix: follow the kubelet chain to the holder; upgrade the kubelet.
    """
    for chain in ctx.chains:
        if not chain_has_any(chain, "kubelet-relist", "kubelet-pleg"):
            continue
        if chain_has_any(chain, "cri:", "grpc", "ttrpc:"):
            continue
        if not all(lk.process == "kubelet" for lk in chain.links):
            continue
        minutes = chain_wait_minutes(chain)
        yield chain_hit(
            chain,
            f"kubelet relist goroutine waits inside the kubelet: {chain.links[-1].detail}{for_minutes(minutes)}",
            0.6 + (0.1 if minutes >= 1 else 0.0),
        )
        return


_RUNTIME_CHAIN_TAGS = ("cri:", "status-lock", "bbolt-writer", "metadata-wlock", "ttrpc:", "shim:", "umount", "fsync")


@rule(
    "PD111",
    "runtime-idle-during-stall",
    title="The runtime shows no blocked CRI work while the relist is stalled",
    severity=Severity.WARNING,
    cls=C.KUBELET_INTERNAL,
    fix=(
        "The runtime looks idle: take a kubelet goroutine dump during the stall "
        "(kubectl get --raw /api/v1/nodes/<node>/proxy/debug/pprof/goroutine?debug=2) to see where the "
        "PLEG goroutine waits."
    ),
    references=(K8S_101056,),
    role="cause",
    reads=("relists", "events", "dumps", "hung_tasks"),
)
def runtime_idle_during_stall(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a relist stall while a containerd goroutine dump shows no blocked CRI call and no
    lock, shim or I/O chain.

    Why it matters: if containerd is idle, ListContainers would have returned at once; the
    kubelet's relist goroutine must be stuck in the kubelet itself (or the dump was taken
    after the stall ended: check its time). The kubelet's own goroutines say which.

    Example evidence: a 4-minute relist gap and a containerd dump with only idle server
    goroutines (`[IO wait]`, `[select]` in event loops).

    Fix: dump the kubelet during the stall.
    """
    if not stalls(ctx) or "containerd" not in ctx.dump_processes():
        return
    if any(chain_has_any(c, *_RUNTIME_CHAIN_TAGS) and c.links[0].process != "kubelet" for c in ctx.chains):
        return
    if ctx.evidence.hung_tasks:
        return
    if _runtime_blocked_on_named_wait(ctx):
        return  # a runtime goroutine holds in a known lock, call or flush: the runtime is not idle
    refs: list[Ref] = []
    for d in ctx.evidence.dumps:
        r = getattr(d, "ref", None)
        if isinstance(r, Ref):
            refs.append(r)
    worst = stalls(ctx)[0]
    yield step_hit(
        f"relisting stalled {fmt_seconds(worst.seconds)} but containerd's dump shows no blocked CRI call",
        0.3,
        link("goroutines", "containerd", "containerd dump: no CRI call blocked, no lock chain", refs[:1]),
        evidence=tuple(refs[:2]) + worst.refs[:1],
    )


_NAMED_WAIT_KINDS = frozenset({"ttrpc-call", "bbolt-writer", "bbolt-commit-io", "fsync", "fdatasync"})


def _runtime_blocked_on_named_wait(ctx: RuleContext) -> bool:
    """Some runtime goroutine waits on a lock the knowledge names, an RPC to a shim, or a flush
    (even for under a minute, so it is in no chain of its own)."""
    ga = ctx.goroutines
    for w in getattr(ga, "waits", None) or ():
        dump = ga.dumps[w.dump]
        if dump.process == "kubelet":
            continue
        if str(w.kind) in _NAMED_WAIT_KINDS or (
            w.lock is not None and str(w.kind) in ("mutex", "rwmutex-read", "rwmutex-write")
        ):
            return True
    return False
