"""A real containerd stopped with SIGSTOP: `watch` captures a bundle, `analyze` says runtime-frozen.

Issue #9 item 7: the bundle recorded the probe's stalled ListPodSandbox and ps showed every
containerd thread in T, yet the analysis said "No PLEG stall". Everything started here is
stopped by PID; containerd gets SIGCONT in `finally` whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from conftest import wait_until
from plegdoctor.live.watch import WatchConfig, Watcher
from plegdoctor.testbed.containerd import ContainerdProcess


def test_sigstopped_containerd_is_captured_and_diagnosed_runtime_frozen(
    containerd: ContainerdProcess, tmp_path: Path
) -> None:
    run_before, tmp_before = set(os.listdir("/run")), set(os.listdir("/tmp"))
    captures = tmp_path / "captures"
    captures.mkdir()
    cfg = WatchConfig(
        listen="127.0.0.1:0",
        runtime_endpoint=containerd.endpoint,
        period=0.25,
        stall_threshold=1.0,
        call_timeout=60,
        capture_dir=str(captures),
        cooldown=0,
        min_free=0,
        dump=False,  # a stopped containerd cannot write a dump; the kernel's view is what counts
        analyze=False,  # analyzed below, through the CLI, as a user would
        log_window="5m",
    )
    watcher = Watcher(cfg).start()
    loop = threading.Thread(target=watcher.run, daemon=True)
    loop.start()
    pid = containerd.pid
    try:
        wait_until(lambda: watcher.probe.status().runtime_up, 20, "the runtime to answer the probe")
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: bool(watcher.captures), 120, "a capture while containerd is stopped")
        finally:
            os.kill(pid, signal.SIGCONT)
        bundle = watcher.captures[0]
    finally:
        watcher.stop()
        loop.join(10)

    with tarfile.open(bundle) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
    trig = manifest["trigger"]
    assert trig["method"] in ("ListPodSandbox", "ListContainers")
    assert trig["call_seconds"] >= 1.0 and trig["call_started_at"] and trig["detected_at"]
    assert trig["runtime_endpoint"] == containerd.endpoint
    assert manifest["runtime"]["containerd_pid"] == pid
    assert "loadavg" in manifest["node_load"]

    proc = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "analyze", str(bundle), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    top = doc["root_causes"][0]
    assert top["class"] == "runtime-frozen", [(rc["class"], rc["summary"]) for rc in doc["root_causes"]]
    assert f"containerd (pid {pid})" in top["summary"] and trig["method"] in top["summary"]
    assert top["confidence"] >= 0.8
    quoted = [e for link in top["chain"] for e in link["evidence"]]
    assert any(e["path"].endswith(":manifest.json") and '"reason"' in e["text"] for e in quoted)
    assert any(e["path"].endswith(":tasks/ps.txt") and f"{pid:>7}" in e["text"] for e in quoted)
    codes = {f["code"] for f in doc["findings"]}
    assert {"PD901", "PD902"} <= codes
    # the runtime answers again after SIGCONT
    wait_until(lambda: _answers(containerd), 30, "containerd to answer after SIGCONT")
    # nothing left behind in /run or /tmp by the capture (no dump asked, staging removed)
    assert not ({"containerd", "mount"} & (set(os.listdir("/run")) - run_before))
    assert not [n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith((f"containerd.{pid}", ".pleg-doctor"))]


def _answers(ctd: ContainerdProcess) -> bool:
    from plegdoctor.live.cri.client import CRIClient, CRIError

    try:
        with CRIClient(ctd.endpoint) as client:
            client.list_pod_sandbox(timeout=3)
        return True
    except CRIError:
        return False


def test_containerd_gone_is_a_stall_that_survives_a_watch_restart(
    containerd_factory: Callable[..., ContainerdProcess], tmp_path: Path
) -> None:
    """Issue #10 item 7: with the socket gone, watch used to export `stalled 0` and no age at all."""
    ctd = containerd_factory()
    captures = tmp_path / "captures"  # created by watch (0700)
    cfg = WatchConfig(
        listen="127.0.0.1:0",
        runtime_endpoint=ctd.endpoint,
        period=0.25,
        stall_threshold=1.0,
        call_timeout=10,
        capture_dir=str(captures),
        cooldown=3600,
        min_free=0,
        dump=False,
        analyze=False,
        log_window="5m",
    )
    watcher = Watcher(cfg).start()
    loop = threading.Thread(target=watcher.run, daemon=True)
    loop.start()
    try:
        wait_until(lambda: watcher.probe.status().runtime_up, 20, "the runtime to answer the probe")
        success = watcher.probe.status().last_success
        assert success is not None
        ctd.stop()  # containerd gone, its socket removed
        wait_until(lambda: watcher.probe.status().stalled, 30, "the runtime-down stall")
        wait_until(lambda: bool(watcher.captures), 120, "a capture of the runtime-down stall")
        m = _scrape(watcher.port)
        assert m["pleg_doctor_runtime_up"] == 0 and m["pleg_doctor_stalled"] == 1
        assert m["pleg_doctor_relist_seconds_since_success"] >= time.time() - success - 1
    finally:
        watcher.stop()
        loop.join(10)
    assert oct(captures.stat().st_mode & 0o777) == "0o700"
    again = Watcher(cfg).start()
    loop = threading.Thread(target=again.run, daemon=True)
    loop.start()
    try:
        m = _scrape(again.port)
        assert m["pleg_doctor_relist_seconds_since_success"] >= time.time() - success - 1
        wait_until(lambda: again.probe.status().stalled, 30, "the stall after the restart")
        time.sleep(1)
        assert not again.captures  # the persisted cooldown: one capture per stall, not per restart
    finally:
        again.stop()
        loop.join(10)
    assert len(list(captures.glob("pleg-doctor-*.tar.gz"))) == 1


def _scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples if not s.labels}
