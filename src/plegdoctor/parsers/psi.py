"""Pressure stall information (PSI): /proc/pressure/* and cgroup v2 `*.pressure` files.

Accepted variants (fixtures under tests/fixtures/node/psi/):

- a single snapshot of one file: `some avg10=.. avg60=.. avg300=.. total=..` and, except for
  cpu on kernels < 5.13, a `full ...` line (psi-io-snapshot-real.txt, psi-cpu-some-only.txt);
- `grep . /proc/pressure/*` output, each line prefixed by its path and a colon
  (psi-grep-all.txt);
- `tail -n +1 /proc/pressure/*` / `head` output with `==> /proc/pressure/io <==` headers
  (psi-tail-headers.txt);
- a series in the pleg-doctor sample format (below), several snapshots with timestamps
  (psi-series-pleg-doctor.txt), or with `# 2026-...` / bare ISO / `date` output lines between
  snapshots as a shell loop writes them (psi-series-date-loop.txt);
- lines prefixed by an ISO-8601 or epoch time (`ts`-style, psi-series-prefixed.txt);
- cgroup v2 `io.pressure` / `memory.pressure` / `cpu.pressure` (scope = the cgroup path).

The resource (io, memory, cpu, irq) and scope (`node` or the cgroup path) come from the file
or archive member name when it names one (`io`, `io.pressure`, `.../pressure/io`,
`psi-io.txt`), else from the nearest `==>`/sample header naming a file.

Sample series format (written by pleg-doctor's own `collect` / `watch`, read by the psi,
diskstats, meminfo and vmstat parsers; `split_series` implements it):

    # pleg-doctor sample 2026-11-28T14:29:18.123456Z /proc/pressure/io
    some avg10=0.25 avg60=0.67 avg300=0.31 total=1828717
    full avg10=0.25 avg60=0.66 avg300=0.30 total=1735983
    # pleg-doctor sample 2026-11-28T14:29:19.124002Z /proc/pressure/io
    (and so on, one block per sample)

i.e. a header line `# pleg-doctor sample <RFC 3339 time with zone> [<path read>]` followed by
the file content verbatim. The path is optional; the time is the moment the file was read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

import msgspec

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import PressureSample, Ref, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "psi"

RESOURCES = ("io", "memory", "cpu", "irq")

# ----------------------------------------------------------------------------------------
# Shared sample-series framing (used by diskstats, meminfo, vmstat too)

_ISO = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?"
_EPOCH = r"\d{10}(?:\.\d+)?"
_STAMP = rf"(?:{_ISO}|{_EPOCH})"
_TAIL_HEADER = lazy_re(r"^==> (.+) <==$")
# `# pleg-doctor sample <time> [path]`, `# <time> [path]`, `=== <time> ===`
_HASH_HEADER = lazy_re(rf"^(?:#+|=+|-{{3,}})\s*(?:pleg-doctor\s+sample\s+)?({_STAMP})(?:\s+([^=\s]\S*))?\s*=*$")
_BARE_STAMP = lazy_re(rf"^({_STAMP})$")
# `date` default output in the C locale: `Fri Nov 28 14:29:18 UTC 2026`
_DATE_CMD = lazy_re(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) "
    r"(\d{2}):(\d{2}):(\d{2})(?: ([A-Z]{1,5}|[+-]\d{4}))? (\d{4})$"
)
# A time prefix on a data line: `2026-11-28T14:29:18Z some avg10=...` or `[1764340158.1] ...`
_PREFIX = lazy_re(rf"^\[?({_STAMP})\]?\s+(\S.*)$")
_MONTHS = {
    m: i + 1 for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))
}


def parse_stamp(text: str, ctx: ParseContext | None = None) -> datetime | None:
    """ISO-8601 (with or without zone; `,` or `.` fractions up to ns) or epoch seconds ->
    aware UTC datetime. Zone-less stamps use the context's zone (noted in the report)."""
    text = text.strip()
    if re.fullmatch(_EPOCH, text):
        return datetime.fromtimestamp(float(text), UTC)
    m = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z| ?UTC|[+-]\d{2}:?\d{2})?", text
    )
    if not m:
        return None
    frac = (m.group(7) or "0")[:6].ljust(6, "0")
    zone = m.group(8)
    try:
        y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
        naive = datetime(y, mo, d, h, mi, sec, int(frac))
    except ValueError:
        return None
    if zone is None:
        tz = ctx.time.zone if ctx is not None else UTC
        return _to_utc(naive, tz)
    zone = zone.strip()
    if zone in ("Z", "UTC"):
        return naive.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    from datetime import timedelta, timezone

    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:  # `+5800` (found by fuzzing) is no zone
        return None
    return _to_utc(naive, timezone(sign * timedelta(hours=hours, minutes=minutes)))


def _to_utc(naive: datetime, tz: tzinfo) -> datetime | None:
    """`naive` in `tz`, as UTC; None at the ends of datetime's range (year 1 at +01:00)."""
    try:
        return naive.replace(tzinfo=tz).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _date_cmd(m: re.Match[str], ctx: ParseContext | None) -> datetime | None:
    month = _MONTHS[m.group(1)]
    zone = m.group(6)
    try:
        naive = datetime(int(m.group(7)), month, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)))
    except ValueError:
        return None
    if zone in ("UTC", "GMT", "Z"):
        return naive.replace(tzinfo=UTC)
    if zone and zone[0] in "+-":
        return parse_stamp(naive.strftime("%Y-%m-%dT%H:%M:%S") + zone, ctx)
    if ctx is not None:
        if zone:
            ctx.time.note(f"`date` zone {zone} is ambiguous; read as the --tz zone")
        return _to_utc(naive, ctx.time.zone)
    return naive.replace(tzinfo=UTC)


class SeriesLine(msgspec.Struct, frozen=True):
    """A data line of a sample series: its time (header or prefix), the file it came from
    (header or input name), and the block number (incremented at each header)."""

    lineno: int
    text: str  # without the time prefix
    raw: str  # the line as written (for quoting)
    ts: datetime | None
    name: str | None
    block: int


def key_lines(lines: list[str], line_re: re.Pattern[str], limit: int = 80) -> tuple[set[str], float]:
    """For the sniffers of `key value` files (meminfo, vmstat) written as samples: the keys
    (group 1 of `line_re`) of the first `limit` data lines, and the share of data lines that
    matched (sample headers and `#` remarks are not data)."""
    data = [ln for ln in lines if ln.strip() and header_of(ln) is None and not ln.startswith("#")][:limit]
    keys: set[str] = set()
    hits = 0
    for ln in data:
        m = line_re.match(ln.strip())
        if m:
            hits += 1
            keys.add(m.group(1))
    return keys, (hits / len(data) if data else 0.0)


def header_of(line: str, ctx: ParseContext | None = None) -> tuple[datetime | None, str | None] | None:
    """If `line` is a series header, (time or None, file name or None); else None."""
    s = line.strip()
    if not s:
        return None
    m = _TAIL_HEADER.match(s)
    if m:
        return None, m.group(1).strip()
    m = _HASH_HEADER.match(s)
    if m:
        return parse_stamp(m.group(1), ctx), m.group(2)
    m = _BARE_STAMP.match(s)
    if m:
        return parse_stamp(m.group(1), ctx), None
    m = _DATE_CMD.match(s)
    if m:
        return _date_cmd(m, ctx), None
    return None


def split_series(source: Source, ctx: ParseContext) -> Iterator[SeriesLine]:
    """Data lines of `source` with their time and file name (see the module docstring).
    Headers and blank lines are consumed; `path:` prefixes (grep output) stay in `text`."""
    ts: datetime | None = None
    name: str | None = None
    block = 0
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        head = header_of(raw, ctx)
        if head is not None:
            hts, hname = head
            block += 1
            if hts is not None:
                ts = hts
            if hname is not None:
                name = hname  # a time-only header keeps the last name (a loop over one file)
            continue
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        line_ts = ts
        m = _PREFIX.match(text)
        if m:
            pts = parse_stamp(m.group(1), ctx)
            if pts is not None:
                line_ts = pts
                text = m.group(2)
        yield SeriesLine(lineno, text, raw, line_ts, name, block)


def member_name(display: str) -> str:
    """The innermost file name of a display path (`bundle.tgz:proc/pressure/io` -> member)."""
    return display.rsplit(":", 1)[-1] if ":" in display and not display.startswith(":") else display


# ----------------------------------------------------------------------------------------
# PSI proper

_PSI_LINE = lazy_re(
    r"^(?:(?P<path>\S+?):)?(?P<kind>some|full) avg10=(?P<a10>[\d.]+) avg60=(?P<a60>[\d.]+) "
    r"avg300=(?P<a300>[\d.]+) total=(?P<total>\d+)\s*$"
)
_NAMED_RESOURCE = lazy_re(r"(?:^|[^a-z])(io|memory|mem|cpu|irq)(?:[^a-z]|$)")


def resource_and_scope(name: str | None) -> tuple[str | None, str | None]:
    """(resource, scope) from a file name: `/proc/pressure/io` -> (io, node);
    `/sys/fs/cgroup/system.slice/containerd.service/io.pressure` -> (io,
    /system.slice/containerd.service); `psi-memory.txt` -> (memory, None)."""
    if not name:
        return None, None
    path = member_name(name).replace("\\", "/")
    base = path.rstrip("/").rsplit("/", 1)[-1]
    parent = path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""
    if base in RESOURCES and (parent.endswith("pressure") or not parent):
        return base, "node"
    m = re.fullmatch(r"(io|memory|cpu|irq)\.pressure", base)
    if m:
        scope = parent
        for marker in ("/sys/fs/cgroup", "sys/fs/cgroup", "cgroup"):
            idx = scope.find(marker)
            if idx >= 0:
                scope = scope[idx + len(marker) :]
                break
        scope = "/" + scope.strip("/") if scope.strip("/") else "/"
        # cgroup v1 hybrid hosts mount v2 at .../unified
        if scope.startswith("/unified"):
            scope = scope[len("/unified") :] or "/"
        return m.group(1), scope
    m = _NAMED_RESOURCE.search(base.lower())
    if m:
        res = "memory" if m.group(1) == "mem" else m.group(1)
        return res, ("node" if "cgroup" not in path else None)
    return None, None


_Line = tuple[tuple[float, float, float, float], Ref, datetime | None]  # values, ref, time of one some/full line


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only with a hit, and a hit is a line (or
    its part after a time prefix) that `_PSI_LINE` matches, which holds `avg10=`. The
    needle has no newline, so it is in the joined text only if it is in a line."""
    return "avg10=" not in "\n".join(lines)


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    data = [ln for ln in lines if ln.strip() and header_of(ln) is None]
    if not data:
        return 0.0
    hits = 0
    for ln in data[:40]:
        text = ln.strip()
        m = _PREFIX.match(text)
        if m:
            text = m.group(2)
        if _PSI_LINE.match(text):
            hits += 1
    ratio = hits / min(len(data), 40)
    return 0.95 if ratio >= 0.8 else (0.6 if ratio >= 0.4 else 0.0)


def parse(source: Source, ctx: ParseContext) -> None:
    default_res, default_scope = resource_and_scope(source.display)
    pending: dict[tuple[str, str, int], dict[str, _Line]] = {}
    order: list[tuple[str, str, int]] = []
    warned_unknown = False
    unread = Unread(ctx.report)

    def flush(key: tuple[str, str, int]) -> None:
        item = pending.pop(key)
        some = item.get("some")
        if some is None:
            full_only = item.get("full")
            if full_only is not None:  # a `full` line without its `some` line
                unread(full_only[1].line, full_only[1].text)
            return
        full = item.get("full")
        s_vals, s_ref, s_ts = some
        f_vals = full[0] if full is not None else None
        ctx.evidence.pressure.append(
            PressureSample(
                ts=s_ts,
                resource=key[0],
                scope=key[1],
                some_avg10=s_vals[0],
                some_avg60=s_vals[1],
                some_avg300=s_vals[2],
                some_total_us=int(s_vals[3]),
                full_avg10=f_vals[0] if f_vals else None,
                full_avg60=f_vals[1] if f_vals else None,
                full_avg300=f_vals[2] if f_vals else None,
                full_total_us=int(f_vals[3]) if f_vals else None,
                ref=s_ref,
            )
        )
        ctx.report.records += 1

    for line in split_series(source, ctx):
        m = _PSI_LINE.match(line.text)
        if not m:
            unread(line.lineno, line.raw)
            continue
        res, scope = default_res, default_scope
        for candidate in (m.group("path"), line.name):
            if candidate:
                r2, s2 = resource_and_scope(candidate)
                if r2:
                    res, scope = r2, s2 or scope
                    break
        if res is None:
            if not warned_unknown:
                ctx.report.warn("PSI lines without a file name: resource unknown (name the file io, memory or cpu)")
                warned_unknown = True
            res = "unknown"
        scope = scope or "node"
        kind = m.group("kind")
        vals = (float(m.group("a10")), float(m.group("a60")), float(m.group("a300")), float(m.group("total")))
        if vals[3] == float("inf"):  # a total of hundreds of digits: int(inf) would raise
            unread(line.lineno, line.raw)
            continue
        key = (res, scope, line.block)
        item = pending.get(key)
        if item is not None and kind in item:
            flush(key)  # a repeated some/full line starts a new sample (prefixed series)
            order.remove(key)
            item = None
        if item is None:
            item = {}
            pending[key] = item
            order.append(key)
        item[kind] = (vals, Ref(source.display, line.lineno, quote(line.raw)), line.ts)
        # flush finished samples of earlier blocks so memory stays bounded on long series
        while order and order[0][2] < line.block - 1:
            flush(order.pop(0))
    for key in order:
        if key in pending:
            flush(key)
    unread.warn()
