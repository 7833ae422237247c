"""kubelet messages -> timeline events (what `kubelet.KubeletHandler` records for a line).

Pure functions of a klog body (no time, no line number), so the handler caches the plan
of a body the kubelet repeats: `split_body` (message, key=value fields, form) and
`events_of` (the (EventKind, attrs) a message yields).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from plegdoctor.model import EventKind
from plegdoctor.parsers.logs.common import GO_QUOTED, go_unquote, parse_go_duration

Plan = list[tuple[EventKind, dict[str, Any]]]
Emit = Callable[..., None]

# Every pattern here is linear on a line of any length (lines may be 64 MiB): no pattern is
# searched from every position of a long run it then fails on, and runs are possessive.
_LAST_SEEN = re.compile(r"pleg was last seen active (\S++) ago")
_CRI_FAILED = re.compile(r" from (runtime|image) service failed")  # the method: _cri_method
_WORD = re.compile(r"\w++")
_GRPC_CODE = re.compile(r"code = (\w++)")
# key=value: a key starts where a run of key characters starts (the lookbehind; a search
# from every letter of a long run would be quadratic), at its first letter
_KV = re.compile(
    r"(?<![\w.\-])(?:(?![A-Za-z_])[\w.\-])*+([A-Za-z_][\w.\-]*+)=("
    + GO_QUOTED
    + r"|\{[^{}]*+(?:\{[^{}]*+\}[^{}]*+)*+\}|[^ ]*+)"
)
_FIRST_QUOTED = re.compile(GO_QUOTED)
_EXIT_CODE = re.compile(r"-?[0-9]{1,10}")  # an int32 exit code; 5000 digits stay text
# the path list's closing `]` is found with str.find (see _du): a pattern would scan to the
# end of the line from every unclosed `[`
_DU_TOOK = re.compile(r"(?:du and find|`du`|disk usage and inodes count) on following dirs took (\S+?): \[")
_NODE_EVENT = re.compile(r"(NodeNotReady|NodeReady)")


def _fields(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if "=" not in rest:  # no key=value at all: skip the scan (it tries every position)
        return out
    for m in _KV.finditer(rest):
        v = m.group(2)
        if v.startswith('"') and len(v) >= 2:
            v = go_unquote(v[1:-1])
        out[m.group(1)] = v
    return out


def split_body(body: str) -> tuple[str, dict[str, str], str]:
    """klog body -> (message, fields, form) where form is structured|legacy."""
    if body.startswith('"'):
        m = _FIRST_QUOTED.match(body)
        if m is not None:
            return go_unquote(m.group(0)[1:-1]), _fields(body[m.end() :]), "structured"
    return body, {}, "legacy"


def events_of(message: str, fields: dict[str, str], form: str, body: str) -> Plan:
    """What events a kubelet message yields, as (kind, attrs): a function of the message
    alone (no time, no line), so the plan of a repeated body can be cached."""
    plan: Plan = []

    def add(kind: EventKind, **attrs: Any) -> None:
        plan.append((kind, attrs))

    err = fields.get("err", "")
    if "PLEG" in body or "pleg" in body:
        _pleg(add, message, fields, form, body, err)
    if "kipping pod synchronization" in message:
        error = err or message.split("skipping pod synchronization - ", 1)[-1]
        add(EventKind.SKIPPING_POD_SYNC, error=error)
    if "from runtime service failed" in message or "from image service failed" in message:
        _cri_failed(add, message, err)
    if message.startswith("Node became not ready"):
        add(
            EventKind.NODE_NOT_READY,
            message=fields.get("condition", message),
            node=fields.get("node"),
        )
    elif "event message for node" in message:
        ev = fields.get("event") or ""
        if not ev:
            m = _NODE_EVENT.search(message)
            ev = m.group(1) if m else ""
        if ev == "NodeNotReady":
            add(EventKind.NODE_NOT_READY, message=ev, node=fields.get("node"))
        elif ev == "NodeReady":
            add(EventKind.NODE_READY, node=fields.get("node"))
    if "following dirs took" in message or "du command failed" in message or "killing cmd" in message:
        _du(add, message)
    return plan


def _pleg(
    add: Emit,
    message: str,
    fields: dict[str, str],
    form: str,
    body: str,
    err: str,
) -> None:
    if message.startswith("GenericPLEG: Unable to retrieve pods"):
        error = err or message.partition("GenericPLEG: Unable to retrieve pods")[2].lstrip(": ")
        m = _GRPC_CODE.search(error)
        add(EventKind.RELIST_ERROR, error=error, code=m.group(1) if m else None)
        return
    if "Fall back to Generic PLEG" in message:
        add(EventKind.EVENTED_PLEG_FALLBACK, message=message)
        return
    if "container finished" in message and "PLEG" in message:
        exit_code = fields.get("exitCode")
        add(
            EventKind.CONTAINER_FINISHED,
            container_id=fields.get("containerID"),
            pod_id=fields.get("podID"),
            exit_code=int(exit_code) if exit_code and _EXIT_CODE.fullmatch(exit_code) else exit_code,
        )
        return
    if "PLEG is not healthy" not in body:
        return
    m = _LAST_SEEN.search(body)
    last_seen = parse_go_duration(m.group(1)) if m else None
    if message.startswith("Node became not ready"):
        shape = "node-condition"
    elif form == "json":
        shape = "json"
    elif "kipping pod synchronization" in message and form == "legacy":
        shape = "legacy"
    elif "kipping pod synchronization" in message:
        shape = "structured"
    else:
        shape = "other"
    add(
        EventKind.PLEG_UNHEALTHY,
        last_seen_seconds=last_seen,
        form=shape,
        error=err or message,
        yet_to_be_successful="pleg has yet to be successful" in body,
    )


def _cri_failed(add: Emit, message: str, err: str) -> None:
    m, method = _cri_method(message)
    error = err or message.split("service failed", 1)[-1].lstrip(": ")
    c = _GRPC_CODE.search(error) or _GRPC_CODE.search(message)
    add(
        EventKind.CRI_CALL_FAILED,
        method=method,
        code=c.group(1) if c else None,
        service=m.group(1) if m else None,
        error=error,
    )


def _du(add: Emit, message: str) -> None:
    m = _DU_TOOK.search(message)
    close = message.find("]", m.end()) if m is not None else -1
    if m is not None and close >= 0:
        secs = parse_go_duration(m.group(1))
        add(
            EventKind.KUBELET_DU_KILLED,
            seconds=secs,
            killed=False,
            paths=message[m.end() - 1 : close + 1],
            message=message,
        )
        return
    killed = "killed" in message or "timeout" in message
    if "killing cmd" in message and "du" not in message and "find" not in message:
        return
    add(EventKind.KUBELET_DU_KILLED, seconds=None, killed=killed, message=message)


def _cri_method(message: str) -> tuple[re.Match[str] | None, str | None]:
    """(the ` from runtime|image service failed` match, the method: the first word of its
    line before it), as `(\\w+)\\b.*? from (runtime|image) service failed` searched, but
    in linear time (that pattern scans to the end of the line from every word character)."""
    for m in _CRI_FAILED.finditer(message):
        start = message.rfind("\n", 0, m.start()) + 1
        w = _WORD.search(message, start, m.start())
        if w is not None:
            return m, w.group(0)
    return None, None
