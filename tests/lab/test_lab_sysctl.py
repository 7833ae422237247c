"""The lab's dirty-limit change is undone on the real kernel (root only; a few milliseconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plegdoctor.lab.state import LabState

pytestmark = pytest.mark.lab

NAMES = ("dirty_bytes", "dirty_background_bytes", "dirty_ratio", "dirty_background_ratio")


def _read() -> dict[str, str]:
    return {n: Path(f"/proc/sys/vm/{n}").read_text() for n in NAMES}


def test_dirty_limits_are_restored_exactly(tmp_path: Path):
    if os.geteuid() != 0:
        if os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1":
            pytest.fail("needs root to write /proc/sys/vm (and PLEG_DOCTOR_REQUIRE_INTEGRATION=1)")
        pytest.skip("needs root to write /proc/sys/vm")
    before = _read()
    state = LabState(tmp_path)
    try:
        state.set_sysctl("vm.dirty_bytes", str(256 << 20))
        state.set_sysctl("vm.dirty_background_bytes", str(64 << 20))
        assert Path("/proc/sys/vm/dirty_bytes").read_text().strip() == str(256 << 20)
        # a crash here: a new ledger object reads the same file and restores
        assert LabState(tmp_path).restore_sysctls() == []
    finally:
        if _read() != before:  # never leave the machine changed, even if the code under test is wrong
            for n in ("dirty_ratio", "dirty_background_ratio", "dirty_bytes", "dirty_background_bytes"):
                if before[n].strip() != "0":
                    Path(f"/proc/sys/vm/{n}").write_text(before[n])
    assert _read() == before
