"""The lab's comparison page (lab.html.render_compare_html) in a real Chromium: one latency plot
per variant, the figures table with the best row marked, silent and readable at 1280x800."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from browser import BrowserPage, chromium_page  # noqa: F401  (chromium_page is a fixture)

from plegdoctor.lab.compare import RunFigures, best_variant, to_json
from plegdoctor.lab.html import render_compare_html

Opener = Callable[[Path], BrowserPage]

# (variant, mitigations, worst relist in s): a baseline that stalls, two mitigations that help
VARIANTS = [
    ("baseline", [], 30.0),
    ("volatile", ["volatile"], 19.0),
    ("dirty-limits", ["dirty-limits", "volatile"], 1.2),
]


def _series(worst: float, n: int = 240) -> list[tuple[float, float]]:
    """n relists, one a second, with one stall of `worst` seconds in the middle."""
    pts = []
    for i in range(n):
        bump = worst * math.exp(-(((i - n / 2) / 6) ** 2))
        pts.append((float(i), round(0.02 + bump, 3)))
    return pts


def _page(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    series = [(name, _series(worst)) for name, _, worst in VARIANTS]
    runs = []
    for (name, mitigations, worst), (_, pts) in zip(VARIANTS, series, strict=True):
        lat = [v for _, v in pts]
        runs.append(
            RunFigures(
                variant=name,
                containerd="1.7.24",
                volatile="volatile" in mitigations,
                mitigations=mitigations,
                relists=len(lat),
                relist_p50_seconds=sorted(lat)[len(lat) // 2],
                relist_p99_seconds=sorted(lat)[int(len(lat) * 0.99)],
                relist_max_seconds=worst,
                relist_blocked_seconds=sum(x for x in lat if x > 1.0),
                gaps_over_3s=sum(1 for x in lat if x > 3.0),
                max_gap_seconds=worst + 1.0,
            )
        )
    best = best_variant(runs)
    assert best is not None and best.variant == "dirty-limits"
    doc = to_json(runs, {"title": "lab: fsync under writeback", "run_dir": str(tmp_path)})
    page = tmp_path / "compare.html"
    page.write_text(render_compare_html(doc, series, str(tmp_path)), encoding="utf-8")
    return page, doc


def test_compare_page(tmp_path: Path, chromium_page: Opener) -> None:  # noqa: F811
    page, doc = _page(tmp_path)
    bp = chromium_page(page)
    bp.screenshot("compare.png", full_page=True)
    bp.assert_quiet()
    plots = bp.page.locator("svg.latency-plot").evaluate_all("(els) => els.map((e) => e.getAttribute('data-variant'))")
    assert sorted(plots) == sorted(name for name, _, _ in VARIANTS), f"svg.latency-plot per variant: {plots}"
    for name in plots:
        box = bp.page.locator(f'svg.latency-plot[data-variant="{name}"]').bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, f"plot of {name} not drawn: {box}"
    assert bp.page.locator("table#variants").count() == 1, "no table#variants"
    rows = bp.page.locator("table#variants tbody tr")
    assert rows.count() == len(VARIANTS)
    best = bp.page.locator("table#variants tr.best")
    assert best.count() == 1, f"{best.count()} rows with class best"
    assert doc["best"] == "dirty-limits"
    assert "dirty-limits" in best.inner_text()
    bp.assert_readable()
