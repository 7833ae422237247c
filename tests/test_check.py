"""`pleg-doctor check`: the audit on each config schema, --live on this machine, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from plegdoctor.analysis.config_audit import audit
from plegdoctor.checkcmd import command
from plegdoctor.model import Versions
from plegdoctor.parsers.runtime_config import load_config

NODE = Path(__file__).parent / "fixtures" / "node"
CFG = NODE / "config"
MOUNTS = NODE / "mounts"
EXE = Path(sys.executable).parent / "pleg-doctor"


def run_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(command, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def check(report: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == cid)


def test_seed_config_on_1_6_21() -> None:
    r = run_json(
        "--config",
        str(CFG / "config-v2-seed.toml"),
        "--containerd-version",
        "containerd github.com/containerd/containerd v1.6.21 3dce8eb",
        "--kernel-version",
        "5.15.0-76-generic",
    )
    assert r["schema"] == "pleg-doctor/check/v1"
    s = statuses(r)
    assert s["volatile-containerd"] == "fail" and s["volatile-kernel"] == "pass"
    assert s["volatile-configured"] == "warn" and s["content-commit-fsync"] == "warn"
    assert s["volatile-temp-mounts"] == "info" and s["update-resources-status-lock"] == "info"
    assert s["volatile-in-effect"] == "info"  # no mount table given
    assert r["versions"]["containerd"] == "1.6.21" and r["config"] == {
        "path": str(CFG / "config-v2-seed.toml"),
        "schema": 2,
        "explicit": True,
    }
    snippet = r["snippet"]
    assert '[plugins."io.containerd.snapshotter.v1.overlayfs"]\n  mount_options = ["volatile"]' in snippet
    for risk in ("Crash-time data loss", "Remount after a crash", "Restarting the same container", "1.6.34"):
        assert risk in snippet
    # the snippet appended to the user's file is a valid config with volatile
    merged = tomllib.loads((CFG / "config-v2-seed.toml").read_text() + "\n" + snippet)
    assert merged["plugins"]["io.containerd.snapshotter.v1.overlayfs"]["mount_options"] == ["volatile"]
    assert r["worst"] == "fail"


def test_v1_config_gets_v1_snippet() -> None:
    r = run_json("--config", str(CFG / "config-v1-containerd-1.4.toml"), "--containerd-version", "1.4.13")
    s = statuses(r)
    assert s["config-schema"] == "info" and s["volatile-containerd"] == "fail"
    assert s["image-pull-parallelism"] == "warn"  # max_concurrent_downloads = 10
    assert "existing [plugins.overlayfs] table (line 22)" in r["snippet"]


def test_volatile_1_7_24_with_fsync_volatile_kernel() -> None:
    r = run_json(
        "--config",
        str(CFG / "config-v2-volatile-1.7.toml"),
        "--containerd-version",
        "1.7.24~ds1-6+deb13u1",
        "--kernel-version",
        "6.18.44-fc-v669",
        "--mounts",
        str(MOUNTS / "proc-mounts-fsync-volatile.txt"),
    )
    s = statuses(r)
    assert s["volatile-containerd"] == s["volatile-configured"] == s["volatile-in-effect"] == "pass"
    assert s["volatile-temp-mounts"] == "pass"
    assert s["fsync-volatile-spelling"] == "info"  # 1.7.24 < 1.7.32
    assert s["containerd-root-disk"] == "warn"  # /var/lib/containerd is on / here
    assert s["debug-socket"] == "pass"
    ev = check(r, "volatile-configured")["evidence"][0]
    assert ev["line"] == 24 and "mount_options" in ev["text"]


def test_volatile_on_old_1_7_fails_temp_mounts() -> None:
    r = run_json("--config", str(CFG / "config-v2-volatile-1.7.toml"), "--containerd-version", "1.7.10")
    assert statuses(r)["volatile-temp-mounts"] == "fail"


def test_v3_on_2_1_9_with_existing_table() -> None:
    r = run_json(
        "--config",
        str(CFG / "config-v3-containerd-2.1.toml"),
        "--containerd-version",
        "2.1.9",
        "--mounts",
        str(MOUNTS / "proc-mounts-overlay-volatile.txt"),
    )
    s = statuses(r)
    assert s["content-commit-fsync"] == "pass" and s["bbolt-no-sync"] == "info"
    assert check(r, "bbolt-no-sync")["title"] == "bbolt no_sync is enabled"
    assert s["containerd-root-disk"] == "pass"  # /dev/sdb1
    assert s["volatile-in-effect"] == "warn"  # one of two overlay mounts lacks volatile
    assert "existing [plugins.'io.containerd.snapshotter.v1.overlayfs'] table (line 29)" in r["snippet"]
    assert "mount_options = ['index=off', 'volatile']" in r["snippet"]
    assert "transfer service" in check(r, "image-pull-parallelism")["detail"]


def test_v4_needs_2_3() -> None:
    ok = run_json("--config", str(CFG / "config-v4-containerd-2.3.toml"), "--containerd-version", "2.3.0")
    assert statuses(ok)["config-schema"] == "pass"
    assert "[plugins.'io.containerd.snapshotter.v1.overlayfs']" in ok["snippet"]
    old = run_json("--config", str(CFG / "config-v4-containerd-2.3.toml"), "--containerd-version", "2.1.9")
    assert statuses(old)["config-schema"] == "fail"
    v3_on_1x = run_json("--config", str(CFG / "config-v3-containerd-2.1.toml"), "--containerd-version", "1.7.24")
    assert statuses(v3_on_1x)["config-schema"] == "fail"


def test_misplaced_and_fsync_spelling_in_config(tmp_path: Path) -> None:
    r = run_json("--config", str(CFG / "config-v3-misplaced-v2-keys.toml"), "--containerd-version", "2.0.0")
    assert [c["status"] for c in r["checks"] if c["id"].startswith("config-misplaced")] == ["warn"] * 3
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'version = 2\n[plugins."io.containerd.snapshotter.v1.overlayfs"]\n  mount_options = ["fsync=volatile"]\n'
    )
    r = run_json("--config", str(cfg), "--containerd-version", "1.7.20")
    assert statuses(r)["fsync-volatile-spelling"] == "fail"


def test_old_kernel_fails() -> None:
    r = run_json("--kernel-version", "4.19.0-24-amd64")
    assert statuses(r)["volatile-kernel"] == "fail" and r["snippet"].startswith("# containerd config version 2")


def test_text_output_fits_80_columns_without_colour() -> None:
    result = CliRunner().invoke(
        command,
        [
            "--config",
            str(CFG / "config-v2-seed.toml"),
            "--containerd-version",
            "1.6.20~ds1",
            "--mounts",
            str(MOUNTS / "proc-mounts-overlay-volatile.txt"),
        ],
    )
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "\x1b[" not in result.output
    assert lines[0] == "pleg-doctor check: containerd 1.6.20"
    assert any(line.startswith("[FAIL] containerd 1.6.20 cannot set overlay mount") for line in lines)
    assert any(line.startswith("[WARN] Overlay volatile is not configured") for line in lines)


def test_fail_on() -> None:
    args = ["--config", str(CFG / "config-v2-seed.toml"), "--containerd-version", "1.6.21", "-o", "json"]
    assert CliRunner().invoke(command, [*args, "--fail-on", "warn"]).exit_code == 1
    assert CliRunner().invoke(command, [*args, "--fail-on", "fail"]).exit_code == 1
    good = ["--config", str(CFG / "config-v3-containerd-2.1.toml"), "--containerd-version", "2.2.4", "-o", "json"]
    assert CliRunner().invoke(command, [*good, "--fail-on", "fail"]).exit_code == 0
    assert CliRunner().invoke(command, good).exit_code == 0


def test_audit_api_for_rules() -> None:
    cfg = load_config(str(CFG / "config-v2-seed.toml"))
    checks = audit(cfg, Versions(containerd="1.6.20~ds1", kernel="garbage"), None)
    by_id = {c.id: c for c in checks}
    assert by_id["volatile-containerd"].status == "fail"
    assert "cannot parse a kernel version" in by_id["versions"].detail  # never raises
    assert by_id["volatile-kernel"].status == "info"


@pytest.mark.skipif(not os.path.exists("/proc/mounts"), reason="needs Linux /proc")
def test_live_reads_this_machine() -> None:
    r = run_json("--live")
    assert r["versions"]["kernel_raw"] == os.uname().release
    assert r["mounts"] and r["mounts"] > 0
    if shutil.which("containerd"):
        assert r["versions"]["containerd"] is not None
    s = statuses(r)
    assert s["volatile-kernel"] in ("pass", "fail") and "containerd-root-disk" in s


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "check", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--config", str(CFG / "config-bad-toml.toml")],
            "invalid TOML: Expected ']' at the end of a table declaration (at line 2, column 37)",
        ),
        (["--config", str(CFG / "config-unknown-schema.toml")], "unknown containerd config schema version 7"),
        (["--containerd-version", "banana"], "cannot parse a containerd version from 'banana'"),
        (["--kernel-version", "latest"], "cannot parse a kernel version"),
        (["--config", "/nonexistent/config.toml"], "/nonexistent/config.toml: No such file or directory"),
        (["--mounts", str(CFG / "config-v2-seed.toml")], "no mount table lines found"),
        ([], "nothing to check"),
    ],
)
def test_bad_input_one_line_exit_2(args: list[str], message: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pleg-doctor: ") and message in lines[0]


@pytest.mark.skipif(not os.path.exists("/proc/mounts"), reason="needs Linux /proc")
def test_live_reads_versions_from_the_binary_never_runs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a `containerd` first on PATH that would leave a marker if executed: check reads its file only
    marker = tmp_path / "EXECUTED"
    fake = tmp_path / "containerd"
    fake.write_text(f"#!/bin/sh\necho ran > {marker}\necho 'containerd github.com/containerd/containerd v9.9.9 x'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    spawned: list[Any] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            spawned.append(args)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    r = run_json("--live")
    assert spawned == [] and not marker.exists()
    assert r["versions"]["containerd_raw"] is None  # a shell script has no Go build info: not read, not guessed
    assert check(r, "live-containerd")["status"] == "info" and str(fake) in check(r, "live-containerd")["detail"]


@pytest.mark.skipif(not os.path.exists("/usr/bin/containerd"), reason="needs a containerd binary")
def test_live_containerd_version_comes_from_its_elf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
    r = run_json("--live")
    evidence = check(r, "versions")["evidence"]
    assert any(e["path"].startswith("/usr/bin/containerd (") for e in evidence), evidence
    assert not any("--version" in e["path"] for e in evidence)
