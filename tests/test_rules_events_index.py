"""`signals.events`: the events of some kinds, one per source line, in evidence order, read
from a per-kind index. Checked against the plain definition on random evidence (several
kinds on one line, lines shared across kinds and sources, repeated queries)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plegdoctor.evidence import Evidence
from plegdoctor.model import Event, EventKind, Ref
from plegdoctor.rules import RuleContext
from plegdoctor.rules.signals import events

KINDS = [EventKind.CRI_CALL_FAILED, EventKind.RELIST_ERROR, EventKind.PLEG_UNHEALTHY, EventKind.NODE_NOT_READY]


def reference(evs: list[Event], kinds: set[str]) -> list[Event]:
    seen: set[tuple[str, int]] = set()
    out = []
    for e in evs:
        if str(e.kind) in kinds and (e.ref.path, e.ref.line) not in seen:
            seen.add((e.ref.path, e.ref.line))
            out.append(e)
    return out


def _context(spec: list[tuple[int, int, int]]) -> tuple[RuleContext, list[Event]]:
    ev = Evidence()
    made = []
    for n, (kind, path, line) in enumerate(spec):
        e = Event(None, KINDS[kind], "kubelet", Ref(f"p{path}", line, f"line {n}"), {"n": n})
        ev.events.append(e)
        made.append(e)
    return RuleContext.build(ev), made


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(1, 6)), max_size=40),
    st.lists(st.sets(st.integers(0, 3), min_size=1), min_size=1, max_size=4),
)
def test_events_are_the_first_of_each_line_among_the_kinds(
    spec: list[tuple[int, int, int]], queries: list[set[int]]
) -> None:
    ctx, made = _context(spec)
    for q in queries + queries:  # asked twice: the kept answer is the same and a copy
        kinds = [KINDS[i] for i in q]
        got = events(ctx, *kinds)
        want = reference(made, {str(k) for k in kinds})
        assert [id(e) for e in got] == [id(e) for e in want]
        got.clear()  # a caller trimming its list does not change the next answer


def test_a_line_with_two_kinds_counts_once_and_keeps_the_earlier_event() -> None:
    ctx, _ = _context([(1, 0, 5), (0, 0, 5), (0, 0, 6), (1, 1, 5)])
    got = events(ctx, EventKind.CRI_CALL_FAILED, EventKind.RELIST_ERROR)
    assert [e.attrs["n"] for e in got] == [0, 2, 3]  # p0:5 once (its first event), p0:6, p1:5
    assert [e.attrs["n"] for e in events(ctx, EventKind.CRI_CALL_FAILED)] == [1, 2]
