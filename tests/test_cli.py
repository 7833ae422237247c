"""The CLI end to end: the demo, output formats, and bad input (one line, exit 2)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "plegdoctor.cli"]


def run(*args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PLEG_DOCTOR_DEBUG", None)
    return subprocess.run(
        [*EXE, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_demo_shows_the_seed_incident() -> None:
    res = run("demo", "--no-color")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())  # the report wraps at 80 columns
    # the 42 s relist gap, with the relist lines that border it
    assert "42 s 2023-06-02 05:48:07.352Z -> 2023-06-02 05:48:49.669Z" in out
    assert "seed-incident/var/log/journal-kubelet.txt:37" in out
    assert "seed-incident/var/log/journal-kubelet.txt:38" in out
    # the containerd error around it
    assert "TaskExit handling failed for 8f71eadd772ff" in out
    assert "seed-incident/var/log/journal-containerd.txt:1" in out
    # the inputs it read, with their kinds
    for kind in ("kubelet-log", "containerd-log", "goroutine-dump", "containerd-config", "versions"):
        assert kind in out
    assert "Traceback" not in res.stderr


def test_demo_json_follows_the_contract() -> None:
    res = run("demo", "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "pleg-doctor/diagnosis/v1"
    assert doc["tool"]["name"] == "pleg-doctor"
    assert {"inputs", "pleg", "root_causes", "findings", "next_steps"} <= set(doc)
    pleg = doc["pleg"]
    assert pleg["relists"] == 65
    assert [round(g["seconds"], 1) for g in pleg["gaps"]] == [42.3]
    top = doc["root_causes"][0]
    assert top["class"] in ("fsync-io-pressure", "bbolt-lock-contention", "overlay-umount-sync")
    assert 0 < top["confidence"] <= 1
    for link in top["chain"]:
        assert link["evidence"], link
        for ev in link["evidence"]:
            assert ev["path"] and ev["line"] >= 1
    assert any("volatile" in fix for rc in doc["root_causes"] for fix in rc["fixes"])


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_demo_other_formats(fmt: str) -> None:
    res = run("demo", "-o", fmt)
    assert res.returncode == 0, res.stderr
    assert "42 s" in res.stdout


def test_missing_path_is_one_line_exit_2(tmp_path: Path) -> None:
    res = run("analyze", str(tmp_path / "nope.log"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "no such file or directory" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_option_values_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "x.log"
    f.write_text("hello\n")
    for args in (["--tz", "Mars/Olympus"], ["--since", "yesterday-ish"], ["--gap", "-1"], ["--kind", "bogus"]):
        res = run("analyze", *args, str(f))
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) <= 3  # click usage lines + one error


def test_junk_inputs_are_warnings_not_failures(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "binary.bin").write_bytes(bytes(range(256)) * 100)
    (junk / "empty.log").write_bytes(b"")
    (junk / "bad-utf8.log").write_bytes(b"\xff\xfe\xfa not text \xc3\x28\n" * 50)
    (junk / "one-long-line.txt").write_bytes(b"x" * (10 * 1024 * 1024))
    data = gzip.compress(b'I0602 05:48:06.350695 1679 generic.go:191] "GenericPLEG: Relisting"\n' * 20000)
    (junk / "truncated.log.gz").write_bytes(data[: len(data) // 2])
    res = run("analyze", "-o", "json", str(junk), timeout=180)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    by_name = {Path(i["path"]).name: i for i in doc["inputs"]}
    assert set(by_name) == {"binary.bin", "empty.log", "bad-utf8.log", "one-long-line.txt", "truncated.log.gz"}
    assert by_name["binary.bin"]["kind"] == "unknown" and by_name["binary.bin"]["warnings"]
    assert by_name["empty.log"]["warnings"] == ["empty input"]
    assert by_name["one-long-line.txt"]["kind"] == "unknown"
    trunc = by_name["truncated.log.gz"]
    assert trunc["kind"] == "kubelet-log"
    assert any("ends early" in w for w in trunc["warnings"])
    assert doc["pleg"]["relists"] > 0  # what came before the cut was read


def test_stdin(tmp_path: Path) -> None:
    lines = "".join(
        f'I0602 05:48:{s:02d}.000000    1679 generic.go:191] "GenericPLEG: Relisting"\n' for s in (1, 2, 3, 20, 21)
    )
    res = run("analyze", "-o", "json", "--year", "2023", "-", stdin=lines.encode())
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["inputs"][0]["path"] == "<stdin>"
    assert [g["seconds"] for g in doc["pleg"]["gaps"]] == [17.0]


def test_fail_on(tmp_path: Path) -> None:
    res = run("demo", "--fail-on", "critical", "-o", "json")
    assert res.returncode == 1


def test_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    res = run("demo", "-o", "markdown", "-O", str(out))
    assert res.returncode == 0
    assert res.stdout == ""
    assert "42 s" in out.read_text()


def test_help_lists_every_command() -> None:
    res = run("--help")
    assert res.returncode == 0
    for name in ("demo", "analyze", "goroutines", "check", "collect", "watch", "rules", "explain", "lab"):
        assert f"  {name}" in res.stdout
