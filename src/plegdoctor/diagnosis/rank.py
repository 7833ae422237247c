"""The arithmetic of the diagnosis: class scores, folds into deeper classes, the relist-path
and I/O factors, the ordering, confidence. No sentences here (explain.py writes them).

What the steps mean is documented in the package docstring (plegdoctor.diagnosis).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from plegdoctor.diagnosis.classes import cause_class
from plegdoctor.model import Finding, RootCauseClass
from plegdoctor.rules.registry import Proof, Role, Rule, RuleContext
from plegdoctor.rules.signals import IoFigure, io_figures

C = RootCauseClass
MIN_SCORE = 0.3  # below this a class is only a candidate, the answer is `unknown`
MIN_DEEPER = 0.3  # a deeper class must reach this to absorb a shallower one
UNCONNECTED_FACTOR = 0.6  # when another class's chain reaches the relist's CRI calls and this one's does not
RELIST_CALLS = ("cri:ListContainers", "cri:ListPodSandbox", "cri:ContainerStatus", "cri:PodSandboxStatus")
RELIST_TAGS = frozenset({"kubelet-relist", "kubelet-pleg"})  # the kubelet's relist goroutine
NO_IO_EVIDENCE_FACTOR = 0.85  # no PSI io, disk, dirty-page or hung-task figure at all
IO_NOT_SHOWN_FACTOR = 0.7  # figures given, none shows load during the stall
DISK_BOOST = 0.5  # share of the disk-pressure score a boosted class gains
FOLD_GAIN = 0.3  # share of a folded finding's weight the deeper class gains
SEV_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass
class ClassScore:
    cls: RootCauseClass
    findings: list[Finding] = field(default_factory=list)
    config: list[Finding] = field(default_factory=list)  # condition findings: only strengthen
    folded: list[Finding] = field(default_factory=list)  # from shallower classes it explains
    folded_classes: list[RootCauseClass] = field(default_factory=list)
    score: float = 0.0
    explained_by: RootCauseClass | None = None


class IoLoad(msgspec.Struct, frozen=True):
    """What the evidence says about the disk's load: the pressure analysis's figures (PSI io,
    busiest disk, dirty pages) and hung tasks in I/O (findings of rules declared `io_load`)."""

    figures: tuple[IoFigure, ...]

    @classmethod
    def of(cls, ctx: RuleContext, findings: Iterable[Finding], rules: dict[str, Rule]) -> IoLoad:
        kernel = [
            IoFigure("kernel", f"hung task {f.title}", True, f.evidence[0])
            for f in findings
            if rule_of(rules, f.code).io_load and f.evidence
        ]
        return cls((*io_figures(ctx), *kernel[:1]))

    @property
    def factor(self) -> float:
        if not self.figures:
            return NO_IO_EVIDENCE_FACTOR
        return 1.0 if any(f.high for f in self.figures) else IO_NOT_SHOWN_FACTOR


class Ranking(msgspec.Struct, frozen=True):
    """The scored classes and their order."""

    scores: dict[RootCauseClass, ClassScore]
    ranked: list[ClassScore]  # not explained by a deeper class, with findings of their own; best first
    relist_calls: dict[RootCauseClass, str]  # classes whose chains reach the relist, and the call
    leader: RootCauseClass | None  # the best of those
    io: IoLoad

    @property
    def strong(self) -> list[ClassScore]:
        return [cs for cs in self.ranked if cs.score >= MIN_SCORE]

    @property
    def weak(self) -> list[ClassScore]:
        return [cs for cs in self.ranked if cs.score < MIN_SCORE]


def noisy_or(weights: Iterable[float]) -> float:
    p = 1.0
    for w in weights:
        p *= 1.0 - max(0.0, min(1.0, w))
    return 1.0 - p


def _per_code_max(findings: Iterable[Finding]) -> list[float]:
    best: dict[str, float] = {}
    for f in findings:
        best[f.code] = max(best.get(f.code, 0.0), f.weight)
    return list(best.values())


def rule_of(rules: dict[str, Rule], code: str) -> Rule:
    r = rules.get(code)
    if r is None:
        raise KeyError(f"finding with unregistered code {code}")
    return r


def depth(c: RootCauseClass) -> int:
    return cause_class(c).depth


def rank(ctx: RuleContext, causal: list[Finding], findings: list[Finding], rules: dict[str, Rule]) -> Ranking:
    """Score the classes of the causal findings (class known, not symptoms) and order them."""
    scores: dict[RootCauseClass, ClassScore] = {}
    for f in causal:
        cs = scores.setdefault(f.root_cause, ClassScore(f.root_cause))
        (cs.config if rule_of(rules, f.code).role is Role.CONDITION else cs.findings).append(f)
    for cs in scores.values():
        cs.score = noisy_or(_per_code_max(cs.findings))
        if cs.findings and cs.config:
            cs.score = noisy_or([cs.score, *_per_code_max(cs.config)])

    disk = scores.get(C.DISK_IO_PRESSURE)
    if disk is not None and disk.score > 0:
        for cs in scores.values():
            if cause_class(cs.cls).boosted_by_disk and cs.findings:
                cs.score = noisy_or([cs.score, DISK_BOOST * disk.score])

    _fold(scores)

    # a mechanism whose chain reaches the relist's own CRI calls is proven to block the relist;
    # one merely present on the node (same disk, other containers) ranks after it
    relist_calls = {cs.cls: call for cs in scores.values() if cs.explained_by is None and (call := relist_call(cs))}
    if relist_calls:
        for cs in scores.values():
            if cs.explained_by is None and cs.cls not in relist_calls:
                cs.score *= UNCONNECTED_FACTOR
    io = IoLoad.of(ctx, findings, rules)
    for cs in scores.values():
        if cause_class(cs.cls).loaded_disk:
            cs.score *= io.factor

    ranked = sorted(
        (cs for cs in scores.values() if cs.explained_by is None and cs.findings),
        key=lambda s: (bool(relist_calls) and s.cls not in relist_calls, -s.score, depth(s.cls)),
    )
    leader = next((cs.cls for cs in ranked if cs.cls in relist_calls), None)
    return Ranking(scores, ranked, relist_calls, leader, io)


def _fold(scores: dict[RootCauseClass, ClassScore]) -> None:
    """Fold shallower classes into the deeper classes that explain them (shallow first, so
    folds are transitive); each finding goes where its own chain leads, else to the best."""
    for cs in sorted(scores.values(), key=lambda s: depth(s.cls)):
        deeper = [
            scores[d]
            for d in cause_class(cs.cls).deeper
            if d in scores and scores[d].score >= MIN_DEEPER and d != cs.cls
        ]
        if not deeper or not cs.findings:
            continue
        # a deeper class already shown on the relist's path explains it first, then the strongest
        best = max(deeper, key=lambda d: (relist_call(d) is not None, d.score))
        cs.explained_by = best.cls
        gained: dict[RootCauseClass, float] = {}
        for f in cs.findings + cs.folded:
            target = _resolve(scores, _match_deeper(f, deeper) or best)
            target.folded.append(f)
            gained[target.cls] = max(gained.get(target.cls, 0.0), f.weight)
        for cls, w in gained.items():
            t = scores[cls]
            t.folded_classes.extend([cs.cls, *cs.folded_classes])
            t.score = noisy_or([t.score, FOLD_GAIN * w])


def _match_deeper(f: Finding, deeper: list[ClassScore]) -> ClassScore | None:
    """The deepest of `deeper` whose signature tags the finding's chain carries."""
    if f.chain is None:
        return None
    tags = f.chain.tags
    matches = [d for d in deeper if cause_class(d.cls).signature & tags]
    if not matches:
        return None
    return max(matches, key=lambda d: (depth(d.cls), d.score))


def relist_call(cs: ClassScore) -> str | None:
    """The relist's own call that one of the class's chains reaches (e.g. "ListContainers", or
    "relist" for the kubelet's relist goroutine), else None."""
    for f in cs.findings + cs.folded:
        tags = f.chain.tags if f.chain is not None else frozenset()
        for t in RELIST_CALLS:
            if t in tags:
                return t.removeprefix("cri:")
        if tags & RELIST_TAGS:
            return "relist"
    return None


def _resolve(scores: dict[RootCauseClass, ClassScore], cs: ClassScore) -> ClassScore:
    while cs.explained_by is not None:
        cs = scores[cs.explained_by]
    return cs


def _deepest_goroutines(f: Finding) -> set[tuple[str, int | None, int]]:
    if f.chain is None:
        return set()
    return {(lk.process, lk.pid, lk.goroutine) for lk in f.chain.links if lk.goroutine is not None}


def drop_subsumed(findings: list[Finding], rules: dict[str, Rule]) -> list[Finding]:
    """A generic rule's finding yields to a signature rule's finding on the same wait: one
    whose chain holds the generic chain's deepest goroutine (so the same evidence is never
    counted twice, and the signature's sharper class and words win)."""
    specific: set[tuple[str, int | None, int]] = set()
    for f in findings:
        r = rule_of(rules, f.code)
        if not r.generic and not r.symptom:
            specific |= _deepest_goroutines(f)
    out = []
    for f in findings:
        if rule_of(rules, f.code).generic and f.chain is not None and f.chain.links:
            last = f.chain.links[-1]
            if last.goroutine is not None and (last.process, last.pid, last.goroutine) in specific:
                continue
        out.append(f)
    return out


def evidence_kinds(findings: Iterable[Finding], rules: dict[str, Rule]) -> set[str]:
    """The independent kinds of evidence the findings are: goroutines (a chain with a
    goroutine), kernel (a kernel step, or a rule declared `proof=kernel`), pressure, logs."""
    kinds: set[str] = set()
    for f in findings:
        proof = rule_of(rules, f.code).proof
        if f.chain is not None and any(lk.goroutine is not None for lk in f.chain.links):
            kinds.add("goroutines")
        elif proof is Proof.KERNEL or (f.chain is not None and any(lk.kind == "kernel" for lk in f.chain.links)):
            kinds.add("kernel")
        elif proof is Proof.PRESSURE:
            kinds.add("pressure")
        else:
            kinds.add("logs")
    return kinds


def confidence(cs: ClassScore, findings: list[Finding], rules: dict[str, Rule]) -> float:
    """The score, plus a little per independent kind of evidence, capped at 0.7 when neither
    a goroutine chain nor the kernel shows the mechanism."""
    kinds = evidence_kinds(findings, rules)
    conf = cs.score + 0.04 * max(0, len(kinds) - 1)
    if not kinds & {"goroutines", "kernel"}:
        conf = min(conf, 0.7)
    return round(max(0.05, min(conf, 0.97)), 2)


def unknown_confidence(weak: list[ClassScore]) -> float:
    return 0.3 if not weak else round(max(0.2, 0.5 - weak[0].score), 2)


def ordered_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first: severity, then weight, then code."""
    return sorted(findings, key=lambda f: (SEV_ORDER[str(f.severity)], -f.weight, f.code))
