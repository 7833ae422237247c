"""The relist probe's recent calls travel with a capture: probe history -> manifest `trigger.calls`
-> StallTrigger.calls -> the report's CRI latency lane."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from live_fakes import FakeCRI, standard_handlers
from plegdoctor.analysis.series import build_series
from plegdoctor.evidence import Evidence
from plegdoctor.live.cri.client import CRIClient
from plegdoctor.live.probe import HISTORY_CALLS, RelistProbe
from plegdoctor.live.trigger import trigger_record
from plegdoctor.parsers.bundle_manifest import MAX_CALLS, trigger_from_manifest
from plegdoctor.pipeline import analyze_paths
from plegdoctor.report import render


def _manifest(calls: list) -> tuple[dict, str]:
    data = {
        "tool": "pleg-doctor 0.1.0",
        "node": "n1",
        "collected_at": "2026-11-28T14:29:18Z",
        "files": [],
        "trigger": {
            "source": "watch",
            "reason": "ListContainers in flight for 6.0s (threshold 5s)",
            "method": "ListContainers",
            "in_flight_seconds": 6.0,
            "call_started_at": "2026-11-28T14:29:12.000Z",
            "detected_at": "2026-11-28T14:29:18.000Z",
            "calls": calls,
        },
    }
    return data, json.dumps(data, indent=2)


def test_probe_keeps_its_last_calls_in_order_and_bounded(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, standard_handlers(2)), CRIClient(sock) as client:
        probe = RelistProbe(client, period=0.05, stall_threshold=1)
        for _ in range(3):
            probe.run_once()
        calls = probe.recent_calls()
        assert [c.method for c in calls] == ["ListPodSandbox", "ListContainers"] * 3
        assert [c.started for c in calls] == sorted(c.started for c in calls) and all(c.ok for c in calls)
        probe._history.extend(calls * HISTORY_CALLS)  # what a long watch accumulates
        assert len(probe.recent_calls()) == HISTORY_CALLS
        record = trigger_record(probe.status(), "unix://" + sock, 5.0, history=calls)
    assert len(record["calls"]) == 6
    first = record["calls"][0]
    assert first[1] == "ListPodSandbox" and first[3] is True and first[0].endswith("Z")
    json.dumps(record)  # plain JSON for the manifest


def test_manifest_calls_become_the_triggers_calls_with_their_line() -> None:
    calls = [
        ["2026-11-28T14:29:10.000Z", "ListPodSandbox", 0.004, True],
        ["2026-11-28T14:29:10.004Z", "ListContainers", 0.012, True],
        ["2026-11-28T14:29:11.100Z", "ListPodSandbox", 0.9, False],
        ["not a time", "ListContainers", 1.0, True],  # malformed: skipped, the rest read
        ["2026-11-28T14:29:11.200Z", "ListContainers", -1, True],
        ["2026-11-28T14:29:11.300Z", {"x": 1}, 1.0, True],
        "junk",
    ]
    data, text = _manifest(calls)
    trig = trigger_from_manifest(data, text, "b.tar.gz:manifest.json")
    assert trig is not None and len(trig.calls) == 3
    start, method, seconds, ok = trig.calls[2]
    assert (method, seconds, ok) == ("ListPodSandbox", 0.9, False)
    assert start == datetime(2026, 11, 28, 14, 29, 11, 100000, tzinfo=UTC).timestamp()
    assert trig.calls_ref is not None and '"calls"' in trig.calls_ref.text
    assert text.splitlines()[trig.calls_ref.line - 1].strip().startswith('"calls"')
    huge, htext = _manifest([["2026-11-28T14:29:10Z", "ListContainers", 0.01, True]] * (MAX_CALLS + 50))
    assert len(trigger_from_manifest(huge, htext, "m").calls) == MAX_CALLS  # bounded
    none, ntext = _manifest([])
    t2 = trigger_from_manifest(none, ntext, "m")
    assert t2 is not None and t2.calls == () and t2.calls_ref is None


def test_series_draws_the_probe_latency_per_method() -> None:
    data, text = _manifest(
        [
            ["2026-11-28T14:29:10.000Z", "ListPodSandbox", 0.004, True],
            ["2026-11-28T14:29:10.004Z", "ListContainers", 0.012, True],
            ["2026-11-28T14:29:11.000Z", "ListPodSandbox", 2.5, True],
        ]
    )
    ev = Evidence()
    trig = trigger_from_manifest(data, text, "m.json")
    assert trig is not None
    ev.triggers.append(trig)
    s = build_series(ev, None, {})
    lane = next(lane for lane in s["lanes"] if lane["id"] == "cri-latency")
    assert [ln["name"] for ln in lane["lines"]] == ["ListContainers", "ListPodSandbox"]
    assert lane["lines"][1]["v"] == [0.004, 2.5] and lane["max"] == 2.5
    assert lane["lines"][1]["refs"][0] == f"m.json:{trig.calls_ref.line}"  # type: ignore[union-attr]
    quiet = Evidence()
    assert all(lane["id"] != "cri-latency" for lane in build_series(quiet, None, {})["lanes"])


def test_a_bundle_with_probe_calls_draws_the_lane_in_the_report(tmp_path: Path) -> None:
    _, text = _manifest(
        [[f"2026-11-28T14:29:{s:02d}.000Z", "ListPodSandbox", 0.01 * (s + 1), True] for s in range(0, 12)]
    )
    bundle = tmp_path / "pleg-doctor-n1-20261128T142918Z.tar.gz"
    src = tmp_path / "manifest.json"
    src.write_text(text)
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(src, arcname="manifest.json")
    page = render(analyze_paths([str(bundle)], series=True), "html")
    assert 'data-lane="cri-latency"' in page and 'data-lane="cri"' in page  # the latency and the stalled call
