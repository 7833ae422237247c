"""`top` output: load, memory, iowait and tasks; memory starvation read from it (PD906)."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.parsers import sniff
from rulecheck import assert_fires, assert_quiet, diagnose

FIX = Path(__file__).resolve().parent / "fixtures" / "node" / "top"
REAL = FIX / "top-k8s-67796-memory-exhaustion.txt"  # kubernetes#67796, verbatim

HEALTHY = """top - 09:12:01 up 41 days,  3:02,  1 user,  load average: 0.52, 0.61, 0.66
Tasks: 212 total,   1 running, 211 sleeping,   0 stopped,   0 zombie
%Cpu(s):  3.1 us,  1.2 sy,  0.0 ni, 95.4 id,  0.2 wa,  0.0 hi,  0.1 si,  0.0 st
MiB Mem :  15731.4 total,   2104.7 free,   5120.3 used,   8506.4 buff/cache
MiB Swap:      0.0 total,      0.0 free,      0.0 used.  10231.9 avail Mem

    PID USER      PR  NI    VIRT    RES    SHR S  %CPU  %MEM     TIME+ COMMAND
   1187 root      20   0 2134560 112340  61232 S   2.0   0.7  93:12.44 kubelet
"""


def test_top_is_sniffed_and_read_without_unread_lines() -> None:
    assert sniff(REAL.read_bytes())[0] == "top"
    dg = diagnose([REAL])
    (inp,) = dg.inputs
    assert inp.kind == "top" and inp.unparsed == 0
    assert any("time of day" in x for x in inp.inferred)


def test_pd906_fires_on_top_showing_2_percent_memory_available() -> None:
    hits = assert_fires("PD906", [REAL])
    assert "24 MiB of 991 MiB" in hits[0].title
    assert hits[0].evidence[0].text.startswith("KiB Mem")


def test_pd906_quiet_on_top_of_a_healthy_node(tmp_path: Path) -> None:
    assert_quiet("PD906", {"top.txt": HEALTHY}, tmp_path)
    dg = diagnose({"top.txt": HEALTHY}, tmp_path)
    assert dg.inputs[0].kind == "top" and dg.inputs[0].unparsed == 0
