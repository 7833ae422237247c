"""Go import paths: one canonical spelling per function, and which process a stack is from.

Two things every consumer of a goroutine dump needs and that must not be re-invented per
module:

- `canonical_func(name)`: the same function under every build and version of its module,
  so one set of knowledge (waits.py) matches them all. It strips `vendor/` prefixes
  (`github.com/docker/docker/vendor/github.com/containerd/containerd/...`,
  `k8s.io/kubernetes/vendor/google.golang.org/grpc...`, the standard library's
  `vendor/golang.org/x/...`), a major-version element right after the module root
  (`github.com/containerd/containerd/v2/...`, `k8s.io/klog/v2`; real packages named
  `v2` deeper in the path such as `runtime/v2/shim` are kept), `@version` of module-cache
  paths (`github.com/google/cadvisor@v0.49.0/`), and renames `github.com/stevvooe/ttrpc`
  to `github.com/containerd/ttrpc`. Anything else is returned unchanged (the same object).
  `canonical_file(path)` does the same to a file path after dropping the build location
  (`/go/src/`, `/tmp/containerd-build/src/`, `/tmp/cri-containerd-install-deps.*/src/`,
  `/workspace/<release>/src/...`, `$GOPATH/pkg/mod/`). Both are cached.
- `infer_process(funcs, files)`: the one registry (`PROCESS_MARKERS`) of import-path markers
  that name the daemon a stack belongs to, applied to canonical names; and
  `process_of_ident(ident)` for journald/syslog identifiers (`IDENT_PROCESS`).

Displayed frames keep the original text; only matching uses the canonical forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from plegdoctor.goroutines.model import (
    CONTAINERD,
    CRI_DOCKERD,
    CRIO,
    DOCKERD,
    KUBELET,
    RUNC,
    SHIM,
    SHIM_V1,
    UNKNOWN_PROCESS,
)

__all__ = [
    "IDENT_PROCESS",
    "PROCESS_MARKERS",
    "ProcessMarker",
    "canonical_file",
    "canonical_func",
    "infer_process",
    "process_of_ident",
]

# Hosts whose module roots have three elements (host/owner/repo); others have two.
_THREE_ELEMENT_HOSTS = ("github.com/", "gitlab.com/", "bitbucket.org/")
_RENAMES = (("github.com/stevvooe/ttrpc", "github.com/containerd/ttrpc"),)
_MAJOR = re.compile(r"v[2-9][0-9]?")
_AT_VERSION = re.compile(r"@v[^/]*")


def _package_end(name: str) -> int:
    """Index just past the import path of `name` (`pkg.(*T).M` -> len(pkg)). Generic type
    arguments (`F[go.shape.*github.com/x.T]`) may hold slashes, so only the text before
    the first `[` is searched."""
    br = name.find("[")
    head = name if br < 0 else name[:br]
    slash = head.rfind("/")
    dot = head.find(".", slash + 1)
    return len(head) if dot < 0 else dot


def _strip_major(pkg: str) -> str:
    """`github.com/containerd/containerd/v2/core/x` -> `github.com/containerd/containerd/core/x`."""
    parts = pkg.split("/")
    root = 3 if pkg.startswith(_THREE_ELEMENT_HOSTS) else 2
    if len(parts) > root and "." in parts[0] and _MAJOR.fullmatch(parts[root]):
        del parts[root]
        return "/".join(parts)
    return pkg


def _canonical_path(pkg: str) -> str:
    """The shared rewrites of an import path (or of a file path already cut to one)."""
    if "@" in pkg:
        pkg = _AT_VERSION.sub("", pkg)
    v = pkg.rfind("/vendor/")
    if v >= 0:
        pkg = pkg[v + 8 :]
    elif pkg.startswith("vendor/"):
        pkg = pkg[7:]
    for old, new in _RENAMES:
        if pkg.startswith(old):
            pkg = new + pkg[len(old) :]
    if "/v" in pkg:
        pkg = _strip_major(pkg)
    return pkg


@lru_cache(maxsize=1 << 16)
def canonical_func(name: str) -> str:
    """The canonical spelling of a Go function name (see the module docstring).

    >>> canonical_func("github.com/containerd/containerd/v2/core/metadata.(*DB).Update")
    'github.com/containerd/containerd/core/metadata.(*DB).Update'
    >>> canonical_func("github.com/containerd/containerd/vendor/github.com/stevvooe/ttrpc.(*Client).Call")
    'github.com/containerd/ttrpc.(*Client).Call'
    """
    if "/" not in name and not name.startswith("vendor"):
        return name  # the standard library and main packages: nothing to do
    end = _package_end(name)
    pkg = name[:end]
    if "vendor/" not in pkg and "/v" not in pkg and "stevvooe" not in pkg and "@" not in pkg:
        return name
    new = _canonical_path(pkg)
    return name if new == pkg else new + name[end:]


# Where a build put its sources: everything up to the import path is dropped.
_BUILD_ROOTS = ("/pkg/mod/", "/src/")


@lru_cache(maxsize=1 << 16)
def canonical_file(path: str) -> str:
    """A file path as `import/path/file.go`: build locations dropped, then the rewrites of
    `canonical_func`. Paths that hold no import path are returned unchanged.

    >>> canonical_file("/tmp/cri-containerd-install-deps.wWAG/src/github.com/containerd/containerd/linux/task.go")
    'github.com/containerd/containerd/linux/task.go'
    >>> canonical_file("/root/go/pkg/mod/github.com/google/cadvisor@v0.49.0/fs/fs.go")
    'github.com/google/cadvisor/fs/fs.go'
    """
    out = path
    v = out.rfind("/vendor/")
    if v >= 0:
        out = out[v + 8 :]
    else:
        best = -1
        for root in _BUILD_ROOTS:
            i = out.rfind(root)
            if i >= 0:
                best = max(best, i + len(root))
        if best >= 0:
            out = out[best:]
        else:
            # module builds outside GOPATH: the first element that looks like a host
            m = _HOST_ELEMENT.search(out)
            if m is not None:
                out = out[m.start(1) :]
    if out is path and "@" not in out and "stevvooe" not in out and "/v" not in out:
        return path
    return _canonical_path(out)


_HOST_ELEMENT = re.compile(r"(?:^|/)((?:github\.com|gitlab\.com|k8s\.io|sigs\.k8s\.io|go\.etcd\.io|golang\.org)/)")


# ---------------------------------------------------------------------------------------
# Which process a stack is from


class ProcessMarker(NamedTuple):
    """`marker` found in a canonical function name (`on="func"`), in the canonical
    outermost file of a stack (`on="file"`: main packages name the binary), in the raw
    function name before canonicalisation (`on="raw"`: a vendor directory names the module
    that was built) or in any raw file path (`on="path"`: the build directory or the
    vendor directory of the module that was built). Each marker counts once per dump,
    `weight` for `process`; the heaviest process wins. A name matching one of `unless`
    does not count."""

    marker: str
    process: str
    weight: int
    on: str = "func"
    unless: tuple[str, ...] = ()


_CD = "github.com/containerd/containerd/"
# Shim-side code of the containerd repository (v2 runc shim, v1 shim, their libraries).
_SHIM_PATHS = (
    "runtime/v2/shim",
    "runtime/v2/runc",
    "containerd/pkg/shim",
    "containerd/pkg/process",
    "containerd-shim",
    "linux/shim",
    "runtime/v1/shim",
    "cmd/containerd-shim",
    "sys/reaper",
)

# Markers are specific to the main packages or the server-side libraries of each daemon;
# client libraries shared by several daemons (the containerd client inside dockerd and
# the kubelet, runc's libcontainer/cgroups inside the kubelet) weigh little or nothing.
PROCESS_MARKERS: tuple[ProcessMarker, ...] = (
    # containerd-shim-runc-v2 (and v2 shims built from the containerd repository)
    ProcessMarker(_CD + "runtime/v2/shim.", SHIM, 5),
    ProcessMarker(_CD + "pkg/shim.", SHIM, 5),
    ProcessMarker(_CD + "runtime/v2/runc/task.(*service)", SHIM, 5),
    ProcessMarker(_CD + "cmd/containerd-shim-runc-v2/task.(*service)", SHIM, 5),
    ProcessMarker("containerd-shim-runc-v2/task.(*service)", SHIM, 5),
    ProcessMarker(_CD + "runtime/v2/runc.(*Container)", SHIM, 3),
    ProcessMarker(_CD + "pkg/process.(*Init)", SHIM, 3),
    ProcessMarker("containerd-shim-runc-v2/process.(*Init)", SHIM, 3),
    ProcessMarker("cmd/containerd-shim-runc-v2/", SHIM, 20, "file"),
    # containerd-shim (v1: containerd 1.0 `linux/shim`, 1.1+ `runtime/v1/shim`). The
    # generated `(*shimClient)` of `linux/shim/v1` is containerd's side of the ttrpc call.
    ProcessMarker(_CD + "linux/shim.(*Service)", SHIM_V1, 5),
    ProcessMarker(_CD + "runtime/v1/shim.(*Service)", SHIM_V1, 5),
    ProcessMarker(_CD + "linux/shim/v1.RegisterShimService", SHIM_V1, 5),
    ProcessMarker(_CD + "runtime/v1/shim/v1.RegisterShimService", SHIM_V1, 5),
    ProcessMarker(_CD + "cmd/containerd-shim.", SHIM_V1, 10),
    ProcessMarker("cmd/containerd-shim/", SHIM_V1, 20, "file"),
    # containerd
    ProcessMarker(_CD + "cmd/containerd/command.", CONTAINERD, 10),
    ProcessMarker(_CD + "cmd/containerd/server.", CONTAINERD, 5),
    ProcessMarker(_CD + "services/server.", CONTAINERD, 5),
    ProcessMarker(_CD + "pkg/cri/", CONTAINERD, 3),
    ProcessMarker(_CD + "internal/cri/", CONTAINERD, 3),
    ProcessMarker("github.com/containerd/cri/pkg/server.", CONTAINERD, 3),  # the 1.1-1.4 CRI plugin
    ProcessMarker("cri/server.", CONTAINERD, 2),
    ProcessMarker("github.com/kubernetes-incubator/cri-containerd/", CONTAINERD, 3),  # 1.0-era CRI daemon
    ProcessMarker(_CD + "services/", CONTAINERD, 2),
    ProcessMarker(_CD + "plugins/services/", CONTAINERD, 2),
    ProcessMarker(_CD + "runtime/v2.(*", CONTAINERD, 2),
    ProcessMarker(_CD + "core/runtime/v2.(*", CONTAINERD, 2),
    ProcessMarker(_CD + "linux.(*Task)", CONTAINERD, 2),
    ProcessMarker(_CD + "linux/shim/v1.(*shimClient)", CONTAINERD, 2),
    ProcessMarker(_CD + "runtime/v1/shim/v1.(*shimClient)", CONTAINERD, 2),
    ProcessMarker(_CD + "metadata.", CONTAINERD, 2),
    ProcessMarker(_CD + "core/metadata.", CONTAINERD, 2),
    ProcessMarker(_CD + "gc/scheduler.", CONTAINERD, 2),
    ProcessMarker(_CD + "content/local.", CONTAINERD, 1),
    ProcessMarker(_CD + "plugins/content/local.", CONTAINERD, 1),
    ProcessMarker(_CD, CONTAINERD, 1, unless=_SHIM_PATHS),
    ProcessMarker("cmd/containerd/", CONTAINERD, 20, "file"),
    ProcessMarker("github.com/containerd/containerd/vendor/", CONTAINERD, 1, "raw", _SHIM_PATHS),
    ProcessMarker("github.com/containerd/containerd/vendor/", CONTAINERD, 1, "path", _SHIM_PATHS),
    ProcessMarker("/containerd-build/", CONTAINERD, 1, "path", _SHIM_PATHS),
    ProcessMarker("/cri-containerd-install-deps.", CONTAINERD, 1, "path", _SHIM_PATHS),
    ProcessMarker("github.com/kubernetes-incubator/cri-containerd/vendor/", CONTAINERD, 1, "raw"),
    ProcessMarker("github.com/kubernetes-incubator/cri-containerd/", CONTAINERD, 1, "path"),
    # runc
    ProcessMarker("github.com/opencontainers/runc/libcontainer.", RUNC, 5),
    ProcessMarker("github.com/opencontainers/runc/libcontainer/nsenter", RUNC, 3),
    ProcessMarker("github.com/opencontainers/runc/main.go", RUNC, 20, "file"),
    ProcessMarker("github.com/opencontainers/runc/", RUNC, 10, "file"),
    # CRI-O
    ProcessMarker("github.com/cri-o/cri-o/", CRIO, 5),
    ProcessMarker("github.com/kubernetes-sigs/cri-o/", CRIO, 5),
    ProcessMarker("github.com/kubernetes-incubator/cri-o/", CRIO, 5),
    ProcessMarker("github.com/cri-o/cri-o/cmd/crio/", CRIO, 20, "file"),
    ProcessMarker("/cri-o-", CRIO, 1, "path"),  # rpmbuild/BUILD/cri-o-1.29.13/
    ProcessMarker("github.com/containers/storage", CRIO, 1),  # shared with podman/buildah: weak
    ProcessMarker("github.com/containers/image/", CRIO, 1),
    # kubelet
    ProcessMarker("k8s.io/kubernetes/cmd/kubelet", KUBELET, 10),
    ProcessMarker("k8s.io/kubernetes/pkg/kubelet", KUBELET, 5),
    ProcessMarker("k8s.io/kubernetes/cmd/kubelet/", KUBELET, 20, "file"),
    ProcessMarker("cmd/kubelet/", KUBELET, 20, "file"),
    ProcessMarker("k8s.io/kubernetes/vendor/", KUBELET, 1, "raw"),
    ProcessMarker("k8s.io/kubernetes/vendor/", KUBELET, 1, "path"),
    # dockerd
    ProcessMarker("github.com/docker/docker/cmd/dockerd", DOCKERD, 10),
    ProcessMarker("github.com/docker/docker/daemon", DOCKERD, 5),
    ProcessMarker("github.com/docker/docker/api/server", DOCKERD, 3),
    ProcessMarker("github.com/docker/docker/container.(*", DOCKERD, 2),
    # dockerd's own volume drivers and its build tree (`/usr/src/docker/.gopath/src/...` in docker's
    # packaging): no other binary has them unvendored
    ProcessMarker("github.com/docker/docker/volume/local.(*", DOCKERD, 3),
    ProcessMarker("/docker/.gopath/src/github.com/docker/docker/", DOCKERD, 2, "path"),
    ProcessMarker("github.com/moby/moby/cmd/dockerd", DOCKERD, 10),
    ProcessMarker("github.com/moby/moby/daemon", DOCKERD, 5),
    ProcessMarker("github.com/moby/moby/api/server", DOCKERD, 3),
    ProcessMarker("cmd/dockerd/", DOCKERD, 20, "file"),
    ProcessMarker("github.com/docker/docker/vendor/", DOCKERD, 2, "raw"),
    ProcessMarker("github.com/docker/docker/vendor/", DOCKERD, 2, "path"),
    # cri-dockerd
    ProcessMarker("github.com/Mirantis/cri-dockerd", CRI_DOCKERD, 10),
    ProcessMarker("github.com/Mirantis/cri-dockerd/", CRI_DOCKERD, 20, "file"),
)

_FUNC_MARKERS = tuple(m for m in PROCESS_MARKERS if m.on == "func")
_RAW_MARKERS = tuple(m for m in PROCESS_MARKERS if m.on == "raw")
_FILE_MARKERS = tuple(m for m in PROCESS_MARKERS if m.on == "file")
_PATH_MARKERS = tuple(m for m in PROCESS_MARKERS if m.on == "path")


def infer_process(funcs: Iterable[str], files: Iterable[str] = (), paths: Iterable[str] = ()) -> tuple[str, int]:
    """The best process for a set of function names, outermost file paths and all file
    paths (raw, as printed), and its score (0 and "unknown" when no marker matched)."""
    score: dict[str, int] = {}
    seen: set[int] = set()
    for raw in funcs:
        name = canonical_func(raw)
        for i, m in enumerate(_FUNC_MARKERS):
            if i not in seen and m.marker in name and not (m.unless and any(u in name for u in m.unless)):
                seen.add(i)
                score[m.process] = score.get(m.process, 0) + m.weight
        if "vendor/" in raw:
            for i, m in enumerate(_RAW_MARKERS, 1000):
                if i not in seen and m.marker in raw and not (m.unless and any(u in raw for u in m.unless)):
                    seen.add(i)
                    score[m.process] = score.get(m.process, 0) + m.weight
    for path in files:
        canon = canonical_file(path)
        for i, m in enumerate(_FILE_MARKERS, 2000):
            if i not in seen and (m.marker in canon or m.marker in path):
                seen.add(i)
                score[m.process] = score.get(m.process, 0) + m.weight
                break
    for path in paths:
        if path[:1] != "/" and "/vendor/" not in path:
            continue  # -trimpath builds print import paths: no build directory to read
        for i, m in enumerate(_PATH_MARKERS, 3000):
            if i not in seen and m.marker in path and not (m.unless and any(u in path for u in m.unless)):
                seen.add(i)
                score[m.process] = score.get(m.process, 0) + m.weight
    if not score:
        return UNKNOWN_PROCESS, 0
    return max(score.items(), key=lambda kv: kv[1])


# journald / syslog identifiers (SYSLOG_IDENTIFIER, _COMM, the `ident[pid]:` of a prefix) that
# no log format of parsers/logs declares: the shims (a process of their own, whose lines the
# containerd format reads) and daemons pleg-doctor reads dumps of but no log of. The log formats
# declare their own identifiers (containerd, kubelet, hyperkube, dockerd, docker, kernel), so no
# identifier is in two tables. (prefix of the lower-cased identifier, exact?, process); first wins.
IDENT_PROCESS: tuple[tuple[str, bool, str], ...] = (
    ("containerd-shim", False, SHIM),
    ("cri-dockerd", True, CRI_DOCKERD),
    ("crio", True, CRIO),
    ("cri-o", True, CRIO),
    ("runc", True, RUNC),
)


def process_of_ident(ident: str) -> str | None:
    """The process a journald identifier names, or None: this module's table, then the log
    format that declares the identifier (its handler is named after its process)."""
    i = ident.lower()
    if i.endswith(".service"):
        i = i[:-8]
    for prefix, exact, proc in IDENT_PROCESS:
        if i == prefix or (not exact and i.startswith(prefix)):
            return proc
    from plegdoctor.parsers.logs.registry import process_of_ident as handler_of_ident

    return handler_of_ident(ident)
