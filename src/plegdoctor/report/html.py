"""HTML reporter: one self-contained page (inline CSS, SVG and script; no network loads).

First screen: the verdict box (class, confidence, the one fix to do first and the link it
removes; the other fixes collapsed), the timeline of the incident (report.html_svg; the
series come from the document's `series` key, or from its `pleg` gaps alone) and the
blocking chain as a graph. Below: the gaps with what the runtime did meanwhile, every root
cause with its chain quoted, findings, next steps, inputs.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, select_autoescape

from plegdoctor.analysis.series import iso_epoch, pleg_windows, time_window
from plegdoctor.report.common import confidence_word, fmt_seconds, fmt_time, split_fix, verdict, where
from plegdoctor.report.html_assets import CSS, JS
from plegdoctor.report.html_svg import chain_svg, timeline_svg

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pleg-doctor: {{ verdict }}</title>
<style>{{ css | safe }}</style></head><body>
<h1>pleg-doctor {{ version }}: why the kubelet stopped relisting</h1>
<main>
<section id="verdict-box" class="verdict-box{% if not top %} ok{% endif %}" aria-label="verdict">
<div class="verdict-head">
{% if top %}<span class="verdict-class">{{ top["class"] }}</span>
<span class="confidence">confidence {{ "%.0f" % (top.confidence * 100) }} % ({{ cw(top.confidence) }})</span>
{% else %}<span class="verdict-class">{{ "stall, cause unknown" if stalled else "no stall found" }}</span>{% endif %}
{% if stall %}<span class="stall">relisting stopped for {{ stall }}</span>{% endif %}
</div>
<p id="verdict">{{ top.summary if top else verdict }}</p>
{% if first_fix %}
<div id="first-fix" class="first-fix"><b>Do first:</b> {{ first_fix[0] }}</div>
<div class="removes-link">{{ first_fix[1] or "The fix does not name the link it removes." }}
{% if first_fix[2] %}<span class="fix-rest">{{ first_fix[2] }}</span>{% endif %}</div>
{% if other_fixes %}<details class="other-fixes"><summary>{{ other_fixes | length }} other
fix{{ "es" if other_fixes | length > 1 }}</summary><ol>{% for f in other_fixes %}<li>{{ f }}</li>{% endfor %}
</ol></details>{% endif %}
{% elif next_steps %}
<div id="first-fix" class="first-fix"><b>Collect first:</b> {{ next_steps[0] }}</div>
<div class="removes-link">No cause is named yet: this evidence would sharpen the diagnosis.</div>
{% endif %}
</section>

<section id="picture" aria-label="timeline and blocking chain">
{% if timeline_svg %}
<div class="toolbar"><b>Timeline (UTC)</b>
<button type="button" id="zoom-in" aria-label="zoom in">+</button>
<button type="button" id="zoom-out" aria-label="zoom out">&minus;</button>
<button type="button" id="zoom-reset">reset</button>
<span class="hint">wheel or +/&minus; to zoom, drag or arrows to pan, click a gap to zoom to it;
hover for evidence</span>
</div>
{{ timeline_svg | safe }}
{% else %}<p>No timed evidence to draw (no <code>GenericPLEG: Relisting</code> lines, events or samples).</p>{% endif %}
{% if chain_svg %}<h2>Blocking chain of {{ top["class"] }}</h2>{{ chain_svg | safe }}{% endif %}
</section>
<div id="tip" role="tooltip" hidden></div>

<h2>PLEG relisting</h2>
{% if pleg.relists %}
<p>{{ pleg.relists }} relists from {{ t(pleg.first) }} to {{ t(pleg.last) }};
longest interval {{ s(pleg.get("max_gap_seconds")) }}.</p>
{% else %}<p>No <code>GenericPLEG: Relisting</code> lines in the evidence.</p>{% endif %}
{% if pleg.gaps %}
<table id="gaps"><tr><th>gap</th><th>from</th><th>to</th><th>evidence</th><th>meanwhile in the runtime</th></tr>
{% for g in pleg.gaps[:50] %}<tr><td class="critical">{{ s(g.get("seconds")) }}</td><td>{{ t(g.start) }}</td>
<td>{{ t(g.end) }}</td><td>{% for e in g.evidence or [] %}<code>{{ w(e) }}</code><br>{% endfor %}</td>
<td>{% for e in (g.runtime or [])[:8] %}{{ t(e.ts) }} {{ e.process }}: {{ e.summary or e.kind }}
<div class="q">{{ w(e) }}: {{ e.text }}</div>{% endfor %}</td></tr>{% endfor %}
</table>{% endif %}
{% for u in pleg.unhealthy or [] %}<p class="critical">PLEG unhealthy {{ t(u.start) }} to {{ t(u.end) }},
last seen up to {{ s(u.get("max_last_seen_seconds")) }} ago</p>{% endfor %}

<h2>Root causes</h2>
{% if not causes %}<p>None found.</p>{% endif %}
{% for c in causes %}
<h3>{{ loop.index }}. {{ c["class"] }} <small>confidence {{ "%.0f" % (c.confidence * 100) }}%
({{ cw(c.confidence) }})</small></h3>
<p>{{ c.summary }}</p>
{% if c.chain %}<ol class="chain">{% for l in c.chain %}<li><b>{{ l.process }}{% if l.goroutine is not none %}
goroutine {{ l.goroutine }}{% endif %}</b>: {{ l.detail }}
{% for e in (l.evidence or [])[:2] %}<div class="q">{{ w(e) }}: {{ e.text }}</div>{% endfor %}</li>
{% endfor %}</ol>{% endif %}
{% if not loop.first and c.chain %}<details><summary>chain graph</summary>
{{ graph(c.chain, loop.index) | safe }}</details>{% endif %}
{% for f in c.fixes or [] %}<p class="fix">Fix: {{ f }}</p>{% endfor %}
{% if c.references %}<p>References: {% for r in c.references %}<a href="{{ r }}">{{ r }}</a> {% endfor %}</p>{% endif %}
{% endfor %}

<h2>Findings</h2>
{% if findings %}<table id="findings"><tr><th>code</th><th>severity</th><th>finding</th><th>evidence</th></tr>
{% for f in findings %}<tr><td>{{ f.code }}</td><td class="{{ f.severity }}">{{ f.severity }}</td><td>{{ f.title }}</td>
<td>{% for e in (f.evidence or [])[:3] %}<div class="q">{{ w(e) }}: {{ e.text }}</div>{% endfor %}</td></tr>{% endfor %}
</table>{% else %}<p>None.</p>{% endif %}

{% if next_steps %}<h2>Next steps</h2><ul>{% for n in next_steps %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}

<h2>Inputs read</h2>
<table id="inputs"><tr><th>input</th><th>kind</th><th>records</th><th>warnings</th></tr>
{% for i in inputs %}<tr><td><code>{{ i.path }}</code></td><td>{{ i.kind }}</td><td>{{ i.records }}</td>
<td>{{ (i.warnings or []) | join("; ") }}</td></tr>{% endfor %}</table>
{% for n in notes %}<p><small>Assumed: {{ n }}</small></p>{% endfor %}
</main>
<script type="application/json" id="series-data">{{ series_json | safe }}</script>
<script>{{ js | safe }}</script>
</body></html>
"""


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>`, `&` or line separators in clear."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def series_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's `series`, or one made from its `pleg` block alone (first/last relist,
    gaps, unhealthy windows) for a document written without it."""
    if isinstance(doc.get("series"), dict):
        return doc["series"]
    pleg = doc.get("pleg") or {}
    gaps, unhealthy = pleg_windows(pleg)
    times = [t for t in (iso_epoch(pleg.get("first")), iso_epoch(pleg.get("last"))) if t is not None]
    times += [x for w in (*gaps, *unhealthy) for x in (w["start"], w["end"])]
    t0, t1 = time_window(times)
    out: dict[str, Any] = {"ticks": {"t": [], "count": pleg.get("relists", 0), "shown": 0}, "gaps": gaps}
    out.update(unhealthy=unhealthy, intervals=[], events=[], events_total=0, lanes=[], t0=t0, t1=t1)
    return out


def render_html(doc: dict[str, Any]) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(t=fmt_time, s=fmt_seconds, w=where, cw=confidence_word)
    env.globals["graph"] = lambda chain, n: chain_svg(chain, svg_id=f"chain-graph-{n}")
    template = env.from_string(TEMPLATE)
    pleg = doc.get("pleg") or {}
    causes = doc.get("root_causes") or []
    top = causes[0] if causes else None
    fixes = list(top.get("fixes") or []) if top else []
    series = series_of(doc)
    longest = max([g.get("seconds") or 0 for g in pleg.get("gaps") or []], default=0)
    return template.render(
        css=CSS,
        js=JS,
        version=doc.get("tool", {}).get("version", ""),
        verdict=verdict(doc),
        top=top,
        stalled=bool(pleg.get("gaps") or pleg.get("unhealthy")),
        stall=fmt_seconds(longest) if longest else "",
        first_fix=split_fix(fixes[0]) if fixes else None,
        other_fixes=fixes[1:],
        pleg=pleg,
        timeline_svg=timeline_svg(series),
        chain_svg=chain_svg(top.get("chain") or []) if top else "",
        series_json=script_json(
            {"lanes": series.get("lanes") or [], "ticks": (series.get("ticks") or {}).get("t", [])}
        ),
        causes=causes,
        findings=doc.get("findings") or [],
        next_steps=doc.get("next_steps") or [],
        inputs=doc.get("inputs") or [],
        notes=doc.get("notes") or [],
    )
