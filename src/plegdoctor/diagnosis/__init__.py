"""Ranking: rule findings -> root causes (best first), each with a chain, fixes and references.

The package: `classes.py` (one `CauseClass` record per root-cause class: depth, deeper
classes, signature, loaded disk, mechanism, fixes), `rank.py` (the arithmetic below),
`chain.py` (each cause's chain), `explain.py` (the sentences), `next_steps.py` (what to
collect, from the evidence kinds the candidate rules read). This module assembles them.

How findings combine (documented here because the report's confidence figures come from it):

1. Symptom rules (role `symptom`: PD101-PD108, PD901) locate the stall; they never make a
   cause, but their chain step (the relist gap) opens every cause's chain.
2. Per root-cause class, the strongest finding of each rule code counts once, combined as a
   noisy-or: score = 1 - prod(1 - weight). Condition rules (role `condition`: the PD5xx
   configuration and version rules) only strengthen a class some other evidence already shows.
3. The deepest cause wins. A class whose mechanism is explained by a deeper class that is also
   shown (score >= MIN_DEEPER) is folded into it as a contributing link: e.g. cri-status-lock
   (ListContainers waits for a status lock) folds into fsync-io-pressure (the holder sits in
   fsync on a saturated disk); disk-io-pressure folds into fsync-io-pressure or
   overlay-umount-sync, and strengthens them (saturation is what makes their flush slow).
4. A mechanism whose chain reaches the relist's own CRI calls (ListContainers, ...) or the
   kubelet's relist goroutine is shown blocking the relist; when one is, classes that are
   merely present (a chain elsewhere, a log line, a kernel trace) rank after it whatever their
   score, their score is multiplied by UNCONNECTED_FACTOR, and their summary says why they are
   second ("not on the relist's path in the dumps").
5. fsync-io-pressure, overlay-umount-sync and disk-io-pressure name a loaded disk (their
   record's `loaded_disk`). Their score is multiplied by NO_IO_EVIDENCE_FACTOR when the
   evidence has no I/O figures at all (PSI io, disk samples, dirty pages, hung tasks in I/O:
   findings of rules declared `io_load`) and by IO_NOT_SHOWN_FACTOR when the figures given do
   not show load; their summary quotes the figures or says they are missing.
6. Confidence is the score, capped at 0.7 when no goroutine chain or kernel stack shows the
   mechanism (log-only and /proc-only evidence can be coincidental), plus a little for each
   independent kind of evidence (goroutines, kernel, logs, pressure: a rule's `proof`).
7. When no class reaches MIN_SCORE the top answer is `unknown`, followed by the weak
   candidates; `next_steps` names the commands that collect what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import plegdoctor
from plegdoctor.diagnosis import explain, next_steps, rank
from plegdoctor.diagnosis.chain import symptom_links
from plegdoctor.model import Finding, InputReport, RootCause, RootCauseClass, Severity
from plegdoctor.rules.registry import RuleContext, load_all
from plegdoctor.rules.signals import worst_stall

__all__ = ["SCHEMA", "Diagnosis", "diagnose", "pleg_json"]

C = RootCauseClass
SCHEMA = "pleg-doctor/diagnosis/v1"


@dataclass
class Diagnosis:
    """What every reporter renders. Fields (stable; reporters read `to_json()`):

    - `inputs`: one InputReport per input (kind, records, warnings, inferences)
    - `pleg`: the PLEG timeline as JSON (relists, first/last, gaps, unhealthy windows, ...)
    - `root_causes`: model.RootCause list, best first (empty only when nothing is wrong)
    - `findings`: every model.Finding of every rule, worst first
    - `next_steps`: commands that would collect the evidence that is missing
    - `notes`: inferences (year/zone of stamps) and analysis errors, one line each
    - `timeline`: the PlegTimeline object (or None) for reporters that draw it
    - `stall_seconds`: the longest relist gap or unhealthy window; without either, the longest
      stall a symptom finding reports in its facts (a watch trigger's stalled call)
    - `series`: the picture's data (analysis.series.build_series) when asked for, else None;
      in the JSON only with `to_json(series=True)` (the HTML report)
    """

    inputs: list[InputReport]
    pleg: dict[str, Any]
    root_causes: list[RootCause]
    findings: list[Finding]
    next_steps: list[str]
    notes: list[str] = field(default_factory=list)
    timeline: Any = None
    stall_seconds: float | None = None
    series: dict[str, Any] | None = None

    @property
    def top(self) -> RootCause | None:
        return self.root_causes[0] if self.root_causes else None

    def to_json(self, *, series: bool = False) -> dict[str, Any]:
        doc = {
            "schema": SCHEMA,
            "tool": {"name": "pleg-doctor", "version": plegdoctor.__version__},
            "inputs": [i.to_json() for i in self.inputs],
            "pleg": self.pleg,
            "root_causes": [rc.to_json() for rc in self.root_causes],
            "findings": [f.to_json() for f in self.findings],
            "next_steps": list(self.next_steps),
            "notes": list(self.notes),
        }
        if series and self.series is not None:
            doc["series"] = self.series
        return doc


def diagnose(ctx: RuleContext, findings: list[Finding]) -> Diagnosis:
    """Rank findings into root causes and assemble the Diagnosis."""
    rules = load_all()
    findings = rank.drop_subsumed(findings, rules)
    symptoms = [f for f in findings if rank.rule_of(rules, f.code).symptom]
    # a wait no mechanism names (class unknown) is not a cause to rank, but it is never dropped:
    # it makes the answer `unknown` that says what was seen, when nothing stronger explains it
    others = [f for f in findings if not rank.rule_of(rules, f.code).symptom]
    unnamed = [f for f in others if f.root_cause == C.UNKNOWN]
    causal = [f for f in others if f.root_cause != C.UNKNOWN]

    ranking = rank.rank(ctx, causal, findings, rules)
    facts = explain.Facts.of(ranking, "containerd" in ctx.dump_processes())
    stall = worst_stall(ctx)
    links = symptom_links(symptoms)
    root_causes: list[RootCause] = []
    strong, weak = ranking.strong, ranking.weak
    for cs in strong:
        root_causes.append(explain.root_cause(ctx, cs, links, stall, ranking.scores, facts, rules))
    if not strong and (symptoms or weak or unnamed):
        root_causes.append(explain.unknown(symptoms, links, stall, weak, unnamed))
    for cs in weak:
        root_causes.append(explain.root_cause(ctx, cs, links, stall, ranking.scores, facts, rules))

    notes = list(dict.fromkeys([*ctx.evidence.notes, *ctx.errors]))
    return Diagnosis(
        inputs=list(ctx.evidence.inputs),
        pleg=pleg_json(ctx),
        root_causes=root_causes,
        findings=rank.ordered_findings(findings),
        next_steps=next_steps.next_steps(ctx, root_causes, stall, rules),
        notes=notes,
        timeline=ctx.timeline,
        stall_seconds=stall.seconds if stall else _reported_stall(symptoms),
    )


def _reported_stall(symptoms: list[Finding]) -> float | None:
    """The longest stall the symptom findings report in their facts (`stall_seconds`)."""
    figures = [s for f in symptoms if isinstance(s := f.facts.get("stall_seconds"), int | float)]
    return float(max(figures)) if figures else None


# ---------------------------------------------------------------------------------------
# PLEG JSON


def pleg_json(ctx: RuleContext) -> dict[str, Any]:
    """The `pleg` object of the contract, from the PLEG timeline when it exists."""
    tl = ctx.timeline
    if tl is not None and hasattr(tl, "to_json"):
        try:
            doc = dict(tl.to_json())
        except Exception as exc:  # a timeline bug must not hide the diagnosis
            ctx.errors.append(f"timeline to_json failed: {type(exc).__name__}: {exc}")
        else:
            for key, default in (
                ("relists", 0),
                ("first", None),
                ("last", None),
                ("max_gap_seconds", None),
                ("gaps", []),
                ("unhealthy", []),
            ):
                doc.setdefault(key, default)
            return doc
    return _pleg_fallback(ctx)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _pleg_fallback(ctx: RuleContext) -> dict[str, Any]:
    """The contract's keys when the PLEG timeline is missing (its failure is in the notes):
    the relist count and span only; gaps are not recomputed here."""
    ts = ctx.evidence.relists.ts
    return {
        "relists": len(ts),
        "first": _iso(datetime.fromtimestamp(min(ts), UTC)) if len(ts) else None,
        "last": _iso(datetime.fromtimestamp(max(ts), UTC)) if len(ts) else None,
        "max_gap_seconds": None,
        "gaps": [],
        "unhealthy": [],
    }


# for type checkers: severity order is complete
assert set(rank.SEV_ORDER) == {str(s) for s in Severity}
