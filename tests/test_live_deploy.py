"""deploy/: Kubernetes manifests valid against the Kubernetes schemas (offline), alert rules unit-tested with
promtool, the Grafana dashboard well-formed and using only metrics watch exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
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
    assert ds["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = ds["containers"]
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == ["SYS_PTRACE"]  # the smallest set (test_capability_set_*)
    assert c["resources"]["limits"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    writable = [p for p, m in mounts.items() if not m.get("readOnly")]
    assert sorted(writable) == ["/tmp", "/var/lib/pleg-doctor/captures"]
    assert mounts["/run/containerd"]["readOnly"] is True


def _quantity(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", q)
    assert m, q
    return int(m[1]) << {None: 0, "Ki": 10, "Mi": 20, "Gi": 30}[m[2]]


def _daemonset() -> dict:
    return [d for d in yaml.safe_load_all((DEPLOY / "daemonset.yaml").read_text()) if d][2]


def test_memory_limit_covers_the_journal_tail_and_tmp_is_not_at_the_edge() -> None:
    from plegdoctor.live.tools import MAX_LOG_BYTES

    spec = _daemonset()["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    limit = _quantity(c["resources"]["limits"]["memory"])
    # chunks + their join + the decoded text of one 64 MiB tail, on top of ~80 MiB idle RSS
    assert limit >= 3 * MAX_LOG_BYTES + (128 << 20), c["resources"]
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert "medium" not in tmp["emptyDir"]  # a Memory medium would count against that limit
    assert _quantity(tmp["emptyDir"]["sizeLimit"]) >= 4 * (64 << 20)


def test_podmonitor_scrapes_the_daemonset_where_it_listens() -> None:
    pm = yaml.safe_load((DEPLOY / "podmonitor.yaml").read_text())
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor"
    ds = _daemonset()
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pm["spec"]["namespaceSelector"]["matchNames"] == [ds["metadata"]["namespace"]]
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] in ports and ep["path"] == "/metrics"
    # watch listens on the pod IP (the node IP with hostNetwork), not on 127.0.0.1
    listen = next(a for a in c["args"] if a.startswith("--listen="))
    assert listen == f"--listen=$(POD_IP):{ports[ep['port']]}"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert "host" not in c["livenessProbe"]["httpGet"]
    # the job name the agent alerts use is the one the operator gives this PodMonitor
    job = f"{pm['metadata']['namespace']}/{pm['metadata']['name']}"
    rule = yaml.safe_load((DEPLOY / "prometheusrule.yaml").read_text())
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    jobs = {j for e in exprs for j in re.findall(r'job="([^"]+)"', e)}
    assert jobs == {job}


_CAP_PROBE = """
import os, sys
pid = int(sys.argv[1])
out = {}
for name, fn in [
    ("environ", lambda: open(f"/proc/{pid}/environ", "rb").read(1)),
    ("root", lambda: os.listdir(f"/proc/{pid}/root/")),
    ("wchan", lambda: open(f"/proc/{pid}/wchan").read().strip() not in ("", "0") or 1 / 0),
    ("stack", lambda: open(f"/proc/{pid}/stack").read()),
    ("signal", lambda: os.kill(pid, 0)),
]:
    try:
        fn()
        out[name] = True
    except (OSError, ZeroDivisionError):
        out[name] = False
print(" ".join(k for k, v in out.items() if v))
"""


def _reads_with_caps(caps: list[str], pid: int) -> set[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        if os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1":
            pytest.fail("needs root and setpriv (util-linux) and PLEG_DOCTOR_REQUIRE_INTEGRATION=1")
        pytest.skip("needs root and setpriv (util-linux)")
    spec = ",".join(["-all", *(f"+{c.lower()}" for c in caps)])
    proc = subprocess.run(
        [
            *(setpriv, f"--inh-caps={spec}", f"--ambient-caps={spec}", f"--bounding-set={spec}", "--no-new-privs"),
            *(sys.executable, "-c", _CAP_PROBE, str(pid)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_capability_set_of_the_manifest_reads_what_watch_needs() -> None:
    caps = _daemonset()["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
    # a root process with every capability, like containerd
    target = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.1)
        got = _reads_with_caps(caps, target.pid)
        assert {"environ", "root", "wchan", "signal"} <= got
        assert "stack" not in got  # kernel stacks need SYS_ADMIN: documented as optional
        # look-alike: without SYS_PTRACE the reads fail (so the one capability is needed), signals do not
        assert _reads_with_caps([], target.pid) == {"signal"}
    finally:
        target.kill()
        target.wait()


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
        "PlegDoctorRuntimeDown",
        "PlegDoctorAgentDown",
        "PlegDoctorAgentAbsent",
        "PlegDoctorRelistProbeSlow",
        "PlegDoctorKubeletPlegLastSeenTooOld",
        "PlegDoctorIOPressureDuringStall",
    }
    for name, r in alerts.items():
        names = _metric_names(r["expr"])
        assert all(_known(n) for n in names), names
        if name == "PlegDoctorAgentDown":  # the scrape's own `up`, the one series not ours
            assert not names and r["expr"].startswith("up{job=")
        else:
            assert names, name


def test_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    promtool = _require("promtool")
    d = _rules_dir(tmp_path)
    check = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=d, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout
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


def test_the_daemonsets_args_are_options_watch_accepts() -> None:
    """A flag the DaemonSet passes that watch does not know would crash-loop every node's pod."""
    from plegdoctor.live.watch import command

    ds = next(d for d in yaml.safe_load_all((DEPLOY / "daemonset.yaml").read_text()) if d["kind"] == "DaemonSet")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    assert c["args"][0] == "watch"
    args = [a.replace("$(POD_IP)", "127.0.0.1") for a in c["args"][1:]]
    ctx = command.make_context("watch", args)  # parses, runs nothing; a bad option raises
    assert ctx.params["publish"] is True and ctx.params["hold_for_repair"] == "annotation"
    with pytest.raises(Exception, match="No such option"):
        command.make_context("watch", [*args, "--no-such-flag"])
    # --publish needs the token the ServiceAccount mounts, and RBAC for exactly what it sends
    assert ds["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert (DEPLOY / "rbac.yaml").exists()
