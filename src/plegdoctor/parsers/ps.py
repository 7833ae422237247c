"""Process and thread states -> TaskState (pid, tid/tgid, comm, state, wchan), and the cgroup
freezer state around them.

Accepted variants (fixtures under tests/fixtures/node/ps/):

- `ps` tables, columns found by name in the header line:
  `ps -eo pid,stat,wchan:32,cmd` (ps-eo-pid-stat-wchan-cmd-real.txt, captured here, and
  ps-eo-d-state.txt with D-state tasks); `ps -eo pid,ppid,stat,wchan:32,comm,etime,cmd` and
  other orders (ps-eo-comm-etime.txt); per-thread `ps -eLo pid,tid,stat,wchan:32,comm,args`
  (procps heads both comm and args `COMMAND`: the first is comm, the last the command line;
  TID/LWP/SPID is the task, PID its process) (ps-eLo-frozen-containerd.txt); pleg-doctor
  collect's `tasks/ps.txt` (`PID TID STAT WCHAN COMMAND CMD`); `ps aux` (STAT, no wait
  channel) and `ps -el`/`ps -elf` (`S` and a truncated WCHAN) (ps-aux-zombie-shims.txt).
  `ps -ef` (`UID PID PPID C STIME TTY TIME CMD`, with or without its header line, STIME a
  time, a date or a year) has no state column: its tasks are read with an empty state (which
  processes ran, since when, with which command line) (ps-ef-headerless.txt).
  The last column (CMD/COMMAND/ARGS) takes the rest of the line; COMM, when absent, is
  derived from the command (`[kthreadd]` -> kthreadd, a path -> its basename).
- /proc files concatenated by `tail -n +1 FILE...` (`==> /proc/812/status <==` before each)
  or `grep . FILE...` (`/proc/812/status:State:	T (stopped)` on every line)
  (proc-status-tail.txt, proc-status-grep.txt):
  `/proc/<pid>/status` and `/proc/<pid>/task/<tid>/status` (Name, State, Tgid, Pid, PPid,
  TracerPid); `/proc/<pid>/stat` and `/proc/<pid>/task/<tid>/stat` (`812 (containerd) T 1 ...`,
  also bare, one task a line, as `cat /proc/[0-9]*/task/*/stat` prints them);
  `/proc/<pid>/wchan` (added to that task); `/proc/<pid>/cgroup` (-> ProcCgroup); and a
  cgroup's freezer state, `.../cgroup.freeze` (v2: 1 = frozen), `.../cgroup.events`
  (`frozen 1`) or `.../freezer.state` (v1: FROZEN/FREEZING/THAWED) (-> CgroupFreeze).

A wait channel of `-` or `0` means none.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TypeGuard

from plegdoctor.kernelnames import expand_wchan
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import CgroupFreeze, ProcCgroup, Ref, TaskState, quote

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "ps"

_TID_COLS = ("TID", "LWP", "SPID")
_PID_COLS = ("PID",)
_STATE_COLS = ("STAT", "S")
_CMD_COLS = ("CMD", "ARGS", "COMMAND")

# `==> /proc/812/status <==` (tail -n +1) and `/proc/812/status:State: T` (grep . FILE...)
_TAIL = re.compile(r"^==> (.+?) <==$")
_GREP = lazy_re(r"^(/(?:proc|sys)/\S+?):(.*)$")
_PROC_FILE = lazy_re(r"/proc/(\d{1,20})(?:/task/(\d{1,20}))?/(status|stat|wchan|cgroup)$")
_FREEZE_NAMES = frozenset({"cgroup.freeze", "cgroup.events", "freezer.state"})


def _freeze_file(path: str | None) -> tuple[str, str] | None:
    """(cgroup dir, file name) of a cgroup freezer file; rpartition, not `(.*)/name$`, which
    backtracks over every `/` from every start (quadratic on a line of slashes)."""
    if not path:
        return None
    head, sep, name = path.rpartition("/")
    return (head, name) if sep and name in _FREEZE_NAMES else None


# one /proc/<pid>/stat line: pid (comm) state ppid ...; comm may hold spaces and parentheses
_STAT = lazy_re(r"^(\d{1,20}) \((.*)\) ([A-Za-z]) (-?\d{1,20}) ")
_STATUS_KEYS = ("Name", "State", "Tgid", "Pid", "PPid", "TracerPid")


# `ps -ef` without its header: UID PID PPID C STIME TTY TIME CMD
_EF = lazy_re(r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+((?:\d+-)?\d+:\d\d(?::\d\d)?)\s+(.+)$")
_EF_COLS = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
# `ps -elf` / `ps -el` without their header (a `| grep` cut it): F S UID PID PPID C PRI NI ADDR
# SZ WCHAN [STIME] TTY TIME CMD; the state and the (truncated) wait channel are what matter
_ELF = lazy_re(
    r"^\s*(\d{1,3})\s+([RSDTtZIXWPK])\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)\s+(-?\d+|-)\s+(\S+)\s+(\d+|-)"
    r"\s+(\S+)\s+(?:(\S+)\s+)?(\S+)\s+((?:\d+-)?\d+:\d\d(?::\d\d)?)\s+(.+)$"
)
_ELF_COLS = ["F", "S", "UID", "PID", "PPID", "C", "PRI", "NI", "ADDR", "SZ", "WCHAN", "STIME", "TTY", "TIME", "CMD"]


def _is_id(text: str | None) -> TypeGuard[str]:
    """A pid/ppid field int() can read: ASCII digits, at most 20 (`"²".isdigit()` is True,
    and int() of 5000 digits raises)."""
    return text is not None and 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _columns(line: str) -> list[str] | None:
    cols = line.split()
    if not cols or not all(re.fullmatch(r"[A-Z%][A-Z%:_]*", c) for c in cols):
        return None
    if not any(c in cols for c in _PID_COLS + _TID_COLS):
        return None
    if not any(c in cols for c in _STATE_COLS) and not ("PPID" in cols and "CMD" in cols):
        return None  # neither a state nor the `ps -ef` columns
    return cols


def comm_from_cmd(cmd: str) -> str:
    cmd = cmd.strip().removesuffix("<defunct>").strip()  # `[containerd-shim] <defunct>` (a zombie)
    if cmd.startswith("[") and cmd.endswith("]"):
        return cmd[1:-1]
    first = cmd.split(" ", 1)[0] if cmd else ""
    return first.rsplit("/", 1)[-1]


def sniff(lines: list[str]) -> float:
    for ln in lines[:3]:
        cols = _columns(ln)
        if cols is not None:
            return 0.95 if "WCHAN" in cols else (0.6 if any(c in cols for c in _STATE_COLS) else 0.5)
    head = [ln.strip() for ln in lines[:200] if ln.strip()]
    if not head:
        return 0.0
    if sum(1 for ln in head if _EF.match(ln)) >= max(1, 0.8 * len(head)):
        return 0.5  # headerless `ps -ef`
    if sum(1 for ln in head if _ELF.match(ln)) >= max(1, 0.8 * len(head)):
        return 0.6  # headerless `ps -el`/`ps -elf`
    files = sum(1 for ln in head if _file_of(ln) is not None)
    if files and any(_PROC_FILE.search(_file_of(ln) or "") or _freeze_file(_file_of(ln)) for ln in head):
        return 0.9
    if any(ln.startswith("State:") for ln in head) and any(ln.startswith("Tgid:") for ln in head):
        return 0.85  # one bare /proc/<pid>/status
    stats = sum(1 for ln in head if _STAT.match(ln))
    if stats and stats >= 0.8 * len(head):
        return 0.8  # bare /proc/*/stat lines
    return 0.0


def _file_of(line: str) -> str | None:
    m = _TAIL.match(line)
    if m:
        return m.group(1)
    m = _GREP.match(line)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------
# ps tables


def _table_row(raw: str, cols: list[str]) -> dict[str, str] | None:
    parts = raw.split(None, len(cols) - 1)
    if len(parts) < len(cols) - 1:
        return None
    row: dict[str, str] = {}
    first_command = None
    for i, (c, v) in enumerate(zip(cols, parts, strict=False)):
        if c == "COMMAND" and i < len(cols) - 1:
            first_command = v  # procps heads comm COMMAND too; the last column is the command line
            continue
        row[c] = v
    if first_command is not None:
        row.setdefault("COMM", first_command)
    return row


def _task_from_row(row: dict[str, str], ref: Ref) -> TaskState | None:
    tid_col = next((c for c in _TID_COLS if c in row), None)
    try:
        pid = int(row["PID"]) if "PID" in row else None
        tid = int(row[tid_col]) if tid_col else None
    except ValueError:
        return None
    task_id = tid if tid is not None else pid
    if task_id is None:
        return None
    state_col = next((c for c in _STATE_COLS if c in row), None)
    cmd = next((row[c] for c in _CMD_COLS if c in row), "")
    comm = row.get("COMM") or row.get("UCOMM") or comm_from_cmd(cmd)
    wchan = row.get("WCHAN")
    if wchan:
        wchan = expand_wchan(wchan)
    ppid = row.get("PPID")
    return TaskState(
        pid=task_id,
        comm=comm,
        state=row.get(state_col, "") if state_col else "",
        wchan=None if wchan in (None, "-", "0") else wchan,
        kernel_stack=(),
        cmd=cmd,
        ref=ref,
        tgid=pid if tid is not None else None,
        ppid=int(ppid) if _is_id(ppid) else None,
        source="ps",
    )


# ---------------------------------------------------------------------------------------
# /proc files


class _ProcTask:
    """What the /proc files of one task said so far (status, stat and wchan of the same task
    make one TaskState)."""

    __slots__ = ("cmd", "comm", "ppid", "ref", "state", "tgid", "tid", "tracer", "wchan")

    def __init__(self, tid: int, tgid: int | None) -> None:
        self.tid = tid
        self.tgid = tgid
        self.comm = ""
        self.state = ""
        self.ppid: int | None = None
        self.tracer: int | None = None
        self.wchan: str | None = None
        self.cmd = ""
        self.ref: Ref | None = None


def _stat_line(text: str) -> tuple[int, str, str, int] | None:
    m = _STAT.match(text)
    if not m:
        return None
    # comm may itself contain ") X n ": the real one ends at the last ') <state> <ppid> '
    rpar = text.rfind(")")
    rest = text[rpar + 2 :].split()
    if len(rest) < 2 or not _is_id(rest[1].lstrip("-")):
        return int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
    return int(m.group(1)), text[text.find("(") + 1 : rpar], rest[0], int(rest[1])


class _Reader:
    def __init__(self, source: Source, ctx: ParseContext) -> None:
        self.source = source
        self.ctx = ctx
        self.tasks: dict[tuple[int | None, int], _ProcTask] = {}
        self.file: str | None = None  # the file the current lines come from
        self.bare_status: dict[str, tuple[str, Ref]] = {}  # one bare /proc/<pid>/status

    def ref(self, lineno: int, raw: str) -> Ref:
        return Ref(self.source.display, lineno, quote(raw))

    def task(self, tgid: int | None, tid: int) -> _ProcTask:
        key = (tgid, tid)
        t = self.tasks.get(key)
        if t is None:
            t = self.tasks[key] = _ProcTask(tid, tgid)
        return t

    def line(self, lineno: int, raw: str, path: str | None, text: str) -> bool:
        """One line of a /proc or cgroup file; False if it is not one we read."""
        ref = self.ref(lineno, raw)
        text = text.strip()
        fm = _freeze_file(path)
        if fm:
            return self.freeze(fm[0], fm[1], text, ref)
        pm = _PROC_FILE.search(path or "")
        if pm is None:
            if path is None:
                return self.bare(text, ref)
            return False
        proc, task, what = int(pm.group(1)), pm.group(2), pm.group(3)
        tid = int(task) if task else proc
        tgid = proc
        if what == "stat":
            st = _stat_line(text)
            if st is None:
                return False
            t = self.task(tgid, tid)
            _, t.comm, t.state, t.ppid = st
            t.ref = t.ref or ref
            return True
        if what == "wchan":
            t = self.task(tgid, tid)
            t.wchan = None if text in ("", "0", "-") else text
            return True
        if what == "cgroup":
            hier, _, cg = text.rpartition(":")
            if not hier:
                return False
            self.ctx.evidence.proc_cgroups.append(ProcCgroup(proc, hier.split(":", 1)[-1] or "0::", cg, ref))
            return True
        key, sep, value = text.partition(":")
        if not sep:
            return False
        value = value.strip()
        if key not in _STATUS_KEYS:
            return True  # a status line we do not need (Umask, VmRSS, ...)
        t = self.task(tgid, tid)
        if key == "Name":
            t.comm = value
        elif key == "State":
            t.state = value.split()[0] if value else ""
            t.ref = ref  # the State line is the one to quote
        elif key == "PPid" and _is_id(value):
            t.ppid = int(value)
        elif key == "TracerPid" and _is_id(value):
            t.tracer = int(value)
        elif key == "Tgid" and _is_id(value) and int(value) != tgid:
            # /proc/<tid>/status of a thread: the process is the Tgid
            moved = self.tasks.pop((tgid, tid))
            moved.tgid = int(value)
            self.tasks[(moved.tgid, tid)] = moved
        return True

    def bare(self, text: str, ref: Ref) -> bool:
        """A line outside any named file: a bare stat line, or one bare /proc/<pid>/status."""
        st = _stat_line(text)
        if st is not None:
            t = self.task(None, st[0])
            _, t.comm, t.state, t.ppid = st
            t.ref = ref
            return True
        key, sep, value = text.partition(":")
        if sep and key in _STATUS_KEYS:
            self.bare_status[key] = (value.strip(), ref)
            return True
        return bool(sep and re.fullmatch(r"[A-Za-z_][\w()]*", key))

    def freeze(self, cgroup: str, name: str, text: str, ref: Ref) -> bool:
        if name == "cgroup.freeze":
            if text not in ("0", "1"):
                return False
            frozen = text == "1"
        elif name == "cgroup.events":
            key, _, value = text.partition(" ")
            if key != "frozen":
                return key in ("populated",)
            frozen = value.strip() == "1"
        else:
            if text not in ("FROZEN", "FREEZING", "THAWED"):
                return False
            frozen = text in ("FROZEN", "FREEZING")
            self.ctx.evidence.cgroup_freezes.append(CgroupFreeze(cgroup, frozen, ref, text, "file"))
            return True
        self.ctx.evidence.cgroup_freezes.append(CgroupFreeze(cgroup, frozen, ref, "", "file"))
        return True

    def finish(self) -> None:
        status = self.bare_status
        if "State" in status and "Pid" in status and _is_id(status["Pid"][0]):
            pid = int(status["Pid"][0])
            tgid = status.get("Tgid", ("", None))[0]
            t = self.task(int(tgid) if _is_id(tgid) else pid, pid)
            t.state = status["State"][0].split()[0] if status["State"][0] else ""
            t.ref = status["State"][1]
            t.comm = status.get("Name", ("", None))[0]
            ppid, tracer = status.get("PPid", ("", None))[0], status.get("TracerPid", ("", None))[0]
            t.ppid = int(ppid) if _is_id(ppid) else None
            t.tracer = int(tracer) if _is_id(tracer) else None
        for t in self.tasks.values():
            if not t.state or t.ref is None:
                continue
            self.ctx.evidence.tasks.append(
                TaskState(
                    pid=t.tid,
                    comm=t.comm,
                    state=t.state,
                    wchan=t.wchan,
                    kernel_stack=(),
                    cmd=t.cmd,
                    ref=t.ref,
                    tgid=t.tgid,
                    ppid=t.ppid,
                    tracer_pid=t.tracer,
                    source="proc",
                )
            )
            self.ctx.report.records += 1


def parse(source: Source, ctx: ParseContext) -> None:
    cols: list[str] | None = None
    reader = _Reader(source, ctx)
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        if not raw.strip():
            continue
        text = raw.rstrip("\r\n")
        m = _TAIL.match(text.strip())
        if m:
            reader.file = m.group(1)
            cols = None
            continue
        g = _GREP.match(text)
        if g:
            if not reader.line(lineno, raw, g.group(1), g.group(2)):
                ctx.report.unparsed += 1
            continue
        header = _columns(raw) if reader.file is None else None
        if header is not None:
            cols = header
            continue
        if cols is not None:
            row = _table_row(raw, cols)
            task = _task_from_row(row, Ref(source.display, lineno, quote(raw))) if row else None
            if task is None:
                ctx.report.unparsed += 1
                continue
            ctx.evidence.tasks.append(task)
            ctx.report.records += 1
            continue
        el = _ELF.match(text) if reader.file is None else None
        if el is not None:
            row = {c: v for c, v in zip(_ELF_COLS, el.groups(), strict=True) if v is not None}
            task = _task_from_row(row, Ref(source.display, lineno, quote(raw)))
            if task is not None:
                ctx.evidence.tasks.append(task)
                ctx.report.records += 1
                continue
        ef = _EF.match(text) if reader.file is None else None
        if ef is not None:
            task = _task_from_row(
                dict(zip(_EF_COLS, ef.groups(), strict=True)), Ref(source.display, lineno, quote(raw))
            )
            if task is not None:
                ctx.evidence.tasks.append(task)
                ctx.report.records += 1
                continue
        if not reader.line(lineno, raw, reader.file, text):
            ctx.report.unparsed += 1
    reader.finish()
