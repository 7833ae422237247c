"""The lab end to end, small profile: real containerd 1.7.24 on a slow disk, with and without volatile.

Needs root, FUSE, loop devices and the Debian packages the lab uses; downloads containerd
1.7.24 with apt-get download on first use (cached in the lab directory). Skips with the reason
when the host cannot run it, unless PLEG_DOCTOR_REQUIRE_INTEGRATION=1 (CI), where it fails.
Takes about 3-4 minutes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plegdoctor.lab.slowdisk import host_problems
from plegdoctor.lab.state import LabState, mounts_under, pids_mentioning

pytestmark = pytest.mark.lab


def _loops() -> set[tuple[str, str]]:
    """Attached loop devices as (name, backing file)."""
    out = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True, timeout=30)
    return {tuple(line.split(None, 1)) for line in out.stdout.splitlines() if line.strip()}  # type: ignore[misc]


REQUIRE = os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1"
LAB_DIR = Path(os.environ.get("PLEG_DOCTOR_LAB_DIR", "/var/lib/pleg-doctor-lab-ci"))
# the baseline must stall at least this long, and the volatile run must stay clearly under it
STALL_THRESHOLD = 8.0


def _problems() -> list[str]:
    problems = host_problems()
    for tool, pkg in (
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("docker-registry", "docker-registry"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
    ):
        if shutil.which(tool) is None:
            problems.append(f"{tool} missing (apt-get install -y {pkg})")
    if not any(os.path.exists(p) for p in ("/bin/busybox", "/usr/bin/busybox")):
        problems.append("busybox missing (apt-get install -y busybox-static)")
    return problems


LAB_PACKAGES = ("nbdkit", "libnbd-bin", "fuse3", "e2fsprogs", "containerd", "runc", "docker-registry", "busybox-static")


def _install_missing() -> None:
    """Under CI (REQUIRE), install the lab's Debian packages when some are missing."""
    missing = []
    for pkg in LAB_PACKAGES:
        q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=60)
        if "install ok installed" not in q.stdout:
            missing.append(pkg)
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(install, capture_output=True, timeout=900, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=900, env=env)
            subprocess.run(install, capture_output=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def lab_run() -> dict:
    if REQUIRE and _problems():
        _install_missing()
    problems = _problems()
    if problems:
        reason = "lab cannot run here: " + "; ".join(problems)
        if REQUIRE:
            pytest.fail(reason + " (and PLEG_DOCTOR_REQUIRE_INTEGRATION=1)")
        pytest.skip(reason)
    loops_before = _loops()
    sysctls = {n: Path(f"/proc/sys/vm/{n}").read_text() for n in ("dirty_bytes", "dirty_background_bytes")}
    cmd = [
        sys.executable,
        "-m",
        "plegdoctor.cli",
        "lab",
        "run",
        "--compare",
        "--profile",
        "small",
        "--dir",
        str(LAB_DIR),
        "-o",
        "json",
    ]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=1080)
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "plegdoctor.cli", "lab", "down", "--dir", str(LAB_DIR)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert cp.returncode == 0, f"lab run failed ({cp.returncode}):\n{cp.stderr[-4000:]}"
    assert down.returncode == 0, down.stderr
    doc = json.loads(cp.stdout)
    doc["_stderr"] = cp.stderr
    doc["_sysctls_before"] = sysctls
    doc["_loops_before"] = loops_before
    return doc


@pytest.mark.timeout(1500)
def test_stall_reproduces_without_volatile_and_shrinks_with_it(lab_run: dict) -> None:
    runs = {r["variant"]: r for r in lab_run["runs"]}
    assert set(runs) >= {"1.7", "1.7+volatile"}, lab_run["_stderr"][-2000:]
    base, vol = runs["1.7"], runs["1.7+volatile"]
    assert base["containerd"].startswith("1.7.") and base["volatile"] is False and vol["volatile"] is True
    assert not base["error"] and not vol["error"]
    # the seed stall: the shim's umount syncs the disk while the relist waits
    assert base["relist_max_seconds"] > STALL_THRESHOLD, base
    assert base["umount_syncfs_seconds"] > STALL_THRESHOLD / 2, base
    assert base["stop_container_max_seconds"] > STALL_THRESHOLD / 2, base
    # volatile removes the umount sync: StopContainer is fast, the worst relist shrinks
    assert vol["umount_syncfs_seconds"] < 1.0, vol
    assert vol["stop_container_max_seconds"] < base["stop_container_max_seconds"] / 5, (base, vol)
    assert vol["relist_max_seconds"] < base["relist_max_seconds"] * 0.6, (base, vol)
    assert lab_run["best"] != "1.7"
    for key in (
        "relist_p50_seconds",
        "relist_p99_seconds",
        "relist_blocked_seconds",
        "gaps_over_3s",
        "stop_container_p50_seconds",
        "bundle",
        "diagnosis",
    ):
        assert key in base


@pytest.mark.timeout(60)
def test_analyze_finds_each_chain_in_the_captured_bundles(lab_run: dict) -> None:
    runs = {r["variant"]: r for r in lab_run["runs"]}
    base = runs["1.7"]
    assert base["bundle"] and Path(base["bundle"]).is_file()
    assert base["diagnosis"] == "overlay-umount-sync", base["diagnosis_summary"]
    vol = runs["1.7+volatile"]
    if vol["relist_max_seconds"] >= 3.0:  # a stall long enough to be captured (trigger 2 s, polled)
        assert vol["bundle"] and Path(vol["bundle"]).is_file()
        assert vol["expected_mechanism"] == "fsync-io-pressure"
        assert vol["diagnosis"] != "overlay-umount-sync", vol["diagnosis_summary"]
        assert "fsync-io-pressure" in vol["diagnosis_classes"], vol["diagnosis_summary"]
    assert Path(lab_run["plot"]).read_text().count("<polyline") == len(lab_run["runs"])


@pytest.mark.timeout(60)
def test_down_leaves_nothing_behind(lab_run: dict) -> None:
    assert mounts_under(LAB_DIR) == []
    assert pids_mentioning(str(LAB_DIR / "run")) == []
    assert pids_mentioning(str(LAB_DIR / "disk")) == []
    assert LabState(LAB_DIR).resources == []
    for name, before in lab_run["_sysctls_before"].items():
        assert Path(f"/proc/sys/vm/{name}").read_text() == before
    # no loop device of ours left attached, not even a dead one (its FUSE file gone: backing "/")
    assert _loops() <= lab_run["_loops_before"]


def _browser() -> object:
    """tests/integration/browser.py (the Chromium harness), loaded by path: tests/lab is not a package."""
    path = Path(__file__).resolve().parents[1] / "integration" / "browser.py"
    spec = importlib.util.spec_from_file_location("pleg_doctor_test_browser", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
def test_the_lab_bundle_and_its_comparison_page_in_chromium(lab_run: dict, tmp_path: Path) -> None:
    """Issue #12: a real lab bundle's report shows the probe's CRI latency up to the stall, the
    stalled call and the node's pressure, and its chain reaches the shim; the comparison page has a
    plot per variant. Both pages quiet (no console errors, no network) and readable in Chromium."""
    from plegdoctor.pipeline import analyze_paths
    from plegdoctor.report import render

    browser = _browser()
    base = {r["variant"]: r for r in lab_run["runs"]}["1.7"]
    page = tmp_path / "lab-bundle.html"
    page.write_text(render(analyze_paths([base["bundle"]], series=True), "html"), encoding="utf-8")
    with browser.open_browser_page(page, tmp_path) as bp:  # type: ignore[attr-defined]
        bp.screenshot("lab-bundle.png")
        bp.assert_quiet()
        bp.assert_readable()
        lanes = set(bp.page.locator("svg#timeline g.lane").evaluate_all("(els) => els.map((e) => e.dataset.lane)"))
        assert {"cri-latency", "cri"} <= lanes, lanes
        if Path("/proc/pressure/io").exists():
            assert "psi-io" in lanes, lanes
        procs = bp.page.locator("svg#chain-graph .chain-node").evaluate_all(
            "(els) => els.map((e) => e.dataset.process)"
        )
        assert any(p.startswith("containerd-shim") for p in procs), procs
    compare = Path(lab_run["run_dir"]) / "compare.html"
    with browser.open_browser_page(compare, tmp_path) as bp:  # type: ignore[attr-defined]
        bp.screenshot("lab-compare.png")
        bp.assert_quiet()
        assert bp.page.locator("svg.latency-plot").count() == len(lab_run["runs"])
        assert bp.page.locator("table#variants tr.best").count() == 1
