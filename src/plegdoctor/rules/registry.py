"""The rule registry and the context every rule reads.

A rule is a function decorated with `@rule(...)` in one of the family modules
(kubelet PD1xx, runtime_locks PD2xx, storage PD3xx, shim PD4xx, config PD5xx, kernel PD6xx,
docker PD7xx). It takes a `RuleContext` and yields `Hit`s; the registry turns each hit into
a `model.Finding` carrying the rule's code, severity, root-cause class and references. The
function's docstring is the rule's documentation (`pleg-doctor explain CODE`, docs/rules.md),
written like ruff's rule pages: what it detects, why it matters, example evidence, the fix,
references.

Rules read parsed evidence (`plegdoctor.evidence.Evidence`) and analyses (PLEG timeline,
goroutine wait chains, pressure, config audit), never raw text.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from plegdoctor.evidence import Evidence
from plegdoctor.model import Chain, ChainLink, Finding, Ref, RootCauseClass, Severity, Versions

log = logging.getLogger(__name__)

FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("PD1", "plegdoctor.rules.kubelet", "kubelet and PLEG"),
    ("PD2", "plegdoctor.rules.runtime_locks", "runtime locks (containerd CRI, bbolt, metadata)"),
    ("PD3", "plegdoctor.rules.storage", "storage I/O"),
    ("PD4", "plegdoctor.rules.shim", "shim, runc and CNI"),
    ("PD5", "plegdoctor.rules.config", "configuration and versions"),
    ("PD6", "plegdoctor.rules.kernel", "kernel"),
    ("PD7", "plegdoctor.rules.docker", "docker"),
    ("PD8", "plegdoctor.rules.generic", "generic waits (any Go daemon, any version)"),
    ("PD9", "plegdoctor.rules.process", "process states and node resources"),
)

CODE_RE = re.compile(r"^PD[1-9]\d\d$")


@dataclass(frozen=True, slots=True)
class Hit:
    """What a rule function yields: one observation, with its evidence.

    `weight` (0..1) is how strongly this observation supports the rule's root-cause class.
    `links` are chain steps built from non-goroutine evidence (log lines, kernel traces, PSI),
    symptom first; `chain` is a goroutine wait chain from plegdoctor.goroutines. `fix`
    overrides the rule's default fix (version-aware text). `facts` are figures the diagnosis
    may quote (e.g. {"stall_seconds": 42.3}).
    """

    title: str
    evidence: tuple[Ref, ...] = ()
    weight: float = 0.5
    chain: Chain | None = None
    links: tuple[ChainLink, ...] = ()
    fix: str | None = None
    severity: Severity | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    cls: RootCauseClass | None = None  # a generic rule names the class per hit (by mechanism)


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    name: str
    title: str
    severity: Severity
    root_cause: RootCauseClass
    fix: str
    references: tuple[str, ...]
    check: Callable[[RuleContext], Iterable[Hit]]
    symptom: bool = False  # describes the PLEG symptom, not a cause
    generic: bool = False  # a first-principles rule: yields to a signature rule on the same wait

    @property
    def family(self) -> str:
        for prefix, _, label in FAMILIES:
            if self.code.startswith(prefix):
                return label
        return "other"

    @property
    def doc(self) -> str:
        """The rule's documentation (its docstring, dedented)."""
        return inspect.cleandoc(self.check.__doc__ or "").strip()

    def to_finding(self, hit: Hit) -> Finding:
        chain = hit.chain
        if chain is None and hit.links:
            chain = Chain(links=hit.links, blocked=0, max_wait_minutes=None, score=hit.weight)
        return Finding(
            code=self.code,
            severity=hit.severity or self.severity,
            title=hit.title,
            root_cause=hit.cls or self.root_cause,
            weight=max(0.0, min(1.0, hit.weight)),
            evidence=tuple(hit.evidence[:12]),
            fix=hit.fix or self.fix,
            references=self.references,
            chain=chain,
        )

    def explain(self, width: int = 100) -> str:
        """Plain-text page for `pleg-doctor explain CODE`."""
        head = f"{self.code} {self.name}: {self.title}"
        meta = [
            f"severity: {self.severity}",
            f"root cause class: {self.root_cause}" + (" (symptom rule)" if self.symptom else ""),
            f"family: {self.family}",
        ]
        parts = [head, "=" * min(len(head), width), *meta, "", self.doc, "", "Fix:"]
        parts.append(textwrap.fill(self.fix, width, initial_indent="  ", subsequent_indent="  "))
        if self.references:
            parts += ["", "References:"] + [f"  {r}" for r in self.references]
        return "\n".join(parts).rstrip() + "\n"


REGISTRY: dict[str, Rule] = {}


def rule(
    code: str,
    name: str,
    *,
    title: str,
    severity: Severity,
    cls: RootCauseClass,
    fix: str,
    references: Iterable[str] = (),
    symptom: bool = False,
    generic: bool = False,
) -> Callable[[Callable[[RuleContext], Iterable[Hit]]], Callable[[RuleContext], Iterable[Hit]]]:
    """Register a rule function under a stable code (PD1xx..PD9xx)."""
    if not CODE_RE.match(code):
        raise ValueError(f"bad rule code {code!r}")

    def deco(fn: Callable[[RuleContext], Iterable[Hit]]) -> Callable[[RuleContext], Iterable[Hit]]:
        if code in REGISTRY and REGISTRY[code].check is not fn:
            raise ValueError(f"duplicate rule code {code}")
        if not (fn.__doc__ or "").strip():
            raise ValueError(f"rule {code} has no docstring (it is the rule's documentation)")
        REGISTRY[code] = Rule(
            code=code,
            name=name,
            title=title,
            severity=severity,
            root_cause=cls,
            fix=" ".join(fix.split()),
            references=tuple(references),
            check=fn,
            symptom=symptom,
            generic=generic,
        )
        return fn

    return deco


def load_all() -> dict[str, Rule]:
    """Import every family module (each registers its rules) and return the registry, by code."""
    for _, modname, _ in FAMILIES:
        importlib.import_module(modname)
    return dict(sorted(REGISTRY.items()))


def get_rule(code: str) -> Rule | None:
    return load_all().get(code.strip().upper())


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
                from plegdoctor.rules.signals import stall_windows

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


# ---------------------------------------------------------------------------------------
# Running


def run_rules(ctx: RuleContext, codes: Iterable[str] | None = None) -> list[Finding]:
    """Run every registered rule (or only `codes`) and return their findings, by code.

    A rule that raises is recorded in `ctx.errors` and skipped (set PLEG_DOCTOR_DEBUG=1 to
    raise instead): one bug must not hide what the other rules found.
    """
    rules = load_all()
    wanted = set(codes) if codes is not None else None
    findings: list[Finding] = []
    for code, r in rules.items():
        if wanted is not None and code not in wanted:
            continue
        try:
            hits = list(r.check(ctx))
        except Exception as exc:
            if os.environ.get("PLEG_DOCTOR_DEBUG"):
                raise
            ctx.errors.append(f"rule {code} failed: {type(exc).__name__}: {exc}")
            log.debug("rule %s failed", code, exc_info=True)
            continue
        findings.extend(r.to_finding(h) for h in _dedupe(hits))
    return findings


def _dedupe(hits: list[Hit]) -> Iterator[Hit]:
    seen: set[str] = set()
    for h in hits:
        if h.title in seen:
            continue
        seen.add(h.title)
        yield h
