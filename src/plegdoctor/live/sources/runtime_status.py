"""The runtime processes' /proc/<pid>/{status,cgroup} and the freezer state of their cgroups
(`tasks/runtime-status.txt`, read by plegdoctor.parsers.ps): who stopped or traces the runtime
(State, TracerPid) and whether its cgroup is frozen. Read from /proc and cgroupfs; nothing is run."""

from __future__ import annotations

import os

from plegdoctor.live.procfs import MAX_SMALL, read_text
from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.sources.tasks import Task, is_runtime_task, tasks_of

MAX_STATUS_PROCS = 256
CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_state_files(cgroup_lines: list[str], root: str = CGROUP_ROOT) -> list[str]:
    """The freezer files of the cgroups in /proc/<pid>/cgroup lines: v2 `cgroup.events` (its
    `frozen` is the effective state, ancestors included) and `cgroup.freeze`; v1
    `freezer.state`."""
    out: list[str] = []
    # cgroup v2 is mounted at the root, or at <root>/unified on a hybrid (v1 + v2) host
    v2_root = root if os.path.exists(f"{root}/cgroup.controllers") else f"{root}/unified"
    for line in cgroup_lines:
        hier, _, path = line.strip().rpartition(":")
        if not hier or not path.startswith("/"):
            continue
        controllers = hier.split(":", 1)[-1]
        if hier.startswith("0:") and controllers == "":
            if path == "/":
                continue  # the root cgroup cannot be frozen
            base = v2_root + path.rstrip("/")
            out += [f"{base}/cgroup.events", f"{base}/cgroup.freeze"]
        elif "freezer" in controllers.split(","):
            out.append(f"{root}/freezer{path.rstrip('/')}/freezer.state")
    return out


def runtime_status(tasks: list[Task], root: str = CGROUP_ROOT) -> list[str]:
    """`tail -n +1`-style concatenation (read by plegdoctor.parsers.ps) of /proc/<pid>/status
    (State, TracerPid: who stopped or traces it) and /proc/<pid>/cgroup of each runtime process,
    and the freezer state of their cgroups. Each file is read up to MAX_SMALL bytes."""
    pids = list(dict.fromkeys(t.pid for t in tasks if is_runtime_task(t) and t.pid == t.tid))[:MAX_STATUS_PROCS]
    lines: list[str] = []
    seen: set[str] = set()
    for pid in pids:
        cgroup: list[str] = []
        _append_file(lines, f"/proc/{pid}/status")
        text = _append_file(lines, f"/proc/{pid}/cgroup")
        if text is not None:
            cgroup = text.splitlines()
        for path in _cgroup_state_files(cgroup, root):
            if path not in seen:
                seen.add(path)
                _append_file(lines, path)
    if not lines:
        lines.append("# no runtime process found\n")
    return lines


def collect(run: CollectRun, src: NodeSource) -> None:
    tasks = tasks_of(run)
    run.step(src.member, src.kind, lambda: runtime_status(tasks), source=src.reads)


def _append_file(lines: list[str], path: str) -> str | None:
    """`==> path <==` and the file's lines onto `lines` (bounded read); its text, or None if unreadable."""
    try:
        text = read_text(path, MAX_SMALL)
    except OSError:
        return None
    lines.append(f"==> {path} <==\n")
    lines.extend(text.splitlines(keepends=True))
    return text
