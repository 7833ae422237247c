"""/proc/vmstat counters and `vmstat` command output -> (time, counters, Ref) in evidence.vmstat.

Accepted variants (fixtures under tests/fixtures/node/vmstat/):

- /proc/vmstat, `name value` lines (proc-vmstat-6.18-real.txt, captured here); only the
  counters the analysis uses are kept (WRITEBACK_KEYS);
- a /proc/vmstat series with the sample headers of plegdoctor.parsers.psi
  (proc-vmstat-series.txt);
- `vmstat [-t] [interval]` command output (procps): the `procs ... io ... cpu` table; kept as
  `procs_running`, `procs_blocked`, `bi`, `bo` (blocks/s), `cpu_wa` (% iowait); the `-t`
  timestamp column gives the time (vmstat-cmd-t-real.txt, captured here). The first row of
  `vmstat` averages since boot.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.psi import key_lines, parse_stamp, split_series

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "vmstat"

WRITEBACK_KEYS = frozenset(
    {
        "nr_dirty",
        "nr_writeback",
        "nr_writeback_temp",
        "nr_dirty_threshold",
        "nr_dirty_background_threshold",
        "nr_dirtied",
        "nr_written",
        "pgpgin",
        "pgpgout",
        "pswpin",
        "pswpout",
        "pgmajfault",
        "oom_kill",
        "allocstall_normal",
        "allocstall_movable",
        "pgscan_direct",
        "pgsteal_direct",
        "workingset_refault_file",
        "balance_dirty_pages",  # not a real counter on every kernel; kept when present
    }
)
_LINE = lazy_re(r"^([a-z][a-z0-9_]*) (\d{1,20})$")
_CMD_HEAD1 = lazy_re(r"^procs\s+-+memory-+")
_CMD_COLS = lazy_re(r"^\s*r\s+b\s+swpd\s+free\s+")


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only when a line matches `_CMD_HEAD1`
    (holds `procs`) or `_CMD_COLS` (holds `swpd`), or when one of the keys it looks for is
    group 1 of a `_LINE` match (the line holds the key: `nr_dirty` and `nr_free_pages` hold
    `nr_`). `_CMD_*` are tried on the first five lines only. No needle holds a newline, so
    each is in the joined text only if it is in a line."""
    head = "\n".join(lines[:5])
    if "procs" in head or "swpd" in head:
        return False
    text = "\n".join(lines)
    return "nr_" not in text and "pgpgout" not in text


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    for ln in lines[:5]:
        if _CMD_HEAD1.match(ln) or _CMD_COLS.match(ln):
            return 0.9
    names, ratio = key_lines(lines, _LINE)
    if not ({"nr_dirty", "pgpgout", "nr_free_pages"} & names):
        return 0.0
    return 0.9 if ratio >= 0.8 else 0.4


def parse(source: Source, ctx: ParseContext) -> None:
    head = source.head().decode("utf-8", "replace").lstrip()
    if _CMD_HEAD1.match(head) or _CMD_COLS.match(head):
        _parse_command(source, ctx)
        return
    current: dict[str, int] = {}
    ref: Ref | None = None
    ts: datetime | None = None
    block = -1
    seen: set[str] = set()
    unread = Unread(ctx.report)

    def flush() -> None:
        if current and ref is not None:
            ctx.evidence.vmstat.append((ts, dict(current), ref))
            ctx.report.records += 1
        current.clear()
        seen.clear()

    for line in split_series(source, ctx):
        m = _LINE.match(line.text)
        if not m:
            unread(line.lineno, line.raw)
            continue
        key = m.group(1)
        if line.block != block or key in seen:
            flush()
            ref = Ref(source.display, line.lineno, quote(line.raw))
            block = line.block
            ts = line.ts
        seen.add(key)
        if key in WRITEBACK_KEYS:
            current[key] = int(m.group(2))
            if key == "nr_dirty":
                ref = Ref(source.display, line.lineno, quote(line.raw))
    flush()
    unread.warn()


def _parse_command(source: Source, ctx: ParseContext) -> None:
    columns: list[str] = []
    unread = Unread(ctx.report)
    for lineno, raw in source.lines():
        text = raw.strip()
        if not text or _CMD_HEAD1.match(text):
            continue
        if _CMD_COLS.match(raw):
            columns = text.split()
            continue
        parts = text.split()
        if not columns or len(parts) < len(columns) or not parts[0].isdigit():
            unread(lineno, raw)
            continue
        values = dict(zip(columns, parts, strict=False))
        ts = None
        if len(parts) >= len(columns) + 1:
            # `-t` adds `YYYY-MM-DD HH:MM:SS` (its zone is the header's last word, e.g. UTC)
            stamp = " ".join(parts[-2:])
            ts = parse_stamp(stamp + (" UTC" if columns[-1] == "UTC" else ""), ctx)
        try:
            counters = {
                "procs_running": int(values["r"]),
                "procs_blocked": int(values["b"]),
                "bi": int(values["bi"]),
                "bo": int(values["bo"]),
                "cpu_wa": int(values["wa"]),
            }
        except (KeyError, ValueError):
            unread(lineno, raw)
            continue
        ctx.evidence.vmstat.append((ts, counters, Ref(source.display, lineno, quote(raw))))
        ctx.report.records += 1
    unread.warn()
