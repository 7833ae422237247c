"""`kubectl describe` / `kubectl get events` output: the Events table (Type, Reason, Age,
From, Message) and a node's Conditions rows, as users paste them into tickets.

Accepted variants: the `Events:` block of `kubectl describe pod|node` (columns found from
its header line; `39s (x16114 over 22h)` ages), `kubectl get events` (LAST SEEN TYPE REASON
OBJECT MESSAGE), and Conditions rows (`Ready False ... KubeletNotReady PLEG is not
healthy: ...`, or the Reason and Message columns alone). Ages are relative, so events have
no time (ts None).

What is extracted: PLEG_UNHEALTHY (with the last-seen duration) and NODE_NOT_READY events,
from the kubelet's own messages; every other row is read and counted. Lines of other kinds
in the paste (a shell prompt, command output) are counted as unread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Event, EventKind, Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.logs.common import parse_go_duration

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "kube-events"
MAX_EVENTS = 5000

_DESCRIBE_HEADER = lazy_re(r"^\s*Type\s+Reason\s+Age\s+From\s+Message\s*$")
_GET_HEADER = lazy_re(r"^\s*LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\s*$")
_RULE = lazy_re(r"^\s*-{4}\s+-{6}\s+-{3,}\s+-{4}\s+-{7}\s*$")
_ROW = lazy_re(r"^\s*(Normal|Warning)\s+(\w{1,64})\s+(.{1,40}?)\s{2,}(\S{1,80})\s{2,}(.{0,2000})$")
_GET_ROW = lazy_re(r"^\s*(\S{1,20})\s+(Normal|Warning)\s+(\w{1,64})\s+(\S{1,253})\s+(.{0,2000})$")
_CONDITION = lazy_re(
    r"^\s*(?:Ready\s+(?:True|False|Unknown)\s+.{0,120}?\s)?(KubeletNotReady|KubeletReady)\s+(.{1,2000})$"
)
_PLEG = lazy_re(r"PLEG is not healthy: pleg was last seen active (\S{1,40}) ago")
_GAP = lazy_re(r"^#{2,}\s*\[?excerpt gap\]?\s*#{2,}$|^\.\.\.$")


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only when a line matches `_DESCRIBE_HEADER`
    (holds `Reason` and `Message`), `_GET_HEADER` (holds `LAST SEEN`) or `_CONDITION`
    (holds `KubeletNotReady` or `KubeletReady`). No needle holds a newline, so each is in
    the joined text only if it is in a line."""
    text = "\n".join(lines[:200])
    if "Reason" in text and "Message" in text:
        return False
    return "LAST SEEN" not in text and "KubeletNotReady" not in text and "KubeletReady" not in text


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    head = [ln for ln in lines[:200] if ln.strip()]
    if any(_DESCRIBE_HEADER.match(ln) or _GET_HEADER.match(ln) for ln in head):
        return 0.9
    if sum(1 for ln in head if _CONDITION.match(ln)) and len(head) <= 20:
        return 0.5
    return 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    unread = Unread(ctx.report)
    kept = 0
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        text = raw.strip()
        if not text or text == "Events:" or _DESCRIBE_HEADER.match(raw) or _GET_HEADER.match(raw) or _RULE.match(raw):
            continue
        if _GAP.match(text):
            continue
        reason = message = None
        m = _ROW.match(raw)
        if m:
            reason, message = m.group(2), m.group(5)
        elif m := _GET_ROW.match(raw):
            reason, message = m.group(3), m.group(5)
        elif m := _CONDITION.match(raw):
            reason, message = m.group(1), m.group(2)
        if reason is None or message is None:
            unread(lineno, raw)
            continue
        ctx.report.records += 1
        if kept >= MAX_EVENTS:
            continue
        ref = Ref(source.display, lineno, quote(raw))
        pm = _PLEG.search(message)
        if pm:
            seconds = parse_go_duration(pm.group(1))
            ctx.evidence.events.append(
                Event(None, EventKind.PLEG_UNHEALTHY, "kubelet", ref, {"last_seen_seconds": seconds, "form": KIND})
            )
            kept += 1
        if reason in ("NodeNotReady", "KubeletNotReady"):
            ctx.evidence.events.append(Event(None, EventKind.NODE_NOT_READY, "kubelet", ref, {"message": message}))
            kept += 1
    unread.warn()
