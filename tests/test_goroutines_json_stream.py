"""The goroutines JSON is streamed in batches and equals the one-piece document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plegdoctor.goroutines import analyze
from plegdoctor.goroutines.parse import parse_dump_binary
from plegdoctor.goroutines.render import analysis_json, iter_json

FIX = Path(__file__).parent / "fixtures" / "goroutines"


@pytest.mark.parametrize("batch", [1, 2, 3, 2000])
def test_streamed_json_equals_the_document(batch: int) -> None:
    dumps = []
    for name in ("containerd-1.6-stall-go1.19-raw.txt", "containerd-1.7.24-go1.24-sigusr1-raw.txt"):
        with (FIX / name).open("rb") as fh:
            dumps += parse_dump_binary(fh, source=name)
    a = analyze(dumps)
    assert len(a.waits) > 3  # several batches at the small sizes
    text = b"".join(iter_json(a, batch=batch))
    assert text.endswith(b"}\n")
    assert json.loads(text) == json.loads(json.dumps(analysis_json(a)))
