"""watch --publish: the objects it builds and when it sends them (a recording sink, an injected clock)."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from plegdoctor.errors import UserError
from plegdoctor.live import kube_objects as ko
from plegdoctor.live.kube import Publisher, PublishOptions
from plegdoctor.live.kube_cli import options_from_cli
from plegdoctor.live.kube_sinks import DryRunSink
from plegdoctor.live.watch import _duration
from plegdoctor.model import RootCauseClass

T0 = 1_780_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def wall(self) -> float:
        return T0 + self.t

    def mono(self) -> float:
        return self.t


@dataclass
class RecordingSink:
    node: dict[str, Any] | None = None
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)

    def _rec(self, verb: str, name: str, body: dict[str, Any]) -> None:
        if verb in self.fail:
            raise ConnectionError(f"{verb}: refused")
        self.calls.append((verb, name, json.loads(json.dumps(body))))

    def get_node(self, name: str) -> dict[str, Any] | None:
        if "get_node" in self.fail:
            raise ConnectionError("refused")
        return self.node

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self._rec("patch_node", name, body)

    def patch_node_status(self, name: str, body: dict[str, Any]) -> None:
        self._rec("patch_node_status", name, body)

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self._rec("create_event", namespace, body)

    def patch_event(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self._rec("patch_event", name, body)

    def conditions(self, ctype: str = ko.CONDITION_TYPE) -> list[dict[str, Any]]:
        return [
            c
            for verb, _, body in self.calls
            if verb == "patch_node_status"
            for c in body["status"]["conditions"]
            if c["type"] == ctype
        ]


class FakeDiagnosis:
    def __init__(self, cls: str, summary: str, confidence: float = 0.8):
        self.doc = {"root_causes": [{"class": cls, "confidence": confidence, "summary": summary}], "pleg": {}}

    def to_json(self) -> dict[str, Any]:
        return self.doc


def _publisher(sink: RecordingSink, clock: Clock, **kw: Any) -> Publisher:
    return Publisher(PublishOptions(node="node-a", **kw), sink, clock=clock.wall, monotonic=clock.mono)


@pytest.mark.parametrize("cls", [c.value for c in RootCauseClass])
def test_every_class_maps_to_a_valid_camelcase_reason(cls: str) -> None:
    reason = ko.reason_from_class(cls)
    assert ko.REASON_RE.fullmatch(reason), reason
    assert reason.lower() == cls.replace("-", "")


def test_reason_mapping_examples_and_edges() -> None:
    assert ko.reason_from_class("fsync-io-pressure") == "FsyncIoPressure"
    assert ko.reason_from_class("cni-hang") == "CniHang"
    assert ko.reason_from_class("9p-hang") == "Class9pHang"
    assert ko.reason_from_class("--") == "Unknown" and ko.reason_from_class(None) == "Unknown"
    assert ko.REASON_RE.fullmatch(ko.reason_from_class("a" * 500))


def test_message_is_one_line_and_capped_in_bytes() -> None:
    text = "line one\nline\ttwo\x1b[2J " + "é" * 2000
    msg = ko.one_line(text)
    assert "\n" not in msg and "\x1b" not in msg and "\t" not in msg
    assert len(msg.encode()) <= ko.MESSAGE_CAP and msg.endswith("...")
    assert msg.startswith("line one line two [2J")
    assert ko.one_line("short  and\nsweet") == "short and sweet"


def test_stall_condition_carries_class_reason_and_verdict_and_keeps_transition_time() -> None:
    sink, clock = RecordingSink(), Clock()
    pub = _publisher(sink, clock)
    pub.observe(False, "")
    pub.publish_once()
    clock.t = 20
    pub.observe(True, "ListPodSandbox in flight for 6s")
    pub.publish_once()
    clock.t = 40
    pub.captured(
        Path("/caps/node-a-20261203.tar.gz"), FakeDiagnosis("fsync-io-pressure", "fsync waits on a loaded disk")
    )
    pub.publish_once()
    first, pending, analysed = sink.conditions()
    assert first["status"] == "False" and first["reason"] == "RelistsAnswer"
    assert pending["status"] == "True" and pending["reason"] == "RelistsStalled"
    assert "ListPodSandbox in flight" in pending["message"]
    assert pending["lastTransitionTime"] == ko.rfc3339(T0 + 20)
    assert analysed["status"] == "True" and analysed["reason"] == "FsyncIoPressure"
    assert "fsync-io-pressure" in analysed["message"] and "fsync waits on a loaded disk" in analysed["message"]
    # status unchanged: the transition time stays, the heartbeat moves
    assert analysed["lastTransitionTime"] == ko.rfc3339(T0 + 20)
    assert analysed["lastHeartbeatTime"] == ko.rfc3339(T0 + 40)


def test_condition_goes_false_when_relists_answer() -> None:
    sink, clock = RecordingSink(), Clock()
    pub = _publisher(sink, clock)
    pub.observe(True, "stall")
    pub.captured("/caps/c1.tar.gz", FakeDiagnosis("shim-hang", "the shim does not answer"))
    pub.publish_once()
    clock.t = 3  # a flip is sent at once, whatever the rate limit
    pub.observe(False, "")
    pub.publish_once()
    last = sink.conditions()[-1]
    assert last["status"] == "False" and last["reason"] == ko.REASON_RELISTS_ANSWER
    assert last["lastTransitionTime"] == ko.rfc3339(T0 + 3)
    assert "shim-hang" in last["message"] and "c1.tar.gz" in last["message"]


def test_condition_rate_limit_with_an_injected_clock() -> None:
    sink, clock = RecordingSink(), Clock()
    pub = _publisher(sink, clock, condition_every=10, resync_every=300)
    pub.observe(True, "stall for 6s")
    pub.publish_once()
    assert len(sink.conditions()) == 1
    for t in (1, 2, 5, 9.9):  # the message changes each time, but within 10 s
        clock.t = t
        pub.observe(True, f"stall for {6 + t}s")
        pub.publish_once()
    assert len(sink.conditions()) == 1
    clock.t = 10
    pub.publish_once()
    assert len(sink.conditions()) == 2
    clock.t = 50  # unchanged since t=10: nothing until the resync period
    pub.publish_once()
    assert len(sink.conditions()) == 2
    clock.t = 310
    pub.publish_once()
    assert len(sink.conditions()) == 3
    clock.t = 311  # a flip ignores the limit
    pub.observe(False, "")
    pub.publish_once()
    assert [c["status"] for c in sink.conditions()] == ["True", "True", "True", "False"]


def test_one_event_per_capture_and_per_cooldown() -> None:
    sink, clock = RecordingSink(node={"metadata": {"uid": "uid-1"}}), Clock()
    pub = _publisher(sink, clock, event_cooldown=600)
    pub.prime()
    pub.captured("/caps/cap-1.tar.gz", FakeDiagnosis("cni-hang", "CNI ADD never returns"))
    pub.publish_once()
    pub.publish_once()  # nothing new: no second Event
    clock.t = 100
    pub.captured("/caps/cap-2.tar.gz", FakeDiagnosis("cni-hang", "again"))
    pub.publish_once()
    clock.t = 700
    pub.captured("/caps/cap-3.tar.gz", FakeDiagnosis("shim-hang", "later"))
    pub.publish_once()
    events = [(v, n, b) for v, n, b in sink.calls if v in ("create_event", "patch_event")]
    assert [v for v, _, _ in events] == ["create_event", "patch_event", "create_event"]
    created = events[0][2]
    assert created["type"] == "Warning" and created["reason"] == "ContainerRuntimeStalled"
    assert created["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "uid-1"}
    assert created["source"]["component"] == "pleg-doctor"
    assert "cap-1.tar.gz" in created["message"] and "cni-hang" in created["message"]
    assert created["metadata"]["name"] == ko.event_name("node-a", "cap-1.tar.gz")
    assert events[1][1] == created["metadata"]["name"] and events[1][2]["count"] == 2
    assert "cap-2.tar.gz" in events[1][2]["message"]
    assert events[2][2]["metadata"]["name"] == ko.event_name("node-a", "cap-3.tar.gz")


def test_event_name_is_stable_and_a_dns_subdomain() -> None:
    name = ko.event_name("n" * 300, "x.tar.gz")
    assert len(name) <= 253 and name == ko.event_name("n" * 300, "x.tar.gz")
    assert ko.event_name("a", "x") != ko.event_name("a", "y")


def test_restart_keeps_the_transition_time_the_node_has() -> None:
    since = "2026-12-01T08:00:00Z"
    node = {"status": {"conditions": [{"type": ko.CONDITION_TYPE, "status": "True", "lastTransitionTime": since}]}}
    sink, clock = RecordingSink(node=node), Clock()
    pub = _publisher(sink, clock)
    pub.prime()
    pub.observe(True, "still stalled")
    pub.publish_once()
    (cond,) = sink.conditions()
    assert cond["lastTransitionTime"] == since


def test_failures_are_logged_and_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    sink, clock = RecordingSink(fail={"get_node", "patch_node_status", "create_event"}), Clock()
    pub = _publisher(sink, clock)
    pub.prime()
    pub.observe(True, "stall")
    pub.captured("/caps/c.tar.gz", None)
    pub.publish_once()
    pub.publish_once()
    assert sink.calls == []
    assert "patch nodes/status failed" in caplog.text and "create event failed" in caplog.text
    assert caplog.text.count("patch nodes/status failed") == 1  # once per minute, not per try
    sink.fail.clear()  # the API is back: the failed condition is sent on the next round
    pub.publish_once()
    assert sink.conditions()[-1]["status"] == "True"


def test_dry_run_prints_one_json_object_per_line() -> None:
    out, clock = io.StringIO(), Clock()
    pub = Publisher(PublishOptions(node="node-a", hold="both"), DryRunSink(out), clock=clock.wall, monotonic=clock.mono)
    pub.prime()
    with pub.hold("stall"):
        pub.observe(True, "stall")
        pub.captured("/caps/c.tar.gz", FakeDiagnosis("runc-hang", "runc init hangs"))
        pub.publish_once()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["verb"], d["resource"]) for d in lines] == [
        ("patch", "nodes"),
        ("patch", "nodes/status"),
        ("patch", "nodes/status"),
        ("create", "namespaces/default/events"),
        ("patch", "nodes"),
        ("patch", "nodes/status"),
    ]
    assert lines[0]["body"] == {"metadata": {"annotations": {ko.HOLD_ANNOTATION: "true"}}}
    assert lines[2]["body"]["status"]["conditions"][0]["reason"] == "RuncHang"
    assert lines[4]["body"] == {"metadata": {"annotations": {ko.HOLD_ANNOTATION: None}}}


def test_hold_is_removed_when_the_capture_raises() -> None:
    sink, clock = RecordingSink(), Clock()
    pub = _publisher(sink, clock, hold="both")
    with pytest.raises(RuntimeError), pub.hold("stall"):
        assert pub.holding
        raise RuntimeError("collect blew up")
    assert not pub.holding
    annotations = [b["metadata"]["annotations"][ko.HOLD_ANNOTATION] for v, _, b in sink.calls if v == "patch_node"]
    assert annotations == ["true", None]
    assert [(c["status"], c["reason"]) for c in sink.conditions(ko.CAPTURING_TYPE)] == [
        ("True", ko.REASON_CAPTURING),
        ("False", ko.REASON_CAPTURE_DONE),
    ]


def test_hold_is_removed_after_the_time_limit_while_the_capture_hangs() -> None:
    sink = RecordingSink()
    pub = Publisher(PublishOptions(node="node-a", hold="annotation", hold_max=0.2), sink)
    released_inside = threading.Event()
    with pub.hold("stall"):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not pub.holding:
                released_inside.set()
                break
            time.sleep(0.02)
    assert released_inside.is_set()
    annotations = [b["metadata"]["annotations"][ko.HOLD_ANNOTATION] for v, _, b in sink.calls if v == "patch_node"]
    assert annotations == ["true", None]  # released once: the block's end does not remove it again


def test_an_annotation_someone_else_set_is_left_alone() -> None:
    sink = RecordingSink(node={"metadata": {"annotations": {}}})
    pub = _publisher(sink, Clock(), hold="annotation")
    pub.prime()
    sink.node = {"metadata": {"annotations": {ko.HOLD_ANNOTATION: "true"}}}  # set after our start
    with pub.hold("stall"):
        pass
    assert [v for v, _, _ in sink.calls] == []
    sink.node = {"metadata": {"annotations": {}}}  # they removed it: the next hold is ours again
    with pub.hold("stall"):
        pass
    assert [v for v, _, _ in sink.calls] == ["patch_node", "patch_node"]


def test_cli_options() -> None:
    base = dict(publish=False, publish_dry_run=False, kubeconfig=None, in_cluster=False, node_name=None)
    assert options_from_cli("n", 600, _duration, **base, hold_for_repair=None, hold_max="5m") is None
    with pytest.raises(UserError):
        options_from_cli("n", 600, _duration, **base, hold_for_repair="annotation", hold_max="5m")
    dry = {**base, "publish_dry_run": True, "node_name": "other"}
    opts = options_from_cli("n", 60, _duration, **dry, hold_for_repair="both", hold_max="90s")
    assert opts is not None and opts.dry_run and opts.node == "other" and opts.hold_max == 90
    assert opts.event_cooldown == 60
    otlp = options_from_cli("n", 60, _duration, **base, hold_for_repair=None, hold_max="5m", otlp_endpoint="http://c")
    assert otlp is not None and not otlp.kube and otlp.otlp_endpoint == "http://c"


def test_publish_without_credentials_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    base = dict(publish=True, publish_dry_run=False, kubeconfig=None, in_cluster=False, node_name=None)
    with pytest.raises(UserError, match="--kubeconfig"):
        options_from_cli("n", 600, _duration, **base, hold_for_repair=None, hold_max="5m")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    opts = options_from_cli("n", 600, _duration, **base, hold_for_repair=None, hold_max="5m")
    assert opts is not None and opts.in_cluster


def test_watch_without_publish_does_not_import_the_kubernetes_client() -> None:
    import subprocess
    import sys

    code = "import sys, plegdoctor.live.watch; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_real_watcher_publishes_through_the_wiring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Watcher + fake CRI + --publish-dry-run --hold-for-repair both: a stall sets the hold,
    the capture's Event and the True condition go out, the hold goes, then the condition is False."""
    from live_fakes import FakeCRI, standard_handlers, watch_config
    from plegdoctor.live.watch import Watcher

    sock = str(tmp_path / "cri.sock")
    captures = tmp_path / "captures"
    publish = PublishOptions(node="node-w", dry_run=True, hold="both", condition_every=0.0)
    cfg = watch_config(sock, captures, node="node-w", publish=publish)
    with FakeCRI(sock, standard_handlers(1)) as fake:
        w = Watcher(cfg).start()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        try:
            time.sleep(0.4)
            gate = threading.Event()
            fake.block["ListPodSandbox"] = gate
            deadline = time.monotonic() + 30
            while (not w.captures or w.publisher.holding) and time.monotonic() < deadline:
                time.sleep(0.1)
            gate.set()
            fake.block.pop("ListPodSandbox")
            deadline = time.monotonic() + 10
            while w.probe.status().stalled and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)  # the publisher thread wakes at least once a second
        finally:
            w.stop()
            t.join(5)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    conds = [
        (c["type"], c["status"], c["reason"])
        for d in lines
        if d["resource"] == "nodes/status"
        for c in d["body"]["status"]["conditions"]
    ]
    stalled = [c for c in conds if c[0] == ko.CONDITION_TYPE]
    assert stalled[0][1] == "False" and ("ContainerRuntimeStalled", "True", "RelistsStalled") in stalled
    assert stalled[-1] == (ko.CONDITION_TYPE, "False", "RelistsAnswer")
    assert [c[1] for c in conds if c[0] == ko.CAPTURING_TYPE] == ["True", "False"]
    holds = [d["body"]["metadata"]["annotations"][ko.HOLD_ANNOTATION] for d in lines if d["resource"] == "nodes"]
    assert holds == ["true", None]
    (event,) = [d for d in lines if d["verb"] == "create"]
    assert w.captures[0].name in event["body"]["message"]


def test_nothing_is_published_before_the_probe_knows() -> None:
    sink, clock = RecordingSink(), Clock()
    pub = _publisher(sink, clock)
    pub.observe(False, "", known=False)  # no relist has ended yet: "relists answer" would be a guess
    pub.publish_once()
    assert sink.conditions() == []
    pub.observe(False, "", known=True)
    pub.publish_once()
    assert [c["status"] for c in sink.conditions()] == ["False"]
