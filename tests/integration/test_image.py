"""The OCI image of deploy/image/build.sh, end to end: built from Debian packages (mmdebstrap + umoci),
pushed to a docker-registry started here (skopeo), pulled by digest and run by a containerd
started here (ctr), as the DaemonSet runs it: host network, the node's PID namespace, the CRI
socket bind-mounted read-only, a read-only root. `watch` inside it serves pleg_doctor_ metrics
and its probe sees the runtime up; `collect` inside it (what `kubectl pleg-doctor` runs in its
debug pod) writes a bundle that analyzes here.

The build takes one to two minutes (network: a Debian mirror and PyPI) and is done once per
session. Figures (build time, sizes, digest) are printed: run with -s to see them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import require, wait_until
from plegdoctor.testbed.containerd import ContainerdProcess
from plegdoctor.testbed.registry import RegistryProcess, free_port

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "image" / "build.sh"
NAMESPACE = "pleg-doctor-image-test"
TOOLS = ("mmdebstrap", "umoci", "skopeo", "containerd", "ctr", "runc", "docker-registry")


@dataclass(frozen=True)
class BuiltImage:
    layout: Path
    tag: str
    digest: str
    seconds: float


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def _build(out: Path, *source: str) -> BuiltImage:
    t0 = time.monotonic()
    proc = subprocess.run(
        ["sh", str(BUILD), *source, "--out", str(out), "--tag", "test", "--print-digest"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest = proc.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71, proc.stdout
    print(f"\nimage build: {seconds:.0f} s, manifest {digest}")
    return BuiltImage(out, "test", digest, seconds)


@pytest.fixture(scope="session")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    require(*TOOLS)
    return _build(tmp_path_factory.mktemp("image") / "oci", "--worktree")  # the code under test


@pytest.mark.timeout(1800)
def test_two_builds_of_one_commit_give_the_same_digest(tmp_path: Path) -> None:
    """Bit-reproducible while the Debian mirror and PyPI serve the same files (pin the mirror with
    DEBIAN_MIRROR=<a snapshot.debian.org URL> to make that hold across days). Both builds are of
    one commit (`--rev`), so edits and commits made meanwhile do not count."""
    if os.environ.get("PLEG_DOCTOR_IMAGE_REPRO") != "1":
        pytest.skip("set PLEG_DOCTOR_IMAGE_REPRO=1 to build the image twice more (3-4 minutes)")
    require(*TOOLS)
    rev = _git("rev-parse", "HEAD")
    first = _build(tmp_path / "a", "--rev", rev)
    second = _build(tmp_path / "b", "--rev", rev)
    assert first.digest == second.digest


def _ctr(
    ctd: ContainerdProcess, *args: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ctr", "--address", ctd.address, "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, f"ctr {' '.join(args)}: {proc.stderr}"
    return proc


def _registry_digest(registry: RegistryProcess, repo: str, tag: str) -> str:
    req = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.headers["Docker-Content-Digest"])


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


@contextlib.contextmanager
def _container(ctd: ContainerdProcess, ref: str, cid: str, log: Path, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """`ctr run` of the image in the foreground (our child, by PID) with the DaemonSet's view of the
    node; killed, deleted with its snapshot, in the end."""
    run = [
        *("ctr", "--address", ctd.address, "--namespace", NAMESPACE, "run"),
        "--net-host",
        # hostPID: runc joins its own PID namespace, the node's (/proc/1 here may deny the setns)
        "--with-ns=pid:/proc/self/ns/pid",
        "--read-only",
        # runc's state and the stdio FIFOs under the test containerd's dir, not /run/containerd
        f"--runc-root={ctd.spec.base_dir}/ctr-runc",
        f"--fifo-dir={ctd.spec.base_dir}/ctr-fifo",
        f"--cgroup={ctd.spec.cgroup_parent}/{cid}",
        f"--mount=type=bind,src={ctd.address},dst=/run/containerd/containerd.sock,options=rbind:ro",
        "--mount=type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev:size=67108864",
        ref,
        cid,
        *argv,
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(run, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        _ctr(ctd, "task", "kill", "--signal", "SIGKILL", cid, check=False)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        _ctr(ctd, "task", "delete", "--force", cid, check=False)
        _ctr(ctd, "container", "delete", cid, check=False)  # and its snapshot


@pytest.mark.timeout(1800)
def test_image_built_from_debian_runs_watch_and_collect_on_a_real_containerd(
    built_image: BuiltImage, registry: RegistryProcess, containerd: ContainerdProcess, tmp_path: Path
) -> None:
    require(*TOOLS)
    layout = built_image.layout
    index = json.loads((layout / "index.json").read_text())
    (desc,) = index["manifests"]
    assert desc["digest"] == built_image.digest
    manifest = json.loads((layout / "blobs" / "sha256" / built_image.digest.split(":")[1]).read_text())
    config = json.loads((layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
    assert config["config"]["Entrypoint"] == ["/opt/pleg-doctor/bin/pleg-doctor"]
    assert config["config"]["Cmd"][0] == "watch" and config["config"]["User"] == "0:0"
    labels = config["config"]["Labels"]
    assert {"org.opencontainers.image.source", "org.opencontainers.image.revision"} <= set(labels)
    from plegdoctor import __version__

    assert labels["org.opencontainers.image.version"] == __version__
    # created is the last commit's time, not the build's (what makes two builds comparable)
    revision = labels["org.opencontainers.image.revision"].removesuffix("-dirty")
    assert len(revision) == 40
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or _git("log", "-1", "--format=%ct", revision)
    created = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert config["created"] == labels["org.opencontainers.image.created"] == created
    assert manifest["layers"] and all(h["created"] == created for h in config["history"])
    (layer,) = manifest["layers"]
    print(f"\nimage: one layer of {layer['size'] / 2**20:.1f} MiB compressed")

    # push: skopeo copies the manifest as it is, so the registry serves the digest build.sh printed
    repo = "pleg-doctor/pleg-doctor"
    push = subprocess.run(
        [
            *("skopeo", "copy", "--dest-tls-verify=false", "--quiet"),
            f"oci:{layout}:{built_image.tag}",
            f"docker://{registry.host}/{repo}:{built_image.tag}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert push.returncode == 0, push.stderr
    assert _registry_digest(registry, repo, built_image.tag) == built_image.digest

    # pull by digest, as deploy/kustomization.yaml references it
    ref = f"{registry.host}/{repo}@{built_image.digest}"
    _ctr(containerd, "images", "pull", "--plain-http", ref, timeout=300)
    try:
        listed = _ctr(containerd, "images", "ls").stdout
        assert built_image.digest in listed
        port = free_port()
        with _container(
            containerd,
            ref,
            "watch",
            tmp_path / "watch.log",
            *("/opt/pleg-doctor/bin/pleg-doctor", "watch", "--listen", f"127.0.0.1:{port}"),
            *("--runtime-endpoint", "unix:///run/containerd/containerd.sock", "--duration", "60s"),
        ) as proc:
            text = ""

            def runtime_up() -> bool:
                nonlocal text
                assert proc.poll() is None, (tmp_path / "watch.log").read_text()[-2000:]
                text = _metrics(port)
                return "\npleg_doctor_runtime_up 1" in text

            wait_until(runtime_up, 60, "pleg_doctor_runtime_up 1 from the containerised watch")
            names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("pleg_doctor_")}
            assert "pleg_doctor_relist_seconds_since_success" in names, sorted(names)
            assert len(names) >= 5

            # collect inside the image, as the kubectl plugin runs it in its debug pod
            fifo = f"--fifo-dir={containerd.spec.base_dir}/ctr-fifo"
            _ctr(
                containerd,
                *("task", "exec", fifo, "--exec-id", "collect", "watch"),
                *("/opt/pleg-doctor/bin/pleg-doctor", "collect", "-o", "/tmp/bundle.tar.gz", "--no-dump"),
                *("--runtime-endpoint", "unix:///run/containerd/containerd.sock", "--since", "10m"),
                timeout=240,
            )
            bundle = tmp_path / "bundle.tar.gz"
            with open(bundle, "wb") as fh:
                cat = subprocess.run(
                    [
                        *("ctr", "--address", containerd.address, "--namespace", NAMESPACE),
                        *("task", "exec", fifo, "--exec-id", "cat", "watch", "/usr/bin/cat", "/tmp/bundle.tar.gz"),
                    ],
                    stdout=fh,
                    stderr=subprocess.PIPE,
                    timeout=120,
                )
            assert cat.returncode == 0, cat.stderr
        from plegdoctor.pipeline import analyze_paths

        with tarfile.open(bundle) as tar:
            first = tar.next()
            assert first is not None and first.name == "manifest.json"
            extracted = tar.extractfile(first)
            assert extracted is not None
            man = json.load(extracted)
        assert man["runtime"]["name"] == "containerd"
        # the runtime's config, read through /proc/<containerd pid>/root: the containerised collect
        # found the node's containerd by the socket's peer, in the node's PID namespace
        files = {f["path"]: f for f in man["files"]}
        assert files["config/containerd.toml"]["kind"] == "containerd-config"
        diagnosis = analyze_paths([str(bundle)])
        assert diagnosis.to_json()["schema"].startswith("pleg-doctor/diagnosis/")
    finally:
        _ctr(containerd, "images", "rm", ref, check=False)
        _ctr(containerd, "content", "prune", "references", check=False)
        snaps = _ctr(containerd, "snapshots", "ls", check=False).stdout.splitlines()[1:]
        for key in reversed([s.split()[0] for s in snaps if s.strip()]):
            _ctr(containerd, "snapshots", "rm", key, check=False)
