"""/proc/meminfo: Dirty and Writeback, one snapshot or a series (docs/facts.md §9.3).

Accepted variants (fixtures under tests/fixtures/node/meminfo/):

- one snapshot, `Key:   value kB` lines (meminfo-6.18-real.txt, captured here);
- a series with the sample headers of plegdoctor.parsers.psi (`# pleg-doctor sample <time>`,
  `# <time>`, bare ISO or `date` lines) between snapshots (meminfo-series-writeback.txt);
- `grep -E 'Dirty|Writeback' /proc/meminfo` style excerpts (only the keys present are used;
  a snapshot needs at least `Dirty:`).

A new snapshot starts at a header or when a key repeats. Values are in kB as printed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Meminfo, Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.psi import key_lines, split_series

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "meminfo"

# values of up to 20 digits (a 5000-digit one made int() raise; it is now an unread line)
_LINE = lazy_re(r"^(?:\S+?:)?([A-Za-z][A-Za-z0-9_()]*):\s+(\d{1,20})(?: kB)?\s*$")
_KNOWN = {"MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "Dirty", "Writeback", "SwapTotal"}


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only when `Dirty` is a key, i.e. group 1
    of `_LINE`, which a `:` follows; so some line holds `Dirty:` (no newline in the needle:
    in the joined text only if in a line)."""
    return "Dirty:" not in "\n".join(lines)


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    keys, ratio = key_lines(lines, _LINE)
    if "Dirty" not in keys:
        return 0.0
    return 0.95 if ratio >= 0.8 and len(keys & _KNOWN) >= 2 else (0.6 if ratio >= 0.5 else 0.0)


def parse(source: Source, ctx: ParseContext) -> None:
    current: dict[str, int] = {}
    dirty_ref: Ref | None = None
    ts: datetime | None = None
    block = -1
    unread = Unread(ctx.report)

    def flush() -> None:
        if "Dirty" in current and dirty_ref is not None:
            ctx.evidence.meminfo.append(
                Meminfo(
                    ts=ts,
                    dirty_kb=current["Dirty"],
                    writeback_kb=current.get("Writeback", 0),
                    mem_total_kb=current.get("MemTotal"),
                    mem_available_kb=current.get("MemAvailable"),
                    ref=dirty_ref,
                )
            )
            ctx.report.records += 1
        current.clear()

    for line in split_series(source, ctx):
        m = _LINE.match(line.text)
        if not m:
            unread(line.lineno, line.raw)
            continue
        key = m.group(1)
        if line.block != block or key in current:
            flush()
            dirty_ref = None
            block = line.block
            ts = line.ts
        if ts is None:
            ts = line.ts
        current[key] = int(m.group(2))
        if key == "Dirty":
            dirty_ref = Ref(source.display, line.lineno, quote(line.raw))
    flush()
    unread.warn()
