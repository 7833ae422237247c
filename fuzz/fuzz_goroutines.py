#!/usr/bin/env python3
"""Atheris target: the goroutine parser (plegdoctor.goroutines.parse), every entry point.

The input's length picks the entry point (so seed files are plain dump text and mutations
reach all four): `parse_dump_binary` (the whole-file fast path), `parse_dump_text` (one-line
log dumps are handed over this way), `parse_dump_stream` (`Source.lines()` pairs), and the
goroutine-dump evidence parser (plegdoctor.parsers.goroutine_dump) through `fuzzlib.parse_bytes`.
A crash is any exception but `UserError`, or a broken invariant (fuzz/fuzzlib.py). Usage and
what the Makefile runs: fuzz/README.md.
"""

from __future__ import annotations

import io
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["plegdoctor"]):
    from plegdoctor.goroutines.parse import parse_dump_binary, parse_dump_stream, parse_dump_text
    from plegdoctor.parsers import goroutine_dump  # noqa: F401 - instrumented for parse_bytes

import fuzzlib

fuzzlib.speed_up_for_fuzzing()


def test_one_input(data: bytes) -> None:
    mode = len(data) % 4
    display = fuzzlib.DISPLAY
    if mode == 0:
        dumps = parse_dump_binary(io.BytesIO(data), source=display)
        fuzzlib.check_dumps(dumps, data)
    elif mode == 1:
        text = data.decode("utf-8", "replace")
        dumps = parse_dump_text(text, source=display)
        fuzzlib.check_dumps(dumps, data, nlines=text.count("\n") + 1)
    elif mode == 2:
        dumps = parse_dump_stream(fuzzlib.source_of(data).lines(), source=display)
        fuzzlib.check_dumps(dumps, data)
    else:
        res = fuzzlib.parse_bytes(data, "goroutine-dump")
        fuzzlib.check_result(res, data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
