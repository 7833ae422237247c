"""Which processes are the runtime, its shims and the kubelet: by the CRI socket and by mount
namespace, never by a process's name alone (a pod can name a process `containerd` or `kubelet`).

The runtime is the process serving the CRI socket (SO_PEERCRED of a connection to it, else the
one process holding the socket's inode); shims must share its mount namespace; the kubelet must
share PID 1's. Nothing here sends a request or runs a binary.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from plegdoctor.live.actions import Actions
from plegdoctor.live.cri.client import DEFAULT_ENDPOINT, socket_path
from plegdoctor.live.gobinary import read_build_info
from plegdoctor.live.procfs import has_socket_inode, iter_procs, mount_ns, unix_socket_inodes


def socket_peer_pid(path: str, timeout: float = 2.0) -> int | None:
    """The PID that listens on unix socket `path` (SO_PEERCRED of a connection; nothing is sent)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", creds)[0]
    return pid if pid > 0 else None


def find_runtime_pid(endpoint: str = DEFAULT_ENDPOINT, actions: Actions | None = None) -> tuple[int | None, str]:
    """(pid, how it was found) of the process serving the CRI socket `endpoint` - by the
    socket, never by a process name: SO_PEERCRED of a connection to it, else the one process
    holding the socket's inode. PID 1 (systemd socket activation) is not the runtime."""
    path = socket_path(endpoint)
    if not path:
        return None, f"{endpoint} is not a unix socket: the runtime process cannot be identified"
    t0 = time.monotonic()
    try:
        pid = socket_peer_pid(path)
        if actions is not None:
            actions.socket(path, "connect (SO_PEERCRED; no request sent)", time.monotonic() - t0, peer_pid=pid)
        if pid == os.getpid():
            return None, f"{path} is served by this process (pleg-doctor itself), not by a runtime"
        if pid is not None and pid != 1 and os.path.isdir(f"/proc/{pid}"):
            return pid, f"SO_PEERCRED of {path}"
    except OSError as exc:
        if actions is not None:
            actions.socket(path, "connect (SO_PEERCRED)", time.monotonic() - t0, error=exc.strerror or str(exc))
    inodes = unix_socket_inodes(path)
    if inodes:
        me = os.getpid()
        holders = [p.pid for p in iter_procs() if p.pid not in (1, me) and has_socket_inode(p.pid, inodes)]
        if len(holders) == 1:
            return holders[0], f"holder of the socket inode of {path}"
        if holders:
            return None, f"{len(holders)} processes hold {path} ({', '.join(map(str, holders[:5]))}): ambiguous"
    return None, f"no process found serving {path}"


def find_kubelet_pid() -> int | None:
    """A process named kubelet in the node's mount namespace (PID 1's, or ours when PID 1's
    cannot be read): a pod naming a process kubelet is not it. Only its files are read."""
    host = mount_ns(1) or mount_ns("self")
    for p in iter_procs():
        if p.comm == "kubelet" and host is not None and mount_ns(p.pid) == host:
            return p.pid
    return None


def runtime_program(pid: int) -> str:
    """The main package of the runtime's binary, read from its Go build info ('' if none)."""
    info = read_build_info(f"/proc/{pid}/exe")
    return info.path if info else ""


def shim_pids_of(ctd_address: str | None, ctd_pid: int | None = None) -> list[int]:
    """containerd-shim processes of the containerd at `ctd_address`; with `ctd_pid`, only those
    in its mount namespace (a pod's process named containerd-shim is not signalled)."""
    ns = mount_ns(ctd_pid) if ctd_pid is not None else None
    out = []
    for p in iter_procs():
        if not p.comm.startswith("containerd-shim"):
            continue
        if ctd_address and not any(ctd_address == a or a.endswith(ctd_address) for a in p.cmdline):
            continue
        if ctd_pid is not None and (ns is None or mount_ns(p.pid) != ns):
            continue
        out.append(p.pid)
    return out
