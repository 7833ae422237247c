"""The inline CSS and JavaScript of `goroutines -o html` (goroutines/html.py).

The script reads the JSON blob `#data` (frame texts are indices into its table `S`),
renders the buckets that pass the search box and the filters (PAGE at a time, "Show more"
for the rest), and keeps `#shown-count` true. It builds every element with
createElement/textContent: no dump text is ever parsed as HTML. Keys: `/` focuses the
search box, Esc clears it. When the first list is painted it sets `window.__pdPainted`
(performance.now()) and `data-painted` on <html>, which bench/bench_goroutines_html.py
waits for. Buckets are `content-visibility:auto`: those off screen cost no layout.
"""

from __future__ import annotations

CSS = """
:root{--fg:#1d1d1f;--mut:#666;--bg:#fff;--alt:#f5f5f7;--line:#ddd;--acc:#b3261e;--node:#eef3fb;--hold:#fde8e6}
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--mut:#9a9a9a;--bg:#16171a;--alt:#202226;--line:#3a3d42;
--acc:#ff8a80;--node:#1f2a3a;--hold:#3a2220}}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em 1.5em;color:var(--fg);
background:var(--bg)}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;vertical-align:top}
tr:nth-child(even){background:var(--alt)}td.mono{word-break:break-all}
nav a{margin-right:1em}main{max-width:100%}
.mono,.stack{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:12px}
.note,.conf,.totals{color:var(--mut)}
.chain{border-left:4px solid var(--acc);padding:4px 10px;margin:8px 0;background:var(--alt)}
.svgbox{overflow:auto;max-height:70vh;border:1px solid var(--line);margin:6px 0;background:var(--bg)}
svg text{font:12px system-ui,sans-serif;fill:var(--fg)}svg .l2{fill:var(--mut)}
.wait-node rect,.chain-node rect{fill:var(--node);stroke:#6b8fc9;stroke-width:1}
.wait-node.holder rect{fill:var(--hold);stroke:var(--acc)}
.wait-node.unseen rect{stroke-dasharray:4 3;fill:var(--alt)}
.wait-edge path,.chain-arrow path{fill:none;stroke:#8a8f98;stroke-width:1.4}
.wait-edge text,.chain-arrow text{fill:var(--mut)}.arrowhead{fill:#8a8f98}
a:focus-visible .wait-node rect{stroke-width:3}
.controls{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;position:sticky;top:0;background:var(--bg);
padding:6px 0;border-bottom:1px solid var(--line);z-index:1}
.controls input,.controls select,button{font:inherit;padding:2px 6px}
#search{width:26em}#filter-min-wait{width:5em}#shown-count{color:var(--mut)}
.bucket{border:1px solid var(--line);border-radius:6px;margin:8px 0;padding:0;content-visibility:auto;
contain-intrinsic-size:auto 160px}
.bucket>summary{padding:5px 10px;cursor:pointer;list-style-position:inside}
.bucket>summary:focus-visible{outline:2px solid #6b8fc9}
.bucket:target{box-shadow:0 0 0 3px var(--acc)}
.count{font-weight:700;display:inline-block;min-width:3.5em}.state{font-weight:600}
.kind{background:var(--alt);border-radius:4px;padding:0 5px;margin-left:6px;font-size:12px}
.res{color:var(--acc)}.ids{color:var(--mut);font-size:12px;padding:0 10px 6px;word-break:break-all}
.stackbox{overflow-x:auto;margin:0 10px 8px}.stack{border-collapse:collapse}
.stack td{padding:1px 8px 1px 0;white-space:pre}
.stack tr.site{background:var(--hold)}.stack .pkg{color:var(--mut)}.stack .loc{color:#2b6cb0}
"""

JS = r"""
(function () {
  "use strict";
  var PAGE = 200;
  var D = JSON.parse(document.getElementById("data").textContent);
  var list = document.getElementById("buckets"), more = document.getElementById("more");
  var search = document.getElementById("search"), fState = document.getElementById("filter-state");
  var fWait = document.getElementById("filter-min-wait"), fProc = document.getElementById("filter-process");
  var sortSel = document.getElementById("sort"), shown = document.getElementById("shown-count");
  var limit = PAGE, matched = [];
  var S = D.S;
  D.buckets.forEach(function (b) {
    b.f = b.f.map(function (f) { return [S[f[0]], S[f[1]], S[f[2]], S[f[3]], f[4], S[f[5]]]; });
    if (b.cb) b.cb = [S[b.cb[0]], S[b.cb[1]], S[b.cb[2]], S[b.cb[3]], b.cb[4]];
    b.proc = D.dumps[b.p].label;
    b.wmax = b.w ? b.w[1] : 0;
    var words = [b.s, b.k, b.a, b.r, b.h, b.proc];
    b.f.forEach(function (f) { words.push(f[1], f[3] + ":" + f[4]); });
    if (b.cb) words.push(b.cb[1], b.cb[3] + ":" + b.cb[4]);
    b.hay = words.join("\n").toLowerCase();
  });
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function range(w) {
    if (!w) return "";
    return w[0] === w[1] ? " [" + w[0] + " min]" : " [" + w[0] + "~" + w[1] + " min]";
  }
  function bucket(b) {
    var d = el("details", "bucket");
    d.id = "b-" + b.n;
    d.open = true;
    d.setAttribute("data-state", b.s);
    d.setAttribute("data-process", b.proc);
    d.setAttribute("data-wait-max", String(b.wmax));
    d.setAttribute("data-count", String(b.c));
    var s = el("summary");
    s.appendChild(el("span", "count", String(b.c)));
    s.appendChild(el("span", "state", b.s + range(b.w)));
    s.appendChild(document.createTextNode(" \u2014 " + b.proc + " \u2014 " + b.a));
    s.appendChild(el("span", "kind", b.k));
    if (b.r && b.r !== b.k && b.r !== b.s) {
      s.appendChild(el("span", "res", " " + b.r + (b.h ? " (held by " + b.h + ")" : "")));
    }
    if (b.fl.length) s.appendChild(el("span", "kind", b.fl.join(" ")));
    d.appendChild(s);
    var ids = "ids " + b.ids.join(", ") + (b.more ? " +" + b.more + " more" : "");
    d.appendChild(el("div", "ids", ids));
    var t = el("table", "stack"), body = el("tbody");
    b.f.forEach(function (f, i) {
      var tr = el("tr", i === b.site ? "site" : "");
      var dot = f[0].indexOf(".");
      tr.appendChild(el("td", "pkg", dot > 0 ? f[0].slice(0, dot) : ""));
      var loc = el("td", "loc", f[2] + ":" + f[4]);
      loc.title = f[3] + ":" + f[4];
      tr.appendChild(loc);
      var fn = el("td", "fn", (dot > 0 ? f[0].slice(dot + 1) : f[0]) + "(" + f[5] + ")");
      fn.title = f[1];
      tr.appendChild(fn);
      body.appendChild(tr);
    });
    if (b.fm) body.appendChild(el("tr", "pkg")).appendChild(el("td", "pkg", "+" + b.fm + " frames"));
    if (b.cb) {
      var tr = el("tr", "created");
      tr.appendChild(el("td", "pkg", "created by"));
      var loc = el("td", "loc", b.cb[2] + ":" + b.cb[4]);
      loc.title = b.cb[3] + ":" + b.cb[4];
      tr.appendChild(loc);
      var fn = el("td", "fn", b.cb[0]);
      fn.title = b.cb[1];
      tr.appendChild(fn);
      body.appendChild(tr);
    }
    t.appendChild(body);
    d.appendChild(el("div", "stackbox")).appendChild(t);
    return d;
  }
  function update(keepLimit) {
    if (!keepLimit) limit = PAGE;
    var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var st = fState.value, pr = fProc.value, mw = parseInt(fWait.value, 10) || 0;
    matched = D.buckets.filter(function (b) {
      if (st && b.s !== st) return false;
      if (pr && b.proc !== pr) return false;
      if (mw && b.wmax < mw) return false;
      for (var i = 0; i < terms.length; i++) if (b.hay.indexOf(terms[i]) < 0) return false;
      return true;
    });
    if (sortSel.value === "count") matched.sort(function (x, y) { return y.c - x.c || x.n - y.n; });
    else if (sortSel.value === "wait") {
      matched.sort(function (x, y) { return y.wmax - x.wmax || y.c - x.c || x.n - y.n; });
    }
    var frag = document.createDocumentFragment(), n = Math.min(limit, matched.length);
    for (var i = 0; i < n; i++) frag.appendChild(bucket(matched[i]));
    list.replaceChildren(frag);
    shown.textContent = n + " of " + D.buckets.length + " buckets shown";
    more.hidden = n >= matched.length;
    more.textContent = "Show more (" + (matched.length - n) + " more match)";
  }
  var pending = 0;
  function later() {
    if (!pending) pending = requestAnimationFrame(function () { pending = 0; update(false); });
  }
  search.addEventListener("input", later);
  fWait.addEventListener("input", later);
  [fState, fProc, sortSel].forEach(function (s) { s.addEventListener("change", function () { update(false); }); });
  more.addEventListener("click", function () { limit += PAGE; update(true); });
  document.addEventListener("keydown", function (ev) {
    var t = ev.target, typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
    if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      ev.preventDefault();
      search.focus();
      search.select();
    } else if (ev.key === "Escape" && (t === search || !typing) && search.value) {
      ev.preventDefault();
      search.value = "";
      update(false);
    }
  });
  function reveal() {
    var id = location.hash.slice(1);
    if (id.indexOf("b-") !== 0 || document.getElementById(id)) return;
    search.value = ""; fState.value = ""; fProc.value = ""; fWait.value = ""; sortSel.value = "";
    var idx = D.buckets.findIndex(function (b) { return "b-" + b.n === id; });
    if (idx < 0) return;
    limit = Math.max(PAGE, idx + 1);
    update(true);
    var n = document.getElementById(id);
    if (n) n.scrollIntoView();
  }
  window.addEventListener("hashchange", reveal);
  update(false);
  reveal();
  requestAnimationFrame(function () {
    setTimeout(function () {
      window.__pdPainted = performance.now();
      document.documentElement.setAttribute("data-painted", "1");
    }, 0);
  });
})();
"""
