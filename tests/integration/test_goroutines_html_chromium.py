"""`pleg-doctor goroutines -o html` in a real Chromium: the 100 000-goroutine benchmark dump
(search and filters work on the page itself, no errors, no network) and a dump whose names
carry HTML (shown as text, never run)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from browser import BrowserPage, chromium_page  # noqa: F401  (chromium_page is a fixture)

from plegdoctor.goroutines.analysis import analyze
from plegdoctor.goroutines.cli import load_dumps

Opener = Callable[[Path], BrowserPage]
ROOT = Path(__file__).resolve().parent.parent.parent
GOROUTINES = 100_000
CONTRACT_IDS = ("search", "filter-state", "filter-min-wait", "filter-process", "shown-count", "waitgraph")
PAYLOAD = "<img src=x onerror=alert(1)>"
# a dump whose state and function names are HTML that runs script if the page does not escape it;
# the function name uses form feeds, which HTML treats as spaces and the dump syntax allows in a name
HOSTILE_DUMP = (
    f"goroutine 1 [{PAYLOAD}, 3 minutes]:\n"
    "main.worker()\n\t/src/main.go:20 +0x1d\ncreated by main.main\n\t/src/main.go:6 +0x2\n\n"
    "goroutine 2 [running]:\n"
    "main.(*T).<img\fsrc=x\fonerror=alert(1)>(0x1)\n\t/src/main.go:10 +0x1d\n"
    "main.main()\n\t/src/main.go:5 +0x2\n\n"
    "goroutine 3 [select]:\n"
    "main.<svg/onload=alert(1)>()\n\t/src/main.go:30 +0x1d\n"
)


def goroutines_html(dump: Path, out: Path) -> Path:
    with out.open("wb") as f:
        subprocess.run(
            [sys.executable, "-m", "plegdoctor.cli", "goroutines", str(dump), "-o", "html"],
            stdout=f,
            check=True,
            timeout=600,
        )
    return out


@pytest.fixture(scope="session")
def big_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The 100k dump of bench/gen_goroutine_dump.py and its HTML page, made once per session."""
    d = tmp_path_factory.mktemp("goroutines-100k")
    dump = d / "goroutines.txt"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_goroutine_dump.py"), str(dump), "--goroutines", str(GOROUTINES)],
        check=True,
        timeout=600,
    )
    return dump, goroutines_html(dump, d / "goroutines.html")


@pytest.fixture(scope="session")
def unique_function(big_dump: tuple[Path, Path]) -> str:
    """A function name (its last dotted part) found in exactly one bucket's stack, matched case-blind
    against every function, file and state of the dump."""
    dumps, _ = load_dumps([str(big_dump[0])])
    a = analyze(dumps)
    texts = [(b.state + "\n" + "\n".join(f"{fn}\n{file}" for fn, file, _ in b.sample.stack)).lower() for b in a.buckets]
    seen: set[str] = set()
    for b in a.buckets:
        for fn, _, _ in b.sample.stack:
            name = fn.rsplit(".", 1)[-1].strip("()*")
            if len(name) < 8 or name in seen or not re.fullmatch(r"\w+", name):
                continue
            seen.add(name)
            if sum(name.lower() in t for t in texts) == 1:
                return name
    raise AssertionError("no function name of the dump is in exactly one bucket")


PAINTED = "() => document.querySelectorAll('.bucket').length > 0"


@pytest.fixture
def big_page(big_dump: tuple[Path, Path], chromium_page: Opener) -> BrowserPage:  # noqa: F811
    return chromium_page(big_dump[1])


def test_contract_elements(big_page: BrowserPage) -> None:
    missing = [i for i in CONTRACT_IDS if big_page.page.locator(f"#{i}").count() != 1]
    assert not missing, f"missing ids: {missing}"
    big_page.wait_until(PAINTED, "a .bucket is shown")
    for cls in ("bucket", "wait-node", "wait-edge", "chain-node"):
        assert big_page.page.locator(f".{cls}").count() >= 1, f"no .{cls}"
    graph = big_page.page.locator("#waitgraph")
    assert graph.locator(".wait-node").count() >= 2 and graph.locator(".wait-edge").count() >= 1
    big_page.assert_quiet()
    big_page.assert_readable()  # not in the contract of item 4C; the page meets it, keep it so


def _shown(bp: BrowserPage) -> str:
    assert bp.page.locator("#shown-count").count() == 1, "no #shown-count"
    return bp.page.locator("#shown-count").inner_text().strip()


# the visible .bucket elements (a page may render only some of them: those are the ones counted)
VISIBLE = "Array.from(document.querySelectorAll('.bucket')).filter((e) => e.checkVisibility())"


def test_search_narrows_the_buckets(big_page: BrowserPage, unique_function: str) -> None:
    bp = big_page
    assert bp.page.locator("#search").count() == 1, "no #search"
    bp.wait_until(PAINTED, "a .bucket is shown")
    before = bp.visible_count(".bucket")
    assert before >= 2, f"{before} visible .bucket before searching"
    count_before = _shown(bp)
    bp.page.locator("#search").fill(unique_function)
    bp.wait_until(
        f"(n) => {{ const v = {VISIBLE}; return v.length >= 1 && v.length < n; }}",
        f"typing {unique_function!r} leaves fewer than {before} buckets shown",
        before,
    )
    after = bp.visible_count(".bucket")
    text = bp.page.evaluate(f"() => {VISIBLE}.map((e) => e.textContent)")
    assert all(unique_function.lower() in t.lower() for t in text), f"a shown bucket lacks {unique_function}"
    shown = _shown(bp)
    assert shown != count_before, f"#shown-count did not change ({shown!r})"
    assert re.search(rf"\b{after}\b", shown), f"#shown-count {shown!r} does not say {after}"
    bp.assert_quiet()


def test_state_filter_shows_only_that_state(big_page: BrowserPage) -> None:
    bp = big_page
    sel = bp.page.locator("#filter-state")
    assert sel.count() == 1, "no #filter-state"
    bp.wait_until(PAINTED, "a .bucket is shown")
    states = bp.page.evaluate(f"() => {VISIBLE}.map((e) => e.getAttribute('data-state'))")
    assert states and all(states), f".bucket without data-state: {states[:5]}"
    values = [v for v in sel.locator("option").evaluate_all("(os) => os.map((o) => o.value)") if v in states]
    # a state that only some shown buckets have, so the filter must hide the others
    value = next((v for v in values if states.count(v) < len(states)), None)
    assert value is not None, f"#filter-state offers none of the bucket states {sorted(set(states))[:10]}"
    sel.select_option(value)
    bp.wait_until(
        f"(s) => {{ const v = {VISIBLE}; return v.length >= 1 && v.every((e) => e.dataset.state === s); }}",
        f"choosing state {value!r} shows only buckets of that state",
        value,
    )
    bp.assert_quiet()


def test_names_with_html_show_as_text(tmp_path: Path, chromium_page: Opener) -> None:  # noqa: F811
    dump = tmp_path / "hostile.txt"
    dump.write_text(HOSTILE_DUMP, encoding="utf-8")
    bp = chromium_page(goroutines_html(dump, tmp_path / "hostile.html"))
    bp.wait_until(PAINTED, "a .bucket is shown")
    bp.page.wait_for_timeout(300)  # an onerror/onload would have fired by now
    assert not bp.dialogs, f"script from the dump ran: {bp.dialogs}"
    assert bp.page.locator("img[onerror], svg[onload]").count() == 0, (
        "an element with a handler from the dump is in the DOM"
    )
    text = bp.page.evaluate("() => document.body.textContent").replace("\f", " ").replace("\\x0c", " ")
    assert text.count(PAYLOAD) >= 2, "the state and the function name are not shown literally"
    assert "<svg/onload=alert(1)>" in text or "onload=alert(1)>" in text
    bp.assert_quiet()
