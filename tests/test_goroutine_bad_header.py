"""One bad goroutine header skips that goroutine, with a problem naming its line; the rest
of the dump is read (#10 item 3). Its frames are neither dropped into the goroutine before
it nor read as a headerless fragment."""

from __future__ import annotations

import io

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.goroutines import parse_dump_text
from plegdoctor.inputs import Source
from plegdoctor.model import InputReport
from plegdoctor.parsers import goroutine_dump
from plegdoctor.timeutil import TimeContext

GOOD_1 = "goroutine 1 [select]:\nmain.a(0x1)\n\t/a/a.go:1 +0x1\n"
BODY_2 = "main.b(0x1)\n\t/a/b.go:2 +0x1\n"
GOOD_3 = "goroutine 3 [chan receive]:\nmain.c(0x1)\n\t/a/c.go:3 +0x1\n"

BAD_ID = ["goroutine " + "9" * 5000 + " [running]:", "goroutine \u0661\u0662 [running]:", "goroutine \u00b2 [running]:"]
BAD_HEADER = [
    "goroutine 2x [running]:",
    "goroutine -2 [running]:",
    "goroutine 0x2 [running]:",
    "goroutine  [running]:",
    "goroutine 2 [running]",
    "goroutine 2 running]:",
    "goroutine 2 [running:",
    "goroutine 2\t[running]:",
]


def dump(header: str, blank: bool = True) -> str:
    sep = "\n" if blank else ""
    return GOOD_1 + sep + header + "\n" + BODY_2 + "\n" + GOOD_3


@pytest.mark.parametrize("blank", [True, False], ids=["blank-line-before", "no-blank-line"])
@pytest.mark.parametrize("header", BAD_ID + BAD_HEADER)
def test_a_bad_header_skips_only_its_goroutine(header: str, blank: bool) -> None:
    (d,) = parse_dump_text(dump(header, blank), source="x")
    assert [(g.id, g.funcs) for g in d.goroutines] == [(1, ("main.a",)), (3, ("main.c",))]
    what = "id" if header in BAD_ID else "header"
    line = 5 if blank else 4
    assert [(p.line, p.reason) for p in d.problems] == [(line, f"unreadable goroutine {what}: goroutine skipped")]
    assert d.problems[0].text == header[:200]


@pytest.mark.parametrize(
    "header, state",
    [
        ("goroutine 2 [running]:", "running"),
        ("goroutine 2 gp=0xc000002380 m=0 mp=0x1 [running]:", "running"),
        ("goroutine 2 [select, 5 minutes]:", "select"),
        ("goroutine 2 [running, " + "9" * 5000 + " minutes]:", "running, " + "9" * 5000 + " minutes"),
        ("goroutine 2 [[running]:", "[running"),
        ("goroutine 2 []:", ""),
    ],
)
def test_look_alike_headers_are_read(header: str, state: str) -> None:
    (d,) = parse_dump_text(dump(header), source="x")
    assert [g.id for g in d.goroutines] == [1, 2, 3]
    assert d.goroutines[1].state == state and d.goroutines[1].funcs == ("main.b",)
    assert not d.problems


@pytest.mark.parametrize(
    "line",
    ["goroutine profile: total 3", "goroutine running on other thread; stack unavailable", "goroutine 2 is blocked"],
)
def test_other_goroutine_lines_are_no_broken_header(line: str) -> None:
    (d,) = parse_dump_text(GOOD_1 + "\n" + line + "\n\n" + GOOD_3, source="x")
    assert [g.id for g in d.goroutines] == [1, 3]
    assert not any("unreadable goroutine" in p.reason for p in d.problems)


def test_the_parser_warns_naming_the_lines() -> None:
    text = GOOD_1 + "\n" + BAD_ID[0] + "\n" + BODY_2 + "\n" + BAD_HEADER[0] + "\n" + BODY_2 + "\n" + GOOD_3
    data = text.encode()
    ctx = ParseContext(Evidence(), InputReport("d.txt", goroutine_dump.KIND), TimeContext())
    goroutine_dump.parse(Source("d.txt", None, len(data), _stream=io.BytesIO(data)), ctx)
    (d,) = ctx.evidence.dumps
    assert [g.id for g in d.goroutines] == [1, 3]
    assert ctx.report.records == 2 and ctx.report.unparsed == 2
    assert any(w.startswith("2 line(s) of the") and w.endswith("(lines 5, 9)") for w in ctx.report.warnings)
