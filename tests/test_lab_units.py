"""Lab pieces that need no root: variant grammar, figures, best pick, plot, ledger, versions, apt sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plegdoctor.errors import UserError
from plegdoctor.knowledge import ContainerdVersion
from plegdoctor.lab import compare
from plegdoctor.lab.plot import render_svg
from plegdoctor.lab.state import LabState, Resource, _unescape, alive, proc_start_time
from plegdoctor.lab.variants import PROFILES, Variant, baseline_pair, parse_variant, parse_variants
from plegdoctor.lab.versions import ContainerdBuild
from plegdoctor.lab.workload import CallRecord, Interval, RelistRecord, WorkloadResult


# -- variants ---------------------------------------------------------------------------------
def test_variant_grammar_round_trips_and_rejects_unknown_mitigations():
    v = parse_variant("2.1+volatile+nosync")
    assert v == Variant("2.1", volatile=True, no_sync=True)
    assert v.name == "2.1+volatile+nosync"
    assert v.mitigations == ["volatile", "nosync"]
    assert parse_variant("1.7").describe() == "no mitigation"
    assert parse_variant("custom+volatile", "/opt/ctd/containerd").containerd == "/opt/ctd/containerd"
    with pytest.raises(UserError, match="unknown mitigation 'fast'"):
        parse_variant("1.7+fast")
    with pytest.raises(UserError, match="needs --containerd"):
        parse_variant("custom")
    assert [v.name for v in parse_variants("1.7, 1.7+volatile,1.7")] == ["1.7", "1.7+volatile"]


def test_compare_always_holds_the_baseline_and_its_volatile_twin():
    got = [v.name for v in baseline_pair([parse_variant("2.1+volatile")])]
    assert got[:2] == ["1.7", "1.7+volatile"] and "2.1+volatile" in got
    # 1.6.20 has no mount_options: its volatile twin is measured on 1.7
    got = [v.name for v in baseline_pair([parse_variant("1.6")])]
    assert "1.7" in got and "1.7+volatile" in got and "1.6" in got
    for prof in PROFILES.values():
        names = [parse_variant(v).name for v in prof.variants]
        assert "1.7" in names and "1.7+volatile" in names


# -- figures ----------------------------------------------------------------------------------
def _result() -> WorkloadResult:
    res = WorkloadResult(t0_wall=0.0, stall_start=10.0, stall_end=60.0)
    t = 0.0
    for sec in [0.01] * 10 + [25.0] + [0.01] * 5 + [4.0] + [0.02] * 3:
        res.relists.append(RelistRecord(t, sec, sec / 2, sec / 2))
        t += sec + 1.0
    res.calls += [
        CallRecord("StopContainer", "writer-0", 10.0, 24.0, phase="stall"),
        CallRecord("StopContainer", "writer-1", 10.0, 26.0, phase="stall"),
        CallRecord("UpdateContainerResources", "writer-2", 10.3, 23.0, phase="stall"),
        CallRecord("UpdateContainerResources", "writer-2", 35.0, 0.01, phase="stall"),
        CallRecord("PullImage", "big", 10.3, 30.0, phase="stall"),
        CallRecord("StopContainer", "writer-2", 61.0, 0.05, phase="churn"),
    ]
    res.umounts += [Interval("umount2", 11, 10.2, 34.0), Interval("syncfs", 11, 10.2, 33.8)]
    return res


def test_figures_from_records():
    f = compare.figures("1.7", "1.7.24", False, [], _result())
    assert f.relists == 20
    assert f.relist_max_seconds == 25.0
    assert f.relist_p50_seconds == 0.01
    assert f.relist_p99_seconds == 25.0
    assert f.relist_blocked_seconds == pytest.approx(29.0)
    # intervals: 25 s relist -> a 26 s gap, the 4 s relist -> a 5 s gap
    assert f.gaps_over_3s == 2 and f.max_gap_seconds == pytest.approx(26.0)
    assert f.stop_container_max_seconds == 26.0  # the churn stop is not a stall-phase call
    assert f.update_container_resources_max_seconds == 23.0
    assert f.pull_image_seconds == 30.0
    assert f.umount_max_seconds == pytest.approx(23.8)
    assert compare.expected_mechanism(f) == "overlay-umount-sync"
    doc = compare.to_json([f], {"profile": "small"})
    run = doc["runs"][0]
    for key in (
        "variant",
        "containerd",
        "volatile",
        "relist_p50_seconds",
        "relist_p99_seconds",
        "relist_max_seconds",
        "relist_blocked_seconds",
        "gaps_over_3s",
        "stop_container_p50_seconds",
        "bundle",
        "diagnosis",
    ):
        assert key in run
    assert doc["best"] == "1.7"
    json.dumps(doc)


def test_no_umount_sync_means_the_fsync_mechanism_is_expected():
    res = _result()
    res.umounts = [Interval("umount2", 11, 10.2, 10.3)]
    f = compare.figures("1.7+volatile", "1.7.24", True, ["volatile"], res)
    assert compare.expected_mechanism(f) == "fsync-io-pressure"


def test_best_prefers_lowest_worst_relist_then_blocked_then_fewer_changes():
    def run(name: str, mx: float, blocked: float) -> compare.RunFigures:
        v = parse_variant(name)
        return compare.RunFigures(
            name, "1.7.24", v.volatile, v.mitigations, relists=10, relist_max_seconds=mx, relist_blocked_seconds=blocked
        )

    runs = [
        run("1.7", 25.0, 40.0),
        run("1.7+volatile", 6.0, 8.0),
        run("1.7+volatile+dirty", 1.1, 1.1),
        run("1.7+volume", 1.05, 1.1),
    ]
    assert compare.best_variant(runs).variant == "1.7+volume"  # within 10 %, fewer mitigations
    failed = compare.RunFigures("2.1", "2.1.9", False, [], error="boom")
    assert compare.best_variant([failed]) is None
    text = compare.render_text([*runs, failed], {"title": "t"})
    assert "best fix on this node: 1.7+volume" in text
    assert "(baseline 1.7: 25.0s)" in text
    assert "failed: boom" in text


def test_percentile_nearest_rank():
    assert compare.percentile([], 50) == 0.0
    assert compare.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert compare.percentile([float(i) for i in range(1, 101)], 99) == 99.0


# -- plot -------------------------------------------------------------------------------------
def test_svg_plot_has_one_line_per_variant_and_is_valid_xml():
    import xml.etree.ElementTree as ET

    svg = render_svg(
        [("1.7", [(-5.0, 0.01), (0.0, 22.6), (23.0, 0.01)]), ("1.7+volatile", [(0.0, 0.01), (30.0, 6.0)])],
        title="lab <small>",
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "1.7 (max 22.6s)" in texts and "1.7+volatile (max 6.0s)" in texts and "lab <small>" in texts


# -- ledger -----------------------------------------------------------------------------------
def test_ledger_survives_a_crash_and_stops_only_the_recorded_process(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        state = LabState(tmp_path)
        state.track_process("sleeper", proc.pid)
        fake_sysctl = tmp_path / "fake_sysctl"
        fake_sysctl.write_text("0\n")
        state.add(Resource("sysctl", "vm.fake", path=str(fake_sysctl), old_value="0"))
        fake_sysctl.write_text("268435456\n")
        # a new LabState (as after a crash of the lab process) reads the same ledger
        again = LabState(tmp_path)
        assert [r.name for r in again.resources] == ["sleeper", "vm.fake"]
        assert again.resources[0].start_time == proc_start_time(proc.pid) > 0
        errors = again.teardown()
        assert errors == []
        proc.wait(timeout=10)
        assert fake_sysctl.read_text() == "0"
        assert bystander.poll() is None
        assert json.loads((tmp_path / "state.json").read_text())["resources"] == []
    finally:
        for p in (proc, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_reused_pid_is_not_killed(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        state = LabState(tmp_path)
        # recorded with another start time: the PID now belongs to a different process
        state.add(Resource("process", "old", pid=proc.pid, start_time=proc_start_time(proc.pid) - 5))
        assert not alive(proc.pid, proc_start_time(proc.pid) - 5)
        state.teardown()
        time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_mountinfo_octal_escapes():
    assert _unescape(r"/var/lib/my\040lab") == "/var/lib/my lab"
    assert _unescape("/plain") == "/plain"
    assert _unescape("/end\\04") == "/end\\04"


# -- versions ---------------------------------------------------------------------------------
def test_version_features():
    def b(v: str) -> ContainerdBuild:
        return ContainerdBuild("x", v, v, Path("/x"), Path("/"), "user")

    assert b("1.7.24~ds1").parsed == ContainerdVersion(1, 7, 24)
    assert b("dev").parsed is None and b("dev").config_schema == 2 and not b("dev").supports_mount_options
    assert b("1.6.20").config_schema == 2 and not b("1.6.20").supports_mount_options
    assert b("1.6.24").supports_mount_options and b("1.7.4").supports_mount_options
    assert not b("1.7.3").supports_mount_options
    assert b("2.1.9").config_schema == 3 and b("2.1.9").supports_bbolt_no_sync
    assert not b("2.0.5").supports_bbolt_no_sync and b("2.0.5").supports_mount_options


def test_debian_archive_uri_is_read_from_the_system_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from plegdoctor.lab import versions

    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n"
    )
    monkeypatch.setattr(versions, "APT_ETC", etc)
    assert versions.debian_archive_uri() == "http://mirror.example/debian"
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert versions.debian_archive_uri() == "http://other.example/debian"
    (etc / "sources.list").write_text("# nothing\n")
    with pytest.raises(UserError, match="no Debian archive"):
        versions.debian_archive_uri()


def test_lab_refuses_tmp_and_non_root(tmp_path: Path):
    from click.testing import CliRunner

    from plegdoctor.lab.cli import command

    result = CliRunner().invoke(command, ["run", "--dir", "/tmp/x-lab"])
    assert result.exit_code != 0
    msg = str(result.exception)
    assert ("not /tmp" in msg) or ("needs root" in msg)
    if os.geteuid() == 0:
        assert "not /tmp" in msg
    status = CliRunner().invoke(command, ["status", "--dir", str(tmp_path / "none")])
    assert status.exit_code == 0 and "no lab directory" in status.output


def test_dirty_limit_pairs_restore_the_member_that_was_in_force(tmp_path: Path):
    ratio, nbytes = tmp_path / "dirty_ratio", tmp_path / "dirty_bytes"
    ratio.write_text("0\n")  # what the kernel shows after dirty_bytes was written
    nbytes.write_text("268435456\n")
    state = LabState(tmp_path)
    state.add(Resource("sysctl", "vm.dirty_ratio", path=str(ratio), old_value="20"))
    state.add(Resource("sysctl", "vm.dirty_bytes", path=str(nbytes), old_value="0"))
    assert state.restore_sysctls() == []
    assert ratio.read_text() == "20"  # writing the ratio is what zeroes dirty_bytes in the kernel
    assert nbytes.read_text() == "268435456\n"  # 0 is not written: the kernel refuses it
    assert state.resources == []


def test_private_apt_configuration_stays_in_the_lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from plegdoctor.lab import versions

    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text("Types: deb\nURIs: http://mirror.example/debian\n")
    monkeypatch.setattr(versions, "APT_ETC", etc)
    lab = tmp_path / "lab"
    f = versions.Fetcher(lab)
    f.prepare("trixie")
    sources = (lab / "apt" / "trixie" / "etc" / "sources.list").read_text()
    assert sources.strip().endswith("http://mirror.example/debian trixie main")
    opts = f._apt_opts("trixie")
    paths = [o.split("=", 1)[1] for o in opts if o.startswith("Dir::")]
    assert paths and all(p.startswith(str(lab)) for p in paths)
    assert "Dir::Etc::SourceParts=" + str(lab / "apt" / "trixie" / "etc" / "sources.list.d") in opts
    assert (etc / "sources.list.d" / "debian.sources").read_text().count("\n") == 2  # untouched


def test_random_layers_do_not_dedupe_and_are_valid_tars():
    import hashlib
    import io
    import tarfile

    from plegdoctor.lab.images import BigImage, random_layer

    a, b = random_layer(0, 1), random_layer(0, 1)
    assert hashlib.sha256(a).digest() != hashlib.sha256(b).digest()
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        member = tar.getmember("data/layer-0.bin")
        assert member.size == 1024 * 1024
    assert BigImage(8, 128).tag == "8x128m" and BigImage(8, 128).total_mib == 1024


def test_stall_trigger_captures_deeper_into_the_same_stall_and_only_worse_later_ones(tmp_path: Path):
    import threading

    from plegdoctor.lab.workload import Workload, WorkloadSpec

    class FakeRelister:
        def __init__(self) -> None:
            self.inflight, self.done = 0.0, 0

        def inflight_seconds(self) -> float:
            return self.inflight

        def completed(self) -> int:
            return self.done

    seen: list[float] = []
    wl = Workload(
        "unix:///nonexistent.sock",
        "/nonexistent.sock",
        WorkloadSpec(trigger_s=2.0, max_captures=3),
        "busybox",
        "big",
        tmp_path,
        on_stall=lambda s: seen.append(s) or {"bundle": f"b{len(seen)}"},
    )
    fake = FakeRelister()
    stop = threading.Event()
    t = threading.Thread(target=wl._trigger_loop, args=(fake, stop), daemon=True)
    t.start()

    def step(inflight: float, done: int | None = None) -> None:
        if done is not None:
            fake.done = done
        fake.inflight = inflight
        time.sleep(0.5)

    try:
        step(1.0)
        step(2.5)  # first capture
        step(9.0)  # same stall, under 4 x 2.5
        step(10.5)  # same stall, deeper: second capture
        fake.inflight = 0.0
        wl.rec.result.relists.append(RelistRecord(0.0, 11.0, 0.1, 10.9))
        step(5.0, done=1)  # a new, shorter stall: not captured
        step(12.0)  # now longer than every relist so far: third capture
        step(60.0)  # max_captures reached
    finally:
        stop.set()
        t.join(timeout=5)
    assert seen == [2.5, 10.5, 12.0]
    assert [c["bundle"] for c in wl.rec.result.captures] == ["b1", "b2", "b3"]
    wl.client.close()


def test_one_lab_command_at_a_time_per_directory(tmp_path: Path):
    from plegdoctor.lab.state import lab_lock

    with lab_lock(tmp_path, "run"):
        with (
            pytest.raises(UserError, match=rf"pleg-doctor lab run \(pid {os.getpid()}\) is using"),
            lab_lock(tmp_path, "down"),
        ):
            pass
        with lab_lock(tmp_path, "down", force=True):  # down --force goes on
            pass
    with lab_lock(tmp_path, "down"):  # released with its holder
        pass


def test_every_mitigation_says_which_link_it_removes() -> None:
    from plegdoctor.lab.variants import LINKS, MITIGATIONS

    assert set(LINKS) == set(MITIGATIONS) and all(len(text) > 20 for text in LINKS.values())
