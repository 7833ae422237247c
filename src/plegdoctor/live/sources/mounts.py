"""The runtime's mount table (`proc/mountinfo`, read by plegdoctor.parsers.mounts):
/proc/<runtime pid>/mountinfo (its mount namespace), else ours; at most MAX_MOUNTINFO bytes."""

from __future__ import annotations

from plegdoctor.live.procfs import read_text
from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.sources.runtime import runtime_of

MAX_MOUNTINFO = 16 << 20


def collect(run: CollectRun, src: NodeSource) -> None:
    pid = runtime_of(run).pid
    mountinfo = f"/proc/{pid}/mountinfo" if pid else "/proc/self/mountinfo"
    run.step(src.member, src.kind, lambda: read_text(mountinfo, MAX_MOUNTINFO), source=mountinfo)
