# ruff: noqa: E501  (goroutine dump text is quoted with its real line lengths)
"""Docker Engine API client waits (the dockershim, cri-dockerd -> dockerd over HTTP) are RPC
waits like ttrpc and gRPC: matched to the dockerd goroutine serving the call, and named by the
generic layer when no dockerd dump is given.

SYNTHETIC dumps: frames shaped as the kubelet 1.18 dockershim and dockerd 19.03 print them
(the vendored docker client, net/http's persistConn, the daemon's ContainerInspect)."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.goroutines import analyze
from plegdoctor.goroutines.parse import parse_dump_text
from plegdoctor.model import RootCauseClass as C
from rulecheck import diagnose

KUBELET = """goroutine 311 [select, 4 minutes]:
net/http.(*persistConn).roundTrip(0xc000b4e6c0, 0xc0016e1b30, 0x0, 0x0, 0x0)
\t/usr/local/go/src/net/http/transport.go:2565 +0x779
net/http.(*Transport).roundTrip(0xc0004a2000, 0xc001a4e300, 0x30, 0xc0012a5520, 0x1)
\t/usr/local/go/src/net/http/transport.go:582 +0xa65
net/http.send(0xc001a4e300, 0x4f1c1a0, 0xc0004a2000, 0x0, 0x0, 0x0, 0xc000b2c158, 0x4b0, 0x1, 0x0)
\t/usr/local/go/src/net/http/client.go:252 +0x453
k8s.io/kubernetes/vendor/github.com/docker/docker/client.(*Client).ContainerInspect(0xc000a2d200, 0x4f8f5e0, 0xc000ef1440, 0xc001c8e600, 0x40, 0x0, 0x0, 0x0, 0x0, 0x0, ...)
\t/workspace/src/k8s.io/kubernetes/vendor/github.com/docker/docker/client/container_inspect.go:23 +0x1b1
k8s.io/kubernetes/pkg/kubelet/dockershim/libdocker.(*kubeDockerClient).InspectContainer(0xc000a1a540, 0xc001c8e600, 0x40, 0x0, 0x0, 0x0)
\t/workspace/src/k8s.io/kubernetes/pkg/kubelet/dockershim/libdocker/kube_docker_client.go:138 +0x10f
k8s.io/kubernetes/pkg/kubelet/dockershim.(*dockerService).ContainerStatus(0xc000a0e000, 0x4f8f5a0, 0xc001a2b8c0, 0xc0016e1a40, 0x0, 0x0, 0x0)
\t/workspace/src/k8s.io/kubernetes/pkg/kubelet/dockershim/docker_container.go:400 +0xa5
"""
DOCKERD = """goroutine 9001 [semacquire, 4 minutes]:
sync.runtime_SemacquireMutex(0xc0011e4a84, 0x0, 0x1)
\t/usr/local/go/src/runtime/sema.go:71 +0x47
sync.(*Mutex).lockSlow(0xc0011e4a80)
\t/usr/local/go/src/sync/mutex.go:138 +0xfc
sync.(*Mutex).Lock(...)
\t/usr/local/go/src/sync/mutex.go:81
github.com/docker/docker/container.(*State).Lock(...)
\t/go/src/github.com/docker/docker/container/state.go:40
github.com/docker/docker/daemon.(*Daemon).containerInspectCurrent(0xc0000e2000, 0xc001c8e600, 0x40, 0x0, 0x0, 0x0, 0x0)
\t/go/src/github.com/docker/docker/daemon/inspect.go:40 +0x4c
github.com/docker/docker/daemon.(*Daemon).ContainerInspectCurrent(0xc0000e2000, 0xc001c8e600, 0x40, 0x0, 0xc000ab8f00, 0x0, 0x0)
\t/go/src/github.com/docker/docker/daemon/inspect.go:35 +0x60
"""


def test_dockershim_docker_api_wait_is_matched_to_the_dockerd_server() -> None:
    k = parse_dump_text(KUBELET, source="kubelet.txt", process="kubelet")
    d = parse_dump_text(DOCKERD, source="dockerd.txt", process="dockerd")
    ga = analyze(k + d)
    w = next(w for w in ga.waits if w.goroutine == 311)
    assert str(w.kind) == "http-call" and w.call == "Docker.ContainerInspect"
    assert w.holder is not None and ga.goroutine(w.holder).id == 9001
    chain = next(c for c in ga.chains if c.links[0].goroutine == 311)
    assert [lk.process for lk in chain.links] == ["kubelet", "dockerd"]


def test_a_docker_api_wait_alone_is_named_dockerd_lock(tmp_path: Path) -> None:
    dg = diagnose({"kubelet-goroutines.txt": KUBELET}, tmp_path)
    assert dg.root_causes and dg.root_causes[0].cls == C.DOCKERD_LOCK
    assert any(lk.goroutine == 311 for lk in dg.root_causes[0].chain)
