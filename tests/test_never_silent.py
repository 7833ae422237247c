"""Never silent: whenever the evidence shows a symptom (a relist gap, PLEG unhealthy, a CRI
deadline, NotReady for the runtime) or a goroutine blocked for minutes, the answer is a named
class or `unknown` that says what was seen and what to collect next. An empty root-cause list
means the evidence shows nothing wrong, and only then does the text say so.

The one-line inputs are real kubelet line formats (klog, as in tests/fixtures/logs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plegdoctor.report.text import render_text
from rulecheck import assert_fires, assert_quiet, diagnose

NOT_READY = (
    "I0109 19:48:52.460707    9136 setters.go:559] Node became not ready: {{Type:Ready Status:False "
    "LastHeartbeatTime:2021-01-09 19:48:52.460628029 +0800 CST m=+1199233.179416634 LastTransitionTime:2021-01-09 "
    "19:48:52.460628029 +0800 CST m=+1199233.179416634 Reason:KubeletNotReady Message:{msg}}}\n"
)
SYMPTOMS = {
    "pleg-unhealthy": "E1014 17:14:42.470286    2261 kubelet.go:1765] skipping pod synchronization - PLEG is not "
    "healthy: pleg was last seen active 3m2.325658446s ago; threshold is 3m0s\n",
    "cri-deadline": 'E0602 13:50:07.360000    1679 remote_runtime.go:390] "ListContainers with filter from runtime '
    'service failed" err="rpc error: code = DeadlineExceeded desc = context deadline exceeded" '
    'filter="&ContainerFilter{Id:,State:nil,PodSandboxId:,LabelSelector:map[string]string{},}"\n',
    "not-ready-runtime-down": NOT_READY.format(msg="container runtime is down"),
}
HEALTHY_WORDS = "No PLEG stall and no known cause"


@pytest.mark.parametrize("name", sorted(SYMPTOMS))
def test_a_symptom_alone_is_never_answered_with_nothing(name: str, tmp_path: Path) -> None:
    dg = diagnose({"kubelet.log": SYMPTOMS[name]}, tmp_path, year=2024)
    assert dg.root_causes, name
    top = dg.root_causes[0]
    assert (top.summary and "collect" in top.summary.lower()) or top.confidence >= 0.3
    assert dg.next_steps
    assert HEALTHY_WORDS not in render_text(dg.to_json(), width=100, color=False)


def test_only_an_empty_answer_says_nothing_is_wrong(tmp_path: Path) -> None:
    dg = diagnose({"kubelet.log": NOT_READY.format(msg="CSINode is not yet initialized")}, tmp_path, year=2024)
    assert not dg.root_causes
    assert HEALTHY_WORDS in render_text(dg.to_json(), width=100, color=False)


def test_pd108_fires_on_notready_for_the_runtime(tmp_path: Path) -> None:
    hits = assert_fires("PD108", {"kubelet.log": SYMPTOMS["not-ready-runtime-down"]}, tmp_path, year=2021)
    assert "container runtime is not ready" in hits[0].title
    assert hits[0].evidence[0].line == 1


def test_pd108_quiet_on_notready_for_another_reason(tmp_path: Path) -> None:
    assert_quiet("PD108", {"kubelet.log": NOT_READY.format(msg="CSINode is not yet initialized")}, tmp_path, year=2021)


def test_an_unnamed_long_wait_becomes_unknown_that_quotes_it(tmp_path: Path) -> None:
    """SYNTHETIC: a containerd goroutine waiting 42 minutes in a gRPC call to a service the
    mechanism table does not name; the answer must be `unknown` with that wait in its chain."""
    dump = (
        "goroutine 777 [select, 42 minutes]:\n"
        "google.golang.org/grpc/internal/transport.(*Stream).waitOnHeader(0xc000f2c6c0)\n"
        "\t/go/src/github.com/containerd/containerd/vendor/google.golang.org/grpc/internal/transport/transport.go:331"
        " +0x66\n"
        "google.golang.org/grpc.(*ClientConn).Invoke(0xc0004d4a80, {0x55d2c1a0b7c8, 0xc0000a8000}, "
        "{0x55d2c0f6e2a1, 0x2c}, {0x55d2c1966d40, 0xc0011c8f00}, {0x55d2c1966e80, 0xc0011c8f40}, "
        "{0x0, 0x0, 0x0})\n"
        "\t/go/src/github.com/containerd/containerd/vendor/google.golang.org/grpc/call.go:35 +0x223\n"
        "github.com/containerd/containerd/api/services/introspection/v1.(*introspectionClient).Plugins(0xc0003f0010,"
        " {0x55d2c1a0b7c8, 0xc0000a8000}, 0xc0011c8f00, {0x0, 0x0, 0x0})\n"
        "\t/go/src/github.com/containerd/containerd/api/services/introspection/v1/introspection_grpc.pb.go:40 +0xc9\n"
    )
    dg = diagnose({"containerd.stacks.log": dump}, tmp_path)
    assert dg.root_causes, "a 42-minute call wait must not be answered with nothing"
    top = dg.root_causes[0]
    assert str(top.cls) == "unknown"
    assert any(lk.goroutine == 777 for lk in top.chain)
    assert "42 min" in top.summary


def test_next_steps_name_the_runtime_the_dump_is_of() -> None:
    crio = Path(__file__).resolve().parent / "corpus" / "real" / "crio-9406-stop-oplock-go121-waitreason"
    dg = diagnose([crio / "crio-goroutines.txt"])
    steps = " ".join(dg.next_steps)
    assert "kill -USR1 $(pidof crio)" in steps and "crio-goroutine-stacks" in steps
    assert "pidof containerd" not in steps
