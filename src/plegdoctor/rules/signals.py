"""Derived signals rules share: stalls, runtime intervals, I/O figures, goroutine chain
queries, and the builders of hits and chain steps.

Stalls, UpdateContainerResources holds and task-delete failures are thin adapters over the
PLEG timeline (plegdoctor.analysis.pleg_timeline, `ctx.timeline`); pressure figures come
from the pressure analysis (plegdoctor.analysis.pressure, `ctx.pressure`). Neither is
recomputed here: when an analysis is absent (its evidence missing, or it failed and the
failure is in `ctx.errors`) the adapters return nothing. Results are memoised on the
RuleContext.
"""

from __future__ import annotations

import itertools
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec

from plegdoctor.analysis.pleg_timeline import Interval
from plegdoctor.analysis.pressure import (
    DISK_AWAIT_HIGH_MS,
    DISK_UTIL_HIGH,
    IO_FULL_HIGH,
    IO_SOME_HIGH,
    dirty_high,
)
from plegdoctor.model import Chain, ChainLink, Event, EventKind, Ref
from plegdoctor.rules.context import RuleContext, Stall, stall_windows, stalls
from plegdoctor.rules.registry import Hit
from plegdoctor.timeutil import format_seconds

# ---------------------------------------------------------------------------------------
# Stalls (relist gaps and unhealthy windows, from the PLEG timeline; `Stall`, `stalls` and
# `stall_windows` live in rules/context.py, which the context's pressure analysis needs)


def worst_stall(ctx: RuleContext) -> Stall | None:
    s = stalls(ctx)
    return s[0] if s else None


def during_stall(ctx: RuleContext, ts: datetime | None, slack: float = 60.0) -> bool | None:
    """True/False if `ts` falls in/out of a known stall window; None when undecidable
    (no timestamp, or no stall with known times)."""
    windows = stall_windows(ctx, slack)
    if ts is None or not windows:
        return None
    return any(a <= ts <= b for a, b in windows)


def stall_text(inside: bool | None) -> str:
    """How a figure's time relates to the stall, as a suffix for a title or a detail."""
    return {True: " during the stall", None: "", False: " (outside the stall window)"}[inside]


# ---------------------------------------------------------------------------------------
# Events and runtime intervals


def events(ctx: RuleContext, *kinds: EventKind) -> list[Event]:
    """Events of these kinds, in evidence order; one per source line (a parser may emit several
    kinds for one line). The events are indexed by kind once per context, each kind's events
    are made one per line once, and each answer is kept, so the rules that ask for the same
    kinds do not walk every event again."""
    wanted = sorted({str(k) for k in kinds})
    key = "events:" + ",".join(wanted)

    def compute() -> list[Event]:
        picked = [p for p in (_kind_events(ctx, k) for k in wanted) if p[0]]
        if not picked:
            return []
        if len(picked) == 1:
            return [e for _, e in picked[0][0]]
        # The first event of a line among several kinds is the first among each kind's first:
        # merge the kinds' one-per-line lists by evidence index (unique), then drop the later
        # events of the lines that more than one kind has.
        shared: set[tuple[str, int]] = set()
        for (_, a), (_, b) in itertools.combinations(picked, 2):
            shared.update((path, line) for path in a.keys() & b.keys() for line in a[path] & b[path])
        merged = sorted(itertools.chain.from_iterable(p[0] for p in picked))
        if not shared:
            return [e for _, e in merged]
        seen: set[tuple[str, int]] = set()
        out: list[Event] = []
        for _, e in merged:
            line = (e.ref.path, e.ref.line)
            if line in shared:
                if line in seen:
                    continue
                seen.add(line)
            out.append(e)
        return out

    return list(ctx.memo(key, compute))  # a copy: callers may sort or trim theirs


_KindEvents = tuple[list[tuple[int, Event]], dict[str, set[int]]]  # (index, event) one per line; path -> lines


def _kind_events(ctx: RuleContext, kind: str) -> _KindEvents:
    """The events of one kind, one per source line, with their evidence index; and their
    lines (line numbers by path)."""

    def compute() -> _KindEvents:
        every = _index(ctx).get(kind, [])  # kept as it is when it is one per line already
        refs = list(map(_REF, map(_SECOND, every)))
        numbers = list(map(_LINE, refs))
        paths = set(map(_PATH, refs))
        if len(paths) == 1:
            lines = set(numbers)
            if len(lines) == len(numbers):  # the common case: one file, one event of this kind a line
                return every, {paths.pop(): lines}
        pairs: list[tuple[int, Event]] = []
        by_path: dict[str, set[int]] = {}
        for pair, r in zip(every, refs, strict=True):
            seen = by_path.get(r.path)
            if seen is None:
                seen = by_path[r.path] = set()
            if r.line not in seen:
                seen.add(r.line)
                pairs.append(pair)
        return pairs, by_path

    return ctx.memo("events-of-kind:" + kind, compute)  # type: ignore[no-any-return]


_SECOND, _REF = operator.itemgetter(1), operator.attrgetter("ref")
_PATH, _LINE = operator.attrgetter("path"), operator.attrgetter("line")


def _index(ctx: RuleContext) -> dict[str, list[tuple[int, Event]]]:
    """Every event with its evidence index, by kind name, in evidence order (once per context)."""
    return ctx.memo("events-by-kind", lambda: _index_by_kind(ctx))  # type: ignore[no-any-return]


def _index_by_kind(ctx: RuleContext) -> dict[str, list[tuple[int, Event]]]:
    by_kind: dict[Any, list[tuple[int, Event]]] = defaultdict(list)
    for pair in enumerate(ctx.evidence.events):
        by_kind[pair[1].kind].append(pair)
    index: dict[str, list[tuple[int, Event]]] = {}
    for kind, pairs in by_kind.items():
        name = str(kind)
        # kinds that are distinct objects of one name (never the case with EventKind) share a list
        index[name] = sorted(index[name] + pairs, key=operator.itemgetter(0)) if name in index else pairs
    return index


def all_events(ctx: RuleContext, kind: EventKind) -> list[Event]:
    """Every event of one kind, in evidence order, several of one line included (`events`
    keeps one per line); read from the per-kind index, not by walking every event."""
    return [e for _, e in _index(ctx).get(str(kind), ())]


def _one_per_line(evs: Iterable[Event]) -> list[Event]:
    seen: set[tuple[str, int]] = set()
    add = seen.add
    out: list[Event] = []
    keep = out.append
    for e in evs:
        r = e.ref
        key = (r.path, r.line)
        if key not in seen:
            add(key)
            keep(e)
    return out


def update_holds(ctx: RuleContext) -> list[Interval]:
    """UpdateContainerResources intervals of the PLEG timeline, open and longest first. Each
    brackets the time the container's status write lock was held (`open`: no end line before
    the log ends; `seconds` then runs to the end of the log)."""

    def compute() -> list[Interval]:
        tl = ctx.timeline
        holds = list(tl.update_resources) if tl is not None else []
        holds.sort(key=lambda h: (not h.open, -(h.seconds or 0.0)))
        return holds

    return ctx.memo("holds", compute)  # type: ignore[no-any-return]


def interval_refs(interval: Interval) -> tuple[Ref, ...]:
    return tuple(r for r in (interval.start_ref, interval.end_ref) if r is not None)


def task_delete_failures(ctx: RuleContext, *, timeouts_only: bool = False) -> list[Event]:
    """Failed TaskExit handling and task deletes of the PLEG timeline, in time order, one per
    log line; `timeouts_only` keeps those whose error is a delete that timed out."""
    tl = ctx.timeline
    if tl is None:
        return []
    evs = sorted(tl.task_exit_failures + tl.task_delete_failures, key=lambda e: (e.ts is None, e.ts or 0, e.ref.line))
    return [e for e in _one_per_line(evs) if not timeouts_only or is_delete_timeout(e)]


def is_delete_timeout(e: Event) -> bool:
    text = f"{e.attrs.get('error', '')} {e.attrs.get('msg', '')}".lower()
    return "delete task" in text and ("deadline exceeded" in text or "timeout" in text or "timed out" in text)


# ---------------------------------------------------------------------------------------
# I/O figures (from the pressure analysis)


class IoFigure(msgspec.Struct, frozen=True):
    """A figure about the disk's load a summary may quote. `high`: over the pressure
    analysis's threshold and not outside the stall window."""

    kind: str  # psi | disk | dirty | kernel
    text: str  # the figure, e.g. "sdb 100% util, w_await 850 ms"
    high: bool
    ref: Ref
    when: str = ""  # stall_text() of its time: " during the stall", " (outside the stall window)" or ""


def io_figures(ctx: RuleContext) -> list[IoFigure]:
    """The node's worst io PSI, busiest disk and dirty backlog, as quotable figures (empty
    when no pressure evidence was given)."""
    pa = ctx.pressure
    if pa is None:
        return []
    out: list[IoFigure] = []
    full, some = pa.io_peak("full"), pa.io_peak("some")
    full_high = full is not None and full.value >= IO_FULL_HIGH
    some_high = some is not None and some.value >= IO_SOME_HIGH
    psi, which = (some, "some") if (some_high and not full_high) or full is None else (full, "full")
    if psi is not None:
        text = f"PSI io {which} {psi.window} {psi.value:.0f}%"
        high = (full_high or some_high) and psi.in_gap is not False
        out.append(IoFigure("psi", text, high, psi.ref, stall_text(psi.in_gap)))
    disk = pa.worst_disk()
    if disk is not None:
        d = disk.sample
        high = d.util >= DISK_UTIL_HIGH or (d.w_await or 0.0) >= DISK_AWAIT_HIGH_MS
        await_txt = f", w_await {d.w_await:.0f} ms" if d.w_await is not None else ""
        text = f"{d.device} {d.util:.0f}% util{await_txt}"
        out.append(IoFigure("disk", text, high and disk.in_gap is not False, disk.ref, stall_text(disk.in_gap)))
    dirty = pa.dirty_top()
    if dirty is not None:
        text = f"{dirty.value / 1024 / 1024:.1f} GiB dirty/writeback"
        high = dirty_high(dirty.sample) and dirty.in_gap is not False
        out.append(IoFigure("dirty", text, high, dirty.ref, stall_text(dirty.in_gap)))
    return out


# ---------------------------------------------------------------------------------------
# Goroutine chains


def has_tag(tags: Iterable[str], tag: str) -> bool:
    """Tag match; a tag ending in ':' matches any tag with that prefix ("cri:")."""
    if tag.endswith(":"):
        return any(t.startswith(tag) for t in tags)
    return tag in tags


def chain_has(chain: Chain, *tags: str) -> bool:
    ct = chain.tags
    return all(has_tag(ct, t) for t in tags)


def chain_has_any(chain: Chain, *tags: str) -> bool:
    ct = chain.tags
    return any(has_tag(ct, t) for t in tags)


def chains_with(ctx: RuleContext, *tags: str) -> list[Chain]:
    """Chains carrying all `tags`, best (highest score, most blocked) first."""
    out = [c for c in ctx.chains if chain_has(c, *tags)]
    out.sort(key=lambda c: (-c.score, -c.blocked, -(c.max_wait_minutes or 0)))
    return out


def link_with(chain: Chain, *tags: str) -> ChainLink | None:
    """First link (symptom side) carrying any of `tags`."""
    for link in chain.links:
        if any(has_tag(link.tags, t) for t in tags):
            return link
    return None


def last_link_with(chain: Chain, *tags: str) -> ChainLink | None:
    """Deepest link carrying any of `tags`."""
    for link in reversed(chain.links):
        if any(has_tag(link.tags, t) for t in tags):
            return link
    return None


def chain_refs(chain: Chain, limit: int = 8) -> tuple[Ref, ...]:
    refs: list[Ref] = []
    for link in chain.links:
        refs.extend(link.evidence[:2])
    return tuple(refs[:limit])


def chain_wait_minutes(chain: Chain) -> int:
    return max([link.wait_minutes or 0 for link in chain.links] + [chain.max_wait_minutes or 0])


def links_with(ctx: RuleContext, *tags: str) -> Iterator[tuple[Chain, ChainLink]]:
    """Every (chain, link) where the link carries any of `tags`."""
    for c in ctx.chains:
        for link in c.links:
            if any(has_tag(link.tags, t) for t in tags):
                yield c, link


def cri_method(chain: Chain) -> str | None:
    for link in chain.links:
        for t in sorted(link.tags):
            if t.startswith("cri:"):
                return t[4:]
    return None


def chain_hit(chain: Chain, title: str, weight: float, **extra: Any) -> Hit:
    """A hit whose chain is a goroutine wait chain and whose evidence is that chain's lines."""
    return Hit(title=title, evidence=chain_refs(chain), weight=weight, chain=chain, **extra)


def step_hit(title: str, weight: float, *steps: ChainLink, evidence: Iterable[Ref] | None = None, **extra: Any) -> Hit:
    """A hit made of chain steps built from non-goroutine evidence (logs, kernel traces,
    /proc figures); its evidence is the steps' own lines unless `evidence` is given."""
    refs = tuple(evidence) if evidence is not None else tuple(r for st in steps for r in st.evidence)
    return Hit(title=title, evidence=refs, weight=weight, links=steps, **extra)


def placed_weight(weight: float, inside: bool | None, bonus: float) -> float:
    """A figure's weight: `bonus` more when it falls in the stall window, half when it falls
    outside, unchanged when that cannot be told."""
    if inside:
        return weight + bonus
    return weight * 0.5 if inside is False else weight


def for_minutes(minutes: int | None) -> str:
    """ " for N min" when a wait time is known, else nothing."""
    return f" for {minutes} min" if minutes else ""


def plural(n: int, word: str, suffix: str = "s") -> str:
    """'1 time', '3 times', '1 goroutine', '2 goroutines'."""
    return f"{n} {word}{'' if n == 1 else suffix}"


# ---------------------------------------------------------------------------------------
# Misc


def fmt_seconds(s: float | None) -> str:
    """Durations in findings, in the words the reports use (timeutil.format_seconds)."""
    return format_seconds(s)


def kernel_stack_has(stack: Iterable[str], *names: str) -> str | None:
    """First kernel frame whose function name (offset stripped) starts with one of `names`."""
    for frame in stack:
        fn = frame.split("+", 1)[0].strip().lstrip("? ").strip()
        for n in names:
            if fn == n or fn.startswith(n):
                return fn
    return None


def link(
    kind: str,
    process: str,
    detail: str,
    refs: Iterable[Ref] = (),
    *,
    tags: Iterable[str] = (),
    pid: int | None = None,
    goroutine: int | None = None,
    function: str | None = None,
    wait_minutes: int | None = None,
    confidence: float = 1.0,
) -> ChainLink:
    """Build a chain step from non-goroutine evidence (logs, kernel traces, /proc samples)."""
    return ChainLink(
        kind=kind,
        process=process,
        detail=detail,
        evidence=tuple(refs)[:4],
        goroutine=goroutine,
        pid=pid,
        function=function,
        wait_minutes=wait_minutes,
        confidence=confidence,
        tags=frozenset(tags),
    )
