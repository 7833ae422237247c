"""Kernel stacks of D-state tasks and of the runtime's tasks (`tasks/stacks.txt`, read by
plegdoctor.parsers.proc_stack): /proc/<pid>/task/<tid>/stack of the tasks snapshot."""

from __future__ import annotations

from plegdoctor.live.procfs import task_stack
from plegdoctor.live.redact import RedactedLines
from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.sources.tasks import Task, is_runtime_task, tasks_of


def task_stacks(tasks: list[Task]) -> list[str]:
    """Kernel stacks of D-state tasks and of the runtime's tasks, in the collector format of parsers.proc_stack."""
    lines = RedactedLines()
    for t in tasks:
        if t.state != "D" and not is_runtime_task(t):
            continue
        lines.redactions += t.redactions  # t.cmd is redacted already (iter_tasks)
        try:
            stack = task_stack(t.pid, t.tid)
        except OSError as exc:
            stack = f"# stack unreadable: {exc.strerror}\n"
        lines.append(
            f"# pid={t.tid} tgid={t.pid} comm={t.comm.replace(' ', '_')} state={t.state} wchan={t.wchan} cmd={t.cmd}\n"
        )
        lines.extend(stack.splitlines(keepends=True))
    if not lines:
        lines.append("# no D-state or runtime tasks found\n")
    return lines


def collect(run: CollectRun, src: NodeSource) -> None:
    tasks = tasks_of(run)
    run.step(src.member, src.kind, lambda: task_stacks(tasks), source=src.reads)
