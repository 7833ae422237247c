"""Bundle writer: manifest first, kinds, checksums, failed steps, redaction, atomic output."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from plegdoctor.live.bundle import BundleWriter, redact_line
from plegdoctor.live.collect import parse_since
from plegdoctor.live.containerd_config import debug_address_from_config
from plegdoctor.live.samplers import NodeSampler
from plegdoctor.live.samples import RawSample
from plegdoctor.live.sources.goroutines import shim_dump_lines


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('password = "hunter2"', 'password = "<redacted>"'),
        ('"auth": "dXNlcjpwYXNz"', '"auth": "<redacted>"'),
        ("--token=abc123", "--token=<redacted>"),
        ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer <redacted>"),
        ("https://user:pw@registry.example/v2/", "https://user:<redacted>@registry.example/v2/"),
        (
            "Envs:[]*KeyValue{&KeyValue{Key:DB_PASS,Value:s3cr3t,},}",
            "Envs:[]*KeyValue{&KeyValue{Key:DB_PASS,Value:<redacted>,},}",
        ),
        ('"Env":["A=1","PATH=/bin"]', '"Env":["A=<redacted>","PATH=<redacted>"]'),
        ('identitytoken = "eyJ"', 'identitytoken = "<redacted>"'),
        ('username = "bob"', 'username = "bob"'),
        ("goroutine 7 [select]: auth.(*Store).Token(0xc0001)", "goroutine 7 [select]: auth.(*Store).Token(0xc0001)"),
    ],
)
def test_redaction(line: str, expected: str) -> None:
    assert redact_line(line)[0] == expected


def test_bundle_is_atomic_with_manifest_first(tmp_path: Path) -> None:
    out = tmp_path / "out" / "b.tar.gz"
    with BundleWriter(out, node="n1", extra={"runtime": {"name": "containerd"}}) as w:
        w.add_text("proc/pressure/io", "psi", "some avg10=1.00 avg60=0 avg300=0 total=5\n", redact=False)
        w.add_text("config/containerd.toml", "containerd-config", 'password = "x"\nroot = "/var/lib/containerd"\n')
        w.add_step("kernel/dmesg.txt", "dmesg", lambda: (_ for _ in ()).throw(RuntimeError("dmesg: permission denied")))
        w.changes.append("sent SIGUSR1 to containerd pid 1")
        # nothing visible at the output path until close
        assert not out.exists()
        assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".pleg-doctor-stage-")] == []
    assert out.exists() and oct(out.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in out.parent.iterdir()] == ["b.tar.gz"]  # staging removed
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        cfg = tar.extractfile("config/containerd.toml").read()  # type: ignore[union-attr]
    assert names == ["manifest.json", "proc/pressure/io", "config/containerd.toml"]
    files = {f["path"]: f for f in manifest["files"]}
    assert files["config/containerd.toml"]["redactions"] == 1
    assert files["config/containerd.toml"]["sha256"] == hashlib.sha256(cfg).hexdigest()
    assert b"<redacted>" in cfg and b'"x"' not in cfg
    assert files["kernel/dmesg.txt"]["error"] == "RuntimeError: dmesg: permission denied"
    assert "sha256" not in files["kernel/dmesg.txt"]
    assert manifest["changes"] == ["sent SIGUSR1 to containerd pid 1"]
    assert manifest["schema"] == "pleg-doctor/bundle/v1" and manifest["node"] == "n1"
    assert manifest["runtime"] == {"name": "containerd"}


def test_bundle_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    with pytest.raises(KeyError), BundleWriter(out, node="n") as w:
        w.add_text("a.txt", None, "x")
        raise KeyError("boom")
    assert os.listdir(tmp_path) == []


def test_unsafe_member_names_refused(tmp_path: Path) -> None:
    w = BundleWriter(tmp_path / "b.tar.gz", node="n")
    for bad in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError):
            w.add_text(bad, None, "x")
    w.abort()


def _proc(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_sample_series_format_and_the_sampler_parses_through_the_parsers(tmp_path: Path) -> None:
    s = RawSample(1_790_000_000.25, "/proc/pressure/io", "some avg10=0.25 avg60=0.67 avg300=0.31 total=1828717\n")
    assert s.render().splitlines()[0] == "# pleg-doctor sample 2026-09-21T14:13:20.250000Z /proc/pressure/io"
    proc, sys_block = tmp_path / "proc", tmp_path / "block"
    (sys_block / "vda").mkdir(parents=True)  # a whole disk; vda1 (a partition) has no /sys/block entry
    _proc(
        proc,
        {
            "pressure/io": "some avg10=0.25 avg60=0.67 avg300=0.31 total=1828717\n"
            "full avg10=0.20 avg60=0 avg300=0 total=9\n",
            "meminfo": "MemTotal: 4096 kB\nDirty:  1024 kB\nWriteback: 2 kB\nHugePages_Total: 0\n",
            "diskstats": " 254 0 vda 100 0 800 50 200 0 1600 400 0 300 450 0 0 0 0 0 0\n"
            " 254 1 vda1 100 0 800 50 200 0 1600 400 0 300 450 0 0 0 0 0 0\n",
            "vmstat": "nr_dirty 256\n",
        },
    )
    sampler = NodeSampler(proc=str(proc), sys_block=str(sys_block))
    first = sampler.sample(1000.0)
    assert first.psi["io"]["some"]["total"] == 1828717 and first.psi["io"]["full"]["avg10"] == 0.20
    assert "memory" not in first.psi and sampler.psi_available  # no memory file: skipped, PSI still there
    assert first.meminfo["Dirty"] == 1048576 and first.meminfo["Writeback"] == 2048
    assert first.disks == []  # rates need two samples
    _proc(proc, {"diskstats": " 254 0 vda 110 0 880 60 300 0 3600 1400 2 1300 1450 0 0 0 0 0 0\n"})
    (r,) = sampler.sample(1002.0).disks
    assert (r.device, r.util, r.writes_per_s, r.write_await_s, r.in_flight) == ("vda", 0.5, 50.0, 0.01, 2)
    assert r.write_kib_per_s == 2000 * 512 / 1024 / 2
    # every sampled file kept as a series the bundle's parsers read
    assert sampler.series("/proc/diskstats").count("# pleg-doctor sample ") == 2
    assert sampler.series("/proc/vmstat").startswith("# pleg-doctor sample 1970-01-01T00:16:40.000000Z /proc/vmstat\n")
    # the look-alike: without PSI the io file is missing and the sampler says so once per tick
    (proc / "pressure" / "io").unlink()
    snap = sampler.sample(1003.0)
    assert "io" not in snap.psi and sampler.psi_available is False
    assert snap.errors == [f"{proc}/pressure/io unreadable (kernel without PSI, or psi=0)"]


def test_collect_helpers() -> None:
    cfg = 'version = 2\n[grpc]\n  address = "/run/x.sock"\n[debug]\n  address = "/run/containerd/debug.sock"\n'
    assert debug_address_from_config(cfg) == "/run/containerd/debug.sock"
    assert debug_address_from_config('[grpc]\n  address = "/a"\n') == ""
    lines = [
        'time="t" level=info msg="=== BEGIN goroutine stack dump ===\\ngoroutine 1" pid=12 runtime=runc',
        'time="t" level=info msg="=== BEGIN goroutine stack dump ===\\ngoroutine 1" pid=123 runtime=runc',
        'time="t" level=info msg="other" pid=12',
    ]
    assert shim_dump_lines(lines, 12) == [lines[0]]
    since = parse_since("90m")
    assert 5390 < (parse_since("0s") - since).total_seconds() < 5410
    assert parse_since("2026-11-28T10:00:00Z").isoformat() == "2026-11-28T10:00:00+00:00"
