"""Process, mount and cgroup helpers for the testbed: find by /proc, stop by PID, unmount by path.

Nothing here kills by name: callers pass PIDs, or a unique string (e.g. our own socket path)
that must appear in a process's command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from plegdoctor.live.procfs import iter_procs, read_proc

MNT_DETACH = 2


def pids_with_cmdline(needle: str, exclude: Iterable[int] = ()) -> list[int]:
    """PIDs whose command line contains `needle` (our unique socket path, a unique dir...)."""
    skip = {os.getpid(), *exclude}
    return [p.pid for p in iter_procs() if p.pid not in skip and any(needle in arg for arg in p.cmdline)]


def descendants(pids: Iterable[int]) -> list[int]:
    """All descendants of `pids` (children first found breadth-first), not including `pids`."""
    children: dict[int, list[int]] = {}
    for p in iter_procs():
        children.setdefault(p.ppid, []).append(p.pid)
    out: list[int] = []
    queue = list(pids)
    seen = set(queue)
    while queue:
        pid = queue.pop(0)
        for child in children.get(pid, []):
            if child not in seen:
                seen.add(child)
                out.append(child)
                queue.append(child)
    return out


def alive(pid: int) -> bool:
    info = read_proc(pid)
    return info is not None and info.state != "Z"


def signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def terminate(pid: int, grace: float = 10.0, reap: bool = True) -> None:
    """SIGTERM then SIGKILL after `grace` seconds; SIGCONT first so a frozen process can die."""
    if not alive(pid):
        _reap(pid, reap)
        return
    signal_pid(pid, signal.SIGTERM)
    signal_pid(pid, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid, reap)
        if not alive(pid):
            return
        time.sleep(0.05)
    signal_pid(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid, reap)
        time.sleep(0.05)
    _reap(pid, reap)


def kill_now(pids: Iterable[int]) -> None:
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)
        signal_pid(pid, signal.SIGCONT)


def _reap(pid: int, reap: bool) -> None:
    if reap:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def wait_gone(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """Wait until every pid is gone; return those still alive at the deadline."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in pending:
            _reap(pid, True)
        pending = [p for p in pending if alive(p)]
        if pending:
            time.sleep(0.05)
    return pending


def _unescape_mount(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...)
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mounts_under(prefixes: Iterable[str]) -> list[str]:
    """Mount points at or below any of `prefixes`, deepest first."""
    roots = [os.path.realpath(p).rstrip("/") for p in prefixes if p]
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        target = _unescape_mount(parts[4])
        if any(target == r or target.startswith(r + "/") for r in roots):
            found.append(target)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


_libc: ctypes.CDLL | None = None


def umount(path: str) -> str | None:
    """Lazy-unmount `path`; return an error string or None."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        return f"umount {path}: {os.strerror(err)}"
    return None


def remove_cgroup_tree(name: str) -> list[str]:
    """rmdir `name` (a cgroup path relative to each hierarchy root) bottom-up in every hierarchy."""
    errors: list[str] = []
    name = name.strip("/")
    if not name:
        return errors
    roots = [Path("/sys/fs/cgroup")]
    with contextlib.suppress(OSError):
        roots += [Path(e.path) for e in os.scandir("/sys/fs/cgroup") if e.is_dir(follow_symlinks=False)]
    for root in roots:
        top = root / name
        if not top.is_dir() or top.is_symlink():
            continue
        dirs = [Path(d) for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError as exc:
                errors.append(f"rmdir {d}: {exc.strerror}")
    return errors
