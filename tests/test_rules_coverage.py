"""Every registered rule has a test where it fires and a look-alike where it stays quiet.

A static check over the test sources (tests/*.py): a code counts as covered when it is the
first argument of an `assert_fires(...)` call and of an `assert_quiet(...)` call (the helpers in
tests/rulecheck.py). The first argument is recognised in two forms, read with `ast`:

- a string literal: `assert_fires("PD421", ...)`;
- a name bound by the enclosing test's `@pytest.mark.parametrize`, whose values are string
  literals (a list of codes, or of tuples whose item at that name's position is the code):
  `@pytest.mark.parametrize("code", ["PD501", "PD502"])` ... `assert_quiet(code, ...)`.

Anything else (codes built at run time) is not seen: write the code out. This test checks
every code of the registry, including families whose tests are written elsewhere (kernel,
generic, process): a new rule without both tests fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from plegdoctor.rules.registry import load_all

TESTS = Path(__file__).resolve().parent
HELPERS = ("assert_fires", "assert_quiet")


def _parametrized(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, set[str]]:
    """{argument name: string values} from the function's @pytest.mark.parametrize decorators."""
    out: dict[str, set[str]] = {}
    for dec in fn.decorator_list:
        if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "parametrize"):
            continue
        if len(dec.args) < 2 or not isinstance(dec.args[0], ast.Constant) or not isinstance(dec.args[0].value, str):
            continue
        names = [n.strip() for n in dec.args[0].value.split(",")]
        values = dec.args[1]
        if not isinstance(values, (ast.List, ast.Tuple)):
            continue
        for item in values.elts:
            row = item.elts if isinstance(item, (ast.Tuple, ast.List)) and len(names) > 1 else [item]
            for name, val in zip(names, row, strict=False):
                if isinstance(val, ast.Constant) and isinstance(val.value, str):
                    out.setdefault(name, set()).add(val.value)
    return out


def _called_codes(source: str) -> dict[str, set[str]]:
    """{helper name: codes passed as its first argument} in one test module."""
    found: dict[str, set[str]] = {h: set() for h in HELPERS}
    tree = ast.parse(source)

    def visit(node: ast.AST, params: dict[str, set[str]]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = {**params, **_parametrized(node)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in HELPERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found[node.func.id].add(first.value)
            elif isinstance(first, ast.Name):
                found[node.func.id] |= params.get(first.id, set())
        for child in ast.iter_child_nodes(node):
            visit(child, params)

    visit(tree, {})
    return found


def _covered() -> dict[str, set[str]]:
    total: dict[str, set[str]] = {h: set() for h in HELPERS}
    for path in sorted(TESTS.glob("*.py")):
        for helper, codes in _called_codes(path.read_text(encoding="utf-8")).items():
            total[helper] |= codes
    return total


def test_detection_reads_literals_and_parametrize_lists() -> None:
    src = """
import pytest
def test_a(tmp_path):
    assert_fires("PD101", {}, tmp_path)
@pytest.mark.parametrize("code", ["PD501", "PD502"])
def test_b(code, tmp_path):
    assert_quiet(code, {}, tmp_path)
@pytest.mark.parametrize("code,files", [("PD601", []), ("PD602", [])])
def test_c(code, files):
    assert_fires(code, files)
def test_d(codes):
    assert_quiet(codes[0], [])
"""
    found = _called_codes(src)
    assert found["assert_fires"] == {"PD101", "PD601", "PD602"}
    assert found["assert_quiet"] == {"PD501", "PD502"}


def test_every_rule_has_a_fire_test_and_a_quiet_test() -> None:
    codes = set(load_all())
    covered = _covered()
    no_fire = sorted(codes - covered["assert_fires"])
    no_quiet = sorted(codes - covered["assert_quiet"])
    assert not no_fire and not no_quiet, f"no assert_fires test: {no_fire}; no assert_quiet test: {no_quiet}"


def test_tests_name_only_registered_codes() -> None:
    codes = set(load_all())
    covered = _covered()
    unknown = sorted((covered["assert_fires"] | covered["assert_quiet"]) - codes)
    assert not unknown, f"tests assert on codes no rule has: {unknown}"
