"""watch against a fake CRI server: metrics while a call hangs, a capture on the stall, the findings exported."""

from __future__ import annotations

import json
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from live_fakes import FakeCRI, standard_handlers
from plegdoctor.live.exporter import METRIC_NAMES
from plegdoctor.live.watch import WatchConfig, Watcher


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
        cfg = WatchConfig(
            listen="127.0.0.1:0",
            runtime_endpoint=f"unix://{sock}",
            period=0.1,
            stall_threshold=0.5,
            call_timeout=30,
            capture_dir=str(captures),
            cooldown=0,
            min_free=0,
            dump=False,
            analyze=False,
            log_window="1m",
        )
        w = Watcher(cfg).start()
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
