"""Modules stay small enough to read in one sitting (issue #11: "modules under about 500 lines").

A module over LIMIT lines fails, unless it is listed in OVER with the size it may not grow past;
a listed module that is back under LIMIT must leave the list, so the list only shrinks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "plegdoctor"
LIMIT = 500
OVER: dict[str, int] = {"knowledge.py": 514, "rules/process/states.py": 522}


def _sizes() -> dict[str, int]:
    return {
        str(p.relative_to(SRC)): sum(1 for _ in p.open(encoding="utf-8"))
        for p in sorted(SRC.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def test_no_module_grows_past_the_limit() -> None:
    too_big = {m: n for m, n in _sizes().items() if n > max(LIMIT, OVER.get(m, 0))}
    assert not too_big, f"modules over {LIMIT} lines (split them by concern): {too_big}"


@pytest.mark.parametrize("module", sorted(OVER))
def test_a_listed_module_still_needs_its_exception(module: str) -> None:
    size = _sizes().get(module)
    assert size is not None and size > LIMIT, f"{module} is {size} lines: remove it from OVER"
