"""Reading /proc: bounded reads of a process's and a task's files, namespaces, paths as a process sees them.

Used by collect (its sources and the runtime discovery), watch (the boot time) and the testbed.
Nothing here executes anything, and every read is bounded: a file is read up to a byte limit
(`read_bounded`), never whole, so a hostile or huge /proc or cgroupfs file cannot pin memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

PROC = "/proc"
MAX_SMALL = 64 << 10  # stat, status, wchan, cgroup, comm, loadavg, /proc/stat, a kernel stack
MAX_CMDLINE = 1 << 20  # /proc/<pid>/cmdline: the kernel caps argv near 2 MiB; the head is enough
MAX_ENVIRON = 1 << 20  # /proc/<pid>/environ
MAX_PROC_STAT = 4 << 20  # /proc/stat: `btime` comes after the per-CPU and `intr` lines (long on big nodes)


def read_bounded(path: str, max_bytes: int = MAX_SMALL) -> bytes:
    """At most `max_bytes` of the file at `path` (OSError as open/read raise it)."""
    with open(path, "rb") as fh:
        return fh.read(max_bytes)


def read_text(path: str, max_bytes: int = MAX_SMALL) -> str:
    """At most `max_bytes` of the file at `path`, decoded (invalid UTF-8 replaced)."""
    return read_bounded(path, max_bytes).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str
    comm: str
    cmdline: tuple[str, ...]


def parse_stat(stat: str) -> tuple[str, str, list[str]]:
    """(comm, state, the fields after state) of a /proc/<pid>/stat line; comm is in parentheses and
    may itself hold spaces or parentheses, so it ends at the last ')'. IndexError when malformed."""
    lpar, rpar = stat.find("("), stat.rfind(")")
    rest = stat[rpar + 2 :].split()
    return stat[lpar + 1 : rpar], rest[0], rest[1:]


def read_proc(pid: int) -> ProcInfo | None:
    """A process's state, parent, comm and command line (None when it is gone or unreadable)."""
    try:
        stat = read_text(f"{PROC}/{pid}/stat")
        raw = read_bounded(f"{PROC}/{pid}/cmdline", MAX_CMDLINE)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm, state, rest = parse_stat(stat)
    return ProcInfo(
        pid=pid,
        ppid=int(rest[0]),
        state=state,
        comm=comm,
        cmdline=tuple(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p),
    )


def iter_procs() -> Iterator[ProcInfo]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            info = read_proc(int(entry.name))
            if info is not None:
                yield info


def task_ids(pid: int) -> list[int]:
    """The thread ids of process `pid` (OSError when it is gone)."""
    return [int(e.name) for e in os.scandir(f"{PROC}/{pid}/task") if e.name.isdigit()]


def task_state(pid: int, tid: int) -> tuple[str, str]:
    """(state, comm) of task `tid` of `pid` from its stat (OSError, IndexError when unreadable)."""
    comm, state, _ = parse_stat(read_text(f"{PROC}/{pid}/task/{tid}/stat"))
    return state, comm


def task_wchan(pid: int, tid: int) -> str:
    """The kernel function task `tid` waits in ('-' when running or unreadable)."""
    try:
        wchan = read_text(f"{PROC}/{pid}/task/{tid}/wchan").strip() or "-"
    except OSError:
        return "-"
    return "-" if wchan == "0" else wchan


def task_stack(pid: int, tid: int) -> str:
    """The kernel stack of task `tid` of `pid` (OSError when unreadable: not root, or gone)."""
    return read_text(f"{PROC}/{pid}/task/{tid}/stack")


def mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"{PROC}/{pid}/ns/mnt")
    except OSError:
        return None


def in_root(pid: int | None, path: str) -> str:
    """`path` as seen by process `pid` (through /proc/<pid>/root when we may read it)."""
    if pid is not None and path.startswith("/"):
        candidate = f"{PROC}/{pid}/root{path}"
        with contextlib.suppress(OSError):
            os.stat(candidate)
            return candidate
    return path


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = read_bounded(f"{PROC}/{pid}/environ", MAX_ENVIRON)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def stderr_log_file(pid: int) -> str | None:
    """The regular file a process writes its stderr to (containerd started by hand or by our testbed)."""
    try:
        target = os.readlink(f"{PROC}/{pid}/fd/2")
    except OSError:
        return None
    if not target.startswith("/"):
        return None
    path = in_root(pid, target)
    try:
        if os.path.isfile(path):
            return path
    except OSError:
        return None
    return None


def unix_socket_inodes(path: str) -> set[str]:
    """Inodes of the unix sockets bound to `path` (/proc/self/net/unix: the node's with hostNetwork)."""
    out: set[str] = set()
    try:
        with open(f"{PROC}/self/net/unix") as fh:  # streamed line by line
            next(fh, None)
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == path:
                    out.add(parts[6])
    except OSError:
        pass
    return out


def has_socket_inode(pid: int, inodes: set[str]) -> bool:
    """Whether process `pid` holds an fd on one of the socket `inodes`."""
    try:
        for fd in os.scandir(f"{PROC}/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd.path)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    except OSError:
        pass
    return False


def boot_time(proc: str = PROC) -> float | None:
    """Epoch boot time from /proc/stat `btime` (turns dmesg's seconds since boot into times)."""
    try:
        for line in read_text(f"{proc}/stat", MAX_PROC_STAT).splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
