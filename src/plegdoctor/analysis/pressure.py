"""Node pressure analysis: PSI peaks and high-I/O windows, disk figures, dirty memory, and
their correlation with PLEG gaps.

Public API (used by the diagnosis rules and reports):

    derive_disk_samples(diskstats) -> list[DiskSample]
        iostat-like figures from consecutive /proc/diskstats samples of each device
        (facts.md §9.2: util = d(io_ticks)/dt; w/s = d(writes)/dt; wkB/s = d(sectors
        written)*512/1024/dt; w_await = d(ms writing)/d(writes); aqu-sz = d(weighted ms)/dt).
    analyze_pressure(evidence, timeline=None, gaps=None, margin_s=30) -> PressureAnalysis
        `gaps` is a list of (start, end) datetimes; when omitted, `timeline.gaps` (objects with
        .start/.end, e.g. plegdoctor.analysis.pleg_timeline.PlegTimeline) is used.
    PressureAnalysis.io_peak(which) / worst_disk() / dirty_top() -> SamplePeak | None
        the figure a rule or a summary quotes, with whether it falls in (or within the margin
        of) a gap: True, False, or None when no gap has times (`placement`).

Thresholds (module constants) say what "high" means: PSI io some avg10 >= 20 % or full
avg10 >= 10 %; disk util >= 90 % or w_await >= 100 ms. They are judgement calls, not kernel
facts: a rule should quote the figures, not just the verdict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Generic, TypeVar

import msgspec

from plegdoctor.evidence import Evidence
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import DiskSample, DiskStat, Meminfo, PressureSample, Ref

IO_SOME_HIGH = 20.0  # % of time some task stalled on I/O (avg10)
IO_FULL_HIGH = 10.0  # % of time all non-idle tasks stalled on I/O (avg10)
DISK_UTIL_HIGH = 90.0
DISK_AWAIT_HIGH_MS = 100.0
DIRTY_HIGH_KB = 1024 * 1024  # Dirty + Writeback: 1 GiB, or 10 % of MemTotal (DIRTY_HIGH_SHARE)
DIRTY_HIGH_SHARE = 0.10
NODE_SCOPES = ("node", "/", "")  # /proc/pressure/*, or the root cgroup's *.pressure
PSI_WINDOW = timedelta(seconds=10)  # avg10 describes the 10 s before the sample
DEFAULT_MARGIN_S = 30.0

S = TypeVar("S", PressureSample, DiskSample, Meminfo)

_PARTITION = lazy_re(r"^(?P<disk>(?:nvme\d+n\d+|mmcblk\d+))p\d+$|^(?P<disk2>(?:sd|vd|xvd|hd)[a-z]+)\d+$")


def is_partition(device: str, devices: Iterable[str]) -> bool:
    """sda1 / nvme0n1p2 / vda1 when its whole disk is also present."""
    m = _PARTITION.match(device)
    if not m:
        return False
    disk = m.group("disk") or m.group("disk2")
    return disk in set(devices)


def derive_disk_samples(diskstats: Sequence[DiskStat]) -> list[DiskSample]:
    by_dev: dict[str, list[DiskStat]] = defaultdict(list)
    for d in diskstats:
        if d.ts is not None:
            by_dev[d.device].append(d)
    out: list[DiskSample] = []
    for device, stats in by_dev.items():
        stats.sort(key=lambda s: s.ts)  # type: ignore[arg-type,return-value]
        for a, b in pairwise(stats):
            assert a.ts is not None and b.ts is not None
            dt = (b.ts - a.ts).total_seconds()
            if dt <= 0:
                continue
            d_reads = b.reads - a.reads
            d_writes = b.writes - a.writes
            d_ticks = b.io_ticks_ms - a.io_ticks_ms
            d_wsect = b.sectors_written - a.sectors_written
            if min(d_reads, d_writes, d_ticks, d_wsect) < 0:
                continue  # counter reset (reboot, device re-added)
            d_ms_r = b.ms_reading - a.ms_reading
            d_ms_w = b.ms_writing - a.ms_writing
            out.append(
                DiskSample(
                    start=a.ts,
                    end=b.ts,
                    device=device,
                    util=min(100.0, d_ticks / (dt * 1000.0) * 100.0),
                    r_await=(d_ms_r / d_reads) if d_reads > 0 else None,
                    w_await=(d_ms_w / d_writes) if d_writes > 0 else None,
                    w_per_s=d_writes / dt,
                    wkb_per_s=d_wsect * 512 / 1024 / dt,
                    aqu_sz=max(0.0, (b.weighted_ms - a.weighted_ms) / (dt * 1000.0)),
                    ref=b.ref,
                )
            )
    out.sort(key=lambda s: (s.end.timestamp() if s.end else 0.0, s.device))
    return out


class ResourcePeak(msgspec.Struct, frozen=True):
    resource: str
    scope: str
    samples: int
    max_some_avg10: float
    max_full_avg10: float | None
    at: datetime | None
    ref: Ref

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "scope": self.scope,
            "samples": self.samples,
            "max_some_avg10": self.max_some_avg10,
            "max_full_avg10": self.max_full_avg10,
            "at": self.at.isoformat() if self.at else None,
            "evidence": [self.ref.to_json()],
        }


class PressureWindow(msgspec.Struct, frozen=True):
    """A run of consecutive high io-pressure samples of one scope."""

    scope: str
    start: datetime
    end: datetime
    peak_some_avg10: float
    peak_full_avg10: float | None
    refs: tuple[Ref, ...]  # first and peak samples

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class DirtyPeak(msgspec.Struct, frozen=True):
    max_dirty_kb: int
    max_writeback_kb: int
    at: datetime | None
    ref: Ref
    samples: int


def dirty_high(m: Meminfo) -> bool:
    """A writeback backlog that makes every fsync/syncfs on the disk wait: >= 1 GiB of Dirty +
    Writeback, or >= 10 % of MemTotal."""
    total = m.dirty_kb + m.writeback_kb
    return total >= DIRTY_HIGH_KB or bool(m.mem_total_kb and total >= DIRTY_HIGH_SHARE * m.mem_total_kb)


class SamplePeak(msgspec.Struct, Generic[S], frozen=True):
    """One sample singled out as the figure to quote.

    `value` is what it was ranked by (PSI %, disk util %, dirty + writeback kB); `window`
    names the PSI average quoted ("avg10"/"avg60", empty otherwise); `in_gap` says whether the
    sample falls in or near a PLEG gap (None: no gap with times, or the sample has no time).
    """

    value: float
    sample: S
    in_gap: bool | None
    window: str = ""

    @property
    def ref(self) -> Ref:
        return self.sample.ref


class GapCorrelation(msgspec.Struct, frozen=True):
    """Node figures inside (`inside`) and around (within the margin, `near`) one PLEG gap."""

    start: datetime
    end: datetime
    pressure_inside: tuple[PressureSample, ...]
    pressure_near: tuple[PressureSample, ...]
    disks_inside: tuple[DiskSample, ...]
    disks_near: tuple[DiskSample, ...]
    meminfo_inside: tuple[Meminfo, ...]
    meminfo_near: tuple[Meminfo, ...]
    max_io_some_avg10: float | None
    max_io_full_avg10: float | None
    max_util: float | None
    max_w_await: float | None
    max_dirty_kb: int | None

    @property
    def io_high(self) -> bool:
        return (self.max_io_some_avg10 or 0) >= IO_SOME_HIGH or (self.max_io_full_avg10 or 0) >= IO_FULL_HIGH

    @property
    def disk_saturated(self) -> bool:
        return (self.max_util or 0) >= DISK_UTIL_HIGH or (self.max_w_await or 0) >= DISK_AWAIT_HIGH_MS

    @property
    def evidence(self) -> tuple[Ref, ...]:
        """The worst samples (io PSI, disk, dirty) with their lines, for a report."""
        refs: list[Ref] = []
        io = [p for p in self.pressure_inside or self.pressure_near if p.resource == "io"]
        if io:
            refs.append(max(io, key=lambda p: (p.full_avg10 or 0, p.some_avg10)).ref)
        disks = self.disks_inside or self.disks_near
        if disks:
            refs.append(max(disks, key=lambda d: (d.util, d.w_await or 0)).ref)
        mem = self.meminfo_inside or self.meminfo_near
        if mem:
            refs.append(max(mem, key=lambda m: m.dirty_kb).ref)
        return tuple(refs)


class PressureAnalysis(msgspec.Struct, frozen=True):
    peaks: tuple[ResourcePeak, ...]
    io_windows: tuple[PressureWindow, ...]
    disk_samples: tuple[DiskSample, ...]  # from iostat and derived from diskstats, time order
    busiest: tuple[DiskSample, ...]  # worst sample per whole disk, worst first
    dirty: DirtyPeak | None
    gaps: tuple[GapCorrelation, ...]
    notes: tuple[str, ...] = ()
    windows: tuple[tuple[datetime, datetime], ...] = ()  # the gaps correlated, (start, end)
    margin_s: float = DEFAULT_MARGIN_S
    io_samples: tuple[PressureSample, ...] = ()  # node-level io PSI samples
    meminfo: tuple[Meminfo, ...] = ()

    def peak(self, resource: str, scope: str = "node") -> ResourcePeak | None:
        return next((p for p in self.peaks if p.resource == resource and p.scope == scope), None)

    def placement(self, start: datetime | None, end: datetime | None = None) -> bool | None:
        """Whether [start, end] overlaps a gap widened by the margin: True/False, or None when
        no gap has times or the span has none."""
        lo, hi = start or end, end or start
        if not self.windows or lo is None or hi is None:
            return None
        margin = timedelta(seconds=self.margin_s)
        return any(_overlaps(lo, hi, a - margin, b + margin) for a, b in self.windows)

    def io_peak(self, which: str = "full") -> SamplePeak[PressureSample] | None:
        """The highest node-level io PSI of `which` ("full" or "some"), taking the larger of
        avg10 and avg60 (avg60 is steadier); a sample in or near a gap beats a larger one
        outside every gap."""
        best: tuple[tuple[bool, float], SamplePeak[PressureSample]] | None = None
        for p in self.io_samples:
            v10, v60 = (p.full_avg10, p.full_avg60) if which == "full" else (p.some_avg10, p.some_avg60)
            if v10 is None:
                continue
            value, window = (v60, "avg60") if v60 is not None and v60 > v10 else (v10, "avg10")
            placed = self.placement(p.ts - PSI_WINDOW if p.ts else None, p.ts)
            key = (placed is not False, value)
            if best is None or key > best[0]:
                best = (key, SamplePeak(value, p, placed, window))
        return best[1] if best else None

    def worst_disk(self) -> SamplePeak[DiskSample] | None:
        """The most saturated whole-disk interval (utilisation plus write latency / 10, capped at
        100); one outside every gap counts half. Partitions of a listed disk and iostat's
        since-boot first report are left out."""
        devices = {d.device for d in self.disk_samples}
        best: tuple[float, SamplePeak[DiskSample]] | None = None
        for d in self.disk_samples:
            if d.start is None or is_partition(d.device, devices):
                continue
            placed = self.placement(d.start, d.end)
            score = d.util + min(100.0, (d.w_await or 0.0) / 10.0)
            if placed is False:
                score *= 0.5
            if best is None or score > best[0]:
                best = (score, SamplePeak(d.util, d, placed))
        return best[1] if best else None

    def dirty_top(self) -> SamplePeak[Meminfo] | None:
        """The meminfo sample with the most Dirty + Writeback (kB)."""
        if not self.meminfo:
            return None
        m = max(self.meminfo, key=lambda x: x.dirty_kb + x.writeback_kb)
        return SamplePeak(float(m.dirty_kb + m.writeback_kb), m, self.placement(m.ts))

    @property
    def io_saturated(self) -> bool:
        io = self.peak("io")
        disk = self.busiest[0] if self.busiest else None
        return bool(
            (io and (io.max_some_avg10 >= IO_SOME_HIGH or (io.max_full_avg10 or 0) >= IO_FULL_HIGH))
            or (disk and (disk.util >= DISK_UTIL_HIGH or (disk.w_await or 0) >= DISK_AWAIT_HIGH_MS))
        )


def _peaks(samples: Sequence[PressureSample]) -> list[ResourcePeak]:
    groups: dict[tuple[str, str], list[PressureSample]] = defaultdict(list)
    for s in samples:
        groups[(s.resource, s.scope)].append(s)
    out = []
    for (res, scope), items in sorted(groups.items()):
        top = max(items, key=lambda s: (s.full_avg10 or 0, s.some_avg10))
        fulls = [s.full_avg10 for s in items if s.full_avg10 is not None]
        out.append(
            ResourcePeak(
                resource=res,
                scope=scope,
                samples=len(items),
                max_some_avg10=max(s.some_avg10 for s in items),
                max_full_avg10=max(fulls) if fulls else None,
                at=top.ts,
                ref=top.ref,
            )
        )
    return out


def _high(s: PressureSample) -> bool:
    return s.some_avg10 >= IO_SOME_HIGH or (s.full_avg10 or 0) >= IO_FULL_HIGH


def _io_windows(samples: Sequence[PressureSample]) -> list[PressureWindow]:
    by_scope: dict[str, list[PressureSample]] = defaultdict(list)
    for s in samples:
        if s.resource == "io" and s.ts is not None:
            by_scope[s.scope].append(s)
    windows: list[PressureWindow] = []
    for scope, items in by_scope.items():
        items.sort(key=lambda s: s.ts)  # type: ignore[arg-type,return-value]
        run: list[PressureSample] = []
        candidates: list[PressureSample | None] = [*items, None]  # None flushes the last run
        for cand in candidates:
            if cand is not None and _high(cand):
                run.append(cand)
                continue
            if run:
                top = max(run, key=lambda x: (x.full_avg10 or 0, x.some_avg10))
                fulls = [x.full_avg10 for x in run if x.full_avg10 is not None]
                assert run[0].ts is not None and run[-1].ts is not None
                windows.append(
                    PressureWindow(
                        scope=scope,
                        start=run[0].ts - PSI_WINDOW,
                        end=run[-1].ts,
                        peak_some_avg10=max(x.some_avg10 for x in run),
                        peak_full_avg10=max(fulls) if fulls else None,
                        refs=tuple(dict.fromkeys((run[0].ref, top.ref))),
                    )
                )
                run = []
    windows.sort(key=lambda w: w.start)
    return windows


def _overlaps(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> bool:
    return a0 <= b1 and b0 <= a1


def _gap_list(timeline: Any, gaps: Sequence[tuple[datetime, datetime]] | None) -> list[tuple[datetime, datetime]]:
    if gaps is not None:
        return [(g[0], g[1]) for g in gaps]
    if timeline is not None:
        return [(g.start, g.end) for g in getattr(timeline, "gaps", ()) if g.start and g.end]
    return []


def _correlate(
    start: datetime,
    end: datetime,
    pressure: Sequence[PressureSample],
    disks: Sequence[DiskSample],
    mem: Sequence[Meminfo],
    margin: timedelta,
) -> GapCorrelation:
    lo, hi = start - margin, end + margin
    p_in, p_near, d_in, d_near, m_in, m_near = [], [], [], [], [], []
    for p in pressure:
        if p.ts is None:
            continue
        if _overlaps(p.ts - PSI_WINDOW, p.ts, start, end):
            p_in.append(p)
        elif _overlaps(p.ts - PSI_WINDOW, p.ts, lo, hi):
            p_near.append(p)
    for d in disks:
        if d.end is None:
            continue
        d0 = d.start or d.end
        if _overlaps(d0, d.end, start, end):
            d_in.append(d)
        elif _overlaps(d0, d.end, lo, hi):
            d_near.append(d)
    for m in mem:
        if m.ts is None:
            continue
        if start <= m.ts <= end:
            m_in.append(m)
        elif lo <= m.ts <= hi:
            m_near.append(m)
    scope_p = p_in or p_near
    io = [p for p in scope_p if p.resource == "io" and p.scope == "node"] or [p for p in scope_p if p.resource == "io"]
    fulls = [p.full_avg10 for p in io if p.full_avg10 is not None]
    disks_for_max = d_in or d_near
    awaits = [d.w_await for d in disks_for_max if d.w_await is not None]
    mems = m_in or m_near
    return GapCorrelation(
        start=start,
        end=end,
        pressure_inside=tuple(p_in),
        pressure_near=tuple(p_near),
        disks_inside=tuple(d_in),
        disks_near=tuple(d_near),
        meminfo_inside=tuple(m_in),
        meminfo_near=tuple(m_near),
        max_io_some_avg10=max((p.some_avg10 for p in io), default=None),
        max_io_full_avg10=max(fulls, default=None),
        max_util=max((d.util for d in disks_for_max), default=None),
        max_w_await=max(awaits, default=None),
        max_dirty_kb=max((m.dirty_kb for m in mems), default=None),
    )


def analyze_pressure(
    evidence: Evidence,
    timeline: Any = None,
    gaps: Sequence[tuple[datetime, datetime]] | None = None,
    margin_s: float = DEFAULT_MARGIN_S,
) -> PressureAnalysis:
    notes: list[str] = []
    derived = derive_disk_samples(evidence.diskstats)
    if evidence.diskstats and not derived:
        notes.append("diskstats without two timed samples of a device: no rates derived")
    disks = sorted(
        [*evidence.disk_samples, *derived],
        key=lambda d: (d.end.timestamp() if d.end else float("-inf"), d.device),
    )
    devices = {d.device for d in disks}
    whole = [d for d in disks if not is_partition(d.device, devices) and d.start is not None]
    worst_per_dev: dict[str, DiskSample] = {}
    for d in whole:
        cur = worst_per_dev.get(d.device)
        if cur is None or (d.util, d.w_await or 0) > (cur.util, cur.w_await or 0):
            worst_per_dev[d.device] = d
    busiest = tuple(sorted(worst_per_dev.values(), key=lambda d: (d.util, d.w_await or 0), reverse=True))

    dirty = None
    if evidence.meminfo:
        top = max(evidence.meminfo, key=lambda m: m.dirty_kb + m.writeback_kb)
        dirty = DirtyPeak(
            max_dirty_kb=max(m.dirty_kb for m in evidence.meminfo),
            max_writeback_kb=max(m.writeback_kb for m in evidence.meminfo),
            at=top.ts,
            ref=top.ref,
            samples=len(evidence.meminfo),
        )
    if any(p.ts is None for p in evidence.pressure):
        notes.append("some PSI samples have no time: counted in peaks, not placed on the timeline")
    margin = timedelta(seconds=margin_s)
    windows = tuple(_gap_list(timeline, gaps))
    correlations = tuple(_correlate(s, e, evidence.pressure, whole, evidence.meminfo, margin) for s, e in windows)
    return PressureAnalysis(
        peaks=tuple(_peaks(evidence.pressure)),
        io_windows=tuple(_io_windows(evidence.pressure)),
        disk_samples=tuple(disks),
        busiest=busiest,
        dirty=dirty,
        gaps=correlations,
        notes=tuple(notes),
        windows=windows,
        margin_s=margin_s,
        io_samples=tuple(p for p in evidence.pressure if p.resource == "io" and p.scope in NODE_SCOPES),
        meminfo=tuple(evidence.meminfo),
    )
