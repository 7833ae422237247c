"""`pleg-doctor goroutines -o html` (goroutines/html.py): escaping, the JSON blob, the filters'
values, the `-m`/`--min-wait` pre-filter, the bounded graph and chains, and the page size on
the 100 000-goroutine benchmark dump. The page in a real Chromium is tests/integration's."""

from __future__ import annotations

import html as htmllib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plegdoctor.goroutines import analyze, html
from plegdoctor.goroutines.html import keep_bucket, render_html, script_json, short_path
from plegdoctor.goroutines.model import GoroutineAnalysis
from plegdoctor.goroutines.parse import parse_dump_binary

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "goroutines"
STALL = "containerd-1.6-stall-go1.19-raw.txt"
CLI = [sys.executable, "-m", "plegdoctor.cli", "goroutines"]
HOSTILE = (
    "goroutine 1 [<script>alert(1)</script>, 3 minutes]:\n"
    "main.worker()\n\t/src/main.go:20 +0x1d\ncreated by main.main\n\t/src/main.go:6 +0x2\n\n"
    "goroutine 2 [select]:\n"
    "main.</script><script>alert(2)</script>(0x1)\n\t/src/a&b/<x>.go:10 +0x1d\n"
    "main.main()\n\t/src/main.go:5 +0x2\n\n"
    "goroutine 3 [chan receive]:\n"
    "main.<!--sep\u2028ara\u2029tor-->()\n\t/src/main.go:30 +0x1d\n"
)


def load(*names: str) -> GoroutineAnalysis:
    dumps = []
    for name in names:
        with (FIX / name).open("rb") as fh:
            dumps += parse_dump_binary(fh, source=str(FIX / name))
    return analyze(dumps)


def load_text(text: str, tmp_path: Path) -> GoroutineAnalysis:
    path = tmp_path / "dump.txt"
    path.write_text(text, encoding="utf-8")
    with path.open("rb") as fh:
        return analyze(parse_dump_binary(fh, source=str(path)))


def blob(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert m is not None, "no JSON data blob"
    data = json.loads(m.group(1))
    table = data["S"]  # frames name their texts by index, as the page's script resolves them
    for b in data["buckets"]:
        b["f"] = [[table[f[0]], table[f[1]], table[f[2]], table[f[3]], f[4], table[f[5]]] for f in b["f"]]
        if b["cb"]:
            b["cb"] = [table[i] for i in b["cb"][:4]] + [b["cb"][4]]
    return data


def outside_blob(page: str) -> str:
    return re.sub(r'(<script type="application/json" id="data">).*?(</script>)', r"\1\2", page, flags=re.S)


def options(page: str, select_id: str) -> list[str]:
    m = re.search(rf'<select id="{select_id}">(.*?)</select>', page, re.S)
    assert m is not None, f"no #{select_id}"
    return [htmllib.unescape(v) for v in re.findall(r'<option value="([^"]*)"', m.group(1)) if v]


def test_script_json_cannot_close_its_element_and_reads_back() -> None:
    obj = {"f": "</script><script>alert(1)</script>", "c": "<!-- & -->", "u": "a\u2028b\u2029c", "zh": "锁"}
    text = script_json(obj)
    assert not set(text) & set("<>&\u2028\u2029") and text.isascii()
    assert json.loads(text) == obj


def test_dump_text_is_escaped_everywhere(tmp_path: Path) -> None:
    a = load_text(HOSTILE, tmp_path)
    page = render_html(a)
    # only our two script elements, and nothing of the dump opens a tag or a comment
    assert page.count("<script") == 2 and page.count("</script>") == 2
    rest = outside_blob(page)
    for raw in ("<script>alert", "</script><script>alert", "<!--sep", "a&b/<x>"):
        assert raw not in rest, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rest  # the state, as text (header, filter option)
    data = blob(page)
    funcs = {f[1] for b in data["buckets"] for f in b["f"]}
    files = {f[3] for b in data["buckets"] for f in b["f"]}
    assert "main.</script><script>alert(2)</script>" in funcs and "/src/a&b/<x>.go" in files
    assert any("\u2028" in f for f in funcs)
    assert "<script>alert(1)</script>" in options(page, "filter-state")


def test_blob_holds_every_bucket_as_the_analysis_has_it() -> None:
    a = load(STALL)
    data = blob(render_html(a))
    assert data["total"] == len(a.buckets) == data["kept"] == len(data["buckets"])
    for rec in data["buckets"]:
        b = a.buckets[rec["n"]]
        assert (rec["s"], rec["c"], rec["p"]) == (b.state, b.count, b.dump)
        assert rec["w"] == (None if b.wait_min is None else [b.wait_min, b.wait_max])
        assert rec["ids"] == list(b.ids[: html.MAX_IDS]) and rec["more"] == b.count - len(rec["ids"])
        assert [f[1] for f in rec["f"]] == [loc[0] for loc in b.sample.stack]
        assert [(f[3], f[4]) for f in rec["f"]] == [(loc[1], loc[2]) for loc in b.sample.stack]
        assert data["dumps"][rec["p"]]["label"] == a.dumps[b.dump].label


def test_filter_options_are_the_values_the_buckets_carry() -> None:
    a = load(STALL, "shim-runc-v2-1.6-delete-umount-raw.txt")
    page = render_html(a)
    data = blob(page)
    states = [b["s"] for b in data["buckets"]]
    procs = [data["dumps"][b["p"]]["label"] for b in data["buckets"]]
    assert len(set(procs)) == 2
    assert sorted(options(page, "filter-state")) == sorted(set(states))
    assert sorted(options(page, "filter-process")) == sorted(set(procs))
    # the option text counts the buckets of each value
    m = re.search(r'<select id="filter-state">(.*?)</select>', page, re.S)
    assert m is not None
    for value, count in re.findall(r'<option value="([^"]+)">[^<]*\((\d+)\)</option>', m.group(1)):
        assert states.count(htmllib.unescape(value)) == int(count)
    # what the script turns into data-state / data-process / data-wait-max / data-count
    for attr in ("data-state", "data-process", "data-wait-max", "data-count"):
        assert f'setAttribute("{attr}"' in html.JS


def test_contract_ids_and_counts_in_the_markup() -> None:
    a = load(STALL)
    page = render_html(a)
    for i in ("search", "filter-state", "filter-min-wait", "filter-process", "shown-count", "waitgraph"):
        assert page.count(f'id="{i}"') == 1, i
    assert 'id="filter-min-wait" type="number"' in page
    assert f"{len(a.buckets)} of {len(a.buckets)} buckets shown" in page
    assert "<link " not in page and "src=" not in outside_blob(page) and "url(http" not in page
    assert "@import" not in page and "@font-face" not in page


@pytest.mark.parametrize(("pattern", "min_wait"), [("bbolt", None), (None, 3), ("semacquire", 3)])
def test_m_and_min_wait_prefilter_as_text_does(pattern: str | None, min_wait: int | None) -> None:
    a = load(STALL)
    rx = re.compile(pattern) if pattern else None
    data = blob(render_html(a, filter_re=rx, min_wait=min_wait))
    expect = [i for i, b in enumerate(a.buckets) if keep_bucket(b, rx, min_wait)]
    assert 0 < len(expect) < len(a.buckets)
    assert [b["n"] for b in data["buckets"]] == expect and data["kept"] == len(expect)
    for rec in data["buckets"]:
        b = a.buckets[rec["n"]]
        if min_wait is not None:
            assert (b.wait_max or 0) >= min_wait
        if rx is not None:
            assert rx.search(b.state) or any(rx.search(loc[0]) for loc in b.sample.stack)


def test_cli_prefilters_html(tmp_path: Path) -> None:
    dump = FIX / STALL
    full = subprocess.run([*CLI, str(dump), "-o", "html"], capture_output=True, text=True, check=True).stdout
    some = subprocess.run(
        [*CLI, str(dump), "-o", "html", "-m", "bbolt", "--min-wait", "1"], capture_output=True, text=True, check=True
    ).stdout
    every, kept = blob(full)["buckets"], blob(some)["buckets"]
    assert 0 < len(kept) < len(every)
    assert all(any("bbolt" in f[1] for f in b["f"]) or "bbolt" in b["s"] for b in kept)
    assert all(b["w"] and b["w"][1] >= 1 for b in kept)
    assert "Pre-filtered by -m bbolt and --min-wait 1" in some


def test_graph_edges_go_from_holder_to_waiter() -> None:
    a = load(STALL)
    page = render_html(a)
    svg = page[page.index('<svg id="waitgraph"') : page.index("</svg>", page.index('<svg id="waitgraph"'))]
    nodes, edges = svg.count('class="wait-node'), svg.count('class="wait-edge"')
    assert nodes >= 2 and edges >= 1
    held = [w for w in a.waits if w.holder is not None]
    assert held
    # each held wait's kind labels an edge, and every edge's count is a number of real waits
    kinds = {str(w.kind) for w in held}
    labels = dict(re.findall(r'class="wait-edge" data-kind="([^"]+)" data-count="(\d+)"', svg))
    assert kinds <= set(labels)
    for kind, count in labels.items():
        assert 1 <= int(count) <= sum(1 for w in a.waits if str(w.kind) == kind)


def test_graph_is_bounded_and_says_what_it_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    a = load(STALL, "shim-runc-v2-1.6-delete-umount-raw.txt")
    full = render_html(a).count('class="wait-node')
    assert full > 2
    monkeypatch.setattr(html, "MAX_GRAPH_NODES", 2)
    page = render_html(a)
    assert page.count('class="wait-node') == 2
    assert f"Showing the top 2 of {full} nodes" in page and f"({full - 2} left out" in page


def test_chains_are_rows_of_nodes_with_their_evidence() -> None:
    a = load(STALL)
    assert a.chains
    page = render_html(a)
    shown = a.chains[: html.MAX_CHAINS]
    assert page.count('class="chain-node"') == sum(len(c.links) for c in shown)
    assert page.count('class="chain-svg"') == len(shown)
    link = shown[0].links[-1]
    m = re.search(rf'class="chain-node"[^>]*data-goroutine="{link.goroutine}"><title>([^<]*)</title>', page)
    assert m is not None
    title = htmllib.unescape(m.group(1))
    assert f"goroutine {link.goroutine}" in title and link.process in title and str(link.kind) in title
    assert re.search(r"\.go:\d+", title), title
    assert htmllib.escape(link.detail) in page  # the text list


def test_short_path_keeps_package_dir_and_file() -> None:
    assert short_path("/go/src/github.com/containerd/containerd/vendor/go.etcd.io/bbolt/db.go") == "bbolt/db.go"
    assert short_path("/usr/local/go/src/runtime/proc.go") == "runtime/proc.go"
    assert short_path("main.go") == "main.go" and short_path("/main.go") == "main.go" and short_path("") == "?"


def test_ids_are_capped_with_a_count_of_the_rest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    same = "".join(f"goroutine {i} [select]:\nmain.loop()\n\t/src/main.go:7 +0x1d\n\n" for i in range(10, 17))
    a = load_text(same + "goroutine 99 [running]:\nmain.main()\n\t/src/main.go:3 +0x2\n", tmp_path)
    big = max(a.buckets, key=lambda b: b.count)
    assert big.count > 3
    monkeypatch.setattr(html, "MAX_IDS", 3)
    rec = next(b for b in blob(render_html(a))["buckets"] if a.buckets[b["n"]] is big)
    assert rec["ids"] == list(big.ids[:3]) and rec["more"] == big.count - 3
    assert '" +" + b.more + " more"' in html.JS


def test_100k_dump_page_stays_small(tmp_path: Path) -> None:
    dump = tmp_path / "goroutines.txt"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_goroutine_dump.py"), str(dump), "--goroutines", "100000"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run([*CLI, str(dump), "-o", "html"], capture_output=True, check=True).stdout
    assert len(out) < 400_000, f"{len(out)} bytes"
    page = out.decode()
    data = blob(page)
    assert sum(b["c"] for b in data["buckets"]) == 100_000
    assert all(len(b["ids"]) <= html.MAX_IDS and b["more"] == b["c"] - len(b["ids"]) for b in data["buckets"])
    assert page.count("<details") == 0  # buckets are drawn by the script, not 10^5 elements
    assert page.count('class="wait-node') <= html.MAX_GRAPH_NODES
