"""kubectl-pleg_doctor: the kubectl calls it makes, in order, each under a deadline, the debug pod
deleted whatever happens, the bundle streamed back and analyzed here.

A fake `kubectl` (a Python script first on PATH) records each argv (and the --custom file it was
given) and plays the API: `debug` names a pod, `exec ... cat` streams a real bundle
(tests/incidents/18-runtime-frozen-sigstop), FAKE_KUBECTL_FAIL / FAKE_KUBECTL_HANG make one step
fail or hang. The plugin runs as a real subprocess.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plegdoctor.errors import UserError
from plegdoctor.kubectl_plugin import (
    CONTAINER,
    REMOTE_BINARY,
    Options,
    build_plan,
    custom_container_spec,
    parse_node,
)

INCIDENT = Path(__file__).resolve().parent / "incidents" / "18-runtime-frozen-sigstop"
BUNDLE = next(INCIDENT.glob("*.tar.gz"))
EXPECTED = json.loads((INCIDENT / "expected.json").read_text())
POD = "node-debugger-node-7-x4k2p"

FAKE = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys, time
    argv = sys.argv[1:]
    rec = {{"argv": argv, "custom_profile": os.environ.get("KUBECTL_DEBUG_CUSTOM_PROFILE")}}
    if "--custom" in argv:
        rec["custom"] = json.load(open(argv[argv.index("--custom") + 1]))
    with open(os.environ["FAKE_KUBECTL_LOG"], "a") as fh:
        fh.write(json.dumps(rec) + "\\n")
    words = [a for a in argv if not a.startswith("--")]
    verb = words[0]
    step = "copy" if verb == "exec" and "/usr/bin/cat" in argv else ("collect" if verb == "exec" else verb)
    if os.environ.get("FAKE_KUBECTL_HANG") == step:
        time.sleep(60)
    if os.environ.get("FAKE_KUBECTL_FAIL") == step:
        sys.stderr.write("error: unable to upgrade connection: container not found\\n")
        sys.exit(1)
    if verb == "debug":
        name = os.environ.get("FAKE_KUBECTL_POD", "{pod}")
        sys.stderr.write(f"Creating debugging pod {{name}} with container pleg-doctor on node node-7.\\n")
    elif step == "copy":
        sys.stdout.buffer.write(open(os.environ["FAKE_KUBECTL_BUNDLE"], "rb").read())
    elif verb == "wait":
        print("pod/{pod} condition met")
    elif verb == "delete":
        print('pod "{pod}" deleted')
    """
)


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> dict[str, Any]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubectl = bindir / "kubectl"
    kubectl.write_text(FAKE.format(python=sys.executable, pod=POD))
    kubectl.chmod(0o755)
    log = tmp_path / "kubectl.log"
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_KUBECTL_LOG": str(log),
        "FAKE_KUBECTL_BUNDLE": str(BUNDLE),
    }
    env.pop("KUBECTL_DEBUG_CUSTOM_PROFILE", None)  # the plugin sets it
    return {"env": env, "log": log, "tmp": tmp_path}


def _plugin(fake: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plegdoctor.kubectl_plugin", *args],
        env={**fake["env"], **env},
        cwd=fake["tmp"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _calls(fake: dict[str, Any]) -> list[dict[str, Any]]:
    if not fake["log"].exists():
        return []
    return [json.loads(line) for line in fake["log"].read_text().splitlines()]


def _verbs(calls: list[dict[str, Any]]) -> list[str]:
    out = []
    for c in calls:
        words = [a for a in c["argv"] if not a.startswith("--")]
        out.append("cat" if "/usr/bin/cat" in c["argv"] else words[0])
    return out


def test_collects_through_a_debug_pod_copies_the_bundle_back_and_diagnoses_it(fake_kubectl: dict[str, Any]) -> None:
    saved = fake_kubectl["tmp"] / "got.tar.gz"
    proc = _plugin(
        fake_kubectl, "node/node-7", "-n", "ops", "-o", "json", "--bundle", str(saved), "--image", "r/pd@sha256:ab"
    )
    assert proc.returncode == 0, proc.stderr
    calls = _calls(fake_kubectl)
    assert _verbs(calls) == ["debug", "wait", "exec", "cat", "delete"]
    debug, wait, collect, cat, delete = (c["argv"] for c in calls)
    # the debug pod: the node, our image, the sysadmin profile, our container name, it only sleeps
    assert debug[debug.index("debug") + 1] == "node/node-7"
    assert debug[debug.index("--image") + 1] == "r/pd@sha256:ab"
    assert debug[debug.index("--profile") + 1] == "sysadmin"
    assert calls[0]["custom_profile"] == "true"  # --custom on kubectl 1.30 too
    assert debug[debug.index("-c") + 1] == CONTAINER
    assert debug[debug.index("--") + 1 :][0].endswith("/sleep")
    assert all("--namespace=ops" in c for c in (debug, wait, collect, cat, delete))
    # every later call names the pod kubectl created
    assert f"pod/{POD}" in wait and POD in collect and POD in cat and POD in delete
    # the image's own pleg-doctor runs collect, nothing of the node's (no chroot /host)
    remote = collect[collect.index("--") + 1 :]
    assert remote[:2] == [REMOTE_BINARY, "collect"] and "chroot" not in collect
    assert remote[remote.index("-o") + 1] == cat[-1]
    # the node's journal and CRI socket are mounted read-only where collect looks for them
    mounts = {m["mountPath"]: m for m in calls[0]["custom"]["volumeMounts"]}
    assert {"/var/log", "/run/log", "/etc/machine-id", "/run/containerd"} <= set(mounts)
    assert all(m["readOnly"] and m["name"] == "host-root" for m in mounts.values())
    # the streamed bundle is the one on the "node", byte for byte, private to the user
    assert saved.read_bytes() == BUNDLE.read_bytes()
    assert saved.stat().st_mode & 0o077 == 0
    # and it was analyzed here: the incident's expected root cause
    report = json.loads(proc.stdout)
    assert report["schema"].startswith("pleg-doctor/diagnosis/")
    assert report["root_causes"][0]["class"] == EXPECTED["class"]
    assert set(EXPECTED["findings"]) <= {f["code"] for f in report["findings"]}


def test_markdown_and_keep(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(fake_kubectl, "node-7", "--keep", "-o", "markdown", "--bundle", "b.tar.gz")
    assert proc.returncode == 0, proc.stderr
    assert _verbs(_calls(fake_kubectl)) == ["debug", "wait", "exec", "cat"]  # no delete
    assert f"delete pod {POD}" in proc.stderr  # the command that removes it is printed
    assert proc.stdout.startswith("#") and EXPECTED["class"] in proc.stdout


def test_a_failed_collect_still_deletes_the_pod(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(fake_kubectl, "node/node-7", "--bundle", "b.tar.gz", FAKE_KUBECTL_FAIL="collect")
    assert proc.returncode == 2
    assert "collect on the node failed: error: unable to upgrade connection" in proc.stderr
    assert _verbs(_calls(fake_kubectl)) == ["debug", "wait", "exec", "delete"]
    assert proc.stdout == ""


def test_a_hanging_step_is_killed_at_its_deadline_and_the_pod_deleted(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(
        fake_kubectl, "node/node-7", "--collect-timeout", "1", "--bundle", "b.tar.gz", FAKE_KUBECTL_HANG="collect"
    )
    assert proc.returncode == 2
    assert "collect on the node: no answer within 1 s" in proc.stderr
    assert _verbs(_calls(fake_kubectl)) == ["debug", "wait", "exec", "delete"]


def test_a_pod_that_never_starts_says_why_and_is_deleted(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(fake_kubectl, "node/node-7", FAKE_KUBECTL_FAIL="wait")
    assert proc.returncode == 2
    assert "wait for the pod failed" in proc.stderr and "runtime is stuck cannot start the debug pod" in proc.stderr
    assert _verbs(_calls(fake_kubectl)) == ["debug", "wait", "delete"]


def test_an_empty_bundle_is_an_error(fake_kubectl: dict[str, Any]) -> None:
    empty = fake_kubectl["tmp"] / "empty"
    empty.write_bytes(b"")
    proc = _plugin(fake_kubectl, "node/node-7", "--bundle", "b.tar.gz", FAKE_KUBECTL_BUNDLE=str(empty))
    assert proc.returncode == 2 and "empty bundle" in proc.stderr
    assert _verbs(_calls(fake_kubectl))[-1] == "delete"


def test_debug_without_a_pod_name_stops_there(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(fake_kubectl, "node/node-7", FAKE_KUBECTL_POD="")
    assert proc.returncode == 2 and "did not name its pod" in proc.stderr
    assert _verbs(_calls(fake_kubectl)) == ["debug"]


def test_missing_kubectl_is_one_line(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(fake_kubectl, "node/node-7", "--kubectl", str(fake_kubectl["tmp"] / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("not found (install kubectl or pass --kubectl PATH)")
    assert "Traceback" not in proc.stderr


def test_dry_run_prints_every_command_and_runs_nothing(fake_kubectl: dict[str, Any]) -> None:
    proc = _plugin(fake_kubectl, "node/node-7", "--dry-run", "--context", "prod", "--no-dump")
    assert proc.returncode == 0, proc.stderr
    assert _calls(fake_kubectl) == []
    commands = [line for line in proc.stdout.splitlines() if line.startswith("kubectl ")]
    assert [c.split()[2] if c.split()[1].startswith("--") else c.split()[1] for c in commands] == [
        "--request-timeout=60s",
        "wait",
        "exec",
        "exec",
        "--request-timeout=60s",
    ]
    assert all("--context=prod" in c for c in commands)
    assert "debug node/node-7" in commands[0] and "--profile sysadmin" in commands[0]
    assert "--no-dump" in commands[2] and commands[3].endswith("> <bundle>")
    assert '"mountPath": "/run/log"' in proc.stdout  # the container spec is shown
    kept = _plugin(fake_kubectl, "node/node-7", "--dry-run", "--keep")
    last = [c for c in kept.stdout.splitlines() if c.startswith("kubectl ")][-1]
    assert shlex.split(last)[1:3] == ["exec", "<debug-pod>"]  # the copy: no delete with --keep
    assert "# --keep: the debug pod is left running" in kept.stdout and _calls(fake_kubectl) == []


def test_every_step_has_a_deadline_and_api_calls_a_request_timeout(tmp_path: Path) -> None:
    plan = build_plan(Options(node="n1", pod_timeout=30, collect_timeout=99), str(tmp_path / "c.json"), "p")
    assert all(s.timeout > 0 for s in plan.steps.values())
    assert plan.steps["collect"].timeout == 99
    assert plan.steps["wait"].timeout > 30 and "--timeout=30s" in plan.steps["wait"].argv
    for name in ("debug", "delete"):
        assert any(a.startswith("--request-timeout=") for a in plan.steps[name].argv)


def test_node_names() -> None:
    assert parse_node("node/ip-10-0-0-1.ec2.internal") == "ip-10-0-0-1.ec2.internal"
    assert parse_node("nodes/w1") == parse_node("w1") == "w1"
    for bad in ("pod/w1", "node/", "node/W_1", "node/-x", "node/a;rm"):
        with pytest.raises(UserError):
            parse_node(bad)


def test_the_cri_socket_directory_is_mounted_wherever_it_is() -> None:
    spec = custom_container_spec(Options(node="n", runtime_endpoint="unix:///var/run/k3s/containerd/containerd.sock"))
    mounts = {m["mountPath"]: m["subPath"] for m in spec["volumeMounts"]}
    assert mounts["/var/run/k3s/containerd"] == "var/run/k3s/containerd"
    for bad in ("tcp://1.2.3.4:1", "unix://relative.sock", "unix:///run/../etc/x.sock"):
        with pytest.raises(UserError):
            _ = Options(node="n", runtime_endpoint=bad).socket_dir
