"""`watch --publish`: tell the cluster what the node's relist probe sees, so controllers can act.

What is sent (objects built in `kube_objects`):

- the NodeCondition `ContainerRuntimeStalled` on the node's status: True while relists stall,
  reason = the root-cause class of the stall's analysis in CamelCase (`FsyncIoPressure`; the
  class verbatim is in the message), False with reason `RelistsAnswer` once relists answer.
  `lastTransitionTime` moves only when the status flips (on start it is read back from the
  Node, so a restarted watch keeps it), `lastHeartbeatTime` on every patch. Rate: a flip is
  sent at once; any other change at most once per `condition_every` (10 s); an unchanged
  condition is re-sent every `resync_every` (5 min; the kubelet's nodeStatusReportFrequency).
- one Warning Event per capture on the Node (`ContainerRuntimeStalled`, source `pleg-doctor`),
  named from node + capture; a capture within `event_cooldown` of the last Event is folded into
  it (`count` + 1, newest message) instead of a new object.
- hold for repair while a capture runs (`hold()`), removed afterwards, also on error, and at
  the latest after `hold_max` even if the capture hangs:
  `annotation`: `karpenter.sh/do-not-disrupt: "true"` on the Node. Karpenter documents that on
  a Node it blocks voluntary disruption — consolidation and drift — and that it does not block
  expiration, node auto repair or forceful termination (karpenter.sh reference/annotations).
  An annotation the Node already had is left alone (not set, not removed).
  `condition`: `PlegDoctorCapturing=True`, then False (`CaptureDone` / `HoldTimeLimit`). No
  controller reads it by itself: medik8s NodeHealthCheck remediates on the conditions listed
  in its `spec.unhealthyConditions`, pauses all new remediations of one NHC while
  `spec.pauseRequests` is non-empty (a field of the NHC object, not of the node), and skips a
  node labelled `remediation.medik8s.io/exclude-from-remediation: "true"`
  (medik8s/node-healthcheck-operator docs/configuration.md, internal/controller/
  nodehealthcheck_controller.go `isNodeRemediationExcluded`). NHC has no condition-based
  pause; `PlegDoctorCapturing` is for people, alerts and custom controllers. See docs/fleet.md.

Every API call has a deadline (`request_timeout`, for the connect and for each read) and no
retries; a failure is logged (at most once a minute per kind of call) and never stops the watch.
Calls for the condition and Events run in the publisher's own thread, so a slow API server never
delays the probe loop; the hold is set in the capture thread before the capture starts (it
waits at most one deadline per mark).

Dry-run (`DryRunSink`) prints each request as one JSON line instead of sending it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plegdoctor.errors import UserError
from plegdoctor.live import kube_objects as ko
from plegdoctor.live.kube_sinks import AlreadyExists, ApiSink, DryRunSink, NullSink, Sink

log = logging.getLogger("pleg-doctor.kube")

HOLD_MODES = ("annotation", "condition", "both")
ERROR_EVERY = 60.0  # log one failure of a kind of call at most this often


@dataclass
class PublishOptions:
    node: str
    kubeconfig: str | None = None
    in_cluster: bool = False
    dry_run: bool = False
    hold: str | None = None  # annotation | condition | both
    hold_max: float = 300.0
    condition_every: float = 10.0
    resync_every: float = 300.0
    event_cooldown: float = 600.0
    request_timeout: float = 5.0
    kube: bool = True  # False: --otlp-endpoint alone, nothing goes to the API server
    otlp_endpoint: str | None = None


def make_sink(opts: PublishOptions) -> Sink:
    if not opts.kube:
        return NullSink()
    if opts.dry_run:
        return DryRunSink()
    return ApiSink(opts.kubeconfig, opts.in_cluster, opts.request_timeout)


@dataclass
class _Tracked:
    """What was last sent of one condition."""

    status: bool | None = None
    transition: float | None = None
    sent: dict[str, Any] | None = None  # the condition without its heartbeat
    sent_at: float | None = None  # monotonic


class Publisher:
    """Publishes the watch's state; `observe` / `captured` are cheap (they store and wake the
    thread), `publish_once` does the sending (called by the thread, or directly by tests)."""

    def __init__(
        self,
        opts: PublishOptions,
        sink: Sink,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        otlp: Any = None,
    ):
        self.opts = opts
        self.sink = sink
        self.otlp = otlp  # kube_otlp.OtlpDiagnosisLog with --otlp-endpoint
        self.clock = clock
        self.monotonic = monotonic
        self.node_uid: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stalled = False
        self._stall_reason = ""
        self._known = False  # the probe has said something (a relist ended, or a stall)
        self._verdict: ko.Verdict | None = None  # of the current (or last) stall
        self._pending_events: list[ko.Verdict] = []
        self._cond = _Tracked()
        self._hold_cond = _Tracked()
        self._event: tuple[str, float, int] | None = None  # name, monotonic time created, count
        self._errors: dict[str, float] = {}
        self._hold_token = 0
        self._held: dict[int, bool] = {}  # token -> whether the annotation was ours to set
        self._annotation_preexisting = False

    # -- lifecycle ------------------------------------------------------------------------
    def prime(self) -> None:
        """Read the Node once: its UID, the condition's status and transition time as the API
        has them (a restart keeps lastTransitionTime), and a hold annotation set by someone else."""
        node = self._get_node()
        if node is None:
            return
        self.node_uid = (node.get("metadata") or {}).get("uid")
        for tracked, ctype in ((self._cond, ko.CONDITION_TYPE), (self._hold_cond, ko.CAPTURING_TYPE)):
            cond = ko.node_condition(node, ctype)
            if cond is not None and cond.get("status") in ("True", "False"):
                tracked.status = cond["status"] == "True"
                tracked.transition = ko.parse_rfc3339(cond.get("lastTransitionTime"))
        self._annotation_preexisting = _has_hold_annotation(node)

    def _get_node(self) -> dict[str, Any] | None:
        got: list[dict[str, Any] | None] = []
        self._call("get node", lambda: got.append(self.sink.get_node(self.opts.node)))
        node = got[0] if got else None
        return node if isinstance(node, dict) else None

    def start(self) -> Publisher:
        self.prime()
        self._thread = threading.Thread(target=self._run, name="pleg-doctor-publish", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.otlp is not None:
            self._call("otlp flush", self.otlp.stop)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=max(1.0, min(self.opts.condition_every, self.opts.resync_every)))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.publish_once()
            except Exception as exc:  # never let the thread die
                log.error("publish failed: %s: %s", type(exc).__name__, exc)

    # -- inputs from the watch ------------------------------------------------------------
    def observe(self, stalled: bool, reason: str, known: bool = True) -> None:
        """The probe's state, each tick. Until a relist has answered (`known`) or a stall is
        seen, nothing is published: "relists answer" would be a guess. A new stall forgets the
        last stall's verdict."""
        with self._lock:
            if stalled and not self._stalled:
                self._verdict = None
            self._stalled, self._stall_reason = stalled, reason
            self._known = self._known or known or stalled
        self._wake.set()

    def captured(self, capture: Path | str, diagnosis: Any) -> None:
        """A capture finished (`diagnosis` None: not analysed): its verdict and its Event."""
        try:
            verdict = ko.verdict_of(diagnosis, Path(capture).name)
        except Exception as exc:  # a Diagnosis that cannot be rendered still gets its Event
            log.error("verdict of %s: %s: %s", capture, type(exc).__name__, exc)
            verdict = ko.Verdict(None, "analysis could not be rendered", Path(capture).name)
        if self.otlp is not None and diagnosis is not None:
            self._call("otlp log", lambda: self.otlp.emit(verdict, diagnosis))
        with self._lock:
            self._verdict = verdict
            self._pending_events.append(verdict)
        self._wake.set()

    # -- sending --------------------------------------------------------------------------
    def publish_once(self) -> None:
        with self._lock:
            stalled, reason, verdict = self._stalled, self._stall_reason, self._verdict
            events, self._pending_events = self._pending_events, []
            known = self._known
        if known:
            self._publish_condition(stalled, reason, verdict)
        for v in events:
            self._publish_event(v)

    def _publish_condition(self, stalled: bool, reason: str, verdict: ko.Verdict | None) -> None:
        now, mono = self.clock(), self.monotonic()
        t = self._cond
        flip = t.status is None or t.status != stalled
        transition = now if flip or t.transition is None else t.transition
        cond = ko.stalled_condition(stalled, verdict, reason, now, transition)
        body = {k: v for k, v in cond.items() if k != "lastHeartbeatTime"}
        if not flip and t.sent_at is not None:
            since = mono - t.sent_at
            changed = body != t.sent
            if since < (self.opts.condition_every if changed else self.opts.resync_every):
                return
        if self._call("patch nodes/status", lambda: self.sink.patch_node_status(self.opts.node, ko.status_patch(cond))):
            t.status, t.transition, t.sent, t.sent_at = stalled, transition, body, mono

    def _publish_event(self, verdict: ko.Verdict) -> None:
        now, mono = self.clock(), self.monotonic()
        prev = self._event
        if prev is not None and mono - prev[1] < self.opts.event_cooldown:
            name, created, count = prev
            patch = ko.event_update(verdict, now, count + 1)
            if self._call("patch event", lambda: self.sink.patch_event(ko.EVENT_NAMESPACE, name, patch)):
                self._event = (name, created, count + 1)
            return
        name = ko.event_name(self.opts.node, verdict.capture or ko.rfc3339(now))
        body = ko.stall_event(self.opts.node, self.node_uid, verdict, name, now, now, 1)

        def create() -> None:
            try:
                self.sink.create_event(ko.EVENT_NAMESPACE, body)
            except AlreadyExists:  # the same capture sent before (a restart): fold into it
                self.sink.patch_event(ko.EVENT_NAMESPACE, name, ko.event_update(verdict, now, 2))

        if self._call("create event", create):
            self._event = (name, mono, 1)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one API call; on failure log it (once per ERROR_EVERY per kind) and return None.
        Returns the call's result, or True for calls that return nothing."""
        try:
            result = fn()
        except Exception as exc:
            mono = self.monotonic()
            last = self._errors.get(what)
            if last is None or mono - last >= ERROR_EVERY:
                self._errors[what] = mono
                log.warning("kubernetes %s failed (the watch goes on): %s", what, _short(exc))
            return None
        return True if result is None else result

    # -- hold for repair ------------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self, why: str = "") -> Iterator[None]:
        """Hold the node for the capture: set the marks of `opts.hold`, remove them when the
        block ends (normally or by an exception), or after `opts.hold_max` if it has not."""
        if not self.opts.hold:
            yield
            return
        token = self._hold_set(why)
        timer = threading.Timer(self.opts.hold_max, self._hold_release, args=(token, True))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            self._hold_release(token, False)

    def _hold_set(self, why: str) -> int:
        with self._lock:
            self._hold_token += 1
            token = self._hold_token
        mode = self.opts.hold or ""
        ours = False
        if mode in ("annotation", "both"):
            node = self._get_node()  # someone may have set it since the start
            if node is not None:
                self._annotation_preexisting = _has_hold_annotation(node)
            if self._annotation_preexisting:
                log.info("%s already set on the node by someone else: left alone", ko.HOLD_ANNOTATION)
            else:
                patch = ko.annotation_patch("true")
                ours = bool(self._call("patch node (hold)", lambda: self.sink.patch_node(self.opts.node, patch)))
        if mode in ("condition", "both"):
            msg = (
                f"pleg-doctor is capturing evidence of a relist stall ({why or 'stall'}); "
                f"at most {self.opts.hold_max:.0f}s"
            )
            self._send_capturing(True, ko.REASON_CAPTURING, msg)
        with self._lock:
            self._held[token] = ours
        return token

    def _hold_release(self, token: int, timed_out: bool) -> None:
        with self._lock:
            if token not in self._held:
                return  # already released (time limit, then the block's end)
            ours = self._held.pop(token)
        if timed_out:
            log.warning(
                "hold for repair: --hold-max %.0fs reached, capture still running: released", self.opts.hold_max
            )
        mode = self.opts.hold or ""
        if mode in ("annotation", "both") and ours:
            self._call("patch node (release)", lambda: self.sink.patch_node(self.opts.node, ko.annotation_patch(None)))
        if mode in ("condition", "both"):
            reason = ko.REASON_HOLD_TIME_LIMIT if timed_out else ko.REASON_CAPTURE_DONE
            msg = "hold released: " + ("time limit reached, capture still running" if timed_out else "capture done")
            self._send_capturing(False, reason, msg)

    def _send_capturing(self, on: bool, reason: str, message: str) -> None:
        now = self.clock()
        t = self._hold_cond
        transition = now if t.status is None or t.status != on or t.transition is None else t.transition
        cond = ko.capturing_condition(on, reason, message, now, transition)
        body = ko.status_patch(cond)
        if self._call("patch nodes/status (hold)", lambda: self.sink.patch_node_status(self.opts.node, body)):
            t.status, t.transition = on, transition

    @property
    def holding(self) -> bool:
        with self._lock:
            return bool(self._held)


def _has_hold_annotation(node: dict[str, Any]) -> bool:
    return ko.HOLD_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})


def _short(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def build_publisher(opts: PublishOptions) -> Publisher:
    """The publisher for watch's options (raises UserError on bad credentials); not started."""
    if opts.hold is not None and opts.hold not in HOLD_MODES:
        raise UserError(f"--hold-for-repair: one of {', '.join(HOLD_MODES)}")
    otlp = None
    if opts.otlp_endpoint:
        from plegdoctor.live.kube_otlp import OtlpDiagnosisLog

        otlp = OtlpDiagnosisLog(opts.otlp_endpoint, opts.node, timeout=opts.request_timeout)
    return Publisher(opts, make_sink(opts), otlp=otlp)
