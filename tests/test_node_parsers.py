"""Node evidence parsers: PSI, diskstats, iostat, meminfo, vmstat, mounts, dmesg, ps,
/proc/<pid>/stack, versions, Prometheus text, bundle manifest; one fixture per variant."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor import parsers
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import Source, iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import bundle_manifest, mounts, psi
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "node"


def load(rel: str, expect_kind: str | None = None, **options: object) -> tuple[Evidence, InputReport]:
    """Sniff and parse one fixture the way `analyze` does."""
    ev = Evidence()
    report = None
    for src in iter_sources([str(FIX / rel)]):
        kind, score = parsers.sniff(src.head())
        if expect_kind is not None:
            assert kind == expect_kind, f"{rel}: sniffed {kind} ({score})"
        report = InputReport(src.display, kind)
        parsers.get(kind).parse(src, ParseContext(ev, report, TimeContext(), dict(options)))
    assert report is not None
    return ev, report


def text_source(text: str, name: str = "input.txt") -> Source:
    data = text.encode()
    return Source(name, None, len(data), [], None, io.BytesIO(data))


def parse_text(module: object, text: str, name: str = "input.txt") -> tuple[Evidence, InputReport]:
    ev = Evidence()
    report = InputReport(name, "x")
    module.parse(text_source(text, name), ParseContext(ev, report, TimeContext()))  # type: ignore[attr-defined]
    return ev, report


# ---------------------------------------------------------------------------------------- PSI


def test_psi_real_snapshot_resource_from_file_name() -> None:
    ev, rep = load("psi/psi-io-snapshot-real.txt", "psi")
    (s,) = ev.pressure
    assert (s.resource, s.scope, s.ts) == ("io", "node", None)
    assert s.some_avg10 == 0.31 and s.full_avg10 == 0.30 and s.full_total_us == 3080280
    assert rep.unparsed == 0


def test_psi_grep_output_names_each_resource() -> None:
    ev, _ = load("psi/psi-grep-all.txt", "psi")
    by_res = {s.resource: s for s in ev.pressure}
    assert set(by_res) == {"cpu", "io", "memory"}
    assert by_res["io"].some_total_us == 3241279 and by_res["io"].full_avg60 == 0.96


def test_psi_tail_headers() -> None:
    ev, _ = load("psi/psi-tail-headers.txt", "psi")
    assert sorted(s.resource for s in ev.pressure) == ["cpu", "io", "memory"]
    assert all(s.scope == "node" for s in ev.pressure)


def test_psi_pleg_doctor_series_has_times_and_pairs_full_lines() -> None:
    ev, rep = load("psi/psi-series-pleg-doctor.txt", "psi")
    io_samples = [s for s in ev.pressure if s.resource == "io"]
    assert len(io_samples) == 6 and rep.records == 7
    assert io_samples[3].ts == datetime(2023, 6, 15, 6, 39, 20, 3015, tzinfo=UTC)
    assert io_samples[3].full_avg10 == 93.5 and io_samples[3].ref.line == 11


def test_psi_date_loop_series() -> None:
    ev, _ = load("psi/psi-io-series-date-loop.txt", "psi")
    assert [s.ts.second for s in ev.pressure if s.ts] == [0, 10, 20]
    assert all(s.resource == "io" for s in ev.pressure)


def test_psi_prefixed_lines_convert_offsets_and_warn_on_unknown_resource() -> None:
    ev, rep = load("psi/psi-series-prefixed.txt", "psi")
    assert len(ev.pressure) == 2
    assert ev.pressure[0].ts == datetime(2023, 6, 14, 22, 39, 0, tzinfo=UTC)  # +08:00 -> UTC
    assert ev.pressure[1].full_avg10 == 77.12
    assert ev.pressure[0].resource == "unknown" and any("resource unknown" in w for w in rep.warnings)


def test_psi_cpu_some_only_on_old_kernels() -> None:
    ev, _ = load("psi/psi-cpu-some-only-4.20.txt", "psi")
    (s,) = ev.pressure
    assert s.resource == "cpu" and s.full_avg10 is None and s.some_avg300 == 0.91


def test_psi_cgroup_scope_from_path() -> None:
    ev, _ = load("psi/sys/fs/cgroup/system.slice/containerd.service/io.pressure", "psi")
    (s,) = ev.pressure
    assert (s.resource, s.scope) == ("io", "/system.slice/containerd.service")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/proc/pressure/memory", ("memory", "node")),
        ("bundle.tgz:proc/pressure/io", ("io", "node")),
        ("/sys/fs/cgroup/unified/kubepods/io.pressure", ("io", "/kubepods")),
        ("cgroup/kubepods.slice/memory.pressure", ("memory", "/kubepods.slice")),
        ("notes.txt", (None, None)),
    ],
)
def test_psi_resource_and_scope(name: str, expected: tuple[str | None, str | None]) -> None:
    assert psi.resource_and_scope(name) == expected


def test_series_header_forms() -> None:
    assert psi.header_of("==> /proc/pressure/io <==") == (None, "/proc/pressure/io")
    ts, name = psi.header_of("# pleg-doctor sample 2026-11-28T14:29:18.123456789Z /proc/diskstats")  # type: ignore[misc]
    assert ts == datetime(2026, 11, 28, 14, 29, 18, 123456, tzinfo=UTC) and name == "/proc/diskstats"
    assert psi.header_of("Fri Nov 28 14:29:18 UTC 2026") == (datetime(2026, 11, 28, 14, 29, 18, tzinfo=UTC), None)
    assert psi.header_of("some avg10=0.00 avg60=0.00 avg300=0.00 total=0") is None


# ----------------------------------------------------------------------------------- diskstats


def test_diskstats_real_two_samples_17_counters() -> None:
    ev, _ = load("diskstats/diskstats-6.18-real-2samples.txt", "diskstats")
    vda = [d for d in ev.diskstats if d.device == "vda"]
    assert len(vda) == 2 and vda[0].flushes is not None
    assert vda[1].writes > vda[0].writes and vda[0].ts < vda[1].ts  # type: ignore[operator]
    assert not any(d.device == "zram0" for d in ev.diskstats)  # all-zero devices are skipped


def test_diskstats_11_counter_kernel() -> None:
    ev, _ = load("diskstats/diskstats-4.14-11fields.txt", "diskstats")
    sda = next(d for d in ev.diskstats if d.device == "sda")
    assert sda.weighted_ms == 8123999 and sda.flushes is None and sda.ts is None


def test_diskstats_untimed_series_warns() -> None:
    text = " 8 0 sda 1 0 8 1 2 0 16 2 0 3 3\n 8 0 sda 2 0 16 2 4 0 32 4 0 6 6\n"
    from plegdoctor.parsers import diskstats

    ev, rep = parse_text(diskstats, text)
    assert len(ev.diskstats) == 2 and any("without times" in w for w in rep.warnings)


# -------------------------------------------------------------------------------------- iostat


def test_iostat_sysstat_12_6_real() -> None:
    ev, rep = load("iostat/iostat-x-sysstat-12.6-real.txt", "iostat")
    first, second = [d for d in ev.disk_samples if d.device == "vda"]
    assert first.start is None and first.util == 0.84 and first.w_await == 0.48
    assert second.start == first.end and second.wkb_per_s == 4.0
    assert rep.unparsed == 0


def test_iostat_centos7_columns_and_am_pm_times() -> None:
    ev, _ = load("iostat/iostat-x-sysstat-10.1-centos7.txt", "iostat")
    sat = [d for d in ev.disk_samples if d.util == 100.0]
    assert {d.device for d in sat} == {"sda", "dm-0"}
    sda = next(d for d in sat if d.device == "sda")
    assert sda.w_await == 474.4 and sda.aqu_sz == 142.88 and sda.wkb_per_s == 154419.2
    assert sda.end == datetime(2023, 6, 15, 6, 38, 55, tzinfo=UTC)


def test_iostat_12_2_column_order() -> None:
    ev, _ = load("iostat/iostat-x-sysstat-12.2.txt", "iostat")
    sdb = [d for d in ev.disk_samples if d.device == "sdb"][-1]
    assert (sdb.util, sdb.w_await, sdb.w_per_s, sdb.aqu_sz) == (99.96, 1203.88, 288.3, 347.12)


def test_iostat_sysstat_9_sectors_and_combined_await() -> None:
    ev, _ = load("iostat/iostat-x-sysstat-9-sectors.txt", "iostat")
    (d,) = ev.disk_samples
    assert d.wkb_per_s == 32000.0 and d.w_await == d.r_await == 121.4


# ----------------------------------------------------------------------------- meminfo, vmstat


def test_meminfo_real_and_series() -> None:
    ev, _ = load("meminfo/meminfo-6.18-real.txt", "meminfo")
    (m,) = ev.meminfo
    assert m.mem_total_kb == 24684084 and m.ref.text.startswith("Dirty:")
    ev, _ = load("meminfo/meminfo-series-writeback.txt", "meminfo")
    assert [m.writeback_kb for m in ev.meminfo] == [81920, 524288, 262144]
    assert ev.meminfo[1].ts == datetime(2023, 6, 15, 6, 39, 10, tzinfo=UTC)


def test_vmstat_proc_and_command() -> None:
    ev, _ = load("vmstat/proc-vmstat-6.18-real.txt", "vmstat")
    (_, counters, _ref) = ev.vmstat[0]
    assert "nr_dirty" in counters and "pgpgout" in counters and "nr_free_pages" not in counters
    ev, _ = load("vmstat/proc-vmstat-series.txt", "vmstat")
    assert [c["nr_writeback"] for _, c, _ in ev.vmstat] == [20480, 131072]
    ev, _ = load("vmstat/vmstat-cmd-t-real.txt", "vmstat")
    ts, counters, _ = ev.vmstat[0]
    assert ts == datetime(2026, 11, 28, 15, 44, 21, tzinfo=UTC) and counters["bo"] == 2364


# ------------------------------------------------------------------------------------- mounts


def test_mounts_fsync_volatile_spelling_and_octal_escape() -> None:
    ev, _ = load("mounts/proc-mounts-fsync-volatile.txt", "mounts")
    ovl = [m for m in ev.mounts if m.fstype == "overlay"]
    assert len(ovl) == 2 and all(mounts.is_volatile(m) for m in ovl)
    assert mounts.volatile_spelling(ovl[0]) == "fsync=volatile"
    assert any(m.target == "/tmp/with space" for m in ev.mounts)
    assert mounts.overlay_dirs(ovl[0])["upperdir"].endswith("/snapshots/3/fs")


def test_mounts_volatile_spelling_and_own_disk() -> None:
    ev, _ = load("mounts/proc-mounts-overlay-volatile.txt", "mounts")
    ovl = [m for m in ev.mounts if m.fstype == "overlay"]
    assert [mounts.volatile_spelling(m) for m in ovl] == ["volatile", None]
    held = mounts.mount_for("/var/lib/containerd/io.containerd.content.v1.content", ev.mounts)
    assert held is not None and held.source == "/dev/sdb1"


def test_mountinfo_merges_super_options() -> None:
    ev, _ = load("mounts/mountinfo-overlay.txt", "mounts")
    ovl = next(m for m in ev.mounts if m.fstype == "overlay")
    assert mounts.is_volatile(ovl) and "relatime" in ovl.options
    assert any(m.target == "/mnt/with space" for m in ev.mounts)
    assert next(m for m in ev.mounts if m.target == "/var/lib/containerd").source == "/dev/sdb1"


def test_mount_command_output() -> None:
    ev, _ = load("mounts/mount-cmd-output.txt", "mounts")
    assert [m.fstype for m in ev.mounts] == ["ext4", "proc", "overlay"]
    assert mounts.is_volatile(ev.mounts[2])


# -------------------------------------------------------------------------------------- dmesg

OVERLAY_SIGNATURE = (
    "rwsem_down_read_slowpath",
    "ovl_sync_fs",
    "sync_filesystem",
    "generic_shutdown_super",
    "kill_anon_super",
    "deactivate_locked_super",
    "cleanup_mnt",
    "task_work_run",
)


def test_dmesg_overlay_umount_signature() -> None:
    ev, rep = load("dmesg/dmesg-hung-overlay-umount-5.4.txt", "dmesg")
    (h,) = ev.hung_tasks
    assert (h.comm, h.pid, h.seconds, h.state, h.syscall_nr) == ("containerd-shim", 1810, 328, "D", 0xA6)
    i = h.kernel_stack.index("rwsem_down_read_slowpath")
    assert h.kernel_stack[i : i + len(OVERLAY_SIGNATURE)] == OVERLAY_SIGNATURE
    assert h.ts is None and len(h.stack_refs) == len(h.kernel_stack)
    assert h.stack_refs[3].text.endswith("ovl_sync_fs+0x2f/0x50 [overlay]")
    assert ev.events[0].kind == EventKind.HUNG_TASK and rep.records == 1


def test_dmesg_boot_time_gives_wall_time() -> None:
    ev, _ = load("dmesg/dmesg-hung-overlay-umount-5.4.txt", "dmesg", boot_time=1_686_000_000.0)
    assert ev.hung_tasks[0].ts == datetime.fromtimestamp(1_686_000_000.0 + 450528.013688, UTC)


def test_kern_log_new_task_line_drops_guessed_frames() -> None:
    ev, _ = load("dmesg/kern-log-hung-ovl-sync-fs-5.15.txt", "dmesg")
    shim, ctrd = ev.hung_tasks
    assert shim.pid == 3658 and shim.ts is not None and (shim.ts.month, shim.ts.hour) == (6, 6)
    assert "wait_woken" not in shim.kernel_stack  # `? ` frame
    assert shim.kernel_stack[:4] == ("__schedule", "schedule", "wb_wait_for_completion", "sync_inodes_sb")
    assert "sync_filesystem" in shim.kernel_stack and shim.syscall_nr == 0xA6
    assert ctrd.comm == "containerd" and ctrd.seconds == 241 and "ext4_sync_file" in ctrd.kernel_stack
    assert ctrd.syscall_nr == 0x4B  # fdatasync


def test_journalctl_nfs_hang_and_events() -> None:
    ev, _ = load("dmesg/journalctl-k-nfs-hung.txt", "dmesg")
    ctrd, kubelet = ev.hung_tasks
    assert "rpc_wait_bit_killable" in ctrd.kernel_stack and "nfs_getattr" in ctrd.kernel_stack
    assert "nfs_wait_bit_killable" in kubelet.kernel_stack
    assert ctrd.ts == datetime(2023, 6, 15, 6, 42, 5, tzinfo=UTC)
    kinds = [e.kind for e in ev.events if e.kind != EventKind.HUNG_TASK]
    assert kinds == [EventKind.NFS_NOT_RESPONDING, EventKind.NFS_NOT_RESPONDING, EventKind.NFS_OK]
    assert ev.events[0].attrs == {"server": "10.20.0.15", "detail": "still trying"}


def test_dmesg_T_netdev_teardown() -> None:
    ev, _ = load("dmesg/dmesg-T-netdev-unregister.txt", "dmesg")
    (h,) = ev.hung_tasks
    assert h.comm == "runc:[1:CHILD]" and h.pid == 40211
    assert {"rtnl_lock", "copy_net_ns"} <= set(h.kernel_stack) and h.kernel_stack[3] == "__mutex_lock"
    waits = [e for e in ev.events if e.kind == EventKind.NETDEV_WAIT]
    assert len(waits) == 2 and waits[0].attrs == {"device": "eth0", "usage": 1}
    assert waits[0].ts == datetime(2023, 6, 15, 6, 40, 11, tzinfo=UTC)


def test_dmesg_x_cgroup_mutex_old_kernel() -> None:
    ev, _ = load("dmesg/dmesg-x-cgroup-rmdir-3.10.txt", "dmesg")
    kubelet, runc = ev.hung_tasks
    assert kubelet.state == "D" and "cgroup_rmdir" in kubelet.kernel_stack and "mutex_lock" in kubelet.kernel_stack
    # every frame of the second trace is `? `-marked: all are kept
    assert runc.comm == "runc:[2:INIT]" and "cgroup_attach_task" in runc.kernel_stack
    kinds = {e.kind: e.attrs for e in ev.events}
    assert kinds[EventKind.OOM_KILL] == {"pid": 88123, "comm": "java", "cgroup": True}
    assert kinds[EventKind.IO_ERROR]["device"] == "sdb"


def test_dmesg_iso_sysrq_blocked_state_and_incompat() -> None:
    ev, _ = load("dmesg/dmesg-iso-level-word-sysrq.txt", "dmesg")
    (h,) = ev.hung_tasks
    assert h.seconds is None and h.pid == 3658 and "ovl_sync_fs" in h.kernel_stack
    assert any(e.kind == EventKind.OVERLAY_VOLATILE_INCOMPAT for e in ev.events)


def test_dmesg_level_word_copy() -> None:
    ev, _ = load("dmesg/dmesg-level-word-copy.txt", "dmesg")
    (h,) = ev.hung_tasks
    assert h.comm == "exe" and h.kernel_stack[0] == "schedule" and "synchronize_rcu" in h.kernel_stack


# -------------------------------------------------------------------------------- ps, stacks


def test_ps_d_state_tasks() -> None:
    ev, _ = load("ps/ps-eo-d-state.txt", "ps")
    d = {t.pid: t for t in ev.tasks if t.state.startswith("D")}
    assert set(d) == {2206, 3658, 4120, 88}
    assert d[3658].wchan == "wb_wait_for_completion" and d[3658].comm == "containerd-shim-runc-v2"
    assert d[88].wchan is None and d[88].comm == "kworker/u16:3+flush-8:0"


def test_ps_real_and_comm_column() -> None:
    ev, rep = load("ps/ps-eo-pid-stat-wchan-cmd-real.txt", "ps")
    assert ev.tasks[0].pid == 1 and rep.unparsed == 0 and len(ev.tasks) == 39
    ev, _ = load("ps/ps-eo-comm-etime.txt", "ps")
    assert [t.comm for t in ev.tasks] == ["containerd", "containerd-shim"]
    assert ev.tasks[1].cmd.startswith("/usr/bin/containerd-shim-runc-v2 -namespace")


def test_proc_stack_variants() -> None:
    ev, _ = load("proc_stack/proc-3658-stack.txt", "proc-stack")
    (t,) = ev.tasks
    assert t.pid == 3658 and t.kernel_stack[2] == "sync_filesystem" and "ovl_sync_fs" in t.kernel_stack
    ev, _ = load("proc_stack/proc-stacks-collector.txt", "proc-stack")
    shim, ctrd = ev.tasks
    assert (shim.comm, shim.state, shim.wchan) == ("containerd-shim", "D", "wb_wait_for_completion")
    assert shim.cmd.startswith("/usr/bin/containerd-shim-runc-v2") and ctrd.kernel_stack[-1] == "__x64_sys_fdatasync"
    ev, _ = load("proc_stack/proc-stacks-tail.txt", "proc-stack")
    assert [(t.pid, len(t.kernel_stack)) for t in ev.tasks] == [(4120, 2), (88, 1)]
    ev, _ = load("proc_stack/proc-stacks-grep.txt", "proc-stack")
    assert [(t.pid, t.kernel_stack[0]) for t in ev.tasks] == [(2206, "rwsem_down_read_slowpath"), (3658, "ovl_sync_fs")]


# --------------------------------------------------------------------- versions, prom, manifest


def test_versions_debian_1_7_24_header() -> None:
    ev, _ = load("versions/versions-containerd-1.7.24-debian13.txt", "versions")
    (v,) = ev.versions
    assert (v.containerd, v.runc, v.go) == ("1.7.24~ds1", "1.1.5+ds1", "go1.24.4")
    assert v.kernel and v.refs[0].line == 2


def test_versions_without_headers() -> None:
    ev, _ = load("versions/versions-mixed-no-headers.txt", "versions")
    (v,) = ev.versions
    assert (v.containerd, v.runc, v.kubelet, v.go) == ("1.6.21", "1.1.7", "v1.19.16", "go1.20.3")


def test_prom_kubelet_pleg_and_escapes() -> None:
    ev, _ = load("prom/kubelet-metrics-pleg.txt", "prom-metrics")
    names = {m.name for m in ev.metrics}
    assert "go_goroutines" not in names and "kubelet_pleg_relist_duration_seconds_bucket" in names
    last_seen = next(m for m in ev.metrics if m.name == "kubelet_pleg_last_seen_seconds")
    assert last_seen.value == 1686811176.0 and last_seen.ref.line == 12
    inf = next(m for m in ev.metrics if m.labels.get("le") == "+Inf" and m.name.startswith("kubelet_pleg"))
    assert inf.value == 91144
    weird = next(m for m in ev.metrics if m.name.startswith("container_pressure"))
    assert weird.labels["name"] == 'a "quoted" b\\c' and weird.ts == datetime(2023, 6, 15, 6, 39, 36, tzinfo=UTC)
    upd = next(m for m in ev.metrics if m.name == "kubelet_runtime_operations_errors_total")
    assert upd.labels == {"operation_type": "update_container"} and upd.value == 3


def test_prom_series_and_containerd_nan() -> None:
    ev, _ = load("prom/kubelet-metrics-series.txt", "prom-metrics")
    assert [m.ts.minute for m in ev.metrics if m.ts] == [39, 41]
    ev, _ = load("prom/containerd-metrics-cri.txt", "prom-metrics")
    s = next(m for m in ev.metrics if m.name == "containerd_cri_container_update_resources_seconds_sum")
    assert s.value != s.value  # NaN


def test_bundle_manifest_errors_and_kinds() -> None:
    ev, rep = load("manifest/manifest.json", "bundle-manifest")
    assert any("containerd/goroutines.txt failed: timed out after 10 s" in w for w in rep.warnings)
    assert any("kubelet/metrics.txt failed: connection refused" in w for w in rep.warnings)
    assert ev.notes == ["bundle: node node-7, collected at 2023-06-15T06:45:10Z, by pleg-doctor 0.1.0"]
    import json

    data = json.loads((FIX / "manifest/manifest.json").read_text())
    kinds = bundle_manifest.kinds_from_manifest(data)
    assert kinds["proc/diskstats"] == "diskstats" and kinds["commands/dmesg.txt"] == "dmesg"
    assert "kubelet/metrics.txt" not in kinds
    assert bundle_manifest.boot_time_from_manifest(data) == 1686804453.0


# ------------------------------------------------------------------------------ robustness


@pytest.mark.parametrize(
    "kind",
    [
        "psi",
        "diskstats",
        "iostat",
        "meminfo",
        "vmstat",
        "mounts",
        "dmesg",
        "ps",
        "proc-stack",
        "versions",
        "prom-metrics",
    ],
)
def test_garbage_is_counted_never_fatal(kind: str) -> None:
    module = parsers.get(kind)
    text = "\x1b[31mgarbage\x1b[0m line\n\n{not: json\n" + "é" * 50 + "\n"
    ev, rep = parse_text(module, text)
    assert rep.records == 0
    stores = (ev.pressure, ev.diskstats, ev.disk_samples, ev.meminfo, ev.vmstat, ev.mounts, ev.hung_tasks, ev.tasks)
    assert not any(stores) and not ev.versions and not ev.metrics
    if kind not in ("dmesg", "versions"):  # the kernel log skips lines it does not know by design
        assert rep.unparsed >= 2


def test_big_psi_series_streams() -> None:
    lines = []
    for i in range(20_000):
        lines.append(
            f"# pleg-doctor sample 2026-11-28T10:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10}00000Z "
            "/proc/pressure/io"
        )
        lines.append(f"some avg10={i % 100}.00 avg60=1.00 avg300=1.00 total={i}")
        lines.append(f"full avg10={i % 50}.00 avg60=1.00 avg300=1.00 total={i}")
    ev, rep = parse_text(psi, "\n".join(lines) + "\n", "/proc/pressure/io")
    assert rep.records == 20_000 and max(s.some_avg10 for s in ev.pressure) == 99.0


def test_versions_from_the_collector() -> None:
    """`name: value` lines, as `pleg-doctor collect` writes versions.txt (captured here)."""
    ev, report = load("versions/versions-collector.txt", "versions")
    (v,) = ev.versions
    assert (v.kernel, v.containerd, v.runc, v.go, v.kubelet) == (
        "6.18.44-fc-v669",
        "1.6.20~ds1",
        "1.1.5+ds1",
        "go1.19.8",
        None,  # "kubelet: not found" is not a version
    )
    assert report.kind == "versions"
