"""kubelet log parser: klog structured/legacy/multi-line, JSON logging, kubelet.INFO, framing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import sniff
from plegdoctor.parsers.logs import kubelet as kubelet_log
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "logs"


def parse(name: str, kind_mod=kubelet_log, **time_kw) -> tuple[Evidence, ParseContext]:
    ev = Evidence()
    time = TimeContext(**time_kw)
    ctx = None
    for src in iter_sources([str(FIX / name)]):
        ctx = ParseContext(ev, InputReport(src.display, kind_mod.KIND), time)
        kind_mod.parse(src, ctx)
    assert ctx is not None
    return ev, ctx


def ticks(ev: Evidence) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ev.relists.ts]


def events(ev: Evidence, kind: EventKind):
    return [e for e in ev.events if e.kind == kind]


def test_structured_klog_ticks_and_events():
    ev, ctx = parse("kubelet-klog-structured.log", year=2023)
    assert ticks(ev)[0] == datetime(2023, 6, 2, 5, 48, 5, 348117, tzinfo=UTC)
    assert len(ev.relists) == 7  # the V(4) "GenericPLEG" state-change line is not a tick
    # the two ticks around the 222 s stall keep their text for quoting; the others do not
    assert "05:48:07.352436" in ev.relists.texts[2]
    assert "05:51:49.669827" in ev.relists.texts[3]
    assert 0 not in ev.relists.texts
    unhealthy = events(ev, EventKind.PLEG_UNHEALTHY)
    forms = [(e.attrs["form"], e.attrs["last_seen_seconds"]) for e in unhealthy]
    assert forms == [
        ("structured", pytest.approx(180.049305)),
        ("node-condition", pytest.approx(180.467723)),
        ("structured", pytest.approx(185.049305)),
    ]
    assert unhealthy[0].ref.line == 10 and "Skipping pod synchronization" in unhealthy[0].ref.text
    cri = events(ev, EventKind.CRI_CALL_FAILED)
    assert [(e.attrs["method"], e.attrs["code"]) for e in cri] == [
        ("ListContainers", "DeadlineExceeded"),
        ("ContainerStatus", "Unavailable"),
    ]
    relist_err = events(ev, EventKind.RELIST_ERROR)
    assert relist_err[0].attrs["code"] == "DeadlineExceeded"
    assert [e.ref.line for e in events(ev, EventKind.NODE_NOT_READY)] == [11, 12]
    assert [e.ref.line for e in events(ev, EventKind.NODE_READY)] == [17]
    fin = events(ev, EventKind.CONTAINER_FINISHED)[0]
    assert fin.attrs["exit_code"] == 137 and fin.attrs["container_id"].startswith("8f71eadd")
    du = events(ev, EventKind.KUBELET_DU_KILLED)[0]
    assert du.attrs["seconds"] == pytest.approx(13.233134111) and du.attrs["killed"] is False
    assert len(events(ev, EventKind.EVENTED_PLEG_FALLBACK)) == 1
    levels = [(r.level, r.ref.line) for r in ev.log_records]
    assert levels == [
        ("warning", 6),
        ("error", 7),
        ("error", 8),
        ("error", 9),
        ("error", 10),
        ("error", 13),
        ("fatal", 22),
    ]
    assert ev.log_records[-1].fields["err"].startswith("failed to run Kubelet")
    assert ctx.report.unparsed == 0 and ctx.report.records == 22


def test_legacy_printf_forms():
    ev, _ = parse("kubelet-klog-legacy.log", year=2020)
    assert len(ev.relists) == 4
    un = events(ev, EventKind.PLEG_UNHEALTHY)
    assert [(e.attrs["form"], round(e.attrs["last_seen_seconds"], 6)) for e in un] == [
        ("legacy", 182.325658),
        ("node-condition", 182.355658),
        ("legacy", 187.325658),
    ]
    cri = events(ev, EventKind.CRI_CALL_FAILED)
    assert len(cri) == 1 and cri[0].attrs["method"] == "ListPodSandbox" and cri[0].attrs["code"] == "DeadlineExceeded"
    err = events(ev, EventKind.RELIST_ERROR)[0]
    assert err.attrs["error"].startswith("rpc error: code = DeadlineExceeded")
    assert len(events(ev, EventKind.NODE_NOT_READY)) == 2
    du = events(ev, EventKind.KUBELET_DU_KILLED)
    assert [e.attrs["killed"] for e in du] == [True, True]
    assert "signal: killed" in du[1].attrs["message"]


def test_multiline_values_are_joined():
    ev, ctx = parse("kubelet-klog-multiline.log", year=2023)
    assert len(ev.relists) == 2
    rec = ev.log_records[0]
    assert rec.fields["err"] == (
        'failed to "StartContainer" for "app" with CrashLoopBackOff: "back-off 5m0s restarting failed container=app"\n'
        "second line of the error"
    )
    assert rec.fields["pod"] == "default/web-5d9c7f6c8b-x2x7q" and rec.ref.line == 2
    un = events(ev, EventKind.PLEG_UNHEALTHY)
    assert len(un) == 1 and un[0].attrs["last_seen_seconds"] == pytest.approx(181.5) and un[0].ref.line == 6
    assert ctx.report.unparsed == 0


def test_kubelet_json_logging():
    ev, ctx = parse("kubelet-json.log")
    assert ticks(ev)[0] == datetime(2023, 6, 2, 5, 48, 6, 350695, tzinfo=UTC)
    assert len(ev.relists) == 3
    un = events(ev, EventKind.PLEG_UNHEALTHY)
    assert un[0].attrs["form"] == "json" and un[0].attrs["last_seen_seconds"] == pytest.approx(180.05)
    assert events(ev, EventKind.CRI_CALL_FAILED)[0].attrs["method"] == "ListContainers"
    assert ctx.time.reference_year == 2023


def test_kubelet_info_header_gives_the_year():
    ev, ctx = parse("kubelet.INFO", now=datetime(2030, 1, 1, tzinfo=UTC))
    assert ticks(ev)[0].year == 2023
    assert any("klog file header" in n for n in ctx.time.notes)
    assert len(ev.relists) == 4


def test_seed_excerpt_with_bare_identifier_and_single_space_pid():
    ev, _ = parse("kubelet-seed-excerpt.log", year=2023)
    got = ticks(ev)
    assert len(got) == 5
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(got)]
    assert max(gaps) == pytest.approx(42.317391)


@pytest.mark.parametrize(
    "name",
    [
        "kubelet-klog-structured.log",
        "kubelet-klog-legacy.log",
        "kubelet-json.log",
        "kubelet.INFO",
        "kubelet-seed-excerpt.log",
    ],
)
def test_sniffed_as_kubelet(name):
    kind, score = sniff((FIX / name).read_bytes())
    assert kind == "kubelet-log", (kind, score)


def test_zone_and_year_defaults_are_reported():
    _ev, ctx = parse("kubelet-klog-structured.log", now=datetime(2023, 12, 1, tzinfo=UTC))
    notes = " ".join(ctx.time.notes)
    assert "assumed UTC" in notes and "year" in notes


def test_tz_option_shifts_klog_stamps():
    from plegdoctor.timeutil import parse_tz

    ev, _ = parse("kubelet-klog-structured.log", year=2023, tz=parse_tz("+08:00"))
    assert ticks(ev)[0] == datetime(2023, 6, 1, 21, 48, 5, 348117, tzinfo=UTC)


def test_year_rollover_keeps_order(tmp_path):
    p = tmp_path / "k.log"
    p.write_text(
        'I1231 23:59:59.500000    1 generic.go:191] "GenericPLEG: Relisting"\n'
        'I0101 00:00:00.500000    1 generic.go:191] "GenericPLEG: Relisting"\n'
    )
    ev = Evidence()
    for src in iter_sources([str(p)]):
        kubelet_log.parse(src, ParseContext(ev, InputReport(src.display, "kubelet-log"), TimeContext(year=2023)))
    a, b = ticks(ev)
    assert (b - a).total_seconds() == pytest.approx(1.0) and b.year == 2024


def test_a_message_quoted_without_its_klog_header_is_read_without_a_time():
    """Issue threads quote the kubelet's message alone (containerd#5274): it is a symptom, with
    no place on the time axis, and no line is left unread."""
    assert sniff((FIX / "kubelet-bare-message.log").read_bytes())[0] == kubelet_log.KIND
    ev, ctx = parse("kubelet-bare-message.log")
    (e,) = events(ev, EventKind.PLEG_UNHEALTHY)
    assert e.ts is None and e.attrs["last_seen_seconds"] == pytest.approx(471.835147826)
    assert ctx.report.unparsed == 0 and ctx.report.records == 1


def test_prose_that_mentions_pleg_is_not_a_bare_message(tmp_path):
    p = tmp_path / "notes.log"
    p.write_text("we saw PLEG is not healthy: pleg was last seen active 3m0s ago on node 3\n")
    ev = Evidence()
    for src in iter_sources([str(p)]):
        ctx = ParseContext(ev, InputReport(src.display, kubelet_log.KIND), TimeContext())
        kubelet_log.parse(src, ctx)
    assert not events(ev, EventKind.PLEG_UNHEALTHY)


def test_klog_stamps_of_other_lines_follow_a_year_rollover(tmp_path):
    """Event lines get their stamp through a per-minute cache: it must give what the
    resolver gives, across New Year and an out-of-order line from before it."""
    msg = '"Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m0s ago"'
    stamps = ["1231 23:59:58.100000", "1231 23:59:59.200000", "0101 00:00:00.300000", "1231 23:59:59.900000"]
    stamps += ["0101 00:00:01.400000", "0101 00:00:02.500000"]
    p = tmp_path / "k.log"
    p.write_text("".join(f"E{s}    1 kubelet.go:2359] {msg}\n" for s in stamps))
    ev = Evidence()
    for src in iter_sources([str(p)]):
        kubelet_log.parse(src, ParseContext(ev, InputReport(src.display, "kubelet-log"), TimeContext(year=2023)))
    got = [e.ts for e in events(ev, EventKind.SKIPPING_POD_SYNC)]
    want = [
        datetime(2023, 12, 31, 23, 59, 58, 100000, tzinfo=UTC),
        datetime(2023, 12, 31, 23, 59, 59, 200000, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 0, 300000, tzinfo=UTC),
        datetime(2023, 12, 31, 23, 59, 59, 900000, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 1, 400000, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 2, 500000, tzinfo=UTC),
    ]
    assert got == want
