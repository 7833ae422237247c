"""The lab's comparison page (lab.html): plots on one scale, the table, the verdict, escaping, the CLI."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from plegdoctor.lab import compare
from plegdoctor.lab.cli import command
from plegdoctor.lab.html import render_compare_html
from plegdoctor.lab.plot import GAP_SECONDS, X_LABEL, Y_LABEL, Series
from plegdoctor.lab.variants import parse_variant
from plegdoctor.lab.workload import CallRecord, Interval, RelistRecord, WorkloadResult

SVG = "{http://www.w3.org/2000/svg}"
STALL_START = 10.0


def _result(latencies: list[float], *, syncfs: bool = False) -> WorkloadResult:
    """Relists one second apart (as the lab's relister), starting 5 s before the stall phase."""
    res = WorkloadResult(t0_wall=0.0, stall_start=STALL_START, stall_end=STALL_START + 60.0)
    t = STALL_START - 5.0
    for sec in latencies:
        res.relists.append(RelistRecord(t, sec, sec / 2, sec / 2))
        t += sec + 1.0
    res.calls.append(CallRecord("StopContainer", "writer-0", STALL_START, max(latencies), phase="stall"))
    if syncfs:
        res.umounts += [Interval("umount2", 11, STALL_START, STALL_START + 20), Interval("syncfs", 11, 10.1, 29.0)]
    return res


def _matrix(specs: dict[str, list[float]]) -> tuple[list[compare.RunFigures], Series, dict[str, WorkloadResult]]:
    runs, series, results = [], [], {}
    for name, latencies in specs.items():
        v = parse_variant(name)
        res = _result(latencies, syncfs=not v.volatile)
        f = compare.figures(name, "1.7.24", v.volatile, v.mitigations, res)
        f.expected_mechanism = compare.expected_mechanism(f)
        runs.append(f)
        # as lab.runner.run_matrix builds them: start relative to the stall phase
        series.append((name, [(r.start - res.stall_start, r.seconds) for r in res.relists]))
        results[name] = res
    return runs, series, results


SPECS = {
    "1.7": [0.01] * 6 + [25.0] + [0.01] * 4 + [4.0] + [0.02] * 3,
    "1.7+volatile": [0.01] * 6 + [6.0] + [0.01] * 8,
    "1.7+volatile+dirty": [0.01] * 6 + [1.1, 0.4] + [0.01] * 7,
}


def _page(runs: list[compare.RunFigures], series: Series, **meta: object) -> tuple[str, ET.Element]:
    doc = compare.to_json(runs, {"title": "lab test", **meta})
    html = render_compare_html(doc, series)
    return html, ET.fromstring(html)  # the page is well-formed XML by contract


def _plots(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}svg") if "latency-plot" in el.get("class", "").split()]


def _rows(root: ET.Element) -> list[ET.Element]:
    table = next(t for t in root.iter("table") if t.get("id") == "variants")
    tbody = table.find("tbody")
    assert tbody is not None
    return list(tbody)


def _text(el: ET.Element) -> str:
    return "".join(el.itertext())


def _frame(svg: ET.Element) -> tuple[float, float]:
    """(top, height) of the plot area: the frame rect."""
    rect = next(r for r in svg.iter(f"{SVG}rect") if r.get("fill") == "none")
    return float(rect.get("y", "0")), float(rect.get("height", "0"))


def test_one_plot_per_variant_all_on_one_scale_with_the_threshold_and_axes():
    runs, series, _ = _matrix(SPECS)
    _, root = _page(runs, series)
    plots = _plots(root)
    assert [p.get("data-variant") for p in plots] == list(SPECS)
    ymaxes = {p.get("data-y-max") for p in plots}
    assert len(ymaxes) == 1
    ymax = float(ymaxes.pop())
    assert ymax == pytest.approx(25.0 * 1.08, abs=0.01)  # from the worst relist of all variants
    assert len({(p.get("data-x-min"), p.get("data-x-max")) for p in plots}) == 1
    for p in plots:
        top, height = _frame(p)
        bottom = top + height
        (threshold,) = [ln for ln in p.iter(f"{SVG}line") if ln.get("class") == "threshold"]
        assert threshold.get("stroke-dasharray")
        assert (bottom - float(threshold.get("y1", "0"))) / height == pytest.approx(GAP_SECONDS / ymax, abs=0.01)
        texts = [_text(t) for t in p.iter(f"{SVG}text")]
        assert X_LABEL in texts and Y_LABEL in texts
        # the worst relist of each variant sits at its height on the shared scale, not on its own
        name = p.get("data-variant", "")
        worst = max(SPECS[name])
        top_y = min(float(c.get("cy", "0")) for c in p.iter(f"{SVG}circle"))
        assert (bottom - top_y) / height == pytest.approx(worst / ymax, abs=0.01)


def test_each_relist_is_a_point_whose_title_gives_start_and_latency():
    runs, series, results = _matrix(SPECS)
    _, root = _page(runs, series)
    for p in _plots(root):
        name = p.get("data-variant", "")
        relists = results[name].relists
        points = [c for c in p.iter(f"{SVG}circle") if c.get("class") == "relist"]
        assert len(points) == len(relists)
        titles = [_text(c.find(f"{SVG}title")) for c in points]  # type: ignore[arg-type]
        assert all(re.fullmatch(r"start [+-]\d+\.\d s, latency .+", t) for t in titles)
    baseline = _plots(root)[0]
    titles = [_text(c) for c in baseline.iter(f"{SVG}circle")]
    stall = results["1.7"].relists[6]
    assert f"start {stall.start - STALL_START:+.1f} s, latency 25 s" in titles
    assert titles[0].startswith("start -5.0 s")  # relists before the stall phase are shown, left of 0


def test_table_has_one_row_per_run_and_marks_the_best():
    runs, series, _ = _matrix(SPECS)
    runs.append(compare.RunFigures("2.1", "2.1.9", False, [], error="containerd did not start"))
    runs[0].bundle, runs[0].diagnosis = "/lab/runs/x/1.7/stall-1.tar.gz", "overlay-umount-sync"
    runs[0].diagnosis_matches = True
    runs[1].bundle, runs[1].diagnosis, runs[1].diagnosis_matches = "/lab/runs/x/v/stall-1.tar.gz", "cni", False
    _, root = _page(runs, series, run_dir="/lab/runs/x")
    rows = _rows(root)
    assert [r.get("data-variant") for r in rows] == [r.variant for r in runs]
    best = compare.best_variant(runs)
    assert best is not None and best.variant == "1.7+volatile+dirty"
    assert [r.get("data-variant") for r in rows if r.get("class") == "best"] == [best.variant]
    cells = [_text(td).strip() for td in rows[0]]
    assert "25 s" in cells and "yes: overlay-umount-sync" in cells
    assert any(c == "no: expected fsync-io-pressure" for c in (_text(td).strip() for td in rows[1]))
    links = [a.get("href") for a in rows[0].iter("a")]
    assert "1.7/stall-1.tar.gz" in links  # relative to the page in the run directory
    assert "failed: containerd did not start" in _text(rows[-1])
    header = _text(next(t for t in root.iter("table") if t.get("id") == "variants").find("thead"))  # type: ignore[arg-type]
    for word in ("p50", "p99", "max", "blocked", "gaps", "StopContainer", "PullImage", "umount", "syncfs"):
        assert word in header
    assert "UpdateContainer" in header and "Resources" in header


def test_the_verdict_comes_first_and_names_best_baseline_and_the_links_the_doc_gives():
    runs, series, _ = _matrix(SPECS)
    links = {"volatile": "umount -> syncfs of the whole backing fs", "nosync": "bbolt commit fdatasync"}
    _, root = _page(runs, series, links=links)
    body = root.find("body")
    assert body is not None
    first = body[0]
    assert first.get("id") == "verdict"
    text = _text(first)
    assert "1.7+volatile+dirty" in text and "1.1 s" in text and "25 s" in text and "baseline 1.7" in text
    items = [_text(li) for li in next(u for u in root.iter("ul") if u.get("id") == "links")]
    assert items == ["volatile removes: umount -> syncfs of the whole backing fs"]  # nosync was not run
    _, plain = _page(runs, series)
    assert not [u for u in plain.iter("ul") if u.get("id") == "links"]  # nothing said, nothing claimed


def test_names_and_errors_are_escaped():
    runs, series, _ = _matrix({"1.7": SPECS["1.7"]})
    evil = '1.7<script>alert(1)</script>"'
    runs[0].variant = evil
    runs.append(compare.RunFigures("<b>x</b>", "2.1.9", False, [], error="<img src=x onerror=alert(1)>"))
    html, root = _page(runs, [(evil, series[0][1])], title="t <i>")
    assert "<script" not in html and "<img" not in html and "<b>x" not in html and "<i>" not in html
    assert [p.get("data-variant") for p in _plots(root)] == [evil]
    assert evil in _text(root.find("body/p"))  # type: ignore[arg-type]
    assert "failed: <img src=x onerror=alert(1)>" in _text(_rows(root)[1])


def test_a_run_where_every_variant_failed_still_renders_a_clear_message():
    runs = [
        compare.RunFigures("1.7", "1.7.24", False, [], error="nbdkit: not found"),
        compare.RunFigures("1.7+volatile", "1.7.24", True, ["volatile"], error="nbdkit: not found"),
    ]
    _, root = _page(runs, [])
    assert _plots(root) == []
    (msg,) = [p for p in root.iter("p") if p.get("id") == "no-relists"]
    assert "No variant recorded a relist" in _text(msg) and "failed" in _text(msg)
    verdict = next(p for p in root.iter("p") if p.get("id") == "verdict")
    assert "none" in verdict.get("class", "") and "2 of 2 failed" in _text(verdict)
    assert len(_rows(root)) == 2 and all("failed: nbdkit" in _text(r) for r in _rows(root))


def test_text_is_at_least_12px_and_every_link_is_reachable():
    runs, series, _ = _matrix(SPECS)
    html, root = _page(runs, series)
    css = _text(next(root.iter("style")))
    body_px = int(re.search(r"body\{font:(\d+)px", css).group(1))  # type: ignore[union-attr]
    sizes = [float(m) for m in re.findall(r"font(?:-size)?:\s*(\d+)px", css)]
    sizes += [float(m) * body_px for m in re.findall(r"font-size:\s*([\d.]+)em", css)]
    # SVG sizes are user units; the plots are drawn 1:1 (CSS width = viewBox width)
    sizes += [float(el.get("font-size", "")) for el in root.iter() if el.get("font-size")]
    assert sizes and min(sizes) >= 12
    assert not re.search(r"font(?:-size)?:\s*[\d.]+(?:rem|%|pt)", css)
    for p in _plots(root):
        assert re.search(rf"svg\.latency-plot\{{[^}}]*width:{p.get('width')}px", css)
        assert p.get("viewBox", "").split()[2] == p.get("width")
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    anchors = list(root.iter("a"))
    assert anchors and all(a.get("href") for a in anchors)  # an <a> without href is not focusable
    for a in anchors:
        href = a.get("href", "")
        if href.startswith("#"):
            assert href[1:] in ids
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html and "<link" not in html


# -- the CLI ----------------------------------------------------------------------------------
def _run_dir(lab: Path) -> Path:
    """A finished run as lab.runner leaves it: compare.json and records.json per variant."""
    run_dir = lab / "runs" / "20260101T000000Z"
    runs, _, results = _matrix(SPECS)
    for name, res in results.items():
        vdir = run_dir / name.replace("/", "_")
        vdir.mkdir(parents=True)
        (vdir / "records.json").write_text(json.dumps(asdict(res)))
    (run_dir / "compare.json").write_text(compare.dumps(compare.to_json(runs, {"title": "t", "run_dir": str(run_dir)})))
    return run_dir


def test_lab_report_html_writes_the_page_from_a_run_directory(tmp_path: Path):
    run_dir = _run_dir(tmp_path / "lab")
    out = tmp_path / "page.html"
    result = CliRunner().invoke(command, ["report", "--dir", str(tmp_path / "lab"), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert f"page: {out}" in result.output and "best fix on this node: 1.7+volatile+dirty" in result.output
    root = ET.fromstring(out.read_text())
    assert [p.get("data-variant") for p in _plots(root)] == list(SPECS)
    assert not (run_dir / "compare.html").exists()  # report alone writes nothing in the run
    as_json = CliRunner().invoke(command, ["report", "--run", str(run_dir), "--html", str(out), "-o", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["html"] == str(out)


def test_lab_report_reanalyze_writes_compare_html_next_to_compare_json(tmp_path: Path):
    run_dir = _run_dir(tmp_path / "lab")
    result = CliRunner().invoke(command, ["report", "--run", str(run_dir), "--reanalyze"])
    assert result.exit_code == 0, result.output
    root = ET.fromstring((run_dir / "compare.html").read_text())
    assert len(_plots(root)) == len(SPECS) and len(_rows(root)) == len(SPECS)


def test_lab_report_html_on_a_broken_run_is_one_error(tmp_path: Path):
    run_dir = _run_dir(tmp_path / "lab")
    (run_dir / "1.7" / "records.json").write_text("{not json")
    result = CliRunner().invoke(command, ["report", "--run", str(run_dir), "--html", str(tmp_path / "p.html")])
    assert result.exit_code != 0 and "cannot write the page" in str(result.exception)


def test_lab_status_names_the_page_of_the_last_comparison(tmp_path: Path):
    lab = tmp_path / "lab"
    run_dir = _run_dir(lab)
    (run_dir / "compare.txt").write_text("t\n")
    before = CliRunner().invoke(command, ["status", "--dir", str(lab)])
    assert before.exit_code == 0 and "its page" not in before.output
    (run_dir / "compare.html").write_text("<!DOCTYPE html>\n")
    after = CliRunner().invoke(command, ["status", "--dir", str(lab)])
    assert after.exit_code == 0 and f"its page: {run_dir / 'compare.html'}" in after.output
