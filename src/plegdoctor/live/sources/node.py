"""Manifest keys about the node itself: `node_load` (/proc/loadavg and the CPUs this process
may run on) and `boot_time` (/proc/stat `btime`, which turns dmesg's seconds since boot into
times). Read by plegdoctor.parsers.bundle_manifest."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from typing import Any

from plegdoctor.live.procfs import boot_time, read_text
from plegdoctor.live.sources.base import CollectRun, NodeSource


def node_load() -> dict[str, Any]:
    """/proc/loadavg and the CPUs this node can run on (manifest `node_load`)."""
    fields = read_text("/proc/loadavg").split()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    return {
        "loadavg": [float(x) for x in fields[:3]],
        "running": fields[3] if len(fields) > 3 else None,
        "cpus": cpus or None,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": "/proc/loadavg",
    }


def collect_load(run: CollectRun, src: NodeSource) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        run.w.extra["node_load"] = node_load()


def collect_boot_time(run: CollectRun, src: NodeSource) -> None:
    btime = boot_time()
    if btime is not None:
        run.w.extra.setdefault("boot_time", btime)
