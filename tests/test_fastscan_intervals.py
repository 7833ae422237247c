"""The compiled relist intervals (src/plegdoctor/_fastscan_intervals.c): on every series of
tick times it answers, its differences and their order are the ones Python's subtraction
and sorted() give, bit for bit; it declines (None) exactly the series it must leave to the
Python path (a step back, a NaN, -0.0); and the timeline built with it is the timeline
built without it, gaps and percentiles included."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from array import array
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plegdoctor.analysis import pleg_timeline
from plegdoctor.evidence import Evidence

if os.environ.get("PLEG_DOCTOR_REQUIRE_NATIVE") == "1":
    from plegdoctor import _fastscan as fast
else:
    fast = pytest.importorskip("plegdoctor._fastscan")

SPECIAL = [0.0, -0.0, 1e-310, 5e-324, 1.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 1.7e9, 1.7e9 + 1e-6]


def reference(xs: list[float]) -> tuple[bytes, bytes] | None:
    """What `intervals` must answer for `xs`."""
    if len(xs) < 2:
        return None
    diffs = [b - a for a, b in itertools.pairwise(xs)]
    if not all(d >= 0.0 and math.copysign(1.0, d) > 0 for d in diffs):
        return None
    return array("d", diffs).tobytes(), array("d", sorted(diffs)).tobytes()


floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL))


@settings(max_examples=400, deadline=None)
@given(st.lists(floats, max_size=60))
def test_any_series_is_answered_as_python_would_or_declined(xs: list[float]) -> None:
    assert fast.intervals(array("d", xs)) == reference(xs)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0, max_value=2e9),
    st.lists(st.one_of(st.floats(min_value=0, max_value=400), st.sampled_from([0.0, 1.0, 1.0, 1e-6])), max_size=300),
)
def test_time_ordered_series_are_answered(start: float, steps: list[float]) -> None:
    """Ticks in time order (what a kubelet log gives): always answered, never declined,
    so the fast path is not silently never used."""
    xs = [start]
    for s in steps:
        xs.append(xs[-1] + s)
    got = fast.intervals(array("d", xs))
    if len(xs) < 2:
        assert got is None
        return
    assert got is not None and got == reference(xs)


def test_large_series_sort_and_the_passes_it_skips() -> None:
    rng = random.Random(7)
    xs = [1.7e9]
    for _ in range(200_000):  # 1 s relists with jitter, ties and a few long gaps
        xs.append(xs[-1] + rng.choice([1.0, 1.0, 1.000001, rng.random(), rng.expovariate(0.01)]))
    assert fast.intervals(array("d", xs)) == reference(xs)
    same = [float(i) for i in range(5000)]  # every interval the same bits: all 8 passes skipped
    assert fast.intervals(array("d", same)) == reference(same)


@pytest.mark.parametrize(
    "xs",
    [
        [5.0, 4.0],
        [1.0, 2.0, 1.5],
        [1.0, math.nan, 3.0],
        [0.0, 0.0, -0.0],
        [1.0, math.inf, math.inf],
        [2.0, 2.0 - 1e-9],
    ],
    ids=["back", "back-late", "nan", "minus-zero", "inf-minus-inf", "tiny-step-back"],
)
def test_declines_what_python_must_decide(xs: list[float]) -> None:
    assert reference(xs) is None
    assert fast.intervals(array("d", xs)) is None


@pytest.mark.parametrize("bad", [b"\x00" * 16, array("f", [1.0, 2.0]), array("q", [1, 2]), [1.0, 2.0], None, 3.0])
def test_bad_calls_raise_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        fast.intervals(bad)


def test_short_series_are_declined() -> None:
    assert fast.intervals(array("d")) is None
    assert fast.intervals(array("d", [1.0])) is None


def _evidence(xs: list[float]) -> Evidence:
    ev = Evidence()
    sid = ev.relists.source_id("kubelet.log")
    for i, x in enumerate(xs):
        ev.relists.append(x, sid, i + 1, f"tick {i}")
    return ev


def _timeline_json(xs: list[float], monkeypatch: pytest.MonkeyPatch, native: bool) -> str:
    with monkeypatch.context() as m:
        if not native:
            m.setattr(pleg_timeline, "_fast", None)
        tl = pleg_timeline.build_timeline(_evidence(xs), gap_seconds=3.0)
    return json.dumps(tl.to_json(), sort_keys=True)


@pytest.mark.parametrize("seed", range(12))
def test_timeline_with_and_without_the_compiled_intervals(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    xs = [datetime(2023, 6, 15, tzinfo=UTC).timestamp()]
    for _ in range(rng.randint(1, 3000)):
        xs.append(xs[-1] + rng.choice([1.0, 1.0, 0.2, 0.0, rng.random() * 2, rng.uniform(3, 400)]))
    if seed % 3 == 2:  # a clock step back: the compiled path declines, Python orders the ticks
        i = rng.randrange(len(xs))
        xs[i:] = [x - 90.0 for x in xs[i:]]
    native = _timeline_json(xs, monkeypatch, True)
    assert native == _timeline_json(xs, monkeypatch, False)
    body = json.loads(native)
    # the look-alike: a series with gaps has them, and its percentiles are read (not None)
    assert body["interval_p50_seconds"] is not None or len(xs) < 2
    if any(b - a >= 3.0 for a, b in itertools.pairwise(xs)) and seed % 3 != 2:
        assert body["gaps"]
