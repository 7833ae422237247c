"""Reporters: render a Diagnosis, never compute one.

All reporters read the `pleg-doctor/diagnosis/v1` JSON document (`Diagnosis.to_json()`),
so every format says the same thing and a reporter cannot reach around the contract.
"""

from __future__ import annotations

from typing import Any


def render(diagnosis: Any, fmt: str, *, color: bool | None = None, width: int | None = None) -> str:
    if hasattr(diagnosis, "to_json"):
        doc = diagnosis.to_json(series=True) if fmt == "html" else diagnosis.to_json()
    else:
        doc = diagnosis
    if fmt == "json":
        from plegdoctor.report.jsonout import render_json

        return render_json(doc)
    if fmt == "markdown":
        from plegdoctor.report.markdown import render_markdown

        return render_markdown(doc)
    if fmt == "html":
        from plegdoctor.report.html import render_html

        return render_html(doc)
    from plegdoctor.report.text import render_text

    return render_text(doc, color=color, width=width)
