"""`pleg-doctor fleet --prometheus URL`: rank the nodes of a fleet by how long their runtime stalled, and why.

Reads only what `pleg-doctor watch` exports (live/exporter.py) from the Prometheus that scrapes
it, through the HTTP API (`fleet_query.PromClient`: instant queries, every one with a deadline).
All queries are evaluated at the same instant, over the same window (`--window`, default 1h).

Which label names a node: `instance` (`--node-label`). deploy/podmonitor.yaml relabels
`instance` to the pod's node name (`__meta_kubernetes_pod_node_name`), so it is the node's name
there; a static scrape config gives `HOST:PORT` unless it sets `instance` itself. Use
`--node-label node` if your relabeling adds a `node` label instead. Series of several jobs
scraping the same agent are folded with `max by (node label)`; `--match 'job="..."'` narrows
every selector.

Per node:

- **stall time** (the rank): how long in the window the agent's relist probe saw a stall,
  `sum_over_time(pleg_doctor_stalled[window:step]) * step` (a PromQL subquery; step = 1 s, or
  window/3600 for windows over an hour). `pleg_doctor_stalled` is 1 while a relist call is older
  than watch's `--stall-threshold` or the runtime refuses or is absent, so this is the time
  *above the threshold* summed over every stall of the window (the threshold itself is not
  counted). It is read from the gauge rather than from the relist-duration histogram because
  the histogram is observed only when a call returns: a runtime that is still hung (or was
  killed while hung) never adds to it. Resolution is the scrape interval: each scraped value
  holds until the next scrape.
- **longest gap**: `max_over_time` of `pleg_doctor_relist_seconds_since_success` and
  `pleg_doctor_relist_in_flight_seconds`: the longest time without a successful relist.
- **runtime up / stalled now**: the last `pleg_doctor_runtime_up` / `pleg_doctor_stalled`
  (none when the agent is not scraped now).
- **cause**: the class with the highest `pleg_doctor_root_cause_confidence` the agent exports
  now (its last analyzed capture); when it exports none now (restarted, not scraped), the last
  values seen in the window. Its severity is the highest of the `pleg_doctor_finding_active`
  findings of that class (of any class when none names it). No class -> `unknown`, with the
  next step that would give one.
- **captures**: `increase(pleg_doctor_captures_total[window])` by result, rounded.

Ranking: stall time (longest first), then the cause's severity (critical, warning, info, none),
then the cause's confidence, then the node's name.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from plegdoctor.errors import UserError
from plegdoctor.fleet_query import PromClient, Sample
from plegdoctor.timeutil import parse_duration

SCHEMA = "pleg-doctor/fleet/v1"
UNKNOWN = "unknown"
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}
MAX_SUBQUERY_POINTS = 3600  # per node: the stall time's resolution is window/3600 beyond an hour
STALL_MEASURE = "seconds pleg_doctor_stalled was 1 in the window (relist call older than --stall-threshold)"
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass(frozen=True, slots=True)
class FleetQuery:
    """The PromQL of one run: `window` and `step` in whole seconds, the node label, extra matchers."""

    window: int
    node_label: str = "instance"
    match: str = ""

    @property
    def step(self) -> int:
        return max(1, math.ceil(self.window / MAX_SUBQUERY_POINTS))

    def sel(self, metric: str) -> str:
        return f"{metric}{{{self.match}}}" if self.match else metric

    def by(self, *extra: str) -> str:
        return "by (" + ", ".join((self.node_label, *extra)) + ")"

    def expressions(self) -> dict[str, str]:
        w, by, sel = f"{self.window}s", self.by(), self.sel
        return {
            "agents": f"max {by} (max_over_time({sel('pleg_doctor_build_info')}[{w}]))",
            "stall": f"max {by} (sum_over_time({sel('pleg_doctor_stalled')}[{w}:{self.step}s]))",
            "episodes": f"max {by} (increase({sel('pleg_doctor_stalls_total')}[{w}]))",
            # two queries: one over both names would hold two series of one label set per node
            "longest": f"max {by} (max_over_time({sel('pleg_doctor_relist_seconds_since_success')}[{w}]))",
            "longest_call": f"max {by} (max_over_time({sel('pleg_doctor_relist_in_flight_seconds')}[{w}]))",
            "up": f"min {by} ({sel('pleg_doctor_runtime_up')})",
            "stalled": f"max {by} ({sel('pleg_doctor_stalled')})",
            "causes": f"max {self.by('class')} ({sel('pleg_doctor_root_cause_confidence')})",
            "causes_window": (
                f"max {self.by('class')} (last_over_time({sel('pleg_doctor_root_cause_confidence')}[{w}]))"
            ),
            "findings": f"max {self.by('code', 'class', 'severity')} ({sel('pleg_doctor_finding_active')})",
            "findings_window": (
                f"max {self.by('code', 'class', 'severity')} (last_over_time({sel('pleg_doctor_finding_active')}[{w}]))"
            ),
            "captures": f"max {self.by('result')} (increase({sel('pleg_doctor_captures_total')}[{w}]))",
        }


@dataclass
class NodeRank:
    node: str
    stall_seconds: float = 0.0
    stall_episodes: int = 0
    longest_gap_seconds: float | None = None
    runtime_up: bool | None = None
    stalled_now: bool | None = None
    cls: str = UNKNOWN
    confidence: float | None = None
    severity: str | None = None
    class_from: str | None = None  # "current" (exported now) or "window" (last seen in the window)
    classes: list[tuple[str, float]] = field(default_factory=list)
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    captures: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "skipped": 0})
    next_step: str | None = None

    def sort_key(self) -> tuple[float, int, float, str]:
        return (
            -round(self.stall_seconds, 3),
            -SEVERITY_RANK.get(self.severity or "", 0),
            -(self.confidence or 0.0),
            self.node,
        )

    def to_json(self, rank: int) -> dict[str, Any]:
        return {
            "rank": rank,
            "node": self.node,
            "stall_seconds": round(self.stall_seconds, 3),
            "stall_episodes": self.stall_episodes,
            "longest_gap_seconds": None if self.longest_gap_seconds is None else round(self.longest_gap_seconds, 3),
            "runtime_up": self.runtime_up,
            "stalled_now": self.stalled_now,
            "class": self.cls,
            "confidence": self.confidence,
            "severity": self.severity,
            "class_from": self.class_from,
            "classes": [{"class": c, "confidence": v} for c, v in self.classes],
            "findings": [{"code": c, "class": k, "severity": s} for c, k, s in self.findings],
            "captures": dict(self.captures),
            "next_step": self.next_step,
        }


def _by_node(samples: list[Sample], label: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        out[s.labels.get(label, "")].append(s)
    return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def gather(client: PromClient, q: FleetQuery, at: float) -> list[NodeRank]:
    """Run every query of `q` at `at` and fold the answers into one record per node."""
    answers = {key: _by_node(client.query(expr, at), q.node_label) for key, expr in q.expressions().items()}
    names = set().union(*(set(a) for a in answers.values()))
    nodes: list[NodeRank] = []
    for name in sorted(names):
        n = NodeRank(node=name or f"(no {q.node_label} label)")

        def one(key: str, node: str = name) -> float | None:
            vals = [v for s in answers[key].get(node, []) if (v := _finite(s.value)) is not None]
            return vals[0] if vals else None

        n.stall_seconds = (one("stall") or 0.0) * q.step
        n.stall_episodes = math.floor((one("episodes") or 0.0) + 0.5)
        gaps = [v for v in (one("longest"), one("longest_call")) if v is not None]
        n.longest_gap_seconds = max(gaps) if gaps else None
        up, stalled = one("up"), one("stalled")
        n.runtime_up = None if up is None else up >= 1
        n.stalled_now = None if stalled is None else stalled >= 1
        for s in answers["captures"].get(name, []):
            result = s.labels.get("result", "")
            if result in n.captures and (v := _finite(s.value)) is not None:
                n.captures[result] = math.floor(v + 0.5)
        _choose_cause(n, answers, name)
        n.next_step = next_step(n, q)
        nodes.append(n)
    return nodes


def _choose_cause(n: NodeRank, answers: dict[str, dict[str, list[Sample]]], name: str) -> None:
    for source, ckey, fkey in (("current", "causes", "findings"), ("window", "causes_window", "findings_window")):
        causes = [
            (s.labels.get("class", ""), v)
            for s in answers[ckey].get(name, [])
            if (v := _finite(s.value)) is not None and s.labels.get("class")
        ]
        findings = [
            (s.labels.get("code", ""), s.labels.get("class", ""), s.labels.get("severity", ""))
            for s in answers[fkey].get(name, [])
            if s.value >= 1
        ]
        if not causes and not findings:
            continue
        causes.sort(key=lambda cv: (-cv[1], cv[0]))
        n.classes, n.findings, n.class_from = causes, sorted(findings), source
        if causes:
            n.cls, n.confidence = causes[0][0], round(causes[0][1], 3)
        own = [sev for _, cls, sev in findings if cls == n.cls] or [sev for _, _, sev in findings]
        ranked = sorted((s for s in own if s in SEVERITY_RANK), key=lambda s: -SEVERITY_RANK[s])
        n.severity = ranked[0] if ranked else None
        return


def next_step(n: NodeRank, q: FleetQuery) -> str | None:
    """What to do about a node whose cause is not known (None when a class was found)."""
    scraped = n.runtime_up is not None
    if n.cls != UNKNOWN:
        if not scraped:
            return f"pleg-doctor on {n.node} is not scraped now: the cause shown is the last one seen in the window"
        return None
    if n.confidence is not None:  # the analysis itself said unknown
        return (
            f"the analysis of {n.node}'s capture named no mechanism: run `pleg-doctor analyze` on the newest "
            "bundle of its capture dir for the evidence to collect next"
        )
    if not scraped:
        return (
            f"pleg-doctor on {n.node} is not scraped now: check its pod "
            "(kubectl -n pleg-doctor get pods -o wide) and the Prometheus target"
        )
    if n.stall_seconds <= 0 and not any(n.captures.values()):
        return "no stall in the window: nothing to explain yet (a stall is captured and analyzed when it happens)"
    if n.captures["ok"] > 0:
        return (
            f"{n.captures['ok']} capture(s) but no analysis exported (watch --no-analyze?): run "
            f"`pleg-doctor analyze` on the newest bundle in {n.node}'s capture dir"
        )
    if n.captures["failed"] or n.captures["skipped"]:
        return (
            f"stalled, but {n.captures['failed']} capture(s) failed and {n.captures['skipped']} were skipped: "
            f"see pleg-doctor watch's log on {n.node} (capture dir, --disk-budget, --cooldown), or "
            f"`pleg-doctor collect` there during a stall and `pleg-doctor analyze` the bundle"
        )
    return (
        "stalled but no capture was taken: run watch with --capture-dir, or "
        f"`pleg-doctor collect` on {n.node} during the stall and `pleg-doctor analyze` the bundle"
    )


def rank(nodes: list[NodeRank]) -> list[NodeRank]:
    return sorted(nodes, key=NodeRank.sort_key)


def fleet_document(
    nodes: list[NodeRank], q: FleetQuery, *, window: str, prometheus: str, at: float, top: int | None
) -> dict[str, Any]:
    ranked = rank(nodes)
    shown = ranked[:top] if top else ranked
    return {
        "schema": SCHEMA,
        "prometheus": prometheus,
        "window": window,
        "window_seconds": q.window,
        "evaluated_at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "node_label": q.node_label,
        "stall_measure": STALL_MEASURE,
        "step_seconds": q.step,
        "nodes_total": len(ranked),
        "nodes": [n.to_json(i) for i, n in enumerate(shown, 1)],
    }


def render_text(doc: dict[str, Any], color: bool = False, width: int = 100) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from plegdoctor.report.common import escape_controls

    doc = escape_controls(doc)  # node names and classes come from labels anyone can set
    console = Console(width=width, force_terminal=color, no_color=not color, markup=False, highlight=False, emoji=False)
    sev_style = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
    with console.capture() as cap:
        head = f"pleg-doctor fleet: {doc['nodes_total']} node(s), window {doc['window']}, {doc['prometheus']}"
        console.print(Text(head, style="bold"))
        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        for col, kw in (
            ("#", {"justify": "right"}),
            ("node", {"overflow": "fold", "min_width": 16}),
            ("stalled", {"justify": "right", "no_wrap": True}),
            ("longest", {"justify": "right", "no_wrap": True}),
            ("runtime", {"no_wrap": True}),
            ("cause", {"overflow": "fold", "min_width": 14}),
            ("severity", {"no_wrap": True}),
            ("captures", {"justify": "right", "overflow": "fold", "min_width": 8}),
        ):
            table.add_column(col, **kw)  # type: ignore[arg-type]
        for n in doc["nodes"]:
            runtime = {True: "up", False: "DOWN", None: "no data"}[n["runtime_up"]]
            cause = n["class"] + (f" {n['confidence']:.0%}" if n["confidence"] is not None else "")
            caps = n["captures"]
            table.add_row(
                str(n["rank"]),
                Text(n["node"]),
                format_duration(n["stall_seconds"]),
                format_duration(n["longest_gap_seconds"]),
                Text(runtime, style="bold red" if n["runtime_up"] is False else ""),
                Text(cause),
                Text(n["severity"] or "-", style=sev_style.get(n["severity"] or "", "")),
                str(caps["ok"]) + (f" +{caps['failed']} failed" if caps["failed"] else ""),
            )
        console.print(table)
        steps = [n for n in doc["nodes"] if n["next_step"]]
        if steps:
            console.print()
            console.print(Text("Next steps", style="bold"))
            for n in steps:
                console.print(Text(f"{n['node']}: {n['next_step']}"))
        if not doc["nodes"]:
            console.print(Text("no pleg-doctor agent was scraped in the window (is watch deployed, --match right?)"))
        console.print(Text(f"stalled = {doc['stall_measure']}", style="dim"))
    return "\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n"


@click.command("fleet")
@click.option("--prometheus", "url", required=True, help="Prometheus server URL (e.g. http://prometheus:9090).")
@click.option("--window", default="1h", show_default=True, help="How far back to look (e.g. 15m, 1h, 1d).")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Show only the first N nodes.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--timeout", default="10s", show_default=True, help="Deadline of each Prometheus request.")
@click.option("--node-label", default="instance", show_default=True, help="The label that names a node.")
@click.option("--match", default="", help='Extra label matchers of every selector, e.g. job="pleg-doctor/pleg-doctor".')
def command(url: str, window: str, top: int | None, output: str, timeout: str, node_label: str, match: str) -> None:
    """Rank the nodes by how long their runtime stalled in the window, with each one's cause.

    Reads the metrics `pleg-doctor watch` exports, from the Prometheus that scrapes them. The
    label that names a node is `instance` (deploy/podmonitor.yaml sets it to the node name).
    """
    win = parse_duration(window, "--window")
    limit = parse_duration(timeout, "--timeout")
    if not _LABEL.fullmatch(node_label):
        raise UserError(f"--node-label: not a label name: {node_label!r}")
    q = FleetQuery(window=max(1, math.ceil(win)), node_label=node_label, match=match.strip().strip("{}"))
    client = PromClient(url, timeout=limit)
    at = time.time()
    nodes = gather(client, q, at)
    doc = fleet_document(nodes, q, window=window.strip(), prometheus=client.endpoint.shown, at=at, top=top)
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(render_text(doc, color=sys.stdout.isatty()), nl=False)
