"""Stall-triggered capture policy: one capture per stall episode, a cooldown, a cap and a disk budget.

Pure logic over times passed in, so tests replay it without a clock.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

BUNDLE_GLOB = "pleg-doctor-*.tar.gz"


@dataclass(frozen=True, slots=True)
class Decision:
    capture: bool
    reason: str


def bundles_in(capture_dir: str) -> list[Path]:
    try:
        return sorted(Path(capture_dir).glob(BUNDLE_GLOB))
    except OSError:
        return []


def bytes_used(capture_dir: str) -> int:
    total = 0
    for p in bundles_in(capture_dir):
        try:
            total += p.stat().st_size
        except OSError:
            continue
    return total


class CaptureTrigger:
    """Decide when watch captures a bundle.

    - a capture starts on the rising edge of a stall (one per episode; a stall that lasts an
      hour gives one bundle, not 3600);
    - `cooldown` seconds must pass between two captures (flapping runtimes);
    - at most `max_captures` bundles in the capture dir (older ones are the user's to delete);
    - the bundles in the dir may use at most `disk_budget` bytes, and the filesystem must keep
      `min_free` bytes free.
    """

    def __init__(
        self,
        capture_dir: str,
        cooldown: float = 600.0,
        max_captures: int = 10,
        disk_budget: int = 1 << 30,
        min_free: int = 256 << 20,
    ):
        self.capture_dir = capture_dir
        self.cooldown = cooldown
        self.max_captures = max_captures
        self.disk_budget = disk_budget
        self.min_free = min_free
        self.last_capture: float | None = None
        self._was_stalled = False

    def decide(self, now: float, stalled: bool) -> Decision:
        rising = stalled and not self._was_stalled
        self._was_stalled = stalled
        if not rising:
            return Decision(False, "")
        if self.last_capture is not None and now - self.last_capture < self.cooldown:
            wait = self.cooldown - (now - self.last_capture)
            return Decision(False, f"cooldown: next capture allowed in {wait:.0f}s")
        n = len(bundles_in(self.capture_dir))
        if n >= self.max_captures:
            return Decision(
                False, f"cap reached: {n} bundles in {self.capture_dir} (--max-captures {self.max_captures})"
            )
        used = bytes_used(self.capture_dir)
        if used >= self.disk_budget:
            return Decision(False, f"disk budget reached: {used} bytes of bundles in {self.capture_dir}")
        problem = writable_problem(self.capture_dir, self.min_free)
        if problem:
            return Decision(False, problem)
        return Decision(True, "stall started")

    def captured(self, now: float) -> None:
        self.last_capture = now

    def rearm(self) -> None:
        """Forget the current episode (a capture failed before writing: allow the next edge)."""
        self._was_stalled = False


def writable_problem(directory: str, min_free: int = 0) -> str:
    """'' if a bundle can be written to `directory`, else one line saying why not."""
    if not os.path.isdir(directory):
        return f"capture dir {directory} does not exist"
    try:
        st = os.statvfs(directory)
    except OSError as exc:
        return f"capture dir {directory}: {exc.strerror}"
    if st.f_flag & os.ST_RDONLY:
        return f"capture dir {directory} is on a read-only filesystem"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"capture dir {directory} is not writable"
    free = st.f_bavail * st.f_frsize
    if free < min_free:
        return f"capture dir {directory} has only {free >> 20} MiB free (need {min_free >> 20} MiB)"
    return ""


def disk_free(directory: str) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 0
