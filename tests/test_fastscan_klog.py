"""Framed klog lines read by the compiled loop (src/plegdoctor/_fastscan_klog.c): the
frame and header it reads are the ones FRAMED_KLOG_RE reads, on generated and mangled
lines; it takes the plain ones (so the fast path is not silently never used); and the
dispatcher and the forked reader that it hands them to give the evidence the Python loop
gives, one process or two."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plegdoctor.parsers.logs import engine, scanner, split
from plegdoctor.parsers.logs.common import FRAMED_KLOG_RE, FRAMED_KLOG_SEV, MONTHS
from test_fastscan import both
from test_logs_scanner import RELIST, frame, klog, run, summary

if os.environ.get("PLEG_DOCTOR_REQUIRE_NATIVE") == "1":
    from plegdoctor import _fastscan as fast
else:
    fast = pytest.importorskip("plegdoctor._fastscan")


def regex_head(line: bytes) -> tuple[int, int, int, int, int] | None:
    """What Dispatcher.on_line's hot path reads of `line` (None: it does not take it)."""
    text = line.decode("utf-8", "replace")
    m = FRAMED_KLOG_RE.match(text)
    if m is None or m.start(FRAMED_KLOG_SEV) < 0 or m.group(1) not in MONTHS:
        return None
    return m.start(8), m.end(8), m.start(FRAMED_KLOG_SEV), int(m.group(FRAMED_KLOG_SEV + 7)), m.end()


def canonical(rng: random.Random) -> list[str]:
    """The parts of a plain framed klog line; `"".join` of them is one."""
    mon = rng.choice(list(MONTHS))
    frac = rng.choice(["", "." + "1" * rng.randint(1, 9)])
    day = rng.choice(["2", "02", "12", " 2"])
    ident = rng.choice(["kubelet", "hyperkube", "kubelet.service", "containerd", "k-1.x_y"])
    pid = rng.choice(["[1679]", "[1]", ""])
    return [
        mon,
        " " * rng.randint(1, 2),
        day,
        " 05:10:00",
        frac,
        " ",
        rng.choice(["node-7", "ip-10-0-0-1.ec2.internal", "h"]),
        " ",
        ident,
        pid,
        rng.choice([": ", ":"]),
        rng.choice("IWEF"),
        "0602 05:10:00.123456",
        " " * rng.randint(1, 5),
        rng.choice(["1679", "1", "0001234567"]),
        " ",
        rng.choice(["remote_runtime.go", "a[b.go", "x"]),
        ":",
        rng.choice(["390", "1", "1234567890"]),
        "]",
        rng.choice([" ", ""]),
        rng.choice(['"ListContainers from runtime service failed" err="x"', "", " two  spaces", "ü=<"]),
    ]


# what a mangled part may become: bytes the regex classes read differently from the
# strict ASCII the C takes (other whitespace, non-ASCII, invalid UTF-8), digits over the
# bounds, separators where none belongs
MANGLES = [b"", b" ", b"  ", b"\t", "\u00a0".encode(), "\u2028".encode(), b"\x1c", "ü".encode(), b"\xff", b"[", b"]"]
MANGLES += [b":", b"0", b"1234567890123", b"Jux", b"x"]


@settings(max_examples=3000, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    mangles=st.lists(st.tuples(st.integers(0, 21), st.sampled_from(MANGLES)), max_size=3),
)
def test_the_head_read_is_the_regex_head(seed, mangles):
    parts = [part.encode() for part in canonical(random.Random(seed))]
    for i, m in mangles:  # replace a part, or add to it
        parts[i] = m if i % 2 else parts[i] + m
    line = b"".join(parts)
    got = fast.read_klog_head(line)
    if got is not None:  # taken: exactly what the regex reads
        assert got == regex_head(line), line
    if not mangles:  # a plain line is taken
        assert got is not None and got == regex_head(line), line


@pytest.mark.parametrize(
    "line",
    [
        b"Jun 02 05:10:00 node-7 kubelet[1679]: E0602 05:10:00.123456    1679 remote_runtime.go:390] body",
        b"Jun 02 05:10:00.123456789 node-7 kubelet[1679]: E0602 05:10:00.123456 1679 f.go:1]body",
        b"Jun  2 05:10:00 node-7 kubelet: I0602 05:10:00.123456 1679 f.go:1] ",
    ],
)
def test_plain_lines_are_taken(line):
    assert fast.read_klog_head(line) == regex_head(line) is not None


@pytest.mark.parametrize(
    "line",
    [
        b"Jun 02 05:10:00.1234567890 node-7 kubelet[1679]: E0602 05:10:00.123456 1679 f.go:1] x",  # 10 digits
        b"Jun 002 05:10:00 node-7 kubelet[1679]: E0602 05:10:00.123456 1679 f.go:1] x",
        b"Jux 02 05:10:00 node-7 kubelet[1679]: E0602 05:10:00.123456 1679 f.go:1] x",
        b"Jun 02 05:10:00 n\xc2\xa0de kubelet[1679]: E0602 05:10:00.123456 1679 f.go:1] x",  # NBSP: \s to the regex
        b"Jun 02 05:10:00 node kubelet[1679]: E0602 05:10:00.123456 12345678901 f.go:1] x",  # pid over 10 digits
        b"Jun 02 05:10:00 node kubelet[1679]: E0602 05:10:00.123456 1 f\tx.go:1] x",
        b"Jun 02 05:10:00 node kubelet[1679]: E0602 05:10:00.12345 1 f.go:1] x",
        b"Jun 02 05:10:00 node kubelet[1679]:  E0602 05:10:00.123456 1 f.go:1] x",  # two spaces
        b"Jun 02 05:10:00 node kubelet[1679]: E0602 05:10:00.123456 1 f.go:12345678901] x",
        b"Jun 02 05:10:00 node kubelet[]: E0602 05:10:00.123456 1 f.go:1] x",
        b"2023-06-02T05:10:00+0000 node kubelet[1679]: E0602 05:10:00.123456 1 f.go:1] x",  # dated: learns time
        b"kubelet[1679]: E0602 05:10:00.123456 1 f.go:1] x",
        b"",
    ],
)
def test_look_alikes_are_left_to_the_regex(line):
    assert fast.read_klog_head(line) is None


FAILED = 'remote_runtime.go:390] "ListContainers from runtime service failed"'


def framed_journal(seed: int, n: int = 1500) -> str:
    """Framed kubelet lines the klog path takes (CRI errors, warnings past the records cap
    of small test runs, openers, other units' klog lines) between relist ticks."""
    rng = random.Random(seed)
    out = []
    t = 0.0
    for _ in range(n):
        t += rng.choice((0.3, 1.0, 1.0, 61.0)) if rng.random() < 0.97 else 400.0
        r = rng.random()
        if r < 0.4:
            body = klog("I", t, RELIST)
        elif r < 0.7:
            body = klog("E", t, f'{FAILED} err="{rng.randrange(3)}"')
        elif r < 0.8:
            body = klog("E", t, 'pod_workers.go:1300] "Error syncing pod, skipping" err=<')
            out.append(frame(t, body))
            body = '\tfailed to "StartContainer"'
            out.append(body)
            body = " >"
        elif r < 0.9:
            body = klog("W", t, f'container.go:586] "Failed to update stats" id="{rng.randrange(9)}"')
        else:
            ident = rng.choice(["containerd[88]", "kubelet"])
            out.append(frame(t, klog("E", t, 'f.go:1] "Failed" service failed'), ident=ident))
            continue
        out.append(frame(t, body) if not body.startswith(("\t", " >")) else body)
    return "\n".join(out) + "\n"


def both_counting(path: Path, monkeypatch) -> tuple[dict, dict, list[int]]:
    """`both`, and the line numbers the compiled loop handed to `Dispatcher.on_klog`."""
    taken: list[int] = []
    real = engine.Dispatcher.on_klog

    def counting(self, *args):
        taken.append(args[0])
        real(self, *args)

    monkeypatch.setattr(engine.Dispatcher, "on_klog", counting)
    compiled, python = both(path, monkeypatch)
    return compiled, python, taken


@pytest.mark.parametrize("seed", [1, 2])
def test_the_klog_path_is_taken_and_gives_the_python_loop_evidence(tmp_path, monkeypatch, seed):
    p = tmp_path / "k.log"
    p.write_text(framed_journal(seed))
    compiled, python, taken = both_counting(p, monkeypatch)
    assert compiled == python
    assert len(taken) > 200  # the framed CRI errors came this way
    assert compiled["events"]


def test_a_forked_reader_takes_them_too_and_the_evidence_is_sequential(tmp_path, monkeypatch):
    p = tmp_path / "k.log"
    p.write_text(framed_journal(3, n=6000))
    marks = tmp_path / "marks"
    real = split._Collector.on_klog

    def counting(self, *args):
        with open(marks, "ab") as fh:  # the child is another process: count in a file
            fh.write(b"x")
        real(self, *args)

    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    monkeypatch.setattr(scanner, "_fast", None)
    sequential = summary(*run(p))
    monkeypatch.setattr(scanner, "_fast", fast)
    monkeypatch.delenv("PLEG_DOCTOR_SCAN_WORKERS")
    monkeypatch.setattr(engine, "SPLIT_MIN_BYTES", 1)
    monkeypatch.setattr(split, "SEGMENT_BYTES", 16384)
    monkeypatch.setattr(split._Collector, "on_klog", counting)
    assert summary(*run(p)) == sequential
    assert marks.exists() and marks.stat().st_size > 20  # (few: a new minute, or a segment start, goes to on_line)


def test_a_line_past_its_minute_in_the_cache_goes_to_on_line(tmp_path, monkeypatch):
    # every line a new minute: the handler's cache never holds it before the line is read
    failed = 'remote_runtime.go:390] "ListContainers from runtime service failed" err="x"'
    lines = [frame(60.0 * i, klog("E", 60.0 * i, failed)) for i in range(50)]
    p: Path = tmp_path / "k.log"
    p.write_text("\n".join(lines) + "\n")
    taken = []
    monkeypatch.setattr(engine.Dispatcher, "on_klog", lambda self, *a: taken.append(a))
    compiled, python = both(p, monkeypatch)
    assert not taken
    assert compiled == python and len(compiled["events"]) == 50


def test_a_cached_minute_of_another_month_than_the_last_stamp_goes_to_on_line(tmp_path, monkeypatch):
    # January's minute is cached, December comes, then January again: a year rollover the
    # resolver must see (the cache hit alone would put it in the old year)
    months = {1: "Jan", 12: "Dec"}
    out = []
    for mo, sec in [(1, 1), (1, 2), (12, 3), (1, 4), (1, 5)]:
        clock = f"05:48:{sec:02d}"
        out.append(f"{months[mo]} 01 {clock} node-7 kubelet[1679]: E{mo:02d}01 {clock}.000000    1679 {FAILED}")
    p = tmp_path / "m.log"
    p.write_text("\n".join(out) + "\n")
    compiled, python, taken = both_counting(p, monkeypatch)
    assert compiled == python
    assert [e[1].year for e in compiled["events"]] == [2023, 2023, 2023, 2024, 2024]
    assert taken == [2, 5]  # the second line of a minute; the rollover line went to on_line


def test_a_cached_minute_after_a_rollover_its_handler_has_not_seen_goes_to_on_line(tmp_path, monkeypatch):
    # January cached, December, then a January relist tick moves the resolver to the next
    # year (the tick path, not the klog handler's cache): the next January error line has the
    # month of the cache and a year it does not know
    months = {1: "Jan", 12: "Dec"}
    out = []
    for mo, sec, sev, body in [(1, 1, "E", FAILED), (1, 2, "E", FAILED), (12, 3, "E", FAILED), (1, 4, "I", RELIST)]:
        clock = f"05:48:{sec:02d}"
        out.append(f"{months[mo]} 01 {clock} node-7 kubelet[1679]: {sev}{mo:02d}01 {clock}.000000    1679 {body}")
    out.append(out[0].replace(":01", ":05"))
    p = tmp_path / "m.log"
    p.write_text("\n".join(out) + "\n")
    compiled, python, taken = both_counting(p, monkeypatch)
    assert compiled == python
    assert [e[1].year for e in compiled["events"]] == [2023, 2023, 2023, 2024]
    assert taken == [2]  # the last line went to on_line
