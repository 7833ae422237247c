"""CPU lockups (PD609) and old-format D-state task lines, from real kernel logs in the corpus."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.model import RootCauseClass as C
from rulecheck import assert_fires, assert_quiet, diagnose

REAL = Path(__file__).resolve().parent / "corpus" / "real"


def test_pd609_fires_on_a_soft_lockup_report() -> None:
    # amazon-eks-ami#454: `watchdog: BUG: soft lockup - CPU#5 stuck for 23s! [kworker/u16:2:62]`
    files = sorted((REAL / "eks-ami-454-soft-lockup-kworker-small-file-copy-4.14").glob("*.txt"))
    hits = assert_fires("PD609", files)
    assert "CPU#5" in hits[0].title and "23 s" in hits[0].title and "kworker/u16:2:62" in hits[0].title
    assert hits[0].evidence[0].line == 1


def test_pd609_quiet_on_the_watchdog_starting_at_boot(tmp_path: Path) -> None:
    boot = (
        "[    0.216144] NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.\n"
        "[    0.216144] watchdog: Disabling watchdog on nohz_full cores by default\n"
    )
    assert_quiet("PD609", {"dmesg.txt": boot}, tmp_path)


def test_an_old_format_d_state_task_line_without_its_info_line_is_a_hung_task() -> None:
    # kubernetes#16601: 3.x task line `docker D ffff88021fc12ec0 0 10467 1 0x00000000`, INFO line cut
    files = sorted((REAL / "k8s-16601-dmesg-docker-hung-copy-net-ns-raw-monotonic").glob("*.txt"))
    dg = diagnose(files)
    assert dg.root_causes[0].cls == C.KERNEL_D_STATE
    assert any("docker:10467" in f.title and "copy_net_ns" in f.title for f in dg.findings)
