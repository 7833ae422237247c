"""PD120, PD130, PD131: too many containers, a panic in the relist, concurrent relists."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from plegdoctor.analysis.pleg_timeline import SHORT_INTERVAL_SECONDS
from plegdoctor.model import MetricSample, Ref, Severity
from plegdoctor.rules.kubelet.relist import _RUNTIME_CHAIN_TAGS, K8S_45419, KEP_3386, C
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    chain_has_any,
    fmt_seconds,
    link,
    stalls,
    step_hit,
)

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
    for idx in _ticks_by_source(series):
        # the ticks of this source (all of them in the common one-source case), and their intervals
        t = series.ts if idx is None else [series.ts[i] for i in idx]
        intervals = max(len(t) - 1, 0)
        short = _short_intervals(ctx) if idx is None else _count_short(t)
        if intervals < 10 or short < 3 or short < intervals / 5:
            continue
        j = next(j for j, (a, b) in enumerate(itertools.pairwise(t), 1) if 0.0 < b - a < SHORT_INTERVAL_SECONDS)
        first = j if idx is None else idx[j]
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


def _ticks_by_source(series: Any) -> Iterator[list[int] | None]:
    """The indices of each source's ticks, in source order (None: the source has them all);
    sources without ticks are left out."""
    n = len(series)
    if n and 0 <= series.src[0] < len(series.sources) and series.src.count(series.src[0]) == n:
        yield None
        return
    by_source: dict[int, list[int]] = {}
    for i, src in enumerate(series.src):
        by_source.setdefault(src, []).append(i)
    for src in range(len(series.sources)):
        if src in by_source:
            yield by_source[src]


def _count_short(t: Any) -> int:
    """How many intervals between consecutive ticks `t` are shorter than 0.5 s but not zero."""
    return sum(1 for a, b in itertools.pairwise(t) if 0.0 < b - a < SHORT_INTERVAL_SECONDS)


def _short_intervals(ctx: RuleContext) -> int:
    """`_count_short` of all the relist ticks: the PLEG timeline's count when it has one for
    these ticks."""
    tl = ctx.timeline
    short = getattr(tl, "short_intervals", None)
    if short is not None and getattr(tl, "relists", None) == len(ctx.evidence.relists):
        return int(short)
    return _count_short(ctx.evidence.relists.ts)


def _tick_ref(series: Any, index: int) -> Ref:
    """A relist tick's line; its time stands in for the text when the series did not keep it."""
    ref: Ref = series.ref(index)
    if ref.text:
        return ref
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(series.ts[index], UTC).strftime("%H:%M:%S.%f")
    return Ref(ref.path, ref.line, f"GenericPLEG: Relisting (tick at {when} UTC)")
