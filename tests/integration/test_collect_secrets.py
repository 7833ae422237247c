"""A real `pleg-doctor collect` on a real containerd with secrets planted where a node keeps them:
none reaches any bundle member, and the manifest counts the redactions (#10 item 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import wait_until
from plegdoctor.live.cri.client import CRIClient, container_config, host_network_sandbox_config
from plegdoctor.testbed.containerd import ContainerdProcess

GHP = "ghp_PlantedA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv"
PEM_LINES = ("MIIEowIBAAKCAQEAplantedPemBodyLineOne0123456789abcdefABCDEF", "plantedPemBodyLineTwo0123456789==")
REGISTRY_AUTH = """
[plugins."io.containerd.grpc.v1.cri".registry.configs."planted.example:5000".auth]
  username = "planted-user-c1"
  password = "planted-pass-c2"
  auth = "cGxhbnRlZC1hdXRoLWMz"
  identitytoken = '''planted-idtok-c4
planted-idtok-c4b'''

[plugins."io.containerd.pleg-doctor.v1.planted"]
  tokens = [
    "planted-arr-c5",
    "planted-arr-c6",
  ]
  mirror = "https://planted-url-c7@mirror.example"
"""
CONFIG_SECRETS = (
    "planted-user-c1",
    "planted-pass-c2",
    "cGxhbnRlZC1hdXRoLWMz",
    "planted-idtok-c4",
    "planted-arr-c5",
    "planted-arr-c6",
    "planted-url-c7",
)
ENV_SECRETS = ("planted-env-e1", "planted-cenv-e2")
ARGV_SECRETS = ("planted-argv-a1", "planted-argv-a2", "planted-argv-a3", "planted-argv-a4", GHP, "planted-argv-a5")
LOG_SECRETS = ("planted-log-l1xyz", "planted-log-l2", "planted-log-l3", *PEM_LINES)
PLANTED = CONFIG_SECRETS + ENV_SECRETS + ARGV_SECRETS + LOG_SECRETS


@pytest.fixture
def planted_processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two sleeping processes with secrets in their argv; one named like a runtime (runc-*), so
    its command line also reaches the kernel-stack member. Stopped by PID at teardown."""
    code = "import sys, time; print('up', flush=True); time.sleep(300)"
    runtime_named = tmp_path / "runc-planted"
    runtime_named.symlink_to(os.path.realpath(sys.executable))
    argvs = [
        [
            sys.executable,
            "-c",
            code,
            "--token",
            "planted-argv-a1",
            "--password=planted-argv-a2",
            "--creds",
            "bob:planted-argv-a3",
            "https://planted-argv-a4@git.example/r.git",
            GHP,
        ],
        [str(runtime_named), "-c", code, "--token", "planted-argv-a5"],
    ]
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"}) for a in argvs]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"up\n"
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def plant_log_lines(ctd: ContainerdProcess) -> None:
    """A registry round trip as a debug log prints it, and a key someone logged."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    lines = [
        f'time="{now}" level=debug msg="do request" Authorization="Bearer planted-log-l1xyz" '
        'url="https://bob:planted-log-l2@planted.example:5000/v2/"',
        f'time="{now}" level=debug msg="response header" header="Set-Cookie: sid=planted-log-l3; Path=/"',
        f'time="{now}" level=debug msg="loaded key"',
        "-----BEGIN RSA PRIVATE KEY-----",
        *PEM_LINES,
        "-----END RSA PRIVATE KEY-----",
    ]
    with open(ctd.spec.log_path, "a") as fh:
        fh.write("\n".join(lines) + "\n")


def read_bundle(path: Path) -> tuple[dict, dict[str, str]]:
    with tarfile.open(path) as tar:
        members = {}
        for n in tar.getnames():
            f = tar.extractfile(n)
            assert f is not None
            members[n] = f.read().decode("utf-8", "replace")
    return json.loads(members["manifest.json"]), members


def test_collect_leaks_no_planted_secret(
    containerd_factory: Callable[..., ContainerdProcess],
    images: dict[str, str],
    planted_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    ctd = containerd_factory(log_level="debug", extra_toml=REGISTRY_AUTH, env={"PLANTED_API_TOKEN": "planted-env-e1"})
    assert "planted-pass-c2" in Path(ctd.spec.config_path).read_text()  # planted where collect reads it
    # a container whose env holds a secret: containerd's debug log prints the CRI request with it
    client = CRIClient(ctd.endpoint, timeout=60)
    client.pull_image(images["busybox"])
    sc = host_network_sandbox_config("app", cgroup_parent=ctd.spec.cgroup_parent)
    sid = client.run_pod_sandbox(sc)
    cfg = container_config(
        "app", images["busybox"], command=["/bin/sleep"], args=["600"], envs={"DB_PASSWORD": "planted-cenv-e2"}
    )
    client.start_container(client.create_container(sid, cfg, sc))
    wait_until(lambda: "planted-cenv-e2" in Path(ctd.spec.log_path).read_text(), 10, "the env in containerd's log")
    plant_log_lines(ctd)

    out = tmp_path / "bundle.tar.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "collect", "-o", str(out), "--runtime-endpoint", ctd.endpoint],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    manifest, members = read_bundle(out)
    by_path = {f["path"]: f for f in manifest["files"]}
    # the members that held planted secrets are there (the test proves something)
    for member in ("config/containerd.toml", "tasks/ps.txt", "tasks/stacks.txt", "logs/containerd.log"):
        assert member in members, by_path.get(member)
    assert f"goroutines/containerd-{ctd.pid}.stacks.log" in members

    leaked = {s: [n for n, text in members.items() if s in text] for s in PLANTED}
    leaked = {s: where for s, where in leaked.items() if where}
    print(f"planted secrets redacted in a real collect: {len(PLANTED) - len(leaked)}/{len(PLANTED)}")
    assert leaked == {}

    # the manifest counts them, per member
    assert by_path["config/containerd.toml"]["redactions"] >= 6
    assert by_path["tasks/ps.txt"]["redactions"] >= len(ARGV_SECRETS)
    assert by_path["tasks/stacks.txt"]["redactions"] >= 1
    assert by_path["logs/containerd.log"]["redactions"] >= 4
    # still evidence: the redacted config is TOML the config audit reads, argv keeps its flags
    assert "restrict_oom_score_adj = true" in members["config/containerd.toml"]
    assert "--token <redacted>" in members["tasks/ps.txt"] and "--password=<redacted>" in members["tasks/ps.txt"]
    t0 = time.monotonic()
    diag = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "analyze", str(out), "-o", "json"], capture_output=True, text=True
    )
    assert diag.returncode == 0, diag.stderr
    assert time.monotonic() - t0 < 120
