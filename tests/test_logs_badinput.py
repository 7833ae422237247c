"""Bad input for the log parsers: counted and warned, never fatal, memory bounded."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import InputReport
from plegdoctor.parsers.logs import containerd as containerd_log
from plegdoctor.parsers.logs import engine, scanner
from plegdoctor.parsers.logs import journal as journald
from plegdoctor.parsers.logs import kubelet as kubelet_log
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "logs"
TICK = b'I0602 05:48:06.350695    1679 generic.go:191] "GenericPLEG: Relisting"\n'
TICK2 = b'I0602 05:48:16.350695    1679 generic.go:191] "GenericPLEG: Relisting"\n'
MODULES = [kubelet_log, containerd_log, journald]


def run(path: Path, mod) -> tuple[Evidence, ParseContext]:
    ev = Evidence()
    ctx = None
    for src in iter_sources([str(path)]):
        ctx = ParseContext(ev, InputReport(src.display, mod.KIND), TimeContext(year=2023))
        mod.parse(src, ctx)
    assert ctx is not None
    return ev, ctx


@pytest.mark.parametrize("mod", MODULES)
def test_empty_file(tmp_path, mod):
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    ev, ctx = run(p, mod)
    assert len(ev.relists) == 0 and ev.events == []
    assert any("empty input" in w for w in ctx.report.warnings)


@pytest.mark.parametrize("mod", MODULES)
def test_binary_junk_is_warned_and_good_lines_survive(tmp_path, mod):
    junk = bytes((i * 37 + 11) % 256 for i in range(200_000))
    p = tmp_path / "junk.log"
    p.write_bytes(TICK + junk + b"\n" + TICK2)
    ev, ctx = run(p, mod)
    assert any("binary data" in w for w in ctx.report.warnings)
    if mod is not containerd_log:
        assert len(ev.relists) == 2
    else:
        assert ctx.report.unparsed >= 1


def test_invalid_utf8_is_replaced(tmp_path):
    p = tmp_path / "bad.log"
    p.write_bytes(
        b'E0602 05:48:07.000000    1679 kubelet.go:2359] "Skipping pod synchronization" err="PLEG is not healthy: '
        b'pleg was last seen active 3m0.5s ago; threshold is 3m0s \xff\xfe"\n' + TICK
    )
    ev, _ctx = run(p, kubelet_log)
    assert len(ev.relists) == 1
    (un,) = [e for e in ev.events if e.kind == "pleg-unhealthy"]
    assert un.attrs["last_seen_seconds"] == pytest.approx(180.5) and "\ufffd" in un.ref.text


@pytest.mark.parametrize("mod", MODULES)
def test_ten_megabyte_single_line(tmp_path, mod):
    p = tmp_path / "long.log"
    with open(p, "wb") as fh:
        fh.write(TICK)
        fh.write(b"x" * (10 << 20) + b"\n")
        fh.write(TICK2)
    ev, ctx = run(p, mod)
    assert ctx.report.records == 3
    if mod is not containerd_log:
        assert len(ev.relists) == 2


def test_line_over_the_limit_is_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(scanner, "MAX_LINE", 1 << 20)
    monkeypatch.setattr(scanner, "CHUNK", 256 << 10)
    p = tmp_path / "huge.log"
    p.write_bytes(TICK + b"y" * (3 << 20) + b"\n" + TICK2)
    ev, ctx = run(p, kubelet_log)
    assert len(ev.relists) == 2 and ctx.report.records == 3
    assert ev.relists.line[1] == 3
    assert any("longer than" in w for w in ctx.report.warnings)


def test_no_trailing_newline_and_crlf(tmp_path):
    p = tmp_path / "crlf.log"
    p.write_bytes(TICK.replace(b"\n", b"\r\n") + TICK2.rstrip(b"\n"))
    ev, ctx = run(p, kubelet_log)
    assert len(ev.relists) == 2 and ctx.report.records == 2
    assert not ev.relists.texts[1].endswith("\r")


def test_gzip_input_goes_through_the_generic_reader(tmp_path):
    p = tmp_path / "k.log.gz"
    p.write_bytes(gzip.compress((FIX / "kubelet-klog-structured.log").read_bytes()))
    ev, _ = run(p, kubelet_log)
    assert len(ev.relists) == 7


def test_fallback_without_hyperscan_finds_the_same(monkeypatch):
    ev1, _ = run(FIX / "kubelet-klog-structured.log", kubelet_log)
    monkeypatch.setattr(scanner, "_hs", None)
    ev2, _ = run(FIX / "kubelet-klog-structured.log", kubelet_log)
    assert list(ev1.relists.ts) == list(ev2.relists.ts)
    assert [(e.kind, e.ref.line) for e in ev1.events] == [(e.kind, e.ref.line) for e in ev2.events]
    assert len(ev1.log_records) == len(ev2.log_records)


def test_many_chunks_keep_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(scanner, "CHUNK", 4096)
    lines = []
    for i in range(3000):
        s = 6 + i * 1.0 + (50.0 if i >= 1500 else 0.0)
        mm, ss = divmod(int(s), 60)
        lines.append(f'I0602 05:{48 + mm:02d}:{ss:02d}.000000    1679 generic.go:191] "GenericPLEG: Relisting"')
        lines.append('I0602 05:48:06.400002    1679 kubelet.go:2229] "SyncLoop (housekeeping)"')
    p = tmp_path / "many.log"
    p.write_text("\n".join(lines) + "\n")
    ev, ctx = run(p, kubelet_log)
    assert len(ev.relists) == 3000 and ctx.report.records == 6000
    assert list(ev.relists.line[:3]) == [1, 3, 5]
    assert ev.relists.line[1500] == 3001 and "05:" in ev.relists.texts[1500]


def test_split_scan_in_two_processes_matches_sequential(tmp_path, monkeypatch):
    """Big plain files are scanned in two halves (forked child); the result must be the
    same as one sequential pass: ticks, quoted lines, events and line numbers."""
    import subprocess
    import sys

    out = tmp_path / "k.log"
    truth = tmp_path / "k.json"
    root = Path(__file__).parent.parent
    subprocess.run(
        [
            sys.executable,
            str(root / "bench" / "gen_kubelet_journal.py"),
            "--size",
            "2M",
            "--out",
            str(out),
            "--truth",
            str(truth),
            "--stalls",
            "4",
            "--seed",
            "3",
        ],
        check=True,
    )
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    seq, seq_ctx = run(out, kubelet_log)
    monkeypatch.delenv("PLEG_DOCTOR_SCAN_WORKERS")
    monkeypatch.setattr(engine, "SPLIT_MIN_BYTES", 1)
    monkeypatch.setattr(engine, "split_allowed", lambda: True)
    par, par_ctx = run(out, kubelet_log)
    assert list(par.relists.ts) == list(seq.relists.ts)
    assert list(par.relists.line) == list(seq.relists.line)
    assert par.relists.texts == seq.relists.texts
    assert [(e.kind, e.ref) for e in par.events] == [(e.kind, e.ref) for e in seq.events]
    assert [r.ref for r in par.log_records] == [r.ref for r in seq.log_records]
    assert par_ctx.report.records == seq_ctx.report.records
