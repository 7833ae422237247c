"""The Chromium harness itself (tests/integration/browser.py): each check it offers fails on a page
that breaks it and passes on one that does not, and the browser leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser import BrowserPage, chromium_page, open_browser_page  # noqa: F401  (chromium_page is a fixture)

Opener = Callable[[Path], BrowserPage]

QUIET = """<!doctype html><html lang=en><head><meta charset=utf-8><title>quiet</title>
<style>body{font:14px sans-serif;margin:1em}</style></head><body><main>
<section id=s><h2>one</h2><button id=a>A</button><a id=b href="#x">B</a></section>
<svg width=300 height=40 viewBox="0 0 300 40"><text x=4 y=20 font-size=14>svg text</text>
<g class=node tabindex=0 id=n><rect width="10" height="10"/></g></svg>
<details><summary id=d>more</summary><p style="font-size:8px">hidden while closed</p></details>
<p id=x>text <img alt="" src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></p></main></body></html>"""

NOISY = """<!doctype html><html lang=en><head><meta charset=utf-8><title>noisy</title>
<link rel=stylesheet href="https://example.invalid/style.css"></head><body>
<img src="http://192.0.2.1/pixel.png"><img src="other.png">
<script>
console.error("boom from the page");
window.fetched = "pending";
fetch("http://192.0.2.1/api").then(() => { window.fetched = "ok"; }, () => { window.fetched = "failed"; });
alert("hello");
setTimeout(() => { throw new Error("uncaught later"); }, 0);
</script></body></html>"""

UNREADABLE = """<!doctype html><html lang=en><head><meta charset=utf-8><title>small</title></head><body><main>
<p style="font-size:10px">tiny words</p><div style="width:2000px">wide</div>
<svg width=100 height=20 viewBox="0 0 1000 200"><text x=0 y=150 font-size=60>shrunk</text></svg>
</main></body></html>"""


def _write(tmp_path: Path, name: str, html: str) -> Path:
    p = tmp_path / name
    p.write_text(html, encoding="utf-8")
    return p


def _processes_using(path: Path) -> list[int]:
    """PIDs whose command line names `path` (the profile dir is on chromium's command line)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline:
            pids.append(int(d.name))
    return pids


def test_quiet_page_passes_every_check(tmp_path: Path, chromium_page: Opener) -> None:  # noqa: F811
    bp = chromium_page(_write(tmp_path, "quiet.html", QUIET))
    bp.assert_quiet()
    bp.assert_readable()
    assert bp.readability().small_count == 0
    shot = bp.screenshot()
    assert shot.parent == tmp_path and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seen = bp.tab_through(4)
    assert [f.id for f in seen] == ["a", "b", "n", "d"]
    assert seen[0].within("#s") and seen[1].within("section#s") and not seen[2].within("#s")
    assert "node" in seen[2].classes and seen[2].tag == "g"
    assert bp.visible_count("button, summary") == 2


def test_noisy_page_is_recorded(tmp_path: Path, chromium_page: Opener) -> None:  # noqa: F811
    bp = chromium_page(_write(tmp_path, "noisy.html", NOISY))
    bp.page.wait_for_function("() => window.fetched !== 'pending'")
    assert bp.page.evaluate("() => window.fetched") == "failed", "the request was not aborted"
    bp.page.wait_for_timeout(200)
    assert "https://example.invalid/style.css" in bp.requests
    assert "http://192.0.2.1/pixel.png" in bp.requests
    assert "http://192.0.2.1/api" in bp.requests
    assert any(r.endswith("/other.png") and r.startswith("file://") for r in bp.requests)
    assert not any(r == bp.url or r.startswith("data:") for r in bp.requests)
    assert any("boom from the page" in m for m in bp.console_errors)
    assert any("uncaught later" in e for e in bp.page_errors)
    assert bp.dialogs == ["alert: hello"]
    with pytest.raises(AssertionError, match="uncaught later"):
        bp.assert_quiet()


def test_unreadable_page_is_caught(tmp_path: Path, chromium_page: Opener) -> None:  # noqa: F811
    bp = chromium_page(_write(tmp_path, "small.html", UNREADABLE))
    r = bp.readability()
    texts = {s["text"]: s["px"] for s in r.small}
    assert texts.get("tiny words") == 10.0
    assert texts.get("shrunk") == pytest.approx(6.0, abs=0.1)  # 60 user units drawn at 1/10 scale
    assert r.doc_scroll_width > r.doc_client_width
    with pytest.raises(AssertionError, match="scrolls sideways"):
        bp.assert_readable()


def test_browser_and_profile_are_gone_after_a_failure(tmp_path: Path) -> None:
    page = _write(tmp_path, "quiet.html", QUIET)
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="test failed"), open_browser_page(page, tmp_path) as bp:
        seen.append(bp.profile_dir)
        assert bp.profile_dir.is_dir() and _processes_using(bp.profile_dir)
        raise RuntimeError("test failed")
    assert seen and not seen[0].exists(), "the profile dir was left behind"
    assert not _processes_using(seen[0]), "a chromium process outlived the fixture"
