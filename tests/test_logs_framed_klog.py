"""The hot path of a kubelet journal: a journald frame and the klog header after it read
by one match (`common.FRAMED_KLOG_RE`), which must read exactly what `frame_parts` and
`KLOG_RE` read one after the other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers.logs import journal, kubelet
from plegdoctor.parsers.logs.common import FRAMED_KLOG_RE, FRAMED_KLOG_SEV, KLOG_RE, frame_of, frame_parts
from plegdoctor.timeutil import TimeContext

CRI = (
    'E0615 00:02:18.724029    1679 remote_runtime.go:432] "ContainerStatus from runtime service failed" '
    'err="rpc error: code = DeadlineExceeded desc = context deadline exceeded" containerID="73ab48"'
)
LINES = [
    f"Jun 15 00:02:18.724029 node-7 kubelet[1679]: {CRI}",  # the hot path
    f"Jun 15 00:02:18 node-7 kubelet[1679]: {CRI}",
    f"Jun 15 00:02:18.724029 node-7 kubelet[1679]:  {CRI}",  # two spaces: no klog header
    f"Foo 15 00:02:18.724029 node-7 kubelet[1679]: {CRI}",  # not a month: no frame
    f"2024-06-15T00:02:18.724029+0000 node-7 kubelet[1679]: {CRI}",  # dated frame
    f"kubelet[1679]: {CRI}",  # bare identifier
    f"Jun 15 00:02:18.724029 node-7 containerd[99]: {CRI}",  # another unit
    "Jun 15 00:02:18.724029 node-7 kubelet[1679]: no klog header here",
    f"Jun 15 00:02:18.724029 node-7 kubelet: {CRI}",  # no pid
    CRI,  # no frame at all
]


@pytest.mark.parametrize("line", LINES)
def test_one_match_reads_what_frame_then_header_read(line: str) -> None:
    m = FRAMED_KLOG_RE.match(line)
    parts = frame_parts(line)
    if m is None:
        assert parts is None
        return
    start = m.start(FRAMED_KLOG_SEV)
    assert frame_of(m, start if start >= 0 else m.end()) == parts
    if parts is None:
        return
    header = KLOG_RE.match(line, parts[2])
    if header is None:
        assert start == -1
    else:
        assert start == parts[2] and m.end() == header.end()
        assert m.groups()[FRAMED_KLOG_SEV - 1 :] == header.groups()


def _parse(tmp_path, text: str, mod=kubelet) -> Evidence:
    p = tmp_path / "k.log"
    p.write_text(text)
    ev = Evidence()
    for src in iter_sources([str(p)]):
        mod.parse(src, ParseContext(ev, InputReport(src.display, mod.KIND), TimeContext(year=2024)))
    return ev


def test_a_framed_kubelet_error_yields_its_event_with_the_whole_line(tmp_path) -> None:
    ev = _parse(tmp_path, LINES[0] + "\n")
    (e,) = [e for e in ev.events if e.kind == EventKind.CRI_CALL_FAILED]
    assert e.ts == datetime(2024, 6, 15, 0, 2, 18, 724029, tzinfo=UTC)
    assert e.ref.text == LINES[0] and e.ref.line == 1
    assert e.attrs["method"] == "ContainerStatus" and e.attrs["code"] == "DeadlineExceeded"
    (rec,) = ev.log_records
    assert rec.pid == 1679 and rec.level == "error"


def test_the_same_header_in_another_units_frame_is_not_the_kubelets(tmp_path) -> None:
    ev = _parse(tmp_path, LINES[6] + "\n" + LINES[0] + "\n", mod=journal)
    got = [e for e in ev.events if e.kind == EventKind.CRI_CALL_FAILED]
    assert [e.ref.line for e in got] == [2]  # the containerd line is no kubelet event


def test_a_frame_that_is_no_frame_is_not_read_as_one(tmp_path) -> None:
    ev = _parse(tmp_path, LINES[3] + "\n")
    assert not [e for e in ev.events if e.kind == EventKind.CRI_CALL_FAILED]
