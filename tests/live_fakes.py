"""A fake CRI server on a unix socket for unit tests of the live code (not a test module itself)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from plegdoctor.live.cri import api
from plegdoctor.live.watch import WatchConfig


class FakeCRI:
    """Serves the runtime.v1 methods given in `handlers` (name -> fn(request) -> response).

    `delay[name] = seconds` makes a method sleep first; `hang.set()`-style control comes from
    `block[name]`, an Event the handler waits on (a hung runtime).
    """

    def __init__(self, socket_path: str, handlers: dict[str, Callable[[Any], Any]]):
        self.socket_path = socket_path
        self.handlers = handlers
        self.delay: dict[str, float] = {}
        self.block: dict[str, threading.Event] = {}
        self.calls: list[tuple[str, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        method_handlers = {}
        for name in handlers:
            m = api.methods()[name]
            method_handlers[name] = grpc.unary_unary_rpc_method_handler(
                self._wrap(name),
                request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString,
            )
        by_service: dict[str, dict[str, Any]] = {}
        for name, h in method_handlers.items():
            by_service.setdefault(api.methods()[name].service, {})[name] = h
        for service, hs in by_service.items():
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(f"runtime.v1.{service}", hs),))
        self.server.add_insecure_port(f"unix://{socket_path}")

    def _wrap(self, name: str) -> Callable[[Any, Any], Any]:
        def handle(request: Any, context: Any) -> Any:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                self.calls.append((name, time.monotonic()))
            try:
                if name in self.delay:
                    time.sleep(self.delay[name])
                ev = self.block.get(name)
                if ev is not None:
                    ev.wait(60)
                return self.handlers[name](request)
            finally:
                with self._lock:
                    self.in_flight -= 1

        return handle

    def __enter__(self) -> FakeCRI:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for ev in self.block.values():
            ev.set()
        self.server.stop(grace=0)


def standard_handlers(n_containers: int = 3) -> dict[str, Callable[[Any], Any]]:
    running = api.enum_value("ContainerState", "CONTAINER_RUNNING")

    def version(req: Any) -> Any:
        return api.VersionResponse(
            version="0.1.0", runtime_name="containerd", runtime_version="1.6.20~fake", runtime_api_version="v1"
        )

    def list_sandboxes(req: Any) -> Any:
        return api.ListPodSandboxResponse(
            items=[api.PodSandbox(id="sb1", metadata=api.PodSandboxMetadata(name="pod1", namespace="default"))]
        )

    def list_containers(req: Any) -> Any:
        return api.ListContainersResponse(
            containers=[
                api.Container(
                    id=f"c{i}", pod_sandbox_id="sb1", state=running, metadata=api.ContainerMetadata(name=f"ctr{i}")
                )
                for i in range(n_containers)
            ]
        )

    return {"Version": version, "ListPodSandbox": list_sandboxes, "ListContainers": list_containers}


def watch_config(sock: str, captures: Path, **kw: object) -> WatchConfig:
    """A WatchConfig of a watch on the fake at `sock` for unit tests: fast probe, no dump,
    no analysis; `kw` overrides any field."""
    base: dict[str, object] = dict(
        listen="127.0.0.1:0",
        runtime_endpoint=f"unix://{sock}",
        period=0.1,
        stall_threshold=0.5,
        call_timeout=30,
        capture_dir=str(captures),
        cooldown=3600,
        min_free=0,
        dump=False,
        analyze=False,
        log_window="1m",
    )
    base.update(kw)
    return WatchConfig(**base)  # type: ignore[arg-type]
