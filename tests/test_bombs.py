"""Bounded on any input (issue #10 item 2): each bomb of bench/bench_bombs.py at small
scale, with the limit that fires, the warning that names the option, and a look-alike
legitimate input of the same shape that is read whole."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import struct
import tarfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
import zstandard

from plegdoctor import inputs
from plegdoctor.cli import main
from plegdoctor.evidence import EventList, Evidence
from plegdoctor.inputs import Limits
from plegdoctor.model import Event, EventKind, Ref
from plegdoctor.pipeline import collect_evidence

MiB = 1 << 20


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_bombs.py"
    spec = importlib.util.spec_from_file_location("bench_bombs", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench()


def _pleg_lines(n: int, start: datetime = datetime(2023, 6, 2, 5, 48, tzinfo=UTC)) -> bytes:
    out = []
    for i in range(n):
        t = start + timedelta(seconds=i)
        out.append(
            f'I0602 {t:%H:%M:%S}.000000    1679 kubelet.go:2010] "Skipping pod synchronization" '
            f'err="PLEG is not healthy: pleg was last seen active {180 + i}.5s ago; threshold is 3m0s"\n'
        )
    return "".join(out).encode()


def _warnings(ev: Evidence) -> list[str]:
    return [w for r in ev.inputs for w in r.warnings]


def _paths(ev: Evidence) -> list[str]:
    return [r.path for r in ev.inputs]


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ------------------------------------------------------------------ 1, 2: zip central directory


def test_zip_entries_sharing_one_member_are_refused(tmp_path: Path) -> None:
    bomb = BENCH.bomb_zip_shared(tmp_path, entries=50, member=64 * 1024)
    ev = collect_evidence([str(bomb)])
    members = [p for p in _paths(ev) if p.startswith(str(bomb) + ":")]
    assert len(members) == 1  # the one real member, once
    assert any("49 entries overlap" in w and "zip bomb" in w for w in _warnings(ev))


def test_zip_of_distinct_members_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "ok.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(50):
            zf.writestr(f"kubelet-{i}.log", _pleg_lines(20))
    ev = collect_evidence([str(p)])
    assert len([x for x in _paths(ev) if x.startswith(str(p) + ":")]) == 50
    assert not _warnings(ev)


def test_overlapping_zip_entries_fifield_are_not_read(tmp_path: Path) -> None:
    bomb = BENCH.bomb_zip_overlap(tmp_path, payload_size=256 * 1024, n=8)
    with zipfile.ZipFile(bomb) as zf:  # the construction is a valid zip: every entry opens
        assert len(zf.infolist()) == 8
    ev = collect_evidence([str(bomb)])
    assert any("7 entries overlap another entry's data" in w for w in _warnings(ev))
    assert len([x for x in _paths(ev) if x.startswith(str(bomb) + ":")]) == 1


# ------------------------------------------------------------------ 3: events per kind, ratio


def test_events_per_kind_are_capped_with_exact_counts(tmp_path: Path) -> None:
    p = tmp_path / "kubelet.log.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(_pleg_lines(3000)))
    ev = collect_evidence([str(p)], year=2023, max_events_per_kind=100)
    kept = [e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY]
    assert len(kept) == 100
    assert isinstance(ev.events, EventList)
    assert ev.events.counts["pleg-unhealthy"] == 3000
    assert ev.events.dropped["pleg-unhealthy"].count == 2900
    # the first and the last events are among those kept: the timeline spans the whole log
    times = sorted(e.ts for e in kept if e.ts)
    assert times[0] == datetime(2023, 6, 2, 5, 48, tzinfo=UTC)
    assert times[-1] == datetime(2023, 6, 2, 5, 48, tzinfo=UTC) + timedelta(seconds=2999)
    [line] = [w for w in _warnings(ev) if "pleg-unhealthy" in w]
    assert "3000 pleg-unhealthy events" in line and "--max-events-per-kind" in line


def test_events_under_the_cap_are_all_kept(tmp_path: Path) -> None:
    p = tmp_path / "kubelet.log.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(_pleg_lines(90)))
    ev = collect_evidence([str(p)], year=2023, max_events_per_kind=100)
    assert len([e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY]) == 90
    assert not _warnings(ev)


def test_event_list_keeps_head_and_tail_in_time_order() -> None:
    events = EventList(cap=4)
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    for i in range(10):
        events.append(Event(t0 + timedelta(seconds=i), EventKind.RELIST_ERROR, "kubelet", Ref("k", i + 1, "")))
    events.append(Event(t0, EventKind.NODE_READY, "kubelet", Ref("k", 99, "")))
    events.seal()
    assert [e.ref.line for e in events if e.kind == EventKind.RELIST_ERROR] == [1, 2, 9, 10]
    assert events.counts == {"relist-error": 10, "node-ready": 1}
    d = events.dropped["relist-error"]
    assert (d.count, d.first, d.last) == (6, t0 + timedelta(seconds=2), t0 + timedelta(seconds=7))


def test_ratio_limit_stops_a_zstd_bomb(tmp_path: Path) -> None:
    p = tmp_path / "kubelet.log.zst"
    p.write_bytes(zstandard.ZstdCompressor(level=19).compress(_pleg_lines(1) * 40000))  # 5 MB, ratio > 1000
    limits = Limits(ratio_floor=MiB)
    ev = collect_evidence([str(p)], year=2023, limits=limits)
    [w] = [w for w in _warnings(ev) if "ratio" in w]
    assert "over 200:1" in w and "--max-ratio" in w
    assert limits.total < 2 * MiB  # stopped near the floor, not after 5 MB


def test_ratio_limit_lets_an_ordinary_log_through(tmp_path: Path) -> None:
    data = _pleg_lines(15000)  # time-stamped lines: a real log's ratio (under 200:1)
    assert len(data) > 1.5 * MiB
    p = tmp_path / "kubelet.log.zst"
    p.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    limits = Limits(ratio_floor=MiB)
    ev = collect_evidence([str(p)], year=2023, limits=limits)
    assert not _warnings(ev)
    assert limits.total == len(data)


# ------------------------------------------------------------------ 4: tar header sizes


def _pax_tar(value_len: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("kubelet.log")
        info.pax_headers = {"comment": "x" * value_len}
        data = _pleg_lines(5)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_oversized_pax_header_stops_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "MAX_TAR_HEADER", 4096)
    p = tmp_path / "pax.tar"
    p.write_bytes(_pax_tar(10_000))
    ev = collect_evidence([str(p)])
    assert not any(x.endswith(":kubelet.log") for x in _paths(ev))
    assert any("tar header of" in w and "is over 4.0 KiB" in w for w in _warnings(ev))


def test_ordinary_pax_header_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "MAX_TAR_HEADER", 4096)
    p = tmp_path / "pax.tar"
    p.write_bytes(_pax_tar(1000))
    ev = collect_evidence([str(p)])
    assert any(x.endswith(":kubelet.log") for x in _paths(ev))
    assert not _warnings(ev)


# ------------------------------------------------------------------ 5: one decompression pass


def test_a_big_member_is_decompressed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plegdoctor import pipeline

    monkeypatch.setattr(pipeline, "PREPASS_BYTES", MiB)
    big = b"I0602 05:48:00.000000    1679 kubelet.go:1] x\n" * (8 * MiB // 46)
    p = tmp_path / "bundle.tar.gz"
    p.write_bytes(_tar({"big.log": big, "kubelet.log": _pleg_lines(5)}, "w:gz"))
    produced: list[int] = []
    real = inputs._Budget.readinto

    def spy(self: inputs._Budget, b: bytearray | memoryview) -> int:
        n = real(self, b)
        if self._total:  # the archive's decompressor (members are counted inside it)
            produced.append(n)
        return n

    monkeypatch.setattr(inputs._Budget, "readinto", spy)
    collect_evidence([str(p)])
    assert len(big) < sum(produced) < len(big) + 2 * MiB  # once, plus the first pass's 1 MiB budget


def test_first_pass_still_learns_the_year_inside_its_budget(tmp_path: Path) -> None:
    dated = b'time="2021-03-04T05:06:07Z" level=info msg="starting containerd"\n'
    p = tmp_path / "bundle.tar.gz"
    p.write_bytes(_tar({"a-kubelet.log": _pleg_lines(5), "b-containerd.log": dated}, "w:gz"))
    ev = collect_evidence([str(p)])
    years = {e.ts.year for e in ev.events if e.ts and e.kind == EventKind.PLEG_UNHEALTHY}
    assert years == {2021}


# ------------------------------------------------------------------ 6: archive members


def test_member_limit(tmp_path: Path) -> None:
    p = tmp_path / "many.tar"
    p.write_bytes(_tar({f"m/{i}.log": b"x\n" for i in range(80)}))
    ev = collect_evidence([str(p)], limits=Limits(max_members=50))
    assert len([x for x in _paths(ev) if ":m/" in x]) == 50
    assert any("more than 50 members" in w and "--max-members" in w for w in _warnings(ev))


def test_members_under_the_limit_are_all_read(tmp_path: Path) -> None:
    p = tmp_path / "many.tar"
    p.write_bytes(_tar({f"m/{i}.log": b"x\n" for i in range(50)}))
    ev = collect_evidence([str(p)], limits=Limits(max_members=50))
    assert len([x for x in _paths(ev) if ":m/" in x]) == 50
    assert not any("members" in w for w in _warnings(ev))


# ------------------------------------------------------------------ 7: deep nesting


def test_deep_nesting_is_not_opened(tmp_path: Path) -> None:
    bomb = BENCH.bomb_nested(tmp_path, levels=6)
    ev = collect_evidence([str(bomb)])
    assert any("nested deeper than 3 levels" in w for w in _warnings(ev))
    assert not any(x.endswith(":kubelet.log") for x in _paths(ev))


def test_shallow_nesting_is_read(tmp_path: Path) -> None:
    bomb = BENCH.bomb_nested(tmp_path, levels=2)
    ev = collect_evidence([str(bomb)])
    assert any(x.endswith(":kubelet.log") for x in _paths(ev))
    assert not _warnings(ev)


# ------------------------------------------------------------------ 8: one endless line


def test_input_limit_cuts_an_endless_line_and_keeps_what_came_before(tmp_path: Path) -> None:
    p = tmp_path / "oneline.log.gz"
    BENCH.gzip_repeat(p, _pleg_lines(50), b"a" * 65536, 48, b"\n")  # 3 MiB without a newline
    ev = collect_evidence([str(p)], year=2023, limits=Limits(max_input_bytes=MiB))
    [report] = [r for r in ev.inputs if r.path == str(p)]
    assert report.kind == "kubelet-log"
    assert any("read the first 1.0 MiB" in w and "--max-input-bytes" in w for w in report.warnings)
    assert len([e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY]) == 50


def test_input_under_the_limit_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "k.log.gz"
    data = _pleg_lines(4000)
    assert len(data) < MiB
    p.write_bytes(gzip.compress(data))
    ev = collect_evidence([str(p)], year=2023, limits=Limits(max_input_bytes=MiB))
    assert not _warnings(ev)
    assert len([e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY]) == 4000


def test_run_limit_names_its_option(tmp_path: Path) -> None:
    for name in ("a.log.gz", "b.log.gz"):
        (tmp_path / name).write_bytes(gzip.compress(_pleg_lines(8000)))
    ev = collect_evidence([str(tmp_path)], year=2023, limits=Limits(max_total_bytes=MiB))
    assert any("run limit" in w and "--max-total-bytes" in w for w in _warnings(ev))


# ------------------------------------------------------------------ 9: declared member size


def test_member_declaring_an_enormous_size_stops_the_archive(tmp_path: Path) -> None:
    p = tmp_path / "declared.tar.gz"
    raw = BENCH.tar_header("var/log/kubelet.log", 1 << 62) + _pleg_lines(10)
    assert tarfile.nti(raw[124:136]) == 1 << 62  # base-256 size field
    p.write_bytes(gzip.compress(raw))
    ev = collect_evidence([str(p)])
    assert any("declares" in w and "--max-total-bytes" in w for w in _warnings(ev))
    assert not any(x.endswith(":var/log/kubelet.log") for x in _paths(ev))


def test_member_of_ordinary_size_is_read(tmp_path: Path) -> None:
    p = tmp_path / "ok.tar.gz"
    p.write_bytes(_tar({"var/log/kubelet.log": _pleg_lines(10)}, "w:gz"))
    ev = collect_evidence([str(p)])
    assert any(x.endswith(":var/log/kubelet.log") for x in _paths(ev))
    assert not _warnings(ev)


# ------------------------------------------------------------------ 10: zip sizes that lie


def _zip_claiming(tmp_path: Path, claimed: int) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("kubelet.log", _pleg_lines(2000))
    data = bytearray(buf.getvalue())
    cd = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, claimed)
    struct.pack_into("<I", data, 22, claimed)
    p = tmp_path / "lying.zip"
    p.write_bytes(bytes(data))
    return p


def test_zip_entry_claiming_a_bomb_ratio_is_refused(tmp_path: Path) -> None:
    p = _zip_claiming(tmp_path, 1 << 31)
    ev = collect_evidence([str(p)], limits=Limits(ratio_floor=MiB))
    assert any("declares a compression ratio over 200:1" in w and "--max-ratio" in w for w in _warnings(ev))
    assert not any(x.endswith(":kubelet.log") for x in _paths(ev))


def test_zip_entry_claiming_less_is_cut_at_its_claim(tmp_path: Path) -> None:
    p = _zip_claiming(tmp_path, 1000)
    ev = collect_evidence([str(p)], year=2023)
    [report] = [r for r in ev.inputs if r.path.endswith(":kubelet.log")]
    assert report.warnings  # the CRC no longer matches: said, not a traceback
    assert len([e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY]) < 10


# ------------------------------------------------------------------ 11: xz; 12: goroutines


def test_xz_multistream_bomb_is_stopped_by_the_ratio(tmp_path: Path) -> None:
    import lzma

    line = b'time="2023-06-02T05:48:00Z" level=error msg="failed to handle container TaskExit event"\n'
    stream = lzma.compress(line * 20000)
    p = tmp_path / "containerd.log.xz"
    p.write_bytes(stream * 8)
    limits = Limits(ratio_floor=MiB)
    ev = collect_evidence([str(p)], limits=limits)
    assert any("compression ratio over 200:1" in w for w in _warnings(ev))
    assert limits.total < 2 * MiB


def test_zstd_goroutine_dump_bomb_is_stopped_by_the_ratio(tmp_path: Path) -> None:
    p = tmp_path / "goroutines.txt.zst"
    p.write_bytes(zstandard.ZstdCompressor(level=19).compress(BENCH.GOROUTINE.encode() * 20000))
    ev = collect_evidence([str(p)], limits=Limits(ratio_floor=MiB))
    [report] = [r for r in ev.inputs if r.path == str(p)]
    assert report.kind == "goroutine-dump"
    assert any("compression ratio" in w for w in report.warnings)


# ------------------------------------------------------------------ sniffing, tar-slip, CLI


def test_a_log_with_some_nul_lines_is_still_read_as_its_format(tmp_path: Path) -> None:
    p = tmp_path / "kubelet.log"
    p.write_bytes(_pleg_lines(20) + b"\x00" * 600 + b"\n" + _pleg_lines(20))
    ev = collect_evidence([str(p)], year=2023)
    [report] = ev.inputs
    assert report.kind == "kubelet-log"
    assert any("binary data" in w or "NUL" in w for w in report.warnings)
    assert len([e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY]) == 40


def test_a_binary_file_is_still_unknown(tmp_path: Path) -> None:
    import random

    rnd = random.Random(1)
    p = tmp_path / "blob.bin"
    p.write_bytes(bytes(rnd.randrange(256) for _ in range(20000)) + b"\x00" * 100 + _pleg_lines(2))
    ev = collect_evidence([str(p)])
    assert ev.inputs[0].kind == "unknown"


def test_tar_slip_members_are_skipped_with_a_warning(tmp_path: Path) -> None:
    p = tmp_path / "slip.tar"
    p.write_bytes(_tar({"../../etc/evil.log": b"x\n", "a..b/ok.log": b"y\n"}))
    ev = collect_evidence([str(p)])
    assert any(x.endswith(":a..b/ok.log") for x in _paths(ev))
    assert not any("evil" in x for x in _paths(ev))
    assert any("'../../etc/evil.log' skipped" in w and "tar-slip" in w for w in _warnings(ev))


def test_cli_limit_options_and_warning_in_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "many.tar"
    p.write_bytes(_tar({f"m/{i}.log": _pleg_lines(2) for i in range(5)}))
    code = main(["analyze", "-o", "json", "--max-members", "3", "--max-input-bytes", "512K", "--year", "2023", str(p)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    warnings = [w for inp in doc["inputs"] for w in inp["warnings"]]
    assert any("--max-members" in w for w in warnings)


def test_cli_rejects_a_bad_size_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "k.log"
    p.write_bytes(_pleg_lines(2))
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "--max-input-bytes", "lots", str(p)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is not a size" in err and "Traceback" not in err


def test_timeline_counts_see_the_events_over_the_cap(tmp_path: Path) -> None:
    from plegdoctor.analysis.pleg_timeline import build_timeline

    line = (
        'E0602 05:50:{s:02d}.360100    1679 generic.go:238] "GenericPLEG: Unable to retrieve pods" '
        'err="rpc error: code = DeadlineExceeded desc = context deadline exceeded"\n'
    )
    p = tmp_path / "kubelet.log"
    p.write_text("".join(line.format(s=i % 60) for i in range(300)))
    capped = collect_evidence([str(p)], year=2023, max_events_per_kind=10)
    whole = collect_evidence([str(p)], year=2023)
    assert len(capped.events) < len(whole.events)
    assert build_timeline(capped).relist_errors == build_timeline(whole).relist_errors == 300


def test_counted_goroutine_records_are_bounded_per_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 100-byte pprof record of 1,999,999 goroutines took 25 s and 1.3 GB; repeated dumps
    in one input share the budget."""
    from plegdoctor.goroutines import parse_dump_binary
    from plegdoctor.goroutines import scan as gparse

    monkeypatch.setattr(gparse, "MAX_EXPANDED", 1000)
    record = "goroutine profile: total {n}\n{n} @ 0x1 0x2\n#\t0x1\tmain.f+0x1\t/a.go:1\n#\t0x2\tmain.g+0x1\t/a.go:2\n\n"
    bomb = (record.format(n=1_999_999) * 3).encode()
    dumps = parse_dump_binary(io.BytesIO(bomb), source="bomb.txt")
    assert sum(len(d.goroutines) for d in dumps) <= 1000 + 2  # at least one kept per record
    problems = [p for d in dumps for p in d.problems]
    assert any("1999999 goroutines: 1000 kept" in str(p) for p in problems)
    # the look-alike: counted records under the budget are expanded in full, without a problem
    ok = (record.format(n=400) * 2).encode()
    dumps = parse_dump_binary(io.BytesIO(ok), source="ok.txt")
    assert sum(len(d.goroutines) for d in dumps) == 800
    assert not any("kept" in str(p) for d in dumps for p in d.problems)
