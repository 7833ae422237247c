"""The compiled candidate loop (src/plegdoctor/_fastscan.c) against the Python loop it
replaces: the same evidence, line for line, on generated kubelet logs and journals with
everything that takes a tick off the fast path (odd stamps, unknown minutes, long
intervals, ticks inside multi-line values, two needles in one line, CRLF), cut into
chunks of any size; and bad arguments are refused, never read out of bounds."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plegdoctor.parsers.logs import journal as journald
from plegdoctor.parsers.logs import kubelet as kubelet_log
from plegdoctor.parsers.logs import scanner
from test_logs_scanner import RELIST, frame, journal, klog, run, summary

if os.environ.get("PLEG_DOCTOR_REQUIRE_NATIVE") == "1":  # .ci/run: CI builds it, so it must be there
    from plegdoctor import _fastscan as fast
else:
    fast = pytest.importorskip("plegdoctor._fastscan")


def test_the_scanner_uses_the_compiled_loop():
    assert scanner._fast is fast
    if os.environ.get("PLEG_DOCTOR_FASTSCAN_SO"):  # `make asan`: the sanitized build is the one tested
        assert os.path.samefile(fast.__file__, os.environ["PLEG_DOCTOR_FASTSCAN_SO"])


# lines that do not take the fast path, or look like ticks and are not
ODD = [
    'I0602 05:10:00.5    1679 generic.go:191] "GenericPLEG: Relisting"',  # short micros
    'I0602 05:10:01.12e4567    1679 generic.go:191] "GenericPLEG: Relisting"',  # float() would read it
    'I0602 05:10:01. 123456    1679 generic.go:191] "GenericPLEG: Relisting"',
    'I0602 05:10:01.+12345    1679 generic.go:191] "GenericPLEG: Relisting"',
    'I0602 05:10:02.000000    1679 generic.go:191] "GenericPLEG: Relisting" "GenericPLEG: Relisting"',
    'x]: y I0602 05:10:03.000000    1679 generic.go:191] "GenericPLEG: Relisting"',
    '"GenericPLEG: Relisting" I0602 05:10:04.000000    1679 generic.go:191]',
    'I1231 23:59:59.000000    1679 generic.go:191] "GenericPLEG: Relisting"',  # a minute not cached
    'E0602 05:10:05.000000    1679 generic.go:191] "GenericPLEG: Relisting" err=<',  # opens a value
    "\tGenericPLEG: Relisting inside a value",
    " >",
    'I0602 05:10:06.000000    1679 generic.go:191] "GenericPLEG: Relisting"\r',
    'E0602 05:10:07.000000    1679 remote_runtime.go:407] "ListContainers from runtime service failed" err="x"\r',
    'I0602 05:10:06.000000    1679 generic.go:191] "GenericPLEG: Relisting" x]: I0602 05:11:00.000000 ',
    "GenericPLEG: Relisting",
    "",
]


def soup(seed: int, framed: bool, n: int = 900) -> str:
    """A journal of `journal()` with odd lines dropped in at random places."""
    text, _ = journal(n, seed=seed, framed=framed)
    rng = random.Random(seed)
    lines = text.split("\n")
    for _ in range(len(lines) // 20):
        odd = rng.choice(ODD)
        t = rng.uniform(0, n)
        line = frame(t, odd) if framed and odd and rng.random() < 0.8 else odd
        lines.insert(rng.randrange(len(lines)), line)
    return "\n".join(lines)


def both(path, monkeypatch, mod=kubelet_log) -> tuple[dict, dict]:
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    compiled = summary(*run(path, mod))
    monkeypatch.setattr(scanner, "_fast", None)
    python = summary(*run(path, mod))
    monkeypatch.setattr(scanner, "_fast", fast)
    return compiled, python


@pytest.mark.parametrize("framed", [True, False])
@pytest.mark.parametrize("chunk", [None, 61, 4096])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_loop_gives_what_the_python_loop_gives(tmp_path, monkeypatch, framed, chunk, seed):
    p = tmp_path / "k.log"
    p.write_text(soup(seed, framed))
    if chunk:
        monkeypatch.setattr(scanner, "CHUNK", chunk)
    compiled, python = both(p, monkeypatch)
    assert compiled == python
    assert len(compiled["ts"]) > 500 and compiled["texts"]  # ticks were read, long intervals quoted


def test_crlf_lines_agree_and_their_values_are_read(tmp_path, monkeypatch):
    text, written = journal(600, seed=6)
    p = tmp_path / "crlf.log"
    p.write_bytes(text.replace("\n", "\r\n").encode())
    compiled, python = both(p, monkeypatch)
    assert compiled == python
    assert [e[0] for e in compiled["events"]].count("pleg-unhealthy") == written["multi"] > 0


def test_new_year_and_a_clock_step_back_agree(tmp_path, monkeypatch):
    """Ticks across New Year (the resolver moves to the next year and the minute caches are
    cleared) with a step back into December: the same epochs in both loops, in time order
    but for the step."""

    def tick(stamp: str) -> str:
        month = "Dec" if stamp.startswith("12") else "Jan"
        return f"{month} {stamp[2:4]} {stamp[5:13]} node-7 kubelet[1679]: I{stamp}    1679 {RELIST}"

    stamps = [f"1231 23:59:{s:02d}.000000" for s in range(50, 60)]
    stamps += [f"0101 00:00:{s:02d}.000000" for s in range(0, 5)]
    stamps += ["1231 23:59:58.500000", "1231 23:59:59.500000"]  # the clock stepped back
    stamps += [f"0101 00:00:{s:02d}.000000" for s in range(5, 12)]
    p = tmp_path / "ny.log"
    p.write_text("\n".join(tick(s) for s in stamps) + "\n")
    compiled, python = both(p, monkeypatch)
    assert compiled == python
    ts = compiled["ts"]
    assert len(ts) == len(stamps)
    assert ts[10] - ts[9] == pytest.approx(1.0)  # 23:59:59 -> 00:00:00 of the next year
    assert ts[16] - ts[14] == pytest.approx(-4.5) and ts[17] - ts[16] == pytest.approx(5.5)


# Found by the parse properties under `make asan` in CI, before the minute cache was dropped
# after Python calls (SYNTHETIC: hypothesis built it from lines of the fixtures): klog lines of
# several months, so the resolver moves years back and forth and the handler's minute cache is
# cleared between two ticks of one minute key.
FOUND_BY_PROPERTIES = Path(__file__).resolve().parent / "fixtures" / "logs" / "kubelet-months-back-and-forth.log"


def test_months_going_back_and_forth_agree():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
    import fuzzlib

    data = FOUND_BY_PROPERTIES.read_bytes()
    compiled = fuzzlib.parse_bytes(data, "kubelet-log")
    python = fuzzlib.parse_bytes_python_loop(data, "kubelet-log")
    assert fuzzlib.fingerprint(compiled) == fuzzlib.fingerprint(python)
    assert len(compiled.evidence.relists) >= 10


@pytest.mark.parametrize("seed", [4, 5])
def test_compiled_loop_in_a_journal_of_several_units(tmp_path, monkeypatch, seed):
    p = tmp_path / "j.log"
    p.write_text(soup(seed, True))
    compiled, python = both(p, monkeypatch, journald)
    assert compiled == python
    assert compiled["ts"] and compiled["events"]


def test_ticks_inside_an_open_value_are_read_in_order(tmp_path, monkeypatch):
    """A value opened by `=<` and closed by a tick: the tick goes through the slow path in
    both loops, and the value becomes one event."""
    lines = [frame(0, klog("I", 0, RELIST))]
    lines += [frame(1, klog("E", 1, 'kubelet.go:2359] "Skipping pod synchronization" err=<'))]
    lines += [frame(1, "\tPLEG is not healthy: pleg was last seen active 3m0.5s ago")]
    lines += [frame(1, klog("I", 1.5, RELIST)), frame(2, klog("I", 2, RELIST)), frame(9, klog("I", 9, RELIST))]
    p = tmp_path / "k.log"
    p.write_text("\n".join(lines) + "\n")
    compiled, python = both(p, monkeypatch)
    assert compiled == python
    assert [e[0] for e in compiled["events"]].count("pleg-unhealthy") == 1
    assert compiled["line"] == [1, 4, 5, 6]
    assert compiled["texts"].keys() == {0, 1, 2, 3}  # 1.5 s and 7 s intervals


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, len(ODD) + 3), min_size=1, max_size=60),
    chunk=st.sampled_from([None, 7, 33, 200]),
)
def test_random_line_soups_agree(tmp_path, monkeypatch, picks, chunk):
    out = []
    for i, k in enumerate(picks):
        if k >= len(ODD):
            out.append(frame(i, klog("I", i * (1 + k - len(ODD)), RELIST)))
        else:
            out.append(frame(i, ODD[k]) if i % 3 else ODD[k])
    p = tmp_path / "s.log"
    p.write_text("\n".join(out) + ("\n" if picks[0] % 2 else ""))
    monkeypatch.setattr(scanner, "CHUNK", chunk or scanner.CHUNK)
    compiled, python = both(p, monkeypatch)
    assert compiled == python


stamp = st.tuples(
    st.sampled_from([1, 6, 10, 12]),  # months far apart: the resolver's year moves back and forth
    st.sampled_from([1, 2]),  # few days, hours and minutes: minute keys come back after a rollover
    st.just(5),
    st.sampled_from([48, 49]),
    st.integers(0, 59),
    st.integers(0, 999_999),
)
kubelet_line = st.one_of(
    stamp.map(lambda s: ("tick", s)),
    stamp.map(lambda s: ("error", s)),
    st.sampled_from(ODD).map(lambda t: ("odd", t)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(kubelet_line, min_size=1, max_size=80), framed=st.booleans(), header=st.booleans())
def test_random_months_agree(tmp_path, monkeypatch, lines, framed, header):
    """Ticks and CRI errors at random stamps of months far apart (year rollovers both ways,
    minute caches cleared and refilled), odd lines between them, with or without journald
    framing and a klog file header: both loops read the same."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    out = ["Log file created at: 2023/06/02 05:48:00"] if header else []
    for what, v in lines:
        if what == "odd":
            out.append(v)
            continue
        mo, d, h, mi, sec, us = v
        body = RELIST if what == "tick" else 'remote_runtime.go:407] "ListContainers from runtime service failed"'
        clock = f"{h:02d}:{mi:02d}:{sec:02d}"
        text = f"{'I' if what == 'tick' else 'E'}{mo:02d}{d:02d} {clock}.{us:06d}    1679 {body}"
        out.append(f"{months[mo - 1]} {d:02d} {clock} node-7 kubelet[1679]: {text}" if framed else text)
    p = tmp_path / "m.log"
    p.write_text("\n".join(out) + "\n")
    compiled, python = both(p, monkeypatch)
    assert compiled == python


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), a=st.integers(-5, 310), b=st.integers(-5, 310))
def test_count_nl_is_bytes_count(data, a, b):
    assert fast.count_nl(data, a, b) == data.count(b"\n", max(a, 0), min(b, len(data)) if b >= 0 else 0)


def scan_args(buf: bytes, matches: list[int], **over):
    args = {
        "buf": buf,
        "start": 0,
        "end": len(buf),
        "matches": matches,
        "skip_to": 0,
        "counted_to": 0,
        "cur": 0,
        "tick_tag": -1,
        "on_line": lambda *a: None,
        "follow": None,
        "follow_lines": lambda pos, first: (pos, first),
        "ticker": None,
        "slow": None,
        "check_multi": False,
        "klog": None,
    }
    args.update(over)
    return list(args.values())


@pytest.mark.parametrize(
    "over",
    [
        {"end": 10_000},
        {"start": -1},
        {"counted_to": 99},
        {"matches": [10_000 << 5]},
        {"matches": [-1]},
        {"matches": ["x"]},
    ],
)
def test_bad_arguments_are_refused(over):
    buf = b"a line\nanother line\n"
    with pytest.raises((ValueError, TypeError, OverflowError)):
        fast.scan_matches(*scan_args(buf, [6 << 5 | 3], **over))


def test_lines_are_delivered_once_with_their_smallest_tag():
    buf = b"one two\nthree\nfour five\n"
    got = []
    # "two" (tag 7) and "one" (tag 3) in line 1, "five" (tag 4) in line 3
    matches = sorted([3 << 5 | 3, 7 << 5 | 7, 23 << 5 | 4])
    lines, n = fast.scan_matches(*scan_args(buf, matches, on_line=lambda *a: got.append(a)))
    assert got == [(1, b"one two", 3), (3, b"four five", 4)]
    assert (lines, n) == (3, 2)


def test_a_callback_error_propagates():
    def boom(*a):
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        fast.scan_matches(*scan_args(b"x\n", [1 << 5 | 3], on_line=boom))
