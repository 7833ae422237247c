"""journalctl output of several units: every output mode, dispatch by identifier, time inference."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import sniff
from plegdoctor.parsers.logs import journal as journald
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "logs"
# The same incident in every mode: the node is at UTC+08:00, so klog/containerd print 13:48 for 05:48 UTC.
FIRST_TICK = datetime(2023, 6, 2, 5, 48, 5, 348117, tzinfo=UTC)


def parse(name: str, **time_kw) -> tuple[Evidence, ParseContext]:
    ev = Evidence()
    ctx = None
    for src in iter_sources([str(FIX / name)]):
        ctx = ParseContext(ev, InputReport(src.display, "journal"), TimeContext(**time_kw))
        journald.parse(src, ctx)
    assert ctx is not None
    return ev, ctx


def _common_checks(ev: Evidence) -> None:
    assert len(ev.relists) == 4
    ticks = [datetime.fromtimestamp(t, UTC) for t in ev.relists.ts]
    assert ticks[0] == FIRST_TICK
    assert (ticks[2] - ticks[1]).total_seconds() == pytest.approx(223.319132, abs=1e-6)
    kinds = [str(e.kind) for e in ev.events]
    assert kinds.count("update-resources-start") == 1 and kinds.count("update-resources-end") == 1
    assert kinds.count("cri-call-failed") == 1 and kinds.count("pleg-unhealthy") == 1
    assert "hung-task" in kinds
    upd = next(e for e in ev.events if e.kind == EventKind.UPDATE_RESOURCES_START)
    assert upd.ts == datetime(2023, 6, 2, 5, 48, 6, 400000, tzinfo=UTC) and upd.process == "containerd"
    hung = next(e for e in ev.events if e.kind == EventKind.HUNG_TASK)
    assert hung.attrs == {"comm": "containerd-shim", "pid": 3601, "seconds": 120}


@pytest.mark.parametrize("mode", ["short", "short-precise", "short-iso", "short-iso-precise"])
def test_short_modes_learn_the_zone_from_containerd_or_iso_stamps(mode):
    ev, ctx = parse(f"journal-{mode}.log", year=2023)
    _common_checks(ev)
    assert any("UTC+08:00" in n for n in ctx.time.notes), ctx.time.notes
    assert sniff((FIX / f"journal-{mode}.log").read_bytes())[0] == "journal"


def test_short_iso_gives_the_year():
    ev, ctx = parse("journal-short-iso.log", now=datetime(2031, 1, 1, tzinfo=UTC))
    assert ctx.time.reference_year == 2023
    _common_checks(ev)


def test_cat_mode_routes_by_content():
    ev, ctx = parse("journal-cat.log", year=2023)
    _common_checks(ev)
    assert ctx.report.unparsed == 1  # "Started Session 5 of user root." has no owner


def test_json_mode_null_and_byte_array_messages():
    ev, ctx = parse("journal-json.log")
    _common_checks(ev)
    # the MESSAGE given as bytes (with an invalid byte) still produced the PLEG event
    un = next(e for e in ev.events if e.kind == EventKind.PLEG_UNHEALTHY)
    assert un.attrs["last_seen_seconds"] == pytest.approx(180.049305)
    warns = " ".join(ctx.report.warnings)
    assert "MESSAGE null" in warns and "--all" in warns and "1 from containerd" in warns
    assert "byte array" in warns
    # zone inferred by comparing __REALTIME_TIMESTAMP with the klog local stamp
    assert any("journald realtime vs klog" in n for n in ctx.time.notes)
    assert sniff((FIX / "journal-json.log").read_bytes())[0] == "journal"


def test_other_units_are_ignored_not_unparsed():
    _ev, ctx = parse("journal-short.log", year=2023)
    assert ctx.report.unparsed == 0 and ctx.report.records == 11


def test_explicit_tz_wins_over_learned_zone():
    from plegdoctor.timeutil import parse_tz

    ev, _ = parse("journal-short.log", year=2023, tz=parse_tz("UTC"))
    assert datetime.fromtimestamp(ev.relists.ts[0], UTC) == datetime(2023, 6, 2, 13, 48, 5, 348117, tzinfo=UTC)
