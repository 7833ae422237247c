"""`pleg-doctor collect`: an evidence bundle from this node (design.md "Bundle format").

What it reads: kubelet and containerd logs (journalctl --all when there is a journal, else
the log file containerd writes to, else well-known files), containerd's goroutine dump (pprof
on the debug socket when configured, else SIGUSR1 and /tmp/containerd.<pid>.stacks.log), the
shims' dumps (SIGUSR1 per shim, read back from containerd's log), /proc/pressure, two samples
of /proc/diskstats, meminfo and vmstat, the mount table, the containerd config (its file and
the files it `imports`, read through /proc/<pid>/root), versions (read from the binaries' Go
build info and the CRI Version call), the kernel log (/dev/kmsg), every task's state and wait channel (read from
/proc/<pid>/task/<tid>/{stat,wchan}; the runtime's tasks always, however many tasks the node
has), kernel stacks of D-state tasks and of the runtime's tasks, the runtime processes'
/proc/<pid>/status (TracerPid) and cgroup freezer state, the load average, and the boot time.
A bundle captured by `watch` also records why (manifest `trigger`, plegdoctor.live.trigger).

What it runs: no binary found through /proc or by a process's name, ever (a pod can name a
process `kubelet`; running its binary as root would run the pod's code on the host). The only
commands are fixed system tools at fixed paths (`TRUSTED_TOOLS`: journalctl, and dmesg when
/dev/kmsg is unreadable). The runtime is the process holding the CRI socket (SO_PEERCRED of a
connection to it, else the socket inode), not whatever is named containerd; shims must share
its mount namespace; the kubelet must share PID 1's, and its files are only read.

What it changes on the node: nothing, except the SIGUSR1 dumps it asks for. containerd
writes its dump file itself (`containerd.<pid>.stacks.log` in its TMPDIR, overwritten at each
signal); we leave it there, as a manual SIGUSR1 would. The manifest's `actions` list every
command run (argv, exit, seconds), signal sent (pid, signal, why) and socket call (CRI Version,
ListContainers, pprof, the SO_PEERCRED connect). Every step has a deadline and records its
error in the manifest; a hung runtime never blocks the collection.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from plegdoctor.errors import UserError
from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.cri.client import DEFAULT_ENDPOINT, CRIClient, CRIError, socket_path
from plegdoctor.live.gobinary import binary_version, read_build_info
from plegdoctor.live.redact import RedactedLines, redact_argv
from plegdoctor.live.samplers import NodeSampler, RawSample
from plegdoctor.testbed.procs import ProcInfo, iter_procs, read_proc

RUNTIME_COMMS = ("containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "kubelet", "dockerd", "crio")
DUMP_BEGIN = "=== BEGIN goroutine stack dump ==="
MAX_LOG_BYTES = 64 << 20
MAX_TASKS = 5000


class StepTimeout(Exception):
    pass


def run_with_deadline(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """Run fn in a daemon thread; raise StepTimeout if it does not finish in time (the thread is abandoned)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # carried to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"collect-{what}", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise StepTimeout(f"{what}: no result within {seconds:g}s (deadline)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`2h`, `30m`, `90s`, `1d` or an ISO 8601 time -> an aware UTC datetime."""
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
        return now - timedelta(seconds=float(m[1]) * mult)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since: cannot parse {value!r} (use 2h, 30m, 1d or an ISO 8601 time)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


# -- what collect does on the node ---------------------------------------------------------------
# The only programs collect runs: fixed system tools at fixed paths. Never a PATH lookup, never
# a binary found through /proc/<pid>/exe or named after a process.
TRUSTED_TOOLS: dict[str, tuple[str, ...]] = {
    "journalctl": ("/usr/bin/journalctl", "/bin/journalctl"),
    "dmesg": ("/usr/bin/dmesg", "/bin/dmesg"),
}


def trusted_tool(name: str) -> str | None:
    """The fixed path of system tool `name` when it is installed there, else None."""
    for path in TRUSTED_TOOLS.get(name, ()):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


class Actions:
    """Everything collect did that another process could see (manifest `actions`): each
    command run (argv, exit, seconds), signal sent (pid, signal, why) and socket call."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def command(self, argv: list[str], exit_code: int | None, seconds: float, **extra: Any) -> None:
        self.items.append(
            {"type": "command", "argv": list(argv), "exit": exit_code, "seconds": round(seconds, 3), **extra}
        )

    def signal(self, pid: int, sig: signal.Signals, why: str, error: str | None = None) -> None:
        item: dict[str, Any] = {"type": "signal", "pid": pid, "signal": sig.name, "why": why}
        if error:
            item["error"] = error
        self.items.append(item)

    def socket(self, endpoint: str, call: str, seconds: float, error: str | None = None, **extra: Any) -> None:
        item: dict[str, Any] = {"type": "socket", "endpoint": endpoint, "call": call, "seconds": round(seconds, 3)}
        if error:
            item["error"] = error
        self.items.append({**item, **extra})

    def summary(self) -> list[str]:
        """One line per kind, for the CLI: exactly what was run, signalled and called."""
        return summarize_actions(self.items)


def summarize_actions(items: list[dict[str, Any]]) -> list[str]:
    commands = [" ".join(a["argv"]) for a in items if a.get("type") == "command"]
    signals = [f"{a['signal']} to pid {a['pid']} ({a['why']})" for a in items if a.get("type") == "signal"]
    calls = [f"{a['call']} on {a['endpoint']}" for a in items if a.get("type") == "socket"]
    out = []
    out.append("ran " + ("; ".join(dict.fromkeys(commands)) if commands else "no command"))
    out.append("sent " + ("; ".join(signals) if signals else "no signal"))
    out.append("socket calls: " + ("; ".join(dict.fromkeys(calls)) if calls else "none"))
    return out


# -- discovery ---------------------------------------------------------------------------------
def _listening_inodes(path: str) -> set[str]:
    """Inodes of the unix sockets bound to `path` (/proc/self/net/unix: the node's with hostNetwork)."""
    out: set[str] = set()
    try:
        with open("/proc/self/net/unix") as fh:
            next(fh, None)
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == path:
                    out.add(parts[6])
    except OSError:
        pass
    return out


def _has_socket_inode(pid: int, inodes: set[str]) -> bool:
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd.path)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    except OSError:
        pass
    return False


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
    inodes = _listening_inodes(path)
    if inodes:
        me = os.getpid()
        holders = [p.pid for p in iter_procs() if p.pid not in (1, me) and _has_socket_inode(p.pid, inodes)]
        if len(holders) == 1:
            return holders[0], f"holder of the socket inode of {path}"
        if holders:
            return None, f"{len(holders)} processes hold {path} ({', '.join(map(str, holders[:5]))}): ambiguous"
    return None, f"no process found serving {path}"


def mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


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


def config_path_of(info: ProcInfo) -> str:
    args = list(info.cmdline)
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return "/etc/containerd/config.toml"


def in_root(pid: int | None, path: str) -> str:
    """`path` as seen by process `pid` (through /proc/<pid>/root when we may read it)."""
    if pid is not None and path.startswith("/"):
        candidate = f"/proc/{pid}/root{path}"
        with contextlib.suppress(OSError):
            os.stat(candidate)
            return candidate
    return path


MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_FILES = 32


def _config_imports(text: str) -> list[str]:
    """The top-level `imports = [...]` of a containerd config (v2+); [] when there is none or it is not TOML."""
    try:
        value = tomllib.loads(text).get("imports")
    except tomllib.TOMLDecodeError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def containerd_configs(pid: int | None, main: str) -> list[tuple[str, str | None, str | None]]:
    """(path, text or None, error) of containerd's config file and of the files its `imports`
    name (globs, relative to the importing file, followed recursively), read through
    /proc/<pid>/root so the paths are the runtime's. At most MAX_CONFIG_FILES files of
    MAX_CONFIG_BYTES each; this is what `containerd config dump` would merge, without running it."""
    root = f"/proc/{pid}/root" if pid is not None and os.path.isdir(f"/proc/{pid}/root") else ""
    out: list[tuple[str, str | None, str | None]] = []
    queue, seen = [main], set()
    while queue and len(out) < MAX_CONFIG_FILES:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            with open(root + path, "rb") as fh:
                data = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            out.append((path, None, f"{path}: {exc.strerror or exc}"))
            continue
        if len(data) > MAX_CONFIG_BYTES:
            out.append((path, None, f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not read"))
            continue
        text = data.decode("utf-8", "replace")
        out.append((path, text, None))
        for pattern in _config_imports(text):
            pattern = pattern if pattern.startswith("/") else os.path.join(os.path.dirname(path), pattern)
            matches = sorted(glob.glob(root + pattern))[:MAX_CONFIG_FILES]
            queue.extend(m[len(root) :] for m in matches if os.path.isfile(m))
    if queue:
        out.append((queue[0], None, f"more than {MAX_CONFIG_FILES} config files: {len(queue)} imports not read"))
    return out


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def debug_address_from_config(text: str) -> str:
    """`[debug] address = "..."` from a containerd config (v2/v3 top-level; v4 debug server plugin)."""
    section = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]").strip()
            continue
        m = re.match(r'address\s*=\s*"([^"]*)"', s)
        if m and (section == "debug" or section.endswith('io.containerd.server.v1.debug"')):
            return m[1]
    return ""


def stderr_log_file(pid: int) -> str | None:
    """The regular file a process writes its stderr to (containerd started by hand or by our testbed)."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/2")
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


# -- readers -----------------------------------------------------------------------------------
def read_tail_lines(path: str, max_bytes: int = MAX_LOG_BYTES) -> Iterator[str]:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        start = max(0, size - max_bytes)
        fh.seek(start)
        if start:
            fh.readline()  # skip a partial line
        for raw in fh:
            yield raw.decode("utf-8", "replace")


_LOGRUS_TIME = re.compile(r'^time="([^"]+)"')


def logrus_since(lines: Iterable[str], since: datetime) -> Iterator[str]:
    """Drop logrus lines older than `since` (lines without a time follow the previous decision)."""
    keep = True
    cutoff = since.timestamp()
    for line in lines:
        m = _LOGRUS_TIME.match(line)
        if m:
            with contextlib.suppress(ValueError):
                keep = datetime.fromisoformat(m[1].replace("Z", "+00:00")).timestamp() >= cutoff
        if keep:
            yield line


@dataclass
class Tail:
    """The newest `max_bytes` of a command's output, as lines; `dropped` bytes were cut from the head."""

    lines: list[str]
    total: int = 0
    dropped: int = 0

    def note(self) -> str | None:
        if not self.dropped:
            return None
        kept = self.total - self.dropped
        return f"kept the newest {kept} of {self.total} bytes: {self.dropped} dropped from the head"


_TRUSTED_PATHS = frozenset(p for paths in TRUSTED_TOOLS.values() for p in paths)


def _tool_env() -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


STDERR_KEEP = 4096  # bytes of a tool's stderr kept for the error line


def run_tail(cmd: list[str], timeout: float, max_bytes: int = MAX_LOG_BYTES, actions: Actions | None = None) -> Tail:
    """Run a trusted tool (TRUSTED_TOOLS, by its fixed path) with a deadline, streaming its
    stdout and keeping only the newest `max_bytes` (memory stays bounded on any output size).
    A failed exit raises RuntimeError with the last stderr line; the deadline kills it."""
    if cmd[0] not in _TRUSTED_PATHS:
        raise RuntimeError(f"{cmd[0]}: not run (collect runs only {', '.join(sorted(_TRUSTED_PATHS))})")
    t0 = time.monotonic()
    chunks: deque[bytes] = deque()
    kept = total = 0
    killed = threading.Event()
    err_head = bytearray()  # stderr: the first 4 KiB kept, the rest read and dropped (nothing on disk)
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=_tool_env(),
            close_fds=True,
        )
    except OSError as exc:
        if actions is not None:
            actions.command(cmd, None, time.monotonic() - t0, error=exc.strerror or str(exc))
        raise RuntimeError(f"{cmd[0]}: {exc.strerror or exc}") from None

    def kill() -> None:
        killed.set()
        with contextlib.suppress(OSError):
            proc.kill()

    def drain_stderr() -> None:
        assert proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(proc.stderr.fileno(), 1 << 16):
                if len(err_head) < STDERR_KEEP:
                    err_head.extend(chunk[: STDERR_KEEP - len(err_head)])

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    drainer = threading.Thread(target=drain_stderr, name="pleg-doctor-stderr", daemon=True)
    drainer.start()
    try:
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 1 << 20):
            chunks.append(chunk)
            kept += len(chunk)
            total += len(chunk)
            while len(chunks) > 1 and kept - len(chunks[0]) >= max_bytes:
                kept -= len(chunks.popleft())
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drainer.join(timeout=2)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if actions is not None:
        actions.command(cmd, None if killed.is_set() else rc, time.monotonic() - t0)
    if killed.is_set():
        raise StepTimeout(f"{' '.join(cmd)}: no result within {timeout:g}s (killed)")
    if rc != 0:
        msg = bytes(err_head[:400]).decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {rc}: {msg[-1] if msg else ''}")
    data = b"".join(chunks)
    if len(data) > max_bytes:
        data = data[-max_bytes:]
        nl = data.find(b"\n")
        data = data[nl + 1 :] if nl >= 0 else b""  # drop the partial first line
    return Tail(data.decode("utf-8", "replace").splitlines(keepends=True), total, total - len(data))


def run_command(
    cmd: list[str], timeout: float, max_bytes: int = MAX_LOG_BYTES, actions: Actions | None = None
) -> list[str]:
    """run_tail's lines."""
    return run_tail(cmd, timeout, max_bytes, actions).lines


def journal_available() -> bool:
    if trusted_tool("journalctl") is None:
        return False
    return any(os.path.isdir(d) and any(os.scandir(d)) for d in ("/var/log/journal", "/run/log/journal"))


def journal_argv(unit: str, since: datetime) -> list[str]:
    return [
        trusted_tool("journalctl") or TRUSTED_TOOLS["journalctl"][0],
        "-u",
        unit,
        "--since",
        since.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "--all",
        "--no-pager",
        "-o",
        "short-iso-precise",
    ]


def journal_lines(
    unit: str, since: datetime, timeout: float, actions: Actions | None = None, max_bytes: int = MAX_LOG_BYTES
) -> Tail:
    """The unit's journal since `since`: the newest `max_bytes` (a stall is at the end, not the start)."""
    tail = run_tail(journal_argv(unit, since), timeout, max_bytes, actions)
    lines = tail.lines
    if not lines or (len(lines) == 1 and lines[0].startswith("-- No entries --")):
        raise RuntimeError(f"journal has no entries for unit {unit}")
    return tail


@dataclass
class Task:
    pid: int
    tid: int
    state: str
    comm: str
    wchan: str
    cmd: str  # the command line, redacted element by element before it was joined
    redactions: int = 0  # how many argv elements were redacted


def iter_tasks(limit: int = MAX_TASKS) -> Iterator[Task]:
    """Every task's state, comm and wait channel, read from /proc/<pid>/task/<tid>/{stat,wchan}
    (no binary is run). At most `limit` tasks, but the runtime's own tasks (containerd, its
    shims, runc, crio, dockerd, kubelet) are always read, however many others there are."""
    n = 0
    for proc in iter_procs():
        runtime = proc.comm.startswith(RUNTIME_COMMS)
        if n >= limit and not runtime:
            continue
        argv, redactions = redact_argv(proc.cmdline)
        cmd = " ".join(argv) or f"[{proc.comm}]"
        try:
            tids = [int(e.name) for e in os.scandir(f"/proc/{proc.pid}/task") if e.name.isdigit()]
        except OSError:
            continue
        for tid in tids:
            info = read_proc(tid) if tid != proc.pid else proc
            try:
                stat = Path(f"/proc/{proc.pid}/task/{tid}/stat").read_text()
                state = stat[stat.rfind(")") + 2 :].split()[0]
                comm = stat[stat.find("(") + 1 : stat.rfind(")")]
            except (OSError, IndexError):
                if info is None:
                    continue
                state, comm = info.state, info.comm
            try:
                wchan = Path(f"/proc/{proc.pid}/task/{tid}/wchan").read_text().strip() or "-"
            except OSError:
                wchan = "-"
            yield Task(proc.pid, tid, state, comm, "-" if wchan == "0" else wchan, cmd, redactions)
            n += 1
            if n >= limit and not runtime:
                break


def ps_table(tasks: list[Task]) -> list[str]:
    """`ps -eLo pid,tid,stat,wchan:32,comm,cmd`-like table (read by plegdoctor.parsers.ps)."""
    lines = RedactedLines([f"{'PID':>7} {'TID':>7} STAT {'WCHAN':<32} {'COMMAND':<16} CMD\n"])
    for t in tasks:
        comm = t.comm.replace(" ", "_") or "-"
        lines.append(f"{t.pid:>7} {t.tid:>7} {t.state:<4} {t.wchan[:32]:<32} {comm:<16} {t.cmd}\n")
        lines.redactions += t.redactions
    return lines


def is_runtime_task(t: Task) -> bool:
    return t.comm.startswith(RUNTIME_COMMS)


MAX_STATUS_PROCS = 256


def _cgroup_state_files(cgroup_lines: list[str], root: str = "/sys/fs/cgroup") -> list[str]:
    """The freezer files of the cgroups in /proc/<pid>/cgroup lines: v2 `cgroup.events` (its
    `frozen` is the effective state, ancestors included) and `cgroup.freeze`; v1
    `freezer.state`."""
    out: list[str] = []
    # cgroup v2 is mounted at the root, or at <root>/unified on a hybrid (v1 + v2) host
    v2_root = root if os.path.exists(f"{root}/cgroup.controllers") else f"{root}/unified"
    for line in cgroup_lines:
        hier, _, path = line.strip().rpartition(":")
        if not hier or not path.startswith("/"):
            continue
        controllers = hier.split(":", 1)[-1]
        if hier.startswith("0:") and controllers == "":
            if path == "/":
                continue  # the root cgroup cannot be frozen
            base = v2_root + path.rstrip("/")
            out += [f"{base}/cgroup.events", f"{base}/cgroup.freeze"]
        elif "freezer" in controllers.split(","):
            out.append(f"{root}/freezer{path.rstrip('/')}/freezer.state")
    return out


def runtime_status(tasks: list[Task], root: str = "/sys/fs/cgroup") -> list[str]:
    """`tail -n +1`-style concatenation (read by plegdoctor.parsers.ps) of /proc/<pid>/status
    (State, TracerPid: who stopped or traces it) and /proc/<pid>/cgroup of each runtime process,
    and the freezer state of their cgroups. Read from /proc and cgroupfs; nothing is run."""
    pids = list(dict.fromkeys(t.pid for t in tasks if is_runtime_task(t) and t.pid == t.tid))[:MAX_STATUS_PROCS]
    lines: list[str] = []
    seen: set[str] = set()
    for pid in pids:
        cgroup: list[str] = []
        for name in ("status", "cgroup"):
            path = f"/proc/{pid}/{name}"
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            lines.append(f"==> {path} <==\n")
            lines.extend(text.splitlines(keepends=True))
            if name == "cgroup":
                cgroup = text.splitlines()
        for path in _cgroup_state_files(cgroup, root):
            if path in seen:
                continue
            seen.add(path)
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            lines.append(f"==> {path} <==\n")
            lines.extend(text.splitlines(keepends=True))
    if not lines:
        lines.append("# no runtime process found\n")
    return lines


def node_load() -> dict[str, Any]:
    """/proc/loadavg and the CPUs this node can run on (manifest `node_load`)."""
    fields = Path("/proc/loadavg").read_text().split()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    return {
        "loadavg": [float(x) for x in fields[:3]],
        "running": fields[3] if len(fields) > 3 else None,
        "cpus": cpus or None,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": "/proc/loadavg",
    }


def boot_time() -> float | None:
    """Epoch boot time from /proc/stat `btime` (turns dmesg's seconds since boot into times)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def task_stacks(tasks: list[Task]) -> list[str]:
    """Kernel stacks of D-state tasks and of the runtime's tasks, in the collector format of parsers.proc_stack."""
    lines = RedactedLines()
    for t in tasks:
        if t.state != "D" and not is_runtime_task(t):
            continue
        lines.redactions += t.redactions  # t.cmd is redacted already (iter_tasks)
        try:
            stack = Path(f"/proc/{t.pid}/task/{t.tid}/stack").read_text()
        except OSError as exc:
            stack = f"# stack unreadable: {exc.strerror}\n"
        lines.append(
            f"# pid={t.tid} tgid={t.pid} comm={t.comm.replace(' ', '_')} state={t.state} wchan={t.wchan} cmd={t.cmd}\n"
        )
        lines.extend(stack.splitlines(keepends=True))
    if not lines:
        lines.append("# no D-state or runtime tasks found\n")
    return lines


def dmesg_lines(timeout: float, actions: Actions | None = None) -> list[str]:
    """The kernel log from /dev/kmsg; `dmesg` (by its fixed path) only when /dev/kmsg gives nothing."""
    lines = kmsg_lines()
    if lines:
        return lines
    errors = ["/dev/kmsg unreadable or empty"]
    dmesg = trusted_tool("dmesg")
    if dmesg is None:
        raise RuntimeError("; ".join([*errors, f"no dmesg at {' or '.join(TRUSTED_TOOLS['dmesg'])}"]))
    for cmd in ([dmesg, "--time-format", "iso"], [dmesg]):
        try:
            return run_command(cmd, timeout, actions=actions)
        except (RuntimeError, StepTimeout) as exc:
            errors.append(str(exc))
    raise RuntimeError("; ".join(errors))


def kmsg_lines(limit: int = 20000, max_records: int = 2_000_000) -> list[str]:
    """Read /dev/kmsg without blocking, keeping the newest `limit` records;
    `<prio>,seq,usec,flags;msg` -> `[sec.usec] msg`."""
    out: deque[str] = deque(maxlen=limit)
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        for _ in range(max_records):
            try:
                rec = os.read(fd, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except OSError:
                continue  # EPIPE: records overwritten while reading
            if not rec:
                break
            head, _, msg = rec.partition(";")
            parts = head.split(",")
            if len(parts) >= 3 and parts[2].isdigit():
                usec = int(parts[2])
                out.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {msg.splitlines()[0] if msg else ''}\n")
    finally:
        os.close(fd)
    return list(out)


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
        lines.append("proc_version: " + Path("/proc/version").read_text().strip() + "\n")
    with contextlib.suppress(OSError):
        for line in Path(in_root(ctd_pid, "/etc/os-release")).read_text().splitlines():
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


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def pprof_goroutines(debug_socket: str, timeout: float) -> list[str]:
    conn = _UnixHTTPConnection(debug_socket, timeout)
    try:
        conn.request("GET", "/debug/pprof/goroutine?debug=2")
        resp = conn.getresponse()
        body = resp.read(MAX_LOG_BYTES)
        if resp.status != 200:
            raise RuntimeError(f"pprof on {debug_socket}: HTTP {resp.status}")
        return body.decode("utf-8", "replace").splitlines(keepends=True)
    finally:
        conn.close()


def file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def wait_for_new_file(path: str, before: tuple[int, int, int] | None, timeout: float) -> list[str]:
    """Wait until `path` differs from its signature `before` (or appears) and stops growing; return its lines.

    Compares (inode, mtime, size) with the state before the signal rather than with the clock:
    file times come from the kernel's coarse clock and can lag time.time() by a tick.
    """
    deadline = time.monotonic() + timeout
    last_size = -1
    while time.monotonic() < deadline:
        sig = file_signature(path)
        if sig is not None and sig != before and sig[2] > 0:
            if sig[2] == last_size:
                return Path(path).read_text(errors="replace").splitlines(keepends=True)
            last_size = sig[2]
        time.sleep(0.1)
    raise StepTimeout(f"{path} was not written within {timeout:g}s (is the process frozen or stopped?)")


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


def shim_dump_lines(log_lines: Iterable[str], shim_pid: int) -> list[str]:
    """The goroutine-dump log lines a shim wrote (containerd relays them with pid=<shim pid>)."""
    needle = f"pid={shim_pid}"
    return [ln for ln in log_lines if DUMP_BEGIN in ln and re.search(rf"(?<![\w=]){re.escape(needle)}\b", ln)]


# -- the collection ---------------------------------------------------------------------------
@dataclass
class CollectOptions:
    output: str | None = None
    since: str = "2h"
    dump: bool = True
    runtime_endpoint: str = DEFAULT_ENDPOINT
    containerd_pid: int | None = None
    debug_socket: str | None = None
    step_timeout: float = 20.0
    dump_timeout: float = 10.0
    sample_interval: float = 1.0
    max_shims: int = 32
    # watch passes False: its probe already has a call pending on a hung runtime; never add more
    query_runtime: bool = True
    node: str = field(default_factory=lambda: os.environ.get("NODE_NAME") or os.uname().nodename)
    log: Callable[[str], None] | None = None


def default_output(node: str, directory: str = ".") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node) or "node"
    return str(Path(directory) / f"pleg-doctor-{safe}-{stamp}.tar.gz")


def _series(samples: Iterable[RawSample]) -> list[str]:
    return [s.render() for s in samples]


def collect_bundle(
    opts: CollectOptions, sampler: NodeSampler | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Collect everything into `opts.output` (atomic); returns the path. Never raises for one failed step."""
    say = opts.log or (lambda msg: None)
    output = opts.output or default_output(opts.node)
    since = parse_since(opts.since)
    writer = BundleWriter(output, node=opts.node, extra={"since": since.isoformat(), **(extra or {})})
    try:
        _collect_into(writer, opts, since, sampler, say)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _collect_into(
    w: BundleWriter, opts: CollectOptions, since: datetime, sampler: NodeSampler | None, say: Callable[[str], None]
) -> None:
    T = opts.step_timeout
    actions = Actions()
    w.extra["actions"] = actions.items  # filled as collect goes; the manifest is written at close

    def step(path: str, kind: str | None, fn: Callable[[], Any], timeout: float = T, **meta: Any) -> Any:
        entry = w.add_step(path, kind, lambda: run_with_deadline(fn, timeout, path), **meta)
        if entry.error:
            say(f"{path}: {entry.error}")
        return entry

    # 1. The moment's evidence first (a stall may end while we collect): tasks and kernel stacks.
    tasks: list[Task] = []
    with contextlib.suppress(Exception):
        tasks = run_with_deadline(lambda: list(iter_tasks()), T, "tasks")
    step("tasks/ps.txt", "ps", lambda: ps_table(tasks), source="/proc/*/task/*/{stat,wchan}")
    step("tasks/stacks.txt", "proc-stack", lambda: task_stacks(tasks), source="/proc/*/task/*/stack")
    step(
        "tasks/runtime-status.txt",
        "ps",
        lambda: runtime_status(tasks),
        source="/proc/<runtime pid>/{status,cgroup}, /sys/fs/cgroup/<its cgroup>/{cgroup.events,cgroup.freeze}",
    )
    with contextlib.suppress(OSError, ValueError, IndexError):
        w.extra["node_load"] = node_load()
    btime = boot_time()
    if btime is not None:
        w.extra.setdefault("boot_time", btime)

    # 2. /proc samples: PSI, diskstats, meminfo, vmstat (two samples, or watch's recent series).
    files = {
        "/proc/pressure/io": ("proc/pressure/io", "psi"),
        "/proc/pressure/memory": ("proc/pressure/memory", "psi"),
        "/proc/pressure/cpu": ("proc/pressure/cpu", "psi"),
        "/proc/diskstats": ("proc/diskstats", "diskstats"),
        "/proc/meminfo": ("proc/meminfo", "meminfo"),
        "/proc/vmstat": ("proc/vmstat", "vmstat"),
    }
    own = sampler is None
    if own:
        sampler = NodeSampler(keep=2)
        sampler.sample()
        time.sleep(opts.sample_interval)
    assert sampler is not None
    sampler.sample()
    for src, (member, kind) in files.items():
        samples = list(sampler.history.get(src, ()))
        if own:
            samples = samples[-2:]
        if samples:
            w.add_text(member, kind, _series(samples), redact=False, source=src)
        else:
            w.add_failed(member, kind, f"{src} unreadable (kernel without it, or not mounted)", source=src)

    # 3. The runtime: the process serving the CRI socket (never a process picked by name).
    if opts.containerd_pid:
        ctd_pid: int | None = opts.containerd_pid
        how = "--containerd-pid"
    else:
        ctd_pid, how = find_runtime_pid(opts.runtime_endpoint, actions)
    info = read_proc(ctd_pid) if ctd_pid else None
    runtime: dict[str, Any] = {"endpoint": opts.runtime_endpoint, "containerd_pid": ctd_pid, "found_by": how}
    if ctd_pid:
        runtime["program"] = runtime_program(ctd_pid)
    try:
        if not opts.query_runtime:
            raise CRIError("skipped", "CRI not queried during a stall (the relist probe's call is pending)")
        with CRIClient(opts.runtime_endpoint) as client:
            v = _cri_call(actions, opts.runtime_endpoint, "CRI Version", lambda: client.version(timeout=3))
            runtime.update(name=v.runtime_name, version=v.runtime_version, api=v.runtime_api_version)
            t0 = time.monotonic()
            n = len(
                _cri_call(
                    actions, opts.runtime_endpoint, "CRI ListContainers", lambda: client.list_containers(timeout=5)
                )
            )
            runtime.update(containers=n, list_containers_seconds=round(time.monotonic() - t0, 3))
    except CRIError as exc:
        runtime["error"] = str(exc)
        say(f"runtime: {exc}")
    w.extra["runtime"] = runtime
    program = runtime.get("program") or ""
    is_containerd = info is not None and (
        runtime.get("name") == "containerd"
        or (runtime.get("name") is None and (program.startswith("github.com/containerd/") or not program))
    )
    if runtime.get("name") not in (None, "containerd"):
        w.notes.append(f"runtime is {runtime['name']}, not containerd: containerd-specific steps skipped")
    if ctd_pid is None:
        w.notes.append(
            f"no containerd process found for {opts.runtime_endpoint} ({how}): dumps, config and its log skipped"
        )

    # 4. Mounts and config (the files containerd reads, through its root; `config dump` is never run).
    mountinfo = f"/proc/{ctd_pid}/mountinfo" if ctd_pid else "/proc/self/mountinfo"
    step("proc/mountinfo", "mounts", lambda: Path(mountinfo).read_text(), source=mountinfo)
    config_text = ""
    if info is not None and is_containerd:
        configs = containerd_configs(ctd_pid, config_path_of(info))
        for i, (path, text, error) in enumerate(configs):
            member = "config/containerd.toml" if i == 0 else f"config/imports/{i:02d}-{_safe_name(path)}"
            if text is None:
                w.add_failed(member, "containerd-config", error or "unreadable", source=path)
                say(f"{member}: {error}")
            else:
                w.add_text(member, "containerd-config", text, source=path)
                if i == 0:
                    config_text = text

    # 5. Versions (read from the binaries, and the CRI answer), the kernel log.
    kubelet_pid = find_kubelet_pid()
    # the CRI endpoint is containerd's gRPC address (the shims' -address); else its flags/config say it
    address = socket_path(opts.runtime_endpoint) or (_grpc_address(info, config_text) if info else None)
    shims_all = shim_pids_of(address, ctd_pid) if info is not None and is_containerd else []
    cri = (str(runtime["version"]), opts.runtime_endpoint) if runtime.get("name") == "containerd" else None
    step(
        "versions.txt",
        "versions",
        lambda: versions_text(ctd_pid, kubelet_pid, shims_all[0] if shims_all else None, cri),
        timeout=T,
        source="Go build info and ELF symbols of the runtime's binaries (read, never run); CRI Version",
    )
    step(
        "kernel/dmesg.txt",
        "dmesg",
        lambda: dmesg_lines(T, actions),
        source="/dev/kmsg (dmesg at its fixed path only when /dev/kmsg is unreadable)",
    )

    # 6. Goroutine dumps (the only thing that touches the node: SIGUSR1).
    log_file = stderr_log_file(ctd_pid) if ctd_pid else None
    if opts.dump and info is not None and ctd_pid is not None and is_containerd:
        debug_socket = opts.debug_socket or debug_address_from_config(config_text)
        got = False
        if debug_socket:
            sock = in_root(ctd_pid, debug_socket)
            t0 = time.monotonic()
            entry = step(
                f"goroutines/containerd-{ctd_pid}.pprof-debug2.txt",
                "goroutine-dump",
                lambda: pprof_goroutines(sock, opts.dump_timeout),
                timeout=opts.dump_timeout + 1,
                redact=False,
                source=f"GET /debug/pprof/goroutine?debug=2 on {debug_socket}",
            )
            actions.socket(debug_socket, "GET /debug/pprof/goroutine?debug=2", time.monotonic() - t0, error=entry.error)
            got = entry.error is None
        if not got:
            tmpdir = environ_of(ctd_pid).get("TMPDIR") or "/tmp"
            dump_path = os.path.join(tmpdir, f"containerd.{ctd_pid}.stacks.log")
            readable = in_root(ctd_pid, tmpdir) + f"/containerd.{ctd_pid}.stacks.log"
            before = file_signature(readable)
            why = f"goroutine dump of containerd (the process serving {opts.runtime_endpoint}, {how})"
            member = f"goroutines/containerd-{ctd_pid}.stacks.log"
            try:
                os.kill(ctd_pid, signal.SIGUSR1)
            except OSError as exc:
                actions.signal(ctd_pid, signal.SIGUSR1, why, error=exc.strerror or str(exc))
                w.add_failed(member, "goroutine-dump", f"SIGUSR1 to pid {ctd_pid}: {exc.strerror or exc}")
            else:
                actions.signal(ctd_pid, signal.SIGUSR1, why)
                w.changes.append(
                    f"sent SIGUSR1 to containerd pid {ctd_pid}: it wrote its goroutine dump to {dump_path} "
                    "(containerd's own file, left in place) and logged it"
                )
                step(
                    member,
                    "goroutine-dump",
                    lambda: wait_for_new_file(readable, before, opts.dump_timeout),
                    timeout=opts.dump_timeout + 1,
                    redact=False,
                    source=dump_path,
                )
        shims = shims_all[: opts.max_shims]
        if shims:
            sent = []
            for pid in shims:
                why = f"goroutine dump of containerd-shim (in containerd pid {ctd_pid}'s mount namespace)"
                try:
                    os.kill(pid, signal.SIGUSR1)
                    actions.signal(pid, signal.SIGUSR1, why)
                    sent.append(pid)
                except OSError as exc:
                    actions.signal(pid, signal.SIGUSR1, why, error=exc.strerror or str(exc))
            if sent:
                w.changes.append(f"sent SIGUSR1 to {len(sent)} containerd-shim processes ({', '.join(map(str, sent))})")
            _collect_shim_dumps(w, shims, ctd_pid, log_file, since, opts, say, actions)

    # 7. Logs.
    if ctd_pid is not None and is_containerd:
        _collect_log(w, "logs/containerd", "containerd", log_file, since, T, say, ["/var/log/containerd.log"], actions)
    kubelet_file = stderr_log_file(kubelet_pid) if kubelet_pid else None
    _collect_log(w, "logs/kubelet", "kubelet", kubelet_file, since, T, say, ["/var/log/kubelet.log"], actions)


def _cri_call(actions: Actions, endpoint: str, name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.monotonic()
    try:
        result = fn()
    except CRIError as exc:
        actions.socket(endpoint, name, time.monotonic() - t0, error=str(exc))
        raise
    actions.socket(endpoint, name, time.monotonic() - t0)
    return result


def _safe_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path)) or "config"


def _grpc_address(info: ProcInfo, config_text: str) -> str | None:
    args = list(info.cmdline)
    for i, a in enumerate(args):
        if a in ("--address", "-a") and i + 1 < len(args):
            return args[i + 1]
    section = ""
    for line in config_text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]").strip()
        m = re.match(r'address\s*=\s*"([^"]+)"', s)
        if m and section == "grpc":
            return m[1]
    return "/run/containerd/containerd.sock"


def _collect_shim_dumps(
    w: BundleWriter,
    shims: list[int],
    ctd_pid: int,
    log_file: str | None,
    since: datetime,
    opts: CollectOptions,
    say: Callable[[str], None],
    actions: Actions | None = None,
) -> None:
    deadline = time.monotonic() + opts.dump_timeout
    found: dict[int, list[str]] = {}
    while time.monotonic() < deadline and len(found) < len(shims):
        time.sleep(0.3)
        lines: list[str] = []
        try:
            if log_file:
                lines = list(read_tail_lines(log_file, 32 << 20))
            elif journal_available():
                journalctl = trusted_tool("journalctl") or TRUSTED_TOOLS["journalctl"][0]
                argv = [journalctl, "-u", "containerd", "--since", "-2min", "--all", "--no-pager", "-o", "cat"]
                lines = run_command(argv, 10, 32 << 20, actions)
        except (OSError, RuntimeError, StepTimeout):
            lines = []
        for pid in shims:
            got = shim_dump_lines(lines, pid)
            if got:
                found[pid] = got[-1:]
    for pid in shims:
        member = f"goroutines/containerd-shim-{pid}.log"
        if pid in found:
            w.add_text(member, "goroutine-dump", found[pid], redact=False, source=f"containerd log (shim pid {pid})")
        else:
            why = (
                "containerd relays shim logs; it may be frozen"
                if log_file or journal_available()
                else "no containerd log"
            )
            w.add_failed(
                member,
                "goroutine-dump",
                f"shim dump not found in containerd's log within {opts.dump_timeout:g}s ({why})",
            )
            say(f"{member}: not found")


def _log_reader(path: str, unit: str, since: datetime) -> Callable[[], list[str]]:
    if unit == "containerd":
        return lambda: list(logrus_since(read_tail_lines(path), since))
    return lambda: list(read_tail_lines(path))


def _collect_log(
    w: BundleWriter,
    base: str,
    unit: str,
    log_file: str | None,
    since: datetime,
    timeout: float,
    say: Callable[[str], None],
    fallbacks: list[str],
    actions: Actions | None = None,
) -> None:
    kind = f"{unit}-log"
    errors: list[str] = []
    if journal_available():
        try:
            tail = run_with_deadline(
                lambda: journal_lines(unit, since, timeout, actions), timeout + 1, f"journalctl -u {unit}"
            )
            note = tail.note()
            w.add_text(
                f"{base}.journal",
                "journal",
                tail.lines,
                command=journal_argv(unit, since),
                **({"truncated": True, "note": note} if note else {}),
            )
            return
        except Exception as exc:
            errors.append(str(exc))
    for path in [p for p in [log_file, *fallbacks] if p]:
        if not os.path.isfile(path):
            continue
        try:
            lines = run_with_deadline(_log_reader(path, unit, since), timeout, f"read {path}")
            size = os.path.getsize(path)
            cut: dict[str, Any] = (
                {"truncated": True, "note": f"kept the newest {MAX_LOG_BYTES} of {size} bytes (the head was dropped)"}
                if size > MAX_LOG_BYTES
                else {}
            )
            w.add_text(f"{base}.log", kind, lines, source=path, **cut)
            return
        except Exception as exc:
            errors.append(f"{path}: {exc}")
    msg = "; ".join(errors) or f"no {unit} log found (no journal, no log file next to a running {unit})"
    w.add_failed(f"{base}.log", kind, msg)
    say(f"{base}: {msg}")


# -- CLI -------------------------------------------------------------------------------------------
@click.command("collect")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Bundle path (default ./pleg-doctor-<node>-<utc>.tar.gz)."
)
@click.option("--since", default="2h", show_default=True, help="How far back to take logs (2h, 30m, 1d, or ISO 8601).")
@click.option("--no-dump", is_flag=True, help="Do not send SIGUSR1 to containerd and its shims (no goroutine dumps).")
@click.option("--runtime-endpoint", default=DEFAULT_ENDPOINT, show_default=True, help="CRI endpoint of containerd.")
@click.option("--containerd-pid", type=int, help="containerd's PID (default: the one serving --runtime-endpoint).")
@click.option("--debug-socket", help="containerd's debug socket for pprof (default: [debug] address of its config).")
@click.option("--step-timeout", type=float, default=20.0, show_default=True, help="Deadline of each step, seconds.")
def command(
    output: str | None,
    since: str,
    no_dump: bool,
    runtime_endpoint: str,
    containerd_pid: int | None,
    debug_socket: str | None,
    step_timeout: float,
) -> None:
    """Collect an evidence bundle from this node (run as root on the node, or in the DaemonSet).

    Changes nothing on the node except the goroutine dumps it asks for: SIGUSR1 to containerd
    (which writes /tmp/containerd.<pid>.stacks.log itself) and to each containerd-shim (which
    log their dump through containerd). --no-dump skips them. Runs no binary of the node's
    processes (versions are read from their files); the only commands are journalctl (and dmesg
    without /dev/kmsg) at fixed paths. The manifest's `actions` list every command, signal and
    socket call, and so does the last lines of the output.
    """
    parse_since(since)
    if output:
        out_dir = Path(output).resolve().parent
        if not out_dir.is_dir():
            raise UserError(f"output directory {out_dir} does not exist")
        if not os.access(out_dir, os.W_OK):
            raise UserError(f"output directory {out_dir} is not writable")
    opts = CollectOptions(
        output=output,
        since=since,
        dump=not no_dump,
        runtime_endpoint=runtime_endpoint,
        containerd_pid=containerd_pid,
        debug_socket=debug_socket,
        step_timeout=step_timeout,
        log=lambda msg: click.echo(f"pleg-doctor collect: {msg}", err=True),
    )
    try:
        path = collect_bundle(opts)
    except OSError as exc:
        raise UserError(f"cannot write the bundle: {exc.strerror or exc}") from None
    import json
    import tarfile

    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        manifest = json.loads(member.read()) if member else {}
    files = manifest.get("files", [])
    failed = [f for f in files if f.get("error")]
    click.echo(str(path))
    click.echo(
        f"pleg-doctor collect: {len(files) - len(failed)} files, {len(failed)} steps failed (see manifest.json)",
        err=True,
    )
    for change in manifest.get("changes", []):
        click.echo(f"pleg-doctor collect: changed on the node: {change}", err=True)
    # exactly what was run, signalled and called (manifest `actions`), never a vaguer "nothing"
    for line in summarize_actions(manifest.get("actions", [])):
        click.echo(f"pleg-doctor collect: {line}", err=True)
    sys.stdout.flush()
