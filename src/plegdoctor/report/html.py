"""HTML reporter: one self-contained page (no scripts, no external assets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, select_autoescape

from plegdoctor.report.common import confidence_word, fmt_seconds, fmt_time, verdict, where

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>pleg-doctor: {{ verdict }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
.verdict{font-size:1.1em;padding:.6em .8em;background:#fdecea;border-left:4px solid #c0392b}
.verdict.ok{background:#eef7ee;border-color:#2e7d32}
code,.q{font:12px/1.35 ui-monospace,monospace}.q{color:#555;white-space:pre-wrap;word-break:break-all;
margin:.1em 0 .3em 1.5em;border-left:2px solid #ddd;padding-left:.5em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
.critical{color:#c0392b;font-weight:bold}.warning{color:#b9770e}.info{color:#2471a3}
ol.chain li{margin-bottom:.4em}.fix{color:#1e7e34}
</style></head><body>
<h1>pleg-doctor {{ version }}: why the kubelet stopped relisting</h1>
<p class="verdict{% if not causes %} ok{% endif %}" id="verdict">{{ verdict }}</p>

<h2>PLEG relisting</h2>
{% if pleg.relists %}
<p>{{ pleg.relists }} relists from {{ t(pleg.first) }} to {{ t(pleg.last) }};
longest interval {{ s(pleg.max_gap_seconds) }}.</p>
{{ timeline_svg | safe }}
{% else %}<p>No <code>GenericPLEG: Relisting</code> lines in the evidence.</p>{% endif %}
{% if pleg.gaps %}
<table id="gaps"><tr><th>gap</th><th>from</th><th>to</th><th>evidence</th><th>meanwhile in the runtime</th></tr>
{% for g in pleg.gaps[:50] %}<tr><td class="critical">{{ s(g.seconds) }}</td><td>{{ t(g.start) }}</td>
<td>{{ t(g.end) }}</td><td>{% for e in g.evidence or [] %}<code>{{ w(e) }}</code><br>{% endfor %}</td>
<td>{% for e in (g.runtime or [])[:8] %}{{ t(e.ts) }} {{ e.process }}: {{ e.summary or e.kind }}
<div class="q">{{ w(e) }}: {{ e.text }}</div>{% endfor %}</td></tr>{% endfor %}
</table>{% endif %}
{% for u in pleg.unhealthy or [] %}<p class="critical">PLEG unhealthy {{ t(u.start) }} to {{ t(u.end) }},
last seen up to {{ s(u.max_last_seen_seconds) }} ago</p>{% endfor %}

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
</body></html>
"""


def _timeline_svg(pleg: dict[str, Any]) -> str:
    """A bar from the first to the last relist with every gap drawn in red."""
    try:
        first = datetime.fromisoformat(pleg["first"]).timestamp()
        last = datetime.fromisoformat(pleg["last"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return ""
    span = max(last - first, 1e-6)
    width = 800.0
    parts = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="34" role="img">',
        f'<rect x="0" y="8" width="{width:.0f}" height="14" fill="#8fbc8f"/>',
    ]
    for gap in pleg.get("gaps") or []:
        try:
            a = datetime.fromisoformat(gap["start"]).timestamp()
            b = datetime.fromisoformat(gap["end"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        x = (a - first) / span * width
        w = max((b - a) / span * width, 2.0)
        parts.append(f'<rect x="{x:.1f}" y="4" width="{w:.1f}" height="22" fill="#c0392b"><title>gap</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(doc: dict[str, Any]) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(t=fmt_time, s=fmt_seconds, w=where, cw=confidence_word)
    template = env.from_string(TEMPLATE)
    pleg = doc.get("pleg") or {}
    return template.render(
        version=doc.get("tool", {}).get("version", ""),
        verdict=verdict(doc),
        pleg=pleg,
        timeline_svg=_timeline_svg(pleg),
        causes=doc.get("root_causes") or [],
        findings=doc.get("findings") or [],
        next_steps=doc.get("next_steps") or [],
        inputs=doc.get("inputs") or [],
        notes=doc.get("notes") or [],
    )
