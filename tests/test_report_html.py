"""The HTML report's picture: the series builder (analysis.series) and the page (report.html).

The page is checked as a document here (what it contains, escaping, bounds); tests/integration
checks it in a real Chromium (hover, zoom, keyboard, no network)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plegdoctor.analysis.series import MAX_EVENTS, MAX_POINTS, MAX_TICKS, build_series, decimate
from plegdoctor.commands import demo_dir
from plegdoctor.evidence import Evidence
from plegdoctor.model import Event, EventKind, Meminfo, PressureSample, Ref
from plegdoctor.pipeline import analyze_paths
from plegdoctor.report import render
from plegdoctor.report.common import split_fix
from plegdoctor.report.html import script_json, series_of
from plegdoctor.report.html_svg import chain_svg, edge_label, wrap

INCIDENTS = Path(__file__).parent / "incidents"
T0 = datetime(2023, 6, 2, 5, 47, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo_page() -> str:
    d = analyze_paths([str(demo_dir())], display_root=str(demo_dir().parent), series=True)
    return render(d, "html")


def _ref(n: int, text: str = "x") -> Ref:
    return Ref("node.log", n, text)


def _psi(sec: float, some: float, n: int) -> PressureSample:
    return PressureSample(T0 + timedelta(seconds=sec), "io", "node", some, 0, 0, 0, some / 2, 0, 0, 0, _ref(n))


# --- series ----------------------------------------------------------------------------


def test_decimate_keeps_a_one_sample_spike_and_the_bound() -> None:
    pts = [(float(i), 1.0, f"f:{i}") for i in range(50_000)]
    pts[31_337] = (31_337.0, 99.0, "f:31337")
    kept = decimate(pts)
    assert len(kept) <= MAX_POINTS
    assert (31_337.0, 99.0, "f:31337") in kept
    assert [p[0] for p in kept] == sorted(p[0] for p in kept)
    assert decimate(pts[:10]) == pts[:10]  # under the cap: untouched


def test_ticks_are_bounded_but_keep_every_gap_border_and_the_ends() -> None:
    ev = Evidence()
    sid = ev.relists.source_id("k.log")
    t = T0.timestamp()
    for i in range(20_000):
        t += 1.0 if i != 12_345 else 40.0
        ev.relists.append(t, sid, i + 1, "border" if i in (12_344, 12_345) else None)
    s = build_series(ev, None, {})
    ticks = s["ticks"]
    assert ticks["count"] == 20_000 and ticks["shown"] == len(ticks["t"]) <= MAX_TICKS
    assert round(ev.relists.ts[12_344], 3) in ticks["t"] and round(ev.relists.ts[12_345], 3) in ticks["t"]
    assert ticks["t"][0] == round(ev.relists.ts[0], 3) and ticks["t"][-1] == round(ev.relists.ts[-1], 3)
    # spread over the whole day, not cut at the cap (the last third is drawn too)
    assert sum(1 for x in ticks["t"] if x > ev.relists.ts[15_000]) > MAX_TICKS // 5


def test_events_one_mark_per_line_rare_kinds_first_common_ones_near_the_gap() -> None:
    ev = Evidence()
    ref = _ref(7, "TaskExit failed: delete failed")
    ev.events.append(Event(T0, EventKind.TASK_EXIT_FAILED, "containerd", ref, {"container_id": "c1", "error": "e"}))
    ev.events.append(Event(T0, EventKind.TASK_DELETE_FAILED, "containerd", ref, {"container_id": "c1", "error": "e"}))
    for i in range(MAX_EVENTS * 3):  # far from the gap
        ts = T0 + timedelta(hours=2, seconds=i)
        ev.events.append(Event(ts, EventKind.CRI_CALL_FAILED, "kubelet", _ref(100 + i), {"method": "ListContainers"}))
    near = T0 + timedelta(seconds=30)
    ev.events.append(Event(near, EventKind.CRI_CALL_FAILED, "kubelet", _ref(99, "near"), {"method": "ListPodSandbox"}))
    gap = {"gaps": [{"start": (T0 + timedelta(seconds=10)).isoformat(), "end": near.isoformat(), "seconds": 20.0}]}
    s = build_series(ev, None, gap)
    marks = s["events"]
    assert len(marks) == MAX_EVENTS and s["events_total"] == MAX_EVENTS * 3 + 2
    exit_marks = [m for m in marks if m["evidence"].startswith("node.log:7:")]
    assert len(exit_marks) == 1  # two events of one line: one mark that says both
    assert "TaskExit handling failed" in exit_marks[0]["label"] and "task delete failed" in exit_marks[0]["label"]
    assert any(m["evidence"] == "node.log:99: near" for m in marks)  # the one near the gap is kept
    assert [m["t"] for m in marks] == sorted(m["t"] for m in marks)


def test_lanes_for_pressure_and_memory_quote_their_lines() -> None:
    ev = Evidence()
    ev.pressure += [_psi(i * 10, 10.0 * i, 1 + i) for i in range(5)]
    ev.meminfo.append(Meminfo(T0, 2048 * 1024, 512 * 1024, None, None, Ref("meminfo", 3, "Dirty: 2097152 kB")))
    s = build_series(ev, None, {})
    lanes = {lane["id"]: lane for lane in s["lanes"]}
    assert set(lanes) == {"psi-io", "memory"}  # no memory PSI, no disks: no empty lanes
    some = lanes["psi-io"]["lines"][0]
    assert some["name"] == "some avg10" and some["v"] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert some["refs"][2] == "node.log:3" and lanes["psi-io"]["max"] == 100.0
    assert lanes["memory"]["lines"][0]["v"] == [2048.0] and lanes["memory"]["max"] == 2048.0
    assert s["t0"] < T0.timestamp() < T0.timestamp() + 40 < s["t1"]


def test_no_timed_evidence_gives_no_window() -> None:
    s = build_series(Evidence(), None, {})
    assert s["t0"] is None and s["t1"] is None and s["lanes"] == [] and s["events"] == []


def test_incident_with_node_samples_has_its_lanes() -> None:
    d = analyze_paths([str(INCIDENTS / "05-disk-io-pressure")], series=True)
    ids = [lane["id"] for lane in d.series["lanes"]]
    assert "psi-io" in ids and "disk" in ids and "memory" in ids
    assert "series" not in d.to_json() and d.to_json(series=True)["series"] is d.series


# --- the page ----------------------------------------------------------------------------


def test_demo_page_verdict_box_comes_first_with_the_first_fix_and_its_link(demo_page: str) -> None:
    body = demo_page[demo_page.index("<main>") :]
    assert body.index('id="verdict-box"') < body.index('id="timeline"') < body.index('id="chain-graph"')
    box = body[: body.index("</section>")]
    assert '<span class="verdict-class">fsync-io-pressure</span>' in box
    assert "relisting stopped for 42 s" in box
    first = re.search(r'<div id="first-fix" class="first-fix"><b>Do first:</b> (.*?)</div>', box, re.S)
    assert first and "vm.dirty_bytes" in first.group(1) and "Removes" not in first.group(1)
    assert re.search(r'<div class="removes-link">Removes the link: fsync/fdatasync', box)
    assert '<details class="other-fixes">' in box and '<details class="other-fixes" open' not in box


def test_demo_page_draws_the_gap_the_events_and_the_chain(demo_page: str) -> None:
    gaps = re.findall(r'<rect class="gap"[^>]*data-seconds="([0-9.]+)"', demo_page)
    assert [round(float(x)) for x in gaps] == [42]
    assert 'class="event"' in demo_page and "journal-containerd.txt:1: " in demo_page
    nodes = re.findall(r'<g class="chain-node"[^>]*data-process="([^"]+)"', demo_page)
    assert nodes[:4] == ["kubelet", "containerd", "containerd", "containerd"]
    assert "containerd goroutine 1665" in demo_page and "containerd goroutine 1268" in demo_page
    assert demo_page.count('class="chain-edge"') >= 3
    labels = re.findall(r'<text class="edge-label"[^>]*>(.*?)</text>', demo_page)
    assert labels and all(re.sub("<[^>]+>", "", x).strip() for x in labels)


def test_page_loads_nothing_from_the_network_and_stays_small(demo_page: str) -> None:
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", demo_page)
    assert "url(http" not in demo_page and "@import" not in demo_page
    assert len(demo_page.encode()) < 300_000


def test_big_journal_page_stays_a_few_hundred_kb(tmp_path: Path) -> None:
    lines = []
    t = datetime(2023, 6, 15, 0, 0, 0, tzinfo=UTC)
    for i in range(30_000):
        t += timedelta(seconds=1 if i % 5000 else 30)
        stamp = t.strftime("%b %d %H:%M:%S.%f")
        klog = t.strftime("I%m%d %H:%M:%S.%f")
        lines.append(f'{stamp} node-1 kubelet[1]: {klog}    1 generic.go:191] "GenericPLEG: Relisting"')
        if i % 7 == 0:
            e = klog.replace("I", "E", 1)
            lines.append(
                f'{stamp} node-1 kubelet[1]: {e}    1 remote_runtime.go:432] "ListContainers with filter from '
                f'runtime service failed" err="rpc error: code = DeadlineExceeded desc = context deadline exceeded"'
            )
    log = tmp_path / "kubelet.log"
    log.write_text("\n".join(lines) + "\n")
    d = analyze_paths([str(log)], series=True)
    page = render(d, "html")
    assert len(page.encode()) < 400_000
    assert d.series["ticks"]["count"] == 30_000 and d.series["ticks"]["shown"] <= MAX_TICKS
    assert d.series["events_total"] > MAX_EVENTS >= len(d.series["events"])


def test_untrusted_text_is_escaped_in_the_pictures() -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    chain = [
        {"kind": "relist-gap", "process": "kubelet", "detail": evil, "evidence": [{"path": evil, "line": 1}]},
        {"kind": "mutex", "process": "containerd", "goroutine": 5, "resource": evil, "detail": evil, "evidence": []},
    ]
    svg = chain_svg(chain)
    assert "<script" not in svg and "<img" not in svg and "&lt;script&gt;" in svg
    doc = {
        "root_causes": [{"class": "unknown", "confidence": 0.3, "summary": evil, "chain": chain, "fixes": [evil]}],
        "pleg": {"gaps": [{"start": T0.isoformat(), "end": (T0 + timedelta(seconds=9)).isoformat(), "seconds": 9.0}]},
    }
    page = render(doc, "html")
    assert "<script>alert" not in page and "<img src=x" not in page
    blob = script_json({"x": "</script><script>alert(1)</script>\u2028"})
    assert "</script>" not in blob and "\u2028" not in blob and json.loads(blob)["x"].startswith("</script>")


def test_a_document_without_series_still_draws_its_gaps() -> None:
    doc = {"pleg": {"relists": 3, "first": T0.isoformat(), "last": (T0 + timedelta(seconds=60)).isoformat()}}
    doc["pleg"]["gaps"] = [
        {"start": (T0 + timedelta(seconds=5)).isoformat(), "end": (T0 + timedelta(seconds=50)).isoformat()}
    ]
    s = series_of(doc)
    assert s["t0"] < T0.timestamp() and s["t1"] > T0.timestamp() + 60 and len(s["gaps"]) == 1
    page = render(doc, "html")
    assert page.count('class="gap"') == 1 and 'class="verdict-class">stall, cause unknown' in page
    quiet = render({"pleg": {"relists": 0}}, "html")
    assert 'id="timeline"' not in quiet and "no stall found" in quiet


def test_split_fix_and_labels() -> None:
    action, link, rest = split_fix("Do X now. Removes the link: a -> b. Does NOT remove c. Risk: d.")
    assert (action, link) == ("Do X now.", "Removes the link: a -> b.") and rest.startswith("Does NOT")
    assert split_fix("No setting removes it: upgrade.") == ("No setting removes it: upgrade.", "", "")
    assert edge_label({"resource": "bbolt writer lock (bbolt.DB@0xc0002f8fc0)"}, {}) == "bbolt writer lock"
    assert edge_label({"tags": ["cri:ListContainers"], "kind": "rpc"}, {}) == "CRI ListContainers call"
    assert wrap("container status read lock", 15) == ["container", "status read", "lock"]
    assert len(wrap("a b c d e f g h i j k l m n o p q r s t", 5, 2)) == 2
