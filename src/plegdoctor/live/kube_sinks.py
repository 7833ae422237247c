"""Where `watch --publish` sends its requests: the API server through the official `kubernetes`
client (`ApiSink`), stdout as JSON lines (`DryRunSink`, `--publish-dry-run`), or nowhere
(`NullSink`: `--otlp-endpoint` alone)."""

from __future__ import annotations

import json
import sys
import threading
from typing import IO, Any, Protocol

from plegdoctor.errors import UserError


class Sink(Protocol):
    """Where requests go: the API server (`ApiSink`) or stdout (`DryRunSink`)."""

    def get_node(self, name: str) -> dict[str, Any] | None: ...
    def patch_node(self, name: str, body: dict[str, Any]) -> None: ...
    def patch_node_status(self, name: str, body: dict[str, Any]) -> None: ...
    def create_event(self, namespace: str, body: dict[str, Any]) -> None: ...
    def patch_event(self, namespace: str, name: str, body: dict[str, Any]) -> None: ...


class AlreadyExists(Exception):
    """The Event to create exists (HTTP 409)."""


class ApiSink:
    """The official `kubernetes` client, from a kubeconfig file or in-cluster credentials.

    Imported here only (a watch without --publish never loads it). Each call carries
    `_request_timeout`; urllib3 retries are off, so a call takes at most that long. Patches are
    dicts, which the client (29 to 37 alike) sends as `application/strategic-merge-patch+json`
    (its REST layer turns the default JSON-patch type into that for a non-list body); the
    integration test checks the header."""

    def __init__(self, kubeconfig: str | None, in_cluster: bool, timeout: float):
        try:
            from kubernetes import client, config
        except ImportError:
            raise UserError(
                "--publish needs the kubernetes client: pip install 'kubernetes>=29' (pleg-doctor[kube])"
            ) from None
        cfg = client.Configuration()
        try:
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
            elif in_cluster:
                config.load_incluster_config(client_configuration=cfg)
            else:
                raise UserError("--publish: give --kubeconfig FILE or --in-cluster")
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"cannot load Kubernetes credentials: {exc}") from None
        cfg.retries = False
        self._api = client.CoreV1Api(client.ApiClient(cfg))
        self._exc = client.exceptions.ApiException
        self.timeout = timeout

    def _kw(self) -> dict[str, Any]:
        # (connect, read): client 29 ignores a float total (it takes only int or a pair)
        return {"_request_timeout": (self.timeout, self.timeout)}

    def get_node(self, name: str) -> dict[str, Any] | None:
        return json.loads(_body(self._api.read_node(name, _preload_content=False, **self._kw())))

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        _body(self._api.patch_node(name, body, _preload_content=False, **self._kw()))

    def patch_node_status(self, name: str, body: dict[str, Any]) -> None:
        _body(self._api.patch_node_status(name, body, _preload_content=False, **self._kw()))

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        try:
            # the client serializes a plain dict body as it is (its stubs ask for a CoreV1Event)
            _body(self._api.create_namespaced_event(namespace, body, _preload_content=False, **self._kw()))  # type: ignore[arg-type]
        except self._exc as exc:
            if exc.status == 409:
                raise AlreadyExists(body["metadata"]["name"]) from None
            raise

    def patch_event(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        _body(self._api.patch_namespaced_event(name, namespace, body, _preload_content=False, **self._kw()))


def _body(resp: Any) -> bytes:
    """The raw urllib3 response's body (`_preload_content=False`: no model is built from the
    reply; reading it to the end and releasing the connection returns it to the pool)."""
    try:
        return bytes(resp.data or b"")
    finally:
        release = getattr(resp, "release_conn", None)
        if release is not None:
            release()


class DryRunSink:
    """Prints each request as one JSON line (`verb`, `resource`, `name`, `body`); sends nothing."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out if out is not None else sys.stdout
        self._lock = threading.Lock()

    def _print(self, verb: str, resource: str, name: str, body: dict[str, Any]) -> None:
        line = json.dumps({"verb": verb, "resource": resource, "name": name, "body": body}, sort_keys=True)
        with self._lock:
            print(line, file=self.out, flush=True)

    def get_node(self, name: str) -> dict[str, Any] | None:
        return None

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self._print("patch", "nodes", name, body)

    def patch_node_status(self, name: str, body: dict[str, Any]) -> None:
        self._print("patch", "nodes/status", name, body)

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self._print("create", f"namespaces/{namespace}/events", body["metadata"]["name"], body)

    def patch_event(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self._print("patch", f"namespaces/{namespace}/events", name, body)


class NullSink:
    """No API server (`--otlp-endpoint` without `--publish`)."""

    def get_node(self, name: str) -> dict[str, Any] | None:
        return None

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        pass

    def patch_node_status(self, name: str, body: dict[str, Any]) -> None:
        pass

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        pass

    def patch_event(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        pass
