"""SVG plot of relist latency over time, one line per variant (written by hand: no plotting dependency).

x: seconds since the stall phase began (the StopContainer calls); y: relist latency in seconds.
Each relist is drawn as the age of the call in flight: it rises from its start to its end, where
it reaches its duration, then drops; so a stall is a ramp whose peak is how long kubelet's PLEG
waited, placed where it really was in time. A dashed line marks the 3 s gap threshold.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(1, target)
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600):
        if step >= raw:
            return float(step)
    return float(round(raw, -2) or 1000)


def render_svg(series: list[tuple[str, list[tuple[float, float]]]], title: str = "", width: int = 900) -> str:
    """series: (label, [(t seconds, relist seconds), ...]) per variant."""
    height = 420
    left, right, top, bottom = 60, 220, 36, 48
    pw, ph = width - left - right, height - top - bottom
    xs = [t + v for _, pts in series for t, v in pts] or [0.0, 1.0]
    ys = [y for _, pts in series for _, y in pts] or [1.0]
    xmin, xmax = min(0.0, min(xs)), max(xs) if max(xs) > 0 else 1.0
    ymax = max(3.5, max(ys) * 1.08)

    def px(t: float) -> float:
        return left + (t - xmin) / (xmax - xmin or 1.0) * pw

    def py(y: float) -> float:
        return top + ph - y / ymax * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title or "relist latency")}</text>',
    ]
    ystep = _nice_step(ymax)
    y = 0.0
    while y <= ymax:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += ystep
    xstep = _nice_step(xmax - xmin, 8)
    x = 0.0 if xmin >= 0 else -xstep * int(-xmin // xstep)
    while x <= xmax:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + ph}" stroke="#f3f3f3"/>')
        out.append(f'<text x="{px(x):.1f}" y="{top + ph + 16}" text-anchor="middle">{x + 0.0:g}</text>')
        x += xstep
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{py(3.0):.1f}" y2="{py(3.0):.1f}" '
        'stroke="#999" stroke-dasharray="5,4"/>'
    )
    out.append(f'<text x="{left + pw - 4}" y="{py(3.0) - 4:.1f}" text-anchor="end" fill="#777">3 s</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">seconds since the stall phase began</text>'
    )
    out.append(
        f'<text transform="translate(16,{top + ph / 2}) rotate(-90)" text-anchor="middle">relist latency (s)</text>'
    )
    for i, (label, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        if pts:
            ramp: list[tuple[float, float]] = []
            for t, v in pts:
                ramp += [(t, 0.0), (t + v, v)] if v > 0.2 else [(t, v)]
            path = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in ramp)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>')
        ly = top + 14 + i * 18
        out.append(
            f'<line x1="{left + pw + 14}" x2="{left + pw + 34}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="3"/>'
        )
        worst = max((v for _, v in pts), default=0.0)
        out.append(f'<text x="{left + pw + 40}" y="{ly}">{escape(label)} (max {worst:.1f}s)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plot(path: Path, series: list[tuple[str, list[tuple[float, float]]]], title: str = "") -> Path:
    path.write_text(render_svg(series, title))
    return path
