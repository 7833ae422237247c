"""PD5xx (configuration and versions): each rule fires on a node whose config, versions and
mounts show the condition, and stays quiet on a healthy containerd setup or a near miss.
Configs and mounts are tests/fixtures/node files; the `versions.txt` texts written here are
the real outputs of `containerd --version` / `uname -r` (SYNTHETIC combinations)."""

from __future__ import annotations

from pathlib import Path

from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
NODE = TESTS / "fixtures" / "node"
LOGS = TESTS / "fixtures" / "logs"
INCIDENTS = TESTS / "incidents"

CONFIG_PLAIN = NODE / "config" / "containerd-1.6.20-config-default.toml"  # no overlay mount_options
CONFIG_VOLATILE = NODE / "config" / "config-v2-volatile-1.7.toml"  # mount_options = ["volatile"]
CONFIG_DUMP_VOLATILE = NODE / "config" / "containerd-1.7.24-config-dump-volatile.toml"
MOUNTS_MIXED = NODE / "mounts" / "proc-mounts-overlay-volatile.txt"  # one rootfs with volatile, one without
MOUNTS_VOLATILE = TESTS / "fixtures" / "rules" / "proc-mounts-overlay-all-volatile.txt"  # its volatile rows only
MOUNTS_FSYNC_VOLATILE = NODE / "mounts" / "proc-mounts-fsync-volatile.txt"
MOUNTS_PLAIN = INCIDENTS / "01-overlay-umount-sync-hung-task" / "proc-mounts.txt"  # overlay rootfs without volatile


def versions(containerd: str, kernel: str) -> str:
    """SYNTHETIC: what `containerd --version; uname -r` print, for the versions a test needs."""
    commit = "0cae528dd6cb557f7201036e9f43420650207b58"
    return (
        f"$ containerd --version\ncontainerd github.com/containerd/containerd v{containerd} {commit}\n"
        f"$ uname -r\n{kernel}\n"
    )


def _node(tmp_path: Path, containerd: str, kernel: str, *files: Path) -> list[Path]:
    v = tmp_path / "versions.txt"
    v.write_text(versions(containerd, kernel), encoding="utf-8")
    return [*files, v]


# -- PD501 overlay not volatile -----------------------------------------------------------


def test_pd501_fires_on_a_default_config_without_mount_options() -> None:
    hits = assert_fires("PD501", [CONFIG_PLAIN])
    assert "not volatile" in hits[0].title


def test_pd501_fires_on_rootfs_overlays_mounted_without_volatile() -> None:
    assert_fires("PD501", [MOUNTS_PLAIN])


def test_pd501_quiet_on_a_healthy_volatile_setup(tmp_path: Path) -> None:
    # a containerd 1.7.24 config dump with volatile, kernel 5.15, and rootfs overlays that show it
    assert_quiet("PD501", _node(tmp_path, "1.7.24", "5.15.0-91-generic", CONFIG_DUMP_VOLATILE, MOUNTS_VOLATILE))


# -- PD502 volatile ignored by this containerd ---------------------------------------------


def test_pd502_fires_on_volatile_configured_for_containerd_1_6_21(tmp_path: Path) -> None:
    hits = assert_fires("PD502", _node(tmp_path, "1.6.21", "5.15.0-91-generic", CONFIG_VOLATILE))
    assert "1.6.21" in hits[0].title


def test_pd502_fires_when_mounts_do_not_show_the_configured_volatile(tmp_path: Path) -> None:
    assert_fires("PD502", _node(tmp_path, "1.7.24", "5.15.0-91-generic", CONFIG_VOLATILE, MOUNTS_PLAIN))
    # a container started before the change still has a non-volatile rootfs
    assert_fires("PD502", _node(tmp_path, "1.7.24", "5.15.0-91-generic", CONFIG_VOLATILE, MOUNTS_MIXED))


def test_pd502_quiet_when_containerd_reads_mount_options(tmp_path: Path) -> None:
    assert_quiet("PD502", _node(tmp_path, "1.7.4", "5.15.0-91-generic", CONFIG_VOLATILE, MOUNTS_VOLATILE))


# -- PD503 volatile on a kernel < 5.10 ----------------------------------------------------


def test_pd503_fires_on_volatile_with_kernel_5_4(tmp_path: Path) -> None:
    hits = assert_fires("PD503", _node(tmp_path, "1.7.24", "5.4.0-150-generic", CONFIG_VOLATILE))
    assert "5.4" in hits[0].title


def test_pd503_quiet_on_kernel_5_10(tmp_path: Path) -> None:
    # the first kernel with overlay volatile
    assert_quiet("PD503", _node(tmp_path, "1.7.24", "5.10.0-28-amd64", CONFIG_VOLATILE))


def test_pd503_quiet_on_kernel_5_4_without_volatile(tmp_path: Path) -> None:
    assert_quiet("PD503", _node(tmp_path, "1.7.24", "5.4.0-150-generic", CONFIG_PLAIN))


# -- PD504 volatile kept on temporary mounts -----------------------------------------------


def test_pd504_fires_on_volatile_with_containerd_1_7_4(tmp_path: Path) -> None:
    hits = assert_fires("PD504", _node(tmp_path, "1.7.4", "5.15.0-91-generic", CONFIG_VOLATILE))
    assert "1.7.4" in hits[0].title


def test_pd504_quiet_on_containerd_1_7_19(tmp_path: Path) -> None:
    assert_quiet("PD504", _node(tmp_path, "1.7.19", "5.15.0-91-generic", CONFIG_VOLATILE, MOUNTS_VOLATILE))


def test_pd504_quiet_on_an_old_containerd_without_volatile(tmp_path: Path) -> None:
    assert_quiet("PD504", _node(tmp_path, "1.7.4", "5.15.0-91-generic", CONFIG_PLAIN))


# -- PD505 fsync=volatile spelling ------------------------------------------------------------


def test_pd505_fires_on_fsync_volatile_mounts_with_containerd_1_7_24(tmp_path: Path) -> None:
    assert_fires("PD505", _node(tmp_path, "1.7.24", "6.12.80-1-amd64", MOUNTS_FSYNC_VOLATILE))


def test_pd505_quiet_on_containerd_1_7_32(tmp_path: Path) -> None:
    assert_quiet("PD505", _node(tmp_path, "1.7.32", "6.12.80-1-amd64", MOUNTS_FSYNC_VOLATILE))


def test_pd505_quiet_on_the_literal_volatile_spelling(tmp_path: Path) -> None:
    assert_quiet("PD505", _node(tmp_path, "1.7.24", "5.15.0-91-generic", MOUNTS_VOLATILE))


# -- PD506 shim leak fix missing ------------------------------------------------------------


def test_pd506_fires_on_task_delete_failures_with_containerd_1_6_21(tmp_path: Path) -> None:
    assert_fires("PD506", _node(tmp_path, "1.6.21", "5.15.0-91-generic", LOGS / "containerd-json.log"))


def test_pd506_quiet_with_the_fix(tmp_path: Path) -> None:
    assert_quiet("PD506", _node(tmp_path, "1.7.4", "5.15.0-91-generic", LOGS / "containerd-json.log"))


def test_pd506_quiet_on_an_old_containerd_without_delete_failures(tmp_path: Path) -> None:
    assert_quiet("PD506", _node(tmp_path, "1.6.21", "5.15.0-91-generic", CONFIG_PLAIN))
