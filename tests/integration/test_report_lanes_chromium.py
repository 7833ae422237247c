"""The analyze HTML report of a bundle collected by the tool and of an incident with /proc pressure
data, in a real Chromium: the timeline has one lane per series the inputs hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from browser import BrowserPage, chromium_page  # noqa: F401  (chromium_page is a fixture)

from plegdoctor.commands import render
from plegdoctor.pipeline import analyze_paths

Opener = Callable[[Path], BrowserPage]
INCIDENTS = Path(__file__).resolve().parent.parent / "incidents"
# the kinds of node evidence that are a time series, and the lane each is drawn in
LANE_OF_KIND = {"diskstats": "disk", "iostat": "disk", "meminfo": "memory", "vmstat": "memory"}


def expected_lanes(doc: dict[str, Any]) -> set[str]:
    """The lanes the timeline must have for the series these inputs hold (read from the inputs table)."""
    lanes: set[str] = set()
    for i in doc["inputs"]:
        if not i.get("records"):
            continue
        if i["kind"] == "psi":  # /proc/pressure/{cpu,io,memory}
            lanes.add(f"psi-{PurePosixPath(i['path'].rsplit(':', 1)[-1]).name}")
        elif i["kind"] in LANE_OF_KIND:
            lanes.add(LANE_OF_KIND[i["kind"]])
    return lanes


def _bundle() -> Path:
    found = sorted((INCIDENTS / "18-runtime-frozen-sigstop").glob("*.tar.gz"))
    assert found, "no bundle in tests/incidents/18-runtime-frozen-sigstop"
    return found[0]


# marks a lane draws besides one background rect: lines, paths, dots, more rects
DRAWN_JS = """(lane) => {
  const g = document.querySelector(`svg#timeline g.lane[data-lane="${lane}"]`);
  if (!g) return 0;
  const rects = g.querySelectorAll('rect').length;
  return g.querySelectorAll('path, polyline, polygon, circle, line').length + Math.max(0, rects - 1);
}"""

CASES = {
    "bundle-18-runtime-frozen-sigstop": _bundle,
    "05-disk-io-pressure": lambda: INCIDENTS / "05-disk-io-pressure",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_timeline_lanes(case: str, tmp_path: Path, chromium_page: Opener) -> None:  # noqa: F811
    diagnosis = analyze_paths([str(CASES[case]())], series=True)
    doc = json.loads(render(diagnosis, "json"))
    page = tmp_path / f"{case}.html"
    page.write_text(render(diagnosis, "html"), encoding="utf-8")
    bp = chromium_page(page)
    shot = bp.screenshot(f"{case}.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bp.assert_quiet()
    assert bp.page.locator("svg#timeline").count() == 1, "no svg#timeline"
    lanes = bp.page.locator("svg#timeline g.lane[data-lane]").evaluate_all(
        "(els) => els.map((e) => e.getAttribute('data-lane'))"
    )
    assert lanes and all(lanes), f"svg#timeline has no g.lane[data-lane]: {lanes}"
    want = expected_lanes(doc)
    if case.startswith("05-"):
        assert {"psi-io", "disk", "memory"} <= want  # what the incident holds (proc/pressure/io, diskstats, meminfo)
    missing = want - set(lanes)
    assert not missing, f"lanes missing for the series present: {sorted(missing)} (have {lanes})"
    for lane in want:
        assert bp.page.evaluate(DRAWN_JS, lane) >= 1, f"lane {lane} draws no mark of its series"
    bp.assert_readable()
