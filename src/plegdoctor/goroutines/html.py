"""`pleg-doctor goroutines -o html`: one self-contained page (inline CSS, JS and SVG; no
network loads) to browse the buckets, the wait-for graph and the blocking chains.

The buckets travel as one JSON blob (frames name their texts by index into its string table
`S`: the stacks of a big dump repeat) (`<script type="application/json" id="data">`, every
`<`, `>`, `&` and non-ASCII character \\u-escaped, so no dump text can close the script) and
a small script renders the buckets that pass the search box and the filters, a page at a
time: a 10^5-goroutine dump has a few hundred buckets, and the page stays a few hundred KB
(ids capped per bucket, stacks per bucket, buckets per page). The graph and the chains are
inline SVG built here, bounded (MAX_GRAPH_NODES, MAX_CHAINS). Every dump text that reaches
the markup is HTML-escaped; the script only ever sets `textContent`. `-m` and `--min-wait`
pre-filter the buckets exactly as `-o text` does.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

from plegdoctor.goroutines.buckets import display_args, minutes_text
from plegdoctor.goroutines.chains import chain_text, describe_actor
from plegdoctor.goroutines.flags import ELIDED, TRUNCATED
from plegdoctor.goroutines.html_assets import CSS, JS
from plegdoctor.goroutines.model import Bucket, GoroutineAnalysis, Node, short_func
from plegdoctor.goroutines.tags import LOCK_KINDS, WaitKind
from plegdoctor.model import Chain, ChainLink
from plegdoctor.report.common import clip

MAX_IDS = 40  # goroutine ids listed per bucket ("+N more")
MAX_FRAMES = 64  # frames shown per bucket ("+N frames")
MAX_ARGS = 160  # characters of one frame's arguments
MAX_BUCKETS = 3000  # buckets in the page (the rest are counted)
MAX_GRAPH_NODES = 60
MAX_GRAPH_EDGES = 150
MAX_CHAINS = 20
_CALL_KINDS = frozenset({WaitKind.TTRPC_CALL, WaitKind.GRPC_CALL, WaitKind.HTTP_CALL})
_GRAPH_KINDS = LOCK_KINDS | _CALL_KINDS

e = html.escape


def script_json(obj: Any) -> str:
    """JSON that is safe inside `<script type="application/json">`: `<`, `>`, `&` and every
    non-ASCII character (U+2028/9 among them) are \\u escapes, so `</script>` or `<!--`
    in the data cannot end the element, and JSON.parse reads back exactly `obj`."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def short_path(path: str) -> str:
    """`/go/src/github.com/containerd/containerd/vendor/go.etcd.io/bbolt/db.go` -> `bbolt/db.go`:
    the package directory and the file, as panicparse prints a location."""
    if not path:
        return "?"
    parts = path.rsplit("/", 2)
    return "/".join(parts[-2:]) if len(parts) > 1 and parts[-2] else parts[-1]


def keep_bucket(b: Bucket, filter_re: re.Pattern[str] | None, min_wait: int | None) -> bool:
    """The pre-filter of `-m REGEX` and `--min-wait` (the same test as `-o text`)."""
    if min_wait is not None and (b.wait_max or 0) < min_wait:
        return False
    if filter_re is None:
        return True
    header = b.state + minutes_text(b)
    return bool(filter_re.search(header)) or any(filter_re.search(loc[0]) for loc in b.sample.stack)


class _Page:
    """What the page needs from the analysis, computed once: each goroutine's bucket and wait."""

    def __init__(self, a: GoroutineAnalysis) -> None:
        self.a = a
        self.bucket_of: dict[Node, int] = {}
        for i, b in enumerate(a.buckets):
            for gid in b.ids:
                self.bucket_of[(b.dump, gid)] = i
        self.wait_of = {(w.dump, w.goroutine): w for w in a.waits}
        self.strings: list[str] = []  # the blob's string table "S": frames name their texts by index
        self._string_ix: dict[str, int] = {}

    def s(self, text: str) -> int:
        i = self._string_ix.get(text)
        if i is None:
            i = self._string_ix[text] = len(self.strings)
            self.strings.append(text)
        return i

    def holder_text(self, node: Node | None) -> str:
        if node is None:
            return ""
        return f"{self.a.dumps[node[0]].label} goroutine {node[1]}"

    def bucket_json(self, i: int, b: Bucket) -> dict[str, Any]:
        a = self.a
        g = b.sample
        info = a.infos[(b.dump, g.id)]
        w = self.wait_of.get((b.dump, g.id))
        args = display_args(b)
        sf, sp = short_func, short_path
        frames = [
            [
                self.s(sf(loc[0])),
                self.s(loc[0]),
                self.s(sp(loc[1])),
                self.s(loc[1]),
                loc[2],
                self.s(clip(arg, MAX_ARGS)),
            ]
            for loc, arg in zip(g.stack[:MAX_FRAMES], args, strict=False)
        ]
        flags = [
            n
            for n, on in (("locked", b.locked), ("truncated", g.flags & TRUNCATED), ("elided", g.flags & ELIDED))
            if on
        ]
        cb = g.created_by
        return {
            "n": i,
            "p": b.dump,
            "s": b.state,
            "c": b.count,
            "w": None if b.wait_min is None else [b.wait_min, b.wait_max],
            "k": str(info.kind),
            "a": describe_actor(info, g),
            "r": w.resource if w is not None else "",
            "h": self.holder_text(w.holder) if w is not None else "",
            "site": info.site,
            "f": frames,
            "fm": max(0, len(g.stack) - MAX_FRAMES),
            "cb": [self.s(short_func(cb[0])), self.s(cb[0]), self.s(short_path(cb[1])), self.s(cb[1]), cb[2]]
            if cb
            else None,
            "ids": list(b.ids[:MAX_IDS]),
            "more": max(0, b.count - MAX_IDS),
            "fl": flags,
            "ev": [a.dumps[b.dump].source, g.line],
        }


# ---------------------------------------------------------------------------------------
# The wait-for graph: buckets (and resources whose holder is not visible) as nodes, one edge
# per (holder, waiter bucket, kind, resource) labelled with the wait, holder -> waiter.

GraphKey = tuple[str, Any]  # ("b", bucket index) | ("r", resource)


class Graph:
    def __init__(self, page: _Page) -> None:
        a = page.a
        edges: dict[tuple[GraphKey, GraphKey, str, str], list[int]] = {}
        self.waiting: dict[GraphKey, int] = {}
        for w in a.waits:
            if w.holder is None and w.kind not in _GRAPH_KINDS:
                continue
            dst_b = page.bucket_of.get((w.dump, w.goroutine))
            if dst_b is None:
                continue
            if w.holder is not None:
                src_b = page.bucket_of.get(w.holder)
                if src_b is None:
                    continue
                src: GraphKey = ("b", src_b)
            else:
                src = ("r", w.resource)
            dst: GraphKey = ("b", dst_b)
            g = a.goroutine((w.dump, w.goroutine))
            minutes = (g.wait_minutes or 0) if g is not None else 0
            stat = edges.setdefault((src, dst, str(w.kind), w.resource), [0, 0])
            stat[0] += 1
            stat[1] = max(stat[1], minutes)
            self.waiting[dst] = self.waiting.get(dst, 0) + 1
        out: dict[GraphKey, list[tuple[GraphKey, int]]] = {}
        for (src, dst, _k, _r), (count, _m) in edges.items():
            out.setdefault(src, []).append((dst, count))
        behind: dict[GraphKey, int] = {}

        def blocked(n: GraphKey, seen: frozenset[GraphKey]) -> int:
            if n in behind:
                return behind[n]
            deeper = len(seen) < 40  # transitive counts stop at 40 hops (and at cycles)
            total = sum(
                c + (blocked(d, seen | {n}) if deeper and d not in seen and d != n else 0) for d, c in out.get(n, ())
            )
            behind[n] = total
            return total

        nodes = {k for src, dst, _k, _r in edges for k in (src, dst)}
        for n in sorted(nodes, key=str):
            blocked(n, frozenset())
        ranked = sorted(nodes, key=lambda n: (-(behind.get(n, 0) + self.waiting.get(n, 0)), str(n)))
        self.nodes = ranked[:MAX_GRAPH_NODES]
        self.left_out = len(ranked) - len(self.nodes)
        keep = set(self.nodes)
        kept = [(k, v) for k, v in edges.items() if k[0] in keep and k[1] in keep]
        kept.sort(key=lambda kv: -kv[1][0])
        self.edges = kept[:MAX_GRAPH_EDGES]
        self.edges_left_out = len(edges) - len(self.edges)
        self.behind = behind

    def layers(self) -> dict[GraphKey, int]:
        """Longest distance from a node nobody holds for (bounded: cycles stop growing)."""
        layer = dict.fromkeys(self.nodes, 0)
        for _ in range(len(self.nodes)):
            changed = False
            for (src, dst, _k, _r), _v in self.edges:
                if src != dst and layer[dst] < layer[src] + 1 <= len(self.nodes):
                    layer[dst] = layer[src] + 1
                    changed = True
            if not changed:
                break
        return layer


_NW, _NH, _GX, _GY = 270, 50, 150, 22


def _arrow_defs(marker: str) -> str:
    return (
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" class="arrowhead"/></marker></defs>'
    )


def _node_svg(x: int, y: int, cls: str, lines: tuple[str, str], title: str, href: str | None) -> str:
    body = (
        f'<g class="{cls}" transform="translate({x},{y})"><title>{e(title)}</title>'
        f'<rect width="{_NW}" height="{_NH}" rx="6"/>'
        f'<text x="8" y="19" class="l1">{e(clip(lines[0], 36))}</text>'
        f'<text x="8" y="38" class="l2">{e(clip(lines[1], 40))}</text></g>'
    )
    return f'<a href="{e(href)}">{body}</a>' if href else body


def graph_svg(page: _Page) -> str:
    a = page.a
    gr = Graph(page)
    if not gr.nodes:
        return "<p>No goroutine waits for a lock or a call another goroutine holds or serves.</p>"
    layer = gr.layers()
    rows: dict[int, int] = {}
    pos: dict[GraphKey, tuple[int, int]] = {}
    for n in gr.nodes:
        col = layer[n]
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[n] = (10 + col * (_NW + _GX), 10 + row * (_NH + _GY))
    width = 20 + (max(layer.values()) + 1) * (_NW + _GX) - _GX
    height = 20 + max(rows.values()) * (_NH + _GY) - _GY
    out = [
        f'<svg id="waitgraph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="wait-for graph">',
        _arrow_defs("wg-arrow"),
    ]
    for (src, dst, kind, resource), (count, minutes) in gr.edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        sx, sy, tx, ty = x1 + _NW, y1 + _NH // 2, x2, y2 + _NH // 2
        if tx <= sx:  # same column or backwards (a cycle): loop below
            ax, bx, ay, by = x1 + _NW // 2, x2 + _NW // 2, y1 + _NH, y2 + _NH
            d = f"M{ax},{ay} C{ax},{ay + 60} {bx},{by + 60} {bx},{by}"
            lx, ly = (x1 + x2 + _NW) // 2, max(y1, y2) + _NH + 40
        else:
            mx = (sx + tx) // 2
            d = f"M{sx},{sy} C{mx},{sy} {mx},{ty} {tx},{ty}"
            # the label at t=0.7 of the curve: near the waiter, so edges fanning out of one holder part
            lx, ly = round(0.027 * sx + 0.63 * mx + 0.343 * tx), round(0.216 * sy + 0.784 * ty) - 4
        label = f"{kind} ×{count}"
        title = f"{count} goroutine(s) wait ({kind}) for {resource}" + (f", up to {minutes} min" if minutes else "")
        out.append(
            f'<g class="wait-edge" data-kind="{e(kind)}" data-count="{count}"><title>{e(title)}</title>'
            f'<path d="{d}" marker-end="url(#wg-arrow)"/>'
            f'<text x="{lx}" y="{ly}" text-anchor="middle">{e(label)}</text></g>'
        )
    for n in gr.nodes:
        x, y = pos[n]
        held = gr.behind.get(n, 0)
        if n[0] == "r":
            lines = ("holder not visible", str(n[1]))
            title = f"{n[1]}: {gr.waiting.get(n, 0)} wait, {held} blocked behind it; its holder is not in the dumps"
            out.append(_node_svg(x, y, "wait-node unseen", lines, title, None))
            continue
        b = a.buckets[n[1]]
        info = a.infos[(b.dump, b.sample.id)]
        dump = a.dumps[b.dump]
        actor = describe_actor(info, b.sample)
        who = f"g {b.ids[0]}" if b.count == 1 else f"{b.count} goroutines"
        lines = (actor, f"{who} · {b.state}{minutes_text(b)}")
        site = b.sample.stack[min(info.site, len(b.sample.stack) - 1)] if b.sample.stack else ("", "", 0)
        title = (
            f"{actor} — {dump.label}, {b.count} goroutine(s) [{b.state}{minutes_text(b)}], ids "
            + ", ".join(map(str, b.ids[:10]))
            + (f" +{b.count - 10} more" if b.count > 10 else "")
            + f"\n{site[0]} {site[1]}:{site[2]}"
            + f"\n{held} goroutine(s) blocked behind it, {gr.waiting.get(n, 0)} of its own wait"
        )
        cls = "wait-node holder" if held else "wait-node"
        out.append(_node_svg(x, y, cls, lines, title, f"#b-{n[1]}"))
    out.append("</svg>")
    note = (
        f"<p class=note>Showing the top {len(gr.nodes)} of {len(gr.nodes) + gr.left_out} nodes by goroutines blocked"
        f" ({gr.left_out} left out" + (f", {gr.edges_left_out} edges left out" if gr.edges_left_out else "") + ").</p>"
        if gr.left_out or gr.edges_left_out
        else f"<p class=note>{len(gr.nodes)} nodes, {len(gr.edges)} edges (holder → waiter).</p>"
    )
    return note + '<div class="svgbox">' + "".join(out) + "</div>"


# ---------------------------------------------------------------------------------------
# Chains: one SVG row per chain, symptom first, each link waiting for the next.

_CW, _CG = 250, 80


def _link_where(a: GoroutineAnalysis, link: ChainLink) -> str:
    """`file:line` of the link's wait site (from its goroutine), else the dump line quoted."""
    for i, d in enumerate(a.dumps):
        if d.process != link.process or d.pid != link.pid or d.source != link.evidence[0].path:
            continue
        g = a.goroutine((i, link.goroutine)) if link.goroutine is not None else None
        if g is not None and g.stack:
            site = g.stack[min(a.infos[(i, g.id)].site, len(g.stack) - 1)]
            if site[1]:
                return f"{site[1]}:{site[2]}"
    ev = link.evidence[-1]
    return f"{ev.path}:{ev.line}"


def chain_svg(a: GoroutineAnalysis, n: int, c: Chain) -> str:
    width = 20 + len(c.links) * (_CW + _CG) - _CG
    out = [
        f'<svg class="chain-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_NH + 20}" '
        f'viewBox="0 0 {width} {_NH + 20}" role="img" aria-label="chain {n}">',
        _arrow_defs(f"ch-arrow-{n}"),
    ]
    for i, link in enumerate(c.links):
        x = 10 + i * (_CW + _CG)
        actor = link.detail.split(" (", 1)[0]
        minutes = f"{link.wait_minutes} min" if link.wait_minutes is not None else "wait not timed"
        line2 = f"{link.process} g{link.goroutine} · {link.kind} · {minutes}"
        title = (
            f"{link.process}"
            + (f"[{link.pid}]" if link.pid is not None else "")
            + f" goroutine {link.goroutine}: {link.detail}\nwait: {link.kind}"
            + (f" ({link.resource})" if link.resource else "")
            + f", {minutes}\n{_link_where(a, link)}\nconfidence {link.confidence:.2f}"
        )
        out.append(
            f'<g class="chain-node" transform="translate({x},10)" data-goroutine="{e(str(link.goroutine))}">'
            f'<title>{e(title)}</title><rect width="{_CW}" height="{_NH}" rx="6"/>'
            f'<text x="8" y="19" class="l1">{e(clip(actor, 34))}</text>'
            f'<text x="8" y="38" class="l2">{e(clip(line2, 37))}</text></g>'
        )
        if i + 1 < len(c.links):
            x1, x2, y = x + _CW, x + _CW + _CG, 10 + _NH // 2
            out.append(
                f'<g class="chain-arrow"><path d="M{x1},{y}L{x2 - 2},{y}" marker-end="url(#ch-arrow-{n})"/>'
                f'<text x="{(x1 + x2) // 2}" y="{y - 6}" text-anchor="middle">{e(str(link.kind))}</text></g>'
            )
    out.append("</svg>")
    return "".join(out)


def _chains_html(a: GoroutineAnalysis) -> Iterator[str]:
    if not a.chains:
        yield "<p>No blocking chain found.</p>"
        return
    if len(a.chains) > MAX_CHAINS:
        yield f"<p class=note>The worst {MAX_CHAINS} of {len(a.chains)} chains.</p>"
    for n, c in enumerate(a.chains[:MAX_CHAINS], 1):
        mw = f", up to {c.max_wait_minutes} min" if c.max_wait_minutes else ""
        yield f'<div class="chain"><b>{n}. {e(chain_text(c))}</b><br>blocks {c.blocked} goroutine(s){e(mw)}'
        yield '<div class="svgbox">' + chain_svg(a, n, c) + "</div><ol>"
        for link in c.links:
            ev = "; ".join(f"{r.path}:{r.line}" for r in link.evidence)
            yield (
                f"<li>{e(link.detail)} <span class=conf>(confidence {link.confidence:.2f}; tags "
                f"{e(', '.join(sorted(link.tags)))})</span><br><span class=mono>{e(ev)}</span></li>"
            )
        yield "</ol></div>"


# ---------------------------------------------------------------------------------------


def _header(a: GoroutineAnalysis, kept: int, prefilter: str) -> Iterator[str]:
    held = sum(1 for w in a.waits if w.holder is not None)
    yield f"<h1>{a.goroutine_count} goroutines in {len(a.dumps)} dump(s)</h1>"
    yield (
        f"<p class=totals>{len(a.buckets)} buckets (similarity {e(a.similarity.name.lower())}), "
        f"{len(a.waits)} goroutines waiting, {held} of them on a goroutine seen in the dumps, "
        f"{len(a.chains)} blocking chain(s).</p>"
    )
    if prefilter:
        yield f"<p class=note>Pre-filtered by {e(prefilter)}: {kept} of {len(a.buckets)} buckets kept.</p>"
    yield (
        "<table><tr><th>#</th><th>process</th><th>goroutines</th><th>framing</th><th>time</th><th>Go</th>"
        "<th>source</th><th>unparsed lines</th></tr>"
    )
    for i, d in enumerate(a.dumps):
        when = d.dump_time.isoformat() if d.dump_time else ""
        lines = ", ".join(str(p.line) for p in d.problems[:20])
        yield (
            f"<tr><td>{i}</td><td>{e(d.label)}</td><td>{len(d.goroutines)}</td><td>{e(d.framing)}</td>"
            f"<td>{e(when)}</td><td>{e(d.go_version or '')}</td>"
            f"<td class=mono>{e(d.source)}:{d.first_line}-{d.last_line}</td><td>{d.problem_count} {e(lines)}</td></tr>"
        )
        for note in d.notes:
            yield f"<tr><td></td><td colspan=7 class=note>note: {e(note)}</td></tr>"
    yield "</table>"


def _options(counts: dict[str, int], every: str) -> str:
    opts = [f'<option value="">{e(every)}</option>']
    opts += [
        f'<option value="{e(v)}">{e(v)} ({n})</option>'
        for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return "".join(opts)


def render_html(a: GoroutineAnalysis, *, filter_re: re.Pattern[str] | None = None, min_wait: int | None = None) -> str:
    page = _Page(a)
    kept = [(i, b) for i, b in enumerate(a.buckets) if keep_bucket(b, filter_re, min_wait)]
    shown = kept[:MAX_BUCKETS]
    prefilter = " and ".join(
        p
        for p in (
            (f"-m {filter_re.pattern}" if filter_re else ""),
            (f"--min-wait {min_wait}" if min_wait is not None else ""),
        )
        if p
    )
    data = {
        "dumps": [{"label": d.label, "process": d.process, "pid": d.pid} for d in a.dumps],
        "buckets": [page.bucket_json(i, b) for i, b in shown],
        "S": page.strings,
        "kept": len(kept),
        "total": len(a.buckets),
    }
    states: dict[str, int] = {}
    procs: dict[str, int] = {}
    for _i, b in shown:
        states[b.state] = states.get(b.state, 0) + 1
        label = a.dumps[b.dump].label
        procs[label] = procs.get(label, 0) + 1
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>pleg-doctor goroutines: {a.goroutine_count} goroutines</title><style>{CSS}</style></head><body><main>",
        '<nav><a href="#chains">Blocking chains</a><a href="#graph">Wait-for graph</a>'
        '<a href="#bucket-list">Buckets</a> (press / to search)</nav>',
        *_header(a, len(kept), prefilter),
        '<h2 id="chains">Blocking chains</h2>',
        *_chains_html(a),
        '<h2 id="graph">Wait-for graph</h2>',
        graph_svg(page),
        f'<h2 id="bucket-list">Buckets ({len(kept)})</h2>',
        '<div class="controls" role="search">'
        '<label>Search <input id="search" type="search" placeholder="function, file, state, resource  ( / )" '
        'autocomplete="off" spellcheck="false"></label>'
        f'<label>State <select id="filter-state">{_options(states, "all states")}</select></label>'
        '<label>Waited at least <input id="filter-min-wait" type="number" min="0" step="1" placeholder="0"> min</label>'
        f'<label>Process <select id="filter-process">{_options(procs, "all processes")}</select></label>'
        '<label>Sort <select id="sort"><option value="">as grouped</option>'
        '<option value="count">most goroutines</option>'
        '<option value="wait">longest wait</option></select></label>'
        f'<span id="shown-count" aria-live="polite">{len(shown)} of {len(shown)} buckets shown</span></div>',
    ]
    if len(kept) > len(shown):
        parts.append(
            f"<p class=note>{len(kept) - len(shown)} more buckets are not in this page (use -m or --min-wait).</p>"
        )
    parts += [
        '<div id="buckets"></div><p><button id="more" type="button" hidden>Show more</button></p>',
        "<noscript><p>The bucket list needs JavaScript; `pleg-doctor goroutines -o text` prints it.</p></noscript>",
        f'<script type="application/json" id="data">{script_json(data)}</script>',
        f"<script>{JS}</script></main></body></html>\n",
    ]
    return "".join(parts)
