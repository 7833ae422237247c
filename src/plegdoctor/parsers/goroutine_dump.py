"""Goroutine dumps as evidence (KIND "goroutine-dump"): every framing the goroutine engine
reads (plegdoctor.goroutines.parse: raw SIGUSR1 / pprof debug=2 and debug=1 / panic text,
logrus one-line dumps, JSON lines, journald and time-of-day prefixes, pasted excerpts,
headerless fragments). Appends `Dump`s to
`ctx.evidence.dumps`; unparsable lines are counted in `ctx.report.unparsed`.

Sniffing: raw dumps (goroutine headers and frame lines dominate) and files that are only
one-line logrus/JSON dumps. A containerd log with an occasional one-line dump is left to
the containerd-log parser, which hands the dump to `parse_dump_text`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plegdoctor.goroutines.lines import AGGREGATED_STACK, BEGIN_MARK, find_header
from plegdoctor.goroutines.prefixes import strip_log_prefix
from plegdoctor.model import Event, EventKind, Ref

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "goroutine-dump"

_FRAME_FILE = re.compile(r"^\s*\S+\.(?:go|s|c):[0-9]+(?: \+0x[0-9a-f]+)?")


def _is_header(line: str) -> bool:
    s = line.rstrip()
    return "goroutine " in s and s.endswith("]:") and find_header(s) >= 0


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: each score needs a header or a collapsed line
    (`goroutine `), a one-line dump (`BEGIN_MARK`, which holds `goroutine `), a profile
    (`goroutine profile: total ` or a line starting `#\\t0x`, `# 0x`), an aggregated stack
    (`AGGREGATED_STACK` holds ` < `) or file lines (`_FRAME_FILE` holds `.go:`, `.s:` or `.c:`).
    `strip_log_prefix` returns a suffix of the line, so each needle (none holds a newline)
    is in the joined text of the first 2000 lines if it is in a stripped line. (`.go:` first:
    a kubelet or containerd log has it in its first line, and then nothing else is searched.)"""
    text = "\n".join(lines[:2000])
    return not any(n in text for n in (".go:", "goroutine ", "#\t0x", "# 0x", " < ", ".s:", ".c:"))


def sniff(lines: list[str]) -> float:
    """Raw dumps (headers and frame lines dominate, also behind journald / time-of-day
    prefixes), pprof debug=1 profiles and their grep excerpts, headerless stack fragments,
    and files that are only one-line logrus/JSON dumps."""
    if _cannot_score(lines):
        return 0.0
    nonblank = [strip_log_prefix(ln) for ln in lines[:2000] if ln.strip()]
    if not nonblank:
        return 0.0
    headers = sum(1 for ln in nonblank if _is_header(ln))
    files = sum(1 for ln in nonblank if _FRAME_FILE.match(ln))
    if headers and (headers + 2 * files) / len(nonblank) > 0.5:
        return 0.95
    one_line = sum(1 for ln in nonblank if BEGIN_MARK in ln and "\\n" in ln)
    if one_line and one_line == len(nonblank):
        return 0.95
    profile = sum(1 for ln in nonblank if ln.startswith("#\t0x") or ln.startswith("# 0x"))
    if nonblank[0].startswith("goroutine profile: total ") or profile / len(nonblank) > 0.5:
        return 0.9
    collapsed = sum(1 for ln in nonblank if ln.startswith("goroutine ") and "]: " in ln and ".go:" in ln)
    if collapsed / len(nonblank) > 0.5:
        return 0.9  # one goroutine per line (newlines lost in a paste)
    counted = sum(1 for ln in nonblank if AGGREGATED_STACK.match(ln))
    if counted and counted / len(nonblank) > 0.5:
        return 0.85  # `sort | uniq -c` of one-line stacks: `65061 < sync.runtime_Semacquire sync.(*Mutex).Lock ...`
    if headers and files:
        return 0.5  # excerpts pasted between prose (a ticket, an article)
    if files >= 2 and 2 * files / len(nonblank) > 0.6:
        return 0.6  # stack fragments without headers
    return 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    from plegdoctor.goroutines.parse import parse_dump_binary  # the engine: not needed to sniff

    when = None
    if source.mtime is not None and re.search(
        r"(?:^|/)(containerd\.\d+\.stacks\.log|goroutine-stacks-)", source.display
    ):
        when = datetime.fromtimestamp(source.mtime, UTC)
    dumps = parse_dump_binary(source.stream(), source=source.display, dump_time=when, year=ctx.time.year)
    for d in dumps:
        ctx.report.unparsed += d.problem_count
        if d.problem_count:
            lines = ", ".join(str(p.line) for p in d.problems[:10])
            ctx.report.warn(f"{d.problem_count} line(s) of the {d.label} dump could not be parsed (lines {lines})")
        for note in d.notes:
            ctx.report.warn(note)
        if not d.goroutines:
            continue
        ctx.report.records += len(d.goroutines)
        ctx.evidence.dumps.append(d)
        if d.process_source == "frames":
            ctx.report.inferred.append(f"process {d.label} of the dump at line {d.first_line}, from its frames")
        ctx.evidence.events.append(
            Event(
                ts=d.dump_time,
                kind=EventKind.GOROUTINE_DUMP,
                process=d.process,
                ref=Ref(d.source, d.first_line, f"goroutine dump of {d.label}: {len(d.goroutines)} goroutines"),
                attrs={"process": d.process, "pid": d.pid, "goroutines": len(d.goroutines), "sandbox": d.sandbox},
            )
        )
    if not any(d.goroutines for d in dumps):
        ctx.report.warn("no goroutines found")
