"""Relist probe (stall detection, one call in flight) against a fake CRI server; capture trigger policy."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from live_fakes import FakeCRI, standard_handlers
from plegdoctor.live.cri.client import CRIClient
from plegdoctor.live.probe import RelistProbe
from plegdoctor.live.trigger import CaptureTrigger, bundles_in, rotate, writable_problem


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


def test_stall_holds_until_the_stalled_relist_finishes(tmp_path: Path) -> None:
    """The hung ListPodSandbox returns, ListContainers has just started: not a recovery yet."""
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, standard_handlers()) as fake, CRIClient(sock) as client:
        # a threshold well above the sleeps below: a loaded CI machine may delay the probe's
        # thread by a few hundred ms without the young ListContainers call reaching it
        probe = RelistProbe(client, period=0.02, stall_threshold=1.0, call_timeout=30)
        probe.start()
        time.sleep(0.2)
        assert probe.status().runtime_up  # look-alike: a normal relist is no stall
        first, second = threading.Event(), threading.Event()
        fake.block["ListPodSandbox"] = first
        # ListContainers is blocked only once a relist waits in ListPodSandbox (a call that
        # reached the fake after its block was set): blocking both at once, or on seeing a
        # ListPodSandbox call that began before, catches a relist in ListContainers instead
        blocked_from, deadline = time.monotonic(), time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            name == "ListPodSandbox" and at > blocked_from for name, at in list(fake.calls)
        ):
            time.sleep(0.005)
        fake.block["ListContainers"] = second
        time.sleep(1.5)
        first.set()  # the stalled call returns; ListContainers now hangs, but briefly so far
        time.sleep(0.1)
        st = probe.status()
        assert st.in_flight_method == "ListContainers" and st.in_flight_seconds < 1.0
        assert st.stalled and not st.runtime_up and "relist running" in st.reason
        second.set()
        fake.block.clear()
        time.sleep(0.3)
        st = probe.status()
        assert not st.stalled and st.runtime_up
        probe.stop()


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


def test_trigger_one_capture_per_episode_with_cooldown(tmp_path: Path) -> None:
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
    # a full capture dir is no refusal any more: the oldest bundles rotate out
    (tmp_path / "pleg-doctor-n-1.tar.gz").write_bytes(b"x")
    (tmp_path / "pleg-doctor-n-2.tar.gz").write_bytes(b"x")
    assert t.decide(200, True).capture


def _bundle(d: Path, name: str, size: int, mtime: float) -> Path:
    p = d / f"pleg-doctor-{name}.tar.gz"
    p.write_bytes(b"x" * size)
    os.utime(p, (mtime, mtime))
    return p


def test_rotate_keeps_the_newest_within_count_and_budget(tmp_path: Path) -> None:
    b = [_bundle(tmp_path, f"n-{i}", 100, 1000 + i) for i in range(5)]  # b[4] newest
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    assert rotate(str(tmp_path), max_count=5, budget=10_000) == []  # within both: nothing deleted
    assert rotate(str(tmp_path), max_count=3, budget=10_000) == b[:2]  # oldest first
    assert bundles_in(str(tmp_path)) == b[2:]
    assert rotate(str(tmp_path), max_count=3, budget=250) == [b[2]]  # bytes: 2 x 100 fit
    assert bundles_in(str(tmp_path)) == b[3:] and other.exists()


def test_rotate_keeps_a_newest_bundle_larger_than_the_budget(tmp_path: Path) -> None:
    old = _bundle(tmp_path, "old", 10, 1000)
    big = _bundle(tmp_path, "big", 5000, 2000)
    assert rotate(str(tmp_path), max_count=10, budget=1000) == [old]
    assert big.exists()
    # before a capture (keep_newest=False) even that one goes when it is over budget
    assert rotate(str(tmp_path), max_count=10, budget=1000, keep_newest=False) == [big]


def test_rotate_never_touches_symlinks_or_their_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious"
    target.write_text("keep me")
    caps = tmp_path / "caps"
    caps.mkdir()
    link = caps / "pleg-doctor-evil.tar.gz"
    link.symlink_to(target)
    os.utime(link, (1, 1), follow_symlinks=False)
    kept = _bundle(caps, "real", 10, 5000)
    assert rotate(str(caps), max_count=0, budget=1 << 20, keep_newest=False) == [kept]
    assert link.is_symlink() and target.read_text() == "keep me"


def test_make_room_then_rotate_hold_the_count(tmp_path: Path) -> None:
    for i in range(4):
        _bundle(tmp_path, f"n-{i}", 10, 1000 + i)
    t = CaptureTrigger(str(tmp_path), cooldown=0, max_captures=3, disk_budget=1 << 20, min_free=0)
    assert [p.name for p in t.make_room()] == ["pleg-doctor-n-0.tar.gz", "pleg-doctor-n-1.tar.gz"]
    _bundle(tmp_path, "new", 10, 3000)  # the capture
    assert t.rotate() == [] and len(bundles_in(str(tmp_path))) == 3


def test_trigger_disk_budget_rotates_instead_of_refusing(tmp_path: Path) -> None:
    _bundle(tmp_path, "n-1", 2048, 1000)
    t = CaptureTrigger(str(tmp_path), cooldown=0, max_captures=10, disk_budget=1024, min_free=0)
    d = t.decide(1, True)
    assert d.capture
    assert [p.name for p in t.make_room()] == ["pleg-doctor-n-1.tar.gz"]


def test_runtime_down_is_a_stall_after_the_threshold(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    with CRIClient(f"unix://{tmp_path}/absent.sock") as client:
        probe = RelistProbe(client, period=1, stall_threshold=5, wall=lambda: clock[0])
        result = probe.run_once()
        assert not result.ok and result.error_kind == "no-socket"
        st = probe.status()
        assert not st.runtime_up and not st.stalled  # down, but not for longer than the threshold yet
        assert st.seconds_since_success == 0.0 and st.last_success is None
        clock[0] += 6
        st = probe.status()
        assert st.stalled and not st.runtime_up and "runtime down" in st.reason
        assert st.seconds_since_success == 6.0  # counted from the probe's start: no success known


def test_seeded_last_success_counts_across_a_restart(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    with CRIClient(f"unix://{tmp_path}/absent.sock") as client:
        probe = RelistProbe(client, period=1, stall_threshold=5, wall=lambda: clock[0])
        probe.seed(last_success=clock[0] - 300, down_since=None)
        probe.run_once()
        st = probe.status()
        assert st.stalled and st.seconds_since_success == 300.0 and st.last_success == clock[0] - 300


def test_writable_problem_lines(tmp_path: Path) -> None:
    assert writable_problem(str(tmp_path)) == ""
    assert writable_problem(str(tmp_path / "nope")).endswith("does not exist")
    assert "free" in writable_problem(str(tmp_path), min_free=1 << 62)
