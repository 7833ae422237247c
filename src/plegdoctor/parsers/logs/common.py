"""Shared pieces of the log formats: journald framing, klog headers, logrus fields, Go
string unquoting and durations, year/zone resolution of year-less stamps.

The engine (`scanner`, `engine`, `split`) and the format modules (`kubelet`, `containerd`,
`dockerd`, `kernel`, `journal`) import from here; this module imports none of them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

# the private two: tests/test_linear_regex.py checks the fast path against them
import msgspec

from plegdoctor.goroutines.gostrings import _GO_ESCAPE, GO_QUOTED, _go_escape, go_unquote  # noqa: F401

if TYPE_CHECKING:
    from plegdoctor.timeutil import TimeContext

MONTHS = {
    m: i + 1 for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))
}

# ---------------------------------------------------------------------------------------
# Go string literals (strconv.Quote output, used by klog structured values and logrus)

# go_unquote and GO_QUOTED: the one implementation, plegdoctor.goroutines.gostrings (imported above)


# ---------------------------------------------------------------------------------------
# Durations


# matched at a position (never searched: a search from every digit of a long run is
# quadratic); possessive, as digits, the dot and the units never overlap
_DUR_PART = re.compile(r"([0-9]++(?:\.[0-9]++)?)(ns|us|µs|ms|s|m|h)")
_DUR_SCALE = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_GO_DURATION = (1 << 63) / 1e9  # a Go time.Duration is an int64 of nanoseconds (~292 years)


def parse_go_duration(text: str) -> float | None:
    """`3m2.325658446s`, `1h0m5s`, `500ms` -> seconds; None if it is not a Go duration
    (including one longer than Go's int64 nanoseconds allow)."""
    pos = 0
    total = 0.0
    n = len(text)
    match = _DUR_PART.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _DUR_SCALE[m.group(2)]
        pos = m.end()
    return total if pos > 0 and total <= MAX_GO_DURATION else None


# ---------------------------------------------------------------------------------------
# journald framing (journalctl -o short, short-precise, short-iso, short-iso-precise,
# short-monotonic, syslog files, and the bare `ident[pid]: msg` of copied excerpts)

_JOURNAL_RE = re.compile(
    r"(?:"
    r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|\[ *(?P<mono>\d+\.\d+)\]"
    r") (?P<host>\S+) (?P<ident>[^\s\[\]:]+)(?:\[(?P<pid>\d{1,20})\])?: ?"
    r"|(?P<bident>[A-Za-z_][\w.\-]*)\[(?P<bpid>\d{1,20})\]: ?"
)


class JournalFrame(msgspec.Struct, frozen=True):
    """The journald prefix of a line. `ts` is set when the frame carries a full date
    (short-iso*); `local` is (month, day, h, m, s, us) for year-less short stamps."""

    ident: str
    pid: int | None
    host: str | None
    ts: datetime | None
    local: tuple[int, int, int, int, int, int] | None
    end: int  # offset of the message in the line


def parse_iso(text: str) -> datetime | None:
    """RFC 3339 / ISO 8601 with optional fraction (up to ns) and zone; naive -> None zone."""
    t = text.replace(" ", "T", 1)
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dot = t.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(t) and t[end].isdigit():
            end += 1
        frac = t[dot + 1 : end][:6].ljust(6, "0")
        t = t[: dot + 1] + frac + t[end:]
    if len(t) >= 5 and t[-5] in "+-" and t[-4:].isdigit():
        t = t[:-2] + ":" + t[-2:]  # +0800 -> +08:00 (older systemd strftime %z)
    try:
        return datetime.fromisoformat(t)
    except ValueError:
        return None


def parse_journal_frame(line: str) -> JournalFrame | None:
    m = _JOURNAL_RE.match(line)
    if m is None:
        return None
    mon, day, hms, frac, iso, _mono, host, ident, pid, bident, bpid = m.groups()
    if bident is not None:
        return JournalFrame(bident, int(bpid), None, None, None, m.end())
    ts = None
    local = None
    if iso:
        ts = parse_iso(iso)
    elif mon:
        month = MONTHS.get(mon)
        if month is None:
            return None
        h, mi, s = hms.split(":")
        local = (month, int(day), int(h), int(mi), int(s), int((frac or "0")[:6].ljust(6, "0")))
    return JournalFrame(ident, int(pid) if pid else None, host, ts, local, m.end())


def frame_parts(line: str) -> tuple[str, int | None, int, datetime | None] | None:
    """(ident, pid, end, ts) of `parse_journal_frame(line)`, or None when it is None: the
    hot path of the log dispatcher, without the frame object and the local stamp's ints."""
    m = _JOURNAL_RE.match(line)
    return None if m is None else frame_of(m, m.end())


def frame_of(m: re.Match[str], end: int) -> tuple[str, int | None, int, datetime | None] | None:
    """`frame_parts` of a match of `_JOURNAL_RE` (or of `FRAMED_KLOG_RE`, whose first 11
    groups are the same) ending at `end`."""
    mon, iso, ident, pid, bident, bpid = m.group(1, 5, 8, 9, 10, 11)
    if bident is not None:
        return bident, int(bpid), end, None
    ts = None
    if mon is not None:
        if mon not in MONTHS:
            return None
    elif iso:
        ts = parse_iso(iso)
    return ident, int(pid) if pid else None, end, ts


_head_frames: tuple[list[str], list[JournalFrame | None]] | None = None


def head_frames(lines: list[str]) -> list[JournalFrame | None]:
    """`parse_journal_frame` of the first 400 lines of a head; the sniffers of the log
    kinds all ask for them, so they are parsed once per head."""
    global _head_frames
    cached = _head_frames
    if cached is not None and cached[0] is lines and len(cached[1]) == min(len(lines), 400):
        return cached[1]
    frames = [parse_journal_frame(line) for line in lines[:400]]
    _head_frames = (lines, frames)
    return frames


# ---------------------------------------------------------------------------------------
# klog header

KLOG_RE = re.compile(
    r"(?P<sev>[IWEF])(?P<mon>\d\d)(?P<day>\d\d) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)\.(?P<us>\d{6}) +"
    r"(?P<pid>[0-9]{1,10}+) (?P<file>[^ :\]]++):(?P<line>[0-9]{1,10}+)\] ?"
)
KLOG_SEVERITY = {"I": "info", "W": "warning", "E": "error", "F": "fatal"}
# A journald frame and the klog header after it, in one match (the hot path of a kubelet
# journal): the frame is an atomic group, so it is the frame `_JOURNAL_RE` alone matches and
# the klog part is `KLOG_RE` matched at its end (or absent). Groups 1-11 are the frame's
# (see `frame_of`), FRAMED_KLOG_SEV.. those of KLOG_RE in its order.
FRAMED_KLOG_RE = re.compile(
    r"(?>" + _JOURNAL_RE.pattern + r")(?:" + re.sub(r"\(\?P<\w+>", "(", KLOG_RE.pattern) + r")?"
)
FRAMED_KLOG_SEV = _JOURNAL_RE.groups + 1  # the group of the klog severity letter
_KLOG_TS_B = re.compile(rb"[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) ")


class KlogHeader(msgspec.Struct, frozen=True):
    severity: str  # info|warning|error|fatal
    month: int
    day: int
    hour: int
    minute: int
    second: int
    micro: int
    pid: int
    file: str
    line: int
    end: int  # offset of the body


def parse_klog_header(text: str, pos: int = 0) -> KlogHeader | None:
    m = KLOG_RE.match(text, pos)
    if m is None:
        return None
    return KlogHeader(
        KLOG_SEVERITY[m.group("sev")],
        int(m.group("mon")),
        int(m.group("day")),
        int(m.group("h")),
        int(m.group("m")),
        int(m.group("s")),
        int(m.group("us")),
        int(m.group("pid")),
        m.group("file"),
        int(m.group("line")),
        m.end(),
    )


# ---------------------------------------------------------------------------------------
# logrus text format: time="..." level=info msg="..." key=value ... (keys sorted after msg)

_LOGRUS_KV = re.compile(r"([^\s=\"]+)=(" + GO_QUOTED + r"|[^\s\"]*)")


def parse_logrus_text(text: str) -> dict[str, str] | None:
    """Fields of a logrus text line (values unquoted), or None if it is not one."""
    if not (text.startswith("time=") or text.startswith("level=")):
        return None
    out: dict[str, str] = {}
    pos = 0
    n = len(text)
    match = _LOGRUS_KV.match
    while pos < n:
        while pos < n and text[pos] == " ":
            pos += 1
        if pos >= n:
            break
        m = match(text, pos)
        if m is None:
            # not key=value: tolerate trailing garbage, but a line must have level and msg
            break
        v = m.group(2)
        if v.startswith('"') and len(v) >= 2:
            v = go_unquote(v[1:-1])
        out[m.group(1)] = v
        pos = m.end()
    if "level" not in out:
        return None
    return out


LOGRUS_LEVELS = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "fatal": "fatal",
    "panic": "fatal",
}
WARNING_PLUS = frozenset(("warning", "error", "fatal"))


# ---------------------------------------------------------------------------------------
# Year-less stamps


class StampResolver:
    """Year-less, zone-less local stamps -> epoch seconds, fast.

    Caches the UTC epoch of each local (month, day, hour) so a tick costs a dict lookup
    and some arithmetic. The year comes from `TimeContext` (--year, learned full dates,
    file mtime, now); a month that goes backwards by more than six months (December ->
    January) moves to the next year, so a log that spans New Year stays ordered.
    """

    __slots__ = ("_cache", "_last_month", "_mtime", "shift", "time")

    def __init__(self, time: TimeContext, mtime: float | None) -> None:
        self.time = time
        self._mtime = mtime
        self._cache: dict[tuple[int, int, int], float | None] = {}
        self._last_month = 0
        self.shift = 0

    def fresh(self) -> StampResolver:
        """A resolver with the same year/zone sources and no history (a file part read apart)."""
        return StampResolver(self.time, self._mtime)

    def epoch(self, month: int, day: int, hour: int, minute: int, second: int, micro: int) -> float | None:
        last = self._last_month
        if month != last:
            if last and month < last - 6:
                self.shift += 1
                self._cache.clear()
            elif last and month > last + 6 and self.shift > 0:
                self.shift -= 1  # out-of-order line from before the rollover
                self._cache.clear()
            self._last_month = month
        key = (month, day, hour)
        base = self._cache.get(key, -1.0)
        if base == -1.0:
            base = self._hour_base(month, day, hour)
            self._cache[key] = base
        if base is None:
            return None
        return base + minute * 60 + second + micro / 1e6

    @property
    def last_month(self) -> int:
        """The month of the latest stamp resolved (0 before the first)."""
        return self._last_month

    def _hour_base(self, month: int, day: int, hour: int) -> float | None:
        year = self.time.year_for(month, self._mtime) + self.shift
        try:
            local = datetime(year, month, day, hour, tzinfo=self.time.zone)
        except ValueError:
            return None
        return local.timestamp()

    def dt(self, month: int, day: int, hour: int, minute: int, second: int, micro: int) -> datetime | None:
        e = self.epoch(month, day, hour, minute, second, micro)
        return None if e is None else datetime.fromtimestamp(e, UTC)


def epoch_to_dt(ts: float | None) -> datetime | None:
    """Epoch seconds -> aware UTC; None when absent or outside datetime's range (a stamp of
    year 55260 or 1e300 in a hostile log must not end the parse)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def realtime_to_dt(value: object) -> datetime | None:
    """journald `__REALTIME_TIMESTAMP` (decimal microseconds, a string) -> aware UTC, or None."""
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        return epoch_to_dt(int(value) / 1e6)
    return None


def to_utc(ts: datetime | None, time: TimeContext) -> datetime | None:
    """A parsed full stamp -> aware UTC (naive stamps take the --tz/assumed zone)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=time.zone)
    return ts.astimezone(UTC)
