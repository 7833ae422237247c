"""Stall-triggered capture policy: one capture per stall episode, a cooldown, rotation of old bundles
within a count and a byte budget; and the manifest's `trigger` record that says why a bundle was captured.

Pure logic over times passed in, so tests replay it without a clock.

The trigger record (manifest key `trigger`, read back by plegdoctor.parsers.bundle_manifest
into a `StallTrigger`; keys are stable, new ones may be added, none renamed):

    {"source": "watch",
     "reason": "ListPodSandbox in flight for 6.2s (threshold 5s)",   # the probe's words
     "method": "ListPodSandbox",              # the CRI call that stalled ('' if none known)
     "in_flight_method": "ListPodSandbox",    # '' when the stall is a call that returned late
     "in_flight_seconds": 6.214,              # age of the call still pending (0 if none)
     "call_seconds": 6.214,                   # how long the stalled call had taken so far
     "call_started_at": "2026-11-28T14:29:12.004Z",
     "detected_at": "2026-11-28T14:29:18.218Z",
     "last_success_at": "2026-11-28T14:29:11.100Z" | null,
     "seconds_since_success": 7.118 | null,
     "stall_threshold": 5.0, "call_timeout": 120.0,
     "runtime_endpoint": "unix:///run/containerd/containerd.sock"}
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BUNDLE_GLOB = "pleg-doctor-*.tar.gz"


@dataclass(frozen=True, slots=True)
class Decision:
    capture: bool
    reason: str


def _bundles(capture_dir: str) -> list[tuple[Path, os.stat_result]]:
    """Regular files named like bundles (symlinks and other types are never counted nor deleted), oldest first."""
    out = []
    try:
        paths = list(Path(capture_dir).glob(BUNDLE_GLOB))
    except OSError:
        return []
    for p in paths:
        try:
            st = p.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append((p, st))
    out.sort(key=lambda ps: (ps[1].st_mtime, ps[0].name))
    return out


def bundles_in(capture_dir: str) -> list[Path]:
    """The bundles in `capture_dir`, oldest first."""
    return [p for p, _ in _bundles(capture_dir)]


def bytes_used(capture_dir: str) -> int:
    return sum(st.st_size for _, st in _bundles(capture_dir))


def rotate(capture_dir: str, max_count: int, budget: int, keep_newest: bool = True) -> list[Path]:
    """Delete the oldest bundles until at most `max_count` remain and they use at most `budget` bytes.
    With `keep_newest` the newest bundle stays whatever its size (the evidence just captured).
    Returns what was deleted."""
    bundles = _bundles(capture_dir)
    keep, used = 0, 0
    for _p, st in reversed(bundles):
        first = keep == 0 and keep_newest
        if not first and (keep + 1 > max_count or used + st.st_size > budget):
            break
        keep, used = keep + 1, used + st.st_size
    deleted = []
    for p, _ in bundles[: len(bundles) - keep]:
        try:
            p.unlink()
        except OSError:
            continue
        deleted.append(p)
    return deleted


class CaptureTrigger:
    """Decide when watch captures a bundle.

    - a capture starts on the rising edge of a stall (one per episode; a stall that lasts an
      hour gives one bundle, not 3600);
    - `cooldown` seconds must pass between two captures (flapping runtimes);
    - the filesystem must keep `min_free` bytes free;
    - old bundles rotate out: before a capture the oldest are deleted down to `max_captures` - 1,
      after it down to `max_captures` and `disk_budget` bytes (`make_room`, `rotate`).
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
        problem = writable_problem(self.capture_dir, self.min_free)
        if problem:
            return Decision(False, problem)
        return Decision(True, "stall started")

    def captured(self, now: float) -> None:
        self.last_capture = now

    def make_room(self) -> list[Path]:
        """Before a capture: delete the oldest bundles so the new one makes at most `max_captures`."""
        return rotate(self.capture_dir, self.max_captures - 1, self.disk_budget, keep_newest=False)

    def rotate(self) -> list[Path]:
        """After a capture: keep the newest bundles within `max_captures` and `disk_budget`."""
        return rotate(self.capture_dir, self.max_captures, self.disk_budget)

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


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trigger_record(
    status: Any,
    endpoint: str,
    stall_threshold: float,
    call_timeout: float | None = None,
    source: str = "watch",
    history: Sequence[Any] = (),
) -> dict[str, Any]:
    """The manifest's `trigger` record (see the module docstring) from a probe status
    (plegdoctor.live.probe.ProbeStatus: now, reason, in_flight_method, in_flight_seconds,
    last_success, last). `history`: the probe's recent CallResults (RelistProbe.recent_calls),
    written as `calls: [[started_at, method, seconds, ok], ...]` so the report can draw
    the CRI latency before the stall."""
    now = float(status.now)
    method = status.in_flight_method or ""
    seconds = float(status.in_flight_seconds or 0.0) if method else 0.0
    started = now - seconds if method else None
    last = status.last
    if not method and last is not None:
        # the stall is a call that returned late or failed on its deadline: the last relist's
        # slowest (or failed) call
        calls = list(getattr(last, "calls", ()) or ())
        slow = next((c for c in calls if not c.ok), None) or (max(calls, key=lambda c: c.seconds) if calls else None)
        if slow is not None:
            method, seconds, started = slow.method, float(slow.seconds), float(slow.started)
    since_ok = status.seconds_since_success
    return {
        "source": source,
        "reason": status.reason or (f"{method} stalled" if method else "stall"),
        "method": method,
        "in_flight_method": status.in_flight_method or "",
        "in_flight_seconds": round(float(status.in_flight_seconds or 0.0), 3),
        "call_seconds": round(seconds, 3),
        "call_started_at": _iso(started),
        "detected_at": _iso(now),
        "last_success_at": _iso(status.last_success),
        "seconds_since_success": None if since_ok is None else round(float(since_ok), 3),
        "stall_threshold": stall_threshold,
        "call_timeout": call_timeout,
        "runtime_endpoint": endpoint,
        "calls": [[_iso(c.started), c.method, round(float(c.seconds), 3), bool(c.ok)] for c in history],
    }
