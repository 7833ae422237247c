"""collect and watch on a real containerd started here: a bundle, a SIGSTOP stall captured, recovery, Prometheus."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require, wait_until
from plegdoctor import parsers
from plegdoctor.live.cri.client import CRIClient, container_config, host_network_sandbox_config
from plegdoctor.live.watch import WatchConfig, Watcher
from plegdoctor.testbed import procs
from plegdoctor.testbed.containerd import ContainerdProcess
from plegdoctor.testbed.registry import free_port


def run_pod(ctd: ContainerdProcess, image: str, name: str = "app", envs: dict[str, str] | None = None) -> str:
    client = CRIClient(ctd.endpoint, timeout=60)
    client.pull_image(image)
    sc = host_network_sandbox_config(name, cgroup_parent=ctd.spec.cgroup_parent)
    sid = client.run_pod_sandbox(sc)
    cid = client.create_container(
        sid, container_config(name, image, command=["/bin/sleep"], args=["600"], envs=envs), sc
    )
    client.start_container(cid)
    return cid


def read_bundle(path: Path) -> tuple[dict, dict[str, str]]:
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json"
        members = {}
        for n in names:
            f = tar.extractfile(n)
            assert f is not None
            members[n] = f.read().decode("utf-8", "replace")
    return json.loads(members["manifest.json"]), members


def test_collect_cli_on_a_real_node(containerd: ContainerdProcess, images: dict[str, str], tmp_path: Path) -> None:
    run_pod(containerd, images["busybox"], envs={"DB_PASSWORD": "hunter2-secret"})
    out = tmp_path / "bundle.tar.gz"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "collect", "-o", str(out), "--runtime-endpoint", containerd.endpoint],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert time.monotonic() - t0 < 60
    assert f"sent SIGUSR1 to containerd pid {containerd.pid}" in proc.stderr
    manifest, members = read_bundle(out)
    assert manifest["schema"] == "pleg-doctor/bundle/v1"
    assert manifest["runtime"]["name"] == "containerd" and manifest["runtime"]["containers"] == 1
    by_path = {f["path"]: f for f in manifest["files"]}
    dump = by_path[f"goroutines/containerd-{containerd.pid}.stacks.log"]
    assert (dump["kind"] == "goroutine-dump" and "error" not in dump) or dump["error"] is None
    assert "goroutine 1 [" in members[dump["path"]]
    shim_dumps = [p for p in by_path if p.startswith("goroutines/containerd-shim-")]
    assert shim_dumps and all(by_path[p]["error"] is None for p in shim_dumps)
    assert all("=== BEGIN goroutine stack dump ===" in members[p] for p in shim_dumps)
    assert by_path["proc/diskstats"]["kind"] == "diskstats"
    assert members["proc/diskstats"].count("# pleg-doctor sample ") == 2
    assert members["proc/pressure/io"].startswith("# pleg-doctor sample ")
    assert by_path["config/containerd.toml"]["kind"] == "containerd-config"
    assert "restrict_oom_score_adj = true" in members["config/containerd.toml"]
    assert "config/containerd-config-dump.toml" not in members  # containerd's binary is never run
    assert manifest["runtime"]["found_by"].startswith("SO_PEERCRED of ")
    assert {"type": "signal", "pid": containerd.pid, "signal": "SIGUSR1"}.items() <= next(
        a for a in manifest["actions"] if a["type"] == "signal"
    ).items()
    assert "containerd: containerd github.com/containerd/containerd" in members["versions.txt"]
    assert f"pid={containerd.pid} tgid={containerd.pid} comm=containerd" in members["tasks/stacks.txt"]
    assert by_path["logs/containerd.log"]["kind"] == "containerd-log"
    # every member listed with a checksum is in the archive, and no secret value leaked
    assert all((f["path"] in members) == (f.get("sha256") is not None) for f in manifest["files"])
    assert not any("hunter2-secret" in text for text in members.values())
    # the failed steps say why (no kubelet here)
    assert "kubelet" in by_path["logs/kubelet.log"]["error"]
    # analyze reads it
    diag = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "analyze", str(out), "-o", "json"], capture_output=True, text=True
    )
    assert diag.returncode == 0, diag.stderr
    kinds = {i["kind"] for i in json.loads(diag.stdout)["inputs"]}
    expected = {"psi", "diskstats", "containerd-log", "mounts", "ps", "proc-stack"}
    if "goroutine-dump" in parsers.available():  # the goroutine parser may land after this test
        expected.add("goroutine-dump")
    assert expected & parsers.available().keys() <= kinds


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(metrics: dict, name: str, **labels: str) -> float | None:
    for lab, v in metrics.get(name, []):
        if all(lab.get(k) == val for k, val in labels.items()):
            return v
    return None


@pytest.fixture
def watcher_factory() -> Iterator[Callable[[WatchConfig], Watcher]]:
    started: list[tuple[Watcher, threading.Thread]] = []

    def start(cfg: WatchConfig) -> Watcher:
        w = Watcher(cfg).start()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        started.append((w, t))
        return w

    yield start
    for w, t in started:
        w.stop()
        t.join(5)


def test_watch_sees_a_sigstop_stall_captures_and_recovers(
    containerd: ContainerdProcess,
    images: dict[str, str],
    tmp_path: Path,
    watcher_factory: Callable[[WatchConfig], Watcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pleg-doctor.watch")
    run_pod(containerd, images["busybox"])
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
        log_window="5m",
    )
    w = watcher_factory(cfg)
    wait_until(lambda: value(scrape(w.port), "pleg_doctor_runtime_up") == 1, 10, "runtime up")
    m = scrape(w.port)
    assert value(m, "pleg_doctor_relist_containers") == 1 and value(m, "pleg_doctor_relist_sandboxes") == 1
    assert value(m, "pleg_doctor_stalled") == 0

    containerd.freeze()
    try:
        wait_until(lambda: value(scrape(w.port), "pleg_doctor_stalled") == 1, 10, "stall seen")
        m = scrape(w.port)
        assert value(m, "pleg_doctor_runtime_up") == 0
        assert value(m, "pleg_doctor_relist_in_flight_seconds") > 1.0
        # the probe never piles calls: one call pending against the frozen runtime
        time.sleep(1.5)
        m2 = scrape(w.port)
        assert value(m2, "pleg_doctor_relist_in_flight_seconds") > value(m, "pleg_doctor_relist_in_flight_seconds")
        assert value(m2, "pleg_doctor_relist_seconds_since_success") > 2.0
        wait_until(lambda: bool(w.captures), 120, "a capture while frozen")
        bundle = w.captures[0]
        manifest, members = read_bundle(bundle)
        assert manifest["trigger"]["in_flight_method"] in ("ListPodSandbox", "ListContainers")
        by_path = {f["path"]: f for f in manifest["files"]}
        # a frozen containerd cannot write its dump; the bundle says so and keeps the kernel's view
        assert "not written" in by_path[f"goroutines/containerd-{containerd.pid}.stacks.log"]["error"]
        assert f"pid={containerd.pid} tgid={containerd.pid} comm=containerd state=T" in members["tasks/stacks.txt"]
        assert members["proc/pressure/io"].count("# pleg-doctor sample") >= 2
        assert "error" in manifest["runtime"]
    finally:
        containerd.thaw()
    wait_until(lambda: value(scrape(w.port), "pleg_doctor_stalled") == 0, 60, "recovery")
    wait_until(lambda: value(scrape(w.port), "pleg_doctor_runtime_up") == 1, 60, "runtime up again")
    # runtime_up flips on the first call that answers; a whole relist (both calls) succeeds
    # one probe period later at the latest
    wait_until(
        lambda: value(scrape(w.port), "pleg_doctor_relist_seconds_since_success") < 5, 30, "a successful relist again"
    )
    m = scrape(w.port)
    assert value(m, "pleg_doctor_stalls_total") == 1
    assert value(m, "pleg_doctor_captures_total", result="ok") == 1
    # the slow call was recorded when it finally returned: above the stall threshold
    assert value(m, "pleg_doctor_cri_call_duration_seconds_bucket", method="ListPodSandbox", le="1.0") is not None
    slow = (value(m, "pleg_doctor_cri_call_duration_seconds_count", method="ListPodSandbox") or 0) + (
        value(m, "pleg_doctor_cri_call_duration_seconds_count", method="ListContainers") or 0
    )
    fast = (value(m, "pleg_doctor_cri_call_duration_seconds_bucket", method="ListPodSandbox", le="1.0") or 0) + (
        value(m, "pleg_doctor_cri_call_duration_seconds_bucket", method="ListContainers", le="1.0") or 0
    )
    assert slow - fast >= 1
    # the capture was analyzed (analyze_paths exists in this build) and its result exported
    wait_until(lambda: w.last_analysis is not None, 150, "analysis")
    assert any("analysis of" in r.getMessage() for r in caplog.records)
    assert any("stall:" in r.getMessage() for r in caplog.records)


def test_watch_keeps_serving_with_missing_socket_and_readonly_capture_dir(
    tmp_path: Path, watcher_factory: Callable[[WatchConfig], Watcher], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pleg-doctor.watch")
    ro = tmp_path / "ro"
    ro.mkdir()
    # -n: mount(8) writes no utab entry, so it does not create /run/mount
    subprocess.run(["mount", "-n", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(ro)], check=True)
    try:
        cfg = WatchConfig(
            listen="127.0.0.1:0",
            runtime_endpoint=f"unix://{tmp_path}/absent.sock",
            period=0.2,
            stall_threshold=1,
            capture_dir=str(ro),
        )
        w = watcher_factory(cfg)
        time.sleep(1.0)
        m = scrape(w.port)
        assert value(m, "pleg_doctor_runtime_up") == 0
        assert value(m, "pleg_doctor_cri_call_errors_total", method="ListPodSandbox", kind="no-socket") >= 2
        msgs = [r.getMessage() for r in caplog.records]
        assert any("read-only" in msg for msg in msgs)
        # one clear line, not one per period (a stall line, once the threshold passes, quotes it too)
        assert sum(msg.startswith("runtime socket") and "does not exist" in msg for msg in msgs) == 1
    finally:
        subprocess.run(["umount", "-n", str(ro)], check=False)


@pytest.fixture
def prometheus() -> Iterator[Callable[[int], int]]:
    require("prometheus")
    procs_started: list[subprocess.Popen[bytes]] = []
    base = tempfile.mkdtemp(prefix="pd-prom-")

    def start(target_port: int) -> int:
        port = free_port()
        cfg = Path(base) / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pleg-doctor\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        p = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={cfg}",
                f"--storage.tsdb.path={base}/data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(base) / "prometheus.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        procs_started.append(p)
        return port

    try:
        yield start
    finally:
        for p in procs_started:
            procs.terminate(p.pid, grace=5)
        shutil.rmtree(base, ignore_errors=True)


def test_real_prometheus_scrapes_watch(
    containerd: ContainerdProcess,
    watcher_factory: Callable[[WatchConfig], Watcher],
    prometheus: Callable[[int], int],
) -> None:
    w = watcher_factory(WatchConfig(listen="127.0.0.1:0", runtime_endpoint=containerd.endpoint, period=0.5))
    port = prometheus(w.port)

    def query(q: str) -> list:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return json.loads(resp.read())["data"]["result"]
        except OSError:
            return []

    wait_until(lambda: bool(query("pleg_doctor_runtime_up == 1")), 30, "Prometheus to scrape runtime_up")
    quantile = (
        "histogram_quantile(0.99, rate("
        + 'pleg_doctor_cri_call_duration_seconds_bucket{method="ListContainers"}[10s])) < 1'
    )
    wait_until(
        lambda: bool(query(quantile)),
        30,
        "a ListContainers latency quantile",
    )
    (up,) = query('up{job="pleg-doctor"}')
    assert up["value"][1] == "1"
