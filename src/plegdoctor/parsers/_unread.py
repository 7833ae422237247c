"""Counting the lines a parser could not read.

Every node parser counts each line it could not read in `InputReport.unparsed` and, at the
end, adds one warning `N unread line(s), first at line L: <quote>` so a report shows what
was skipped and where to look. Nothing but the first line's number and quote is kept.
"""

from __future__ import annotations

from plegdoctor.model import InputReport

QUOTE = 120


class Unread:
    """Counts unread lines into `report.unparsed`; `warn()` adds the one summary warning."""

    __slots__ = ("count", "first_line", "first_text", "report")

    def __init__(self, report: InputReport) -> None:
        self.report = report
        self.count = 0
        self.first_line = 0
        self.first_text = ""

    def __call__(self, lineno: int, raw: str) -> None:
        self.report.unparsed += 1
        self.count += 1
        if self.count == 1:
            self.first_line = lineno
            text = raw.strip()
            self.first_text = text if len(text) <= QUOTE else text[: QUOTE - 3] + "..."

    def warn(self) -> None:
        if self.count:
            self.report.warn(f"{self.count} unread line(s), first at line {self.first_line}: {self.first_text}")
