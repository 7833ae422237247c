"""Small formatting helpers shared by the text, Markdown and HTML reporters."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 10:
        return f"{value:.0f} s"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value * 1000:.0f} ms"


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
