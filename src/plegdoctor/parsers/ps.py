"""`ps` output with task states and wait channels -> TaskState (one per task line).

Columns are found by name in the header line, so these variants are read (fixtures under
tests/fixtures/node/ps/):

- `ps -eo pid,stat,wchan:32,cmd` (ps-eo-pid-stat-wchan-cmd-real.txt, captured here, and
  ps-eo-d-state.txt with D-state tasks);
- `ps -eo pid,ppid,stat,wchan:32,comm,etime,cmd` and other orders; `ps -eLo pid,tid,...`
  (thread lines; TID/LWP/SPID are read as the pid of the task) (ps-eo-comm-etime.txt);
- `ps aux` / `ps -ef`-style tables that have a STAT column (`wchan` then unknown).

The last column (CMD/COMMAND/ARGS) takes the rest of the line. COMM, when present, is the
task name; otherwise it is derived from the command (`[kthreadd]` -> kthreadd, a path ->
its basename). A `-` wait channel means none.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from plegdoctor.model import Ref, TaskState, quote

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "ps"

_PID_COLS = ("TID", "LWP", "SPID", "PID")
_STATE_COLS = ("STAT", "S")
_CMD_COLS = ("CMD", "COMMAND", "ARGS")


def _columns(line: str) -> list[str] | None:
    cols = line.split()
    if not cols or not all(re.fullmatch(r"[A-Z%][A-Z%:_]*", c) for c in cols):
        return None
    if not any(c in cols for c in _STATE_COLS) or not any(c in cols for c in _PID_COLS):
        return None
    return cols


def comm_from_cmd(cmd: str) -> str:
    cmd = cmd.strip()
    if cmd.startswith("[") and cmd.endswith("]"):
        return cmd[1:-1]
    first = cmd.split(" ", 1)[0] if cmd else ""
    return first.rsplit("/", 1)[-1]


def sniff(lines: list[str]) -> float:
    for ln in lines[:3]:
        cols = _columns(ln)
        if cols is not None:
            return 0.95 if "WCHAN" in cols else 0.6
    return 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    cols: list[str] | None = None
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        if not raw.strip():
            continue
        header = _columns(raw)
        if header is not None:
            cols = header
            continue
        if cols is None:
            ctx.report.unparsed += 1
            continue
        parts = raw.split(None, len(cols) - 1)
        if len(parts) < len(cols) - 1:
            ctx.report.unparsed += 1
            continue
        row = dict(zip(cols, parts, strict=False))
        pid_col = next(c for c in _PID_COLS if c in row)
        state_col = next((c for c in _STATE_COLS if c in row), None)
        try:
            pid = int(row[pid_col])
        except ValueError:
            ctx.report.unparsed += 1
            continue
        # procps heads both `comm` and `args` as COMMAND; with CMD/ARGS present it is comm
        comm_col = "COMMAND" if ("CMD" in row or "ARGS" in row) and "COMMAND" in row else None
        cmd = next((row[c] for c in _CMD_COLS if c in row and c != comm_col), "")
        comm = row.get("COMM") or row.get("UCOMM") or (row[comm_col] if comm_col else "") or comm_from_cmd(cmd)
        wchan = row.get("WCHAN")
        ctx.evidence.tasks.append(
            TaskState(
                pid=pid,
                comm=comm,
                state=row.get(state_col, "") if state_col else "",
                wchan=None if wchan in (None, "-", "0") else wchan,
                kernel_stack=(),
                cmd=cmd,
                ref=Ref(source.display, lineno, quote(raw)),
            )
        )
        ctx.report.records += 1
