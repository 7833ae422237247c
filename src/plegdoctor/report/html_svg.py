"""The two pictures of the HTML report, as inline SVG strings built from the diagnosis JSON.

- `timeline_svg(series)`: one time axis with lanes: kubelet relists (ticks, gaps, PLEG
  unhealthy windows), the stalled CRI call, runtime operations, events, then the sampled
  lanes (PSI, disk, Dirty/Writeback). Marks carry `data-t` (and `data-t2`) in epoch
  seconds so the page script can zoom by moving them; marks that quote evidence carry
  `data-evidence` ("path:line: text") for the hover.
- `chain_svg(chain)`: the blocking chain as a graph across processes, symptom first: one
  `g.chain-node` per link (process, goroutine, wait, minutes, file:line), edges
  `path.chain-edge` labelled with what the waiter waits for (`text.edge-label`).

The layout constants here and in the page script (html_assets.JS) must agree: L, PW.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from plegdoctor.report.common import clip

W = 1180  # viewBox width
L = 170  # left label column
PW = W - L - 12  # plot width
LANE_KUBELET = 46
LANE_BAR = 22
LANE_SERIES = 48
AXIS = 22
MAX_DOTS = 60  # a line with at most this many samples also draws each as a dot
COLORS = ("#c0392b", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
EVENT_COLORS = {
    "task-exit-failed": "#c0392b",
    "task-delete-failed": "#c0392b",
    "hung-task": "#6c3483",
    "cri-call-failed": "#d35400",
    "relist-error": "#d35400",
    "pleg-unhealthy": "#b9770e",
    "node-not-ready": "#7b241c",
}
PROCESS_COLORS = {"kubelet": "#2471a3", "containerd": "#1e8449", "kernel": "#5d6d7e", "dockerd": "#7d3c98"}


def _a(value: Any) -> str:
    """An attribute value, escaped (quotes included)."""
    return escape(str(value), quote=True)


def hhmmss(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _x(t: float, t0: float, t1: float) -> float:
    return L + (t - t0) / ((t1 - t0) or 1.0) * PW


def _lane_label(y: int, h: int, text: str, sub: str = "") -> str:
    out = f'<text class="lane-label" x="6" y="{y + h / 2 + 4:.0f}">{escape(text)}</text>'
    if sub:
        out += f'<text class="lane-sub" x="6" y="{y + h / 2 + 18:.0f}">{escape(sub)}</text>'
    return out


def _kubelet_lane(s: dict[str, Any], y: int, t0: float, t1: float, labels: list[str]) -> list[str]:
    h = LANE_KUBELET
    ticks = s.get("ticks") or {}
    sub = f"{ticks.get('count', 0)} relists" + (
        f" ({ticks.get('shown')} drawn)" if ticks.get("shown", 0) < ticks.get("count", 0) else ""
    )
    labels.append(_lane_label(y, h, "kubelet relists", sub))
    out = ['<g class="lane" data-lane="kubelet">']
    out.append(f'<rect class="lane-bg" x="{L}" y="{y}" width="{PW}" height="{h}"/>')
    if ticks.get("t"):  # one path for all ticks; the page script redraws it from #series-data
        y1, y2 = y + 14, y + h - 4
        d = "".join(f"M{_x(t, t0, t1):.1f},{y1}V{y2}" for t in ticks["t"])
        out.append(f'<path class="tick" data-y1="{y1}" data-y2="{y2}" d="{d}"/>')
    for u in s.get("unhealthy") or []:
        x, x2 = _x(u["start"], t0, t1), _x(u["end"], t0, t1)
        ev = (u.get("evidence") or [""])[0]
        last = u.get("max_last_seen_seconds")
        label = "PLEG unhealthy" + (f", last seen {last:.0f} s ago" if isinstance(last, (int, float)) else "")
        out.append(
            f'<rect class="unhealthy" data-t="{u["start"]}" data-t2="{u["end"]}" x="{x:.1f}" y="{y + 2}" '
            f'width="{max(x2 - x, 3):.1f}" height="8" data-label="{_a(label)}" data-evidence="{_a(ev)}"/>'
        )
    for g in s.get("gaps") or []:
        x, x2 = _x(g["start"], t0, t1), _x(g["end"], t0, t1)
        secs = g.get("seconds") or (g["end"] - g["start"])
        ev = " | ".join(g.get("evidence") or [])
        label = f"relisting stopped for {secs:.0f} s ({hhmmss(g['start'])} -> {hhmmss(g['end'])})"
        out.append(
            f'<rect class="gap" tabindex="0" data-t="{g["start"]}" data-t2="{g["end"]}" data-seconds="{secs:.3f}" '
            f'x="{x:.1f}" y="{y + 12}" width="{max(x2 - x, 3):.1f}" height="{h - 14}" '
            f'data-label="{_a(label)}" data-evidence="{_a(ev)}"><title>{escape(label)}</title></rect>'
        )
        out.append(
            f'<text class="gap-label" data-t="{(g["start"] + g["end"]) / 2}" x="{(x + x2) / 2:.1f}" '
            f'y="{y + 10}" text-anchor="middle">{secs:.0f} s</text>'
        )
    out.append("</g>")
    return out


def _bar_lane(
    lane: str, label: str, items: list[dict[str, Any]], y: int, t0: float, t1: float, labels: list[str]
) -> list[str]:
    h = LANE_BAR
    labels.append(_lane_label(y, h, label))
    out = [f'<g class="lane" data-lane="{lane}">']
    out.append(f'<rect class="lane-bg" x="{L}" y="{y}" width="{PW}" height="{h}"/>')
    for iv in items:
        a = iv["start"]
        b = iv["end"] if iv.get("end") is not None else t1
        x, x2 = _x(a, t0, t1), _x(b, t0, t1)
        cls = "interval open" if iv.get("open") else "interval"
        out.append(
            f'<rect class="{cls}" data-t="{a}" data-t2="{b}" x="{x:.1f}" y="{y + 4}" width="{max(x2 - x, 3):.1f}" '
            f'height="{h - 8}" data-label="{_a(iv["label"])}" data-evidence="{_a(iv.get("evidence", ""))}"/>'
        )
    out.append("</g>")
    return out


def _events_lane(
    events: list[dict[str, Any]], total: int, y: int, t0: float, t1: float, labels: list[str]
) -> list[str]:
    h = 26
    sub = f"{len(events)} of {total} drawn" if total > len(events) else f"{total} events"
    labels.append(_lane_label(y, h, "events", sub))
    out = ['<g class="lane" data-lane="events">']
    out.append(f'<rect class="lane-bg" x="{L}" y="{y}" width="{PW}" height="{h}"/>')
    cy = y + h / 2
    for e in events:
        x = _x(e["t"], t0, t1)
        color = EVENT_COLORS.get(e["kind"], "#34495e")
        out.append(
            f'<path class="event" data-t="{e["t"]}" data-kind="{_a(e["kind"])}" '
            f'transform="translate({x:.1f},{cy:.0f})" '
            f'd="M0,-7L6,0L0,7L-6,0Z" fill="{color}" data-label="{_a(e["process"] + ": " + e["label"])}" '
            f'data-evidence="{_a(e["evidence"])}"/>'
        )
    out.append("</g>")
    return out


def _points(t: list[float], v: list[float], vmax: float, y: int, t0: float, t1: float) -> str:
    h = LANE_SERIES - 6
    return " ".join(f"{_x(a, t0, t1):.1f},{y + 3 + h - min(b, vmax) / vmax * h:.1f}" for a, b in zip(t, v, strict=True))


def _series_lane(n: int, lane: dict[str, Any], y: int, t0: float, t1: float, labels: list[str]) -> list[str]:
    h = LANE_SERIES
    vmax = float(lane.get("max") or 1.0)
    unit = lane.get("unit", "")
    labels.append(_lane_label(y, h, lane["label"], f"max {vmax:.4g} {unit}"))
    out = [
        f'<g class="lane" data-lane="{_a(lane["id"])}" data-lane-index="{n}" data-y="{y}" data-max="{vmax}">',
        f'<rect class="lane-bg series-bg" x="{L}" y="{y}" width="{PW}" height="{h}"/>',
    ]
    for i, line in enumerate(lane["lines"]):
        color = COLORS[i % len(COLORS)]
        pts = _points(line["t"], line["v"], vmax, y, t0, t1)
        out.append(
            f'<polyline class="series-line" data-line="{i}" fill="none" stroke="{color}" points="{pts}">'
            f"<title>{escape(line['name'])}</title></polyline>"
        )
        if len(line["t"]) <= MAX_DOTS:  # few samples: each one a dot that quotes its line
            for t, v, ref in zip(line["t"], line["v"], line["refs"], strict=True):
                cy = y + 3 + (h - 6) - min(v, vmax) / vmax * (h - 6)
                dot_label = f"{line['name']} = {v:g} {unit}"
                out.append(
                    f'<circle class="series-dot" data-t="{t}" cx="{_x(t, t0, t1):.1f}" cy="{cy:.1f}" r="3" '
                    f'fill="{color}" data-label="{_a(dot_label)}" data-evidence="{_a(ref)}"/>'
                )
        out.append(
            f'<text class="legend" x="{L + PW - 4}" y="{y + 12 + 12 * i}" text-anchor="end" fill="{color}">'
            f"{escape(line['name'])}</text>"
        )
    out.append("</g>")
    return out


def timeline_svg(s: dict[str, Any]) -> str:
    """The timeline of the incident (see the module docstring); "" without any timed data."""
    t0, t1 = s.get("t0"), s.get("t1")
    if t0 is None or t1 is None:
        return ""
    body: list[str] = []
    labels: list[str] = []
    y = 4
    ticks = s.get("ticks") or {}
    if ticks.get("count") or s.get("gaps") or s.get("unhealthy"):  # no kubelet log: no empty lane
        body += _kubelet_lane(s, y, t0, t1, labels)
        y += LANE_KUBELET + 4
    intervals = s.get("intervals") or []
    cri = [iv for iv in intervals if iv["lane"] == "cri"]
    if cri:
        body += _bar_lane("cri", "stalled CRI call", cri, y, t0, t1, labels)
        y += LANE_BAR + 4
    ops = [iv for iv in intervals if iv["lane"] == "runtime"]
    if ops:
        body += _bar_lane("runtime", "runtime operations", ops, y, t0, t1, labels)
        y += LANE_BAR + 4
    if s.get("events"):
        body += _events_lane(s["events"], s.get("events_total", len(s["events"])), y, t0, t1, labels)
        y += 26 + 4
    for n, lane in enumerate(s.get("lanes") or []):
        body += _series_lane(n, lane, y, t0, t1, labels)
        y += LANE_SERIES + 4
    height = y + AXIS
    axis = [f'<g id="axis" data-y="{y}">']
    for k in range(7):
        t = t0 + (t1 - t0) * k / 6
        x = _x(t, t0, t1)
        axis.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{y}"/>')
        anchor = "start" if k == 0 else "end" if k == 6 else "middle"
        axis.append(f'<text class="axis-label" x="{x:.1f}" y="{y + 15}" text-anchor="{anchor}">{hhmmss(t)}</text>')
    axis.append("</g>")
    return (
        f'<svg id="timeline" tabindex="0" role="img" aria-label="timeline of the incident, UTC" '
        f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
        f'data-t0="{t0}" data-t1="{t1}" data-full-t0="{t0}" data-full-t1="{t1}" data-l="{L}" data-pw="{PW}">'
        f'<defs><clipPath id="plot-clip"><rect x="{L}" y="0" width="{PW}" height="{height}"/></clipPath></defs>'
        + "".join(axis)
        + '<g clip-path="url(#plot-clip)" id="marks">'
        + "".join(body)
        + "</g>"
        + "".join(labels)
        + "</svg>"
    )


NODE_W = 204
NODE_H = 102
EDGE_W = 116  # room between two nodes for the arrow and its label
PER_ROW = 4
ROW_GAP = 40


def _tail(text: str, n: int) -> str:
    """The end of `text` (a file:line keeps its line number)."""
    return text if len(text) <= n else "\u2026" + text[-(n - 1) :]


def wrap(text: str, width: int = 15, lines: int = 3) -> list[str]:
    """Words of `text` in at most `lines` lines of about `width` characters (the last cut)."""
    out: list[str] = []
    for word in text.split():
        if out and len(out[-1]) + 1 + len(word) <= width:
            out[-1] += " " + word
        else:
            out.append(word)
    if len(out) > lines:
        out = [*out[: lines - 1], clip(" ".join(out[lines - 1 :]), width)]
    return [clip(x, width + 3) for x in out]


def _func_name(function: str | None) -> str:
    """`pkg/path.(*T).Method` -> `(*T).Method` (the package path is in the title)."""
    if not function:
        return ""
    return function.rsplit("/", 1)[-1].split(".", 1)[-1] if "." in function.rsplit("/", 1)[-1] else function


def _where_short(link: dict[str, Any]) -> str:
    """file:line of the link's deepest evidence line, the file by its base name."""
    ev = link.get("evidence") or []
    if not ev:
        return ""
    e = ev[-1]
    return f"{str(e.get('path', '')).rsplit('/', 1)[-1]}:{e.get('line', '')}"


def edge_label(waiter: dict[str, Any], holder: dict[str, Any]) -> str:
    """What the arrow from `waiter` to `holder` says: what the waiter waits for, in few words
    (an address in parentheses is left to the title)."""
    resource = str(waiter.get("resource") or "")
    if resource:
        return resource.split(" (", 1)[0] if not resource.startswith("(") else resource
    for tag in waiter.get("tags") or []:
        if str(tag).startswith("cri:"):
            return f"CRI {tag[4:]} call"
    return str(waiter.get("kind") or "waits for")


def _node(i: int, link: dict[str, Any], x: float, y: float) -> str:
    proc = str(link.get("process") or "?")
    color = PROCESS_COLORS.get(proc.split("-")[0] if not proc.startswith("containerd-shim") else "", "#b9770e")
    short = "shim " + proc[len("containerd-shim-") :] if proc.startswith("containerd-shim-") else proc
    head = short + (f" goroutine {link['goroutine']}" if link.get("goroutine") is not None else "")
    if link.get("pid") is not None and link.get("goroutine") is None:
        head += f" pid {link['pid']}"
    wait = str(link.get("kind") or "")
    if link.get("resource"):
        wait += ": " + str(link["resource"])
    if wait == "relist-gap" or (not link.get("goroutine") and link.get("detail")):
        wait = str(link.get("detail"))
    mins = link.get("wait_minutes")
    third = f"waiting {mins} min" if mins else _func_name(link.get("function")) or ""
    where = _where_short(link)
    full = "\n".join(
        x
        for x in (
            str(link.get("detail") or ""),
            str(link.get("function") or ""),
            *[f"{e.get('path')}:{e.get('line')}" for e in link.get("evidence") or []],
        )
        if x
    )
    return (
        f'<g class="chain-node" tabindex="0" data-index="{i}" data-process="{_a(proc)}" '
        f'data-goroutine="{_a(link.get("goroutine") if link.get("goroutine") is not None else "")}" '
        f'transform="translate({x:.0f},{y:.0f})" aria-label="{_a(head + ": " + str(link.get("detail") or ""))}">'
        f"<title>{escape(full)}</title>"
        f'<rect class="node-box" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
        f'<rect class="node-head" width="{NODE_W}" height="22" rx="6" fill="{color}"/>'
        f'<text class="node-title" x="8" y="16">{escape(clip(head, 26))}</text>'
        + "".join(
            f'<text class="node-text" x="8" y="{40 + 16 * k}">{escape(row)}</text>'
            for k, row in enumerate(wrap(wait, width=29, lines=2))
        )
        + f'<text class="node-text node-func" x="8" y="74">{escape(clip(third, 30))}</text>'
        f'<text class="node-where" x="8" y="94">{escape(_tail(where, 26))}</text>'
        "</g>"
    )


def chain_svg(chain: list[dict[str, Any]], svg_id: str = "chain-graph") -> str:
    """The blocking chain as a graph (see the module docstring); "" for an empty chain."""
    if not chain:
        return ""
    rows = (len(chain) + PER_ROW - 1) // PER_ROW
    height = rows * NODE_H + (rows - 1) * ROW_GAP + 8
    width = PER_ROW * NODE_W + (PER_ROW - 1) * EDGE_W + 8
    pos = []
    for i in range(len(chain)):
        r, c = divmod(i, PER_ROW)
        pos.append((4 + c * (NODE_W + EDGE_W), 4 + r * (NODE_H + ROW_GAP)))
    parts = [
        f'<svg id="{_a(svg_id)}" class="chain-graph" role="img" aria-label="blocking chain, symptom first" '
        f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>',
    ]
    for i in range(len(chain) - 1):
        (x1, y1), (x2, y2) = pos[i], pos[i + 1]
        label = edge_label(chain[i + 1], chain[i])
        if y1 == y2:  # same row: a straight arrow, label above it
            rows_of_label = wrap(label)
            d = f"M{x1 + NODE_W},{y1 + NODE_H / 2 + 8} L{x2 - 2},{y2 + NODE_H / 2 + 8}"
            lx, ly = x1 + NODE_W + EDGE_W / 2, y1 + NODE_H / 2 + 2 - 14 * len(rows_of_label)
        else:  # to the next row: down from the node's bottom, then left to the next node
            rows_of_label = wrap(label, width=60, lines=1)
            d = f"M{x1 + NODE_W / 2},{y1 + NODE_H} V{y2 - ROW_GAP / 2} H{x2 + NODE_W / 2} V{y2 - 2}"
            lx, ly = (x1 + x2 + NODE_W) / 2, y2 - ROW_GAP / 2 - 4
        parts.append(
            f'<path class="chain-edge" data-from="{i}" data-to="{i + 1}" d="{d}" fill="none" '
            f'marker-end="url(#arrow)"><title>{escape(label)}</title></path>'
        )
        spans = "".join(
            f'<tspan x="{lx:.0f}" dy="{0 if k == 0 else 14}">{escape(row)}</tspan>'
            for k, row in enumerate(rows_of_label)
        )
        parts.append(f'<text class="edge-label" x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle">{spans}</text>')
    for i, link in enumerate(chain):
        parts.append(_node(i, link, *pos[i]))
    parts.append("</svg>")
    return "".join(parts)
