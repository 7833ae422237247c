"""Every task's state and wait channel (`tasks/ps.txt`, read by plegdoctor.parsers.ps).

Read from /proc/<pid>/task/<tid>/{stat,wchan} (no binary is run), at most `MAX_TASKS` tasks, but
the runtime's own tasks (containerd, its shims, runc, crio, dockerd, kubelet) are always read,
however many others the node has. The command line is redacted element by element before it
is joined. The tasks are read first and once per collection (`tasks_of`): the stacks and the
runtime status sources use the same snapshot, the moment's evidence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from plegdoctor.live.actions import run_with_deadline
from plegdoctor.live.procfs import iter_procs, read_proc, task_ids, task_state, task_wchan
from plegdoctor.live.redact import RedactedLines, redact_argv
from plegdoctor.live.sources.base import CollectRun, NodeSource

RUNTIME_COMMS = ("containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "kubelet", "dockerd", "crio")
MAX_TASKS = 5000


@dataclass
class Task:
    pid: int
    tid: int
    state: str
    comm: str
    wchan: str
    cmd: str  # the command line, redacted element by element before it was joined
    redactions: int = 0  # how many argv elements were redacted


def iter_tasks(limit: int = MAX_TASKS) -> Iterator[Task]:
    """Every task's state, comm and wait channel, read from /proc/<pid>/task/<tid>/{stat,wchan}
    (no binary is run). At most `limit` tasks, but the runtime's own tasks (containerd, its
    shims, runc, crio, dockerd, kubelet) are always read, however many others there are."""
    n = 0
    for proc in iter_procs():
        runtime = proc.comm.startswith(RUNTIME_COMMS)
        if n >= limit and not runtime:
            continue
        argv, redactions = redact_argv(proc.cmdline)
        cmd = " ".join(argv) or f"[{proc.comm}]"
        try:
            tids = task_ids(proc.pid)
        except OSError:
            continue
        for tid in tids:
            info = read_proc(tid) if tid != proc.pid else proc
            try:
                state, comm = task_state(proc.pid, tid)
            except (OSError, IndexError):
                if info is None:
                    continue
                state, comm = info.state, info.comm
            yield Task(proc.pid, tid, state, comm, task_wchan(proc.pid, tid), cmd, redactions)
            n += 1
            if n >= limit and not runtime:
                break


def is_runtime_task(t: Task) -> bool:
    return t.comm.startswith(RUNTIME_COMMS)


def ps_table(tasks: list[Task]) -> list[str]:
    """`ps -eLo pid,tid,stat,wchan:32,comm,cmd`-like table (read by plegdoctor.parsers.ps)."""
    lines = RedactedLines([f"{'PID':>7} {'TID':>7} STAT {'WCHAN':<32} {'COMMAND':<16} CMD\n"])
    for t in tasks:
        comm = t.comm.replace(" ", "_") or "-"
        lines.append(f"{t.pid:>7} {t.tid:>7} {t.state:<4} {t.wchan[:32]:<32} {comm:<16} {t.cmd}\n")
        lines.redactions += t.redactions
    return lines


def tasks_of(run: CollectRun) -> list[Task]:
    """The collection's one snapshot of the tasks ([] when /proc could not be read in time)."""

    def read() -> list[Task]:
        with contextlib.suppress(Exception):
            return list(run_with_deadline(lambda: list(iter_tasks()), run.opts.step_timeout, "tasks"))
        return []

    return list(run.once("tasks", read))


def collect(run: CollectRun, src: NodeSource) -> None:
    tasks = tasks_of(run)
    run.step(src.member, src.kind, lambda: ps_table(tasks), source=src.reads)
