"""PLEG timeline: relist ticks, gaps, unhealthy windows and runtime intervals on one axis.

`build_timeline(evidence)` reads only parsed evidence (RelistSeries and Events). Gaps are
intervals between consecutive relist ticks at least `gap_seconds` long (3 s by default:
the relist period is 1 s, so anything past 3 s means a relist took over 2 s). Unhealthy
windows come from PLEG_UNHEALTHY events ("PLEG is not healthy: pleg was last seen active
X ago"): each one also says when relisting stopped (event time - X). containerd events
become intervals: UpdateContainerResources start/end per container (how long the CRI
status write lock was held; an unmatched start is "still open at end of log"), PullImage
durations, StopContainer/StopPodSandbox durations; TaskExit and task delete failures are
listed as points. `PlegTimeline.to_json()` is the `pleg` object of pleg-doctor/diagnosis/v1.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from array import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from plegdoctor.evidence import Evidence
from plegdoctor.model import Event, EventKind, Ref
from plegdoctor.native import fast as _fast

DEFAULT_GAP_SECONDS = 3.0
WINDOW_JOIN_SECONDS = 60.0  # PLEG_UNHEALTHY lines closer than this belong to one window
SHORT_INTERVAL_SECONDS = 0.5  # half the relist period: one relist loop never logs ticks closer


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat()


def _dt(epoch: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=epoch)


class Gap(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime
    seconds: float
    start_ref: Ref
    end_ref: Ref | None  # None when relisting never resumed before the end of the log
    open: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "seconds": round(self.seconds, 6),
            "evidence": [self.start_ref.to_json()] + ([self.end_ref.to_json()] if self.end_ref else []),
        }
        if self.open:
            out["open"] = True
        return out


class UnhealthyWindow(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime
    max_last_seen_seconds: float | None
    relisting_stopped_at: datetime | None  # end - last_seen of the latest event that says so
    events: int
    refs: tuple[Ref, ...]  # first and last line

    def to_json(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "max_last_seen_seconds": None
            if self.max_last_seen_seconds is None
            else round(self.max_last_seen_seconds, 3),
            "relisting_stopped_at": _iso(self.relisting_stopped_at),
            "events": self.events,
            "evidence": [r.to_json() for r in self.refs],
        }


class Interval(msgspec.Struct, frozen=True):
    """A runtime operation with a start and (maybe) an end on the timeline."""

    kind: str  # update-resources | pull | stop-container | stop-sandbox
    key: str  # container id, image or sandbox id
    process: str
    start: datetime | None
    end: datetime | None
    seconds: float | None
    ok: bool | None  # None while open
    open: bool  # no end before the end of the log
    start_ref: Ref | None
    end_ref: Ref | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.key,
            "process": self.process,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "seconds": None if self.seconds is None else round(self.seconds, 6),
            "ok": self.ok,
            "open": self.open,
            "evidence": [r.to_json() for r in (self.start_ref, self.end_ref) if r is not None],
        }


@dataclass
class PlegTimeline:
    relists: int = 0
    first: datetime | None = None
    last: datetime | None = None
    interval_p50: float | None = None
    interval_p99: float | None = None
    interval_max: float | None = None
    gap_seconds: float = DEFAULT_GAP_SECONDS
    gaps: list[Gap] = field(default_factory=list)
    unhealthy: list[UnhealthyWindow] = field(default_factory=list)
    relist_errors: int = 0
    cri_deadline_exceeded: int = 0
    cri_failures_by_method: dict[str, int] = field(default_factory=dict)
    node_not_ready_transitions: int = 0
    evented_pleg_fallbacks: int = 0
    update_resources: list[Interval] = field(default_factory=list)
    pulls: list[Interval] = field(default_factory=list)
    stops: list[Interval] = field(default_factory=list)
    task_exit_failures: list[Event] = field(default_factory=list)
    task_delete_failures: list[Event] = field(default_factory=list)
    log_end: datetime | None = None
    # Not in to_json: the intervals between consecutive ticks in file order that are shorter
    # than SHORT_INTERVAL_SECONDS but not zero, what two interleaved relist loops leave (rule
    # PD131 reads it); None until ticks are counted.
    short_intervals: int | None = field(default=None, repr=False, compare=False)

    @property
    def max_gap_seconds(self) -> float | None:
        if self.gaps:
            return max(g.seconds for g in self.gaps)
        return self.interval_max

    def to_json(self) -> dict[str, Any]:
        mg = self.max_gap_seconds
        return {
            "relists": self.relists,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "max_gap_seconds": None if mg is None else round(mg, 6),
            "gap_threshold_seconds": self.gap_seconds,
            "gaps": [g.to_json() for g in self.gaps],
            "unhealthy": [w.to_json() for w in self.unhealthy],
            "interval_p50_seconds": _round(self.interval_p50),
            "interval_p99_seconds": _round(self.interval_p99),
            "interval_max_seconds": _round(self.interval_max),
            "relist_errors": self.relist_errors,
            "cri_deadline_exceeded": self.cri_deadline_exceeded,
            "cri_failures_by_method": dict(sorted(self.cri_failures_by_method.items())),
            "node_not_ready_transitions": self.node_not_ready_transitions,
            "evented_pleg_fallbacks": self.evented_pleg_fallbacks,
            "update_resources": [i.to_json() for i in self.update_resources],
            "pulls": [i.to_json() for i in self.pulls],
            "stops": [i.to_json() for i in self.stops],
            "task_exit_failures": [_event_json(e) for e in self.task_exit_failures],
            "task_delete_failures": [_event_json(e) for e in self.task_delete_failures],
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def _event_json(e: Event) -> dict[str, Any]:
    attrs = {k: v for k, v in e.attrs.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return {"time": _iso(e.ts), "kind": str(e.kind), "process": e.process, "attrs": attrs, "evidence": e.ref.to_json()}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def build_timeline(evidence: Evidence, gap_seconds: float = DEFAULT_GAP_SECONDS) -> PlegTimeline:
    tl = PlegTimeline(gap_seconds=gap_seconds)
    series = evidence.relists
    ts = series.ts
    n = len(ts)
    tl.relists = n
    stamps, events = timed_events(evidence)
    last_event = stamps[-1] if stamps else None
    by_kind: dict[str, list[Event]] = defaultdict(list)  # each kind's events, in time order
    for e in events:
        by_kind[e.kind].append(e)
    if n:
        # Ticks are in file order, which is time order but for clock steps: the common
        # case takes the intervals and the same sorted (`_intervals_of`) for the percentiles
        # and the short intervals, and looks for gaps only when the longest interval is one.
        intervals, in_order = _intervals_of(ts)
        order: list[int] | range
        if in_order is not None:
            ordered = in_order
            order = range(n)
            tl.short_intervals = bisect.bisect_left(ordered, SHORT_INTERVAL_SECONDS) - bisect.bisect_right(ordered, 0.0)
            gap = float(gap_seconds)
            if ordered and ordered[-1] >= gap:
                for i in itertools.compress(itertools.count(), map(gap.__le__, intervals)):
                    tl.gaps.append(Gap(_dt(ts[i]), _dt(ts[i + 1]), intervals[i], series.ref(i), series.ref(i + 1)))
        else:
            tl.short_intervals = sum(1 for d in intervals if 0.0 < d < SHORT_INTERVAL_SECONDS)
            order = sorted(range(n), key=ts.__getitem__)
            steps = []  # the intervals in time order
            prev = order[0]
            for i in order[1:]:
                d = ts[i] - ts[prev]
                steps.append(d)
                if d >= gap_seconds:
                    tl.gaps.append(Gap(_dt(ts[prev]), _dt(ts[i]), d, series.ref(prev), series.ref(i)))
                prev = i
            ordered = sorted(steps)
        first_i, last_i = order[0], order[-1]
        tl.first = _dt(ts[first_i])
        tl.last = _dt(ts[last_i])
        tl.interval_p50 = percentile(ordered, 50)
        tl.interval_p99 = percentile(ordered, 99)
        tl.interval_max = ordered[-1] if ordered else None
        # Relisting that never resumed: later kubelet evidence shows time went on.
        last = tl.last
        end = next((e.ts for e in reversed(events) if e.process == "kubelet"), None)  # the last kubelet event's
        if (
            end is not None
            and (end - last).total_seconds() >= gap_seconds
            and any(e.ts is not None and e.ts > last for e in by_kind.get(EventKind.PLEG_UNHEALTHY, ()))
        ):
            tl.gaps.append(Gap(last, end, (end - last).total_seconds(), series.ref(last_i), None, open=True))
    tl.log_end = max((t for t in (tl.last, last_event) if t is not None), default=None)
    _unhealthy(tl, by_kind.get(EventKind.PLEG_UNHEALTHY, []))
    _counts(tl, events, by_kind)
    # events over the per-kind cap (evidence.EventList) were counted, not kept
    dropped = getattr(evidence.events, "dropped", {})
    tl.relist_errors += dropped[EventKind.RELIST_ERROR].count if EventKind.RELIST_ERROR in dropped else 0
    tl.evented_pleg_fallbacks += (
        dropped[EventKind.EVENTED_PLEG_FALLBACK].count if EventKind.EVENTED_PLEG_FALLBACK in dropped else 0
    )
    if any(k in by_kind for k in _PAIRS):
        _intervals(tl, [e for e in events if e.kind in _PAIRS])
    return tl


def _intervals_of(ts: Sequence[float]) -> tuple[Sequence[float], Sequence[float] | None]:
    """The intervals between consecutive tick times, and the same sorted when none is
    negative (the ticks are in time order; None otherwise). The compiled `intervals`
    (src/plegdoctor/_fastscan_intervals.c) answers when every interval is a plain
    non-negative number; for any other series (and without the compiled module) this
    Python decides, as it always did."""
    if _fast is not None and len(ts) >= 2 and isinstance(ts, array) and ts.typecode == "d":
        pair = _fast.intervals(ts)
        if pair is not None:
            intervals, ordered = array("d"), array("d")
            intervals.frombytes(pair[0])
            ordered.frombytes(pair[1])
            return intervals, ordered
    diffs = list(map(operator.sub, itertools.islice(ts, 1, None), ts))
    return diffs, (sorted(diffs) if not diffs or min(diffs) >= 0 else None)


def _unhealthy(tl: PlegTimeline, events: list[Event]) -> None:
    """Windows of PLEG_UNHEALTHY events (`events`: those, in time order)."""
    group: list[Event] = []

    def close() -> None:
        if not group:
            return
        seen = [e.attrs.get("last_seen_seconds") for e in group]
        values = [float(v) for v in seen if isinstance(v, (int, float))]
        stopped = None
        for e in reversed(group):
            v = e.attrs.get("last_seen_seconds")
            if isinstance(v, (int, float)) and e.ts is not None:
                stopped = e.ts - timedelta(seconds=float(v))
                break
        tl.unhealthy.append(
            UnhealthyWindow(
                group[0].ts,  # type: ignore[arg-type]
                group[-1].ts,  # type: ignore[arg-type]
                max(values) if values else None,
                stopped,
                len(group),
                (group[0].ref, group[-1].ref) if len(group) > 1 else (group[0].ref,),
            )
        )
        group.clear()

    for e in events:
        if e.ts is None:
            continue
        if group and (e.ts - group[-1].ts).total_seconds() > WINDOW_JOIN_SECONDS:  # type: ignore[operator]
            close()
        group.append(e)
    close()


def _counts(tl: PlegTimeline, events: list[Event], by_kind: dict[str, list[Event]]) -> None:
    """Counts and lists of the timeline's point events (`events`: all of them in time order,
    `by_kind`: the same, per kind): each kind is read from its own list, not by testing the
    kind of every event."""
    tl.relist_errors += len(by_kind.get(EventKind.RELIST_ERROR, ()))
    tl.evented_pleg_fallbacks += len(by_kind.get(EventKind.EVENTED_PLEG_FALLBACK, ()))
    tl.task_exit_failures.extend(by_kind.get(EventKind.TASK_EXIT_FAILED, ()))
    tl.task_delete_failures.extend(by_kind.get(EventKind.TASK_DELETE_FAILED, ()))
    by_method: dict[str, int] = defaultdict(int)
    deadline = 0
    for e in by_kind.get(EventKind.CRI_CALL_FAILED, ()):
        attrs = e.attrs
        by_method[str(attrs.get("method") or "?")] += 1
        if attrs.get("code") == "DeadlineExceeded":
            deadline += 1
    tl.cri_deadline_exceeded += deadline
    tl.cri_failures_by_method = dict(by_method)
    if EventKind.NODE_NOT_READY not in by_kind:
        return  # a NODE_READY alone changes no count
    not_ready = False
    last_nr: datetime | None = None
    for e in [e for e in events if e.kind in _READINESS]:  # in time order: a NODE_READY ends a not-ready spell
        if e.kind == EventKind.NODE_NOT_READY:
            # "Node became not ready" and event="NodeNotReady" describe one transition
            if not not_ready and not (last_nr and e.ts and (e.ts - last_nr).total_seconds() < 5):
                tl.node_not_ready_transitions += 1
            not_ready = True
            last_nr = e.ts
        else:
            not_ready = False


_READINESS = frozenset({EventKind.NODE_NOT_READY, EventKind.NODE_READY})


_PAIRS = {
    EventKind.UPDATE_RESOURCES_START: ("update-resources", "container_id", True),
    EventKind.UPDATE_RESOURCES_END: ("update-resources", "container_id", False),
    EventKind.PULL_START: ("pull", "image", True),
    EventKind.PULL_END: ("pull", "image", False),
    EventKind.STOP_CONTAINER_START: ("stop-container", "container_id", True),
    EventKind.STOP_CONTAINER_END: ("stop-container", "container_id", False),
    EventKind.STOP_SANDBOX_START: ("stop-sandbox", "container_id", True),
    EventKind.STOP_SANDBOX_END: ("stop-sandbox", "container_id", False),
}


def _intervals(tl: PlegTimeline, events: list[Event]) -> None:
    open_ops: dict[tuple[str, str], list[Event]] = defaultdict(list)
    done: list[Interval] = []
    for e in events:
        spec = _PAIRS.get(e.kind)
        if spec is None:
            continue
        kind, key_attr, is_start = spec
        key = str(e.attrs.get(key_attr) or "?")
        if is_start:
            open_ops[(kind, key)].append(e)
            continue
        starts = open_ops.get((kind, key))
        start = starts.pop(0) if starts else None
        secs = (e.ts - start.ts).total_seconds() if start is not None and start.ts and e.ts else None
        done.append(
            Interval(
                kind,
                key,
                e.process,
                start.ts if start else None,
                e.ts,
                secs,
                bool(e.attrs.get("ok", True)),
                False,
                start.ref if start else None,
                e.ref,
            )
        )
    for (kind, key), starts in open_ops.items():
        for s in starts:
            secs = (tl.log_end - s.ts).total_seconds() if tl.log_end and s.ts else None
            done.append(Interval(kind, key, s.process, s.ts, None, secs, None, True, s.ref, None))
    done.sort(key=lambda i: i.start or i.end or datetime.min.replace(tzinfo=UTC))
    for i in done:
        if i.kind == "update-resources":
            tl.update_resources.append(i)
        elif i.kind == "pull":
            tl.pulls.append(i)
        else:
            tl.stops.append(i)


def events_around(
    evidence: Evidence,
    start: datetime,
    end: datetime,
    margin_seconds: float = 5.0,
    timeline: PlegTimeline | None = None,
    ordered: TimedEvents | None = None,
) -> dict[str, Any]:
    """What the runtime was doing meanwhile: events inside [start - margin, end + margin]
    (time-ordered) and the runtime intervals that overlap [start, end]. `ordered`:
    `timed_events(evidence)`, for a caller that asks about many windows (a bisection each
    instead of a walk over every event)."""
    lo = start - timedelta(seconds=margin_seconds)
    hi = end + timedelta(seconds=margin_seconds)
    stamps, evs = ordered if ordered is not None else timed_events(evidence)
    inside = evs[bisect.bisect_left(stamps, lo) : bisect.bisect_right(stamps, hi)]
    overlapping: list[Interval] = []
    if timeline is not None:
        for i in timeline.update_resources + timeline.pulls + timeline.stops:
            s = i.start or i.end
            e = i.end or timeline.log_end or s
            if s is not None and e is not None and s <= end and e >= start:
                overlapping.append(i)
    return {"events": inside, "intervals": overlapping}


TimedEvents = tuple[list[datetime], list[Event]]


def timed_events(evidence: Evidence) -> TimedEvents:
    """The events that have a time, stably sorted by it (evidence order among equal times),
    and their times: what `events_around` slices."""
    evs = sorted((e for e in evidence.events if e.ts is not None), key=_TS)
    return [e.ts for e in evs], evs  # type: ignore[misc]


_TS = operator.attrgetter("ts")


def _short_id(value: Any) -> str:
    text = str(value or "")
    return text[:13] if len(text) == 64 else text


def summarize_event(kind: str, attrs: dict[str, Any]) -> str:
    """One line saying what a timeline event or interval is, for 'meanwhile' lists."""
    cid = _short_id(attrs.get("container_id") or attrs.get("id"))
    err = str(attrs.get("error") or "")
    if len(err) > 120:
        err = err[:117] + "..."
    texts = {
        "task-exit-failed": f"TaskExit handling failed for {cid}: {err}",
        "task-delete-failed": f"task delete failed for {cid}: {err}",
        "update-resources-start": f"UpdateContainerResources started for {cid}",
        "update-resources-end": f"UpdateContainerResources ended for {cid}",
        "update-resources": f"UpdateContainerResources for {cid}",
        "pull-start": f"PullImage started: {attrs.get('image', '')}",
        "pull-end": f"PullImage ended: {attrs.get('image', '')}",
        "pull": f"PullImage {attrs.get('id', '')}",
        "stop-container": f"StopContainer {cid}",
        "stop-sandbox": f"StopPodSandbox {cid}",
        "runtime-error": str(attrs.get("msg") or "error") + (f": {err}" if err else ""),
        "cri-call-failed": f"kubelet: {attrs.get('method', 'CRI call')} failed ({attrs.get('code', '')})",
        "relist-error": "kubelet: GenericPLEG: Unable to retrieve pods",
        "goroutine-dump": "goroutine dump logged",
        "hung-task": f"kernel: hung task {attrs.get('comm', '')}",
    }
    return texts.get(kind, kind)
