"""The analyze HTML report of the seed incident in a real Chromium: the DOM contract of issue #12.

Verdict first, a zoomable timeline with hover tips quoting evidence, the blocking chain as a
graph, keyboard reachable, readable at 1280x800, silent (no errors, no network).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from browser import HEIGHT, BrowserPage, chromium_page  # noqa: F401  (chromium_page is a fixture)

from plegdoctor.commands import demo_dir, render
from plegdoctor.pipeline import analyze_paths

Opener = Callable[[Path], BrowserPage]
EVIDENCE = re.compile(r"^.+:\d+: .+", re.S)  # "path:line: text"

# The first element of the page's main column, skipping the page title (h1 or a header).
FIRST_IN_MAIN_JS = """() => {
  const box = document.querySelector('main') || document.body;
  const kids = Array.from(box.children).filter((e) => !['H1', 'HEADER', 'SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE']
    .includes(e.tagName));
  return kids.length ? (kids[0].id || kids[0].tagName.toLowerCase()) : null;
}"""


@pytest.fixture(scope="module")
def demo() -> tuple[str, dict[str, Any]]:
    """The demo's HTML report and its JSON document (where the expected values come from)."""
    diagnosis = analyze_paths([str(demo_dir())], display_root=str(demo_dir().parent), series=True)
    return render(diagnosis, "html"), json.loads(render(diagnosis, "json"))


@pytest.fixture
def report(demo: tuple[str, dict[str, Any]], tmp_path: Path, chromium_page: Opener) -> BrowserPage:  # noqa: F811
    page = tmp_path / "report.html"
    page.write_text(demo[0], encoding="utf-8")
    return chromium_page(page)


def _box(bp: BrowserPage, selector: str) -> dict[str, float]:
    loc = bp.page.locator(selector)
    assert loc.count() >= 1, f"no {selector} in the page"
    box = loc.first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    # bounding_box() is relative to the viewport; the page is at the top, so this is the page offset
    return box


def test_verdict_box_comes_first(report: BrowserPage, demo: tuple[str, dict[str, Any]]) -> None:
    top = demo[1]["root_causes"][0]
    assert report.page.evaluate(FIRST_IN_MAIN_JS) == "verdict-box", "#verdict-box is not the first thing in main"
    assert _box(report, "#verdict-box")["y"] < HEIGHT, "#verdict-box is below the first screen"
    box = report.page.locator("#verdict-box")
    assert box.locator(".verdict-class").count() == 1, "no .verdict-class in #verdict-box"
    assert box.locator(".verdict-class").inner_text().strip() == top["class"] == "fsync-io-pressure"
    assert box.locator(".confidence").count() == 1, "no .confidence in #verdict-box"
    assert box.locator(".confidence").inner_text().strip()
    assert box.locator("#first-fix").count() == 1, "no #first-fix in #verdict-box"
    assert box.locator("#first-fix").inner_text().strip(), "#first-fix is empty"
    assert box.locator(".removes-link").count() >= 1, "no .removes-link in #verdict-box"
    assert box.locator(".removes-link").first.inner_text().strip(), ".removes-link is empty"
    other = box.locator("details.other-fixes")
    assert other.count() == 1, "no details.other-fixes in #verdict-box"
    assert other.evaluate("(d) => d.open") is False, "details.other-fixes is open by default"


def test_timeline_gaps_ticks_events(report: BrowserPage, demo: tuple[str, dict[str, Any]]) -> None:
    pleg = demo[1]["pleg"]
    assert report.page.locator("svg#timeline").count() == 1, "no svg#timeline"
    assert _box(report, "svg#timeline")["y"] < 2 * HEIGHT, "svg#timeline is below the second screen"
    gaps = [
        float(s)
        for s in report.page.locator("svg#timeline .gap").evaluate_all(
            "(els) => els.map((e) => e.getAttribute('data-seconds'))"
        )
        if s is not None
    ]
    assert gaps, "no .gap with data-seconds in svg#timeline"
    longest = round(pleg["max_gap_seconds"])
    assert longest == 42  # the seed incident's gap
    assert longest in {round(g) for g in gaps}, f"no .gap of {longest} s: {gaps}"
    assert report.page.locator("svg#timeline .tick").count() >= 1, "no .tick marks"
    evidence = report.page.locator("svg#timeline .event").evaluate_all(
        "(els) => els.map((e) => e.getAttribute('data-evidence'))"
    )
    assert evidence, "no .event marks in svg#timeline"
    bad = [e for e in evidence if not e or not EVIDENCE.match(e)]
    assert not bad, f".event without data-evidence 'path:line: text': {bad[:5]}"


def test_hover_shows_the_evidence(report: BrowserPage, demo: tuple[str, dict[str, Any]]) -> None:
    ev = demo[1]["pleg"]["gaps"][0]["runtime"][0]  # what the runtime did during the gap
    where = f"{PurePosixPath(ev['path']).name}:{ev['line']}"
    assert where == "journal-containerd.txt:1"
    mark = report.page.locator(f'svg#timeline .event[data-evidence*="{where}:"]')
    assert mark.count() >= 1, f"no .event quoting {where}"
    report.page.hover(f'svg#timeline .event[data-evidence*="{where}:"] >> nth=0')
    tip = report.page.locator("#tip")
    assert tip.count() == 1, "no #tip"
    tip.wait_for(state="visible")
    assert where in tip.inner_text()


def _window(bp: BrowserPage) -> tuple[str | None, str | None]:
    svg = bp.page.locator("svg#timeline")
    return svg.get_attribute("data-t0"), svg.get_attribute("data-t1")


def test_zoom_changes_and_resets_the_window(report: BrowserPage) -> None:
    assert report.page.locator("svg#timeline").count() == 1, "no svg#timeline"
    before = _window(report)
    assert None not in before, f"svg#timeline has no data-t0/data-t1: {before}"
    assert report.page.locator("#zoom-in").count() == 1, "no #zoom-in"
    assert report.page.locator("#zoom-reset").count() == 1, "no #zoom-reset"
    report.page.click("#zoom-in")
    zoomed = _window(report)
    assert zoomed != before, "#zoom-in did not change the time window"
    t0, t1 = (float(x) for x in before)  # type: ignore[arg-type]
    z0, z1 = (float(x) for x in zoomed)  # type: ignore[arg-type]
    assert z1 - z0 < t1 - t0, f"#zoom-in widened the window: {before} -> {zoomed}"
    report.page.click("#zoom-reset")
    assert _window(report) == before, "#zoom-reset did not restore the window"


def test_chain_graph(report: BrowserPage, demo: tuple[str, dict[str, Any]]) -> None:
    chain = demo[1]["root_causes"][0]["chain"]
    graph = report.page.locator("svg#chain-graph")
    assert graph.count() == 1, "no svg#chain-graph"
    nodes = graph.locator(".chain-node")
    assert nodes.count() >= min(3, len(chain)) >= 3, f"{nodes.count()} .chain-node for {len(chain)} links"
    procs = nodes.evaluate_all("(els) => els.map((e) => e.getAttribute('data-process'))")
    assert all(procs), f".chain-node without data-process: {procs}"
    assert {link["process"] for link in chain} <= set(procs)
    texts = nodes.all_text_contents()
    for link in chain:
        if link.get("goroutine") is not None:
            assert any(f"goroutine {link['goroutine']}" in t for t in texts), (
                f"no node for goroutine {link['goroutine']}"
            )
    assert any("goroutine 1665" in t for t in texts)
    edges = graph.locator(".chain-edge")
    assert edges.count() >= 2, f"{edges.count()} .chain-edge"
    labels = [t.strip() for t in graph.locator(".edge-label").all_text_contents()]
    assert len([t for t in labels if t]) >= edges.count(), f"edges {edges.count()}, non-empty .edge-label {labels}"


def test_keyboard_reaches_the_controls(report: BrowserPage) -> None:
    presses = min(report.focusable_count() + 2, 300)
    seen = report.tab_through(presses)
    assert any(f.within("#verdict-box") for f in seen), "Tab never reaches a control in #verdict-box"
    ids = {f.id for f in seen}
    assert {"zoom-in", "zoom-reset"} <= ids, f"Tab misses the zoom buttons: {sorted(i for i in ids if i)}"
    assert any("chain-node" in f.classes for f in seen), "Tab never reaches a .chain-node"


def test_quiet_readable_and_screenshot(report: BrowserPage) -> None:
    shot = report.screenshot("report-first-screen.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"first screen is only {len(data)} bytes"
    report.assert_quiet()
    report.assert_readable()


def test_first_screen_shows_the_gap_the_chain_and_the_first_fix(report: BrowserPage) -> None:
    """Issue #12's bar: at 1280x800, without scrolling, the seed's 42 s gap, the whole chain graph
    and the fix to do first are on screen."""
    for selector in ('svg#timeline .gap[data-seconds^="42"]', "svg#chain-graph", "#first-fix"):
        box = _box(report, selector)
        assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, f"{selector} is not on the first screen: {box}"
