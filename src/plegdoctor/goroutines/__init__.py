"""Goroutine engine: parse Go goroutine dumps, bucket them, and find who waits for whom.

- `parse`: every framing of a dump -> `Dump` records (model.py).
- `buckets`: similar stacks grouped, like panicparse.
- `waits`: what each blocked goroutine waits for, and which goroutine holds it.
- `chains`: blocking chains from symptom goroutines to the deepest cause.
- `analyze(dumps)`: all of the above as one `GoroutineAnalysis`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plegdoctor.goroutines.model import Dump, Frame, Goroutine, Problem, Similarity
from plegdoctor.goroutines.parse import parse_dump_binary, parse_dump_stream, parse_dump_text

if TYPE_CHECKING:
    from plegdoctor.goroutines.analysis import GoroutineAnalysis

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


def analyze(dumps: list[Dump], **options: Any) -> GoroutineAnalysis:
    """Buckets, waits and chains for `dumps` (see plegdoctor.goroutines.analysis)."""
    from plegdoctor.goroutines.analysis import analyze as _analyze

    return _analyze(dumps, **options)
