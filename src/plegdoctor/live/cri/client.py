"""CRI runtime.v1 client on grpcio: one deadline per call, one exception type with a one-line message.

Every method takes `timeout` (seconds) and raises `CRIError` whose `kind` is one of
`no-socket`, `permission-denied`, `not-a-socket`, `unavailable`, `deadline-exceeded`,
`unimplemented`, `error`. The client never retries: a caller that probes a hung runtime must
see the hang, not hide it.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from plegdoctor.errors import UserError
from plegdoctor.live.cri import api

DEFAULT_ENDPOINT = "unix:///run/containerd/containerd.sock"
DEFAULT_TIMEOUT = 10.0
# kubelet allows CRI messages up to 16 MiB (maxMsgSize in cri-client); so do we.
MAX_MESSAGE = 16 * 1024 * 1024


class CRIError(UserError):
    """A CRI call failed; `str(err)` is one line naming the endpoint, the method and the reason."""

    def __init__(self, kind: str, message: str, *, method: str = "", code: str = "", elapsed: float = 0.0):
        super().__init__(message)
        self.kind = kind
        self.method = method
        self.code = code
        self.elapsed = elapsed


def socket_path(endpoint: str) -> str | None:
    """The filesystem path of a `unix://` endpoint (or a bare path); None for tcp endpoints."""
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://") :]
    if endpoint.startswith("/"):
        return endpoint
    return None


def check_endpoint(endpoint: str) -> None:
    """Raise CRIError early for a socket that is missing, not a socket, or not accessible."""
    path = socket_path(endpoint)
    if path is None:
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CRIError("no-socket", f"runtime socket {path} does not exist (is containerd running?)") from None
    except PermissionError:
        raise CRIError("permission-denied", f"permission denied on runtime socket {path} (run as root?)") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise CRIError("not-a-socket", f"{path} is not a unix socket")
    if not os.access(path, os.R_OK | os.W_OK):
        raise CRIError("permission-denied", f"permission denied on runtime socket {path} (run as root?)")


def _target(endpoint: str) -> str:
    path = socket_path(endpoint)
    if path is not None:
        return f"unix://{os.path.abspath(path)}"
    return endpoint.removeprefix("tcp://")


class CRIClient:
    """A CRI client for one endpoint. Thread-safe (one grpc channel); close() or use as a context manager."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT):
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._calls: dict[str, Any] = {}

    # -- plumbing -------------------------------------------------------------------------
    def _callable(self, method: str) -> Any:
        call = self._calls.get(method)
        if call is None:
            if self._channel is None:
                self._channel = grpc.insecure_channel(
                    _target(self.endpoint),
                    options=[
                        ("grpc.max_receive_message_length", MAX_MESSAGE),
                        ("grpc.max_send_message_length", MAX_MESSAGE),
                        # no automatic retries: a probe must see each failure
                        ("grpc.enable_retries", 0),
                    ],
                )
            m = api.methods()[method]
            call = self._channel.unary_unary(
                m.path,
                request_serializer=m.request.SerializeToString,
                response_deserializer=m.response.FromString,
            )
            self._calls[method] = call
        return call

    def call(self, method: str, request: Any = None, timeout: float | None = None) -> Any:
        """Send one unary call with a deadline; return the response message or raise CRIError."""
        check_endpoint(self.endpoint)
        if request is None:
            request = api.methods()[method].request()
        deadline = self.timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            return self._callable(method)(request, timeout=deadline)
        except grpc.RpcError as exc:
            raise self._translate(method, exc, deadline, time.monotonic() - start) from None

    def _translate(self, method: str, exc: grpc.RpcError, deadline: float, elapsed: float) -> CRIError:
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else "") or ""
        details = " ".join(details.split())  # one line
        where = f"{method} on {self.endpoint}"
        name = code.name if code is not None else "UNKNOWN"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CRIError(
                "deadline-exceeded",
                f"{where}: no answer within {deadline:g}s (deadline exceeded; the runtime may be stalled)",
                method=method,
                code=name,
                elapsed=elapsed,
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return CRIError(
                "unimplemented",
                f"{where}: unimplemented (not a CRI runtime.v1 server, or the CRI plugin is disabled)"
                + (f": {details}" if details else ""),
                method=method,
                code=name,
                elapsed=elapsed,
            )
        lowered = details.lower()
        if code == grpc.StatusCode.UNAVAILABLE and "permission denied" in lowered:
            return CRIError(
                "permission-denied", f"{where}: permission denied", method=method, code=name, elapsed=elapsed
            )
        if code == grpc.StatusCode.UNAVAILABLE and ("no such file" in lowered or "connection refused" in lowered):
            return CRIError(
                "no-socket",
                f"{where}: nothing listens on the socket ({details})",
                method=method,
                code=name,
                elapsed=elapsed,
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return CRIError(
                "unavailable",
                f"{where}: unavailable: {details or 'no details'}",
                method=method,
                code=name,
                elapsed=elapsed,
            )
        return CRIError(
            "error", f"{where}: {name}: {details or 'no details'}", method=method, code=name, elapsed=elapsed
        )

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._calls.clear()

    def __enter__(self) -> CRIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- RuntimeService ---------------------------------------------------------------------
    def version(self, timeout: float | None = None) -> Any:
        return self.call("Version", api.VersionRequest(version="v1"), timeout)

    def status(self, verbose: bool = False, timeout: float | None = None) -> Any:
        return self.call("Status", api.StatusRequest(verbose=verbose), timeout)

    def list_pod_sandbox(self, timeout: float | None = None, **filter_: Any) -> list[Any]:
        req = api.ListPodSandboxRequest()
        if filter_:
            req.filter.CopyFrom(api.PodSandboxFilter(**filter_))
        return list(self.call("ListPodSandbox", req, timeout).items)

    def list_containers(self, timeout: float | None = None, **filter_: Any) -> list[Any]:
        req = api.ListContainersRequest()
        if filter_:
            req.filter.CopyFrom(api.ContainerFilter(**filter_))
        return list(self.call("ListContainers", req, timeout).containers)

    def container_status(self, container_id: str, verbose: bool = False, timeout: float | None = None) -> Any:
        return self.call(
            "ContainerStatus", api.ContainerStatusRequest(container_id=container_id, verbose=verbose), timeout
        )

    def pod_sandbox_status(self, pod_sandbox_id: str, verbose: bool = False, timeout: float | None = None) -> Any:
        req = api.PodSandboxStatusRequest(pod_sandbox_id=pod_sandbox_id, verbose=verbose)
        return self.call("PodSandboxStatus", req, timeout)

    def run_pod_sandbox(self, config: Any, runtime_handler: str = "", timeout: float | None = None) -> str:
        req = api.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        return str(self.call("RunPodSandbox", req, timeout).pod_sandbox_id)

    def create_container(
        self, pod_sandbox_id: str, config: Any, sandbox_config: Any, timeout: float | None = None
    ) -> str:
        req = api.CreateContainerRequest(pod_sandbox_id=pod_sandbox_id, config=config, sandbox_config=sandbox_config)
        return str(self.call("CreateContainer", req, timeout).container_id)

    def start_container(self, container_id: str, timeout: float | None = None) -> None:
        self.call("StartContainer", api.StartContainerRequest(container_id=container_id), timeout)

    def stop_container(self, container_id: str, grace_seconds: int = 0, timeout: float | None = None) -> None:
        req = api.StopContainerRequest(container_id=container_id, timeout=grace_seconds)
        self.call("StopContainer", req, timeout)

    def remove_container(self, container_id: str, timeout: float | None = None) -> None:
        self.call("RemoveContainer", api.RemoveContainerRequest(container_id=container_id), timeout)

    def stop_pod_sandbox(self, pod_sandbox_id: str, timeout: float | None = None) -> None:
        self.call("StopPodSandbox", api.StopPodSandboxRequest(pod_sandbox_id=pod_sandbox_id), timeout)

    def remove_pod_sandbox(self, pod_sandbox_id: str, timeout: float | None = None) -> None:
        self.call("RemovePodSandbox", api.RemovePodSandboxRequest(pod_sandbox_id=pod_sandbox_id), timeout)

    def update_container_resources(
        self,
        container_id: str,
        linux: Any = None,
        annotations: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **linux_fields: Any,
    ) -> None:
        """UpdateContainerResources; pass a LinuxContainerResources or its fields (cpu_shares=..., ...)."""
        if linux is None:
            linux = api.LinuxContainerResources(**linux_fields)
        req = api.UpdateContainerResourcesRequest(container_id=container_id, linux=linux, annotations=annotations or {})
        self.call("UpdateContainerResources", req, timeout)

    # -- ImageService ------------------------------------------------------------------------
    def pull_image(self, image: str, sandbox_config: Any = None, timeout: float | None = None) -> str:
        req = api.PullImageRequest(image=api.ImageSpec(image=image))
        if sandbox_config is not None:
            req.sandbox_config.CopyFrom(sandbox_config)
        return str(self.call("PullImage", req, timeout).image_ref)

    def image_status(self, image: str, timeout: float | None = None) -> Any:
        return self.call("ImageStatus", api.ImageStatusRequest(image=api.ImageSpec(image=image)), timeout)

    def list_images(self, timeout: float | None = None) -> list[Any]:
        return list(self.call("ListImages", api.ListImagesRequest(), timeout).images)

    def remove_image(self, image: str, timeout: float | None = None) -> None:
        self.call("RemoveImage", api.RemoveImageRequest(image=api.ImageSpec(image=image)), timeout)


# -- small builders the lab and tests share ----------------------------------------------------
def host_network_sandbox_config(
    name: str,
    namespace: str = "pleg-doctor",
    uid: str | None = None,
    log_directory: str = "",
    labels: Mapping[str, str] | None = None,
    cgroup_parent: str = "",
) -> Any:
    """A PodSandboxConfig for a hostNetwork pod (no CNI needed). Hostname must be "" for hostNetwork."""
    ns_node = api.NamespaceOption(network=api.enum_value("NamespaceMode", "NODE"))
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, uid=uid or f"uid-{name}", namespace=namespace, attempt=0),
        hostname="",
        log_directory=log_directory,
        labels=dict(labels or {}),
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=api.LinuxSandboxSecurityContext(namespace_options=ns_node),
        ),
    )


def container_config(
    name: str,
    image: str,
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    envs: Mapping[str, str] | None = None,
    log_path: str = "",
    labels: Mapping[str, str] | None = None,
    mounts: Sequence[tuple[str, str]] = (),
    linux_resources: Any = None,
) -> Any:
    """A ContainerConfig for a container in a hostNetwork pod; mounts are (host_path, container_path)."""
    ns_node = api.NamespaceOption(network=api.enum_value("NamespaceMode", "NODE"))
    linux = api.LinuxContainerConfig(security_context=api.LinuxContainerSecurityContext(namespace_options=ns_node))
    if linux_resources is not None:
        linux.resources.CopyFrom(linux_resources)
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=0),
        image=api.ImageSpec(image=image),
        command=list(command),
        args=list(args),
        envs=[api.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
        log_path=log_path,
        labels=dict(labels or {}),
        mounts=[api.Mount(host_path=h, container_path=c) for h, c in mounts],
        linux=linux,
    )
