"""kubectl Events tables and node Conditions rows, from real pastes in the corpus."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.model import EventKind
from rulecheck import diagnose

REAL = Path(__file__).resolve().parent / "corpus" / "real"


def _events(dg_inputs_path: Path) -> tuple[object, list]:
    from plegdoctor.pipeline import collect_evidence

    ev = collect_evidence([str(dg_inputs_path)])
    return ev, ev.events


def test_node_events_and_condition_rows_give_notready_and_pleg_unhealthy() -> None:
    # amazon-eks-ami#1071: `kubectl describe node` Events, a Conditions row, a shell session
    path = next((REAL).glob("eks-ami-1071-*")) / "node-events-and-docker-cli.txt"
    ev, events = _events(path)
    kinds = [e.kind for e in events]
    assert EventKind.NODE_NOT_READY in kinds and EventKind.PLEG_UNHEALTHY in kinds
    pleg = next(e for e in events if e.kind == EventKind.PLEG_UNHEALTHY)
    assert pleg.ts is None and abs(pleg.attrs["last_seen_seconds"] - 187.341793557) < 1e-6
    (inp,) = ev.inputs
    assert inp.kind == "kube-events" and inp.unparsed == 4  # the docker CLI lines and their ^C
    assert diagnose([path]).root_causes  # a symptom is never answered with nothing


def test_pod_events_of_probe_errors_are_read_but_are_no_symptom() -> None:
    # cri-o#9406: readiness probe errors on a container stuck stopping
    path = next(REAL.glob("crio-9406-*")) / "events-and-crictl.txt"
    ev, events = _events(path)
    assert not [e for e in events if e.kind in (EventKind.PLEG_UNHEALTHY, EventKind.NODE_NOT_READY)]
    assert ev.inputs[0].kind == "kube-events" and ev.inputs[0].records == 1
