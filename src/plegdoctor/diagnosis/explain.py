"""The words of the diagnosis: each root cause's mechanism, summary, fixes and references,
claiming only what the evidence shows; and the `unknown` answer when nothing explains it.

Numbers come from rank.py; what each class is, from classes.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from plegdoctor.diagnosis.chain import MAX_CHAIN, assemble_chain
from plegdoctor.diagnosis.classes import FixInputs, cause_class
from plegdoctor.diagnosis.rank import SEV_ORDER, ClassScore, IoLoad, Ranking, confidence, unknown_confidence
from plegdoctor.model import ChainLink, Finding, RootCause, RootCauseClass
from plegdoctor.rules.registry import Rule, RuleContext
from plegdoctor.rules.signals import IoFigure, fmt_seconds

C = RootCauseClass
MAX_FIXES = 6
MAX_REFS = 8
# rules whose findings word the kubelet-internal and CNI sentences
KUBELET_RELIST_BLOCKED = "PD110"  # the kubelet's relist goroutine stuck inside the kubelet
RUNTIME_IDLE = "PD111"  # containerd's dump shows no blocked CRI call during the stall
CNI_IN_DUMP = "PD420"  # a CNI call seen in a goroutine dump (else only log timeouts)
UNKNOWN_FIX = "Collect evidence while the relist is stalled (see next steps) and run pleg-doctor analyze again."


class Facts(msgspec.Struct, frozen=True):
    """What the summaries may claim beyond each class's own findings."""

    io: IoLoad
    relist_calls: dict[RootCauseClass, str]  # classes whose chains reach the relist, and the call
    leader: RootCauseClass | None  # the best of those
    runtime_dumps: bool  # a containerd goroutine dump was given

    @classmethod
    def of(cls, ranking: Ranking, runtime_dumps: bool) -> Facts:
        return cls(ranking.io, ranking.relist_calls, ranking.leader, runtime_dumps)


# ---------------------------------------------------------------------------------------
# I/O figures, in words


def _texts(figures: Iterable[IoFigure]) -> str:
    """'a; b during the stall' when all share their time, else each with its own."""
    figs = list(figures)
    whens = {f.when for f in figs}
    if len(whens) == 1:
        return "; ".join(f.text for f in figs) + whens.pop()
    return "; ".join(f.text + f.when for f in figs)


def io_load_text(io: IoLoad) -> str:
    """How the figures say the disk was loaded, with the figures: 'on a saturated disk (PSI
    io full avg10 63%; sdb 100% util, w_await 850 ms)', 'behind a writeback backlog (...)',
    'while the kernel shows tasks blocked in I/O (hung task ...)'; '' when they show no load
    or there are none."""
    high = [f for f in io.figures if f.high]
    if any(f.kind in ("psi", "disk") for f in high):
        return f"on a saturated disk ({_texts(high)})"
    if any(f.kind == "dirty" for f in high):
        return f"behind a writeback backlog ({_texts(high)})"
    if high:
        return f"while the kernel shows tasks blocked in I/O ({_texts(high)})"
    return ""


def io_caveat(io: IoLoad) -> str:
    """What a summary must add when the figures do not show the load."""
    if not io.figures:
        return "; the disk's load is not in the evidence: collect PSI/diskstats to confirm"
    if not any(f.high for f in io.figures):
        return f"; the I/O figures given do not show a loaded disk ({_texts(io.figures)})"
    return ""


# ---------------------------------------------------------------------------------------
# Root causes


def root_cause(
    ctx: RuleContext,
    cs: ClassScore,
    symptom_links: list[ChainLink],
    stall: Any,
    scores: dict[RootCauseClass, ClassScore],
    facts: Facts,
    rules: dict[str, Rule],
) -> RootCause:
    own = sorted(cs.findings, key=lambda f: -f.weight)
    folded = sorted(cs.folded, key=lambda f: -f.weight)
    return RootCause(
        cls=cs.cls,
        confidence=confidence(cs, own + folded, rules),
        summary=summary(cs, stall, own, folded, facts),
        chain=assemble_chain(symptom_links, own, folded),
        fixes=tuple(cause_fixes(ctx, cs, own + folded, scores)),
        references=tuple(_references(own + folded + cs.config)),
        findings=tuple(dict.fromkeys(f.code for f in own + folded + cs.config)),
        contributing=tuple(c for c in dict.fromkeys(cs.folded_classes) if c != cs.cls),
    )


def _stopped(stall: Any) -> str:
    """How long relisting stopped; a stall whose length the evidence does not give (one
    unhealthy line, stamps that collapse to one instant) is said so, not "for 0 ms"."""
    if stall.seconds:
        return f"Relisting stopped for {fmt_seconds(stall.seconds)}"
    return "Relisting stopped for an unknown time"


def summary(cs: ClassScore, stall: Any, own: list[Finding], folded: list[Finding], facts: Facts) -> str:
    head = f"{_stopped(stall)}: " if stall is not None else ""
    loaded_disk = cause_class(cs.cls).loaded_disk
    sentence = mechanism(cs.cls, own + folded, facts)
    contributing = [c for c in dict.fromkeys(cs.folded_classes) if c != cs.cls]
    via = " (contributing: " + ", ".join(str(c) for c in contributing) + ")" if contributing else ""
    caveat = io_caveat(facts.io) if loaded_disk else ""
    text = f"{head}{sentence}{via}{caveat}."
    if own:
        text += f" Strongest evidence: {own[0].title}."
    if facts.leader is not None and cs.cls not in facts.relist_calls:
        call = facts.relist_calls[facts.leader]
        text += (
            f" Ranked below {facts.leader}: not on the relist's path in the dumps (the relist's {call} waits on the "
            f"{facts.leader} chain)"
        )
        text += "; it can still add to the disk's write load." if loaded_disk else "."
    return text[0].upper() + text[1:]


def mechanism(cls: RootCauseClass, findings: list[Finding], facts: Facts) -> str:
    """The class's mechanism, worded from what its findings and the I/O figures show (the
    summary adds the I/O caveat and, for a class off the relist's path, why it ranks lower);
    the class record's `mechanism` when nothing sharper can be said."""
    tags: set[str] = set()
    for f in findings:
        if f.chain is not None:
            tags |= f.chain.tags
    codes = {f.code for f in findings}
    call = facts.relist_calls.get(cls)
    load = io_load_text(facts.io)
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
        return f"{cause_class(cls).mechanism}{on}{shim}{blocks}"
    if cls == C.DISK_IO_PRESSURE and load:
        return f"I/O was slow{on}, and no more specific blocking chain is visible"
    if cls == C.CRI_STATUS_LOCK:
        if call is not None:
            return f"the relist's {call} queued on a container status lock held across a slow call"
        return f"{cause_class(cls).mechanism}{blocks}"
    if cls == C.KUBELET_INTERNAL:
        if KUBELET_RELIST_BLOCKED in codes:
            idle = (
                " while containerd's dump shows no blocked CRI call" if RUNTIME_IDLE in codes else ", not in a CRI call"
            )
            return f"the kubelet's relist goroutine was stuck inside the kubelet{idle}"
        if RUNTIME_IDLE in codes:
            return (
                "containerd's dump shows no blocked CRI call during the stall: "
                "the relist is likely stuck in the kubelet"
            )
    if cls == C.CNI_HANG and CNI_IN_DUMP not in codes:
        return "CNI ADD/DEL calls timed out"
    return cause_class(cls).mechanism


def _flusher(tags: set[str]) -> str:
    """Who was flushing, as precisely as the chain tags say."""
    if "content-commit" in tags and "bbolt-writer" in tags:
        return "a content commit holding bbolt's writer lock"
    if "bbolt-writer" in tags:
        return "a bbolt commit holding the metadata writer lock"
    if "status-lock" in tags:
        return "a container status checkpoint under the status write lock"
    return "a containerd flush"


def cause_fixes(
    ctx: RuleContext, cs: ClassScore, findings: list[Finding], scores: dict[RootCauseClass, ClassScore]
) -> list[str]:
    """The class's own fixes, then its findings' (strongest first), then its conditions'."""
    tags: set[str] = set()
    for f in findings:
        if f.chain is not None:
            tags |= f.chain.tags
    umount_seen = C.OVERLAY_UMOUNT_SYNC in scores and bool(scores[C.OVERLAY_UMOUNT_SYNC].findings)
    inputs = FixInputs(ctx.versions, frozenset(tags), tuple(findings), umount_seen)
    out = cause_class(cs.cls).fixes(inputs)
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


def unknown(
    symptoms: list[Finding],
    symptom_links: list[ChainLink],
    stall: Any,
    weak: list[ClassScore],
    unnamed: list[Finding],
) -> RootCause:
    """The `unknown` answer: what was seen, the weak candidates, and that next steps say what
    to collect."""
    head = f"{_stopped(stall)}, but " if stall else ""
    if not head and symptoms:
        strongest = max(symptoms, key=lambda f: (SEV_ORDER[str(f.severity)] * -1, f.weight))
        head = f"{strongest.title.rstrip('.')}, but "
    elif not head and weak and weak[0].findings:
        head = f"{weak[0].findings[0].title.rstrip('.')}, but "
    guess = ""
    if weak:
        guess = f" Weak candidates: {', '.join(f'{w.cls} ({w.score:.0%})' for w in weak[:3])}."
    seen = sorted(unnamed, key=lambda f: -f.weight)
    if seen:
        what = "; ".join(f.title for f in seen[:2])
        text = (
            f"{head or 'The evidence shows a stall: '}{what}. No known mechanism explains it.{guess} "
            "See next steps for what to collect."
        )
    else:
        text = f"{head}the evidence does not show why.{guess} See next steps for what to collect."
    refs = _references([*symptoms, *seen])
    chain: list[ChainLink] = list(symptom_links[:2])
    for f in seen[:1]:
        if f.chain is not None:
            chain.extend(f.chain.links[:MAX_CHAIN])
    return RootCause(
        cls=C.UNKNOWN,
        confidence=unknown_confidence(weak),
        summary=text[0].upper() + text[1:],
        chain=tuple(chain),
        fixes=(UNKNOWN_FIX,),
        references=tuple(refs),
        findings=tuple(dict.fromkeys(f.code for f in [*symptoms, *seen])),
    )
