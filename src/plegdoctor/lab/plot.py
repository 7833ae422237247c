"""SVG plot of relist latency over time, one line per variant (written by hand: no plotting dependency).

x: seconds since the stall phase began (the StopContainer calls); y: relist latency in seconds.
Each relist is drawn as the age of the call in flight: it rises from its start to its end, where
it reaches its duration, then drops; so a stall is a ramp whose peak is how long kubelet's PLEG
waited, placed where it really was in time. A dashed line marks the 3 s gap threshold.

The scale (`Scale.of`), the plot area (`Frame`), the ramp (`ramp`) and the axes (`axes`) are
shared with the HTML page of lab.html, which draws one such plot per variant on one scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

from plegdoctor.lab.compare import GAP_SECONDS

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
RAMP_MIN_SECONDS = 0.2  # a relist shorter than this is drawn as a point, not a ramp

Points = list[tuple[float, float]]  # (t seconds since the stall phase began, relist seconds)
Series = list[tuple[str, Points]]  # (variant, points) per variant


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(1, target)
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600):
        if step >= raw:
            return float(step)
    return float(round(raw, -2) or 1000)


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(i * step, 6) + 0.0 for i in range(first, last + 1)]


@dataclass(frozen=True, slots=True)
class Scale:
    """One x and y range for all series: x from the earliest start (or 0) to the latest end,
    y from 0 to 8 % over the worst relist, never under 3.5 s so the gap threshold shows."""

    xmin: float
    xmax: float
    ymax: float

    @classmethod
    def of(cls, series: Series) -> Scale:
        xs = [t + v for _, pts in series for t, v in pts] + [t for _, pts in series for t, _ in pts]
        ys = [y for _, pts in series for _, y in pts] or [1.0]
        xs = xs or [0.0, 1.0]
        xmax = max(xs) if max(xs) > 0 else 1.0
        return cls(xmin=min(0.0, min(xs)), xmax=xmax, ymax=max(GAP_SECONDS + 0.5, max(ys) * 1.08))

    def xticks(self, target: int = 8) -> list[float]:
        return _ticks(self.xmin, self.xmax, _nice_step(self.xmax - self.xmin, target))

    def yticks(self, target: int = 6) -> list[float]:
        return _ticks(0.0, self.ymax, _nice_step(self.ymax, target))


@dataclass(frozen=True, slots=True)
class Frame:
    """The plot area of one SVG (in SVG user units) and the scale mapped onto it."""

    scale: Scale
    left: float
    top: float
    width: float
    height: float

    def px(self, t: float) -> float:
        s = self.scale
        return self.left + (t - s.xmin) / (s.xmax - s.xmin or 1.0) * self.width

    def py(self, y: float) -> float:
        return self.top + self.height - y / self.scale.ymax * self.height


def ramp(pts: Points) -> Points:
    """The age of the call in flight: each relist rises from (start, 0) to (end, duration)."""
    out: Points = []
    for t, v in sorted(pts):
        out += [(t, 0.0), (t + v, v)] if v > RAMP_MIN_SECONDS else [(t, v)]
    return out


def axes(f: Frame, xlabel: str, ylabel: str, label_bottom: float) -> list[str]:
    """Grid, tick labels, the dashed gap threshold (class `threshold`), the frame and axis labels."""
    right, bottom = f.left + f.width, f.top + f.height
    out = []
    for y in f.scale.yticks():
        out.append(f'<line x1="{f.left}" x2="{right}" y1="{f.py(y):.1f}" y2="{f.py(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{f.left - 6}" y="{f.py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    for x in f.scale.xticks():
        out.append(f'<line x1="{f.px(x):.1f}" x2="{f.px(x):.1f}" y1="{f.top}" y2="{bottom}" stroke="#f3f3f3"/>')
        out.append(f'<text x="{f.px(x):.1f}" y="{bottom + 16}" text-anchor="middle">{x:g}</text>')
    ty = f.py(GAP_SECONDS)
    out.append(
        f'<line class="threshold" x1="{f.left}" x2="{right}" y1="{ty:.1f}" y2="{ty:.1f}" '
        'stroke="#777" stroke-dasharray="5,4"/>'
    )
    out.append(f'<text x="{right - 4}" y="{ty - 4:.1f}" text-anchor="end" fill="#555">{GAP_SECONDS:g} s gap</text>')
    out.append(f'<rect x="{f.left}" y="{f.top}" width="{f.width}" height="{f.height}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{f.left + f.width / 2}" y="{label_bottom}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(
        f'<text transform="translate(16,{f.top + f.height / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )
    return out


X_LABEL = "seconds since the stall phase began"
Y_LABEL = "relist latency (s)"


def render_svg(series: Series, title: str = "", width: int = 900) -> str:
    """series: (label, [(t seconds, relist seconds), ...]) per variant."""
    height = 420
    left, right, top, bottom = 60, 220, 36, 48
    f = Frame(Scale.of(series), left, top, width - left - right, height - top - bottom)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title or "relist latency")}</text>',
        *axes(f, X_LABEL, Y_LABEL, height - 10),
    ]
    for i, (label, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        if pts:
            path = " ".join(f"{f.px(t):.1f},{f.py(v):.1f}" for t, v in ramp(pts))
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>')
        ly = top + 14 + i * 18
        lx = left + f.width
        out.append(
            f'<line x1="{lx + 14}" x2="{lx + 34}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="3"/>'
        )
        worst = max((v for _, v in pts), default=0.0)
        out.append(f'<text x="{lx + 40}" y="{ly}">{escape(label)} (max {worst:.1f}s)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plot(path: Path, series: Series, title: str = "") -> Path:
    path.write_text(render_svg(series, title))
    return path
