"""Versions (`versions.txt`, read by plegdoctor.parsers.versions): the kernel (uname, /proc/version),
the OS, and containerd, runc, the kubelet and a shim read from their binaries' Go build info
and ELF symbols (plegdoctor.live.gobinary), never by running them; containerd's own version is
the CRI Version answer when there is one."""

from __future__ import annotations

import contextlib
import os

from plegdoctor.live.gobinary import binary_version
from plegdoctor.live.procfs import in_root, read_text
from plegdoctor.live.sources.base import CollectRun, NodeSource
from plegdoctor.live.sources.runtime import kubelet_pid_of, runtime_of, shims_of

RUNC_PATHS = (
    "/usr/local/sbin/runc",
    "/usr/local/bin/runc",
    "/usr/sbin/runc",
    "/usr/bin/runc",
    "/sbin/runc",
    "/bin/runc",
)


def _binary_lines(name: str, path: str, shown: str, cri: tuple[str, str] | None = None) -> list[str]:
    """`name: ...` lines (plegdoctor.parsers.versions) for the binary at `path` (read, never run);
    `cri` is (version, endpoint) from the CRI Version answer, which wins for the runtime."""
    bv = binary_version(name, path)
    lines: list[str] = []
    version = cri[0] if cri else (bv.version.value if bv.version else "")
    revision = bv.revision.value if bv.revision and bv.revision.value != version else ""
    if not version:
        why = bv.error or "no version in its Go build info or symbols"
        lines.append(f"{name}: unknown ({why}; {shown} read, not executed)\n")
    elif name == "containerd":
        lines.append(f"{name}: containerd github.com/containerd/containerd {version} {revision}".rstrip() + "\n")
    elif name == "runc":
        lines.append(f"runc: runc version {version}\n")
    elif name == "kubelet":
        lines.append(f"kubelet: Kubernetes {version}\n")
    else:
        lines.append(f"{name}: {version}\n")
    if cri:
        lines.append(f"{name}_source: CRI Version on {cri[1]}\n")
        if bv.version:
            lines.append(f"{name}_binary: {bv.version.value} ({bv.version.source} of {shown})\n")
    elif bv.version:
        lines.append(f"{name}_source: {bv.version.source} of {shown}\n")
    if bv.module:
        lines.append(f"{name}_program: {bv.module}\n")
    if bv.go:
        lines.append(f"{name}_go: {bv.go}\n")
    return lines


def versions_text(
    ctd_pid: int | None,
    kubelet_pid: int | None = None,
    shim_pid: int | None = None,
    cri: tuple[str, str] | None = None,
) -> list[str]:
    """Versions as `name: value` lines (read by plegdoctor.parsers.versions). Nothing is run:
    the containerd version is the CRI Version answer (`cri`: version, endpoint) or read from
    /proc/<pid>/exe; runc, kubelet and shim versions are read from their files."""
    uname = os.uname()
    lines = [f"kernel: {uname.release}\n", f"kernel_version: {uname.version}\n", f"machine: {uname.machine}\n"]
    with contextlib.suppress(OSError):
        lines.append("proc_version: " + read_text("/proc/version").strip() + "\n")
    with contextlib.suppress(OSError):
        for line in read_text(in_root(ctd_pid, "/etc/os-release")).splitlines():
            if line.startswith("PRETTY_NAME="):
                lines.append("os: " + line.split("=", 1)[1].strip('"') + "\n")
    if ctd_pid is not None:
        lines += _binary_lines("containerd", f"/proc/{ctd_pid}/exe", f"/proc/{ctd_pid}/exe", cri)
    elif cri:
        lines.append(f"containerd: containerd github.com/containerd/containerd {cri[0]}\n")
        lines.append(f"containerd_source: CRI Version on {cri[1]}\n")
    else:
        lines.append("containerd: not found\n")
    runc = next((p for p in RUNC_PATHS if os.path.isfile(in_root(ctd_pid, p))), None)
    if runc:
        lines += _binary_lines("runc", in_root(ctd_pid, runc), runc)
    else:
        lines.append("runc: not found\n")
    if kubelet_pid is not None:
        lines += _binary_lines("kubelet", f"/proc/{kubelet_pid}/exe", f"/proc/{kubelet_pid}/exe")
    else:
        lines.append("kubelet: not found\n")
    if shim_pid is not None:
        shim = binary_version("containerd", f"/proc/{shim_pid}/exe")
        if shim.version:
            lines.append(f"shim: {shim.version.value} ({shim.version.source} of /proc/{shim_pid}/exe)\n")
        if shim.go:
            lines.append(f"shim_go: {shim.go}\n")
    return lines


def collect(run: CollectRun, src: NodeSource) -> None:
    rt = runtime_of(run)
    kubelet_pid = kubelet_pid_of(run)
    shims = shims_of(run)
    record = rt.record
    cri = (str(record["version"]), run.opts.runtime_endpoint) if record.get("name") == "containerd" else None
    run.step(
        src.member,
        src.kind,
        lambda: versions_text(rt.pid, kubelet_pid, shims[0] if shims else None, cri),
        source=src.reads,
    )
