"""The kernel log (`kernel/dmesg.txt`, read by plegdoctor.parsers.dmesg): /dev/kmsg read without
blocking (the newest `KMSG_RECORDS` records); `dmesg` by its fixed path (TRUSTED_TOOLS) only
when /dev/kmsg gives nothing, under the step deadline."""

from __future__ import annotations

import os
from collections import deque

from plegdoctor.live.actions import Actions, StepTimeout
from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.tools import TRUSTED_TOOLS, run_command, trusted_tool

KMSG_RECORDS = 20000


def dmesg_lines(timeout: float, actions: Actions | None = None) -> list[str]:
    """The kernel log from /dev/kmsg; `dmesg` (by its fixed path) only when /dev/kmsg gives nothing."""
    lines = kmsg_lines()
    if lines:
        return lines
    errors = ["/dev/kmsg unreadable or empty"]
    dmesg = trusted_tool("dmesg")
    if dmesg is None:
        raise RuntimeError("; ".join([*errors, f"no dmesg at {' or '.join(TRUSTED_TOOLS['dmesg'])}"]))
    for cmd in ([dmesg, "--time-format", "iso"], [dmesg]):
        try:
            return run_command(cmd, timeout, actions=actions)
        except (RuntimeError, StepTimeout) as exc:
            errors.append(str(exc))
    raise RuntimeError("; ".join(errors))


def kmsg_lines(limit: int = KMSG_RECORDS, max_records: int = 2_000_000) -> list[str]:
    """Read /dev/kmsg without blocking, keeping the newest `limit` records;
    `<prio>,seq,usec,flags;msg` -> `[sec.usec] msg`."""
    out: deque[str] = deque(maxlen=limit)
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        for _ in range(max_records):
            try:
                rec = os.read(fd, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except OSError:
                continue  # EPIPE: records overwritten while reading
            if not rec:
                break
            head, _, msg = rec.partition(";")
            parts = head.split(",")
            if len(parts) >= 3 and parts[2].isdigit():
                usec = int(parts[2])
                out.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {msg.splitlines()[0] if msg else ''}\n")
    finally:
        os.close(fd)
    return list(out)


def collect(run: CollectRun, src: NodeSource) -> None:
    timeout = run.opts.step_timeout
    run.step(src.member, src.kind, lambda: dmesg_lines(timeout, run.actions), source=src.reads)
