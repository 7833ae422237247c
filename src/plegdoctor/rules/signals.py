"""Derived signals rules share: stalls, UpdateContainerResources holds, pressure peaks,
goroutine chain queries.

Each helper prefers the analysis another module computed (PLEG timeline, goroutine chains)
and falls back to the parsed evidence records when that analysis is absent, so a rule works
on whatever subset of evidence a user has. Results are memoised on the RuleContext.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from plegdoctor.model import (
    Chain,
    ChainLink,
    DiskSample,
    Event,
    EventKind,
    Meminfo,
    PressureSample,
    Ref,
)
from plegdoctor.rules.registry import RuleContext

# ---------------------------------------------------------------------------------------
# Stalls (relist gaps and unhealthy windows)


@dataclass(frozen=True, slots=True)
class Stall:
    """A span where the kubelet did not relist: a gap between two relist ticks, or an
    `PLEG is not healthy` window (start = report time - last seen)."""

    start: datetime | None
    end: datetime | None
    seconds: float
    refs: tuple[Ref, ...]
    kind: str  # gap | unhealthy


def stalls(ctx: RuleContext) -> list[Stall]:
    """Relist gaps >= ctx.gap_seconds and unhealthy windows, longest first."""
    return ctx.memo("stalls", lambda: _stalls(ctx))  # type: ignore[no-any-return]


def _stalls(ctx: RuleContext) -> list[Stall]:
    out: list[Stall] = []
    tl = ctx.timeline
    tl_gaps = getattr(tl, "gaps", None) if tl is not None else None
    if tl_gaps:
        for g in tl_gaps:
            seconds = float(_attr(g, "seconds", "duration", default=0.0) or 0.0)
            if seconds < ctx.gap_seconds:
                continue
            refs = _refs_of(g)
            out.append(Stall(_attr(g, "start"), _attr(g, "end"), seconds, refs, "gap"))
    else:
        out.extend(_gaps_from_relists(ctx))
    for ev in events(ctx, EventKind.PLEG_UNHEALTHY):
        last = ev.attrs.get("last_seen_seconds")
        if ev.ts is None:
            out.append(Stall(None, None, float(last or 0.0), (ev.ref,), "unhealthy"))
            continue
        start = ev.ts - timedelta(seconds=float(last)) if last else None
        out.append(Stall(start, ev.ts, float(last or 0.0), (ev.ref,), "unhealthy"))
    out.sort(key=lambda s: -s.seconds)
    return out


def _gaps_from_relists(ctx: RuleContext) -> list[Stall]:
    series = ctx.evidence.relists
    n = len(series)
    if n < 2:
        return []
    order = sorted(range(n), key=lambda i: series.ts[i])
    out: list[Stall] = []
    from datetime import UTC

    for a, b in itertools.pairwise(order):
        gap = series.ts[b] - series.ts[a]
        if gap >= ctx.gap_seconds:
            out.append(
                Stall(
                    datetime.fromtimestamp(series.ts[a], UTC),
                    datetime.fromtimestamp(series.ts[b], UTC),
                    gap,
                    (series.ref(a), series.ref(b)),
                    "gap",
                )
            )
    return out


def worst_stall(ctx: RuleContext) -> Stall | None:
    s = stalls(ctx)
    return s[0] if s else None


def stall_windows(ctx: RuleContext, slack: float = 60.0) -> list[tuple[datetime, datetime]]:
    """Known (start, end) of stalls, widened by `slack` seconds on each side."""
    out = []
    for s in stalls(ctx):
        if s.start is not None and s.end is not None:
            out.append((s.start - timedelta(seconds=slack), s.end + timedelta(seconds=slack)))
    return out


def during_stall(ctx: RuleContext, ts: datetime | None, slack: float = 60.0) -> bool | None:
    """True/False if `ts` falls in/out of a known stall window; None when undecidable
    (no timestamp, or no stall with known times)."""
    windows = stall_windows(ctx, slack)
    if ts is None or not windows:
        return None
    return any(a <= ts <= b for a, b in windows)


def relist_intervals(ctx: RuleContext) -> list[float]:
    """Seconds between consecutive relist ticks (all sources merged)."""

    def compute() -> list[float]:
        series = ctx.evidence.relists
        ts = sorted(series.ts)
        return [b - a for a, b in itertools.pairwise(ts)]

    return ctx.memo("relist_intervals", compute)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# Events


def events(ctx: RuleContext, *kinds: EventKind) -> list[Event]:
    """Events of these kinds; one per source line (a parser may emit several kinds for one line)."""
    wanted = {str(k) for k in kinds}
    seen: set[tuple[str, int]] = set()
    out = []
    for e in ctx.evidence.events:
        if str(e.kind) in wanted and (e.ref.path, e.ref.line) not in seen:
            seen.add((e.ref.path, e.ref.line))
            out.append(e)
    return out


@dataclass(frozen=True, slots=True)
class Hold:
    """UpdateContainerResources for one container: start to end (None = never ended in
    the log, i.e. still holding the container's status write lock when the log ends)."""

    container_id: str
    start: datetime | None
    end: datetime | None
    seconds: float | None
    refs: tuple[Ref, ...]
    ok: bool | None

    @property
    def open(self) -> bool:
        return self.end is None


def update_holds(ctx: RuleContext) -> list[Hold]:
    """UpdateContainerResources hold intervals, longest (or open) first."""
    return ctx.memo("holds", lambda: _update_holds(ctx))  # type: ignore[no-any-return]


def _update_holds(ctx: RuleContext) -> list[Hold]:
    tl = ctx.timeline
    out: list[Hold] = []
    tl_holds = None
    if tl is not None:
        for name in ("update_holds", "holds", "ucr_holds", "update_resources"):
            tl_holds = getattr(tl, name, None)
            if tl_holds:
                break
    if tl_holds:
        last_ts = _last_event_time(ctx)
        for h in tl_holds:
            start, end = _attr(h, "start"), _attr(h, "end")
            seconds = _attr(h, "seconds", "duration")
            if seconds is None and start is not None:
                stop = end or last_ts
                seconds = (stop - start).total_seconds() if stop else None
            out.append(
                Hold(
                    str(_attr(h, "container_id", "container", "key", default="")),
                    start,
                    end,
                    seconds,
                    _refs_of(h),
                    _attr(h, "ok"),
                )
            )
    else:
        starts: dict[str, Event] = {}
        last_ts = _last_event_time(ctx)
        for ev in sorted(
            events(ctx, EventKind.UPDATE_RESOURCES_START, EventKind.UPDATE_RESOURCES_END),
            key=lambda e: (e.ts is None, e.ts.timestamp() if e.ts else 0.0, e.ref.line),
        ):
            cid = str(ev.attrs.get("container_id", ""))
            if ev.kind == EventKind.UPDATE_RESOURCES_START:
                starts[cid] = ev
            else:
                st = starts.pop(cid, None)
                if st is None:
                    continue
                secs = (ev.ts - st.ts).total_seconds() if ev.ts and st.ts else None
                out.append(Hold(cid, st.ts, ev.ts, secs, (st.ref, ev.ref), bool(ev.attrs.get("ok", True))))
        for cid, st in starts.items():
            secs = (last_ts - st.ts).total_seconds() if last_ts and st.ts else None
            out.append(Hold(cid, st.ts, None, secs, (st.ref,), None))
    out.sort(key=lambda h: (not h.open, -(h.seconds or 0.0)))
    return out


def _last_event_time(ctx: RuleContext) -> datetime | None:
    times = [e.ts for e in ctx.evidence.events if e.ts is not None]
    times += [r.ts for r in ctx.evidence.log_records if r.ts is not None]
    return max(times) if times else None


# ---------------------------------------------------------------------------------------
# Pressure


@dataclass(frozen=True, slots=True)
class Peak:
    value: float
    ref: Ref
    ts: datetime | None
    in_stall: bool | None  # True: during a known stall; None: cannot tell


def psi_io_peak(ctx: RuleContext, which: str = "full") -> Peak | None:
    """Highest node-level PSI io avg10 (`full` or `some`), preferring samples in a stall."""
    samples: list[PressureSample] = [
        p for p in ctx.evidence.pressure if p.resource == "io" and (p.scope in ("node", "", "/"))
    ]
    best: Peak | None = None
    for p in samples:
        val = p.full_avg10 if which == "full" else p.some_avg10
        if val is None:
            continue
        # avg60 is steadier; take the larger of 10 s and 60 s windows
        val60 = p.full_avg60 if which == "full" else p.some_avg60
        v = max(val, val60 or 0.0)
        peak = Peak(v, p.ref, p.ts, during_stall(ctx, p.ts))
        best = _better(best, peak)
    return best


def disk_samples(ctx: RuleContext) -> list[DiskSample]:
    """iostat-like samples: parsed iostat, else derived from consecutive /proc/diskstats."""

    def compute() -> list[DiskSample]:
        if ctx.evidence.disk_samples:
            return list(ctx.evidence.disk_samples)
        return derive_disk_samples(ctx.evidence.diskstats)

    return ctx.memo("disk_samples", compute)  # type: ignore[no-any-return]


def derive_disk_samples(stats: Iterable[Any]) -> list[DiskSample]:
    """iostat formulas (sysstat) over consecutive snapshots of the same device."""
    by_dev: dict[str, list[Any]] = {}
    for s in stats:
        if _is_partition_or_virtual(s.device):
            continue
        by_dev.setdefault(s.device, []).append(s)
    out: list[DiskSample] = []
    for dev, series in by_dev.items():
        series = [s for s in series if s.ts is not None]
        series.sort(key=lambda s: s.ts)
        for a, b in itertools.pairwise(series):
            dt = (b.ts - a.ts).total_seconds()
            if dt <= 0:
                continue
            dw = b.writes - a.writes
            dr = b.reads - a.reads
            util = min(100.0, (b.io_ticks_ms - a.io_ticks_ms) / (dt * 1000.0) * 100.0)
            w_await = (b.ms_writing - a.ms_writing) / dw if dw > 0 else None
            r_await = (b.ms_reading - a.ms_reading) / dr if dr > 0 else None
            out.append(
                DiskSample(
                    start=a.ts,
                    end=b.ts,
                    device=dev,
                    util=util,
                    r_await=r_await,
                    w_await=w_await,
                    w_per_s=dw / dt,
                    wkb_per_s=(b.sectors_written - a.sectors_written) * 512 / 1024 / dt,
                    aqu_sz=(b.weighted_ms - a.weighted_ms) / (dt * 1000.0),
                    ref=b.ref,
                )
            )
    return out


def _is_partition_or_virtual(dev: str) -> bool:
    if dev.startswith(("loop", "ram", "zram", "sr", "fd")):
        return True
    if dev.startswith(("nvme", "mmcblk")):
        return "p" in dev.split("n", 2)[-1] if dev.startswith("nvme") else "p" in dev[6:]
    if dev.startswith(("sd", "vd", "xvd", "hd")):
        return dev[-1].isdigit()
    return False


def disk_saturation(ctx: RuleContext) -> tuple[DiskSample, bool | None] | None:
    """The most saturated disk sample (util, then w_await), and whether it is in a stall."""
    best: tuple[float, DiskSample, bool | None] | None = None
    for s in disk_samples(ctx):
        score = s.util + min(100.0, (s.w_await or 0.0) / 10.0)
        inside = during_stall(ctx, s.end or s.start)
        if inside is False:
            score *= 0.5
        if best is None or score > best[0]:
            best = (score, s, inside)
    return (best[1], best[2]) if best else None


def dirty_peak(ctx: RuleContext) -> tuple[Meminfo, bool | None] | None:
    best: tuple[int, Meminfo, bool | None] | None = None
    for m in ctx.evidence.meminfo:
        v = m.dirty_kb + m.writeback_kb
        inside = during_stall(ctx, m.ts)
        if best is None or v > best[0]:
            best = (v, m, inside)
    return (best[1], best[2]) if best else None


def _better(a: Peak | None, b: Peak) -> Peak:
    if a is None:
        return b
    # a sample inside a stall beats a larger one outside
    ka = (a.in_stall is not False, a.value)
    kb = (b.in_stall is not False, b.value)
    return b if kb > ka else a


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


# ---------------------------------------------------------------------------------------
# Misc


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            return getattr(obj, n)
    return default


def _refs_of(obj: Any) -> tuple[Ref, ...]:
    refs: list[Ref] = []
    for name in ("refs", "evidence"):
        val = _attr(obj, name)
        if val:
            refs.extend(r for r in val if isinstance(r, Ref))
    for name in ("ref", "start_ref", "end_ref"):
        val = _attr(obj, name)
        if isinstance(val, Ref):
            refs.append(val)
    return tuple(refs)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


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
