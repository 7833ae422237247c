"""Small formatting helpers shared by the text, Markdown and HTML reporters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from plegdoctor.timeutil import format_seconds


def fmt_seconds(value: float | None) -> str:
    """Durations in reports: `-` when unknown, from hours down to milliseconds."""
    return format_seconds(value)


def fmt_time(value: str | None) -> str:
    """ISO 8601 -> `2023-06-02 05:48:07.352` (UTC shown as such)."""
    if not value:
        return "-"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond // 1000:03d}"
    off = dt.utcoffset()
    if off is not None and off.total_seconds() == 0:
        text += "Z"
    return text


def clip(text: str, n: int) -> str:
    """`text` cut to `n` characters, the last one an ellipsis when cut (HTML labels)."""
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def where(ev: dict[str, Any]) -> str:
    return f"{ev.get('path', '?')}:{ev.get('line', '?')}"


def verdict(doc: dict[str, Any]) -> str:
    causes = doc.get("root_causes") or []
    if not causes:
        pleg = doc.get("pleg") or {}
        if pleg.get("gaps") or pleg.get("unhealthy"):
            return "Relisting stalled, but the evidence does not show why (see next steps)."
        return "No PLEG stall and no known cause found in the evidence given."
    top = causes[0]
    return f"{top['class']} (confidence {top['confidence']:.0%}): {top['summary']}"


def confidence_word(value: float) -> str:
    if value >= 0.8:
        return "high"
    if value >= 0.5:
        return "medium"
    return "low"


# C0 controls but tab and newline, DEL, C1 controls, and the Unicode bidirectional overrides:
# what a file name or a log line could use to move a terminal's cursor, set its title (OSC),
# or reorder what a reader sees. Reports show them as visible escapes.
_CONTROL = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in (
        *range(0x00, 0x09),
        *range(0x0B, 0x20),
        *range(0x7F, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}


def escape_controls(value: Any) -> Any:
    """The document with every control character in its strings shown as an escape
    (`\\x1b[2J` -> `\\\\x1b[2J`); dicts, lists and tuples are copied, other values returned."""
    if isinstance(value, str):
        return value.translate(_CONTROL) if not value.isprintable() else value
    if isinstance(value, dict):
        return {escape_controls(k): escape_controls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_controls(v) for v in value]
    return value


def split_fix(text: str) -> tuple[str, str, str]:
    """A fix text -> (what to do, the link it removes, the rest): fix texts say
    "... Removes the link: X. Does NOT remove Y." (rules/fixes.py); ("", "", "") parts when
    the text says no such thing."""
    at = text.find("Removes ")
    if at == -1:
        return text.strip(), "", ""
    action = text[:at].strip()
    rest = text[at:]
    end = len(rest)
    for stop in (". Does NOT", ". Risk", ". Lab:", ". Your ", ". Needs", ". Note"):
        i = rest.find(stop)
        if i != -1:
            end = min(end, i + 1)
    return action, rest[:end].strip(), rest[end:].strip()
