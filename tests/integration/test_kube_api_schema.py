"""watch --publish through the real `kubernetes` client against a recording HTTP server on 127.0.0.1.

A real API server (kube-apiserver + etcd) is not installable here, so a local HTTP server
stands in for it: the client reaches it through a kubeconfig the test writes (bearer token,
plain HTTP on the loopback), and every request body is validated against the Kubernetes
OpenAPI schemas that `kubernetes-validate` ships (v1.30, the strict variant: unknown fields
fail) with `jsonschema`. The publisher is driven with the states a Watcher produces: a stall,
its capture with a Diagnosis, then relists answering again. Needs no root and no binary.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from plegdoctor.live import kube_objects as ko
from plegdoctor.live.kube import Publisher, PublishOptions
from plegdoctor.live.kube_sinks import ApiSink

jsonschema = pytest.importorskip("jsonschema")
kv = pytest.importorskip("kubernetes_validate")
pytest.importorskip("kubernetes")

TOKEN = "test-token-abc"
NODE = "node-a"
NODE_UID = "2f0a6b1e-0000-4000-8000-000000000001"
SCHEMA_VERSION = "v1.30.0-local-strict"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeApiServer:
    """Records every request; answers the few paths the publisher uses; 401 without the token."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.annotations: dict[str, str] = {}
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                outer.requests.append(
                    Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if outer.delay:
                    time.sleep(outer.delay)
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"kind": "Status", "code": 401})
                path = self.path.split("?")[0]
                if self.command == "PATCH" and path == f"/api/v1/nodes/{NODE}" and body:
                    for k, v in ((body.get("metadata") or {}).get("annotations") or {}).items():
                        if v is None:
                            outer.annotations.pop(k, None)
                        else:
                            outer.annotations[k] = v
                if path.startswith(f"/api/v1/nodes/{NODE}") and self.command in ("GET", "PATCH"):
                    return self._send(200, outer.node())
                if path == "/api/v1/namespaces/default/events" and self.command == "POST":
                    return self._send(201, body)
                if path.startswith("/api/v1/namespaces/default/events/") and self.command == "PATCH":
                    return self._send(200, body)
                return self._send(404, {"kind": "Status", "code": 404})

            def _send(self, code: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up at its deadline (the slow-server test)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def node(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "uid": NODE_UID, "annotations": dict(self.annotations)},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, str]]:
    with FakeApiServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
                    "users": [{"name": "u", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "c", "context": {"cluster": "t", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        yield server, str(kubeconfig)


def _validator(definition: str) -> Any:
    """A Draft 2020-12 validator of one definition of kubernetes-validate's bundled schemas."""
    from referencing import Registry, Resource

    base = Path(kv.__file__).parent / "kubernetes-json-schema" / SCHEMA_VERSION
    defs = json.loads((base / "_definitions.json").read_text())
    registry = Resource.from_contents(defs) @ Registry()
    schema = {"$ref": f"{defs['$id']}#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


class Diag:
    def __init__(self, cls: str, summary: str):
        self.doc = {"root_causes": [{"class": cls, "confidence": 0.9, "summary": summary}], "pleg": {}}

    def to_json(self) -> dict[str, Any]:
        return self.doc


def test_publisher_requests_validate_against_the_kubernetes_schemas(api: tuple[FakeApiServer, str]) -> None:
    server, kubeconfig = api
    node_v, cond_v, event_v = (
        _validator("io.k8s.api.core.v1.Node"),
        _validator("io.k8s.api.core.v1.NodeCondition"),
        _validator("io.k8s.api.core.v1.Event"),
    )
    # condition_every=0: every changed condition goes out (the rate limit is tested in test_kube_publish)
    opts = PublishOptions(node=NODE, kubeconfig=kubeconfig, hold="both", request_timeout=5, condition_every=0)
    pub = Publisher(opts, ApiSink(kubeconfig, False, opts.request_timeout))
    pub.prime()
    assert pub.node_uid == NODE_UID
    # the states a Watcher goes through: healthy, stall, capture under hold + analysis, healthy
    pub.observe(False, "")
    pub.publish_once()
    pub.observe(True, "ListPodSandbox in flight for 6s")
    pub.publish_once()
    with pub.hold("ListPodSandbox in flight for 6s"):
        assert server.annotations == {ko.HOLD_ANNOTATION: "true"}
        capture = "node-a-20261203T091500Z.tar.gz"
        pub.captured(
            Path("/var/lib/pleg-doctor/captures") / capture, Diag("fsync-io-pressure", "fsync waits\non a disk")
        )
        pub.publish_once()
    assert server.annotations == {}
    pub.observe(False, "")
    pub.publish_once()
    pub.captured("/var/lib/pleg-doctor/captures/second.tar.gz", None)  # within the cooldown: folded
    pub.publish_once()

    reqs = server.requests
    assert reqs and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in reqs)
    assert reqs[0].method == "GET" and reqs[0].path.startswith(f"/api/v1/nodes/{NODE}")
    for r in reqs:
        if r.method == "PATCH" and r.path.startswith("/api/v1/nodes/"):
            assert r.headers["content-type"] == "application/strategic-merge-patch+json"
            node_v.validate(r.body)  # strict: an unknown or mistyped field fails here
            for cond in (r.body.get("status") or {}).get("conditions") or []:
                cond_v.validate(cond)
                assert ko.REASON_RE.fullmatch(cond["reason"])
                assert len(cond["message"].encode()) <= ko.MESSAGE_CAP and "\n" not in cond["message"]
    status = [r for r in reqs if r.path.startswith(f"/api/v1/nodes/{NODE}/status")]
    stalled = [c for r in status for c in r.body["status"]["conditions"] if c["type"] == ko.CONDITION_TYPE]
    assert [(c["status"], c["reason"]) for c in stalled] == [
        ("False", "RelistsAnswer"),
        ("True", "RelistsStalled"),
        ("True", "FsyncIoPressure"),
        ("False", "RelistsAnswer"),
        ("False", "RelistsAnswer"),  # its message now names the second capture
    ]
    assert "second.tar.gz" in stalled[4]["message"] and "fsync-io-pressure" in stalled[3]["message"]
    assert "fsync-io-pressure" in stalled[2]["message"] and "fsync waits on a disk" in stalled[2]["message"]
    assert stalled[2]["lastTransitionTime"] == stalled[1]["lastTransitionTime"]
    capturing = [c for r in status for c in r.body["status"]["conditions"] if c["type"] == ko.CAPTURING_TYPE]
    assert [c["status"] for c in capturing] == ["True", "False"]
    node_patches = [r.body for r in reqs if r.method == "PATCH" and r.path.split("?")[0] == f"/api/v1/nodes/{NODE}"]
    assert node_patches == [ko.annotation_patch("true"), ko.annotation_patch(None)]
    (event,) = [r for r in reqs if r.method == "POST"]
    (repeat,) = [r for r in reqs if r.method == "PATCH" and "/events/" in r.path]
    assert repeat.path.endswith("/" + event.body["metadata"]["name"]) and repeat.body["count"] == 2
    assert event.path == "/api/v1/namespaces/default/events"
    event_v.validate(event.body)
    assert event.body["involvedObject"]["kind"] == "Node" and event.body["involvedObject"]["uid"] == NODE_UID
    assert event.body["reason"] == "ContainerRuntimeStalled" and event.body["type"] == "Warning"
    assert capture in event.body["message"] and "fsync-io-pressure" in event.body["message"]
    assert event.body["source"] == {"component": "pleg-doctor", "host": NODE}


def test_schema_check_rejects_a_malformed_condition() -> None:
    """The validator used above is not a rubber stamp: a wrong field or type fails."""
    cond = ko.condition(ko.CONDITION_TYPE, True, "X", "m", 0, 0)
    _validator("io.k8s.api.core.v1.NodeCondition").validate(cond)
    with pytest.raises(jsonschema.ValidationError):
        _validator("io.k8s.api.core.v1.NodeCondition").validate({**cond, "lastProbeTime": "x"})
    with pytest.raises(jsonschema.ValidationError):
        _validator("io.k8s.api.core.v1.Event").validate({"metadata": {}, "involvedObject": {}, "count": "1"})


def test_wrong_token_is_refused_and_logged_and_a_slow_server_hits_the_deadline(
    api: tuple[FakeApiServer, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, kubeconfig = api
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(Path(kubeconfig).read_text().replace(TOKEN, "wrong"))
    pub = Publisher(PublishOptions(node=NODE), ApiSink(str(bad), False, 5))
    pub.observe(True, "stall")
    pub.publish_once()
    assert "HTTP 401" in caplog.text
    server.delay = 3.0
    pub = Publisher(PublishOptions(node=NODE), ApiSink(kubeconfig, False, 0.5))
    t0 = time.monotonic()
    pub.observe(True, "stall")
    pub.publish_once()
    assert time.monotonic() - t0 < 2.5  # the request's deadline, not the server's 3 s
    assert caplog.text.count("patch nodes/status failed") == 2


VERBS = {"GET": "get", "PATCH": "patch", "POST": "create"}


def _resource(path: str) -> str:
    parts = path.split("?")[0].strip("/").split("/")  # api v1 [namespaces ns] resource [name [sub]]
    if parts[2] == "namespaces":
        parts = parts[:2] + parts[4:]
    return parts[2] + ("/" + parts[4] if len(parts) > 4 else "")


def test_rbac_grants_exactly_the_calls_made(api: tuple[FakeApiServer, str]) -> None:
    """deploy/rbac.yaml validates, its ClusterRole grants exactly the (resource, verb) pairs the
    publisher used against the recording server (every kind of call exercised), and its binding
    names the ServiceAccount deploy/daemonset.yaml defines."""
    import yaml

    server, kubeconfig = api
    pub = Publisher(PublishOptions(node=NODE, hold="both", condition_every=0), ApiSink(kubeconfig, False, 5))
    pub.prime()
    with pub.hold("stall"):
        pub.observe(True, "stall")
        pub.captured("/c/one.tar.gz", Diag("shim-hang", "s"))
        pub.publish_once()
        pub.captured("/c/two.tar.gz", Diag("shim-hang", "s"))
        pub.publish_once()
    used = {(_resource(r.path), VERBS[r.method]) for r in server.requests}
    docs = [d for d in yaml.safe_load_all((Path(__file__).parents[2] / "deploy" / "rbac.yaml").read_text()) if d]
    for doc in docs:
        kv.validate(doc, kv.latest_version(), strict=True)
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert granted == used
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    daemonset = [d for d in yaml.safe_load_all((Path(__file__).parents[2] / "deploy" / "daemonset.yaml").read_text())]
    (sa,) = [d for d in daemonset if d and d["kind"] == "ServiceAccount"]  # defined once, there
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]


def test_otlp_log_record_per_diagnosis_reaches_a_local_collector() -> None:
    """--otlp-endpoint: the SDK's OTLP/HTTP exporter posts protobuf to a local server that
    decodes it (ExportLogsServiceRequest); one record per analysed capture, nothing else."""
    pytest.importorskip("opentelemetry.sdk._logs")
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from plegdoctor.live.kube_otlp import OtlpDiagnosisLog, logs_url
    from plegdoctor.live.kube_sinks import NullSink

    got: list[tuple[str, str, ExportLogsServiceRequest]] = []

    class Collector(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            req = ExportLogsServiceRequest()
            req.ParseFromString(raw)
            got.append((self.path, self.headers.get("Content-Type", ""), req))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        otlp = OtlpDiagnosisLog(f"http://127.0.0.1:{server.server_address[1]}", NODE, timeout=5)
        pub = Publisher(PublishOptions(node=NODE, kube=False), NullSink(), otlp=otlp)
        pub.captured("/c/cap-1.tar.gz", Diag("fsync-io-pressure", "fsync waits on a loaded disk"))
        pub.captured("/c/cap-2.tar.gz", None)  # not analysed: no record
        pub.stop()  # flushes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert logs_url("http://c:4318") == "http://c:4318/v1/logs" and logs_url("http://c/x") == "http://c/x"
    ((path, ctype, req),) = got
    assert path == "/v1/logs" and ctype == "application/x-protobuf"
    (rl,) = req.resource_logs
    resource = {a.key: a.value.string_value for a in rl.resource.attributes}
    assert resource["service.name"] == "pleg-doctor" and resource["k8s.node.name"] == NODE
    (record,) = [r for sl in rl.scope_logs for r in sl.log_records]
    attrs = {a.key: a.value for a in record.attributes}
    assert record.body.string_value.startswith("fsync-io-pressure (confidence 90%)")
    assert record.severity_text == "WARN" and record.event_name == "pleg_doctor.diagnosis"
    assert attrs["pleg_doctor.root_cause.class"].string_value == "fsync-io-pressure"
    assert attrs["pleg_doctor.root_cause.reason"].string_value == "FsyncIoPressure"
    assert attrs["pleg_doctor.root_cause.confidence"].double_value == pytest.approx(0.9)
    assert attrs["pleg_doctor.capture"].string_value == "cap-1.tar.gz"
