"""Benchmark `pleg-doctor goroutines -o html` against panicparse's HTML on the same large dump.

Generates (or reuses) a 100 000-goroutine dump with bench/gen_goroutine_dump.py, then, each
--runs times (interleaved, so machine noise hits both alike):

  python -m plegdoctor.cli goroutines DUMP -o html > ours.html
  panicparse -parse=false -html theirs.html DUMP      (Debian panicparse 2.3; -parse=false as
                                                      bench_goroutines.py: no Go sources here)

and opens each page in a fresh context of headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright; never `playwright install`). Printed, median of the runs: render seconds, page
size, and in-page times from navigation start: `load` event end, first contentful paint, and
"painted" = the first frame after `load` (the same marker on both pages, set by an init
script); for ours also when the bucket list is painted (`window.__pdPainted`, set by the
page's script after its first render). Bar: ours painted in < 2 s (exit 1 when missed).

    python bench/bench_goroutines_html.py [--dump FILE] [--goroutines 100000] [--runs 3]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_goroutines import bench_dump, dump_options  # same directory: run as a script

BAR_MS = 2000.0
# the first frame after `load`, on any page (ours and panicparse's alike)
AFTER_LOAD = """addEventListener("load", () => requestAnimationFrame(() => setTimeout(() => {
  window.__pdLoadPaint = performance.now(); }, 0)));"""
TIMES_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {load: nav ? nav.loadEventEnd : null, fcp: fcp ? fcp.startTime : null,
          painted: window.__pdLoadPaint ?? null, list: window.__pdPainted ?? null,
          nodes: document.getElementsByTagName("*").length};
}"""


def render(cmd: list[str], out: Path | None) -> float:
    """Wall seconds of `cmd` (stdout to `out` when given)."""
    with open(out if out is not None else os.devnull, "wb") as fh:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    return wall


@contextlib.contextmanager
def chromium(root: str) -> Iterator[Any]:
    """A headless Chromium (system binary), its temporary files under `root`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("playwright not installed: .venv/bin/pip install 'playwright>=1.49'") from None
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = root
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=exe,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
                env={**os.environ, "TMPDIR": root},
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


def open_page(browser: Any, page_file: Path, ours: bool) -> dict[str, float]:
    """In-page times (ms from navigation start) of one cold open, plus the wall time of goto."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        context.add_init_script(AFTER_LOAD)
        page = context.new_page()
        start = time.perf_counter()
        page.goto(page_file.resolve().as_uri(), wait_until="load", timeout=120_000)
        page.wait_for_function("() => window.__pdLoadPaint !== undefined", timeout=120_000)
        if ours:
            page.wait_for_function("() => window.__pdPainted !== undefined", timeout=120_000)
        wall = (time.perf_counter() - start) * 1000
        times = page.evaluate(TIMES_JS)
        if ours and page.locator(".bucket").count() == 0:
            raise SystemExit("our page painted no .bucket")
        times["wall"] = wall
        return {k: float(v) for k, v in times.items() if v is not None}
    finally:
        context.close()


def main() -> None:
    args, pp = dump_options(__doc__)
    tmp = tempfile.mkdtemp(prefix="pleg-doctor-bench-html-")
    try:
        dump = bench_dump(args, tmp)
        ours_html, theirs_html = Path(tmp, "ours.html"), Path(tmp, "panicparse.html")
        ours_cmd = [sys.executable, "-m", "plegdoctor.cli", "goroutines", dump, "-o", "html"]
        pp_cmd = [pp, "-parse=false", "-html", str(theirs_html), dump]
        renders: dict[str, list[float]] = {"pleg-doctor": [], "panicparse": []}
        opens: dict[str, list[dict[str, float]]] = {"pleg-doctor": [], "panicparse": []}
        for _ in range(args.runs):
            renders["pleg-doctor"].append(render(ours_cmd, ours_html))
            renders["panicparse"].append(render(pp_cmd, None))
        with chromium(tmp) as browser:
            for _ in range(args.runs):
                opens["pleg-doctor"].append(open_page(browser, ours_html, ours=True))
                opens["panicparse"].append(open_page(browser, theirs_html, ours=False))
        sizes = {"pleg-doctor": ours_html.stat().st_size, "panicparse": theirs_html.stat().st_size}
        print(
            f"dump: {dump} ({os.path.getsize(dump) / 1e6:.1f} MB, {args.goroutines} goroutines), "
            f"{args.runs} runs each, medians; times in ms from navigation start"
        )
        for name in ("pleg-doctor", "panicparse"):
            o = opens[name]

            def med(key: str, o: list[dict[str, float]] = o) -> str:
                vals = [r[key] for r in o if key in r]
                return f"{statistics.median(vals):7.0f}" if vals else "      -"

            print(
                f"  {name:<12} render {statistics.median(renders[name]):5.2f} s  size {sizes[name] / 1024:7.1f} KiB"
                f"  load {med('load')}  fcp {med('fcp')}  painted {med('painted')}  list {med('list')}"
                f"  goto+paint wall {med('wall')}  DOM elements {med('nodes')}"
            )
        ours_painted = statistics.median(max(r["painted"], r["list"]) for r in opens["pleg-doctor"])
        theirs_painted = statistics.median(r["painted"] for r in opens["panicparse"])
        print(
            f"  ours painted {ours_painted:.0f} ms vs panicparse {theirs_painted:.0f} ms"
            f" ({ours_painted / theirs_painted:.2f}x); size {sizes['pleg-doctor'] / sizes['panicparse']:.2f}x"
        )
        ok = ours_painted < BAR_MS
        print(f"  {'PASS' if ok else 'FAIL'} (bar: ours painted < {BAR_MS:.0f} ms)")
        if not ok:
            sys.exit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
