"""A real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for the HTML pages.

`chromium_page` (a fixture; import it into the test module) opens a page file at 1280x800 and
records what a person's browser would complain about: console errors, uncaught exceptions,
dialogs (alert/confirm/prompt) and every request that leaves the page (each one is aborted).
It never runs `playwright install`: the browser is the system's chromium, found on PATH.

The Playwright driver, the browser and its profile dir are started for one test and stopped in
`finally`, also when the test fails; the profile and the driver's temporary files live in one
private temp dir that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Not imported from conftest: tests/lab imports this module too (see test_lab_small.py).
REQUIRE = os.environ.get("PLEG_DOCTOR_REQUIRE_INTEGRATION") == "1"


def _missing(reason: str) -> None:
    """Skip the test, or fail it under PLEG_DOCTOR_REQUIRE_INTEGRATION=1 (CI)."""
    if REQUIRE:
        pytest.fail(f"{reason} and PLEG_DOCTOR_REQUIRE_INTEGRATION=1")
    pytest.skip(reason)


WIDTH, HEIGHT = 1280, 800
MIN_FONT_PX = 12.0
TIMEOUT_MS = 5_000  # per action: a missing element fails the test in seconds, not minutes
LOCAL_SCHEMES = ("data:", "blob:", "about:")

# A description of the focused element: tag, id, classes, its text and its ancestors' selectors.
_FOCUSED_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const sel = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + Array.from(e.classList || []).map((c) => '.' + c).join('');
  const path = [];
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) path.unshift(sel(e));
  return {tag: el.tagName.toLowerCase(), id: el.id || '', classes: Array.from(el.classList || []),
          text: (el.textContent || '').trim().slice(0, 80), path: path.join(' > ')};
}"""

# Every rendered text node's font size in CSS px (SVG text scaled by its screen transform),
# and whether the document or <main> scrolls sideways.
_READABLE_JS = """(minPx) => {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.nodeValue.trim();
    const el = n.parentElement;
    if (!text || !el) continue;
    if (el.closest('title, script, style, noscript, desc, metadata')) continue;
    if (!el.checkVisibility({visibilityProperty: true, opacityProperty: true})) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0 && r.height > 0);
    if (!rects.length) continue;
    let px = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement && el.getScreenCTM) {
      const m = el.getScreenCTM();
      if (m) px *= Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
    }
    if (px < minPx - 0.01) {
      const where = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
        + Array.from(el.classList).map((c) => '.' + c).join('');
      small.push({text: text.slice(0, 60), px: Math.round(px * 100) / 100, path: where});
    }
  }
  const doc = document.documentElement;
  const main = document.querySelector('main');
  return {small: small.slice(0, 30), smallCount: small.length,
          docScrollWidth: doc.scrollWidth, docClientWidth: doc.clientWidth,
          mainScrollWidth: main ? main.scrollWidth : 0, mainClientWidth: main ? main.clientWidth : 0};
}"""


@dataclass(frozen=True, slots=True)
class Focused:
    """What Tab moved the focus to."""

    tag: str
    id: str
    classes: tuple[str, ...]
    text: str
    path: str  # "html > body > main > section#verdict-box > details.other-fixes > summary"

    def within(self, selector_part: str) -> bool:
        """True when this element or an ancestor matches one `tag#id.class` step, e.g. "#verdict-box"."""
        return any(selector_part in step for step in self.path.split(" > "))


@dataclass(slots=True)
class Readability:
    small: list[dict[str, Any]]
    small_count: int
    doc_scroll_width: int
    doc_client_width: int
    main_scroll_width: int
    main_client_width: int

    def problems(self) -> list[str]:
        out = [f"{s['px']}px < {MIN_FONT_PX}px: {s['text']!r} ({s['path']})" for s in self.small]
        if self.small_count > len(self.small):
            out.append(f"... {self.small_count - len(self.small)} more text nodes under {MIN_FONT_PX}px")
        if self.doc_scroll_width > self.doc_client_width + 1:
            out.append(f"page scrolls sideways: {self.doc_scroll_width}px wide in {self.doc_client_width}px")
        if self.main_scroll_width > self.main_client_width + 1:
            out.append(f"<main> scrolls sideways: {self.main_scroll_width}px of content in {self.main_client_width}px")
        return out


@dataclass(slots=True)
class BrowserPage:
    """One loaded page and what the browser reported while it ran."""

    page: Any  # playwright.sync_api.Page
    url: str
    tmp_path: Path
    profile_dir: Path  # removed (with the driver's temporary files) when the page is closed
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def screenshot(self, name: str = "page.png", *, full_page: bool = False) -> Path:
        """The first screen (or the whole page) as a PNG in the test's tmp_path (never committed)."""
        path = self.tmp_path / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def focused(self) -> Focused | None:
        d = self.page.evaluate(_FOCUSED_JS)
        if d is None:
            return None
        return Focused(d["tag"], d["id"], tuple(d["classes"]), d["text"], d["path"])

    def tab_through(self, presses: int) -> list[Focused]:
        """Press Tab `presses` times from the top of the page; the element focused after each press."""
        self.page.evaluate(
            "() => { if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0); }"
        )
        out: list[Focused] = []
        for _ in range(presses):
            self.page.keyboard.press("Tab")
            f = self.focused()
            if f is not None:
                out.append(f)
        return out

    def focusable_count(self) -> int:
        """How many elements Tab could stop at (an upper bound for `tab_through`)."""
        return int(
            self.page.evaluate(
                """() => document.querySelectorAll('a[href], button, input, select, textarea, summary,'
                + ' [tabindex]:not([tabindex="-1"])').length"""
            )
        )

    def readability(self) -> Readability:
        d = self.page.evaluate(_READABLE_JS, MIN_FONT_PX)
        return Readability(
            d["small"],
            d["smallCount"],
            d["docScrollWidth"],
            d["docClientWidth"],
            d["mainScrollWidth"],
            d["mainClientWidth"],
        )

    def assert_readable(self) -> None:
        problems = self.readability().problems()
        assert not problems, "not readable at 1280x800:\n" + "\n".join(problems)

    def assert_quiet(self) -> None:
        """No console error, no uncaught exception, no request leaving the page, no dialog."""
        assert not self.page_errors, f"uncaught exceptions: {self.page_errors}"
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.requests, f"network requests (all aborted): {self.requests}"
        assert not self.dialogs, f"dialogs opened: {self.dialogs}"

    def wait_until(self, predicate_js: str, what: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> None:
        """Wait until the JS function `predicate_js(arg)` is truthy; an AssertionError naming `what` if not."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(predicate_js, arg=arg, timeout=timeout_ms)
        except PlaywrightTimeout:
            raise AssertionError(f"not within {timeout_ms / 1000:g} s: {what}") from None

    def visible_count(self, selector: str) -> int:
        """Elements matching `selector` that are rendered (not display:none, not in a hidden parent)."""
        return int(
            self.page.evaluate(
                "(s) => Array.from(document.querySelectorAll(s)).filter((e) => e.checkVisibility()).length",
                selector,
            )
        )


def _playwright() -> Any:
    """The sync Playwright entry point; a missing package skips (fails under PLEG_DOCTOR_REQUIRE_INTEGRATION=1)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("missing the Python package playwright (pip install -e '.[dev]')")
    return sync_playwright


@contextlib.contextmanager
def _private_tmpdir(root: str) -> Iterator[None]:
    """TMPDIR=root while the Playwright driver starts, so its temporary files land in our dir."""
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = root
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


def _local(url: str, page_url: str) -> bool:
    return url == page_url or url.split("#", 1)[0] == page_url.split("#", 1)[0] or url.startswith(LOCAL_SCHEMES)


@contextlib.contextmanager
def open_browser_page(path: Path, tmp_path: Path) -> Iterator[BrowserPage]:
    """Open the file `path` in a fresh Chromium at 1280x800; close everything when done."""
    exe = shutil.which("chromium")
    if exe is None:
        _missing("missing chromium (run .ci/install-deps.sh)")
    assert exe is not None
    sync_playwright = _playwright()
    root = tempfile.mkdtemp(prefix="pleg-doctor-chromium-")
    try:
        with _private_tmpdir(root):
            manager = sync_playwright()
            pw = manager.start()
        try:
            context = pw.chromium.launch_persistent_context(
                os.path.join(root, "profile"),
                executable_path=exe,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
                headless=True,
                viewport={"width": WIDTH, "height": HEIGHT},
                # its temporary files, caches and config in our dir, not in /tmp or ~/.cache
                env={
                    **os.environ,
                    "TMPDIR": root,
                    "XDG_CACHE_HOME": f"{root}/cache",
                    "XDG_CONFIG_HOME": f"{root}/config",
                },
            )
            try:
                yield _load(context, path, tmp_path, Path(root))
            finally:
                context.close()
        finally:
            pw.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _load(context: Any, path: Path, tmp_path: Path, profile_dir: Path) -> BrowserPage:
    url = path.resolve().as_uri()
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    bp = BrowserPage(page=page, url=url, tmp_path=tmp_path, profile_dir=profile_dir)

    def on_request(request: Any) -> None:
        if not _local(request.url, url):
            bp.requests.append(request.url)

    def on_route(route: Any) -> None:
        if _local(route.request.url, url):
            route.continue_()
        else:
            route.abort()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            bp.console_errors.append(f"{msg.text} ({loc.get('url', '')}:{loc.get('lineNumber', '')})")

    def on_dialog(dialog: Any) -> None:
        bp.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    context.route("**/*", on_route)
    page.on("request", on_request)
    page.on("websocket", lambda ws: bp.requests.append(ws.url))
    page.on("console", on_console)
    page.on("pageerror", lambda exc: bp.page_errors.append(str(exc)))
    page.on("dialog", on_dialog)
    page.goto(url, wait_until="load", timeout=120_000)
    return bp


@pytest.fixture
def chromium_page(tmp_path: Path) -> Iterator[Callable[[Path], BrowserPage]]:
    """`open(path)` -> the loaded BrowserPage; every browser opened is closed at teardown."""
    stack = contextlib.ExitStack()

    def open_page(path: Path) -> BrowserPage:
        return stack.enter_context(open_browser_page(path, tmp_path))

    with stack:
        yield open_page
