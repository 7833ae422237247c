"""CRI client against a fake runtime.v1 server: real grpc on a unix socket, deadlines and error kinds."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import grpc
import pytest

from live_fakes import FakeCRI, standard_handlers
from plegdoctor.errors import UserError
from plegdoctor.live.cri import api
from plegdoctor.live.cri.client import CRIClient, CRIError, container_config, host_network_sandbox_config


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "cri.sock")


def test_version_and_lists_round_trip(sock: str) -> None:
    with FakeCRI(sock, standard_handlers(4)), CRIClient(f"unix://{sock}", timeout=5) as client:
        v = client.version()
        assert (v.runtime_name, v.runtime_version, v.runtime_api_version) == ("containerd", "1.6.20~fake", "v1")
        containers = client.list_containers()
        assert [c.id for c in containers] == ["c0", "c1", "c2", "c3"]
        assert all(c.state == api.enum_value("ContainerState", "CONTAINER_RUNNING") for c in containers)
        assert [s.metadata.name for s in client.list_pod_sandbox()] == ["pod1"]


def test_missing_socket_is_one_clear_line(tmp_path: Path) -> None:
    client = CRIClient(f"unix://{tmp_path}/absent.sock")
    with pytest.raises(CRIError) as err:
        client.version(timeout=1)
    assert err.value.kind == "no-socket"
    assert "does not exist" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, UserError)  # the CLI prints it as one line, exit 2


def test_regular_file_is_not_a_socket(tmp_path: Path) -> None:
    p = tmp_path / "file.sock"
    p.write_text("")
    with pytest.raises(CRIError) as err:
        CRIClient(str(p)).version(timeout=1)
    assert err.value.kind == "not-a-socket"


def test_socket_nobody_listens_on(tmp_path: Path) -> None:
    path = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # bound, never listening: connect is refused
    try:
        with pytest.raises(CRIError) as err:
            CRIClient(path).version(timeout=2)
        assert err.value.kind in ("no-socket", "unavailable")
    finally:
        s.close()


def test_deadline_exceeded_on_a_slow_call(sock: str) -> None:
    with FakeCRI(sock, standard_handlers()) as fake, CRIClient(f"unix://{sock}") as client:
        fake.delay["ListContainers"] = 2.0
        t0 = time.monotonic()
        with pytest.raises(CRIError) as err:
            client.list_containers(timeout=0.3)
        elapsed = time.monotonic() - t0
        assert err.value.kind == "deadline-exceeded"
        assert err.value.method == "ListContainers"
        assert 0.25 <= elapsed < 1.5
        assert "0.3s" in str(err.value)


def test_unimplemented_method(sock: str) -> None:
    with FakeCRI(sock, standard_handlers()), CRIClient(f"unix://{sock}") as client:
        with pytest.raises(CRIError) as err:
            client.update_container_resources("c1", cpu_shares=512, timeout=2)
        assert err.value.kind == "unimplemented"
        assert "UpdateContainerResources" in str(err.value)


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_permission_denied_translation() -> None:
    # As root a chmod 000 socket still connects, so the grpc error is synthesized here.
    client = CRIClient("unix:///run/containerd/containerd.sock")
    err = client._translate(
        "Version",
        _FakeRpcError(
            grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; connect: Permission denied (13)"
        ),
        1.0,
        0.01,
    )
    assert err.kind == "permission-denied"
    assert str(err) == "Version on unix:///run/containerd/containerd.sock: permission denied"


def test_permission_denied_when_not_accessible(sock: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCRI(sock, standard_handlers()):
        monkeypatch.setattr(os, "access", lambda *a, **k: False)
        with pytest.raises(CRIError) as err:
            CRIClient(sock).version(timeout=1)
        assert err.value.kind == "permission-denied"


def test_builders_make_host_network_pods() -> None:
    sc = host_network_sandbox_config("p", cgroup_parent="/x")
    node = api.enum_value("NamespaceMode", "NODE")
    assert sc.hostname == "" and sc.linux.security_context.namespace_options.network == node
    assert sc.metadata.namespace == "pleg-doctor" and sc.linux.cgroup_parent == "/x"
    cc = container_config("c", "img", command=["/bin/sleep"], args=["1"], envs={"A": "1"}, mounts=[("/h", "/c")])
    assert list(cc.command) == ["/bin/sleep"] and cc.envs[0].key == "A" and cc.mounts[0].host_path == "/h"
    # wire round trip through the serialized form
    again = api.ContainerConfig.FromString(cc.SerializeToString())
    assert again == cc
