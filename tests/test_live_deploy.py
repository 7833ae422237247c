"""deploy/: Kubernetes manifests valid against the Kubernetes schemas (offline), alert rules unit-tested with
promtool, the Grafana dashboard well-formed and using only metrics watch exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from plegdoctor.live.exporter import METRIC_NAMES

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SUFFIXES = ("_bucket", "_count", "_sum")


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"{binary} missing and PLEG_DOCTOR_REQUIRE_INTEGRATION=1")
        pytest.skip(f"{binary} not installed (apt-get install prometheus)")
    return path


def _known(name: str) -> bool:
    base = name
    for s in SUFFIXES:
        base = base.removesuffix(s)
    return base in METRIC_NAMES


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bpleg_doctor_[a-z0-9_]+", expr))


def test_daemonset_validates_against_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = [d for d in yaml.safe_load_all((DEPLOY / "daemonset.yaml").read_text()) if d]
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "DaemonSet"]
    version = kv.latest_version()
    for doc in docs:
        kv.validate(doc, version, strict=True)  # raises ValidationError on an unknown or mistyped field
    ds = docs[2]["spec"]["template"]["spec"]
    assert ds["hostPID"] is True
    (c,) = ds["containers"]
    assert c["securityContext"]["privileged"] is False and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["limits"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    writable = [p for p, m in mounts.items() if not m.get("readOnly")]
    assert sorted(writable) == ["/tmp", "/var/lib/pleg-doctor/captures"]
    assert mounts["/run/containerd"]["readOnly"] is True


def test_a_broken_manifest_is_rejected() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    doc = [d for d in yaml.safe_load_all((DEPLOY / "daemonset.yaml").read_text()) if d][2]
    doc["spec"]["template"]["spec"]["hostPid"] = True  # misspelled field
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, kv.latest_version(), strict=True)


def _rules_dir(tmp_path: Path) -> Path:
    rule = yaml.safe_load((DEPLOY / "prometheusrule.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    shutil.copy(DEPLOY / "tests" / "alerts-test.yml", tmp_path / "alerts-test.yml")
    return tmp_path


def test_alert_rules_use_only_our_metrics() -> None:
    rule = yaml.safe_load((DEPLOY / "prometheusrule.yaml").read_text())
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "PlegDoctorRuntimeStalled",
        "PlegDoctorRelistProbeSlow",
        "PlegDoctorKubeletPlegLastSeenTooOld",
        "PlegDoctorIOPressureDuringStall",
    }
    for r in alerts.values():
        names = _metric_names(r["expr"])
        assert names and all(_known(n) for n in names), names


def test_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    promtool = _require("promtool")
    d = _rules_dir(tmp_path)
    check = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=d, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout
    test = subprocess.run([promtool, "test", "rules", "alerts-test.yml"], cwd=d, capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert dash["uid"] == "pleg-doctor" and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used: set[str] = set()
    for e in exprs:
        # no metric from elsewhere: every `name{` selector is ours
        for sel in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", e):
            assert sel.startswith("pleg_doctor_"), (sel, e)
        used |= _metric_names(e)
    unknown = {n for n in used if not _known(n)}
    assert not unknown
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # the dashboard shows the figures the incident needs
    assert {
        "pleg_doctor_relist_in_flight_seconds",
        "pleg_doctor_cri_call_duration_seconds_bucket",
        "pleg_doctor_pressure_avg10_ratio",
        "pleg_doctor_disk_utilization_ratio",
    } <= used
