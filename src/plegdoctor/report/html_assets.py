"""The inline CSS and script of the HTML report (no network loads: everything is in the page).

The script zooms and pans the timeline by moving every mark that has `data-t` (and
`data-t2`) with the same mapping as report.html_svg (x = L + (t - t0) / (t1 - t0) * PW),
redraws the sampled lines from the embedded `#series-data` JSON, and shows `#tip` with the
evidence a mark quotes (`data-label`, `data-evidence`) on hover and on keyboard focus.
"""

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1220px;color:#1c1c1c;padding:0 16px 40px}
h1{font-size:18px;margin:10px 0 8px}h2{font-size:16px;border-bottom:1px solid #ccc;margin:22px 0 8px}
h3{font-size:15px;margin:16px 0 4px}small{font-size:12px}
.verdict-box{border-left:6px solid #c0392b;background:#fdf0ee;padding:10px 14px;margin:0 0 10px}
.verdict-box.ok{border-color:#2e7d32;background:#eef7ee}
.verdict-head{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:baseline}
.verdict-class{font-size:20px;font-weight:700;color:#922b21}.verdict-box.ok .verdict-class{color:#1e5631}
.confidence,.stall{font-size:14px;color:#444}.stall{font-weight:600;color:#922b21}
#verdict{margin:4px 0 6px}
.first-fix{background:#fff;border:1px solid #d5d8dc;padding:6px 10px;margin:6px 0 4px}
.first-fix b{color:#1e7e34}.removes-link{color:#1e5631;font-size:13px;margin:2px 0 4px}
details.other-fixes summary{cursor:pointer;color:#21618c;font-size:13px}
details.other-fixes li{margin:4px 0;font-size:13px}
.toolbar{display:flex;gap:8px;align-items:center;margin:6px 0 2px;font-size:13px}
.toolbar b{font-size:14px}.toolbar .hint{color:#555}
button{font:13px system-ui,sans-serif;padding:2px 10px;border:1px solid #888;border-radius:4px;background:#f7f7f7;
cursor:pointer}
button:focus-visible,[tabindex]:focus-visible{outline:3px solid #2471a3;outline-offset:1px}
svg{display:block;max-width:100%;height:auto}
svg text{font:12px system-ui,sans-serif;fill:#1c1c1c}
.lane-bg{fill:#f6f7f8}.lane-sub{fill:#555}.lane-label{font-weight:600}
.grid{stroke:#e2e4e6}.axis-label{fill:#444}
.tick{stroke:#27ae60;stroke-width:1;fill:none}
.gap{fill:#c0392b;cursor:zoom-in}.gap-label{font-weight:700;fill:#922b21}
.unhealthy{fill:#e67e22}.interval{fill:#5dade2}.interval.open{fill:#af7ac5}
.event{cursor:help;stroke:#fff;stroke-width:1}
.series-line{stroke-width:1.6}.legend{font-weight:600}
.cursor{stroke:#555;stroke-dasharray:3 3}
.chain-graph .node-box{fill:#fff;stroke:#99a3a4}.chain-graph .node-title{fill:#fff;font-weight:700}
.chain-graph .node-where{font-family:ui-monospace,monospace;fill:#444}
.chain-edge{stroke:#555;stroke-width:1.6}.edge-label{fill:#7b241c;font-weight:600}
.chain-node:focus .node-box,.chain-node:hover .node-box{stroke:#2471a3;stroke-width:2}
#tip{position:fixed;z-index:9;max-width:640px;background:#1c2833;color:#fff;padding:6px 9px;border-radius:4px;
font:12px/1.4 ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;pointer-events:none}
#tip[hidden]{display:none}
code,.q{font:12px/1.35 ui-monospace,monospace}
.q{color:#444;white-space:pre-wrap;word-break:break-all;margin:2px 0 4px 18px;border-left:2px solid #ddd;
padding-left:6px}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
.critical{color:#c0392b;font-weight:700}.warning{color:#9a6400}.info{color:#21618c}
ol.chain li{margin-bottom:6px}.fix{color:#1e6b30}
"""

JS = r"""
(function () {
  "use strict";
  var tip = document.getElementById("tip");
  function show(el, x, y) {
    var label = el.getAttribute("data-label") || "";
    var ev = el.getAttribute("data-evidence") || "";
    tip.textContent = label + (label && ev ? "\n" : "") + ev.split(" | ").join("\n");
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.max(4, Math.min(x + 12, window.innerWidth - w - 8)) + "px";
    tip.style.top = (y + h + 24 > window.innerHeight ? Math.max(4, y - h - 12) : y + 14) + "px";
  }
  function hide() { if (tip) { tip.hidden = true; } }
  if (tip) {
    document.addEventListener("mouseover", function (e) {
      var el = e.target.closest && e.target.closest("[data-evidence],[data-label]");
      if (el) { show(el, e.clientX, e.clientY); }
    });
    document.addEventListener("mouseout", function (e) {
      if (e.target.closest && e.target.closest("[data-evidence],[data-label]")) { hide(); }
    });
    document.addEventListener("focusin", function (e) {
      var el = e.target.closest && e.target.closest("[data-evidence],[data-label]");
      if (el) { var r = el.getBoundingClientRect(); show(el, r.left, r.bottom); } else { hide(); }
    });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape") { hide(); } });
  }

  var svg = document.getElementById("timeline");
  if (!svg) { return; }
  var dataEl = document.getElementById("series-data");
  var data = dataEl ? JSON.parse(dataEl.textContent) : {lanes: []};
  var L = +svg.dataset.l, PW = +svg.dataset.pw;
  var F0 = +svg.dataset.fullT0, F1 = +svg.dataset.fullT1;
  var t0 = +svg.dataset.t0, t1 = +svg.dataset.t1;
  var NS = "http://www.w3.org/2000/svg";
  function X(t) { return L + (t - t0) / ((t1 - t0) || 1) * PW; }
  function stamp(t, fine) {
    var s = new Date(t * 1000).toISOString();
    return fine ? s.substr(11, 12) : s.substr(11, 8);
  }
  function axis() {
    var g = document.getElementById("axis");
    if (!g) { return; }
    var y = +g.dataset.y;
    while (g.firstChild) { g.removeChild(g.firstChild); }
    var fine = (t1 - t0) < 12;
    for (var k = 0; k <= 6; k++) {
      var t = t0 + (t1 - t0) * k / 6, x = X(t);
      var ln = document.createElementNS(NS, "line");
      ln.setAttribute("class", "grid"); ln.setAttribute("x1", x); ln.setAttribute("x2", x);
      ln.setAttribute("y1", 4); ln.setAttribute("y2", y); g.appendChild(ln);
      var tx = document.createElementNS(NS, "text");
      tx.setAttribute("class", "axis-label"); tx.setAttribute("x", x); tx.setAttribute("y", y + 15);
      tx.setAttribute("text-anchor", k === 0 ? "start" : k === 6 ? "end" : "middle");
      tx.textContent = stamp(t, fine); g.appendChild(tx);
    }
  }
  function redraw() {
    svg.dataset.t0 = t0.toFixed(3); svg.dataset.t1 = t1.toFixed(3);
    var marks = svg.querySelectorAll("[data-t]");
    for (var i = 0; i < marks.length; i++) {
      var el = marks[i], a = +el.dataset.t, tag = el.tagName.toLowerCase();
      if (tag === "line") { var x = X(a); el.setAttribute("x1", x); el.setAttribute("x2", x); }
      else if (tag === "rect") {
        var x0 = X(a); el.setAttribute("x", x0);
        el.setAttribute("width", Math.max(X(+el.dataset.t2) - x0, 3));
      } else if (tag === "text") { el.setAttribute("x", X(a)); }
      else if (tag === "circle") { el.setAttribute("cx", X(a)); }
      else if (tag === "path") {
        var m = /,([-0-9.]+)\)/.exec(el.getAttribute("transform") || "");
        el.setAttribute("transform", "translate(" + X(a).toFixed(1) + "," + (m ? m[1] : 0) + ")");
      }
    }
    var ticks = svg.querySelector("path.tick");
    if (ticks && data.ticks) {
      var y1 = ticks.dataset.y1, y2 = ticks.dataset.y2, d = [];
      for (var k = 0; k < data.ticks.length; k++) { d.push("M" + X(data.ticks[k]).toFixed(1) + "," + y1 + "V" + y2); }
      ticks.setAttribute("d", d.join(""));
    }
    var lanes = svg.querySelectorAll("g.lane[data-lane-index]");
    for (var j = 0; j < lanes.length; j++) {
      var g = lanes[j], lane = data.lanes[+g.dataset.laneIndex];
      if (!lane) { continue; }
      var y = +g.dataset.y, vmax = +g.dataset.max || 1, h = 42;
      var polys = g.querySelectorAll("polyline[data-line]");
      for (var p = 0; p < polys.length; p++) {
        var line = lane.lines[+polys[p].dataset.line], pts = [];
        for (var q = 0; q < line.t.length; q++) {
          pts.push(X(line.t[q]).toFixed(1) + "," + (y + 3 + h - Math.min(line.v[q], vmax) / vmax * h).toFixed(1));
        }
        polys[p].setAttribute("points", pts.join(" "));
      }
    }
    axis();
  }
  function setWindow(a, b) {
    var span = Math.max(b - a, 0.5), full = F1 - F0;
    if (span >= full) { a = F0; b = F1; }
    else { if (a < F0) { a = F0; } if (a + span > F1) { a = F1 - span; } b = a + span; }
    t0 = a; t1 = b; redraw();
  }
  function zoom(f, c) {
    if (c === undefined) { c = (t0 + t1) / 2; }
    setWindow(c - (c - t0) * f, c + (t1 - c) * f);
  }
  function pan(frac) { var d = (t1 - t0) * frac; setWindow(t0 + d, t1 + d); }
  function tAt(clientX) {
    var r = svg.getBoundingClientRect(), vx = (clientX - r.left) * (svg.viewBox.baseVal.width / r.width);
    return t0 + (vx - L) / PW * (t1 - t0);
  }
  var zin = document.getElementById("zoom-in"), zout = document.getElementById("zoom-out");
  var zreset = document.getElementById("zoom-reset");
  if (zin) { zin.addEventListener("click", function () { zoom(0.5); }); }
  if (zout) { zout.addEventListener("click", function () { zoom(2); }); }
  if (zreset) { zreset.addEventListener("click", function () { setWindow(F0, F1); }); }
  svg.addEventListener("keydown", function (e) {
    var k = e.key;
    if (k === "+" || k === "=") { zoom(0.5); }
    else if (k === "-" || k === "_") { zoom(2); }
    else if (k === "0") { setWindow(F0, F1); }
    else if (k === "ArrowLeft") { pan(-0.2); }
    else if (k === "ArrowRight") { pan(0.2); }
    else if (k === "Enter" && e.target.classList && e.target.classList.contains("gap")) { zoomTo(e.target); }
    else { return; }
    e.preventDefault();
  });
  function zoomTo(el) {
    var a = +el.dataset.t, b = +el.dataset.t2, pad = Math.max((b - a) * 0.6, 2);
    setWindow(a - pad, b + pad);
  }
  svg.addEventListener("click", function (e) {
    var el = e.target.closest && e.target.closest(".gap");
    if (el) { zoomTo(el); }
  });
  svg.addEventListener("wheel", function (e) {
    e.preventDefault();
    zoom(e.deltaY < 0 ? 0.8 : 1.25, tAt(e.clientX));
  }, {passive: false});
  var drag = null;
  svg.addEventListener("mousedown", function (e) { drag = {x: e.clientX, a: t0, b: t1}; });
  window.addEventListener("mouseup", function () { drag = null; });
  svg.addEventListener("mousemove", function (e) {
    if (drag && e.buttons === 1) {
      var r = svg.getBoundingClientRect();
      var dt = (e.clientX - drag.x) * (svg.viewBox.baseVal.width / r.width) / PW * (drag.b - drag.a);
      if (Math.abs(dt) > 0) { setWindow(drag.a - dt, drag.b - dt); }
      return;
    }
    var g = e.target.closest && e.target.closest("g.lane[data-lane-index]");
    if (!g || !tip) { return; }
    var lane = data.lanes[+g.dataset.laneIndex], t = tAt(e.clientX), out = [];
    for (var i = 0; i < lane.lines.length; i++) {
      var line = lane.lines[i], lo = 0, hi = line.t.length - 1;
      while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (line.t[mid] < t) { lo = mid; } else { hi = mid; } }
      var n = Math.abs(line.t[lo] - t) <= Math.abs(line.t[hi] - t) ? lo : hi;
      out.push(line.name + " = " + line.v[n] + " " + lane.unit + " at " + stamp(line.t[n], false) +
        "  " + line.refs[n]);
    }
    tip.textContent = lane.label + "\n" + out.join("\n"); tip.hidden = false;
    tip.style.left = Math.min(e.clientX + 12, window.innerWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = (e.clientY + 14) + "px";
  });
  svg.addEventListener("mouseleave", hide);
})();
"""
