"""`top` batch/interactive output pasted from a node: load, memory, CPU iowait, and tasks.

Accepted variants (fixture tests/fixtures/node/top/):
- procps-ng top (`top -b -n 1` or a screen copied from an interactive top): the summary
  `top - 11:50:54 up 17 min,  1 user,  load average: 10.74, 11.00, 6.96`,
  `%Cpu(s):  0.3 us, 12.9 sy, ... 64.8 wa, ...`, `KiB Mem :  1015368 total, 65532 free, ...`
  (also `MiB Mem :` / `GiB Mem :` with decimals), `KiB Swap: ... 24816 avail Mem`, then the
  task table `PID USER PR NI VIRT RES SHR S %CPU %MEM TIME+ COMMAND`;
- a shell prompt line before it (`[root@node ~]# top`) is skipped.

Output: MemoryFigures (total, available, swap, iowait), NodeLoad (load averages; CPUs
unknown), TaskState per row (pid, state, comm). top prints a time of day without a date, so
its figures are not placed on the time axis (ts None, and a note says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import MemoryFigures, NodeLoad, Ref, TaskState, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "top"
MAX_TASKS = 5000

# Linear on long lines: a number after a lazy gap starts where its run starts (lookbehind),
# so the gap's positions inside one long run do not each rescan it; runs are possessive.
_SUMMARY = lazy_re(r"^top - (\d\d:\d\d:\d\d) up .{1,60}?load average: ([\d.]++), ([\d.]++), ([\d.]++)\s*+$")
_CPU = lazy_re(r"^%Cpu\(s\):.{0,120}?(?<![\d.])([\d.]++) wa\b")
_MEM = lazy_re(r"^([KMGT]i)B Mem\s*+:\s*+([\d.]++) total,\s*+([\d.]++) free")
_SWAP = lazy_re(r"^([KMGT]i)B Swap\s*+:\s*+([\d.]++) total,.{0,80}?(?<![\d.])([\d.]++) avail Mem\s*+$")
_TASKS = lazy_re(r"^(?:Tasks|Threads):\s*\d+ total")
_HEADER = lazy_re(r"^\s*PID\s+USER\s+PR\s+NI\s+VIRT\s+RES\s+SHR\s+S\s+%CPU\s+%MEM\s+TIME\+\s+COMMAND\s*$")
_ROW = lazy_re(
    r"^\s*(\d{1,9})\s+(\S{1,32})\s+(-?\d+|rt)\s+(-?\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+([RSDTtZIXWP])\s+([\d.]+)\s+([\d.]+)"
    r"\s+(\S+)\s+(.{1,256}?)(?<=\S)\s*+$"
)
_PROMPT = lazy_re(r"^(?:\[[^\]]{1,80}\][#$]|\S{1,80}@\S{1,80}[#$:]).{0,200}$")
_UNIT_KB = {"Ki": 1, "Mi": 1024, "Gi": 1024 * 1024, "Ti": 1024 * 1024 * 1024}


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only when one line matches `_SUMMARY`
    (starts `top - `) and one matches `_MEM` (holds `B Mem`). No needle holds a newline,
    so each is in the joined text only if it is in a line."""
    text = "\n".join(lines[:50])
    return "top - " not in text or "B Mem" not in text


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    head = [ln.strip() for ln in lines[:50] if ln.strip()]
    if any(_SUMMARY.match(ln) for ln in head) and any(_MEM.match(ln) for ln in head):
        return 0.9
    return 0.0


def _kb(unit: str, value: str) -> int:
    kb = float(value) * _UNIT_KB[unit]
    return int(kb) if kb < 1e30 else 0  # hundreds of digits read as inf: int(inf) would raise


def parse(source: Source, ctx: ParseContext) -> None:
    unread = Unread(ctx.report)
    load: tuple[float, float, float, Ref] | None = None
    total: tuple[int, Ref] | None = None
    avail: int | None = None
    swap: int | None = None
    iowait: float | None = None
    in_table = False
    tasks = 0
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        text = raw.strip()
        if not text:
            continue
        ref = Ref(source.display, lineno, quote(raw))
        if m := _SUMMARY.match(text):
            load = (float(m.group(2)), float(m.group(3)), float(m.group(4)), ref)
            ctx.report.records += 1
            continue
        if m := _CPU.match(text):
            iowait = float(m.group(1))
            continue
        if m := _MEM.match(text):
            total = (_kb(m.group(1), m.group(2)), ref)
            continue
        if m := _SWAP.match(text):
            swap, avail = _kb(m.group(1), m.group(2)), _kb(m.group(1), m.group(3))
            continue
        if _TASKS.match(text):
            continue
        if _HEADER.match(raw):
            in_table = True
            continue
        if in_table and (m := _ROW.match(raw)):
            if tasks < MAX_TASKS:
                cmd = m.group(12)
                ctx.evidence.tasks.append(
                    TaskState(
                        pid=int(m.group(1)),
                        comm=cmd.split()[0],
                        state=m.group(8),
                        wchan=None,
                        kernel_stack=(),
                        cmd=cmd,
                        ref=ref,
                        source="top",
                    )
                )
                ctx.report.records += 1
            tasks += 1
            continue
        if _PROMPT.match(text) and lineno <= 3:
            continue  # the shell prompt the paste starts with
        unread(lineno, raw)
    if load is not None:
        ctx.evidence.loads.append(NodeLoad(None, load[0], load[1], load[2], None, load[3]))
    if total is not None:
        ctx.evidence.memory.append(MemoryFigures(None, total[0], avail, swap, iowait, "top", total[1]))
        ctx.report.records += 1
    if load is not None or total is not None:
        ctx.report.inferred.append("top prints a time of day without a date: its figures are not placed in time")
    if tasks > MAX_TASKS:
        ctx.report.warn(f"{tasks - MAX_TASKS} task row(s) beyond the first {MAX_TASKS} not kept")
    unread.warn()
