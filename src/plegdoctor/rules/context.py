"""The context every rule reads: the evidence plus the analyses derived from it, and the
stalls (relist gaps and unhealthy windows) that place every figure.

It lives apart from the registry (rules/registry.py: `@rule`, `Hit`, `run_rules`) and from
the shared readers (rules/signals.py) so that both import it and neither imports the other.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from plegdoctor.evidence import Evidence
from plegdoctor.model import Chain, ChainLink, Ref, Versions

# ---------------------------------------------------------------------------------------
# Stalls (relist gaps and unhealthy windows, from the PLEG timeline)


class Stall(msgspec.Struct, frozen=True):
    """A span where the kubelet did not relist: a gap between two relist ticks, or a
    `PLEG is not healthy` window (start = when the kubelet says relisting stopped)."""

    start: datetime | None
    end: datetime | None
    seconds: float
    refs: tuple[Ref, ...]
    kind: str  # gap | unhealthy


def stalls(ctx: RuleContext) -> list[Stall]:
    """Relist gaps >= ctx.gap_seconds and unhealthy windows, longest first."""
    return ctx.memo("stalls", lambda: _stalls(ctx))  # type: ignore[no-any-return]


def _stalls(ctx: RuleContext) -> list[Stall]:
    tl = ctx.timeline
    if tl is None:
        return []
    out = [
        Stall(g.start, g.end, g.seconds, (g.start_ref,) + ((g.end_ref,) if g.end_ref else ()), "gap")
        for g in tl.gaps
        if g.seconds >= ctx.gap_seconds
    ]
    for w in tl.unhealthy:
        out.append(Stall(w.relisting_stopped_at, w.end, float(w.max_last_seen_seconds or 0.0), w.refs, "unhealthy"))
    out.sort(key=lambda s: -s.seconds)
    return out


def stall_windows(ctx: RuleContext, slack: float = 0.0) -> list[tuple[datetime, datetime]]:
    """Known (start, end) of stalls, widened by `slack` seconds on each side."""
    pad = timedelta(seconds=slack)
    return [(s.start - pad, s.end + pad) for s in stalls(ctx) if s.start is not None and s.end is not None]


# ---------------------------------------------------------------------------------------
# Context


_UNSET: Any = object()


class RuleContext:
    """Everything rules may read: the evidence plus the analyses derived from it.

    Each analysis may be None when its evidence is absent or its module is not in this build.
    Analyses not passed in are computed lazily on first access (and failures are recorded in
    `errors`, never raised), so a caller can pass precomputed ones or let the context build
    them.

    - `evidence`: plegdoctor.evidence.Evidence
    - `timeline`: plegdoctor.analysis.pleg_timeline.PlegTimeline | None
    - `goroutines`: plegdoctor.goroutines.GoroutineAnalysis | None (`.chains`, `.waits`)
    - `pressure`: plegdoctor.analysis.pressure.PressureAnalysis | None (correlated with the
      stall windows: relist gaps and PLEG-unhealthy windows)
    - `config_audit`: result of plegdoctor.analysis.config_audit.audit | None
    - `gap_seconds`: relist gap that counts as a stall (default 3 s: period 1 s + slack)
    """

    def __init__(
        self,
        evidence: Evidence | None = None,
        *,
        timeline: Any = _UNSET,
        goroutines: Any = _UNSET,
        pressure: Any = _UNSET,
        config_audit: Any = _UNSET,
        gap_seconds: float = 3.0,
    ) -> None:
        self.evidence = evidence if evidence is not None else Evidence()
        self.gap_seconds = gap_seconds
        self._timeline = timeline
        self._goroutines = goroutines
        self._pressure = pressure
        self._config_audit = config_audit
        self.errors: list[str] = []  # analyses or rules that failed (reported as notes)
        self._cache: dict[str, Any] = {}

    @classmethod
    def build(cls, evidence: Evidence, gap_seconds: float = 3.0) -> RuleContext:
        """A context with every available analysis computed now (missing modules tolerated)."""
        ctx = cls(evidence, gap_seconds=gap_seconds)
        _ = ctx.timeline, ctx.goroutines, ctx.pressure, ctx.config_audit
        return ctx

    # -- lazily computed analyses ----------------------------------------------------------

    @property
    def timeline(self) -> Any:
        if self._timeline is _UNSET:
            self._timeline = self._run(
                "timeline",
                "plegdoctor.analysis.pleg_timeline",
                "build_timeline",
                lambda f: f(self.evidence, self.gap_seconds),
            )
        return self._timeline

    @property
    def goroutines(self) -> Any:
        if self._goroutines is _UNSET:
            dumps = list(self.evidence.dumps)
            self._goroutines = (
                self._run("goroutine analysis", "plegdoctor.goroutines", "analyze", lambda f: f(dumps))
                if dumps
                else None
            )
        return self._goroutines

    @property
    def pressure(self) -> Any:
        if self._pressure is _UNSET:
            ev = self.evidence
            if ev.pressure or ev.disk_samples or ev.diskstats or ev.meminfo:
                # the stall windows (relist gaps and PLEG-unhealthy windows) place each figure
                windows = stall_windows(self)
                self._pressure = self._run(
                    "pressure analysis",
                    "plegdoctor.analysis.pressure",
                    "analyze_pressure",
                    lambda f: f(ev, gaps=windows),
                )
            else:
                self._pressure = None
        return self._pressure

    @property
    def config_audit(self) -> Any:
        if self._config_audit is _UNSET:
            ev = self.evidence
            if ev.runtime_configs or ev.versions or ev.mounts:
                self._config_audit = self._run(
                    "config audit", "plegdoctor.analysis.config_audit", "audit", lambda f: _call_audit(f, ev)
                )
            else:
                self._config_audit = None
        return self._config_audit

    def _run(self, what: str, modname: str, attr: str, call: Callable[[Any], Any]) -> Any:
        try:
            module = importlib.import_module(modname)
            fn = getattr(module, attr)
        except (ImportError, AttributeError):
            return None
        try:
            return call(fn)
        except Exception as exc:  # an analysis bug must not hide what other evidence shows
            if os.environ.get("PLEG_DOCTOR_DEBUG"):
                raise
            self.errors.append(f"{what} failed: {type(exc).__name__}: {exc}")
            return None

    # -- conveniences for rules ------------------------------------------------------------

    @property
    def chains(self) -> list[Chain]:
        """The goroutine engine's blocking chains, plus one-link chains for goroutines stuck
        alone (a long ttrpc call, syscall or kubelet relist wait with no waiter or holder
        visible), so rules see every long wait in one shape."""
        if "chains" not in self._cache:
            ga = self.goroutines
            chains = list(getattr(ga, "chains", None) or []) if ga is not None else []
            self._cache["chains"] = chains + _lone_waits(ga, chains)
        return self._cache["chains"]  # type: ignore[no-any-return]

    @property
    def versions(self) -> Versions:
        """All Versions records merged (first non-empty value of each field wins)."""
        if "versions" not in self._cache:
            merged: dict[str, Any] = {}
            refs: list[Ref] = []
            for v in self.evidence.versions:
                for name in ("kernel", "containerd", "kubelet", "runc", "go"):
                    val = getattr(v, name, None)
                    if val and name not in merged:
                        merged[name] = val
                refs.extend(v.refs)
            self._cache["versions"] = Versions(**merged, refs=tuple(refs))
        return self._cache["versions"]  # type: ignore[no-any-return]

    def dump_processes(self) -> set[str]:
        """Processes we have goroutine dumps of (containerd, containerd-shim, kubelet, dockerd)."""
        out: set[str] = set()
        for d in self.evidence.dumps:
            proc = getattr(d, "process", None)
            if proc:
                out.add(str(proc))
        ga = self.goroutines
        for p in getattr(ga, "processes", None) or []:
            name = getattr(p, "process", None) or getattr(p, "name", None) or (p if isinstance(p, str) else None)
            if name:
                out.add(str(name))
        return out

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


_LONE_KINDS = frozenset(
    {
        "ttrpc-call",
        "grpc-call",
        "http-call",
        "syscall",
        "fsync",
        "fdatasync",
        "bbolt-commit-io",
        "mutex",
        "rwmutex-read",
        "rwmutex-write",
        "bbolt-writer",
        "chan",
    }
)
_LONE_TAGS = frozenset({"umount", "fsync", "fdatasync", "runc", "cni", "kubelet-relist", "task-exit"})


def _lone_waits(ga: Any, chains: list[Chain]) -> list[Chain]:
    """One-link chains for blocked goroutines that are in no chain: waits of a minute or
    more (or on a telling path: umount, fsync, runc, CNI, the kubelet relist)."""
    waits = getattr(ga, "waits", None)
    if not waits:
        return []
    try:
        from plegdoctor.goroutines.chains import describe_actor, describe_wait
    except ImportError:
        return []
    in_chain = {(lk.process, lk.pid, lk.goroutine) for c in chains for lk in c.links}
    out: list[Chain] = []
    for w in waits:
        kind = str(w.kind)
        if kind not in _LONE_KINDS and kind not in ("select", "grpc-handler"):
            continue
        node = (w.dump, w.goroutine)
        g = ga.goroutine(node)
        info = getattr(ga, "infos", {}).get(node)
        if g is None or info is None:
            continue
        if kind in ("select", "grpc-handler") and not (info.symptom or any(t.startswith("cri:") for t in info.tags)):
            continue  # a select of hours is how loops idle; inside a CRI handler it is a stalled call
        dump = ga.dumps[w.dump]
        if (dump.process, dump.pid, g.id) in in_chain:
            continue
        tags = set(info.tags)
        if w.syscall:
            tags.add(f"syscall:{w.syscall}")
            if w.syscall in ("fsync", "fdatasync"):
                tags.add(w.syscall)
            if w.syscall == "umount2":
                tags.add("umount")
        minutes = g.wait_minutes or 0
        if minutes < 1 and not (tags & _LONE_TAGS):
            continue
        where = f"{dump.label} goroutine {g.id}" + (f", {g.wait_minutes} min" if g.wait_minutes is not None else "")
        site = min(info.site, len(g.stack) - 1) if g.stack else None
        link = ChainLink(
            kind=str(w.kind),
            process=dump.process,
            detail=f"{describe_actor(info, g)} ({where}) {describe_wait(w, info)}",
            evidence=(dump.ref(g),) + ((dump.ref(g, site),) if site is not None else ()),
            goroutine=g.id,
            pid=dump.pid,
            function=g.stack[site][0] if site is not None else None,
            resource=w.resource,
            wait_minutes=g.wait_minutes,
            tags=frozenset(tags),
        )
        out.append(Chain(links=(link,), blocked=0, max_wait_minutes=g.wait_minutes, score=float(minutes)))
    out.sort(key=lambda c: -c.score)
    return out[:50]


def _call_audit(fn: Callable[..., Any], ev: Evidence) -> Any:
    """config_audit.audit(config, versions, mounts): the first config, the merged versions."""
    versions = RuleContext(ev).versions if ev.versions else None
    config = ev.runtime_configs[0] if ev.runtime_configs else None
    return fn(config, versions, list(ev.mounts))
