"""The series a picture of the incident draws, on one time axis (epoch seconds, UTC).

`build_series(evidence, timeline)` gives a bounded, JSON-ready dict for the HTML report:
relist ticks, relist gaps and PLEG-unhealthy windows, runtime operations as intervals
(UpdateContainerResources, pulls, stops, the stalled CRI call a capture recorded), point
events (TaskExit failures, hung tasks, CRI failures, ...) and sampled lanes (PSI io/memory
some+full, disk util / write await / writes per second, Dirty/Writeback). Every mark keeps
the evidence it comes from as "path:line: text", so a hover can quote it.

Bounds: ticks, points per line and events are decimated to fixed caps (the counts before
decimation are kept), so a 24 h journal or a week of samples stays a few hundred KB.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from plegdoctor.model import DiskSample, Event, Ref

MAX_TICKS = 3000
MAX_POINTS = 1200  # per line: min and max of MAX_POINTS // 2 buckets
MAX_EVENTS = 300
MAX_INTERVALS = 200
MAX_DEVICES = 3  # disks drawn: the busiest
# numerous kinds: kept near a gap first, then evenly
_COMMON = {"cri-call-failed", "skipping-pod-sync", "runtime-error", "container-finished", "dockerd-error"}
_NEAR = 30.0  # seconds around a gap or unhealthy window that count as "near"


def _epoch(ts: datetime | None) -> float | None:
    return None if ts is None else round(ts.timestamp(), 3)


QUOTE = 220  # characters of a line a mark quotes (the report's tables quote it whole)


def cite(ref: Ref | None) -> str:
    """A mark's evidence: `path:line: text` (the text cut at QUOTE characters)."""
    if ref is None:
        return ""
    text = ref.text if len(ref.text) <= QUOTE else ref.text[: QUOTE - 3] + "..."
    return f"{ref.path}:{ref.line}: {text}" if text else f"{ref.path}:{ref.line}"


def _where(ref: Ref) -> str:
    return f"{ref.path}:{ref.line}"


def decimate(points: Sequence[tuple[float, float, str]], cap: int = MAX_POINTS) -> list[tuple[float, float, str]]:
    """At most `cap` points of a time-ordered line: each of cap/2 equal time buckets keeps
    its lowest and highest point, so a spike survives (the min-max rule of plotting)."""
    if len(points) <= cap:
        return list(points)
    t0, t1 = points[0][0], points[-1][0]
    n = max(1, cap // 2)
    width = (t1 - t0) / n or 1.0
    lo: dict[int, tuple[float, float, str]] = {}
    hi: dict[int, tuple[float, float, str]] = {}
    for p in points:
        b = min(n - 1, int((p[0] - t0) / width))
        if b not in lo or p[1] < lo[b][1]:
            lo[b] = p
        if b not in hi or p[1] > hi[b][1]:
            hi[b] = p
    keep = {id(p): p for p in (*lo.values(), *hi.values())}
    return sorted(keep.values(), key=lambda p: p[0])


def _line(name: str, points: Iterable[tuple[float | None, float | None, Ref]]) -> dict[str, Any] | None:
    pts = sorted((t, v, _where(r)) for t, v, r in points if t is not None and v is not None)
    if not pts:
        return None
    total = len(pts)
    kept = decimate(pts)
    return {
        "name": name,
        "t": [p[0] for p in kept],
        "v": [round(p[1], 3) for p in kept],
        "refs": [p[2] for p in kept],
        "samples": total,
    }


def _lane(
    lane_id: str, label: str, unit: str, lines: list[dict[str, Any] | None], fixed_max: float | None = None
) -> dict[str, Any] | None:
    present = [ln for ln in lines if ln is not None]
    if not present:
        return None
    top = max((max(ln["v"]) for ln in present), default=0.0)
    return {
        "id": lane_id,
        "label": label,
        "unit": unit,
        "max": fixed_max or (top if top > 0 else 1.0),
        "lines": present,
    }


def _pressure_lanes(evidence: Any) -> list[dict[str, Any]]:
    out = []
    for resource in ("io", "memory"):
        samples = [p for p in evidence.pressure if p.resource == resource and p.scope == "node"]
        some = _line("some avg10", ((_epoch(p.ts), p.some_avg10, p.ref) for p in samples))
        full = _line("full avg10", ((_epoch(p.ts), p.full_avg10, p.ref) for p in samples))
        lane = _lane(f"psi-{resource}", "PSI " + resource + " %", "%", [some, full], fixed_max=100.0)
        if lane is not None:
            out.append(lane)
    return out


def _disk_lanes(evidence: Any) -> list[dict[str, Any]]:
    from plegdoctor.analysis.pressure import derive_disk_samples, is_partition

    samples: list[DiskSample] = list(evidence.disk_samples) or derive_disk_samples(evidence.diskstats)
    by_dev: dict[str, list[DiskSample]] = defaultdict(list)
    for s in samples:
        by_dev[s.device].append(s)
    devices = [d for d in by_dev if not is_partition(d, by_dev)] or list(by_dev)
    devices = sorted(devices, key=lambda d: -max(s.util for s in by_dev[d]))
    devices = [d for d in devices if max(s.util for s in by_dev[d]) > 0][:MAX_DEVICES]

    def mid(s: DiskSample) -> float | None:
        return _epoch(s.end or s.start)

    util = [_line(f"{d} util", ((mid(s), s.util, s.ref) for s in by_dev[d])) for d in devices]
    wait = [_line(f"{d} w_await", ((mid(s), s.w_await, s.ref) for s in by_dev[d])) for d in devices]
    writes = [_line(f"{d} w/s", ((mid(s), s.w_per_s, s.ref) for s in by_dev[d])) for d in devices]
    lanes = [
        _lane("disk", "disk util %", "%", util, fixed_max=100.0),
        _lane("disk-await", "disk w_await ms", "ms", wait),
        _lane("disk-writes", "disk writes /s", "/s", writes),
    ]
    return [lane for lane in lanes if lane is not None]


def _memory_lane(evidence: Any) -> list[dict[str, Any]]:
    mib = 1024.0
    dirty = _line("Dirty", ((_epoch(m.ts), m.dirty_kb / mib, m.ref) for m in evidence.meminfo))
    wb = _line("Writeback", ((_epoch(m.ts), m.writeback_kb / mib, m.ref) for m in evidence.meminfo))
    lane = _lane("memory", "Dirty, Writeback MiB", "MiB", [dirty, wb])
    return [lane] if lane is not None else []


def _probe_lane(evidence: Any) -> list[dict[str, Any]]:
    """The relist probe's CRI call latency before a capture (watch or lab `trigger.calls`)."""
    by_method: dict[str, list[tuple[float | None, float | None, Ref]]] = defaultdict(list)
    for trig in evidence.triggers:
        ref = trig.calls_ref or trig.ref
        for start, method, seconds, _ok in trig.calls:
            by_method[method].append((round(start, 3), seconds, ref))
    lines = [_line(method, points) for method, points in sorted(by_method.items())]
    lane = _lane("cri-latency", "CRI relist calls s", "s", lines)
    return [lane] if lane is not None else []


def _ticks(evidence: Any) -> dict[str, Any]:
    series = evidence.relists
    n = len(series)
    ts = series.ts
    if n <= MAX_TICKS:
        keep = list(range(n))
    else:  # every tick that borders a long interval (the parser keeps their text), then evenly spaced ones
        border = sorted(i for i in series.texts if 0 <= i < n)[: MAX_TICKS // 2]
        room = MAX_TICKS - len(border) - 1  # and the last tick
        step = n / room
        keep = sorted(set(border) | {min(n - 1, int(k * step)) for k in range(room)} | {n - 1})
    return {"t": [round(ts[i], 3) for i in keep], "count": n, "shown": len(keep)}


def _near(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(a - _NEAR <= t <= b + _NEAR for a, b in windows)


def _events(evidence: Any, windows: list[tuple[float, float]]) -> tuple[list[dict[str, Any]], int]:
    from plegdoctor.analysis.pleg_timeline import summarize_event

    rare: list[Event] = []
    common: list[Event] = []
    also: dict[tuple[str, int], list[str]] = {}  # one line, several events: one mark says all
    for ev in evidence.events:
        if ev.ts is None:
            continue
        key = (ev.ref.path, ev.ref.line)
        if key in also:
            also[key].append(summarize_event(str(ev.kind), ev.attrs))
            continue
        also[key] = []
        (common if str(ev.kind) in _COMMON else rare).append(ev)
    for h in evidence.hung_tasks:
        if h.ts is not None:
            rare.append(Event(h.ts, "hung-task", "kernel", h.ref, {"comm": h.comm, "pid": h.pid}))  # type: ignore[arg-type]
    total = len(rare) + len(common)
    chosen = rare[:MAX_EVENTS]
    room = MAX_EVENTS - len(chosen)
    if room > 0 and common:
        near: list[Event] = []
        far: list[Event] = []
        for e in common:
            (near if _near(e.ts.timestamp(), windows) else far).append(e)  # type: ignore[union-attr]
        chosen += near[:room]
        room = MAX_EVENTS - len(chosen)
        if room > 0 and far:
            step = max(1, len(far) // room)
            chosen += far[::step][:room]
    chosen.sort(key=lambda e: e.ts)  # type: ignore[arg-type,return-value]
    out = [
        {
            "t": _epoch(e.ts),
            "kind": str(e.kind),
            "process": e.process,
            "label": "; ".join([summarize_event(str(e.kind), e.attrs), *also.get((e.ref.path, e.ref.line), [])]),
            "evidence": cite(e.ref),
        }
        for e in chosen
    ]
    return out, total


def _intervals(evidence: Any, timeline: Any) -> list[dict[str, Any]]:
    from plegdoctor.analysis.pleg_timeline import summarize_event

    out: list[dict[str, Any]] = []
    if timeline is not None:
        for iv in [*timeline.update_resources, *timeline.pulls, *timeline.stops]:
            start, end = _epoch(iv.start), _epoch(iv.end)
            if start is None and end is None:
                continue
            took = "still running at the end of the log" if iv.open else f"took {iv.seconds or 0:.1f} s"
            ref = iv.start_ref or iv.end_ref
            out.append(
                {
                    "lane": "runtime",
                    "kind": iv.kind,
                    "label": f"{summarize_event(iv.kind, {'id': iv.key})} {took}",
                    "start": start if start is not None else end,
                    "end": end,
                    "open": iv.open,
                    "evidence": cite(ref),
                }
            )
    for trig in evidence.triggers:
        start, end = _epoch(trig.started), _epoch(trig.detected)
        if start is None and end is None:
            continue
        secs = f" in flight {trig.seconds:.1f} s" if trig.seconds is not None else ""
        out.append(
            {
                "lane": "cri",
                "kind": "stalled-call",
                "label": f"CRI {trig.method or 'call'}{secs} (relist probe)",
                "start": start if start is not None else end,
                "end": end,
                "open": True,
                "evidence": cite(trig.ref),
            }
        )
    out.sort(key=lambda i: i["start"])
    return out[:MAX_INTERVALS]


def iso_epoch(value: Any) -> float | None:
    try:
        return round(datetime.fromisoformat(str(value)).timestamp(), 3)
    except (TypeError, ValueError):
        return None


def _cites(evidence: Any) -> list[str]:
    return [cite(Ref(e["path"], e["line"], e.get("text", ""))) for e in evidence or [] if isinstance(e, dict)]


def pleg_windows(pleg: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(gaps, unhealthy windows) of a diagnosis' pleg JSON in epoch seconds, each with its
    evidence cited; windows whose times do not parse are left out."""
    gaps = []
    for g in pleg.get("gaps") or []:
        a, b = iso_epoch(g.get("start")), iso_epoch(g.get("end"))
        if a is not None and b is not None:
            gaps.append({"start": a, "end": b, "seconds": g.get("seconds"), "evidence": _cites(g.get("evidence"))})
    unhealthy = []
    for u in pleg.get("unhealthy") or []:
        a = iso_epoch(u.get("start"))
        if a is not None:
            b = iso_epoch(u.get("end")) if u.get("end") else a
            unhealthy.append(
                {
                    "start": a,
                    "end": a if b is None else b,
                    "max_last_seen_seconds": u.get("max_last_seen_seconds"),
                    "evidence": _cites(u.get("evidence")),
                }
            )
    return gaps, unhealthy


def time_window(times: list[float]) -> tuple[float | None, float | None]:
    """The drawn window: the span of `times`, 2 % (at least 1 s) wider on each side."""
    if not times:
        return None, None
    t0, t1 = min(times), max(times)
    pad = max((t1 - t0) * 0.02, 1.0)
    return round(t0 - pad, 3), round(t1 + pad, 3)


def build_series(evidence: Any, timeline: Any, pleg: dict[str, Any]) -> dict[str, Any]:
    """The bounded picture data (see the module docstring); `pleg` is the diagnosis' pleg JSON
    (gaps with their evidence, unhealthy windows)."""
    gaps, unhealthy = pleg_windows(pleg)
    windows = [(g["start"], g["end"]) for g in gaps] + [(u["start"], u["end"]) for u in unhealthy]
    events, n_events = _events(evidence, windows)
    lanes = [*_probe_lane(evidence), *_pressure_lanes(evidence), *_disk_lanes(evidence), *_memory_lane(evidence)]
    doc: dict[str, Any] = {
        "ticks": _ticks(evidence),
        "gaps": gaps,
        "unhealthy": unhealthy,
        "intervals": _intervals(evidence, timeline),
        "events": events,
        "events_total": n_events,
        "lanes": lanes,
    }
    times: list[float] = [*doc["ticks"]["t"][:1], *doc["ticks"]["t"][-1:]]
    for w in windows:
        times += w
    times += [e["t"] for e in events[:1] + events[-1:]]
    for iv in doc["intervals"]:
        times += [x for x in (iv["start"], iv["end"]) if x is not None]
    for lane in lanes:
        for ln in lane["lines"]:
            times += [ln["t"][0], ln["t"][-1]]
    doc["t0"], doc["t1"] = time_window(times)
    return doc
