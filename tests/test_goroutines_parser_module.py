"""The goroutine-dump evidence parser: sniffing and filling ctx.evidence.dumps."""

from __future__ import annotations

from pathlib import Path

from plegdoctor import parsers
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import goroutine_dump
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "goroutines"


def run(path: Path) -> tuple[Evidence, InputReport]:
    ev = Evidence()
    (src,) = list(iter_sources([str(path)]))
    report = InputReport(src.display, goroutine_dump.KIND)
    goroutine_dump.parse(src, ParseContext(ev, report, TimeContext()))
    return ev, report


def test_sniffs_dumps_but_not_logs_with_occasional_dumps() -> None:
    for name in ("containerd-1.6.20-go1.19-sigusr1-raw.txt", "shim-runc-v2-1.6.20-sigusr1-logline.txt"):
        assert parsers.sniff((FIX / name).read_bytes()[:65536])[0] == "goroutine-dump"
    log = "\n".join(
        ['time="2026-11-28T14:18:21.8Z" level=info msg="loading plugin"'] * 50
        + [(FIX / "containerd-1.6.20-go1.19-sigusr1-logline.txt").read_text().strip()]
    )
    assert goroutine_dump.sniff(log.split("\n")) < 0.3
    assert goroutine_dump.sniff(["hello", "world"]) == 0.0


def test_parse_appends_dumps_events_and_counts(tmp_path: Path) -> None:
    ev, report = run(FIX / "shim-runc-v2-1.6.20-sigusr1-logline.txt")
    (d,) = ev.dumps
    assert d.process == "containerd-shim-runc-v2" and d.pid == 6996
    assert report.records == len(d.goroutines) and report.unparsed == 0
    (e,) = [e for e in ev.events if e.kind == EventKind.GOROUTINE_DUMP]
    assert e.ts == d.dump_time and e.attrs["pid"] == 6996
    broken = tmp_path / "broken.txt"
    text = (FIX / "containerd-1.6.20-go1.19-sigusr1-raw.txt").read_text().split("\n")
    text[3] = "### garbage ###("
    broken.write_text("\n".join(text))
    ev2, report2 = run(broken)
    # the garbled function line (4) and the file line left without its function line (5)
    assert report2.unparsed == 2 and any("lines 4, 5" in w for w in report2.warnings)
    headers = sum(1 for line in text if line.startswith("goroutine ") and line.endswith("]:"))
    assert len(ev2.dumps[0].goroutines) == headers


def test_file_name_gives_pid_and_time(tmp_path: Path) -> None:
    target = tmp_path / "containerd.10304.stacks.log"
    target.write_bytes((FIX / "containerd-1.6.20-go1.19-sigusr1-raw.txt").read_bytes())
    ev, _ = run(target)
    d = ev.dumps[0]
    assert (d.process, d.pid) == ("containerd", 10304) and d.dump_time is not None
