"""The lab's comparison as one self-contained HTML page (inline SVG and CSS; no script, no network load).

`render_compare_html(doc, series)` reads the `pleg-doctor/lab/v1` document of lab.compare.to_json
and the relist series of lab.plot (one per variant) and draws:

- `#verdict`: the best variant, its worst relist against the baseline's, and which link each
  mitigation removes where the document says it (`doc["links"]`: mitigation -> link; a mitigation
  the document says nothing about is named without a link: nothing is made up here);
- `#plots`: one `<svg class="latency-plot" data-variant=NAME>` per variant, all on one scale
  (`data-y-max`, `data-x-min`, `data-x-max` give it), the 3 s gap threshold dashed
  (`line.threshold`), axis labels, one `circle.relist` per relist whose `<title>` gives its start
  and latency; a variant without records gets a `p.no-plot` saying why;
- `table#variants`: the figures of compare.to_json, one `tr` per run in `tbody`, the best `tr.best`;
  the diagnosis links to the stall bundle (relative to the page when the bundle is below it).

The page is also well-formed XML (tests parse it with ElementTree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from html import escape
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from plegdoctor.lab.compare import GAP_SECONDS
from plegdoctor.lab.plot import COLORS, X_LABEL, Y_LABEL, Frame, Points, Scale, Series, axes, ramp
from plegdoctor.report.common import fmt_seconds

PLOT_WIDTH, PLOT_HEIGHT = 1040, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 34, 46
COLUMNS = 14  # of table#variants (a failed run's error spans all but the first two)

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{ title }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:1em auto;max-width:1220px;color:#222;padding:0 1em}
h1{font-size:1.3em;margin:.6em 0 .2em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.4em}
.verdict{font-size:1.15em;padding:.6em .8em;background:#eef7ee;border-left:4px solid #2e7d32;margin:0}
.verdict.none{background:#fdecea;border-color:#c0392b}
.meta,.no-plot,.note{color:#444;margin:.2em 0}
a{color:#0b57a4}a:focus-visible{outline:3px solid #f0a000;outline-offset:2px}
nav ul{list-style:none;padding:0;margin:.4em 0;display:flex;flex-wrap:wrap;gap:.3em 1.2em}
figure{margin:.6em 0}svg.latency-plot{display:block;width:{{ w }}px;height:{{ h }}px;max-width:none}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{border:1px solid #ccc;padding:.25em .4em;text-align:right}td{white-space:nowrap}
th{background:#f4f4f4;vertical-align:bottom}td.name,td.text,th.text{text-align:left}
tr.best td{background:#eef7ee;font-weight:600}tr.best td.name::after{content:"(best)";display:block}
td.error,td.text,td.name{white-space:normal}td.error{text-align:left;color:#a12b1f}td.no{color:#a12b1f}td.yes{color:#1e6b2a}
code{font:13px ui-monospace,monospace}
</style></head><body>
<p class="verdict{% if not best %} none{% endif %}" id="verdict">{{ verdict }}</p>
{% if links %}<ul id="links">{% for m, text in links %}<li><b>{{ m }}</b> removes: {{ text }}</li>{% endfor %}</ul>
{% endif %}<h1>{{ title }}</h1>
{% for line in meta %}<p class="meta">{{ line }}</p>{% endfor %}
<nav aria-label="contents"><ul><li><a href="#variants">comparison table</a></li>
{% for p in plots %}<li><a href="#{{ p.anchor }}">{{ p.variant }}</a></li>{% endfor %}</ul></nav>
<h2 id="plots-title">Relist latency over time</h2>
<section id="plots" aria-labelledby="plots-title">
{% if not any_relist %}<p class="no-plot" id="no-relists">No variant recorded a relist{% if errors %}
(every variant failed){% endif %}: there is nothing to plot.</p>{% endif %}
{% for p in plots %}<figure id="{{ p.anchor }}">{% if p.svg %}{{ p.svg }}{% else %}
<p class="no-plot">{{ p.variant }}: no relist recorded{% if p.error %} (failed: {{ p.error }}){% endif %}.</p>
{% endif %}</figure>
{% endfor %}</section>
<h2 id="table-title">Variants</h2>
<table id="variants" aria-labelledby="table-title"><thead><tr>
<th class="text" scope="col">variant</th><th class="text" scope="col">containerd</th>
<th scope="col">relists</th><th scope="col">relist p50</th><th scope="col">p99</th><th scope="col">max</th>
<th scope="col">blocked</th><th scope="col">gaps &gt; {{ gap }} (longest)</th>
<th scope="col">StopContainer p50 / max</th><th scope="col">UpdateContainer&#173;Resources p50 / max</th>
<th scope="col">PullImage</th><th scope="col">umount / syncfs</th>
<th class="text" scope="col">diagnosis</th><th class="text" scope="col">expected mechanism</th>
</tr></thead><tbody>
{% for r in rows %}<tr data-variant="{{ r.variant }}"{% if r.best %} class="best"{% endif %}>
<td class="name">{% if r.anchor %}<a href="#{{ r.anchor }}">{{ r.variant }}</a>{% else %}{{ r.variant }}{% endif %}</td>
<td class="text">{{ r.containerd }}</td>
{% if r.error %}<td class="error" colspan="{{ ncols - 2 }}">failed: {{ r.error }}</td>{% else %}
<td>{{ r.relists }}</td><td>{{ s(r.relist_p50_seconds) }}</td><td>{{ s(r.relist_p99_seconds) }}</td>
<td>{{ s(r.relist_max_seconds) }}</td><td>{{ s(r.relist_blocked_seconds) }}</td>
<td>{{ r.gaps_over_3s }} ({{ s(r.max_gap_seconds) }})</td>
<td>{{ s(r.stop_container_p50_seconds) }} / {{ s(r.stop_container_max_seconds) }}</td>
<td>{{ s(r.update_container_resources_p50_seconds) }} / {{ s(r.update_container_resources_max_seconds) }}</td>
<td>{{ s(r.pull_image_seconds) }}</td><td>{{ s(r.umount_max_seconds) }} / {{ s(r.umount_syncfs_seconds) }}</td>
<td class="text">{% if r.href %}<a href="{{ r.href }}">{{ r.diagnosis or "no diagnosis" }}</a>{% else %}
{{ r.diagnosis or "no bundle" }}{% endif %}</td>
<td class="text {{ r.match_class }}">{{ r.match }}</td>{% endif %}</tr>
{% endfor %}</tbody></table>
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}
</body></html>
"""


@dataclass(frozen=True, slots=True)
class _Plot:
    variant: str
    anchor: str
    svg: Markup | None
    error: str


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else 0.0


def _verdict(runs: list[dict[str, Any]], best_name: str | None) -> str:
    best = next((r for r in runs if r.get("variant") == best_name), None)
    if best is None:
        failed = sum(1 for r in runs if r.get("error"))
        if not runs:
            return "No variant was run: nothing to compare."
        return f"No variant recorded a relist ({failed} of {len(runs)} failed): there is no best fix to name."
    worst = fmt_seconds(_num(best.get("relist_max_seconds")))
    mitigations = best.get("mitigations") or []
    what = f"{best_name} ({' + '.join(mitigations)})" if mitigations else f"{best_name} (no mitigation)"
    line = f"Best fix on this node: {what}, worst relist {worst}"
    base = next((r for r in runs if not r.get("mitigations") and not r.get("error")), None)
    if base is not None and base is not best:
        b = _num(base.get("relist_max_seconds"))
        line += f" against {fmt_seconds(b)} for the baseline {base.get('variant')}"
        mx = _num(best.get("relist_max_seconds"))
        if mx > 0 and b > mx:
            line += f" ({b / mx:.0f}x shorter)" if b / mx >= 2 else f" ({(1 - mx / b) * 100:.0f} % shorter)"
    elif base is None:
        line += " (no baseline without mitigation finished)"
    return line + "."


def _links(doc: dict[str, Any], runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    said = doc.get("links")
    if not isinstance(said, dict):
        return []
    seen: list[str] = []
    for r in runs:
        for m in r.get("mitigations") or []:
            if m not in seen:
                seen.append(m)
    return [(m, str(said[m])) for m in seen if said.get(m)]


def _plot_svg(variant: str, pts: Points, frame: Frame, index: int, best: bool) -> Markup:
    e = escape
    s = frame.scale
    color = COLORS[index % len(COLORS)]
    worst = max((v for _, v in pts), default=0.0)
    over = sum(1 for _, v in pts if v > GAP_SECONDS)
    head = f"{variant}: worst relist {fmt_seconds(worst)}, {len(pts)} relists, {over} over {GAP_SECONDS:g} s"
    tid = f"plot-title-{index}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="latency-plot" data-variant="{e(variant)}" '
        f'data-y-max="{s.ymax:.3f}" data-x-min="{s.xmin:.3f}" data-x-max="{s.xmax:.3f}" '
        f'width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" '
        f'role="img" aria-labelledby="{tid}" font-family="system-ui,sans-serif" font-size="13">',
        f'<title id="{tid}">relist latency of {e(variant)}</title>',
        f'<rect width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="{"#f6fbf6" if best else "white"}"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{e(head)}{" (best)" if best else ""}</text>',
        *axes(frame, X_LABEL, Y_LABEL, PLOT_HEIGHT - 8),
    ]
    if pts:
        path = " ".join(f"{frame.px(t):.1f},{frame.py(v):.1f}" for t, v in ramp(pts))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>')
    for t, v in sorted(pts):
        r = 4 if v > GAP_SECONDS else 2.5
        out.append(
            f'<circle class="relist" cx="{frame.px(t + v):.1f}" cy="{frame.py(v):.1f}" r="{r}" fill="{color}">'
            f"<title>start {t:+.1f} s, latency {fmt_seconds(v)}</title></circle>"
        )
    out.append("</svg>")
    return Markup("\n".join(out))


def _bundle_href(bundle: str, run_dir: str) -> str:
    if not bundle:
        return ""
    if run_dir and os.path.isabs(bundle):
        rel = os.path.relpath(bundle, run_dir)
        if not rel.startswith(".."):
            return rel
    return bundle


def _row(r: dict[str, Any], best: str | None, anchor: str, run_dir: str) -> dict[str, Any]:
    row = dict(r)
    row["variant"] = str(r.get("variant", ""))
    row["best"] = best is not None and row["variant"] == best
    row["anchor"] = anchor
    row["href"] = _bundle_href(str(r.get("bundle") or ""), run_dir)
    matches, expected = r.get("diagnosis_matches"), r.get("expected_mechanism") or ""
    if matches is None:
        row["match"], row["match_class"] = (f"{expected} (not diagnosed)" if expected else "-"), ""
    elif matches:
        row["match"], row["match_class"] = f"yes: {expected}", "yes"
    else:
        row["match"], row["match_class"] = f"no: expected {expected}", "no"
    for key in RELIST_KEYS:
        row[key] = _num(r.get(key))
    return row


RELIST_KEYS = (
    "relist_p50_seconds",
    "relist_p99_seconds",
    "relist_max_seconds",
    "relist_blocked_seconds",
    "max_gap_seconds",
    "stop_container_p50_seconds",
    "stop_container_max_seconds",
    "update_container_resources_p50_seconds",
    "update_container_resources_max_seconds",
    "pull_image_seconds",
    "umount_max_seconds",
    "umount_syncfs_seconds",
)


def render_compare_html(doc: dict[str, Any], series: Series, page_dir: str | None = None) -> str:
    """The page of one lab comparison; `series` as for lab.plot.render_svg (variants without
    records are simply absent from it). Bundle links are relative to `page_dir` (the directory
    the page is written to; default the run directory) when the bundle is below it."""
    runs = [r for r in doc.get("runs") or [] if isinstance(r, dict)]
    best = doc.get("best") if isinstance(doc.get("best"), str) else None
    by_name = {name: pts for name, pts in series}
    names = [str(r.get("variant", "")) for r in runs]
    names += [n for n in by_name if n not in names]  # a series the document does not list still shows
    frame = Frame(Scale.of(series), LEFT, TOP, PLOT_WIDTH - LEFT - RIGHT, PLOT_HEIGHT - TOP - BOTTOM)
    errors = {str(r.get("variant", "")): str(r.get("error") or "") for r in runs}
    plots = [
        _Plot(
            name,
            f"plot-{i}",
            _plot_svg(name, by_name[name], frame, i, name == best) if by_name.get(name) else None,
            errors.get(name, ""),
        )
        for i, name in enumerate(names)
    ]
    anchors = {p.variant: p.anchor for p in plots if p.svg is not None}
    base = page_dir if page_dir is not None else str(doc.get("run_dir") or "")
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(s=fmt_seconds)
    notes = [f"{r.get('variant')}: {n}" for r in runs for n in r.get("notes") or []]
    return env.from_string(TEMPLATE).render(
        title=str(doc.get("title") or "pleg-doctor lab"),
        verdict=_verdict(runs, best),
        best=best,
        links=_links(doc, runs),
        meta=[str(doc[k]) for k in ("disk", "workload") if doc.get(k)],
        plots=plots,
        any_relist=any(p.svg is not None for p in plots),
        errors=bool(runs) and all(errors.values()),
        rows=[_row(r, best, anchors.get(str(r.get("variant", "")), ""), base) for r in runs],
        notes=notes,
        gap=f"{GAP_SECONDS:g} s",
        ncols=COLUMNS,
        w=PLOT_WIDTH,
        h=PLOT_HEIGHT,
    )
