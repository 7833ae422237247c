"""`iostat -x` text output (sysstat) -> DiskSample per device and report.

Columns are found by name from each `Device` header, so the column sets of several sysstat
releases are read (fixtures under tests/fixtures/node/iostat/):

- sysstat 12.x (Debian 12 / Ubuntu 22.04+): `r/s rkB/s rrqm/s %rrqm r_await rareq-sz w/s wkB/s
  ... d/s ... f/s f_await aqu-sz %util` (iostat-x-sysstat-12.6-real.txt, captured here with
  `iostat -x -t 1 2`);
- sysstat 11.6 / 12.0-12.2 (Ubuntu 18.04/20.04): `r/s w/s rkB/s wkB/s rrqm/s wrqm/s %rrqm %wrqm
  r_await w_await aqu-sz rareq-sz wareq-sz svctm %util` (iostat-x-sysstat-12.2.txt);
- sysstat 10.x / 11.0-11.5 (CentOS 7): `Device: rrqm/s wrqm/s r/s w/s rkB/s wkB/s avgrq-sz
  avgqu-sz await r_await w_await svctm %util` (iostat-x-sysstat-10.1-centos7.txt);
- sysstat 9.x without `-k`: sectors (`rsec/s wsec/s`) and a single `await`; the combined
  await is used for both r_await and w_await (iostat-x-sysstat-9-sectors.txt);
- `-m` (`wMB/s`) is converted to kB/s.

Report times come from `-t` lines: `11/28/26 15:42:19` (C locale), `11/28/2026 03:42:19 PM`
(en_US) or ISO (`S_TIME_FORMAT=ISO`: `2026-11-28T15:42:19+0000`); month/day order is assumed
(dd/mm locales cannot be told apart). Without `-t` samples have no time. The first report
of a run is the average since boot, so it gets no `start` and is noted in the report.
`avg-cpu` blocks are skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import DiskSample, Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.psi import parse_stamp

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "iostat"

_BANNER = lazy_re(r"^Linux \S+ \(([^)]*)\)\s+(\S+)\s+_\S+_\s+\((\d+) CPU\)")
_TIME_US = lazy_re(r"^(\d{2})/(\d{2})/(\d{2}|\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: ?([AP]M))?$")
_TIME_ISO = lazy_re(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{4}|Z)?$")
_DEVICE_HEADER = lazy_re(r"^Device:?\s+(.*)$")


def sniff(lines: list[str]) -> float:
    score = 0.0
    for ln in lines[:60]:
        if _BANNER.match(ln):
            score = max(score, 0.4)
        m = _DEVICE_HEADER.match(ln)
        if m and "%util" in m.group(1) and ("w/s" in m.group(1)):
            return 0.95
    return score


def _report_time(text: str, ctx: ParseContext) -> datetime | None:
    m = _TIME_US.match(text)
    if m:
        month, day, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if year < 100:
            year += 2000
        hour = int(m.group(4))
        if m.group(7) == "PM" and hour < 12:
            hour += 12
        elif m.group(7) == "AM" and hour == 12:
            hour = 0
        try:
            naive = datetime(year, month, day, hour, int(m.group(5)), int(m.group(6)))
        except ValueError:
            return None
        return naive.replace(tzinfo=ctx.time.zone).astimezone(UTC)
    if _TIME_ISO.match(text):
        return parse_stamp(text, ctx)
    return None


def _num(value: str) -> float | None:
    try:
        return float(value.replace(",", "."))
    except ValueError:
        return None


def parse(source: Source, ctx: ParseContext) -> None:
    columns: list[str] | None = None
    report_ts: datetime | None = None
    prev_report_ts: datetime | None = None
    reports = 0
    report_index = 0  # index of the report the current Device block belongs to
    in_cpu = False
    unread = Unread(ctx.report)
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        text = raw.strip()
        if not text:
            columns = None
            in_cpu = False
            continue
        if _BANNER.match(text):
            reports = 0
            prev_report_ts = report_ts = None
            continue
        ts = _report_time(text, ctx)
        if ts is not None:
            prev_report_ts, report_ts = report_ts, ts
            continue
        if text.startswith("avg-cpu:"):
            in_cpu = True
            continue
        if in_cpu:
            in_cpu = False
            continue
        m = _DEVICE_HEADER.match(text)
        if m:
            columns = m.group(1).split()
            reports += 1
            report_index = reports
            continue
        if columns is None:
            unread(lineno, raw)
            continue
        parts = text.split()
        if len(parts) != len(columns) + 1:
            unread(lineno, raw)
            continue
        values = {col: _num(v) for col, v in zip(columns, parts[1:], strict=True)}
        util = values.get("%util")
        w_s = values.get("w/s")
        if util is None or w_s is None:
            unread(lineno, raw)
            continue
        wkb = values.get("wkB/s")
        if wkb is None and values.get("wsec/s") is not None:
            wkb = values["wsec/s"] / 2  # type: ignore[operator]
        if wkb is None and values.get("wMB/s") is not None:
            wkb = values["wMB/s"] * 1024  # type: ignore[operator]
        r_await = values.get("r_await")
        w_await = values.get("w_await")
        if r_await is None and w_await is None and values.get("await") is not None:
            r_await = w_await = values["await"]
        aqu = values.get("aqu-sz", values.get("avgqu-sz"))
        first = report_index == 1
        ctx.evidence.disk_samples.append(
            DiskSample(
                start=None if first else prev_report_ts,
                end=report_ts,
                device=parts[0],
                util=util,
                r_await=r_await,
                w_await=w_await,
                w_per_s=w_s,
                wkb_per_s=wkb if wkb is not None else 0.0,
                aqu_sz=aqu,
                ref=Ref(source.display, lineno, quote(raw)),
            )
        )
        ctx.report.records += 1
    unread.warn()
    if reports >= 1:
        ctx.report.inferred.append("the first iostat report of a run averages since boot (no start time)")
