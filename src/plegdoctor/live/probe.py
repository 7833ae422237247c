"""Relist probe: what kubelet's generic PLEG does each period (ListPodSandbox, then ListContainers), timed.

At most one call is ever in flight: the probe runs in one thread and starts the next relist
only after the previous one returned (a sliding period, like kubelet's `wait.Until`), so a
hung runtime gets one pending call, never a pile. A stall is visible while it lasts: the age of
the call in flight is read by `status()` without waiting for the call to return.

A runtime that is down (socket absent, connection refused: calls fail at once) is a stall too
once no relist has succeeded for longer than the threshold. "Since" counts from the last
successful relist start, or, when none is known, from `down_since` (watch's start, or the
first failure a previous watch persisted), so the figure exists and grows from the first scrape.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from plegdoctor.live.cri.client import CRIClient, CRIError

RELIST_METHODS = ("ListPodSandbox", "ListContainers")
HISTORY_CALLS = 600  # calls kept for a capture's trigger record (5 min of relists at 1 s)


@dataclass(frozen=True, slots=True)
class CallResult:
    method: str
    started: float  # wall clock (epoch seconds)
    seconds: float
    ok: bool
    error_kind: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class RelistResult:
    started: float  # wall clock
    seconds: float
    ok: bool
    calls: tuple[CallResult, ...]
    sandboxes: int = -1
    containers: int = -1

    @property
    def error(self) -> str:
        return next((c.error for c in self.calls if not c.ok), "")

    @property
    def error_kind(self) -> str:
        return next((c.error_kind for c in self.calls if not c.ok), "")


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """What the probe knows at one instant (times are wall-clock epoch seconds)."""

    now: float
    runtime_up: bool
    stalled: bool
    reason: str
    in_flight_method: str
    in_flight_seconds: float
    last_success: float | None
    last: RelistResult | None
    down_since: float | None = None  # reference when no success is known (see the module docstring)

    @property
    def seconds_since_success(self) -> float | None:
        """Seconds since the last successful relist start (a lower bound from `down_since` when none is known)."""
        ref = self.last_success if self.last_success is not None else self.down_since
        return None if ref is None else max(0.0, self.now - ref)


class RelistProbe:
    """Run relists against `client` every `period` seconds (sliding) in a background thread."""

    def __init__(
        self,
        client: CRIClient,
        period: float = 1.0,
        stall_threshold: float = 5.0,
        call_timeout: float = 120.0,
        on_call: Callable[[CallResult], None] | None = None,
        on_relist: Callable[[RelistResult], None] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        last_success: float | None = None,
        down_since: float | None = None,
    ):
        if period <= 0 or stall_threshold <= 0 or call_timeout <= 0:
            raise ValueError("period, stall threshold and call timeout must be positive")
        self.client = client
        self.period = period
        self.stall_threshold = stall_threshold
        self.call_timeout = call_timeout
        self.on_call = on_call
        self.on_relist = on_relist
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()
        self._in_flight: tuple[str, float, float] | None = None  # method, mono start, wall start
        self._relist_started: float | None = None  # mono start of the relist running now
        self._last: RelistResult | None = None
        self._last_success: float | None = last_success
        self.down_since: float = down_since if down_since is not None else wall()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relists = 0
        self._history: deque[CallResult] = deque(maxlen=HISTORY_CALLS)

    # -- one relist ---------------------------------------------------------------------
    def _call(self, method: str) -> tuple[CallResult, int]:
        m0, w0 = self._mono(), self._wall()
        with self._lock:
            self._in_flight = (method, m0, w0)
        count = -1
        try:
            if method == "ListPodSandbox":
                count = len(self.client.list_pod_sandbox(timeout=self.call_timeout))
            else:
                count = len(self.client.list_containers(timeout=self.call_timeout))
            result = CallResult(method, w0, self._mono() - m0, True)
        except CRIError as exc:
            result = CallResult(method, w0, self._mono() - m0, False, exc.kind, str(exc))
        finally:
            with self._lock:
                self._in_flight = None
        with self._lock:
            self._history.append(result)
        if self.on_call is not None:
            self.on_call(result)
        return result, count

    def run_once(self) -> RelistResult:
        """One relist, synchronously (ListPodSandbox then ListContainers, like GetPods)."""
        m0, w0 = self._mono(), self._wall()
        with self._lock:
            self._relist_started = m0
        calls: list[CallResult] = []
        counts: list[int] = []
        for method in RELIST_METHODS:
            res, count = self._call(method)
            calls.append(res)
            counts.append(count)
            if not res.ok:
                break
        ok = all(c.ok for c in calls) and len(calls) == len(RELIST_METHODS)
        result = RelistResult(
            started=w0,
            seconds=self._mono() - m0,
            ok=ok,
            calls=tuple(calls),
            sandboxes=counts[0] if counts else -1,
            containers=counts[1] if len(counts) > 1 else -1,
        )
        with self._lock:
            self._relist_started = None
            self._last = result
            self.relists += 1
            if ok:
                # like kubelet's relistTime: the time the successful relist *started*
                self._last_success = w0
        if self.on_relist is not None:
            self.on_relist(result)
        return result

    # -- state --------------------------------------------------------------------------
    def recent_calls(self) -> list[CallResult]:
        """The last HISTORY_CALLS calls that returned, oldest first (for a capture's record)."""
        with self._lock:
            return list(self._history)

    def seed(self, last_success: float | None, down_since: float | None) -> None:
        """Times a previous watch persisted (before `start`): the last success, or since when none is known."""
        with self._lock:
            if last_success is not None and (self._last_success is None or last_success > self._last_success):
                self._last_success = last_success
            if down_since is not None:
                self.down_since = min(self.down_since, down_since)

    def status(self) -> ProbeStatus:
        now_m, now_w = self._mono(), self._wall()
        with self._lock:
            in_flight, last, last_success = self._in_flight, self._last, self._last_success
            relist_started = self._relist_started
        method, age = "", 0.0
        if in_flight is not None:
            method, age = in_flight[0], max(0.0, now_m - in_flight[1])
        running = 0.0 if relist_started is None else max(0.0, now_m - relist_started)
        stalled, reason = False, ""
        if age > self.stall_threshold:
            stalled, reason = True, f"{method} in flight for {age:.1f}s (threshold {self.stall_threshold:g}s)"
        elif running > self.stall_threshold:
            # the stalled call returned but its relist has not finished: still the same stall
            stalled, reason = True, f"relist running for {running:.1f}s (threshold {self.stall_threshold:g}s)"
        elif last is not None and not last.ok and last.error_kind == "deadline-exceeded":
            stalled, reason = True, last.error
        elif last is not None and last.seconds > self.stall_threshold:
            stalled, reason = True, f"last relist took {last.seconds:.1f}s (threshold {self.stall_threshold:g}s)"
        elif last is not None and not last.ok:
            ref = last_success if last_success is not None else self.down_since
            down_for = max(0.0, now_w - ref)
            if down_for > self.stall_threshold:
                stalled = True
                reason = f"runtime down: no relist succeeded for {down_for:.0f}s: {last.error_kind}: {last.error}"
        # the runtime is "up" while it answers; a call hanging past the threshold counts as down
        runtime_up = last is not None and last.ok and not stalled
        if last is not None and not last.ok and last.error_kind not in ("deadline-exceeded",):
            reason = reason or last.error
        return ProbeStatus(
            now=now_w,
            runtime_up=runtime_up,
            stalled=stalled,
            reason=reason,
            in_flight_method=method,
            in_flight_seconds=age,
            last_success=last_success,
            last=last,
            down_since=self.down_since,
        )

    # -- thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.period)

    def start(self) -> RelistProbe:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pleg-doctor-relist-probe", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the loop to end; a call hung in the runtime is abandoned (daemon thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
