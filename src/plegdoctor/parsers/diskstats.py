"""/proc/diskstats: raw per-device I/O counters, one or more samples.

Accepted variants (fixtures under tests/fixtures/node/diskstats/):

- 14 columns: `major minor name` + 11 counters (kernels < 4.18) (diskstats-4.14-11fields.txt);
- 18 columns: + 4 discard counters (4.18 .. 5.4) (diskstats-4.19-15fields.txt);
- 20 columns: + 2 flush counters (5.5+) (diskstats-6.18-real-2samples.txt, captured here);
- old 2.6 partition lines with only 4 counters are counted as unparsed;
- a series: several snapshots separated by the sample headers described in
  plegdoctor.parsers.psi (`# pleg-doctor sample <time>`, `# <time>`, `==> file <==`, bare ISO
  or `date` lines), or lines prefixed by a time. Without times a repeated device starts a
  new snapshot but rates cannot be derived (a warning says so).

Devices whose counters are all zero (unused loop/ram devices) are skipped. Field meanings
and the iostat formulas that turn two samples into util/await/w/s are in facts.md §9.2 and
plegdoctor.analysis.pressure.derive_disk_samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import DiskStat, Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.psi import header_of, split_series

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "diskstats"

_LINE = lazy_re(r"^(\d+)\s+(\d+)\s+(\S+)\s+((?:\d{1,20}\s+){3,19}\d{1,20})\s*$")


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only with a hit, a stripped line that
    `_LINE` matches, so one whose first character is a `\\d` (Unicode Nd); `str.isdigit`
    is true for every such character (and for a few more: a wider test, still exact)."""
    return not any(ln.lstrip()[:1].isdigit() for ln in lines)


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    data = [ln for ln in lines if ln.strip() and header_of(ln) is None and not ln.startswith("#")]
    if not data:
        return 0.0
    hits = 0
    for ln in data[:40]:
        m = _LINE.match(ln.strip())
        if m and len(m.group(4).split()) in (11, 15, 17):
            hits += 1
    ratio = hits / min(len(data), 40)
    return 0.9 if ratio >= 0.8 else (0.5 if ratio >= 0.5 else 0.0)


def parse(source: Source, ctx: ParseContext) -> None:
    seen_in_snapshot: set[str] = set()
    last_block = -1
    snapshots = 0
    any_ts = False
    unread = Unread(ctx.report)
    for line in split_series(source, ctx):
        m = _LINE.match(line.text)
        if not m:
            unread(line.lineno, line.raw)
            continue
        counters = [int(x) for x in m.group(4).split()]
        if len(counters) not in (11, 15, 17):
            unread(line.lineno, line.raw)  # 2.6-era short partition lines
            continue
        device = m.group(3)
        if line.block != last_block or device in seen_in_snapshot:
            snapshots += 1
            seen_in_snapshot.clear()
            last_block = line.block
        seen_in_snapshot.add(device)
        if not any(counters):
            continue
        any_ts = any_ts or line.ts is not None
        has_flush = len(counters) == 17
        ctx.evidence.diskstats.append(
            DiskStat(
                ts=line.ts,
                device=device,
                reads=counters[0],
                sectors_read=counters[2],
                ms_reading=counters[3],
                writes=counters[4],
                sectors_written=counters[6],
                ms_writing=counters[7],
                in_flight=counters[8],
                io_ticks_ms=counters[9],
                weighted_ms=counters[10],
                flushes=counters[15] if has_flush else None,
                ms_flushing=counters[16] if has_flush else None,
                ref=Ref(source.display, line.lineno, quote(line.raw)),
            )
        )
        ctx.report.records += 1
    unread.warn()
    if snapshots > 1 and not any_ts:
        ctx.report.warn(
            f"{snapshots} diskstats snapshots without times: rates (util, w/s) cannot be derived; "
            "write a time before each snapshot (e.g. `date -Is`)"
        )
