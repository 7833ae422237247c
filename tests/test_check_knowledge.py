"""knowledge (version facts) and the containerd config parser behind `pleg-doctor check`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from plegdoctor import knowledge as kb
from plegdoctor.errors import UserError
from plegdoctor.parsers.runtime_config import config_from_text, key_lines, load_config

CFG = Path(__file__).parent / "fixtures" / "node" / "config"


@pytest.mark.parametrize(
    ("text", "expected", "pre"),
    [
        ("1.6.20~ds1", (1, 6, 20), ""),
        ("v1.7.24", (1, 7, 24), ""),
        ("1.7.24~ds1-6+deb13u1", (1, 7, 24), ""),
        ("2.1.9", (2, 1, 9), ""),
        (
            "containerd github.com/containerd/containerd v1.6.21 3dce8eb055cbb6872793272b4f20ed16117344f8",
            (1, 6, 21),
            "",
        ),
        ("containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1", (1, 7, 24), ""),
        ("containerd github.com/containerd/containerd/v2 2.1.9+unknown ", (2, 1, 9), ""),
        ("containerd containerd.io 1.6.21 3dce8eb", (1, 6, 21), ""),
        ("v2.0.0-rc.2", (2, 0, 0), "rc.2"),
    ],
)
def test_containerd_version_forms(text: str, expected: tuple[int, int, int], pre: str) -> None:
    v = kb.ContainerdVersion.parse(text)
    assert (v.major, v.minor, v.patch) == expected and v.prerelease == pre


@pytest.mark.parametrize("bad", ["", "banana", "containerd github.com/containerd/containerd", "version one"])
def test_unparseable_containerd_version(bad: str) -> None:
    with pytest.raises(UserError, match="cannot parse a containerd version"):
        kb.ContainerdVersion.parse(bad)


def test_kernel_versions() -> None:
    assert kb.KernelVersion.parse("5.15.0-76-generic").key() == (5, 15, 0)
    assert kb.KernelVersion.parse("3.10.0-1160.el7.x86_64").key() == (3, 10, 0)
    uname_a = "Linux node-7 6.1.0-9-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.27-1 (2023-05-08) x86_64 GNU/Linux"
    assert kb.KernelVersion.parse(uname_a).key() == (6, 1, 0)
    with pytest.raises(UserError):
        kb.KernelVersion.parse("latest")


def test_prerelease_sorts_before_release() -> None:
    assert kb.ContainerdVersion.parse("2.0.0-rc.2") < kb.ContainerdVersion.parse("2.0.0")
    assert kb.ContainerdVersion.parse("1.7.24~ds1") == kb.ContainerdVersion.parse("v1.7.24")


@pytest.mark.parametrize(
    ("change", "version", "has"),
    [
        (kb.MOUNT_OPTIONS, "1.6.23", False),
        (kb.MOUNT_OPTIONS, "1.6.24", True),
        (kb.MOUNT_OPTIONS, "1.7.3", False),
        (kb.MOUNT_OPTIONS, "1.7.4", True),
        (kb.MOUNT_OPTIONS, "1.5.18", False),
        (kb.MOUNT_OPTIONS, "2.0.0-rc.1", False),
        (kb.MOUNT_OPTIONS, "2.2.1", True),
        (kb.TEMP_MOUNT_STRIP_VOLATILE, "1.6.33", False),
        (kb.TEMP_MOUNT_STRIP_VOLATILE, "1.6.34", True),
        (kb.TEMP_MOUNT_STRIP_VOLATILE, "1.7.18", False),
        (kb.TEMP_MOUNT_STRIP_VOLATILE, "1.7.19", True),
        (kb.FSYNC_VOLATILE_SPELLING, "1.6.39", False),
        (kb.FSYNC_VOLATILE_SPELLING, "1.7.31", False),
        (kb.FSYNC_VOLATILE_SPELLING, "1.7.32", True),
        (kb.FSYNC_VOLATILE_SPELLING, "2.0.8", False),
        (kb.FSYNC_VOLATILE_SPELLING, "2.0.9", True),
        (kb.FSYNC_VOLATILE_SPELLING, "2.2.3", False),
        (kb.FSYNC_VOLATILE_SPELLING, "2.2.4", True),
        (kb.FSYNC_VOLATILE_SPELLING, "2.4.0", True),
        (kb.CONTENT_COMMIT_PRESYNC, "1.7.34", False),
        (kb.CONTENT_COMMIT_PRESYNC, "2.0.0", True),
        (kb.BBOLT_NO_SYNC, "2.0.5", False),
        (kb.BBOLT_NO_SYNC, "2.1.0", True),
        (kb.IMAGE_PULL_WITH_SYNC_FS, "1.6.39", False),
        (kb.IMAGE_PULL_WITH_SYNC_FS, "1.7.14", True),
    ],
)
def test_fixed_in_versions(change: kb.Change, version: str, has: bool) -> None:
    assert change.contains(kb.ContainerdVersion.parse(version)) is has


@pytest.mark.parametrize(
    ("change", "version", "has", "target", "advice"),
    [
        (kb.MOUNT_OPTIONS, "1.6.21", False, "1.6.24", ">= 1.6.24"),  # its own branch got the fix
        (kb.MOUNT_OPTIONS, "1.5.18", False, "1.6.24", ">= 1.6.24"),  # an older branch: the next that did
        (kb.MOUNT_OPTIONS, "1.7.24", True, "1.7.4", "1.7.24 (has it)"),
        (kb.MOUNT_OPTIONS, "2.2.1", True, None, "2.2.1 (has it)"),  # newer than every listed branch
        (kb.FSYNC_VOLATILE_SPELLING, "1.6.39", False, "1.7.32", ">= 1.7.32"),
        (kb.FSYNC_VOLATILE_SPELLING, "2.1.7", False, "2.1.8", ">= 2.1.8"),
        (kb.SHIM_LEAK_FIX, "1.7.3", False, "1.7.4", ">= 1.7.4"),
    ],
)
def test_fixed_in_gives_the_release_to_upgrade_to(
    change: kb.Change, version: str, has: bool, target: str | None, advice: str
) -> None:
    v = kb.ContainerdVersion.parse(version)
    ok, first = change.fixed_in(v)
    assert ok is has and (str(first) if first else None) == target
    assert change.upgrade_target(v) == advice


def test_upgrade_target_of_an_unknown_version_lists_every_branch() -> None:
    assert kb.FSYNC_VOLATILE_SPELLING.upgrade_target(None) == "1.7.32/2.0.9/2.1.8/2.2.4/2.3.0"


def test_a_digit_run_too_long_to_be_a_version_is_unparseable_not_a_crash() -> None:
    # `int()` refuses 5000 digits with ValueError; the parsers say "cannot parse" instead
    with pytest.raises(UserError, match="cannot parse a containerd version"):
        kb.ContainerdVersion.parse("1" * 5000 + ".2")
    with pytest.raises(UserError, match="cannot parse a kernel version"):
        kb.KernelVersion.parse("5" * 5000 + ".10")
    assert kb.ContainerdVersion.parse("v123456789.1.2").major == 123456789


def test_every_fact_cites_its_source() -> None:
    for change in kb.CHANGES:
        assert change.source.startswith("facts.md §")
    for fact in (kb.KERNEL_VOLATILE, kb.KERNEL_PRINTS_FSYNC_VOLATILE, kb.KERNEL_PSI, kb.KERNEL_VOLATILE_SYNC_ERRORS):
        assert fact.source.startswith("facts.md §")
    assert all(s.source.startswith("facts.md §") for s in kb.SCHEMAS.values())
    assert kb.STATUS_LOCK_UNFIXED.references[0].endswith("/issues/9770")


def test_kernel_facts() -> None:
    assert not kb.KERNEL_VOLATILE.has(kb.KernelVersion.parse("5.4.89+"))
    assert kb.KERNEL_VOLATILE.has(kb.KernelVersion.parse("5.10.0-23-amd64"))
    assert kb.KERNEL_PRINTS_FSYNC_VOLATILE.has(kb.KernelVersion.parse("6.12.80"))
    assert not kb.KERNEL_PRINTS_FSYNC_VOLATILE.has(kb.KernelVersion.parse("6.12.79"))
    assert kb.KERNEL_VOLATILE_SYNC_ERRORS.has(kb.KernelVersion.parse("5.10.15"))
    assert not kb.KERNEL_VOLATILE_SYNC_ERRORS.has(kb.KernelVersion.parse("5.10.14"))


@pytest.mark.parametrize("schema", [1, 2, 3, 4])
def test_snippet_is_valid_toml_for_each_schema(schema: int) -> None:
    snippet = kb.volatile_snippet(schema, ("index=off",))
    data = tomllib.loads(snippet)
    plugin = "overlayfs" if schema == 1 else "io.containerd.snapshotter.v1.overlayfs"
    assert data["plugins"][plugin]["mount_options"] == ["index=off", "volatile"]


def test_snippet_for_existing_table_says_where() -> None:
    text = kb.volatile_snippet(3, ("index=off", "fsync=volatile"), table_line=29)
    assert "existing [plugins.'io.containerd.snapshotter.v1.overlayfs'] table (line 29)" in text
    assert text.endswith("mount_options = ['index=off', 'volatile']")


# ----------------------------------------------------------------------------- config parser


def test_v1_config_short_plugin_ids() -> None:
    c = load_config(str(CFG / "config-v1-containerd-1.4.toml"))
    assert (c.schema, c.schema_explicit, c.snapshotter, c.max_concurrent_downloads) == (1, False, "overlayfs", 10)
    assert c.systemd_cgroup is False and c.overlay_table_line == 22 and c.overlay_mount_options is None
    assert c.ref("plugins.cri.max_concurrent_downloads").line == 14  # type: ignore[union-attr]


def test_seed_v2_config() -> None:
    c = load_config(str(CFG / "config-v2-seed.toml"))
    assert (c.schema, c.root, c.state, c.default_runtime_name, c.systemd_cgroup) == (
        2,
        "/var/lib/containerd",
        "/run/containerd",
        "runc",
        True,
    )
    assert not c.volatile_configured and c.overlay_table_line is None and c.debug_address is None


def test_v2_volatile_and_real_dump() -> None:
    c = load_config(str(CFG / "config-v2-volatile-1.7.toml"))
    assert c.volatile_configured and c.debug_format == "json" and c.image_pull_with_sync_fs is False
    assert c.ref("plugins.io.containerd.snapshotter.v1.overlayfs.mount_options").line == 24  # type: ignore[union-attr]
    dump = load_config(str(CFG / "containerd-1.7.24-config-dump-volatile.toml"))
    assert dump.overlay_mount_options == ("volatile",) and dump.debug_address == "/run/containerd/debug.sock"


def test_real_default_configs() -> None:
    old = load_config(str(CFG / "containerd-1.6.20-config-default.toml"))
    assert old.schema == 2 and old.overlay_mount_options is None and old.max_concurrent_downloads == 3
    new = load_config(str(CFG / "containerd-2.1.9-config-default.toml"))
    assert new.schema == 3 and new.overlay_mount_options == () and new.bbolt_no_sync is False
    assert new.transfer_max_concurrent_downloads == 3 and new.debug_address is None


def test_v3_and_v4() -> None:
    v3 = load_config(str(CFG / "config-v3-containerd-2.1.toml"))
    assert v3.overlay_mount_options == ("index=off", "volatile") and v3.bbolt_no_sync is True
    assert v3.ref("plugins.io.containerd.metadata.v1.bolt.no_sync").line == 27  # type: ignore[union-attr]
    v4 = load_config(str(CFG / "config-v4-containerd-2.3.toml"))
    assert v4.schema == 4 and v4.debug_address == "/run/containerd/debug.sock" and v4.max_concurrent_downloads == 6


def test_misplaced_keys_are_reported() -> None:
    c = load_config(str(CFG / "config-v3-misplaced-v2-keys.toml"))
    assert len(c.misplaced) == 3 and not c.volatile_configured and c.max_concurrent_downloads is None
    assert c.ref("plugins.overlayfs").line == 8  # type: ignore[union-attr]


def test_bad_toml_and_unknown_schema() -> None:
    with pytest.raises(UserError, match=r"invalid TOML: .*line 2, column 37"):
        load_config(str(CFG / "config-bad-toml.toml"))
    with pytest.raises(UserError, match="unknown containerd config schema version 7"):
        load_config(str(CFG / "config-unknown-schema.toml"))
    with pytest.raises(UserError, match="unknown containerd config schema version 'two'"):
        config_from_text('version = "two"\n', "x.toml")


def test_key_lines_handles_multiline_arrays_and_quotes() -> None:
    text = 'a = [\n  "x",\n  "y",\n]\n[plugins."io.containerd.x".sub]\n  k = 1 # c\n  "q.k" = 2\n'
    lines = key_lines(text)
    assert lines["a"][0] == 1 and lines["plugins.io.containerd.x.sub.k"][0] == 6
    assert lines["plugins.io.containerd.x.sub.q.k"][0] == 7
