"""`pleg-doctor fleet` against a real Prometheus scraping three real `pleg-doctor watch` processes.

Each watch probes its own real containerd (testbed); one containerd is frozen with SIGSTOP, so
its watch captures a bundle and analyzes it (runtime-frozen, as in
tests/incidents/18-runtime-frozen-sigstop). Prometheus (the Debian binary) scrapes the three
every second, naming each target by a node name as deploy/podmonitor.yaml does (`instance`).
`fleet` must rank the frozen node first, with its class, from PromQL alone.

Everything is started by this test and stopped by PID in fixtures' `finally` (the frozen
containerd gets SIGCONT first, whatever happened); temporary dirs live under tmp_path or are
removed by the testbed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require, wait_until
from plegdoctor.testbed.containerd import ContainerdProcess

NODES = ("node-a", "node-frozen", "node-c")
LISTENING = re.compile(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics")


def _stop(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM by PID, SIGKILL after `grace`; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Watch:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, captures: Path):
        self.proc, self.log, self.captures = proc, log, captures
        self.port = 0

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"watch exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        m = LISTENING.search(self.log.read_text(errors="replace"))
        if m:
            self.port = int(m[1])
        return bool(m)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())


@pytest.fixture
def watch_factory(tmp_path: Path) -> Iterator[Callable[[str, str], Watch]]:
    started: list[Watch] = []

    def start(name: str, endpoint: str) -> Watch:
        log, captures = tmp_path / f"watch-{name}.log", tmp_path / f"captures-{name}"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "plegdoctor.cli", "watch", "--listen", "127.0.0.1:0"),
                    *("--runtime-endpoint", endpoint, "--period", "250ms", "--stall-threshold", "1s"),
                    *("--call-timeout", "60s", "--capture-dir", str(captures), "--cooldown", "10m"),
                    "--no-dump",  # a stopped containerd cannot write a dump; the kernel's view is what counts
                ],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        w = Watch(proc, log, captures)
        started.append(w)
        return w

    try:
        yield start
    finally:
        for w in started:
            _stop(w.proc)
        for w in started:  # the bundles go; the logs stay in tmp_path for a failure's report
            shutil.rmtree(w.captures, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, tmp: Path, targets: dict[str, int]):
        self.tmp = tmp
        self.config = tmp / "prometheus.yml"
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "scrape_configs:"]
        lines += ["  - job_name: pleg-doctor", "    static_configs:"]
        for node, port in targets.items():
            lines += [f"      - targets: ['127.0.0.1:{port}']", f"        labels: {{instance: {node}}}"]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = tmp / "prometheus.log"

    def start(self) -> None:
        for _ in range(3):  # the free port may be taken between the probe and prometheus' bind
            self.port = _free_port()
            with open(self.log, "ab") as fh:
                self.proc = subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={self.config}",
                        f"--storage.tsdb.path={self.tmp / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1h",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=self.tmp,
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ready():
                    return
                time.sleep(0.2)
            _stop(self.proc)
        raise AssertionError(f"prometheus did not start:\n{self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as resp:
            result: list[dict[str, Any]] = json.load(resp)["data"]["result"]
        return result

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, int]], Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: dict[str, int]) -> Prometheus:
        d = tmp_path / "prometheus"
        d.mkdir()
        prom = Prometheus(d, targets)
        started.append(prom)
        prom.start()
        return prom

    try:
        yield start
    finally:
        for prom in started:
            prom.stop()
            shutil.rmtree(prom.tmp / "tsdb", ignore_errors=True)


def test_fleet_ranks_the_frozen_node_first_with_its_class(
    containerd_factory: Callable[..., ContainerdProcess],
    watch_factory: Callable[[str, str], Watch],
    prometheus_factory: Callable[[dict[str, int]], Prometheus],
) -> None:
    require("containerd", "prometheus")
    t0 = time.monotonic()
    runtimes = {node: containerd_factory() for node in NODES}
    watches = {node: watch_factory(node, ctd.endpoint) for node, ctd in runtimes.items()}
    for node, w in watches.items():
        wait_until(w.listening, 20, f"watch of {node} to listen")
    prom = prometheus_factory({node: w.port for node, w in watches.items()})
    wait_until(
        lambda: len(prom.query("pleg_doctor_runtime_up == 1")) == len(NODES), 30, "every runtime up in Prometheus"
    )
    frozen = runtimes["node-frozen"].pid
    os.kill(frozen, signal.SIGSTOP)
    try:
        watch = watches["node-frozen"]
        wait_until(
            lambda: 'pleg_doctor_root_cause_confidence{class="runtime-frozen"}' in watch.metrics(),
            60,
            "the frozen node's watch to capture and analyze the stall",
        )
        wait_until(
            lambda: bool(prom.query('pleg_doctor_root_cause_confidence{instance="node-frozen"}')),
            10,
            "Prometheus to scrape the analysis",
        )
        wait_until(  # a stall of some seconds: captured and analyzed in ~2 s, it would be shorter
            lambda: bool(prom.query('pleg_doctor_relist_seconds_since_success{instance="node-frozen"} > 6')),
            20,
            "a stall of 6 s in Prometheus",
        )
        proc = _fleet(prom.url, "-o", "json")
        text = _fleet(prom.url)
        matched = _fleet(prom.url, "-o", "json", "--match", 'job="pleg-doctor"')
        other_job = _fleet(prom.url, "-o", "json", "--match", 'job="not-pleg-doctor"')
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "pleg-doctor/fleet/v1" and doc["window"] == "5m" and doc["nodes_total"] == 3
    first, *rest = doc["nodes"]
    assert first["node"] == "node-frozen", [(n["node"], n["stall_seconds"]) for n in doc["nodes"]]
    assert first["class"] == "runtime-frozen" and first["confidence"] >= 0.8 and first["severity"] == "critical"
    assert first["runtime_up"] is False and first["stalled_now"] is True and first["class_from"] == "current"
    assert first["stall_seconds"] >= 4 and first["longest_gap_seconds"] >= first["stall_seconds"] - 2
    assert first["captures"]["ok"] == 1 and first["stall_episodes"] == 1
    assert "PD902" in {f["code"] for f in first["findings"]}
    for n in rest:
        assert n["stall_seconds"] == 0 and n["runtime_up"] is True and n["class"] == "unknown", n
        assert n["captures"]["ok"] == 0 and n["next_step"]
    assert text.returncode == 0, text.stderr
    assert text.stdout.index("node-frozen") < text.stdout.index("node-a") and "runtime-frozen" in text.stdout
    # --match reaches every selector: the same ranking for the job's own name, nothing for another job
    assert [n["node"] for n in json.loads(matched.stdout)["nodes"]] == [n["node"] for n in doc["nodes"]]
    assert json.loads(other_job.stdout)["nodes_total"] == 0
    assert time.monotonic() - t0 < 90


def _fleet(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "plegdoctor.cli", "fleet", "--prometheus", url, "--window", "5m", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)
