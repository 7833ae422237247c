"""strace of a stuck runc polling its cgroup's freezer (containerd#4961, verbatim) and PD908."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.parsers import sniff
from rulecheck import assert_fires, assert_quiet

CASE = next((Path(__file__).resolve().parent / "corpus" / "real").glob("containerd-4961-*"))
STRACE = CASE / "strace-runc-update.txt"


def test_strace_is_sniffed_and_every_line_read() -> None:
    assert sniff(STRACE.read_bytes())[0] == "strace"


def test_pd908_fires_when_a_traced_process_reads_freezing() -> None:
    hits = assert_fires("PD908", [STRACE])
    assert "FREEZING" in hits[0].title and "polled" in hits[0].title
    assert hits[0].evidence[0].line == 7  # the read(7, "FREEZING\n", ...) line


def test_pd908_quiet_when_the_polled_cgroup_is_thawed(tmp_path: Path) -> None:
    thawed = STRACE.read_text().replace('"FREEZING\\n"', '"THAWED\\n"')
    assert "THAWED" in thawed
    assert_quiet("PD908", {"strace.txt": thawed}, tmp_path)
