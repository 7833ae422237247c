"""The Kubernetes objects `watch --publish` sends, as plain dicts (no `kubernetes` import here).

- the NodeCondition `ContainerRuntimeStalled` (status True while relists stall, reason = the
  root-cause class in CamelCase, message = the one-line verdict capped at `MESSAGE_CAP` bytes),
  sent as a strategic-merge patch of `nodes/status` (conditions merge by `type`);
- a core/v1 Warning Event on the Node, one per capture, named from node + capture so a re-send
  is an update of the same object (`count`), never a new one;
- the hold-for-repair marks: the annotation `karpenter.sh/do-not-disrupt: "true"` and the
  condition `PlegDoctorCapturing`.

Every builder takes the time as an argument, so the tests drive them with a fixed clock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CONDITION_TYPE = "ContainerRuntimeStalled"
CAPTURING_TYPE = "PlegDoctorCapturing"
EVENT_REASON = "ContainerRuntimeStalled"
COMPONENT = "pleg-doctor"
HOLD_ANNOTATION = "karpenter.sh/do-not-disrupt"
# Events about cluster-scoped objects (Nodes) live in "default", like the kubelet's own: the
# core/v1 validation wants the Event's namespace to be "" or "default" for them.
EVENT_NAMESPACE = "default"

REASON_RELISTS_ANSWER = "RelistsAnswer"
REASON_STALLED_PENDING = "RelistsStalled"  # stalled, no analysis (yet, or none: no capture dir)
REASON_CAPTURING = "CaptureRunning"
REASON_CAPTURE_DONE = "CaptureDone"
REASON_HOLD_TIME_LIMIT = "HoldTimeLimit"

# What the API server accepts as a condition reason (metav1.Condition's pattern; node
# conditions are not validated by it, but the repair controllers that match reasons expect it).
REASON_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
MESSAGE_CAP = 1024  # bytes of UTF-8 (core/v1 Events of the new API are capped at 1 KiB too)
REASON_CAP = 128
NAME_CAP = 253  # a DNS subdomain: the Event's name


def reason_from_class(cls: str | None) -> str:
    """A root-cause class as a condition reason: `fsync-io-pressure` -> `FsyncIoPressure`.

    Each run of letters and digits is one word with its first letter upper-cased; a result that
    would start with a digit gets `Class` in front; nothing left -> `Unknown`."""
    words = re.findall(r"[A-Za-z0-9]+", cls or "")
    reason = "".join(w[:1].upper() + w[1:] for w in words)[:REASON_CAP]
    if not reason:
        return "Unknown"
    if not reason[0].isalpha():
        reason = ("Class" + reason)[:REASON_CAP]
    return reason


def one_line(text: str, cap: int = MESSAGE_CAP) -> str:
    """`text` on one line (every run of whitespace or control characters -> one space), cut to
    at most `cap` bytes of UTF-8 (never inside a character), with `...` when cut."""
    flat = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", text).split())
    raw = flat.encode()
    if len(raw) <= cap:
        return flat
    return raw[: max(0, cap - 3)].decode("utf-8", "ignore") + "..."


def rfc3339(ts: float) -> str:
    """A metav1.Time: seconds precision, UTC, `Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Verdict:
    """What one analysis says, as the condition and the Event show it."""

    cls: str | None  # the root-cause class, verbatim (None: no analysis)
    line: str  # the one-line verdict (report.common.verdict)
    capture: str | None = None  # the capture's file name


def verdict_of(diagnosis: Any, capture: str | None) -> Verdict:
    """The verdict of a `Diagnosis` (or None: not analysed) for the capture named `capture`."""
    if diagnosis is None:
        return Verdict(None, "not analysed", capture)
    from plegdoctor.report.common import verdict

    doc = diagnosis.to_json()
    causes = doc.get("root_causes") or []
    cls = str(causes[0]["class"]) if causes else None
    return Verdict(cls, one_line(verdict(doc)), capture)


def condition(
    ctype: str, status: bool, reason: str, message: str, heartbeat: float, transition: float
) -> dict[str, Any]:
    """A NodeCondition (core/v1)."""
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": one_line(message),
        "lastHeartbeatTime": rfc3339(heartbeat),
        "lastTransitionTime": rfc3339(transition),
    }


def status_patch(*conditions: dict[str, Any]) -> dict[str, Any]:
    """A strategic-merge patch of nodes/status: NodeStatus.conditions merge on `type`, so only
    the conditions named here change and the kubelet's stay as they are."""
    return {"status": {"conditions": list(conditions)}}


def stalled_condition(
    stalled: bool, verdict: Verdict | None, stall_reason: str, heartbeat: float, transition: float
) -> dict[str, Any]:
    """`ContainerRuntimeStalled` for the state a Watcher is in.

    True: reason = the class of the stall's analysis (or `RelistsStalled` until there is one),
    message = the one-line verdict (or the probe's reason). False: reason `RelistsAnswer`, the
    message names the last analysed capture if any."""
    if stalled:
        if verdict is not None and verdict.cls:
            reason, message = reason_from_class(verdict.cls), verdict.line
        else:
            reason = REASON_STALLED_PENDING
            message = f"relists stall: {stall_reason or 'a relist call does not return'}"
    else:
        reason = REASON_RELISTS_ANSWER
        message = "relists answer"
        if verdict is not None and verdict.capture:
            message += f"; last stall: {verdict.cls or 'not analysed'} (capture {verdict.capture})"
    return condition(CONDITION_TYPE, stalled, reason, message, heartbeat, transition)


def event_name(node: str, capture: str) -> str:
    """`<node>.<16 hex of sha256(capture)>`: the same capture always names the same Event."""
    digest = hashlib.sha256(capture.encode()).hexdigest()[:16]
    return f"{node[: NAME_CAP - 17]}.{digest}"


def event_message(verdict: Verdict) -> str:
    cls = verdict.cls or "unknown"
    return one_line(f"capture {verdict.capture or '-'}: root cause {cls}: {verdict.line}")


def stall_event(
    node: str, node_uid: str | None, verdict: Verdict, name: str, first: float, last: float, count: int
) -> dict[str, Any]:
    """A core/v1 Warning Event on the Node (the kubelet's node Events use the node name as UID
    when it has no other; so do we)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": EVENT_NAMESPACE},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid or node},
        "reason": EVENT_REASON,
        "message": event_message(verdict),
        "type": "Warning",
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT,
        "reportingInstance": node[:128],
        "firstTimestamp": rfc3339(first),
        "lastTimestamp": rfc3339(last),
        "count": count,
    }


def event_update(verdict: Verdict, last: float, count: int) -> dict[str, Any]:
    """The patch that folds a repeat into an existing Event (count, last time, newest message)."""
    return {"count": count, "lastTimestamp": rfc3339(last), "message": event_message(verdict)}


def annotation_patch(value: str | None) -> dict[str, Any]:
    """Set (`"true"`) or remove (None: a JSON null deletes the key) the hold annotation."""
    return {"metadata": {"annotations": {HOLD_ANNOTATION: value}}}


def capturing_condition(on: bool, reason: str, message: str, heartbeat: float, transition: float) -> dict[str, Any]:
    return condition(CAPTURING_TYPE, on, reason, message, heartbeat, transition)


def node_condition(node: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    """The condition `ctype` of a Node object as the API returned it (None if absent)."""
    for cond in ((node or {}).get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None
