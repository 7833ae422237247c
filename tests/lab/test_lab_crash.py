"""A lab process killed with SIGKILL mid-run leaves a ledger from which `lab down` undoes everything.

Uses the `+dirty` variant so the ledger also holds changed sysctls. Needs what the lab needs
(root, FUSE, loop devices, the Debian packages); about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plegdoctor.lab.slowdisk import host_problems
from plegdoctor.lab.state import mounts_under, pids_mentioning

pytestmark = pytest.mark.lab


def _loops() -> set[tuple[str, str]]:
    """Attached loop devices as (name, backing file)."""
    out = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True, timeout=30)
    return {tuple(line.split(None, 1)) for line in out.stdout.splitlines() if line.strip()}  # type: ignore[misc]


LAB_DIR = Path(os.environ.get("PLEG_DOCTOR_LAB_DIR", "/var/lib/pleg-doctor-lab-ci"))
NAMES = ("dirty_bytes", "dirty_background_bytes", "dirty_ratio", "dirty_background_ratio")


def _sysctls() -> dict[str, str]:
    return {n: Path(f"/proc/sys/vm/{n}").read_text() for n in NAMES}


def _ledger() -> dict:
    try:
        return json.loads((LAB_DIR / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _require_lab_host() -> None:
    """Skip when the host cannot run the lab; fail instead under PLEG_DOCTOR_REQUIRE_INTEGRATION=1 (CI)."""
    problems = host_problems()
    if problems:
        reason = "lab cannot run here: " + "; ".join(problems)
        if os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason + " (and PLEG_DOCTOR_REQUIRE_INTEGRATION=1)")
        pytest.skip(reason)


def _wait_for_containerd_and_sysctls(proc: subprocess.Popen[bytes]) -> None:
    """Until the lab's ledger records a running containerd and the changed dirty limits."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        kinds = {(r["kind"], r["name"]) for r in _ledger().get("resources", [])}
        if ("process", "containerd") in kinds and ("sysctl", "vm.dirty_bytes") in kinds:
            return
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        time.sleep(0.2)
    pytest.fail("the lab never got containerd up with the dirty limits set")


@pytest.mark.timeout(600)
def test_down_after_sigkill_undoes_processes_mounts_loop_and_sysctls():
    _require_lab_host()
    before = _sysctls()
    loops_before = _loops()
    cmd = [
        sys.executable,
        "-m",
        "plegdoctor.cli",
        "lab",
        "run",
        "--variant",
        "1.7+volatile+dirty",
        "--write-mib",
        "64",
        "--dir",
        str(LAB_DIR),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for_containerd_and_sysctls(proc)
        time.sleep(2)
        os.kill(proc.pid, signal.SIGKILL)  # no finally, no atexit: a crash
        proc.wait(timeout=30)
        assert pids_mentioning(str(LAB_DIR / "disk")), "nbdkit/nbdfuse should outlive the killed lab"
        assert mounts_under(LAB_DIR), "the slow disk should still be mounted after the crash"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        down = subprocess.run(
            [sys.executable, "-m", "plegdoctor.cli", "lab", "down", "--dir", str(LAB_DIR)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert down.returncode == 0, down.stderr
    assert mounts_under(LAB_DIR) == []
    assert pids_mentioning(str(LAB_DIR / "run")) == []
    assert pids_mentioning(str(LAB_DIR / "disk")) == []
    assert _ledger().get("resources") == []
    assert _sysctls() == before
    # no loop device of ours left attached, not even a dead one (its FUSE file gone: backing "/")
    assert _loops() <= loops_before


@pytest.mark.timeout(600)
def test_sigterm_mid_run_cleans_up_by_itself():
    """SIGTERM (or Ctrl-C) ends `lab run` with everything undone, without `lab down`."""
    _require_lab_host()
    before = _sysctls()
    loops_before = _loops()
    cmd = [
        sys.executable,
        "-m",
        "plegdoctor.cli",
        "lab",
        "run",
        "--variant",
        "1.7+dirty",
        "--write-mib",
        "256",
        "--dir",
        str(LAB_DIR),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for_containerd_and_sysctls(proc)
        time.sleep(3)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 130, err.decode()[-2000:]
        assert b"interrupted" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            subprocess.run(
                [sys.executable, "-m", "plegdoctor.cli", "lab", "down", "--dir", str(LAB_DIR)],
                capture_output=True,
                timeout=300,
            )
    assert mounts_under(LAB_DIR) == []
    assert pids_mentioning(str(LAB_DIR / "run")) == []
    assert pids_mentioning(str(LAB_DIR / "disk")) == []
    assert _sysctls() == before
    assert _loops() <= loops_before
