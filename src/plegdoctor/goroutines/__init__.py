"""Goroutine engine: parse Go goroutine dumps, bucket them, and find who waits for whom.

- `parse`: every framing of a dump -> `Dump` records (model.py); framing.py, pasted.py,
  scan.py, builder.py, lines.py and gostrings.py do the work.
- `buckets`: similar stacks grouped, like panicparse.
- `waits` (with `roles`, `syscalls`, `tags`): what each blocked goroutine waits for, and
  which goroutine holds it.
- `chains`: blocking chains from symptom goroutines to the deepest cause.
- `analyze(dumps)`: all of the above as one `GoroutineAnalysis`; `render` draws it.

Names are imported on first use, so `plegdoctor.goroutines.gostrings` (used by the log
parsers) does not load the parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plegdoctor.goroutines.model import Dump, Frame, Goroutine, GoroutineAnalysis, Problem, Similarity
    from plegdoctor.goroutines.parse import parse_dump_binary, parse_dump_stream, parse_dump_text

__all__ = [
    "Dump",
    "Frame",
    "Goroutine",
    "GoroutineAnalysis",
    "Problem",
    "Similarity",
    "analyze",
    "parse_dump_binary",
    "parse_dump_stream",
    "parse_dump_text",
]

_WHERE = {
    "Dump": "model",
    "Frame": "model",
    "Goroutine": "model",
    "GoroutineAnalysis": "model",
    "Problem": "model",
    "Similarity": "model",
    "parse_dump_binary": "parse",
    "parse_dump_stream": "parse",
    "parse_dump_text": "parse",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{where}"), name)


def analyze(dumps: list[Dump], **options: Any) -> GoroutineAnalysis:
    """Buckets, waits and chains for `dumps` (see plegdoctor.goroutines.analysis)."""
    from plegdoctor.goroutines.analysis import analyze as _analyze

    return _analyze(dumps, **options)
