"""watch against a fake CRI server: metrics while a call hangs, a capture on the stall, the findings exported."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from live_fakes import FakeCRI, standard_handlers, watch_config
from plegdoctor.errors import UserError
from plegdoctor.live.capture_dir import STATE_FILE, PersistedState, clean_stage_dirs, prepare_capture_dir
from plegdoctor.live.exporter import METRIC_NAMES, Exporter, ServerLimits, WatchState
from plegdoctor.live.trigger import bundles_in
from plegdoctor.live.watch import Watcher


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}" if s.labels else "")
            out[key] = s.value
    return out


def test_watch_exports_stall_and_captures(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    captures = tmp_path / "captures"
    captures.mkdir()
    with FakeCRI(sock, standard_handlers(2)) as fake:
        w = Watcher(watch_config(sock, captures, cooldown=0)).start()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        try:
            time.sleep(0.6)
            m = _metrics(w.port)
            assert m["pleg_doctor_runtime_up"] == 1 and m["pleg_doctor_relist_containers"] == 2
            assert m["pleg_doctor_cri_call_duration_seconds_count{method=ListContainers}"] >= 2
            assert "pleg_doctor_pressure_avg10_ratio{kind=some,resource=io}" in m
            gate = threading.Event()
            fake.block["ListPodSandbox"] = gate
            deadline = time.monotonic() + 30
            while not w.captures and time.monotonic() < deadline:
                time.sleep(0.1)
            m = _metrics(w.port)
            assert m["pleg_doctor_stalled"] == 1 and m["pleg_doctor_runtime_up"] == 0
            assert m["pleg_doctor_relist_in_flight_seconds"] > 0.5
            assert fake.max_in_flight == 1
            (bundle,) = w.captures
            with tarfile.open(bundle) as tar:
                manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            assert manifest["trigger"]["in_flight_method"] == "ListPodSandbox"
            # the fake is not a containerd process: the bundle says what it skipped
            assert any("no containerd process found" in n for n in manifest["notes"])
            paths = {f["path"] for f in manifest["files"]}
            assert {"proc/pressure/io", "proc/diskstats", "tasks/stacks.txt"} <= paths
            gate.set()
            fake.block.pop("ListPodSandbox")
            time.sleep(0.5)
            m = _metrics(w.port)
            assert m["pleg_doctor_stalled"] == 0 and m["pleg_doctor_stalls_total"] == 1
            assert m["pleg_doctor_captures_total{result=ok}"] == 1
            exported = {k.split("{")[0].removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for k in m}
            exported = {n for n in exported if not n.endswith("_created")}
            assert exported <= set(METRIC_NAMES) | {n + "_total" for n in METRIC_NAMES}
        finally:
            w.stop()
            t.join(5)


def test_findings_are_exported(tmp_path: Path) -> None:
    from plegdoctor.live.exporter import Exporter, WatchState

    state = WatchState(findings=[("PD201", "cri-status-lock", "critical")], root_causes=[("cri-status-lock", 0.82)])
    exp = Exporter(state)
    exp.attach(None)
    text = exp.render()
    assert 'pleg_doctor_finding_active{class="cri-status-lock",code="PD201",severity="critical"} 1.0' in text
    assert 'pleg_doctor_root_cause_confidence{class="cri-status-lock"} 0.82' in text


# -- the metrics server cannot be starved -----------------------------------------------------


def _get(port: int, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        return bytes(resp.read())


def _raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_idle_and_trickling_clients_do_not_starve_a_scrape() -> None:
    exp = Exporter(WatchState())
    exp.attach(None)
    limits = ServerLimits(workers=4, connections=64, idle_timeout=2, request_deadline=1, housekeeping=0.2)
    port = exp.serve("127.0.0.1", 0, limits)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]  # never send
    loris = socket.create_connection(("127.0.0.1", port), timeout=10)
    loris.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    try:
        t0 = time.monotonic()
        for _ in range(10):  # more scrapes than workers, all while 41 connections are held
            assert b"pleg_doctor_build_info" in _get(port, timeout=2)
        assert time.monotonic() - t0 < 2
        # the trickling client is cut at the request deadline, though it keeps sending
        deadline = time.monotonic() + 5
        cut = False
        while time.monotonic() < deadline and not cut:
            try:
                loris.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
            time.sleep(0.1)
        assert cut and time.monotonic() - t0 < 4
        # idle connections are closed after the idle timeout
        time.sleep(limits.idle_timeout + 0.5)
        assert all(_closed_by_peer(s) for s in idle)
        workers = [t for t in threading.enumerate() if t.name.startswith("waitress-")]
        assert 0 < len(workers) <= limits.workers
    finally:
        for s in [*idle, loris]:
            s.close()
        exp.shutdown()


def test_a_client_that_sends_in_time_is_served_across_keepalive() -> None:
    exp = Exporter(WatchState())
    exp.attach(None)
    port = exp.serve("127.0.0.1", 0, ServerLimits(request_deadline=1, idle_timeout=5, housekeeping=0.2))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for _ in range(3):  # the look-alike of the slow-loris: slow between requests, not within one
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                assert resp.status == 200 and b"pleg_doctor_build_info" in resp.read()
                sock = conn.sock
                time.sleep(1.5)  # longer than the request deadline, shorter than the idle timeout
                assert conn.sock is sock  # the same connection: it was not cut
        finally:
            conn.close()
    finally:
        exp.shutdown()


def test_request_size_and_method_caps() -> None:
    exp = Exporter(WatchState())
    exp.attach(None)
    port = exp.serve("127.0.0.1", 0, ServerLimits(max_header_bytes=1024))
    try:
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4096 + b"\r\n\r\n"
        assert _raw(port, big).split(b"\r\n")[0].split()[1] == b"431"
        body = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        assert _raw(port, body).split(b"\r\n")[0].split()[1] == b"413"
        post = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        assert _raw(port, post).split(b"\r\n")[0].split()[1] == b"405"
        ok = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 512 + b"\r\nConnection: close\r\n\r\n"
        assert _raw(port, ok).split(b"\r\n")[0].split()[1] == b"200"
    finally:
        exp.shutdown()


# -- capture dir, stage dirs, persisted state ----------------------------------------------------


def test_capture_dir_is_created_0700_with_parents(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b" / "captures"
    old = os.umask(0)
    try:
        assert prepare_capture_dir(str(d)) == d
    finally:
        os.umask(old)
    for p in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert prepare_capture_dir(str(d)) == d  # an existing good dir is accepted as it is


def _watch_cmd(capture_dir: Path, tmp_path: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "plegdoctor.cli", "watch", "--listen", "127.0.0.1:0"),
        *("--capture-dir", str(capture_dir), "--duration", "1s"),
        *("--runtime-endpoint", f"unix://{tmp_path}/absent.sock"),
    ]


@pytest.mark.parametrize("kind", ["world-writable", "group-writable", "file", "symlink"])
def test_bad_capture_dir_is_refused_with_one_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    d = tmp_path / "captures"
    if kind == "file":
        d.write_text("x")
    elif kind == "symlink":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        d.symlink_to(real)
    else:
        d.mkdir()
        d.chmod(0o777 if kind == "world-writable" else 0o770)
    with pytest.raises(UserError):
        prepare_capture_dir(str(d))
    proc = subprocess.run(
        _watch_cmd(d, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--capture-dir" in lines[0] and "Traceback" not in proc.stderr


def test_good_capture_dir_runs(tmp_path: Path) -> None:
    d = tmp_path / "new" / "captures"
    proc = subprocess.run(
        _watch_cmd(d, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and (d / STATE_FILE).is_file()


def test_stale_stage_dirs_are_removed_young_ones_and_lookalikes_kept(tmp_path: Path) -> None:
    now = time.time()

    def stage(name: str, age: float) -> Path:
        p = tmp_path / name
        (p / "sub").mkdir(parents=True)
        (p / "sub" / "member").write_text("x")
        for q in (p / "sub" / "member", p / "sub", p):
            os.utime(q, (now - age, now - age))
        return p

    old = stage(".pleg-doctor-stage-old", 7200)
    young = stage(".pleg-doctor-stage-young", 60)
    # old dir, but a file inside was written a minute ago: a collect still running
    busy = stage(".pleg-doctor-stage-busy", 7200)
    os.utime(busy / "sub" / "member", (now - 60, now - 60))
    other = stage("pleg-doctor-stage-not-hidden", 7200)
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious").write_text("keep")
    link = tmp_path / ".pleg-doctor-stage-link"
    link.symlink_to(target)
    assert clean_stage_dirs(tmp_path, now=now, max_age=3600) == [old]
    assert young.exists() and busy.exists() and other.exists()
    assert link.is_symlink() and (target / "precious").read_text() == "keep"


def test_state_file_is_validated(tmp_path: Path) -> None:
    p = tmp_path / STATE_FILE
    now = 1_000_000.0
    PersistedState(last_success=now - 100, down_since=None, last_capture=now - 50).save(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    st, why = PersistedState.load(p, now, booted=now - 1000)
    assert why == "" and st.last_success == now - 100 and st.last_capture == now - 50
    # a success from before this boot, or from the future, is dropped
    st, _ = PersistedState.load(p, now, booted=now - 10)
    assert st.last_success is None and st.last_capture == now - 50
    st, _ = PersistedState.load(p, now - 1000, booted=None)
    assert st.last_success is None
    for bad in (b"[1, 2]", b"not json", b'{"last_success": "yesterday"}', b"{" + b" " * 5000 + b"}"):
        p.write_bytes(bad)
        st, why = PersistedState.load(p, now, booted=None)
        assert st == PersistedState()
        assert why or bad.startswith(b'{"last')
    p.unlink()
    p.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text('{"last_success": 999999}')
    st, why = PersistedState.load(p, now, booted=None)
    assert st == PersistedState() and why
    assert PersistedState.load(tmp_path / "missing.json", now, None) == (PersistedState(), "")


def _run(w: Watcher) -> threading.Thread:
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return t


def _wait(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_runtime_down_alerts_rotates_and_survives_a_restart(tmp_path: Path) -> None:
    sock = str(tmp_path / "cri.sock")
    captures = tmp_path / "captures"
    captures.mkdir(mode=0o700)
    for i in range(3):  # older bundles: with --max-captures 2 the two oldest rotate out
        b = captures / f"pleg-doctor-old-{i}.tar.gz"
        b.write_bytes(b"x")
        os.utime(b, (1000 + i, 1000 + i))
    with FakeCRI(sock, standard_handlers(1)):
        w = Watcher(watch_config(sock, captures, max_captures=2)).start()
        t = _run(w)
        try:
            _wait(lambda: w.probe.status().runtime_up)
            success = w.probe.status().last_success
            assert success is not None
        except BaseException:
            w.stop()
            raise
    # the fake is gone: its socket is absent, calls fail at once
    try:
        _wait(lambda: _metrics(w.port).get("pleg_doctor_stalled") == 1)
        m = _metrics(w.port)
        assert m["pleg_doctor_runtime_up"] == 0 and m["pleg_doctor_relist_seconds_since_success"] > 0.5
        _wait(lambda: bool(w.captures))
        _wait(lambda: _metrics(w.port).get("pleg_doctor_captures_total{result=ok}") == 1)
        names = sorted(p.name for p in bundles_in(str(captures)))
        assert len(names) == 2 and w.captures[0].name in names and "pleg-doctor-old-2.tar.gz" in names
    finally:
        w.stop()
        t.join(5)
    # a new watch, the runtime still down: the age counts from the success before the restart,
    # and the cooldown holds (no second capture for the same stall)
    w2 = Watcher(watch_config(sock, captures, max_captures=2)).start()
    t2 = _run(w2)
    try:
        m = _metrics(w2.port)
        assert m["pleg_doctor_relist_seconds_since_success"] >= time.time() - success - 1
        assert m["pleg_doctor_relist_last_success_timestamp_seconds"] == pytest.approx(success)
        _wait(lambda: _metrics(w2.port).get("pleg_doctor_stalled") == 1)
        _wait(lambda: _metrics(w2.port).get("pleg_doctor_captures_total{result=skipped}", 0) >= 1)
        assert not w2.captures
    finally:
        w2.stop()
        t2.join(5)


def test_runtime_never_up_still_exports_a_growing_age(tmp_path: Path) -> None:
    captures = tmp_path / "captures"
    w = Watcher(watch_config(str(tmp_path / "absent.sock"), captures, cooldown=0)).start()
    t = _run(w)
    try:
        first = _metrics(w.port)
        assert first["pleg_doctor_runtime_up"] == 0
        assert "pleg_doctor_relist_last_success_timestamp_seconds" not in first
        _wait(lambda: _metrics(w.port).get("pleg_doctor_stalled") == 1)
        later = _metrics(w.port)
        assert later["pleg_doctor_relist_seconds_since_success"] > first["pleg_doctor_relist_seconds_since_success"]
    finally:
        w.stop()
        t.join(5)
    saved = json.loads((captures / STATE_FILE).read_text())
    assert saved["last_success"] is None and saved["down_since"] == pytest.approx(w.probe.down_since)
