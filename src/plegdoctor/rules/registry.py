"""The rule registry: `@rule`, what each rule declares, and running them.

A rule is a function decorated with `@rule(...)` in one of the family modules
(kubelet PD1xx, runtime_locks PD2xx, storage PD3xx, shim PD4xx, config PD5xx, kernel PD6xx,
docker PD7xx). It takes a `RuleContext` and yields `Hit`s; the registry turns each hit into
a `model.Finding` carrying the rule's code, severity, root-cause class and references. The
function's docstring is the rule's documentation (`pleg-doctor explain CODE`, docs/rules.md),
written like ruff's rule pages: what it detects, why it matters, example evidence, the fix,
references.

Rules read parsed evidence (`plegdoctor.evidence.Evidence`) and analyses (PLEG timeline,
goroutine wait chains, pressure, config audit), never raw text. Each rule declares:

- `role` (`Role`): `symptom` (locates the stall, never a cause), `cause` (evidence of a
  mechanism), `condition` (a node, config or version condition that makes a stall likely; it
  only strengthens a class other evidence already shows);
- `reads` (`EvidenceKind`s, the `Evidence` fields it needs, also through the analyses built
  from them): what `next_steps` asks for when the inputs lacked it;
- `proof` (`Proof`): the independent kind of evidence its findings count as for confidence
  when their chain holds no goroutine; `io_load`: its findings are kernel figures of a loaded
  disk (hung tasks in I/O) the diagnosis quotes as such;
- `generic`: a first-principles rule that yields to a signature rule on the same wait.

The registry validates them at registration: an unknown role or evidence kind is an error.
The context rules read is `RuleContext` (rules/context.py, re-exported here).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import textwrap
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from plegdoctor.evidence import Evidence
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Chain, ChainLink, Finding, Ref, RootCauseClass, Severity
from plegdoctor.rules.context import RuleContext

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "EvidenceKind",
    "Hit",
    "Proof",
    "Role",
    "Rule",
    "RuleContext",
    "get_rule",
    "load_all",
    "rule",
    "run_rules",
]

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

CODE_RE = lazy_re(r"^PD[1-9]\d\d$")


class Role(StrEnum):
    """What a rule's findings are to the diagnosis."""

    SYMPTOM = "symptom"  # locates the stall (the relist gap, PLEG unhealthy); never a cause
    CAUSE = "cause"  # evidence of a mechanism: counts towards its class
    CONDITION = "condition"  # makes a stall likely (config, version): only strengthens a class shown otherwise


class EvidenceKind(StrEnum):
    """The kinds of evidence a rule can read: the list fields of `plegdoctor.evidence.Evidence`."""

    RELISTS = "relists"
    EVENTS = "events"
    LOG_RECORDS = "log_records"
    DUMPS = "dumps"
    PRESSURE = "pressure"
    DISKSTATS = "diskstats"
    DISK_SAMPLES = "disk_samples"
    MEMINFO = "meminfo"
    MEMORY = "memory"
    VMSTAT = "vmstat"
    MOUNTS = "mounts"
    HUNG_TASKS = "hung_tasks"
    TASKS = "tasks"
    RUNTIME_CONFIGS = "runtime_configs"
    VERSIONS = "versions"
    METRICS = "metrics"
    TRIGGERS = "triggers"
    CGROUP_FREEZES = "cgroup_freezes"
    PROC_CGROUPS = "proc_cgroups"
    LOADS = "loads"


_EVIDENCE_FIELDS = {f.name for f in dataclasses.fields(Evidence)}
assert {str(k) for k in EvidenceKind} <= _EVIDENCE_FIELDS, "an EvidenceKind that is no Evidence field"


_E = TypeVar("_E", bound=StrEnum)


class Proof(StrEnum):
    """The independent kind of evidence a finding without a goroutine chain counts as (the
    diagnosis adds a little confidence per kind, and caps it when neither goroutines nor the
    kernel show the mechanism). A finding whose chain holds a goroutine counts as goroutines,
    one with a kernel step as kernel, whatever its rule declares."""

    LOGS = "logs"  # log lines, /proc figures, metrics: can be coincidental
    KERNEL = "kernel"  # kernel traces (hung tasks, lockups)
    PRESSURE = "pressure"  # PSI, disk and dirty-page figures


class Hit(msgspec.Struct, frozen=True):
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
    facts: dict[str, Any] = msgspec.field(default_factory=dict)
    cls: RootCauseClass | None = None  # a generic rule names the class per hit (by mechanism)


class Rule(msgspec.Struct, frozen=True):
    code: str
    name: str
    title: str
    severity: Severity
    root_cause: RootCauseClass
    fix: str
    references: tuple[str, ...]
    check: Callable[[RuleContext], Iterable[Hit]]
    role: Role = Role.CAUSE
    reads: tuple[EvidenceKind, ...] = ()  # the evidence it needs (next steps ask for what is missing)
    proof: Proof = Proof.LOGS  # what its findings count as when their chain holds no goroutine
    io_load: bool = False  # its findings are kernel figures of a loaded disk (hung tasks in I/O)
    generic: bool = False  # a first-principles rule: yields to a signature rule on the same wait

    @property
    def symptom(self) -> bool:
        """It describes the PLEG symptom, not a cause."""
        return self.role is Role.SYMPTOM

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
            facts=dict(hit.facts),
        )

    def explain(self, width: int = 100) -> str:
        """Plain-text page for `pleg-doctor explain CODE`."""
        head = f"{self.code} {self.name}: {self.title}"
        meta = [
            f"severity: {self.severity}",
            f"root cause class: {self.root_cause}" + (" (symptom rule)" if self.symptom else ""),
            f"family: {self.family}",
            f"role: {self.role}",
            "reads: " + (", ".join(str(k) for k in self.reads) or "(not declared)"),
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
    role: Role | str = Role.CAUSE,
    reads: Iterable[EvidenceKind | str] = (),
    proof: Proof | str = Proof.LOGS,
    io_load: bool = False,
    generic: bool = False,
) -> Callable[[Callable[[RuleContext], Iterable[Hit]]], Callable[[RuleContext], Iterable[Hit]]]:
    """Register a rule function under a stable code (PD1xx..PD9xx). `role`, `reads` and
    `proof` are validated here: an unknown value raises ValueError."""
    if not CODE_RE.match(code):
        raise ValueError(f"bad rule code {code!r}")
    role_ = _member(Role, role, code, "role")
    proof_ = _member(Proof, proof, code, "proof")
    if isinstance(reads, str):
        raise ValueError(f"rule {code}: reads must be a tuple of evidence kinds, not the string {reads!r}")
    reads_ = tuple(dict.fromkeys(_member(EvidenceKind, k, code, "evidence kind") for k in reads))

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
            role=role_,
            reads=reads_,
            proof=proof_,
            io_load=io_load,
            generic=generic,
        )
        return fn

    return deco


def _member(enum: type[_E], value: _E | str, code: str, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(str(m) for m in enum)
        raise ValueError(f"rule {code}: unknown {what} {value!r} (known: {known})") from None


def load_all() -> dict[str, Rule]:
    """Import every family module (each registers its rules) and return the registry, by code."""
    for _, modname, _ in FAMILIES:
        importlib.import_module(modname)
    return dict(sorted(REGISTRY.items()))


def get_rule(code: str) -> Rule | None:
    return load_all().get(code.strip().upper())


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
