"""The fast paths of the log scanner: batched relist ticks, multi-line values read by asking
for the next lines (no needle per continuation line), and big files read as segments by
two processes. Each must give exactly what a plain sequential reading gives."""

from __future__ import annotations

import marshal
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor.analysis.pleg_timeline import build_timeline
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import InputReport
from plegdoctor.parsers.logs import common, engine, kubelet_ticks, lines, scanner, split
from plegdoctor.parsers.logs import journal as journald
from plegdoctor.parsers.logs import kubelet as kubelet_log
from plegdoctor.timeutil import TimeContext


def run(path: Path, mod=kubelet_log) -> tuple[Evidence, ParseContext]:
    ev = Evidence()
    ctx = None
    for src in iter_sources([str(path)]):
        ctx = ParseContext(ev, InputReport(src.display, mod.KIND), TimeContext(year=2023))
        mod.parse(src, ctx)
    assert ctx is not None
    return ev, ctx


def klog(sev: str, t: float, body: str) -> str:
    """A klog line at `t` seconds after 2023-06-02 05:00:00 (local = UTC here)."""
    whole = int(t)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    us = round((t - whole) * 1e6)
    return f"{sev}0602 {5 + h:02d}:{m:02d}:{s:02d}.{us:06d}    1679 {body}"


def frame(t: float, text: str, ident: str = "kubelet[1679]") -> str:
    whole = int(t)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"Jun 02 {5 + h:02d}:{m:02d}:{s:02d} node-7 {ident}: {text}"


RELIST = 'generic.go:191] "GenericPLEG: Relisting"'
UNHEALTHY = 'kubelet.go:2359] "Skipping pod synchronization" err=<'


def journal(n_seconds: int, seed: int, *, framed: bool = True) -> tuple[str, dict[str, int]]:
    """A kubelet log with ticks (and stalls), warnings, multi-line values (TAB and 8-space
    continuation lines, a ` >` closer with more pairs, one reopening `=<`), other units'
    lines in between, CRLF line ends and event lines. Returns (text, what was written)."""
    rng = random.Random(seed)
    out: list[str] = []
    written = {"multi": 0, "stalls": 0}

    def emit(t: float, text: str, ident: str = "kubelet[1679]") -> None:
        out.append(frame(t, text, ident) if framed else text)

    t = 0.0
    while t < n_seconds:
        if rng.random() < 0.004:
            t += rng.choice((4.0, 7.5, 30.0))
            written["stalls"] += 1
        emit(t, klog("I", t, RELIST) + ("\r" if rng.random() < 0.05 else ""))
        for _ in range(rng.randrange(0, 4)):
            t2 = t + rng.random() * 0.9
            r = rng.random()
            if r < 0.25:
                emit(t2, klog("W", t2, f'container.go:586] "Failed to update stats" id="{rng.randrange(10**6)}"'))
            elif r < 0.30:
                written["multi"] += 1
                tab = "\t" if rng.random() < 0.5 else "        "
                emit(t2, klog("E", t2, UNHEALTHY))
                emit(t2, f"{tab}container runtime is down")
                if framed and rng.random() < 0.3:
                    emit(t2, 'time="2023-06-02T05:00:00Z" level=info msg="interleaved"', "containerd[900]")
                emit(t2, f"{tab}PLEG is not healthy: pleg was last seen active 3m{rng.randrange(60)}.5s ago")
                if rng.random() < 0.3:
                    emit(t2, ' > pod="default/web" detail=<')
                    emit(t2, f"{tab}second value")
                emit(t2, ' > node="node-7"')
            elif r < 0.33:
                emit(
                    t2,
                    klog(
                        "E",
                        t2,
                        'remote_runtime.go:407] "ListContainers with filter from runtime service '
                        'failed" err="rpc error: code = DeadlineExceeded desc = context deadline '
                        'exceeded"',
                    ),
                )
            elif r < 0.34 and framed:
                emit(t2, "Started Session 3 of user root.", "systemd[1]")
            elif r < 0.36 and framed:
                cid = f"{rng.getrandbits(64):016x}" * 4
                stamp = f"2023-06-02T{5 + int(t2) // 3600:02d}:{int(t2) // 60 % 60:02d}:{int(t2) % 60:02d}Z"
                emit(t2, f'time="{stamp}" level=info msg="UpdateContainerResources for \\"{cid}\\""', "containerd[900]")
                emit(
                    t2,
                    f'time="{stamp}" level=info msg="UpdateContainerResources for \\"{cid}\\" returns successfully"',
                    "containerd[900]",
                )
            else:
                emit(t2, klog("I", t2, 'kubelet.go:2229] "SyncLoop (housekeeping)"'))
        t += 1.0 + rng.random() * 0.01
    return "\n".join(out) + "\n", written


def summary(ev: Evidence, ctx: ParseContext) -> dict:
    return {
        "ts": list(ev.relists.ts),
        "line": list(ev.relists.line),
        "texts": dict(ev.relists.texts),
        "events": [(e.kind, e.ts, e.ref, sorted(e.attrs.items(), key=str)) for e in ev.events],
        "records": [(r.ref, r.msg, r.level, r.ts) for r in ev.log_records],
        "lines": ctx.report.records,
        "unparsed": ctx.report.unparsed,
    }


@pytest.mark.parametrize("framed", [True, False])
def test_small_chunks_and_follow_mode_give_the_same_as_one_chunk(tmp_path, monkeypatch, framed):
    text, written = journal(600, seed=5, framed=framed)
    p = tmp_path / "k.log"
    p.write_text(text)
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    big = summary(*run(p))
    monkeypatch.setattr(scanner, "CHUNK", 97)  # lines, multi-line values and ticks cut anywhere
    small = summary(*run(p))
    assert small == big
    # and the values are the real ones: every multi-line value became one event
    unhealthy = [e for e in big["events"] if e[0] == "pleg-unhealthy"]
    assert len(unhealthy) == written["multi"] > 0
    assert all(dict(e[3])["last_seen_seconds"] and dict(e[3])["last_seen_seconds"] >= 180 for e in unhealthy)
    assert big["lines"] == text.count("\n")


def test_multiline_value_is_read_without_continuation_needles():
    assert not any(n.tag == kubelet_log.TAG_CONT for n in kubelet_log.NEEDLES)
    fix = Path(__file__).parent / "fixtures" / "logs" / "kubelet-klog-multiline.log"
    ev, _ = run(fix)
    (un,) = [e for e in ev.events if e.kind == "pleg-unhealthy"]
    assert un.attrs["last_seen_seconds"] == pytest.approx(181.5)
    assert "container runtime is down" in un.attrs["error"]


def test_ticks_batch_equals_the_regex_path(tmp_path, monkeypatch):
    """Every tick through `ticks` (fixed-place slices, minute cache) has the epoch, line
    and quoted text that the regex path `tick_fast` gives; odd lines fall back to it."""
    text, _ = journal(400, seed=9)
    odd = [
        frame(500.0, 'I0602 05:08:20.5    1679 generic.go:191] "GenericPLEG: Relisting"'),  # short micros
        'kubelet[1679]: I0602 05:08:21.000000    1679 generic.go:191] "GenericPLEG: Relisting"',
        frame(502.0, 'x]: y I0602 05:08:22.000000    1679 generic.go:191] "GenericPLEG: Relisting"'),
        frame(503.0, 'I0602 05:08:23.12e4567    1679 generic.go:191] "GenericPLEG: Relisting"'),  # float(): inf
    ]
    p = tmp_path / "k.log"
    p.write_text(text + "\n".join(odd) + "\n")
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    ev, _ = run(p)
    ref = Evidence()
    ctx = ParseContext(ref, InputReport(str(p), "kubelet-log"), TimeContext(year=2023))
    handler = kubelet_log.KubeletHandler(ctx, str(p), common.StampResolver(ctx.time, None))
    for n, raw in enumerate(p.read_bytes().split(b"\n"), 1):
        if b"GenericPLEG: Relisting" in raw:
            handler.tick_fast(n, raw.rstrip(b"\r"))
    handler.finish_tick_text()
    assert list(ev.relists.ts) == list(ref.relists.ts)
    assert list(ev.relists.line) == list(ref.relists.line)
    assert ev.relists.texts == ref.relists.texts
    first = datetime(2023, 6, 2, 5, 0, tzinfo=UTC).timestamp()
    assert ev.relists.ts[0] == first
    # a bare `ident[pid]:` excerpt is a tick; short micros or a stamp not after the frame are not
    assert ev.relists.ts[-1] == first + 501.0 and len(ev.relists) == len(ref.relists)


@pytest.mark.parametrize(("seed", "mod"), [(1, kubelet_log), (2, kubelet_log), (3, journald)])
def test_segments_read_by_two_processes_equal_one_sequential_pass(tmp_path, monkeypatch, seed, mod):
    text, written = journal(2400, seed=seed)
    p = tmp_path / "k.log"
    p.write_text(text)
    monkeypatch.setattr(kubelet_log, "MAX_RECORDS_PER_SOURCE", 40)  # the cap is reached mid-file
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    seq = summary(*run(p, mod))
    monkeypatch.delenv("PLEG_DOCTOR_SCAN_WORKERS")
    monkeypatch.setattr(engine, "SPLIT_MIN_BYTES", 1)
    monkeypatch.setattr(split, "SEGMENT_BYTES", 4096)  # many cuts, some inside multi-line values
    monkeypatch.setattr(engine, "split_allowed", lambda: True)
    monkeypatch.setattr(scanner, "CHUNK", 1000)
    merged = []
    real_merge = split._merge
    monkeypatch.setattr(split, "_merge", lambda *a: merged.append(1) or real_merge(*a))
    replayed = []
    real_replay = kubelet_log.KubeletHandler.replay
    monkeypatch.setattr(
        kubelet_log.KubeletHandler, "replay", lambda self, *a: replayed.append(1) or real_replay(self, *a)
    )
    ev, ctx = run(p, mod)
    assert summary(ev, ctx) == seq
    assert len(merged) >= 10  # the child did read segments
    assert len(replayed) >= 10  # and read ahead the plain klog lines of its segments
    if mod is journald:  # containerd's lines in between went to its handler, in order
        updates = [e for e in ev.events if e.process == "containerd"]
        assert len(updates) > 10 and len(updates) % 2 == 0
    assert len(seq["records"]) == 40 and written["multi"] > 5
    gaps = build_timeline(ev, 3.0).gaps
    assert len(gaps) == written["stalls"] and all(g.start_ref.text and g.end_ref.text for g in gaps)


def _split_small(tmp_path, monkeypatch, seed):
    """A 900-tick journal, its sequential summary, and the split made to cut it in 8 KiB
    segments from here on."""
    text, _ = journal(900, seed=seed)
    p = tmp_path / "k.log"
    p.write_text(text)
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    seq = summary(*run(p))
    monkeypatch.delenv("PLEG_DOCTOR_SCAN_WORKERS")
    monkeypatch.setattr(engine, "SPLIT_MIN_BYTES", 1)
    monkeypatch.setattr(split, "SEGMENT_BYTES", 8192)
    monkeypatch.setattr(engine, "split_allowed", lambda: True)
    return p, seq


def test_a_failing_child_is_made_up_for_by_the_parent(tmp_path, monkeypatch):
    p, seq = _split_small(tmp_path, monkeypatch, seed=4)

    def boom(_fh, bounds, shared, *_a):
        shared[split._STATE + (len(bounds) - 1) // 2] = split._CHILD  # takes a segment, then dies
        raise RuntimeError("child dies")

    monkeypatch.setattr(split, "_child", boom)
    assert summary(*run(p)) == seq


def test_a_slow_child_is_read_around_by_the_parent(tmp_path, monkeypatch):
    """The child takes the middle segment and sits on it: the parent reads the free segments
    after it out of order meanwhile, then merges the middle one when it comes; the result is
    the sequential one."""
    p, seq = _split_small(tmp_path, monkeypatch, seed=5)
    stolen: list[int] = []
    real_collect = split._collect

    def slow_child(fh, bounds, shared, scanner, dispatcher, out, note):
        mid = (len(bounds) - 1) // 2
        shared[split._STATE + mid] = split._CHILD
        while shared[split._STATE + len(bounds) - 2] == split._FREE and not shared[split._STOP]:
            time.sleep(0.001)  # until the parent has read around it (the last segment)
        data = marshal.dumps(real_collect(fh, bounds, mid, shared, scanner, dispatcher))
        os.pwrite(out, data, 0)
        os.write(note, split._NOTE.pack(mid, 0, len(data)))  # then it exits: the parent reads what is left

    def collect(fh, bounds, k, *a):
        stolen.append(k)
        return real_collect(fh, bounds, k, *a)

    monkeypatch.setattr(split, "_child", slow_child)
    monkeypatch.setattr(split, "_collect", collect)
    assert summary(*run(p)) == seq
    assert stolen, "the parent read no segment out of order"


def test_journal_kind_follows_values_between_other_units(tmp_path, monkeypatch):
    text, written = journal(300, seed=7)
    p = tmp_path / "j.log"
    p.write_text(text)
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    ev, _ = run(p, journald)
    assert len([e for e in ev.events if e.kind == "pleg-unhealthy"]) == written["multi"]


def test_line_numbers_without_stringzilla_are_the_same(tmp_path, monkeypatch):
    text, _ = journal(300, seed=11)
    p = tmp_path / "k.log"
    p.write_text(text)
    monkeypatch.setenv("PLEG_DOCTOR_SCAN_WORKERS", "1")
    monkeypatch.setattr(scanner, "CHUNK", 5000)
    fast = summary(*run(p))
    monkeypatch.setattr(scanner, "_fast", None)  # the Python loop, counting with bytes.count
    monkeypatch.setattr(lines, "count_sub", lines._py_count)
    monkeypatch.setattr(kubelet_ticks, "_count", lines._py_count)
    assert summary(*run(p)) == fast
    assert fast["lines"] == text.count("\n") and fast["line"][0] == 1
