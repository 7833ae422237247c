"""The goroutine engine's structure: the scanner's named states, the bulk path for repeated
stacks (it must read exactly what the line loop reads), one Tag StrEnum, one go_unquote,
arguments kept as one text, and no import circle among goroutines/ modules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from plegdoctor.goroutines import analyze
from plegdoctor.goroutines.builder import Caches, DumpMeta
from plegdoctor.goroutines.flags import TRUNCATED
from plegdoctor.goroutines.model import Dump, GoroutineAnalysis
from plegdoctor.goroutines.parse import parse_dump_text
from plegdoctor.goroutines.roles import TAG_MARKERS
from plegdoctor.goroutines.scan import Scanner, ScanState
from plegdoctor.goroutines.tags import Tag

FIX = Path(__file__).parent / "fixtures" / "goroutines"
PKG = Path(__file__).resolve().parent.parent / "src" / "plegdoctor" / "goroutines"


def _goroutine(gid: int, arg: str, func: str = "main.f", created: str = "main.main") -> str:
    return (
        f"goroutine {gid} [select, 3 minutes]:\n"
        f"{func}({arg}, 0x1)\n\t/src/a/b.go:12 +0x1d\n"
        f"main.loop(0x{gid:x})\n\t/src/a/c.go:40 +0x5\n"
        f"created by {created}\n\t/src/a/main.go:9 +0x22\n"
    )


def _facts(dumps: list[Dump]) -> list[tuple[object, ...]]:
    return [
        (g.id, g.state, g.wait_minutes, g.stack, g.args, g.created_by, g.flags, g.line)
        for d in dumps
        for g in d.goroutines
    ]


def test_repeated_stacks_are_read_as_the_line_loop_reads_them() -> None:
    text = "\n".join(_goroutine(i, f"0xc0000{i:05x}") for i in range(1, 6))
    raw = parse_dump_text(text, source="d")
    # indented, the same text goes through the pasted-text path: one line at a time, no bulk path
    pasted = parse_dump_text("\n".join("  " + ln if ln else ln for ln in text.split("\n")), source="d")
    assert _facts(raw) == _facts(pasted)
    gs = raw[0].goroutines
    assert len({id(g.stack) for g in gs}) == 1  # one interned stack
    assert [g.args[0] for g in gs] == [f"0xc0000{i:05x}, 0x1" for i in range(1, 6)]
    assert gs[4].created_by == ("main.main", "/src/a/main.go", 9)


def test_a_known_file_line_with_another_function_is_not_taken_from_the_cache() -> None:
    text = _goroutine(1, "0x1") + "\n" + _goroutine(2, "0x2", func="main.g") + "\n" + _goroutine(3, "0x3")
    (dump,) = parse_dump_text(text, source="d")
    funcs = [g.stack[0][0] for g in dump.goroutines]
    assert funcs == ["main.f", "main.g", "main.f"]
    assert dump.goroutines[1].stack[0][1:] == ("/src/a/b.go", 12)


def test_a_cut_function_line_on_a_known_location_is_truncated() -> None:
    cut = _goroutine(2, "0x2").replace("main.f(0x2, 0x1)", "main.f(0x2, 0x1")
    (dump,) = parse_dump_text(_goroutine(1, "0x1") + "\n" + cut, source="d")
    first, second = dump.goroutines
    assert not first.flags & TRUNCATED
    assert second.flags & TRUNCATED and second.args[0] == "0x2, 0x1"


def test_a_known_file_line_under_another_creator_keeps_its_creator() -> None:
    text = _goroutine(1, "0x1") + "\n" + _goroutine(2, "0x2", created="main.other")
    (dump,) = parse_dump_text(text, source="d")
    assert [g.created_by[0] for g in dump.goroutines if g.created_by] == ["main.main", "main.other"]


def test_scanner_states_are_named() -> None:
    sc = Scanner("d", DumpMeta(), Caches(), [], False)
    steps = [
        ("goroutine 1 [running]:", ScanState.FRAMES),
        ("main.f(0x1)", ScanState.FUNC),
        ("\t/a/b.go:1 +0x1", ScanState.FRAMES),
        ("created by main.main", ScanState.CREATED),
        ("\t/a/main.go:2 +0x2", ScanState.FRAMES),
        ("", ScanState.OUTSIDE),
        ("runtime stack:", ScanState.SKIP),
        ("runtime.throw(0x1)", ScanState.SKIP),
        ("", ScanState.OUTSIDE),
        ("main.h(0x1)", ScanState.ORPHAN),
        ("some prose", ScanState.OUTSIDE),
    ]
    for n, (line, state) in enumerate(steps, 1):
        sc.scan([line], n)
        assert sc.state is state, (line, sc.state)
    sc.finish()
    (dump,) = sc.out
    assert [g.id for g in dump.goroutines] == [1]


def test_tags_are_one_strenum_and_json_sees_plain_strings() -> None:
    assert all(isinstance(tag, Tag) for _, tag in TAG_MARKERS)
    assert Tag.CRI.of("ListContainers") == "cri:ListContainers"
    assert Tag("status-lock") is Tag.STATUS_LOCK
    with pytest.raises(ValueError):
        Tag("no-such-tag")
    dumps = parse_dump_text((FIX / "containerd-1.6-stall-go1.19-raw.txt").read_text(), source="s")
    a = analyze(dumps)
    tags = {t for c in a.chains for link in c.links for t in link.tags}
    assert Tag.STATUS_LOCK in tags and "status-lock" in tags
    assert any(isinstance(t, Tag) for t in tags)
    assert json.loads(json.dumps(sorted(tags))) == sorted(str(t) for t in tags)


def test_go_unquote_is_one_function() -> None:
    from plegdoctor.goroutines.gostrings import go_unquote
    from plegdoctor.parsers.logs.common import go_unquote as logs_unquote

    assert logs_unquote is go_unquote
    assert go_unquote(r"a\tb\x41\u00e9") == "a\tbAé"
    assert go_unquote(r"a\qb\x4") == r"a\qb\x4"  # escapes Go never writes stay as written


def test_arguments_are_one_text_per_goroutine() -> None:
    text = "goroutine 7 [running]:\nmain.f()\n\t/a/b.go:1 +0x1\nmain.g(0x1, {0x2, 0x3})\n\t/a/b.go:2 +0x2\n"
    (dump,) = parse_dump_text(text, source="d")
    (g,) = dump.goroutines
    assert g.args == ("", "0x1, {0x2, 0x3}") and g.arg(1) == "0x1, {0x2, 0x3}"
    assert g.frame(0).args == "" and g.frame(1).receiver == "0x1"
    with pytest.raises(IndexError):
        g.arg(2)
    assert g._replace(stack=(), argtext="").args == ()


def test_rendering_is_not_the_models() -> None:
    assert not hasattr(GoroutineAnalysis, "to_json")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_fires_on_a_circle_and_not_on_a_chain() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_among_goroutine_modules() -> None:
    """Every import counts: module level, inside functions, under TYPE_CHECKING."""
    names = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((PKG / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("plegdoctor.goroutines."):
                    deps.add(node.module.rsplit(".", 1)[1])
                elif node.module == "plegdoctor.goroutines":
                    deps.update(a.name for a in node.names if a.name in names)
        graph[name] = deps & names
    assert _cycles(graph) == []
    assert "render" not in graph["model"] and "render" not in graph["analysis"]


def test_pointer_buckets_of_a_large_group_are_those_of_masking_each_goroutine() -> None:
    from plegdoctor.goroutines.buckets import _POINTER, bucketize

    variants = [
        "0xc000{:06x}, 0x1",  # pointers differ: one bucket
        "0xc000{:06x}?, 0x1",  # an inaccurate pointer: its `?` is masked with it (same bucket)
        "0xc000{:06x}??, 0x1",  # one `?` more than a pointer takes: another bucket
        "0xc000{:06x}, 0x2",  # a small value differs: another bucket
        "0x12345, 0xc000{:06x}",  # five hex digits are a value
        "*, 0xc000{:06x}",  # a `*` in the text is not a masked pointer
    ]
    text = "\n".join(
        f"goroutine {i + 1} [select]:\nmain.f({variants[i % len(variants)].format(i)})\n\t/a/b.go:1 +0x1\n"
        for i in range(6 * 60)
    )
    (dump,) = parse_dump_text(text, source="d")
    got = sorted(sorted(b.ids) for b in bucketize([dump]))
    naive: dict[str, list[int]] = {}
    for g in dump.goroutines:
        naive.setdefault(_POINTER.sub("*", g.argtext), []).append(g.id)
    assert got == sorted(sorted(ids) for ids in naive.values())
    assert sorted(map(len, got)) == [60, 60, 60, 60, 120]
