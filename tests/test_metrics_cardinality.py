"""Issue #13 item 6a: no label of watch's metrics can carry a pod, sandbox or container id.

A real Exporter is fed what a watch feeds it: a real relist probe against a fake runtime whose
sandboxes and containers have 64-hex ids (answering, then hung past the call deadline), a probe
of a missing socket, call errors whose messages quote ids, the node sampled from this machine's
/proc and /sys/block, and the findings and root causes of real analyses of incident bundles.
Its /metrics text is parsed with prometheus_client's parser; every label name must be in a
fixed low-cardinality set and every value in that label's bounded vocabulary. Prometheus (and
`pleg-doctor fleet`) keep one series per label set: an id in a label is one series per pod.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from live_fakes import FakeCRI
from plegdoctor import __version__
from plegdoctor.live.cri import api
from plegdoctor.live.cri.client import CRIClient
from plegdoctor.live.exporter import CRI_BUCKETS, Exporter, WatchState
from plegdoctor.live.probe import CallResult, RelistProbe
from plegdoctor.live.samplers import NodeSampler
from plegdoctor.model import RootCauseClass, Severity
from plegdoctor.rules.registry import load_all

INCIDENTS = Path(__file__).parent / "incidents"
CRI_KINDS = {"no-socket", "permission-denied", "not-a-socket", "unavailable", "deadline-exceeded", "unimplemented"}
CRI_KINDS |= {"error"}
ID_LIKE = re.compile(r"[0-9a-f]{12,}")  # container/sandbox ids (64 hex) and their 12/13-char short forms
DEVICE = re.compile(r"[a-z][a-z0-9_!.-]{0,31}")  # a kernel block device name (/sys/block entry)


def _id(n: int) -> str:
    return f"{n:08x}" * 8  # 64 hex characters, like a containerd id


def allowed_values() -> dict[str, set[str] | re.Pattern[str]]:
    """Each allowed label and its vocabulary (a set, or a pattern for node device names)."""
    rules = load_all()
    return {
        "version": {__version__},
        "method": set(api.methods()),
        "kind": CRI_KINDS | {"some", "full"},  # CRI error kinds; PSI lines
        "le": {repr(float(b)) for b in CRI_BUCKETS} | {"+Inf"},
        "result": {"ok", "failed", "skipped"},
        "code": set(rules),
        "class": {c.value for c in RootCauseClass},
        "severity": {s.value for s in Severity},
        "resource": {"io", "memory", "cpu"},
        "device": DEVICE,
    }


def violations(text: str, ids: set[str], max_devices: int) -> list[str]:
    """What in the exposition `text` breaks the low-cardinality rule (empty list: nothing)."""
    allowed = allowed_values()
    out: list[str] = []
    devices: set[str] = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            for name, value in s.labels.items():
                vocab = allowed.get(name)
                if vocab is None:
                    out.append(f"{s.name}: label {name!r} is not in the low-cardinality set")
                    continue
                if isinstance(vocab, set):
                    ok = value in vocab
                else:
                    ok = bool(vocab.fullmatch(value))
                    devices.add(value)
                if not ok:
                    out.append(f"{s.name}: {name}={value!r} is outside its bounded vocabulary")
                if ID_LIKE.search(value) or any(i[:12] in value for i in ids):
                    out.append(f"{s.name}: {name}={value!r} looks like a pod or container id")
    if len(devices) > max_devices:
        out.append(f"{len(devices)} device label values, more than the {max_devices} block devices")
    return out


def _handlers(n: int) -> dict[str, Any]:
    running = api.enum_value("ContainerState", "CONTAINER_RUNNING")
    ready = api.enum_value("PodSandboxState", "SANDBOX_READY")

    def version(req: Any) -> Any:
        return api.VersionResponse(version="0.1.0", runtime_name="containerd", runtime_version="1.7.0")

    def sandboxes(req: Any) -> Any:
        return api.ListPodSandboxResponse(
            items=[
                api.PodSandbox(
                    id=_id(i),
                    state=ready,
                    metadata=api.PodSandboxMetadata(name=f"pod-{i}", namespace="default", uid=_id(i + 1000)),
                )
                for i in range(n)
            ]
        )

    def containers(req: Any) -> Any:
        return api.ListContainersResponse(
            containers=[
                api.Container(
                    id=_id(i + 100),
                    pod_sandbox_id=_id(i),
                    state=running,
                    metadata=api.ContainerMetadata(name=f"ctr-{i}"),
                )
                for i in range(n)
            ]
        )

    return {"Version": version, "ListPodSandbox": sandboxes, "ListContainers": containers}


def _fed_exporter(tmp_path: Path) -> tuple[str, set[str]]:
    from plegdoctor.live.watch import summarize_diagnosis
    from plegdoctor.pipeline import analyze_paths

    n = 5
    ids = {_id(i) for i in range(n)} | {_id(i + 100) for i in range(n)} | {_id(i + 1000) for i in range(n)}
    exporter = Exporter(WatchState())
    sock = str(tmp_path / "cri.sock")
    with FakeCRI(sock, _handlers(n)) as fake:
        client = CRIClient(f"unix://{sock}", timeout=1)
        probe = RelistProbe(
            client,
            period=0.05,
            stall_threshold=0.1,
            call_timeout=0.3,
            on_call=exporter.on_call,
            on_relist=exporter.on_relist,
        )
        exporter.attach(probe)
        probe.start()
        gone = RelistProbe(CRIClient(f"unix://{tmp_path}/absent.sock"), period=0.05, on_call=exporter.on_call)
        gone.start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (probe.status().last is None or not probe.status().last.ok):
                time.sleep(0.05)
            assert probe.status().last is not None and probe.status().last.containers == n
            fake.block["ListContainers"] = threading.Event()  # hung past the call deadline
            while time.monotonic() < deadline and probe.status().last.ok:
                time.sleep(0.05)
            assert probe.status().last.error_kind == "deadline-exceeded"
        finally:
            probe.stop()
            gone.stop()
            client.close()
    for kind in sorted(CRI_KINDS):
        exporter.on_call(CallResult("ContainerStatus", time.time(), 0.2, False, kind, f"container {_id(100)}: {kind}"))
    findings, causes = [], []
    for bundle in ("18-runtime-frozen-sigstop", "09-shim-hang-ttrpc-kill", "01-overlay-umount-sync-hung-task"):
        f, c = summarize_diagnosis(analyze_paths([str(INCIDENTS / bundle)]))
        findings += f
        causes += c
    assert findings and causes
    with exporter.state.lock:
        exporter.state.node = NodeSampler().sample()
        exporter.state.findings = findings
        exporter.state.root_causes = causes
    return exporter.render(), ids


def _block_devices() -> int:
    try:
        return len(os.listdir("/sys/block"))
    except OSError:
        return 0


def test_no_metric_label_can_carry_a_pod_or_container_id(tmp_path: Path) -> None:
    text, ids = _fed_exporter(tmp_path)
    # the exporter did see the runtime and its errors: the labels below are not vacuously fine
    assert 'method="ListContainers"' in text and 'kind="deadline-exceeded"' in text and 'kind="no-socket"' in text
    assert "pleg_doctor_finding_active{" in text and 'class="runtime-frozen"' in text
    assert violations(text, ids, max_devices=_block_devices()) == []


def test_the_check_catches_an_id_label_and_an_unbounded_value() -> None:
    ids = {_id(7)}
    bad = (
        "# TYPE pleg_doctor_x gauge\n"
        f'pleg_doctor_x{{container_id="{_id(7)}"}} 1\n'
        '# TYPE pleg_doctor_finding_active gauge\npleg_doctor_finding_active{class="runtime-frozen",'
        'code="PD901",severity="critical"} 1\n'
        f'pleg_doctor_finding_active{{class="pod {_id(7)[:12]}",code="PD901",severity="critical"}} 1\n'
        '# TYPE pleg_doctor_disk_in_flight gauge\npleg_doctor_disk_in_flight{device="sda"} 1\n'
        'pleg_doctor_disk_in_flight{device="sdb"} 1\n'
    )
    found = violations(bad, ids, max_devices=1)
    assert any("'container_id' is not in the low-cardinality set" in v for v in found)
    assert any("outside its bounded vocabulary" in v and "pod" in v for v in found)
    assert any("looks like a pod or container id" in v for v in found)
    assert any("more than the 1 block devices" in v for v in found)
    good = bad.split("\n", 2)[2].replace(f'class="pod {_id(7)[:12]}"', 'class="shim-hang"')
    assert violations(good, ids, max_devices=2) == []
