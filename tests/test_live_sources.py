"""The SOURCES table (live/sources), the procfs helpers, and the sampler parsing through parsers/."""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

from plegdoctor import parsers
from plegdoctor.live import procfs
from plegdoctor.live.collect import CollectOptions, collect_bundle
from plegdoctor.live.samplers import NodeSampler
from plegdoctor.live.samples import RawSample, parse_sample
from plegdoctor.live.sources import SOURCES, by_name, sampled
from plegdoctor.live.sources.base import MANIFEST_KIND


def _member_re(member: str) -> re.Pattern[str]:
    """A SOURCES member as a pattern: `<pid>`/`<i>` are numbers, `<name>` a file name, `{a,b}` alternatives."""
    holes = {"<pid>": r"\d+", "<i>": r"\d+", "<name>": r"[^/]+"}

    def pattern(text: str) -> str:
        return "".join(holes.get(p, re.escape(p)) for p in re.split(r"(<pid>|<i>|<name>)", text))

    out = ""
    for part in re.split(r"(\{[^}]*\})", member):
        if part.startswith("{"):
            out += "(?:" + "|".join(map(pattern, part[1:-1].split(","))) + ")"
        else:
            out += pattern(part)
    return re.compile(out)


def test_member_patterns() -> None:
    pat = _member_re(by_name("containerd-config").member)
    assert pat.fullmatch("config/containerd.toml") and pat.fullmatch("config/imports/03-10-mirrors.toml")
    assert not pat.fullmatch("config/imports/x/y.toml") and not pat.fullmatch("config/other.toml")
    assert _member_re(by_name("goroutines-containerd").member).fullmatch("goroutines/containerd-42.stacks.log")


def test_every_source_names_a_registered_parser_a_bound_and_a_unique_member() -> None:
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names))
    members = [s.member for s in SOURCES]
    assert len(members) == len(set(members))
    for s in SOURCES:
        assert s.kind in parsers.PARSERS, s
        assert s.kind == parsers.get(s.kind).KIND and s.parser == parsers.PARSERS[s.kind]
        assert s.bound > 0 and s.unit and s.reads
        assert s.deadline in (None, "step", "dump")
        assert (s.kind == MANIFEST_KIND) == s.member.startswith("manifest.json#")
    # the moment's evidence comes first: tasks and kernel stacks before samples and the runtime
    assert names[:2] == ["tasks", "kernel-stacks"]
    assert names.index("psi-io") < names.index("runtime") < names.index("mounts")
    assert names.index("containerd-config") < names.index("goroutines-containerd")  # the debug socket is in it


def test_sampled_sources_are_the_proc_files_watch_reads() -> None:
    got = {s.proc_path: s.kind for s in sampled()}
    assert got == {
        "/proc/pressure/io": "psi",
        "/proc/pressure/memory": "psi",
        "/proc/pressure/cpu": "psi",
        "/proc/diskstats": "diskstats",
        "/proc/meminfo": "meminfo",
        "/proc/vmstat": "vmstat",
    }
    assert by_name("tasks").sample is None and by_name("tasks").update is None


def test_a_sample_is_parsed_by_the_parser_analyze_uses() -> None:
    ok = RawSample(1_790_000_000.0, "/proc/pressure/memory", "some avg10=1.50 avg60=0 avg300=0 total=42\n")
    (rec,) = parse_sample("psi", ok).pressure
    assert (rec.resource, rec.scope, rec.some_avg10, rec.some_total_us) == ("memory", "node", 1.5, 42)
    assert rec.ts is not None and rec.ts.timestamp() == 1_790_000_000.0
    # the look-alike: a line the psi parser does not accept gives no figure (no second, laxer parser)
    bad = RawSample(1_790_000_000.0, "/proc/pressure/memory", "some avg10=high total=42\n")
    assert parse_sample("psi", bad).pressure == []


def test_the_sampler_reads_each_file_within_its_bound(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "pressure").mkdir(parents=True)
    bound = by_name("meminfo").bound
    (proc / "meminfo").write_text("Dirty: 8 kB\n" + "Filler: 1 kB\n" * (bound // 10))
    (proc / "vmstat").write_text("nr_dirty 2\n")
    sampler = NodeSampler(proc=str(proc), sys_block=str(tmp_path))
    snap = sampler.sample(1000.0)
    (kept,) = sampler.history["/proc/meminfo"]
    assert len(kept.text) == bound and snap.meminfo["Dirty"] == 8192
    (small,) = sampler.history["/proc/vmstat"]
    assert small.text == "nr_dirty 2\n"  # the look-alike: a file under its bound is kept whole


def test_bounded_reads_and_stat_parsing(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"x" * 100)
    assert procfs.read_bounded(str(f), 10) == b"x" * 10
    assert procfs.read_bounded(str(f), 1000) == b"x" * 100
    comm, state, rest = procfs.parse_stat("42 (a) (b c) S 1 42 42 0 -1")
    assert (comm, state, rest[0]) == ("a) (b c", "S", "1")
    me = procfs.read_proc(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.ppid == os.getppid() and me.cmdline
    assert procfs.read_proc(2**22 + 12345) is None  # above pid_max: never a process


def test_boot_time_is_found_after_a_long_intr_line(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu 1 2 3\nintr " + "0 " * 100_000 + "\nbtime 1764300000\n")
    assert procfs.boot_time(str(tmp_path)) == 1764300000.0
    (tmp_path / "stat").write_text("cpu 1 2 3\n")  # the look-alike: no btime line
    assert procfs.boot_time(str(tmp_path)) is None


def test_collect_writes_the_members_and_kinds_of_the_table(tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    opts = CollectOptions(
        output=str(out),
        since="5m",
        dump=False,
        runtime_endpoint=f"unix://{tmp_path}/no-runtime.sock",
        step_timeout=5,
        sample_interval=0.01,
        node="n",
    )
    collect_bundle(opts)
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    patterns = [(_member_re(s.member), s.kind) for s in SOURCES]
    for entry in manifest["files"]:
        kinds = {kind for pat, kind in patterns if pat.fullmatch(entry["path"])}
        # a log read from the journal is a journal member, whatever unit it is
        assert entry["kind"] in kinds or (entry["kind"] == "journal" and kinds <= {"kubelet-log", "containerd-log"})
        assert kinds, entry
    paths = [e["path"] for e in manifest["files"]]
    assert paths[:3] == ["tasks/ps.txt", "tasks/stacks.txt", "tasks/runtime-status.txt"]
    assert {"proc/pressure/io", "proc/diskstats", "proc/meminfo", "proc/vmstat", "versions.txt"} <= set(paths)
    assert manifest["runtime"]["containerd_pid"] is None and "boot_time" in manifest
    # no runtime: none of its members (config, dumps, its log)
    assert not [p for p in paths if p.startswith(("config/", "goroutines/", "logs/containerd"))]


def test_the_exporter_serves_each_sampled_family_once(tmp_path: Path) -> None:
    from plegdoctor.live.exporter import METRIC_NAMES, Exporter, WatchState

    proc = tmp_path / "proc"
    (proc / "pressure").mkdir(parents=True)
    for res in ("io", "memory", "cpu"):
        (proc / "pressure" / res).write_text("some avg10=25.00 avg60=0 avg300=0 total=3000000\n")
    (proc / "meminfo").write_text("Dirty: 4 kB\nWriteback: 0 kB\n")
    snap = NodeSampler(proc=str(proc), sys_block=str(tmp_path)).sample(1000.0)
    exp = Exporter(WatchState(node=snap))
    exp.attach(None)
    text = exp.render()
    assert text.count("# TYPE pleg_doctor_pressure_avg10_ratio gauge") == 1  # three lines, one family
    for res in ("io", "memory", "cpu"):
        assert f'pleg_doctor_pressure_avg10_ratio{{kind="some",resource="{res}"}} 0.25' in text
        assert f'pleg_doctor_pressure_stalled_seconds_total{{kind="some",resource="{res}"}} 3.0' in text
    assert "pleg_doctor_memory_dirty_bytes 4096.0" in text
    assert {"pleg_doctor_memory_dirty_bytes", "pleg_doctor_disk_in_flight"} <= set(METRIC_NAMES)
    # the look-alike: a tick without node figures exports no memory gauge and no PSI sample
    empty = Exporter(WatchState(node=NodeSampler(proc=str(tmp_path / "none")).sample(1.0)))
    empty.attach(None)
    quiet = empty.render()
    assert "pleg_doctor_memory_dirty_bytes" not in quiet and "pleg_doctor_pressure_avg10_ratio{" not in quiet


def test_the_socket_inode_of_a_listener_and_its_holder(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "l.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen()
        inodes = procfs.unix_socket_inodes(path)
        assert len(inodes) == 1 and procfs.has_socket_inode(os.getpid(), inodes)
        # the look-alikes: another path has no listener, and an inode we do not hold is not ours
        assert procfs.unix_socket_inodes(path + ".other") == set()
        assert not procfs.has_socket_inode(os.getpid(), {"999999999999"})
