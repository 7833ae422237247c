"""timeutil.format_seconds, the one duration formatter: its words at each unit boundary, and
that the reporters and the rule findings say the same words."""

from __future__ import annotations

import pytest

from plegdoctor.report.common import fmt_seconds as report_fmt
from plegdoctor.rules.signals import fmt_seconds as finding_fmt
from plegdoctor.timeutil import format_seconds


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "-"),
        (0.25, "250 ms"),
        (0.9994, "999 ms"),
        (1.0, "1.0 s"),
        (9.94, "9.9 s"),
        (10.0, "10 s"),
        (119.4, "119 s"),
        (120.0, "2.0 min"),
        (3599.0, "60.0 min"),
        (3600.0, "1.0 h"),
        (7200.0, "2.0 h"),
    ],
)
def test_words_at_each_boundary(seconds: float | None, words: str) -> None:
    assert format_seconds(seconds) == words


def test_findings_and_reports_say_the_same_words() -> None:
    values: list[float | None] = [None, -3.0, 0.0, 1e-4]
    values += [x / 100 for x in range(0, 130_000, 7)]  # 0 .. 1300 s in 0.07 s steps
    values += [3599.94, 3600.0, 86400.0 * 3, 1e9]
    for v in values:
        assert finding_fmt(v) == report_fmt(v) == format_seconds(v), v
    assert finding_fmt(7200.0) == "2.0 h" and finding_fmt(0.25) == "250 ms"  # not "120.0 min", "0.2 s"
