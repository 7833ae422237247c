"""The kubelet's and containerd's logs (`logs/<unit>.journal` from the journal, else `logs/<unit>.log`
from the file the process writes its stderr to or a well-known file; read by the journal,
kubelet-log and containerd-log parsers).

journalctl runs by its fixed path (TRUSTED_TOOLS) under the step deadline, keeping the newest
`MAX_LOG_BYTES` (a stall is at the end, not the start); a log file is read from its newest
`MAX_LOG_BYTES` too, and containerd's logrus lines older than --since are dropped.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from plegdoctor.live.actions import Actions, run_with_deadline
from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.procfs import stderr_log_file
from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.sources.runtime import kubelet_pid_of, log_file_of, runtime_of
from plegdoctor.live.tools import MAX_LOG_BYTES, TRUSTED_TOOLS, Tail, run_tail, trusted_tool

LOG_FILES = {"containerd": ["/var/log/containerd.log"], "kubelet": ["/var/log/kubelet.log"]}


def read_tail_lines(path: str, max_bytes: int = MAX_LOG_BYTES) -> Iterator[str]:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        start = max(0, size - max_bytes)
        fh.seek(start)
        if start:
            fh.readline()  # skip a partial line
        for raw in fh:
            yield raw.decode("utf-8", "replace")


_LOGRUS_TIME = re.compile(r'^time="([^"]+)"')


def logrus_since(lines: Iterable[str], since: datetime) -> Iterator[str]:
    """Drop logrus lines older than `since` (lines without a time follow the previous decision)."""
    keep = True
    cutoff = since.timestamp()
    for line in lines:
        m = _LOGRUS_TIME.match(line)
        if m:
            with contextlib.suppress(ValueError):
                keep = datetime.fromisoformat(m[1].replace("Z", "+00:00")).timestamp() >= cutoff
        if keep:
            yield line


def journal_available() -> bool:
    if trusted_tool("journalctl") is None:
        return False
    return any(os.path.isdir(d) and any(os.scandir(d)) for d in ("/var/log/journal", "/run/log/journal"))


def journal_argv(unit: str, since: datetime) -> list[str]:
    return [
        trusted_tool("journalctl") or TRUSTED_TOOLS["journalctl"][0],
        "-u",
        unit,
        "--since",
        since.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "--all",
        "--no-pager",
        "-o",
        "short-iso-precise",
    ]


def journal_lines(
    unit: str, since: datetime, timeout: float, actions: Actions | None = None, max_bytes: int = MAX_LOG_BYTES
) -> Tail:
    """The unit's journal since `since`: the newest `max_bytes` (a stall is at the end, not the start)."""
    tail = run_tail(journal_argv(unit, since), timeout, max_bytes, actions)
    lines = tail.lines
    if not lines or (len(lines) == 1 and lines[0].startswith("-- No entries --")):
        raise RuntimeError(f"journal has no entries for unit {unit}")
    return tail


def _log_reader(path: str, unit: str, since: datetime) -> Callable[[], list[str]]:
    if unit == "containerd":
        return lambda: list(logrus_since(read_tail_lines(path), since))
    return lambda: list(read_tail_lines(path))


def _collect_log(
    w: BundleWriter,
    base: str,
    unit: str,
    log_file: str | None,
    since: datetime,
    timeout: float,
    say: Callable[[str], None],
    fallbacks: list[str],
    actions: Actions | None = None,
) -> None:
    kind = f"{unit}-log"
    errors: list[str] = []
    if journal_available():
        try:
            tail = run_with_deadline(
                lambda: journal_lines(unit, since, timeout, actions), timeout + 1, f"journalctl -u {unit}"
            )
            note = tail.note()
            w.add_text(
                f"{base}.journal",
                "journal",
                tail.lines,
                command=journal_argv(unit, since),
                **({"truncated": True, "note": note} if note else {}),
            )
            return
        except Exception as exc:
            errors.append(str(exc))
    for path in [p for p in [log_file, *fallbacks] if p]:
        if not os.path.isfile(path):
            continue
        try:
            lines = run_with_deadline(_log_reader(path, unit, since), timeout, f"read {path}")
            size = os.path.getsize(path)
            cut: dict[str, Any] = (
                {"truncated": True, "note": f"kept the newest {MAX_LOG_BYTES} of {size} bytes (the head was dropped)"}
                if size > MAX_LOG_BYTES
                else {}
            )
            w.add_text(f"{base}.log", kind, lines, source=path, **cut)
            return
        except Exception as exc:
            errors.append(f"{path}: {exc}")
    msg = "; ".join(errors) or f"no {unit} log found (no journal, no log file next to a running {unit})"
    w.add_failed(f"{base}.log", kind, msg)
    say(f"{base}: {msg}")


def collect_containerd(run: CollectRun, src: NodeSource) -> None:
    if runtime_of(run).containerd:
        collect_log(run, "logs/containerd", "containerd", log_file_of(run))


def collect_kubelet(run: CollectRun, src: NodeSource) -> None:
    pid = kubelet_pid_of(run)
    collect_log(run, "logs/kubelet", "kubelet", stderr_log_file(pid) if pid else None)


def collect_log(run: CollectRun, base: str, unit: str, log_file: str | None) -> None:
    _collect_log(run.w, base, unit, log_file, run.since, run.opts.step_timeout, run.say, LOG_FILES[unit], run.actions)
