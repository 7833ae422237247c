"""Relist probe (stall detection, one call in flight) against a fake CRI server; capture trigger policy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from live_fakes import FakeCRI, standard_handlers
from plegdoctor.live.cri.client import CRIClient
from plegdoctor.live.probe import RelistProbe
from plegdoctor.live.trigger import CaptureTrigger, writable_problem


def test_relist_calls_sandboxes_then_containers_and_counts(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, standard_handlers(5)) as fake, CRIClient(sock) as client:
        probe = RelistProbe(client, period=0.05, stall_threshold=1)
        result = probe.run_once()
        assert result.ok and (result.sandboxes, result.containers) == (1, 5)
        assert [c.method for c in result.calls] == ["ListPodSandbox", "ListContainers"]
        assert [name for name, _ in fake.calls] == ["ListPodSandbox", "ListContainers"]
        st = probe.status()
        assert st.runtime_up and not st.stalled and st.last_success == result.started


def test_hung_call_is_a_stall_and_never_piles_up(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, standard_handlers()) as fake, CRIClient(sock) as client:
        calls: list[str] = []
        probe = RelistProbe(
            client, period=0.02, stall_threshold=0.3, call_timeout=30, on_call=lambda r: calls.append(r.method)
        )
        probe.start()
        time.sleep(0.3)
        assert probe.status().runtime_up
        gate = threading.Event()
        fake.block["ListContainers"] = gate
        time.sleep(1.2)
        st = probe.status()
        assert st.stalled and not st.runtime_up
        assert st.in_flight_method == "ListContainers" and st.in_flight_seconds > 0.3
        assert "in flight" in st.reason
        assert fake.max_in_flight == 1  # one pending call, not one per period
        n_calls = len(fake.calls)
        time.sleep(0.5)
        assert len(fake.calls) == n_calls  # nothing new was sent while the call hangs
        gate.set()
        fake.block.pop("ListContainers")
        time.sleep(0.3)
        st = probe.status()
        assert not st.stalled and st.runtime_up
        assert st.seconds_since_success is not None and st.seconds_since_success < 0.3
        probe.stop()
        assert fake.max_in_flight == 1


def test_deadline_exceeded_is_a_stall(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, standard_handlers()) as fake, CRIClient(sock) as client:
        fake.delay["ListPodSandbox"] = 1.0
        probe = RelistProbe(client, period=1, stall_threshold=5, call_timeout=0.2)
        result = probe.run_once()
        assert not result.ok and result.error_kind == "deadline-exceeded"
        assert len(result.calls) == 1  # ListContainers not attempted after a failed ListPodSandbox
        st = probe.status()
        assert st.stalled and not st.runtime_up and st.last_success is None


def test_slow_but_answering_relist_over_threshold_is_a_stall(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, standard_handlers()) as fake, CRIClient(sock) as client:
        fake.delay["ListContainers"] = 0.4
        probe = RelistProbe(client, period=1, stall_threshold=0.3, call_timeout=5)
        assert probe.run_once().ok
        st = probe.status()
        assert st.stalled and "last relist took" in st.reason


def test_trigger_one_capture_per_episode_with_cooldown_and_cap(tmp_path: Path) -> None:
    t = CaptureTrigger(str(tmp_path), cooldown=100, max_captures=2, disk_budget=1 << 20, min_free=0)
    assert t.decide(0, False).capture is False
    d = t.decide(1, True)
    assert d.capture and d.reason == "stall started"
    t.captured(1)
    assert t.decide(2, True).capture is False  # same episode
    t.decide(3, False)
    d = t.decide(50, True)  # new episode inside the cooldown
    assert not d.capture and d.reason.startswith("cooldown")
    t.decide(60, False)
    (tmp_path / "pleg-doctor-n-1.tar.gz").write_bytes(b"x")
    (tmp_path / "pleg-doctor-n-2.tar.gz").write_bytes(b"x")
    d = t.decide(200, True)
    assert not d.capture and d.reason.startswith("cap reached: 2 bundles")


def test_trigger_disk_budget(tmp_path: Path) -> None:
    (tmp_path / "pleg-doctor-n-1.tar.gz").write_bytes(b"x" * 2048)
    t = CaptureTrigger(str(tmp_path), cooldown=0, max_captures=10, disk_budget=1024, min_free=0)
    d = t.decide(1, True)
    assert not d.capture and "disk budget" in d.reason


def test_writable_problem_lines(tmp_path: Path) -> None:
    assert writable_problem(str(tmp_path)) == ""
    assert writable_problem(str(tmp_path / "nope")).endswith("does not exist")
    assert "free" in writable_problem(str(tmp_path), min_free=1 << 62)
