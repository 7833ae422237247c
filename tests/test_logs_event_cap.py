"""Events past the per-kind cap are counted without being built (`EventList.defer`): the
kept head and tail, the counts, the dropped spans and the seal warnings are the ones that
building every event would give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plegdoctor.evidence import EventList
from plegdoctor.model import Event, EventKind, Ref
from plegdoctor.pipeline import collect_evidence

T0 = datetime(2023, 6, 15, tzinfo=UTC)


def _built(cap: int, items: list[tuple[int, EventKind]]) -> EventList:
    events = EventList(cap)
    for line, kind in items:
        events.append(Event(T0 + timedelta(seconds=line), kind, "kubelet", Ref("k.log", line, f"l{line}"), {"n": line}))
    events.seal()
    return events


def _deferred(cap: int, items: list[tuple[int, EventKind]]) -> EventList:
    events = EventList(cap)
    for line, kind in items:
        attrs = {"n": line}
        if not events.defer(T0 + timedelta(seconds=line), kind, "kubelet", "k.log", line, f"l{line}", attrs):
            events.append(Event(T0 + timedelta(seconds=line), kind, "kubelet", Ref("k.log", line, f"l{line}"), attrs))
    events.seal()
    return events


def test_defer_past_the_head_gives_what_append_gives() -> None:
    items = [(i, EventKind.CRI_CALL_FAILED if i % 3 else EventKind.RELIST_ERROR) for i in range(1, 40)]
    a, b = _built(6, items), _deferred(6, items)
    assert list(a) == list(b)
    assert a.counts == b.counts == {"cri-call-failed": 26, "relist-error": 13}
    assert a.dropped == b.dropped and b.dropped["cri-call-failed"].count == 20


def test_defer_under_the_cap_builds_nothing_later() -> None:
    events = EventList(10)
    assert not events.defer(T0, EventKind.CRI_CALL_FAILED, "kubelet", "k.log", 1, "x", {})
    assert events.counts == {}  # the caller appends the built event, which counts it
    events.append(Event(T0, EventKind.CRI_CALL_FAILED, "kubelet", Ref("k.log", 1, "x")))
    assert events.counts == {"cri-call-failed": 1} and not events.dropped


def test_deferred_events_of_one_line_share_their_ref_and_not_their_attrs() -> None:
    events = EventList(2)
    shared = {"k": "v"}
    for line in (1, 2, 3):  # the first event of each kind is the head, the rest deferred
        for kind in (EventKind.CRI_CALL_FAILED, EventKind.RELIST_ERROR):
            if not events.defer(T0, kind, "kubelet", "k.log", line, "t", shared):
                events.append(Event(T0, kind, "kubelet", Ref("k.log", line, "t"), dict(shared)))
    events.seal()
    last = [e for e in events if e.ref.line == 3]
    assert len(last) == 2 and last[0].ref is last[1].ref
    assert last[0].attrs == shared and last[0].attrs is not shared and last[0].attrs is not last[1].attrs


def _cri_log(n: int) -> bytes:
    lines = []
    for i in range(n):
        t = T0 + timedelta(seconds=i)
        stamp = t.strftime("%b %d %H:%M:%S.000000")
        klog = t.strftime("E%m%d %H:%M:%S.000000")
        lines.append(
            f"{stamp} node-7 kubelet[1679]: {klog}    1679 remote_runtime.go:432] "
            f'"ContainerStatus from runtime service failed" err="rpc error: code = DeadlineExceeded desc = context '
            f'deadline exceeded" containerID="{i:064x}"\n'
        )
    return "".join(lines).encode()


@pytest.mark.parametrize("cap", [1, 7, 100, 1000])
def test_a_kubelet_log_past_the_cap_reads_as_with_every_event_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    log = tmp_path / "kubelet.log"
    log.write_bytes(_cri_log(300))
    fast = collect_evidence([str(log)], year=2023, max_events_per_kind=cap)
    monkeypatch.setattr(EventList, "defer", lambda self, *a: False)  # build every event
    slow = collect_evidence([str(log)], year=2023, max_events_per_kind=cap)
    assert list(fast.events) == list(slow.events)
    assert fast.events.counts == slow.events.counts == {"cri-call-failed": 300}  # type: ignore[attr-defined]
    assert fast.events.dropped == slow.events.dropped  # type: ignore[attr-defined]
    assert [r.warnings for r in fast.inputs] == [r.warnings for r in slow.inputs]
    said = any("cri-call-failed events: kept the first and last" in w for r in fast.inputs for w in r.warnings)
    assert said is (cap < 300)
