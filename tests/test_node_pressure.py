"""analysis.pressure: iostat-like figures from diskstats, PSI peaks/windows, gap correlation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plegdoctor import parsers
from plegdoctor.analysis.pressure import analyze_pressure, derive_disk_samples, dirty_high, is_partition
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import DiskSample, DiskStat, InputReport, Meminfo, PressureSample, Ref
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "node"
T0 = datetime(2023, 6, 15, 6, 39, 0, tzinfo=UTC)


def evidence_from(*rels: str) -> Evidence:
    ev = Evidence()
    for rel in rels:
        for src in iter_sources([str(FIX / rel)]):
            kind, _ = parsers.sniff(src.head())
            parsers.get(kind).parse(src, ParseContext(ev, InputReport(src.display, kind), TimeContext()))
    return ev


def stat(ts: datetime, device: str = "sda", **kw: int) -> DiskStat:
    counters = dict.fromkeys(
        (
            "reads",
            "sectors_read",
            "ms_reading",
            "writes",
            "sectors_written",
            "ms_writing",
            "in_flight",
            "io_ticks_ms",
            "weighted_ms",
        ),
        0,
    )
    counters.update(kw)
    return DiskStat(ts=ts, device=device, flushes=None, ms_flushing=None, ref=Ref("d", 1), **counters)


def test_iostat_formulas_from_two_samples() -> None:
    a = stat(
        T0,
        reads=100,
        ms_reading=50,
        writes=1000,
        sectors_written=8000,
        ms_writing=2000,
        io_ticks_ms=1000,
        weighted_ms=500,
    )
    b = stat(
        T0 + timedelta(seconds=5),
        reads=110,
        ms_reading=150,
        writes=1500,
        sectors_written=8000 + 5 * 2048 * 10,
        ms_writing=2000 + 500 * 40,
        io_ticks_ms=1000 + 4500,
        weighted_ms=500 + 15000,
    )
    (s,) = derive_disk_samples([b, a])  # order does not matter
    assert s.start == T0 and s.end == T0 + timedelta(seconds=5)
    assert s.util == pytest.approx(90.0)
    assert s.w_per_s == pytest.approx(100.0)
    assert s.wkb_per_s == pytest.approx(10240.0)  # 10 MiB/s
    assert s.w_await == pytest.approx(40.0) and s.r_await == pytest.approx(10.0)
    assert s.aqu_sz == pytest.approx(3.0)


def test_counter_reset_and_untimed_samples_are_skipped() -> None:
    a = stat(T0, writes=1000, io_ticks_ms=5000)
    b = stat(T0 + timedelta(seconds=1), writes=10, io_ticks_ms=100)  # reboot
    untimed = DiskStat(None, "sdb", 1, 1, 1, 1, 1, 1, 0, 1, 1, None, None, Ref("d", 2))
    assert derive_disk_samples([a, b, untimed]) == []


def test_partitions_recognised_only_when_disk_present() -> None:
    assert is_partition("sda1", {"sda", "sda1"}) and is_partition("nvme0n1p2", {"nvme0n1"})
    assert not is_partition("sda1", {"sda1"}) and not is_partition("dm-0", {"dm-0", "dm"})


def test_real_diskstats_capture_derives_write_rate() -> None:
    ev = evidence_from("diskstats/diskstats-6.18-real-2samples.txt")
    a = analyze_pressure(ev)
    vda = next(d for d in a.disk_samples if d.device == "vda")
    # 131128 sectors written in 1.03 s while dd wrote 64 MiB with O_DIRECT
    assert 55_000 < vda.wkb_per_s < 70_000 and vda.w_per_s > 10


def test_seed_like_window_correlates_with_gap() -> None:
    ev = evidence_from(
        "psi/psi-series-pleg-doctor.txt",
        "diskstats/diskstats-4.19-15fields-series.txt",
        "meminfo/meminfo-series-writeback.txt",
    )
    gap = (T0 + timedelta(seconds=5), T0 + timedelta(seconds=47))
    a = analyze_pressure(ev, gaps=[gap])
    io = a.peak("io")
    assert io is not None and io.max_some_avg10 == 96.02 and io.max_full_avg10 == 93.5
    (w,) = a.io_windows
    assert w.start == datetime(2023, 6, 15, 6, 38, 50, 2811, tzinfo=UTC) and w.peak_full_avg10 == 93.5
    sda = a.busiest[0]
    assert sda.device == "sda" and sda.util == pytest.approx(99.9) and sda.w_await == pytest.approx(350.0)
    assert all(d.device != "sda1" for d in a.busiest)  # partitions do not compete with their disk
    (g,) = a.gaps
    assert g.io_high and g.disk_saturated
    assert g.max_io_full_avg10 == 93.5 and g.max_dirty_kb == 2883584
    assert [r.path.rsplit("/", 1)[-1] for r in g.evidence] == [
        "psi-series-pleg-doctor.txt",
        "diskstats-4.19-15fields-series.txt",
        "meminfo-series-writeback.txt",
    ]
    assert a.dirty is not None and a.dirty.max_dirty_kb == 3145728 and a.dirty.max_writeback_kb == 524288
    assert a.io_saturated


def test_gap_far_from_pressure_finds_nothing_inside() -> None:
    ev = evidence_from("psi/psi-series-pleg-doctor.txt")
    far = (T0 + timedelta(hours=2), T0 + timedelta(hours=2, seconds=40))
    near = (T0 + timedelta(seconds=60), T0 + timedelta(seconds=80))  # 20 s after the last sample
    a = analyze_pressure(ev, gaps=[far, near])
    g_far, g_near = a.gaps
    assert not g_far.pressure_inside and not g_far.pressure_near and not g_far.io_high
    # within the 30 s margin: the samples of 06:39:30 and 06:39:40 (each covers the 10 s before it)
    assert not g_near.pressure_inside and len(g_near.pressure_near) == 2 and g_near.max_io_some_avg10 == 70.15
    (tight,) = analyze_pressure(ev, gaps=[near], margin_s=25).gaps
    assert [p.some_avg10 for p in tight.pressure_near] == [12.33]


def test_timeline_object_is_accepted() -> None:
    class Gap:
        def __init__(self, start: datetime, end: datetime) -> None:
            self.start, self.end = start, end

    class Timeline:
        def __init__(self) -> None:
            self.gaps = [Gap(T0, T0 + timedelta(seconds=30))]

    ev = evidence_from("psi/psi-series-pleg-doctor.txt")
    (g,) = analyze_pressure(ev, timeline=Timeline()).gaps
    assert g.io_high and len(g.pressure_inside) >= 3


def test_untimed_inputs_give_peaks_but_no_windows() -> None:
    ev = evidence_from("psi/psi-grep-all.txt", "diskstats/diskstats-4.14-11fields.txt")
    a = analyze_pressure(ev, gaps=[(T0, T0 + timedelta(seconds=10))])
    assert {p.resource for p in a.peaks} == {"cpu", "io", "memory"}
    assert a.io_windows == () and a.disk_samples == ()
    assert any("no time" in n for n in a.notes) and any("no rates" in n for n in a.notes)
    assert not a.io_saturated


def _psi(ts: datetime, full10: float, full60: float = 0.0, line: int = 1, scope: str = "node") -> PressureSample:
    return PressureSample(ts, "io", scope, full10 + 5, 0.0, 0.0, 0, full10, full60, 0.0, 0, Ref("pressure-io", line))


def _disk(start: datetime | None, device: str, util: float, w_await: float | None, line: int) -> DiskSample:
    end = (start or T0) + timedelta(seconds=5)
    return DiskSample(start, end, device, util, None, w_await, 10.0, 1024.0, 2.0, Ref("iostat", line))


def test_io_peak_prefers_a_sample_in_the_gap_and_quotes_its_window() -> None:
    ev = Evidence()
    gap = (T0, T0 + timedelta(seconds=40))
    ev.pressure += [
        _psi(T0 - timedelta(minutes=10), 90.0, line=1),  # larger, but long before the gap
        _psi(T0 + timedelta(seconds=20), 41.0, 63.0, line=2),  # in the gap; avg60 is the larger window
        _psi(T0 + timedelta(seconds=30), 70.0, line=3, scope="/kubepods.slice"),  # a cgroup, not the node
    ]
    a = analyze_pressure(ev, gaps=[gap])
    peak = a.io_peak("full")
    assert peak is not None and peak.ref.line == 2
    assert (peak.value, peak.window, peak.in_gap) == (63.0, "avg60", True)
    far = analyze_pressure(ev, gaps=[gap]).placement(T0 - timedelta(minutes=10))
    assert far is False
    assert analyze_pressure(ev).io_peak("full").in_gap is None  # no gap: cannot tell


def test_worst_disk_skips_partitions_and_iostat_since_boot_report() -> None:
    ev = Evidence()
    ev.disk_samples += [
        _disk(None, "sdb", 100.0, 2000.0, 1),  # iostat's first report: averages since boot
        _disk(T0, "sdb1", 100.0, 900.0, 2),  # partition of a listed disk
        _disk(T0, "sdb", 97.0, 850.0, 3),
        _disk(T0, "sda", 40.0, 5.0, 4),
    ]
    a = analyze_pressure(ev, gaps=[(T0, T0 + timedelta(seconds=30))])
    worst = a.worst_disk()
    assert worst is not None and (worst.sample.device, worst.ref.line, worst.in_gap) == ("sdb", 3, True)


def test_dirty_top_and_threshold() -> None:
    ev = Evidence()
    ev.meminfo += [
        Meminfo(T0, 200 * 1024, 0, 64 * 1024 * 1024, None, Ref("meminfo", 1)),
        Meminfo(T0 + timedelta(seconds=5), 900 * 1024, 200 * 1024, 64 * 1024 * 1024, None, Ref("meminfo", 9)),
    ]
    top = analyze_pressure(ev).dirty_top()
    assert top is not None and top.ref.line == 9 and top.value == 1100 * 1024
    assert dirty_high(top.sample)  # 1.07 GiB >= 1 GiB
    small_node = Meminfo(T0, 300 * 1024, 0, 2 * 1024 * 1024, None, Ref("meminfo", 1))
    assert dirty_high(small_node)  # 15 % of MemTotal
    assert not dirty_high(Meminfo(T0, 300 * 1024, 0, 64 * 1024 * 1024, None, Ref("meminfo", 1)))
