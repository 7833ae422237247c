"""PD1xx: the kubelet and its PLEG: the symptom itself, stalls inside the kubelet, slow relists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from plegdoctor.model import EventKind, MetricSample, Ref, RootCauseClass, Severity
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


_CONTAINER_COUNT = ("kubelet_running_containers", "kubelet_running_container_count")
_POD_COUNT = ("kubelet_running_pods", "kubelet_running_pod_count")


def _metric_total(samples: list[MetricSample], names: tuple[str, ...]) -> tuple[float, Ref] | None:
    by_name: dict[str, list[MetricSample]] = {}
    for s in samples:
        if s.name in names:
            by_name.setdefault(s.name, []).append(s)
    for n in names:
        if n in by_name:
            # one scrape: sum over label sets (container_state=running/exited/created/unknown)
            latest: dict[tuple[tuple[str, str], ...], MetricSample] = {}
            for s in by_name[n]:
                latest[tuple(sorted(s.labels.items()))] = s
            return sum(s.value for s in latest.values()), next(iter(latest.values())).ref
    return None


def _relist_duration_mean(samples: list[MetricSample]) -> tuple[float, Ref] | None:
    total = [s for s in samples if s.name == "kubelet_pleg_relist_duration_seconds_sum"]
    count = [s for s in samples if s.name == "kubelet_pleg_relist_duration_seconds_count"]
    if total and count and count[-1].value > 0:
        return total[-1].value / count[-1].value, total[-1].ref
    return None


@rule(
    "PD120",
    "too-many-containers",
    title="Relisting is slow because of the number of containers",
    severity=Severity.WARNING,
    cls=C.TOO_MANY_CONTAINERS,
    fix=(
        "Remove exited containers and dead sandboxes the kubelet keeps (lower --maximum-dead-containers, "
        "--maximum-dead-containers-per-container, image/container GC thresholds), reduce max pods per node, "
        "and check containerd's ListContainers time (crictl ps -a | wc -l; time crictl ps -a). Evented PLEG "
        "(feature gate EventedPLEG, containerd >= 1.7) relists far less often."
    ),
    references=(K8S_45419, KEP_3386),
    role="cause",
    reads=("relists", "events", "dumps", "metrics"),
)
def too_many_containers(ctx: RuleContext) -> Iterator[Hit]:
    """Detects many containers (kubelet metrics `kubelet_running_containers` summed over states,
    or `kubelet_running_pods`) together with slow relists (mean
    `kubelet_pleg_relist_duration_seconds` >= 0.5 s, or a median relist interval >= 2 s)
    and no blocking chain in any goroutine dump.

    Why it matters: every relist lists *all* containers and sandboxes, exited ones
    included, and inspects each changed pod serially. With thousands of containers each
    relist takes seconds, relists queue up, and a burst of pod churn pushes PLEG over its
    3-minute threshold without anything being stuck.

    Example evidence::

        kubelet_running_containers{container_state="exited"} 2210
        kubelet_running_containers{container_state="running"} 412
        kubelet_pleg_relist_duration_seconds_sum 10422.7
        kubelet_pleg_relist_duration_seconds_count 4120

    Fix: fewer (dead) containers per node; evented PLEG.
    """
    metrics = ctx.evidence.metrics
    containers = _metric_total(metrics, _CONTAINER_COUNT)
    pods = _metric_total(metrics, _POD_COUNT)
    duration = _relist_duration_mean(metrics)
    tl = ctx.timeline
    median_interval = tl.interval_p50 if tl is not None and tl.relists > 10 else None
    slow = (duration is not None and duration[0] >= 0.5) or (median_interval is not None and median_interval >= 2.0)
    if not slow:
        return
    blocking = [
        c
        for c in ctx.chains
        if chain_has_any(c, *_RUNTIME_CHAIN_TAGS, "dockerd-container-lock", "kubelet-relist") and c.blocked > 0
    ]
    many = (containers is not None and containers[0] >= 250) or (pods is not None and pods[0] >= 150)
    if not many:
        return
    weight = 0.5 if not blocking else 0.2
    parts = []
    refs: list[Ref] = []
    if containers:
        parts.append(f"{containers[0]:.0f} containers")
        refs.append(containers[1])
    if pods:
        parts.append(f"{pods[0]:.0f} pods")
        refs.append(pods[1])
    if duration:
        parts.append(f"mean relist {fmt_seconds(duration[0])}")
        refs.append(duration[1])
    if median_interval is not None:
        parts.append(f"median relist interval {fmt_seconds(median_interval)}")
    detail = ", ".join(parts)
    yield step_hit(
        f"slow relists with many containers: {detail}",
        weight,
        link("metrics", "kubelet", f"relist lists every container: {detail}", refs[:3]),
        evidence=refs,
        facts={"containers": containers[0] if containers else None},
    )


# -- PD130/PD131: the relist itself misbehaves (panics, runs twice) -------------------------------

K8S_88779 = "https://github.com/kubernetes/kubernetes/issues/88779"
_RELIST_FUNCS = (
    "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relist",
    "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Relist",
    "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).updateCache",
)
_PANIC_FRAMES = (
    "panic",
    "runtime.gopanic",
    "runtime.sigpanic",
    "runtime.panicmem",
    "runtime.throw",
    "runtime.fatalthrow",
    "runtime.fatal",
    "k8s.io/apimachinery/pkg/util/runtime.HandleCrash",
    "k8s.io/apimachinery/pkg/util/runtime.logPanic",
    "k8s.io/apimachinery/pkg/util/runtime.handleCrash",
)
_PANIC_MESSAGES = ("Observed a panic", "panic:", "Recovered from panic", "fatal error:")


def _relist_frame(funcs: tuple[str, ...], names: tuple[str, ...] = _RELIST_FUNCS) -> int | None:
    """Index of the first (innermost) frame of a stack that is one of `names`, or None."""
    for i, f in enumerate(funcs[:200]):
        if f in names:
            return i
    return None


@rule(
    "PD130",
    "panic-in-relist",
    title="The kubelet panicked inside the PLEG relist",
    severity=Severity.CRITICAL,
    cls=C.KUBELET_INTERNAL,
    fix=(
        "A kubelet bug, not the runtime: read the panic message and the relist frame it names, search "
        "kubernetes issues for it and upgrade the kubelet to a release that fixes it (e.g. the EventedPLEG nil "
        "pointer of kubernetes #122475 and #128654). Meanwhile disable the feature gate involved (EventedPLEG) "
        "or remove the pod/container state that triggers it."
    ),
    references=(
        K8S_88779,
        "https://github.com/kubernetes/kubernetes/pull/122475",
        "https://github.com/kubernetes/kubernetes/issues/128654",
    ),
    role="cause",
    reads=("relists", "events", "log_records", "dumps"),
)
def panic_in_relist(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a panic whose stack is in the PLEG relist: a kubelet log line `Observed a
    panic` / `panic:` / `fatal error:` whose stack (the structured `stacktrace=<...>` value)
    names `pleg.(*GenericPLEG).relist`, `Relist` or `updateCache`, or a kubelet goroutine in a
    dump that is panicking (`panic`, `runtime.gopanic`, `runtime.throw`, `HandleCrash`,
    `logPanic` frames) above one of those relist frames.

    Why it matters: apimachinery's `HandleCrash` logs `Observed a panic` and, by default,
    re-panics, so a panic in the relist takes the kubelet down; after the restart PLEG reports
    `pleg has yet to be successful` until a relist completes, and a relist that panics on
    every pass (a nil pod status, a concurrent map write) keeps the node NotReady. Where the
    panic is recovered (older `Run` loops), the kubelet carries on with a relist that never
    finished (kubernetes #88779). The runtime is not at fault.

    A panic elsewhere in the kubelet (volume manager, status manager) does not fire this
    rule: only a stack through the relist does.

    Example evidence (kubelet log, kubernetes #122475)::

        E1225 16:02:37.233866 22154 generic.go:453] "PLEG: Write status" err="rpc error: ..."
        E1225 16:02:37.234031 22154 runtime.go:79] Observed a panic: "invalid memory address or nil
        pointer dereference" (runtime error: invalid memory address or nil pointer dereference)
        goroutine 412 [running]:
        k8s.io/apimachinery/pkg/util/runtime.logPanic(...)
        panic({0x3c0e2a0, 0x6b7f1b0})
        k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).updateCache(...)
        k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Relist(...)

    Fix: upgrade the kubelet past the fix for that panic; disable the feature gate involved.

    References: kubernetes #88779 (relist panics on concurrent map access), #122475 and
    #128654 (nil pointer panics on the relist path with EventedPLEG).
    """
    for rec in ctx.evidence.log_records:
        if rec.process != "kubelet" or not rec.msg.startswith(_PANIC_MESSAGES):
            continue
        text = rec.msg + " " + " ".join(str(v) for v in rec.fields.values())
        if "GenericPLEG" not in text or not any(f.rsplit(".", 1)[-1] in text for f in _RELIST_FUNCS):
            continue
        pos = {f: text.find(f) for f in _RELIST_FUNCS if f in text} or {
            f: text.find(f.rsplit(".", 1)[-1] + "(") for f in _RELIST_FUNCS if f.rsplit(".", 1)[-1] + "(" in text
        }
        fn = min(pos, key=lambda f: pos[f]).rsplit("/", 1)[-1]  # the innermost relist frame of the stack
        yield step_hit(
            f"kubelet panicked in the relist ({fn}): {rec.msg[:120]}",
            0.65 + (0.05 if stalls(ctx) else 0.0),
            link("log", "kubelet", f"panic in {fn}: {rec.msg[:160]}", (rec.ref,), tags=("kubelet-relist", "panic")),
            evidence=(rec.ref,),
        )
        return
    for dump in ctx.evidence.dumps:
        for g in getattr(dump, "goroutines", ()):
            funcs = tuple(loc[0] for loc in g.stack)
            at = _relist_frame(funcs)
            if at is None:
                continue
            panic_at = next(
                (i for i, f in enumerate(funcs[:at]) if f in _PANIC_FRAMES or f.startswith(_PANIC_FRAMES[7:])), None
            )
            if panic_at is None:
                continue
            fn = funcs[at].rsplit("/", 1)[-1]
            refs = (dump.ref(g), dump.ref(g, panic_at), dump.ref(g, at))
            process = dump.process if dump.process != "unknown" else "kubelet"
            yield step_hit(
                f"{process} goroutine {g.id} panics inside the relist ({fn})",
                0.6 + (0.05 if stalls(ctx) else 0.0),
                link(
                    "goroutine",
                    process,
                    f"goroutine {g.id} [{g.state}] panics ({funcs[panic_at]}) in {fn}",
                    refs,
                    tags=("kubelet-relist", "panic"),
                    goroutine=g.id,
                    pid=dump.pid,
                    function=funcs[at],
                ),
                evidence=refs,
            )
            return


@rule(
    "PD131",
    "concurrent-relists",
    title="Two PLEG relists run at the same time",
    severity=Severity.CRITICAL,
    cls=C.KUBELET_INTERNAL,
    fix=(
        "The relist is not safe to run twice at once (its pod records are an unlocked map): the kubelet "
        "started its PLEG loop twice, typically after a panic in Kubelet.Run was recovered and Run was "
        "called again (kubernetes #88779, fixed by #89055 in 1.18 and its cherry picks). Upgrade the "
        "kubelet; restart it to clear the state now."
    ),
    references=(K8S_88779, "https://github.com/kubernetes/kubernetes/pull/89277"),
    role="cause",
    reads=("relists", "dumps"),
)
def concurrent_relists(ctx: RuleContext) -> Iterator[Hit]:
    """Detects two relists executing at once: two kubelet goroutines of one dump inside
    `pleg.(*GenericPLEG).relist`/`Relist` (neither waiting to take a lock in the relist's own
    frame, which would mean the relists are serialized), or a kubelet log whose
    `GenericPLEG: Relisting` ticks come closer together than one relist period allows.

    Why it matters: the relist loop runs with a sliding 1 s period (`wait.Until`), so a
    single loop can neither overlap itself nor log two relists less than a period apart. Two
    loops mean the PLEG was started twice; their relists race on the pod records map, which
    ends in `fatal error: concurrent map read and map write` inside the relist or in
    corrupted pod state, and the node goes NotReady (kubernetes #88779).

    The log form needs at least 10 consecutive tick intervals in one file, of which at least
    3, and a fifth, are shorter than 0.5 s but not zero (identical stamps are a duplicated
    log, not a second loop).

    Example evidence (a kubelet dump)::

        goroutine 1201 [select]:
        k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relist(0xc000788960)
        created by k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Start
        goroutine 3377 [running]:
        k8s.io/kubernetes/pkg/kubelet/pleg.podRecords.setCurrent(...)
        k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relist(0xc000788960)

    Fix: upgrade the kubelet (one PLEG loop per process); restart it now.

    References: kubernetes #88779 (panic in Kubelet.Run creates parallel Run goroutines
    calling relist concurrently), #89277 (cherry pick of the fix #89055).
    """
    for dump in ctx.evidence.dumps:
        inside: list[tuple[Any, int]] = []
        for g in getattr(dump, "goroutines", ()):
            funcs = tuple(loc[0] for loc in g.stack)
            at = _relist_frame(funcs, _RELIST_FUNCS[:2])  # the relist loop itself, not updateCache workers
            if at is None:
                continue
            waiting_lock = (
                g.state in ("sync.Mutex.Lock", "semacquire", "sync.RWMutex.Lock")
                and any(f.startswith("sync.") for f in funcs[:at])
                and all(f.startswith(("sync.", "internal/sync.", "runtime.")) for f in funcs[:at])
            )
            if waiting_lock:
                continue
            inside.append((g, at))
            if len(inside) >= 8:
                break
        if len(inside) < 2:
            continue
        (g1, a1), (g2, a2) = inside[0], inside[1]
        refs = (dump.ref(g1, a1), dump.ref(g2, a2))
        process = dump.process if dump.process != "unknown" else "kubelet"
        ids = ", ".join(str(g.id) for g, _ in inside[:4])
        yield step_hit(
            f"{len(inside)} {process} goroutines are inside the relist at once (goroutines {ids})",
            0.6,
            *(
                link(
                    "goroutine",
                    process,
                    f"goroutine {g.id} [{g.state}] in {g.stack[a][0].rsplit('/', 1)[-1]}",
                    (dump.ref(g, a),),
                    tags=("kubelet-relist", "concurrent-relist"),
                    goroutine=g.id,
                    pid=dump.pid,
                )
                for g, a in inside[:2]
            ),
            evidence=refs,
        )
        return
    yield from _close_ticks(ctx)


def _close_ticks(ctx: RuleContext) -> Iterator[Hit]:
    series = ctx.evidence.relists
    n = len(series)
    if n < 11:
        return
    for src in range(len(series.sources)):
        intervals = 0
        short = 0
        first = -1
        prev = -1
        for i in range(n):
            if series.src[i] != src:
                continue
            if prev >= 0:
                dt = series.ts[i] - series.ts[prev]
                intervals += 1
                if 0.0 < dt < 0.5:
                    short += 1
                    if first < 0:
                        first = i
            prev = i
        if intervals < 10 or short < 3 or short < intervals / 5:
            continue
        refs = tuple(_tick_ref(series, j) for j in (first - 1, first))
        detail = f"{short} of {intervals} relist intervals are shorter than 0.5 s: two relist loops interleave"
        yield step_hit(
            f"kubelet relists overlap: {detail}",
            0.5,
            link("relist-ticks", "kubelet", detail, refs, tags=("kubelet-relist", "concurrent-relist")),
            evidence=refs,
            facts={"short_intervals": short, "intervals": intervals},
        )
        return


def _tick_ref(series: Any, index: int) -> Ref:
    """A relist tick's line; its time stands in for the text when the series did not keep it."""
    ref: Ref = series.ref(index)
    if ref.text:
        return ref
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(series.ts[index], UTC).strftime("%H:%M:%S.%f")
    return Ref(ref.path, ref.line, f"GenericPLEG: Relisting (tick at {when} UTC)")
