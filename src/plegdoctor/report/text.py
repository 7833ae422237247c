"""Terminal reporter: readable in 80 columns, colour only on a TTY (or --color)."""

from __future__ import annotations

import io
import sys
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from plegdoctor.report.common import confidence_word, escape_controls, fmt_seconds, fmt_time, verdict, where

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
MAX_GAPS_SHOWN = 10
MAX_EVENTS_PER_GAP = 8
MAX_FINDINGS_EVIDENCE = 3


def render_text(doc: dict[str, Any], *, color: bool | None = None, width: int | None = None) -> str:
    if color is None:
        color = sys.stdout.isatty()
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width or 80,
        force_terminal=color,
        color_system="standard" if color else None,
        markup=False,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )
    _Writer(console).write(escape_controls(doc))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


class _Writer:
    def __init__(self, console: Console) -> None:
        self.c = console

    def line(self, *parts: str | tuple[str, str], indent: int = 0) -> None:
        text = Text()
        for part in parts:
            if isinstance(part, tuple):
                text.append(part[0], style=part[1])
            else:
                text.append(part)
        # Padding keeps the indent on wrapped continuation lines.
        self.c.print(Padding(text, (0, 0, 0, indent)), overflow="fold")

    def heading(self, title: str) -> None:
        self.c.print()
        self.c.print(Text(title, style="bold underline"))

    def quote(self, ev: dict[str, Any], indent: int) -> None:
        self.line((where(ev), "dim"), indent=indent)
        if ev.get("text"):
            self.line(("| " + ev["text"], "dim"), indent=indent + 2)

    def write(self, doc: dict[str, Any]) -> None:
        tool = doc.get("tool", {})
        self.line((f"pleg-doctor {tool.get('version', '')}", "bold"), " - why the kubelet stopped relisting")
        causes = doc.get("root_causes") or []
        style = "bold red" if causes and causes[0].get("class") != "unknown" else "bold"
        self.line(("Verdict: ", "bold"), (verdict(doc), style))
        self.pleg(doc.get("pleg") or {})
        self.root_causes(causes)
        self.findings(doc.get("findings") or [])
        self.next_steps(doc.get("next_steps") or [])
        self.inputs(doc.get("inputs") or [], doc.get("notes") or [])

    def pleg(self, pleg: dict[str, Any]) -> None:
        self.heading("PLEG relisting (kubelet)")
        relists = pleg.get("relists", 0)
        if not relists and not pleg.get("unhealthy"):
            self.line("no GenericPLEG relist lines in the evidence (kubelet log at -v=5 or higher needed)", indent=2)
        if relists:
            self.line(f"{relists} relists, {fmt_time(pleg.get('first'))} .. {fmt_time(pleg.get('last'))}", indent=2)
            stats = []
            for key, label in (("interval_p50_seconds", "p50"), ("interval_p99_seconds", "p99")):
                if pleg.get(key) is not None:
                    stats.append(f"{label} {fmt_seconds(pleg[key])}")
            if pleg.get("max_gap_seconds") is not None:
                stats.append(f"longest {fmt_seconds(pleg['max_gap_seconds'])}")
            if stats:
                self.line("interval: " + ", ".join(stats), indent=2)
        gaps = pleg.get("gaps") or []
        threshold = pleg.get("gap_threshold_seconds")
        label = f"Gaps over {fmt_seconds(threshold)}" if threshold else "Gaps"
        if gaps:
            self.line((f"{label}: {len(gaps)}", "bold"), indent=2)
        for gap in gaps[:MAX_GAPS_SHOWN]:
            self.line(
                (f"{fmt_seconds(gap['seconds'])} ", "bold red"),
                f"{fmt_time(gap.get('start'))} -> {fmt_time(gap.get('end'))}",
                indent=4,
            )
            for name, ev in zip(("last relist before", "first relist after"), gap.get("evidence") or [], strict=False):
                self.line(f"{name}: ", (where(ev), "dim"), indent=6)
            events = gap.get("runtime") or []
            if events:
                self.line("meanwhile in the runtime:", indent=6)
            for ev in events[:MAX_EVENTS_PER_GAP]:
                self.line(
                    f"{fmt_time(ev.get('ts'))} {ev.get('process', '')}: ",
                    (ev.get("summary") or ev.get("kind", ""), "yellow"),
                    indent=8,
                )
                self.quote(ev, indent=10)
            if len(events) > MAX_EVENTS_PER_GAP:
                self.line(f"... {len(events) - MAX_EVENTS_PER_GAP} more", indent=8)
        if len(gaps) > MAX_GAPS_SHOWN:
            self.line(f"... {len(gaps) - MAX_GAPS_SHOWN} more gaps (see -o json)", indent=4)
        for win in pleg.get("unhealthy") or []:
            self.line(
                ("PLEG unhealthy ", "bold red"),
                f"{fmt_time(win.get('start'))} -> {fmt_time(win.get('end'))}",
                f", last seen up to {fmt_seconds(win.get('max_last_seen_seconds'))} ago",
                indent=2,
            )
            for ev in (win.get("runtime") or [])[:MAX_EVENTS_PER_GAP]:
                self.line(
                    f"{fmt_time(ev.get('ts'))} {ev.get('process', '')}: ", (ev.get("summary", ""), "yellow"), indent=4
                )
                self.quote(ev, indent=6)
        holds = pleg.get("update_resources") or []
        long_holds = [h for h in holds if (h.get("seconds") or 0) >= 1 or h.get("open")]
        if long_holds:
            self.line("UpdateContainerResources (holds the container status lock):", indent=2)
            for h in long_holds[:5]:
                dur = "still running at end of log" if h.get("open") else fmt_seconds(h.get("seconds"))
                self.line(
                    f"{str(h.get('container_id', ''))[:13]} {fmt_time(h.get('start'))} ", (dur, "yellow"), indent=4
                )

    def root_causes(self, causes: list[dict[str, Any]]) -> None:
        self.heading("Root causes (best first)")
        if not causes:
            self.line("none found", indent=2)
        for n, cause in enumerate(causes, 1):
            conf = cause.get("confidence", 0.0)
            self.c.print()
            self.line(
                (f"{n}. {cause['class']}", "bold"),
                f"  confidence {conf:.0%} ({confidence_word(conf)})",
                indent=1,
            )
            self.line(cause.get("summary", ""), indent=4)
            chain = cause.get("chain") or []
            if chain:
                self.line(("Chain (symptom first):", "bold"), indent=4)
            for i, link in enumerate(chain, 1):
                who = link.get("process", "")
                if link.get("pid"):
                    who += f"[{link['pid']}]"
                if link.get("goroutine") is not None:
                    who += f" goroutine {link['goroutine']}"
                self.line(f"{i}. ", (who, "cyan"), ": ", link.get("detail", ""), indent=6)
                for ev in (link.get("evidence") or [])[:2]:
                    self.quote(ev, indent=9)
            fixes = cause.get("fixes") or []
            if fixes:
                self.line(("Fix:", "bold green"), indent=4)
            for fix in fixes:
                self.line("- ", fix, indent=6)
            refs = cause.get("references") or []
            if refs:
                self.line("References: ", (" ".join(refs), "dim"), indent=4)

    def findings(self, findings: list[dict[str, Any]]) -> None:
        self.heading("Findings")
        if not findings:
            self.line("none", indent=2)
        for f in findings:
            sev = f.get("severity", "info")
            self.line(
                (f"{f['code']} ", "bold"), (f"{sev:<8} ", SEVERITY_STYLE.get(sev, "")), f.get("title", ""), indent=2
            )
            for ev in (f.get("evidence") or [])[:MAX_FINDINGS_EVIDENCE]:
                self.quote(ev, indent=8)
            extra = len(f.get("evidence") or []) - MAX_FINDINGS_EVIDENCE
            if extra > 0:
                self.line(f"... {extra} more", indent=8)

    def next_steps(self, steps: list[str]) -> None:
        if not steps:
            return
        self.heading("Next steps (to be surer)")
        for step in steps:
            self.line("- ", step, indent=2)

    def inputs(self, inputs: list[dict[str, Any]], notes: list[str]) -> None:
        self.heading("Inputs read")
        for inp in inputs:
            unparsed = inp.get("unparsed_lines") or 0
            extra = f", {unparsed} lines not understood" if unparsed else ""
            self.line(f"{inp['path']}", indent=2)
            self.line((f"{inp['kind']}", "cyan"), f", {inp.get('records', 0)} records{extra}", indent=6)
            for w in inp.get("warnings") or []:
                self.line(("warning: ", "yellow"), w, indent=6)
            for i in inp.get("inferred") or []:
                self.line(("note: ", "dim"), i, indent=6)
        for note in notes:
            self.line(("assumed: ", "dim"), note, indent=2)
