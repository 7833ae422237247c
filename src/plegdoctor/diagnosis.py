"""Ranking: rule findings -> root causes (best first), each with a chain, fixes and references.

How findings combine (documented here because the report's confidence figures come from it):

1. Symptom rules (PD101-PD104) locate the stall; they never make a cause, but their chain step
   (the relist gap) opens every cause's chain.
2. Per root-cause class, the strongest finding of each rule code counts once, combined as a
   noisy-or: score = 1 - prod(1 - weight). Configuration rules (PD5xx) only strengthen a class
   some other evidence already shows.
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
5. fsync-io-pressure, overlay-umount-sync and disk-io-pressure name a loaded disk. Their
   score is multiplied by NO_IO_EVIDENCE_FACTOR when the evidence has no I/O figures at all
   (PSI io, disk samples, dirty pages, hung tasks in I/O) and by IO_NOT_SHOWN_FACTOR when the
   figures given do not show load; their summary quotes the figures or says they are missing.
6. Confidence is the score, capped at 0.7 when no goroutine chain or kernel stack shows the
   mechanism (log-only and /proc-only evidence can be coincidental), plus a little for each
   independent kind of evidence (goroutines, kernel, logs, pressure).
7. When no class reaches MIN_SCORE the top answer is `unknown`, followed by the weak
   candidates; `next_steps` names the commands that collect what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import plegdoctor
from plegdoctor.model import (
    Chain,
    ChainLink,
    Finding,
    InputReport,
    RootCause,
    RootCauseClass,
    Severity,
)
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Rule, RuleContext, load_all
from plegdoctor.rules.signals import IoFigure, fmt_seconds, io_figures, worst_stall

C = RootCauseClass
SCHEMA = "pleg-doctor/diagnosis/v1"
MIN_SCORE = 0.3  # below this a class is only a candidate, the answer is `unknown`
MIN_DEEPER = 0.3  # a deeper class must reach this to absorb a shallower one
UNCONNECTED_FACTOR = 0.6  # when another class's chain reaches the relist's CRI calls and this one's does not
RELIST_CALLS = ("cri:ListContainers", "cri:ListPodSandbox", "cri:ContainerStatus", "cri:PodSandboxStatus")
# classes whose definition includes a loaded disk, and what missing I/O figures do to them
IO_CLASSES = (C.FSYNC_IO_PRESSURE, C.OVERLAY_UMOUNT_SYNC, C.DISK_IO_PRESSURE)
NO_IO_EVIDENCE_FACTOR = 0.85  # no PSI io, disk, dirty-page or hung-task figure at all
IO_NOT_SHOWN_FACTOR = 0.7  # figures given, none shows load during the stall
IO_KERNEL_CODES = ("PD601", "PD602", "PD603")  # hung tasks in overlay sync, fsync, block I/O
MAX_CHAIN = 12
MAX_FIXES = 6
MAX_REFS = 8

# class -> deeper classes that explain it (the shallower one becomes a contributing link)
DEEPER: dict[RootCauseClass, tuple[RootCauseClass, ...]] = {
    C.CRI_STATUS_LOCK: (
        C.FSYNC_IO_PRESSURE,
        C.BBOLT_LOCK_CONTENTION,
        C.OVERLAY_UMOUNT_SYNC,
        C.SHIM_HANG,
        C.RUNC_HANG,
        C.NETWORK_STORAGE_HANG,
        C.KERNEL_D_STATE,
        C.CNI_HANG,
        C.RUNTIME_LOCK_CONTENTION,
        C.DISK_IO_PRESSURE,
        C.SYSTEMD_DBUS_HANG,
        C.RUNTIME_KNOWN_BUG,
    ),
    C.BBOLT_LOCK_CONTENTION: (C.FSYNC_IO_PRESSURE, C.RUNTIME_KNOWN_BUG),
    C.RUNTIME_LOCK_CONTENTION: (C.FSYNC_IO_PRESSURE, C.BBOLT_LOCK_CONTENTION, C.RUNTIME_KNOWN_BUG),
    C.SHIM_HANG: (
        C.OVERLAY_UMOUNT_SYNC,
        C.RUNC_HANG,
        C.NETWORK_STORAGE_HANG,
        C.KERNEL_D_STATE,
        C.CNI_HANG,
        C.SYSTEMD_DBUS_HANG,
        C.RUNTIME_KNOWN_BUG,
    ),
    C.RUNC_HANG: (C.SYSTEMD_DBUS_HANG, C.NETWORK_STORAGE_HANG, C.KERNEL_D_STATE),
    C.DISK_IO_PRESSURE: (C.FSYNC_IO_PRESSURE, C.OVERLAY_UMOUNT_SYNC),
    C.KERNEL_D_STATE: (C.NETWORK_STORAGE_HANG, C.OVERLAY_UMOUNT_SYNC),
    C.DOCKERD_LOCK: (C.NETWORK_STORAGE_HANG, C.KERNEL_D_STATE, C.OVERLAY_UMOUNT_SYNC, C.RUNTIME_KNOWN_BUG),
    C.TOO_MANY_CONTAINERS: (
        C.FSYNC_IO_PRESSURE,
        C.BBOLT_LOCK_CONTENTION,
        C.OVERLAY_UMOUNT_SYNC,
        C.CRI_STATUS_LOCK,
        C.SHIM_HANG,
        C.DISK_IO_PRESSURE,
    ),
    C.KUBELET_INTERNAL: (),
}
# pressure findings strengthen these classes when they are shown by other evidence
BOOSTED_BY_DISK = (C.FSYNC_IO_PRESSURE, C.OVERLAY_UMOUNT_SYNC, C.BBOLT_LOCK_CONTENTION)


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
    - `stall_seconds`: the longest relist gap or unhealthy window, when known
    """

    inputs: list[InputReport]
    pleg: dict[str, Any]
    root_causes: list[RootCause]
    findings: list[Finding]
    next_steps: list[str]
    notes: list[str] = field(default_factory=list)
    timeline: Any = None
    stall_seconds: float | None = None

    @property
    def top(self) -> RootCause | None:
        return self.root_causes[0] if self.root_causes else None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "tool": {"name": "pleg-doctor", "version": plegdoctor.__version__},
            "inputs": [i.to_json() for i in self.inputs],
            "pleg": self.pleg,
            "root_causes": [rc.to_json() for rc in self.root_causes],
            "findings": [f.to_json() for f in self.findings],
            "next_steps": list(self.next_steps),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------


@dataclass
class _ClassScore:
    cls: RootCauseClass
    findings: list[Finding] = field(default_factory=list)
    config: list[Finding] = field(default_factory=list)
    folded: list[Finding] = field(default_factory=list)  # from shallower classes it explains
    folded_classes: list[RootCauseClass] = field(default_factory=list)
    score: float = 0.0
    explained_by: RootCauseClass | None = None


def _noisy_or(weights: Iterable[float]) -> float:
    p = 1.0
    for w in weights:
        p *= 1.0 - max(0.0, min(1.0, w))
    return 1.0 - p


def _per_code_max(findings: Iterable[Finding]) -> list[float]:
    best: dict[str, float] = {}
    for f in findings:
        best[f.code] = max(best.get(f.code, 0.0), f.weight)
    return list(best.values())


def diagnose(ctx: RuleContext, findings: list[Finding]) -> Diagnosis:
    """Rank findings into root causes and assemble the Diagnosis."""
    rules = load_all()
    findings = _drop_subsumed(findings, rules)
    symptom_findings = [f for f in findings if _rule(rules, f.code).symptom]
    # a wait no mechanism names (class unknown) is not a cause to rank, but it is never dropped:
    # it makes the answer `unknown` that says what was seen, when nothing stronger explains it
    unnamed = [f for f in findings if not _rule(rules, f.code).symptom and f.root_cause == C.UNKNOWN]
    causal = [f for f in findings if not _rule(rules, f.code).symptom and f.root_cause != C.UNKNOWN]

    scores: dict[RootCauseClass, _ClassScore] = {}
    for f in causal:
        cs = scores.setdefault(f.root_cause, _ClassScore(f.root_cause))
        (cs.config if f.code.startswith("PD5") else cs.findings).append(f)
    for cs in scores.values():
        cs.score = _noisy_or(_per_code_max(cs.findings))
        if cs.findings and cs.config:
            cs.score = _noisy_or([cs.score, *_per_code_max(cs.config)])

    disk = scores.get(C.DISK_IO_PRESSURE)
    if disk is not None and disk.score > 0:
        for c in BOOSTED_BY_DISK:
            if c in scores and scores[c].findings:
                scores[c].score = _noisy_or([scores[c].score, 0.5 * disk.score])

    # fold shallower classes into the deeper classes that explain them (shallow first, so
    # folds are transitive); each finding goes where its own chain leads, else to the best
    for cs in sorted(scores.values(), key=lambda s: _depth(s.cls)):
        deeper = [
            scores[d] for d in DEEPER.get(cs.cls, ()) if d in scores and scores[d].score >= MIN_DEEPER and d != cs.cls
        ]
        if not deeper or not cs.findings:
            continue
        # a deeper class already shown on the relist's path explains it first, then the strongest
        best = max(deeper, key=lambda d: (_relist_call(d) is not None, d.score))
        cs.explained_by = best.cls
        gained: dict[RootCauseClass, float] = {}
        for f in cs.findings + cs.folded:
            target = _resolve(scores, _match_deeper(f, deeper) or best)
            target.folded.append(f)
            gained[target.cls] = max(gained.get(target.cls, 0.0), f.weight)
        for cls, w in gained.items():
            t = scores[cls]
            t.folded_classes.extend([cs.cls, *cs.folded_classes])
            t.score = _noisy_or([t.score, 0.3 * w])

    # a mechanism whose chain reaches the relist's own CRI calls is proven to block the relist;
    # one merely present on the node (same disk, other containers) ranks after it
    relist_calls = {cs.cls: call for cs in scores.values() if cs.explained_by is None and (call := _relist_call(cs))}
    if relist_calls:
        for cs in scores.values():
            if cs.explained_by is None and cs.cls not in relist_calls:
                cs.score *= UNCONNECTED_FACTOR
    io = IoLoad.of(ctx, findings)
    for cs in scores.values():
        if cs.cls in IO_CLASSES:
            cs.score *= io.factor

    ranked = sorted(
        (cs for cs in scores.values() if cs.explained_by is None and cs.findings),
        key=lambda s: (bool(relist_calls) and s.cls not in relist_calls, -s.score, _depth(s.cls)),
    )
    leader = next((cs.cls for cs in ranked if cs.cls in relist_calls), None)
    facts = _Facts(io, relist_calls, leader, "containerd" in ctx.dump_processes())

    stall = worst_stall(ctx)
    symptom_links = _symptom_links(symptom_findings)
    root_causes: list[RootCause] = []
    strong = [cs for cs in ranked if cs.score >= MIN_SCORE]
    weak = [cs for cs in ranked if cs.score < MIN_SCORE]
    for cs in strong:
        root_causes.append(_root_cause(ctx, cs, symptom_links, stall, scores, facts))
    if not strong and (symptom_findings or weak or unnamed):
        root_causes.append(_unknown(ctx, symptom_findings, symptom_links, stall, weak, unnamed))
    for cs in weak:
        root_causes.append(_root_cause(ctx, cs, symptom_links, stall, scores, facts))

    ordered_findings = sorted(findings, key=lambda f: (_SEV_ORDER[str(f.severity)], -f.weight, f.code))
    notes = list(dict.fromkeys([*ctx.evidence.notes, *ctx.errors]))
    return Diagnosis(
        inputs=list(ctx.evidence.inputs),
        pleg=pleg_json(ctx),
        root_causes=root_causes,
        findings=ordered_findings,
        next_steps=next_steps(ctx, root_causes, stall),
        notes=notes,
        timeline=ctx.timeline,
        stall_seconds=stall.seconds if stall else None,
    )


_SEV_ORDER = {"critical": 0, "warning": 1, "info": 2}

# tags by which a finding's chain shows it leads into a deeper class
SIGNATURE: dict[RootCauseClass, frozenset[str]] = {
    C.FSYNC_IO_PRESSURE: frozenset({"fsync", "fdatasync"}),
    C.OVERLAY_UMOUNT_SYNC: frozenset({"umount", "syncfs", "syscall:umount2"}),
    C.NETWORK_STORAGE_HANG: frozenset({"nfs", "network-fs"}),
    C.RUNC_HANG: frozenset({"runc"}),
    C.CNI_HANG: frozenset({"cni"}),
    C.BBOLT_LOCK_CONTENTION: frozenset({"bbolt-writer"}),
    C.RUNTIME_LOCK_CONTENTION: frozenset({"metadata-wlock"}),
    C.SHIM_HANG: frozenset({"shim:Delete", "shim:Update", "shim:State", "shim-init-mutex"}),
    C.KERNEL_D_STATE: frozenset({"netdev", "cgroup"}),
    C.SYSTEMD_DBUS_HANG: frozenset({"systemd-dbus"}),
}


def _deepest_goroutines(f: Finding) -> set[tuple[str, int | None, int]]:
    if f.chain is None:
        return set()
    return {(lk.process, lk.pid, lk.goroutine) for lk in f.chain.links if lk.goroutine is not None}


def _drop_subsumed(findings: list[Finding], rules: dict[str, Rule]) -> list[Finding]:
    """A generic rule's finding yields to a signature rule's finding on the same wait: one
    whose chain holds the generic chain's deepest goroutine (so the same evidence is never
    counted twice, and the signature's sharper class and words win)."""
    specific: set[tuple[str, int | None, int]] = set()
    for f in findings:
        r = _rule(rules, f.code)
        if not r.generic and not r.symptom:
            specific |= _deepest_goroutines(f)
    out = []
    for f in findings:
        if _rule(rules, f.code).generic and f.chain is not None and f.chain.links:
            last = f.chain.links[-1]
            if last.goroutine is not None and (last.process, last.pid, last.goroutine) in specific:
                continue
        out.append(f)
    return out


def _match_deeper(f: Finding, deeper: list[_ClassScore]) -> _ClassScore | None:
    """The deepest of `deeper` whose signature tags the finding's chain carries."""
    if f.chain is None:
        return None
    tags = f.chain.tags
    matches = [d for d in deeper if SIGNATURE.get(d.cls, frozenset()) & tags]
    if not matches:
        return None
    return max(matches, key=lambda d: (_depth(d.cls), d.score))


def _relist_call(cs: _ClassScore) -> str | None:
    """The relist's own call that one of the class's chains reaches (e.g. "ListContainers", or
    "relist" for the kubelet's relist goroutine), else None."""
    for f in cs.findings + cs.folded:
        tags = f.chain.tags if f.chain is not None else frozenset()
        for t in RELIST_CALLS:
            if t in tags:
                return t.removeprefix("cri:")
        if tags & {"kubelet-relist", "kubelet-pleg"}:
            return "relist"
    return None


def _resolve(scores: dict[RootCauseClass, _ClassScore], cs: _ClassScore) -> _ClassScore:
    while cs.explained_by is not None:
        cs = scores[cs.explained_by]
    return cs


def _rule(rules: dict[str, Rule], code: str) -> Rule:
    r = rules.get(code)
    if r is None:
        raise KeyError(f"finding with unregistered code {code}")
    return r


_DEPTH = {
    C.KUBELET_INTERNAL: 0,
    C.TOO_MANY_CONTAINERS: 0,
    C.CRI_STATUS_LOCK: 1,
    C.DOCKERD_LOCK: 1,
    C.RUNTIME_LOCK_CONTENTION: 2,
    C.BBOLT_LOCK_CONTENTION: 2,
    C.SHIM_HANG: 2,
    C.DISK_IO_PRESSURE: 3,
    C.KERNEL_D_STATE: 3,
    C.RUNC_HANG: 3,
    C.CNI_HANG: 3,
    C.OVERLAY_UMOUNT_SYNC: 4,
    C.FSYNC_IO_PRESSURE: 4,
    C.NETWORK_STORAGE_HANG: 4,
    C.SYSTEMD_DBUS_HANG: 4,
    C.NODE_RESOURCE_STARVATION: 4,
    C.RUNTIME_FROZEN: 4,
    C.RUNTIME_KNOWN_BUG: 5,  # a matched known bug explains the mechanism it produces
    C.UNKNOWN: 9,
}


def _depth(c: RootCauseClass) -> int:
    return _DEPTH.get(c, 5)


# ---------------------------------------------------------------------------------------
# Chains


def _link_rank(link: ChainLink) -> int:
    t = link.tags
    if t & {"symptom", "kubelet-relist", "kubelet-pleg"} and link.process == "kubelet":
        return 0
    if any(x.startswith("cri:") for x in t) or t & {"status-lock", "update-container-resources"}:
        return 1
    if t & {"task-exit", "bbolt-writer", "metadata-wlock", "dockerd-container-lock", "dockerd"} or any(
        x.startswith(("ttrpc:", "shim:")) for x in t
    ):
        return 2
    if t & {"content-commit", "runc", "cni", "umount", "syncfs", "shim-init-mutex"}:
        return 3
    if t & {"fsync", "fdatasync", "nfs", "network-fs"}:
        return 4
    if link.kind in ("kernel",) or t & {"netdev", "cgroup", "io-wait"}:
        return 5
    if link.kind in ("pressure", "disk", "memory", "metrics"):
        return 6
    return 3


def _segments(findings: Iterable[Finding]) -> list[tuple[int, int, tuple[ChainLink, ...], bool]]:
    """(rank, order, links, is_goroutine_chain) per finding chain."""
    out = []
    for i, f in enumerate(findings):
        if f.chain is None or not f.chain.links:
            continue
        links = f.chain.links
        is_goroutine = any(lk.goroutine is not None for lk in links)
        out.append((_link_rank(links[0]), i, links, is_goroutine))
    return out


def _assemble_chain(symptom_links: list[ChainLink], own: list[Finding], folded: list[Finding]) -> tuple[ChainLink, ...]:
    """Symptom first, then goroutine chains and other steps from shallow to deep."""
    segs = _segments(own) + [(r, o + 1000, links, g) for r, o, links, g in _segments(folded)]
    # the longest goroutine chain of each starting rank first, then the rest
    segs.sort(key=lambda s: (s[0], not s[3], -len(s[2]), s[1]))
    out: list[ChainLink] = list(symptom_links[:1])
    seen: set[tuple[str, int | None, int | None, str]] = {_key(lk) for lk in out}
    covered_tags: set[str] = set()
    for _rank, _order, links, is_goroutine in segs:
        if not is_goroutine and links and all(lk.tags and lk.tags <= covered_tags for lk in links):
            continue  # a log step that a goroutine chain already shows
        for lk in links:
            if lk.goroutine is not None and any(
                (x.process, x.pid, x.goroutine) == (lk.process, lk.pid, lk.goroutine) for x in out
            ):
                continue
            k = _key(lk)
            if k in seen:
                continue
            seen.add(k)
            out.append(lk)
            covered_tags |= set(lk.tags)
    if len(out) > MAX_CHAIN:
        out = [*out[: MAX_CHAIN - 1], out[-1]]
    return tuple(out)


def _key(lk: ChainLink) -> tuple[str, int | None, int | None, str]:
    return (lk.process, lk.pid, lk.goroutine, lk.detail if lk.goroutine is None else "")


def _symptom_links(symptoms: list[Finding]) -> list[ChainLink]:
    out: list[ChainLink] = []
    for code in ("PD101", "PD102"):
        for f in symptoms:
            if f.code == code and f.chain is not None:
                out.extend(f.chain.links)
    return out


# ---------------------------------------------------------------------------------------
# Root causes


def _root_cause(
    ctx: RuleContext,
    cs: _ClassScore,
    symptom_links: list[ChainLink],
    stall: Any,
    scores: dict[RootCauseClass, _ClassScore],
    facts: _Facts,
) -> RootCause:
    own = sorted(cs.findings, key=lambda f: -f.weight)
    folded = sorted(cs.folded, key=lambda f: -f.weight)
    chain = _assemble_chain(symptom_links, own, folded)
    confidence = _confidence(cs, own + folded)
    summary = _summary(cs, stall, own, folded, facts)
    return RootCause(
        cls=cs.cls,
        confidence=confidence,
        summary=summary,
        chain=chain,
        fixes=tuple(_fixes(ctx, cs, own + folded, scores)),
        references=tuple(_references(own + folded + cs.config)),
        findings=tuple(dict.fromkeys(f.code for f in own + folded + cs.config)),
        contributing=tuple(c for c in dict.fromkeys(cs.folded_classes) if c != cs.cls),
    )


def _evidence_kinds(findings: Iterable[Finding]) -> set[str]:
    kinds: set[str] = set()
    for f in findings:
        if f.chain is not None and any(lk.goroutine is not None for lk in f.chain.links):
            kinds.add("goroutines")
        elif f.code.startswith("PD6") or (f.chain is not None and any(lk.kind == "kernel" for lk in f.chain.links)):
            kinds.add("kernel")
        elif f.code in ("PD301", "PD302", "PD303"):
            kinds.add("pressure")
        else:
            kinds.add("logs")
    return kinds


def _confidence(cs: _ClassScore, findings: list[Finding]) -> float:
    kinds = _evidence_kinds(findings)
    conf = cs.score + 0.04 * max(0, len(kinds) - 1)
    if not kinds & {"goroutines", "kernel"}:
        conf = min(conf, 0.7)
    return round(max(0.05, min(conf, 0.97)), 2)


# ---------------------------------------------------------------------------------------
# Summaries: one sentence per cause, claiming only what the evidence shows


@dataclass(frozen=True, slots=True)
class IoLoad:
    """What the evidence says about the disk's load: the pressure analysis's figures (PSI io,
    busiest disk, dirty pages) and hung tasks in overlay sync, fsync or block I/O."""

    figures: tuple[IoFigure, ...]

    @classmethod
    def of(cls, ctx: RuleContext, findings: Iterable[Finding]) -> IoLoad:
        kernel = [
            IoFigure("kernel", f"hung task {f.title}", True, f.evidence[0])
            for f in findings
            if f.code in IO_KERNEL_CODES and f.evidence
        ]
        return cls((*io_figures(ctx), *kernel[:1]))

    @property
    def factor(self) -> float:
        if not self.figures:
            return NO_IO_EVIDENCE_FACTOR
        return 1.0 if any(f.high for f in self.figures) else IO_NOT_SHOWN_FACTOR

    @staticmethod
    def _texts(figures: Iterable[IoFigure]) -> str:
        """'a; b during the stall' when all share their time, else each with its own."""
        figs = list(figures)
        whens = {f.when for f in figs}
        if len(whens) == 1:
            return "; ".join(f.text for f in figs) + whens.pop()
        return "; ".join(f.text + f.when for f in figs)

    def load(self) -> str:
        """How the figures say the disk was loaded, with the figures: 'on a saturated disk (PSI
        io full avg10 63%; sdb 100% util, w_await 850 ms)', 'behind a writeback backlog (...)',
        'while the kernel shows tasks blocked in I/O (hung task ...)'; '' when they show no load
        or there are none."""
        high = [f for f in self.figures if f.high]
        if any(f.kind in ("psi", "disk") for f in high):
            return f"on a saturated disk ({self._texts(high)})"
        if any(f.kind == "dirty" for f in high):
            return f"behind a writeback backlog ({self._texts(high)})"
        if high:
            return f"while the kernel shows tasks blocked in I/O ({self._texts(high)})"
        return ""

    def caveat(self) -> str:
        """What a summary must add when the figures do not show the load."""
        if not self.figures:
            return "; the disk's load is not in the evidence: collect PSI/diskstats to confirm"
        if not any(f.high for f in self.figures):
            return f"; the I/O figures given do not show a loaded disk ({self._texts(self.figures)})"
        return ""


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the summaries may claim beyond each class's own findings."""

    io: IoLoad
    relist_calls: dict[RootCauseClass, str]  # classes whose chains reach the relist, and the call
    leader: RootCauseClass | None  # the best of those
    runtime_dumps: bool  # a containerd goroutine dump was given


def _summary(cs: _ClassScore, stall: Any, own: list[Finding], folded: list[Finding], facts: _Facts) -> str:
    head = f"Relisting stopped for {fmt_seconds(stall.seconds)}: " if stall is not None else ""
    sentence = _sentence(cs.cls, own + folded, facts)
    contributing = [c for c in dict.fromkeys(cs.folded_classes) if c != cs.cls]
    via = " (contributing: " + ", ".join(str(c) for c in contributing) + ")" if contributing else ""
    caveat = facts.io.caveat() if cs.cls in IO_CLASSES else ""
    text = f"{head}{sentence}{via}{caveat}."
    if own:
        text += f" Strongest evidence: {own[0].title}."
    if facts.leader is not None and cs.cls not in facts.relist_calls:
        call = facts.relist_calls[facts.leader]
        text += (
            f" Ranked below {facts.leader}: not on the relist's path in the dumps (the relist's {call} waits on the "
            f"{facts.leader} chain)"
        )
        text += "; it can still add to the disk's write load." if cs.cls in IO_CLASSES else "."
    return text[0].upper() + text[1:]


def _sentence(cls: RootCauseClass, findings: list[Finding], facts: _Facts) -> str:
    """The class's mechanism, worded from what its findings and the I/O figures show (the
    summary adds the I/O caveat and, for a class off the relist's path, why it ranks lower)."""
    tags: set[str] = set()
    for f in findings:
        if f.chain is not None:
            tags |= f.chain.tags
    codes = {f.code for f in findings}
    call = facts.relist_calls.get(cls)
    load = facts.io.load()
    on = f" {load}" if load else ""
    if call is not None:
        blocks = f", and the relist's {call} waited behind it"
    elif facts.leader is not None:
        blocks = ""  # the ranking note says it is not on the relist's path
    elif facts.runtime_dumps:
        blocks = "; the goroutine dumps do not show it blocking the relist"
    else:
        blocks = "; no goroutine dump shows what the relist waited on"
    if cls == C.FSYNC_IO_PRESSURE:
        sync = "/".join(t for t in ("fsync", "fdatasync") if t in tags) or "fsync"
        return f"{_flusher(tags)} sat in {sync}{on}{blocks}"
    if cls == C.OVERLAY_UMOUNT_SYNC:
        shim = ", with the shim's mutex held" if "shim:Delete" in tags else ""
        return f"unmounting a container's overlay rootfs synced its backing filesystem{on}{shim}{blocks}"
    if cls == C.DISK_IO_PRESSURE:
        if load:
            return f"I/O was slow{on}, and no more specific blocking chain is visible"
        return "the evidence points at slow I/O"
    if cls == C.CRI_STATUS_LOCK:
        if call is not None:
            return f"the relist's {call} queued on a container status lock held across a slow call"
        return (
            "a container status lock was held across a slow call (ListContainers needs every container's status "
            f"lock){blocks}"
        )
    if cls == C.KUBELET_INTERNAL:
        if "PD110" in codes:
            idle = " while containerd's dump shows no blocked CRI call" if "PD111" in codes else ", not in a CRI call"
            return f"the kubelet's relist goroutine was stuck inside the kubelet{idle}"
        if "PD111" in codes:
            return (
                "containerd's dump shows no blocked CRI call during the stall: "
                "the relist is likely stuck in the kubelet"
            )
        return "kubelet goroutines waited on a lock or channel inside the kubelet"
    if cls == C.CNI_HANG and "PD420" not in codes:
        return "CNI ADD/DEL calls timed out"
    return _MECHANISM.get(cls, str(cls))


def _flusher(tags: set[str]) -> str:
    """Who was flushing, as precisely as the chain tags say."""
    if "content-commit" in tags and "bbolt-writer" in tags:
        return "a content commit holding bbolt's writer lock"
    if "bbolt-writer" in tags:
        return "a bbolt commit holding the metadata writer lock"
    if "status-lock" in tags:
        return "a container status checkpoint under the status write lock"
    return "a containerd flush"


_MECHANISM: dict[RootCauseClass, str] = {
    C.BBOLT_LOCK_CONTENTION: "requests queued on containerd's metadata DB (bbolt) writer lock, whose holder is slow "
    "or not visible",
    C.RUNTIME_LOCK_CONTENTION: "runtime goroutines (containerd, CRI-O) queued on an internal lock held by a slow "
    "goroutine",
    C.SHIM_HANG: "containerd waited on a shim call that did not return",
    C.RUNC_HANG: "a runc invocation did not return",
    C.DOCKERD_LOCK: "dockerd operations queued on a container lock",
    C.NETWORK_STORAGE_HANG: "a hung network filesystem blocked container operations",
    C.KERNEL_D_STATE: "runtime tasks were stuck in D state in the kernel",
    C.CNI_HANG: "a CNI ADD/DEL call did not return",
    C.TOO_MANY_CONTAINERS: "each relist had to list and inspect too many containers",
    C.SYSTEMD_DBUS_HANG: "a runtime call waited on systemd over D-Bus (the systemd cgroup driver), which did not "
    "answer",
    C.NODE_RESOURCE_STARVATION: "the node ran out of CPU or memory, starving the kubelet and the runtime",
    C.RUNTIME_KNOWN_BUG: "the runtime's version has a known deadlock or regression, and its signature is in the "
    "evidence",
    C.RUNTIME_FROZEN: "the runtime process was stopped (T state) and answered nothing",
    C.UNKNOWN: "the evidence does not show why",
}


def _fixes(
    ctx: RuleContext, cs: _ClassScore, findings: list[Finding], scores: dict[RootCauseClass, _ClassScore]
) -> list[str]:
    v = ctx.versions
    tags: set[str] = set()
    for f in findings:
        if f.chain is not None:
            tags |= f.chain.tags
    umount_seen = C.OVERLAY_UMOUNT_SYNC in scores and bool(scores[C.OVERLAY_UMOUNT_SYNC].findings)
    out: list[str] = []
    c = cs.cls
    if c == C.OVERLAY_UMOUNT_SYNC:
        out += [fixes.volatile_fix(v), fixes.dirty_limits_fix(), fixes.pull_parallelism_fix()]
    elif c == C.FSYNC_IO_PRESSURE:
        out += [fixes.dirty_limits_fix(), fixes.separate_disk_fix()]
        if "content-commit" in tags:
            out.append(fixes.content_presync_fix(v))
        if "bbolt-writer" in tags or "fdatasync" in tags:
            out.append(fixes.bbolt_no_sync_fix(v))
        if umount_seen or "umount" in tags:
            out.append(fixes.volatile_fix(v))
        out.append(fixes.pull_parallelism_fix())
        if "status-lock" in tags:
            out.append(fixes.status_lock_fix())
    elif c == C.DISK_IO_PRESSURE:
        out += [fixes.separate_disk_fix(), fixes.dirty_limits_fix(), fixes.pull_parallelism_fix()]
    elif c == C.BBOLT_LOCK_CONTENTION:
        out += [f.fix for f in findings if f.code == "PD205"][:1]
        out += [fixes.content_presync_fix(v), fixes.bbolt_no_sync_fix(v), fixes.dirty_limits_fix()]
    elif c == C.CRI_STATUS_LOCK:
        out.append(fixes.status_lock_fix())
    for f in sorted(findings, key=lambda f: -f.weight):
        out.append(f.fix)
    for f in cs.config:
        out.append(f.fix)
    unique: dict[str, str] = {}
    for x in out:
        if x and x[:60] not in unique:
            unique[x[:60]] = x
    return list(unique.values())[:MAX_FIXES]


def _references(findings: Iterable[Finding]) -> list[str]:
    refs: list[str] = []
    for f in findings:
        refs.extend(f.references)
    return list(dict.fromkeys(refs))[:MAX_REFS]


def _unknown(
    ctx: RuleContext,
    symptoms: list[Finding],
    symptom_links: list[ChainLink],
    stall: Any,
    weak: list[_ClassScore],
    unnamed: list[Finding] = (),  # type: ignore[assignment]
) -> RootCause:
    head = f"Relisting stopped for {fmt_seconds(stall.seconds)}, but " if stall else ""
    if not head and symptoms:
        strongest = max(symptoms, key=lambda f: (_SEV_ORDER[str(f.severity)] * -1, f.weight))
        head = f"{strongest.title.rstrip('.')}, but "
    elif not head and weak and weak[0].findings:
        head = f"{weak[0].findings[0].title.rstrip('.')}, but "
    guess = ""
    if weak:
        guess = f" Weak candidates: {', '.join(f'{w.cls} ({w.score:.0%})' for w in weak[:3])}."
    seen = sorted(unnamed, key=lambda f: -f.weight)
    if seen:
        what = "; ".join(f.title for f in seen[:2])
        summary = (
            f"{head or 'The evidence shows a stall: '}{what}. No known mechanism explains it.{guess} "
            "See next steps for what to collect."
        )
    else:
        summary = f"{head}the evidence does not show why.{guess} See next steps for what to collect."
    refs = _references([*symptoms, *seen])
    chain: list[ChainLink] = list(symptom_links[:2])
    for f in seen[:1]:
        if f.chain is not None:
            chain.extend(f.chain.links[:MAX_CHAIN])
    return RootCause(
        cls=C.UNKNOWN,
        confidence=0.3 if not weak else round(max(0.2, 0.5 - weak[0].score), 2),
        summary=summary[0].upper() + summary[1:],
        chain=tuple(chain),
        fixes=("Collect evidence while the relist is stalled (see next steps) and run pleg-doctor analyze again.",),
        references=tuple(refs),
        findings=tuple(dict.fromkeys(f.code for f in [*symptoms, *seen])),
    )


# ---------------------------------------------------------------------------------------
# Next steps


def next_steps(ctx: RuleContext, root_causes: list[RootCause], stall: Any) -> list[str]:
    """Commands that collect the evidence that is missing, most useful first."""
    ev = ctx.evidence
    procs = ctx.dump_processes()
    top = root_causes[0] if root_causes else None
    top_conf = top.confidence if top else 0.0
    classes = {rc.cls for rc in root_causes}
    kinds = {i.kind for i in ev.inputs}
    out: list[str] = []
    since = ""
    if stall is not None and getattr(stall, "start", None) is not None:
        start: datetime = stall.start - timedelta(minutes=10)
        since = start.strftime("%Y-%m-%d %H:%M:%S")
    if C.RUNTIME_FROZEN in classes:
        # a stopped process cannot handle SIGUSR1: its dump waits until it runs again
        out.append(
            "The runtime is stopped: record who stopped it first (grep -E 'State|TracerPid' /proc/<pid>/status; "
            "cat /proc/<pid>/cgroup and that cgroup's cgroup.freeze or freezer.state), then resume it with "
            "kill -CONT <pid> (or thaw the cgroup); a goroutine dump (SIGUSR1) is only written once it runs."
        )
    elif "crio" in procs:
        out.append(
            "Dump CRI-O's goroutines again while the stall lasts: kill -USR1 $(pidof crio), then read "
            "/tmp/crio-goroutine-stacks-<timestamp>.log (all goroutines: the holder of the lock is in it)."
        )
    elif "containerd" not in procs:
        out.append(
            "Dump containerd's goroutines while the relist is stalled: kill -USR1 $(pidof containerd), then read "
            "/tmp/containerd.<pid>.stacks.log (also logged by containerd as one line: journalctl -u containerd "
            "--all | grep -F 'goroutine stack dump')."
        )
    if (classes & {C.SHIM_HANG, C.OVERLAY_UMOUNT_SYNC, C.RUNC_HANG, C.UNKNOWN}) and "containerd-shim" not in procs:
        out.append(
            "Dump the shim of the stuck container: "
            "kill -USR1 $(pgrep -f 'containerd-shim-runc-v2.*-id <container id>'); the shim logs its goroutines "
            "through containerd's journal (journalctl -u containerd --all), then cat /proc/<shim pid>/stack."
        )
    if not ev.pressure:
        out.append(
            "Read I/O pressure during the stall: cat /proc/pressure/io "
            "(PSI needs kernel >= 4.20; psi=1 on some distros)."
        )
    if not ev.diskstats and not ev.disk_samples:
        out.append("Measure the disks: cat /proc/diskstats; sleep 5; cat /proc/diskstats (or iostat -x 5 3).")
    if not ev.meminfo:
        out.append("Check the writeback backlog: grep -E '^(Dirty|Writeback):' /proc/meminfo.")
    if not ev.hung_tasks and not any(k in kinds for k in ("dmesg", "kernel-log")):
        out.append("Look for hung tasks: dmesg -T | grep -A 30 'blocked for more than' (or journalctl -k).")
    if not len(ev.relists) and not any(e for e in ev.events if e.process == "kubelet"):
        window = f"--since '{since}' " if since else "--since '-2h' "
        out.append(
            f"Get the kubelet and containerd logs: journalctl -u kubelet -u containerd {window}-o short-precise --all "
            "(the kubelet logs each relist at -v=5)."
        )
    elif since and not any(e.process == "containerd" for e in ev.events) and "containerd-log" not in kinds:
        out.append(
            f"Get containerd's log for the stall: journalctl -u containerd --since '{since}' -o short-precise --all."
        )
    v = ctx.versions
    if not (v.containerd and v.kernel):
        out.append("Record versions: containerd --version; uname -r; kubelet --version; runc --version.")
    if not ev.runtime_configs and classes & {C.OVERLAY_UMOUNT_SYNC, C.FSYNC_IO_PRESSURE, C.UNKNOWN}:
        out.append("Show the effective containerd config: containerd config dump.")
    if not ev.mounts and C.OVERLAY_UMOUNT_SYNC in classes:
        out.append("Check whether overlay mounts are volatile: grep overlay /proc/mounts.")
    if C.KUBELET_INTERNAL in classes or (top is not None and top.cls == C.UNKNOWN and "kubelet" not in procs):
        out.append(
            "Dump the kubelet's goroutines without restarting it: kubectl get --raw "
            "'/api/v1/nodes/<node>/proxy/debug/pprof/goroutine?debug=2' > kubelet-goroutines.txt."
        )
    if top_conf < 0.8 or not root_causes:
        out.append("Or gather all of the above in one go on the node: pleg-doctor collect --since 2h.")
    return out


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
assert set(_SEV_ORDER) == {str(s) for s in Severity}
_ = Chain
