#!/usr/bin/env python3
"""Atheris target: the log scanner, i.e. the path a log file takes through pleg-doctor:
sniffing (plegdoctor.parsers.sniff over every registered parser), then the kubelet,
containerd, journald and dockerd log parsers (plegdoctor.parsers.logs.scanner's chunked
candidate-line scanner, journald framing, klog/logrus helpers, embedded goroutine dumps).

The input's length picks the parser (so seed files are plain log text and mutations reach
all of them): the sniffed kind (any parser, as `analyze` would pick it), or one of the four
log parsers forced as `--kind` would. A crash is any exception but `UserError`, a broken
invariant (fuzz/fuzzlib.py), or the compiled and the Python scanner loops disagreeing.
Usage and what the Makefile runs: fuzz/README.md.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["plegdoctor"]):
    from plegdoctor import parsers

    parsers.available()  # import (and so instrument) every parser module now

import fuzzlib

fuzzlib.speed_up_for_fuzzing()

CHOICES: tuple[str | None, ...] = (None, *fuzzlib.LOG_KINDS)


def test_one_input(data: bytes) -> None:
    kind = CHOICES[len(data) % len(CHOICES)]
    res = fuzzlib.parse_bytes(data, kind)
    fuzzlib.check_result(res, data)
    if fuzzlib.fingerprint(fuzzlib.parse_bytes_python_loop(data, kind)) != fuzzlib.fingerprint(res):
        raise fuzzlib.Broken("the compiled and the Python scanner loops read this input differently")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
