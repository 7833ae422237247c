"""Markdown reporter: for pasting into a ticket (GitHub/GitLab/Jira markdown)."""

from __future__ import annotations

from typing import Any

from plegdoctor.report.common import confidence_word, escape_controls, fmt_seconds, fmt_time, verdict, where


def _code(text: str) -> str:
    text = text.replace("`", "'")
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: dict[str, Any]) -> str:
    doc = escape_controls(doc)
    out: list[str] = []
    tool = doc.get("tool", {})
    out.append(f"## pleg-doctor {tool.get('version', '')}: PLEG stall diagnosis")
    out.append("")
    out.append(f"**Verdict:** {verdict(doc)}")
    pleg = doc.get("pleg") or {}
    out += ["", "### PLEG relisting", ""]
    if pleg.get("relists"):
        out.append(
            f"- {pleg['relists']} relists from {fmt_time(pleg.get('first'))} to {fmt_time(pleg.get('last'))};"
            f" longest interval {fmt_seconds(pleg.get('max_gap_seconds'))}"
        )
    else:
        out.append("- no `GenericPLEG: Relisting` lines in the evidence")
    gaps = pleg.get("gaps") or []
    if gaps:
        out += ["", "| gap | from | to | last relist before | first after |", "|---|---|---|---|---|"]
        for gap in gaps[:20]:
            refs = gap.get("evidence") or []
            before = where(refs[0]) if len(refs) > 0 else ""
            after = where(refs[1]) if len(refs) > 1 else ""
            out.append(
                f"| {fmt_seconds(gap['seconds'])} | {fmt_time(gap.get('start'))} | {fmt_time(gap.get('end'))}"
                f" | {_cell(before)} | {_cell(after)} |"
            )
    activity = [(gap, ev) for gap in gaps[:20] for ev in (gap.get("runtime") or [])[:10]]
    if activity:
        out += ["", "Meanwhile in the runtime:", ""]
        for _gap, ev in activity:
            out.append(
                f"- {fmt_time(ev.get('ts'))} {ev.get('process', '')}: {ev.get('summary', '')} ({_code(where(ev))})"
            )
    for win in pleg.get("unhealthy") or []:
        out.append(
            f"- **PLEG unhealthy** {fmt_time(win.get('start'))} to {fmt_time(win.get('end'))},"
            f" last seen up to {fmt_seconds(win.get('max_last_seen_seconds'))} ago"
        )
    out += ["", "### Root causes", ""]
    causes = doc.get("root_causes") or []
    if not causes:
        out.append("None found.")
    for n, cause in enumerate(causes, 1):
        conf = cause.get("confidence", 0.0)
        out.append(
            f"{n}. **{cause['class']}**, confidence {conf:.0%} ({confidence_word(conf)}): {cause.get('summary', '')}"
        )
        for i, link in enumerate(cause.get("chain") or [], 1):
            who = link.get("process", "")
            if link.get("goroutine") is not None:
                who += f" goroutine {link['goroutine']}"
            evs = ", ".join(_code(where(ev)) for ev in (link.get("evidence") or [])[:2])
            out.append(f"   {i}. {who}: {link.get('detail', '')} ({evs})")
        for fix in cause.get("fixes") or []:
            out.append(f"   - Fix: {fix}")
        if cause.get("references"):
            out.append("   - References: " + ", ".join(cause["references"]))
    findings = doc.get("findings") or []
    out += ["", "### Findings", ""]
    if findings:
        out += ["| code | severity | finding | evidence |", "|---|---|---|---|"]
        for f in findings:
            ev = "<br>".join(_code(where(e)) for e in (f.get("evidence") or [])[:3])
            out.append(f"| {f['code']} | {f['severity']} | {_cell(f.get('title', ''))} | {ev} |")
    else:
        out.append("None.")
    if doc.get("next_steps"):
        out += ["", "### Next steps", ""]
        out += [f"- {s}" for s in doc["next_steps"]]
    out += [
        "",
        "<details><summary>Inputs read</summary>",
        "",
        "| input | kind | records | warnings |",
        "|---|---|---|---|",
    ]
    for inp in doc.get("inputs") or []:
        warns = "; ".join(inp.get("warnings") or [])
        out.append(f"| {_cell(inp['path'])} | {inp['kind']} | {inp.get('records', 0)} | {_cell(warns)} |")
    for note in doc.get("notes") or []:
        out.append(f"\nAssumed: {note}")
    out += ["", "</details>", ""]
    return "\n".join(out)
