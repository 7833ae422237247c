"""PLEG timeline: gaps, percentiles, unhealthy windows, runtime intervals, JSON contract."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plegdoctor.analysis.pleg_timeline import build_timeline, events_around, percentile, timed_events
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import Event, EventKind, InputReport, Ref
from plegdoctor.parsers.logs import containerd as containerd_log
from plegdoctor.parsers.logs import journal as journald
from plegdoctor.parsers.logs import kubelet as kubelet_log
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "logs"
ROOT = Path(__file__).parent.parent


def load(*names_and_mods, **time_kw) -> Evidence:
    ev = Evidence()
    time = TimeContext(**time_kw)
    for name, mod in names_and_mods:
        for src in iter_sources([str(FIX / name) if not str(name).startswith("/") else str(name)]):
            ctx = ParseContext(ev, InputReport(src.display, mod.KIND), time)
            mod.parse(src, ctx)
    return ev


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0], 99) == 1.0
    assert percentile([], 50) is None


def test_structured_fixture_timeline():
    tl = build_timeline(load(("kubelet-klog-structured.log", kubelet_log), year=2023))
    j = tl.to_json()
    assert j["relists"] == 7
    assert j["first"] == "2023-06-02T05:48:05.348117+00:00" and j["last"] == "2023-06-02T05:52:01.680001+00:00"
    assert [g["seconds"] for g in j["gaps"]] == [pytest.approx(222.317391), pytest.approx(10.003144)]
    gap = j["gaps"][0]
    assert gap["start"] == "2023-06-02T05:48:07.352436+00:00" and gap["end"] == "2023-06-02T05:51:49.669827+00:00"
    assert [e["line"] for e in gap["evidence"]] == [5, 14] and "GenericPLEG: Relisting" in gap["evidence"][0]["text"]
    assert j["max_gap_seconds"] == pytest.approx(222.317391)
    (w,) = j["unhealthy"]
    assert w["start"] == "2023-06-02T05:51:07.400000+00:00" and w["end"] == "2023-06-02T05:51:12.400000+00:00"
    assert w["max_last_seen_seconds"] == pytest.approx(185.049)
    # the window implies relisting stopped at end - last_seen: the tick at 05:48:07.35
    assert w["relisting_stopped_at"].startswith("2023-06-02T05:48:07.35")
    assert j["relist_errors"] == 1 and j["cri_deadline_exceeded"] == 1
    assert j["cri_failures_by_method"] == {"ContainerStatus": 1, "ListContainers": 1}
    assert j["node_not_ready_transitions"] == 1  # "Node became not ready" + event="NodeNotReady" = one transition
    assert j["evented_pleg_fallbacks"] == 1
    assert j["interval_p50_seconds"] == pytest.approx((1.002995 + 1.004035) / 2, abs=1e-6)
    json.dumps(j)  # serialisable


def test_gap_threshold_parameter():
    ev = load(("kubelet-klog-structured.log", kubelet_log), year=2023)
    assert len(build_timeline(ev, gap_seconds=60).gaps) == 1
    assert len(build_timeline(ev, gap_seconds=1.0).gaps) == 6


def test_containerd_intervals_on_the_same_axis():
    ev = load(("containerd-journald.log", containerd_log), ("containerd-json.log", containerd_log), year=2023)
    tl = build_timeline(ev)
    j = tl.to_json()
    upd = j["update_resources"]
    # json log: a start without an end (still open); journald log: start .. failed end
    closed = [u for u in upd if not u["open"]]
    still_open = [u for u in upd if u["open"]]
    assert len(closed) == 1 and closed[0]["ok"] is False
    assert closed[0]["seconds"] == pytest.approx(109.9999)
    assert len(still_open) == 1 and still_open[0]["end"] is None
    assert still_open[0]["seconds"] == pytest.approx(
        (datetime(2023, 6, 15, 6, 41, 40, tzinfo=UTC) - datetime(2023, 6, 15, 6, 39, 30, tzinfo=UTC)).total_seconds()
    )
    (pull,) = j["pulls"]
    assert pull["id"] == "registry.example/app:2.1" and pull["seconds"] == pytest.approx(102.3)
    (stop,) = j["stops"]
    assert stop["kind"] == "stop-container" and stop["ok"] is False and stop["seconds"] == pytest.approx(120.0)
    assert len(j["task_exit_failures"]) == 2 and len(j["task_delete_failures"]) == 2


def test_events_around_a_gap_mix_kubelet_and_containerd():
    ev = load(("journal-short.log", journald), year=2023)
    tl = build_timeline(ev)
    (gap,) = tl.gaps
    around = events_around(ev, gap.start, gap.end, timeline=tl)
    kinds = [str(e.kind) for e in around["events"]]
    assert kinds[0] == "update-resources-start" and "hung-task" not in kinds  # kernel line has no time of its own
    assert "cri-call-failed" in kinds and "pleg-unhealthy" in kinds
    (held,) = around["intervals"]
    assert held.kind == "update-resources" and held.seconds == pytest.approx(222.6)


def test_events_around_sliced_from_the_sorted_events_is_the_walk_over_all_of_them():
    # out of file order, equal times, no time, and events right on a window's edges
    rng = random.Random(7)
    t0 = datetime(2023, 6, 2, 5, 0, tzinfo=UTC)
    ev = Evidence()
    for i in range(400):
        ts = (
            None if i % 37 == 0 else t0 + timedelta(seconds=rng.choice((0, 5, 10, 10, 15, 20.5, 30)) + rng.randrange(9))
        )
        ev.events.append(Event(ts, EventKind.CRI_CALL_FAILED, "kubelet", Ref("k.log", i), {}))
    ordered = timed_events(ev)
    for start_s, end_s in [(10, 10), (0, 3), (15, 20.5), (-100, -50), (5, 1000)]:
        start, end = t0 + timedelta(seconds=start_s), t0 + timedelta(seconds=end_s)
        lo, hi = start - timedelta(seconds=5), end + timedelta(seconds=5)
        walk = sorted((e for e in ev.events if e.ts is not None and lo <= e.ts <= hi), key=lambda e: e.ts)
        assert events_around(ev, start, end, ordered=ordered)["events"] == walk
        assert events_around(ev, start, end)["events"] == walk
    assert any(e.ts == t0 + timedelta(seconds=15) for e in walk)  # a window edge held events


def test_open_gap_when_relisting_never_resumes(tmp_path):
    p = tmp_path / "k.log"
    p.write_text(
        'I0602 05:48:06.000000    1 generic.go:191] "GenericPLEG: Relisting"\n'
        'I0602 05:48:07.000000    1 generic.go:191] "GenericPLEG: Relisting"\n'
        'E0602 05:51:08.000000    1 kubelet.go:2359] "Skipping pod synchronization" err="PLEG is not healthy: '
        'pleg was last seen active 3m1s ago; threshold is 3m0s"\n'
    )
    tl = build_timeline(load((str(p), kubelet_log), year=2023))
    (gap,) = tl.gaps
    assert gap.open and gap.seconds == pytest.approx(181.0) and gap.end_ref is None
    assert tl.to_json()["gaps"][0]["open"] is True


def test_generated_journal_gaps_match_the_truth(tmp_path):
    out = tmp_path / "k.log"
    truth = tmp_path / "k.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gen_kubelet_journal.py"),
            "--size",
            "3M",
            "--out",
            str(out),
            "--truth",
            str(truth),
            "--stalls",
            "3",
            "--seed",
            "7",
        ],
        check=True,
    )
    expected = json.loads(truth.read_text())["gaps"]
    tl = build_timeline(load((str(out), kubelet_log), year=2023)).to_json()
    assert [(g["start"], g["end"]) for g in tl["gaps"]] == [(g["start"], g["end"]) for g in expected]
