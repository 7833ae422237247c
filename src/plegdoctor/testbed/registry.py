"""A local image registry for tests and the lab: Debian's `docker-registry` on 127.0.0.1, plus images built by us.

No internet here, so images are synthesized: each layer is a tar of generated files (a static
busybox from Debian `busybox-static` makes them runnable), pushed with the registry HTTP API v2
(blob upload POST + PUT, then manifest PUT) through urllib.

    with RegistryProcess.temporary() as reg:
        ref = push_image(reg.url, "pleg/busybox", "1", [busybox_layer()], entrypoint=["/bin/sleep", "3600"])
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plegdoctor.testbed import procs
from plegdoctor.testbed.containerd import TestbedError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
BUSYBOX_APPLETS = ("sh", "sleep", "dd", "sync", "cat", "true", "ls", "rm", "mkdir", "touch", "echo", "head")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_available(binary: str = "docker-registry") -> str | None:
    return shutil.which(binary)


class RegistryProcess:
    """One docker-registry bound to 127.0.0.1:<port> with its own storage dir; stopped by PID."""

    def __init__(self, storage_dir: str, port: int | None = None, binary: str = "docker-registry", base_dir: str = ""):
        self.storage_dir = storage_dir
        self.port = port or free_port()
        self.binary = binary
        self.base_dir = base_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = str(Path(storage_dir).parent / f"registry-{self.port}.yml")
        self.log_path = str(Path(storage_dir).parent / f"registry-{self.port}.log")
        self._log_fh: io.BufferedWriter | None = None

    @classmethod
    def temporary(cls, port: int | None = None, binary: str = "docker-registry") -> RegistryProcess:
        base = tempfile.mkdtemp(prefix="pd-registry-")
        return cls(f"{base}/storage", port=port, binary=binary, base_dir=base)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TestbedError("registry is not started")
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> RegistryProcess:
        binary = shutil.which(self.binary)
        if not binary:
            raise TestbedError(f"{self.binary} not found (apt-get install docker-registry)")
        Path(self.storage_dir).mkdir(parents=True, exist_ok=True)
        Path(self.config_path).write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {json.dumps(self.storage_dir)}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        atexit.register(self.stop)
        self.proc = subprocess.Popen(
            [binary, "serve", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise TestbedError(f"docker-registry exited with {self.proc.returncode}: {self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TestbedError(f"docker-registry did not answer on {self.url} within {timeout:g}s")
            time.sleep(0.1)

    def _tail(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            procs.terminate(self.proc.pid, grace=5)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=1)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self.base_dir and os.path.isdir(self.base_dir):
            shutil.rmtree(self.base_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> RegistryProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- image building -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Layer:
    """One image layer: the uncompressed tar (diff_id) and its gzip blob (digest)."""

    tar: bytes
    blob: bytes

    @property
    def diff_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.tar).hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()


def make_layer(tar_bytes: bytes) -> Layer:
    return Layer(tar=tar_bytes, blob=gzip.compress(tar_bytes, compresslevel=6, mtime=0))


def build_tar(files: Mapping[str, bytes | str], mode: int = 0o755, symlinks: Mapping[str, str] | None = None) -> bytes:
    """A tar with `files` (path -> content; parent dirs added), and `symlinks` (path -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        all_paths = list(files) + list(symlinks or {})
        for path in all_paths:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(path.strip("/"))
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
        for path, target in (symlinks or {}).items():
            info = tarfile.TarInfo(path.strip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def find_busybox() -> str | None:
    """A statically linked busybox (Debian `busybox-static`), or None."""
    for path in BUSYBOX_CANDIDATES:
        try:
            with open(path, "rb") as fh:
                head = fh.read(4)
        except OSError:
            continue
        if head == b"\x7fELF" and b"ld-linux" not in Path(path).read_bytes()[:65536]:
            return path
    return None


def busybox_layer(applets: Sequence[str] = BUSYBOX_APPLETS) -> Layer:
    """A layer with /bin/busybox and symlinks for `applets`, plus /tmp and /etc/passwd."""
    path = find_busybox()
    if path is None:
        raise TestbedError("no static busybox found (apt-get install busybox-static)")
    files: dict[str, bytes | str] = {
        "bin/busybox": Path(path).read_bytes(),
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "tmp/.keep": "",
    }
    return make_layer(build_tar(files, symlinks={f"bin/{a}": "busybox" for a in applets}))


def files_layer(files: Mapping[str, bytes | str]) -> Layer:
    return make_layer(build_tar(files, mode=0o644))


def _request(
    method: str, url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def push_blob(registry_url: str, name: str, blob: bytes, digest: str | None = None) -> str:
    digest = digest or "sha256:" + hashlib.sha256(blob).hexdigest()
    status, _, _ = _request("HEAD", f"{registry_url}/v2/{name}/blobs/{digest}")
    if status == 200:
        return digest
    status, headers, body = _request("POST", f"{registry_url}/v2/{name}/blobs/uploads/", data=b"")
    if status != 202:
        raise TestbedError(f"blob upload start for {name} failed: HTTP {status} {body[:200]!r}")
    location = headers.get("Location") or headers.get("location") or ""
    location = urllib.parse.urljoin(registry_url + "/", location)
    sep = "&" if "?" in location else "?"
    status, _, body = _request(
        "PUT",
        f"{location}{sep}digest={urllib.parse.quote(digest)}",
        data=blob,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))},
    )
    if status != 201:
        raise TestbedError(f"blob upload of {digest} to {name} failed: HTTP {status} {body[:200]!r}")
    return digest


def push_image(
    registry_url: str,
    name: str,
    tag: str,
    layers: Sequence[Layer | bytes],
    entrypoint: Sequence[str] = ("/bin/sleep", "3600"),
    cmd: Sequence[str] = (),
    env: Sequence[str] = ("PATH=/bin:/usr/bin:/sbin:/usr/sbin",),
    oci: bool = False,
) -> str:
    """Push an image made of `layers` (Layer or uncompressed tar bytes); return `host:port/name:tag`."""
    built = [lay if isinstance(lay, Layer) else make_layer(lay) for lay in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "Cmd": list(cmd) or None, "Env": list(env), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in built]},
        "history": [{"created_by": "pleg-doctor testbed"} for _ in built],
    }
    config_blob = json.dumps(config, sort_keys=True).encode()
    for lay in built:
        push_blob(registry_url, name, lay.blob, lay.digest)
    config_digest = push_blob(registry_url, name, config_blob)
    manifest_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    layer_type = OCI_LAYER if oci else DOCKER_LAYER
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config_blob),
            "digest": config_digest,
        },
        "layers": [{"mediaType": layer_type, "size": len(lay.blob), "digest": lay.digest} for lay in built],
    }
    body = json.dumps(manifest).encode()
    status, _, resp = _request(
        "PUT",
        f"{registry_url}/v2/{name}/manifests/{tag}",
        data=body,
        headers={"Content-Type": manifest_type},
    )
    if status != 201:
        raise TestbedError(f"manifest PUT {name}:{tag} failed: HTTP {status} {resp[:300]!r}")
    host = urllib.parse.urlparse(registry_url).netloc
    return f"{host}/{name}:{tag}"


def push_busybox(registry_url: str, name: str = "pleg-doctor/busybox", tag: str = "1", **kwargs: object) -> str:
    """The standard runnable test image: static busybox, entrypoint `sleep 3600` unless overridden."""
    return push_image(registry_url, name, tag, [busybox_layer()], **kwargs)  # type: ignore[arg-type]


def push_pause(registry_url: str, name: str = "pleg-doctor/pause", tag: str = "1") -> str:
    """A pause-like sandbox image: busybox `sleep` for ~68 years (the CRI kills sandboxes with SIGKILL)."""
    return push_image(registry_url, name, tag, [busybox_layer(("sleep",))], entrypoint=["/bin/sleep", "2147483647"])
