"""Time handling: klog and journald `short` stamps carry no year and no zone.

`TimeContext` resolves such stamps to aware UTC datetimes. The year comes from, in order:
`--year`; a reference year learned from evidence with full dates (containerd RFC 3339
stamps, journald `-o json`/`short-iso`), see `learn()`; the source file's mtime (a month
later than the mtime's month means the previous year); else the current year. The zone
is `--tz` or UTC. Every inference is recorded once so the report can say what it assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from plegdoctor.errors import UserError


def parse_tz(value: str | None) -> tzinfo | None:
    """`UTC`, `+08:00`, `-0500`, or an IANA name like `Asia/Shanghai`."""
    if value is None:
        return None
    v = value.strip()
    if v.upper() in ("UTC", "Z", "GMT"):
        return UTC
    if v[:1] in "+-" and len(v) >= 3:
        digits = v[1:].replace(":", "")
        if digits.isdigit() and len(digits) in (2, 4):
            hours = int(digits[:2])
            minutes = int(digits[2:4] or 0)
            if hours <= 14 and minutes < 60:
                from datetime import timezone

                sign = 1 if v[0] == "+" else -1
                return timezone(sign * timedelta(hours=hours, minutes=minutes))
        raise UserError(f"--tz: cannot parse offset {value!r} (use +08:00 or an IANA name)")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only for an IANA name (start-up)

    try:
        return ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"--tz: unknown time zone {value!r}") from None


def _offset_name(tz: tzinfo) -> str:
    off = datetime.now(UTC).astimezone(tz).utcoffset() or timedelta(0)
    if not off:
        return "UTC"
    sign = "+" if off >= timedelta(0) else "-"
    mins = abs(int(off.total_seconds())) // 60
    return f"UTC{sign}{mins // 60:02d}:{mins % 60:02d}"


@dataclass
class TimeContext:
    year: int | None = None  # --year
    tz: tzinfo | None = None  # --tz
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    reference_year: int | None = None  # learned from full-date evidence
    learned_tz: tzinfo | None = None  # zone learned from full-date evidence (offset stamps)
    notes: list[str] = field(default_factory=list)
    _noted: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.notes.append(text)

    @property
    def zone(self) -> tzinfo:
        if self.tz is None:
            if self.learned_tz is not None:
                self.note(
                    f"time zone {_offset_name(self.learned_tz)} for zone-less stamps, from fully dated evidence "
                    "(set --tz to change)"
                )
                return self.learned_tz
            self.note("time zone of zone-less stamps assumed UTC (set --tz to change)")
            return UTC
        return self.tz

    def learn(self, ts: datetime, *, zone: bool = False) -> None:
        """Remember the year of a fully dated record (first one wins) and, when `zone` is
        set because the stamp was written with the writer's own offset (RFC 3339 logrus
        time, journalctl short-iso), that offset: the node's local zone, which zone-less
        klog/journald stamps of the same node share."""
        if self.reference_year is None:
            self.reference_year = ts.year
        if zone and self.learned_tz is None and ts.tzinfo is not None and ts.utcoffset() is not None:
            self.learned_tz = ts.tzinfo

    def learn_offset(self, offset: timedelta, source: str) -> None:
        """Remember a zone offset inferred by comparing local and absolute stamps."""
        if self.learned_tz is None:
            from datetime import timezone

            self.learned_tz = UTC if not offset else timezone(offset)
            self.note(f"time zone {_offset_name(self.learned_tz)} inferred from {source}")

    def year_for(self, month: int, mtime: float | None) -> int:
        if self.year is not None:
            return self.year
        if self.reference_year is not None:
            self.note(f"year {self.reference_year} for year-less stamps, from fully dated evidence")
            return self.reference_year
        if mtime is not None:
            m = datetime.fromtimestamp(mtime, UTC)
            year = m.year - 1 if month > m.month else m.year
            self.note(f"year {year} for year-less stamps, from file modification time (set --year to change)")
            return year
        self.note(f"year {self.now.year} for year-less stamps assumed (set --year to change)")
        return self.now.year

    def resolve(
        self,
        month: int,
        day: int,
        hour: int,
        minute: int,
        second: int,
        micro: int,
        mtime: float | None = None,
    ) -> datetime | None:
        """A year-less, zone-less local stamp -> aware UTC datetime (None if invalid)."""
        try:
            local = datetime(self.year_for(month, mtime), month, day, hour, minute, second, micro, tzinfo=self.zone)
        except ValueError:
            return None
        return local.astimezone(UTC)


# ----------------------------------------------------------------------------------------
# Durations for people


def format_seconds(value: float | None) -> str:
    """The one formatter of durations, for reports and findings alike: `2.0 h` (from 3600 s),
    `2.5 min` (from 120 s), `42 s` (from 10 s), `3.2 s`, `350 ms` (below 1 s); `-` for None."""
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 10:
        return f"{value:.0f} s"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value * 1000:.0f} ms"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str, name: str) -> float:
    """A positive duration option: `90s`, `500ms`, `5m`, `1h30m`, `2d`, or a bare number of
    seconds (spaces ignored); a UserError naming the option `name` otherwise. The one parser
    of duration options (watch, fleet)."""
    text = "".join(value.split())
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        seconds = float(text)
    else:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise UserError(f"{name}: cannot parse {value!r} (e.g. 1s, 500ms, 5m, 1h30m, 2d)")
        seconds = sum(float(n) * _DURATION_UNIT[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"{name} must be positive, not {value!r}")
    return seconds
