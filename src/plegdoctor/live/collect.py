"""`pleg-doctor collect`: an evidence bundle from this node (design.md "Bundle format").

What it reads: kubelet and containerd logs (journalctl --all when there is a journal, else
the log file containerd writes to, else well-known files), containerd's goroutine dump (pprof
on the debug socket when configured, else SIGUSR1 and /tmp/containerd.<pid>.stacks.log), the
shims' dumps (SIGUSR1 per shim, read back from containerd's log), /proc/pressure, two samples
of /proc/diskstats, meminfo and vmstat, the mount table, the containerd config (file and
`containerd config dump`), versions, dmesg, every task's state and wait channel (read from
/proc/<pid>/task/<tid>/{stat,wchan}; the runtime's tasks always, however many tasks the node
has), kernel stacks of D-state tasks and of the runtime's tasks, the runtime processes'
/proc/<pid>/status (TracerPid) and cgroup freezer state, the load average, and the boot time.
A bundle captured by `watch` also records why (manifest `trigger`, plegdoctor.live.trigger).

What it changes on the node: nothing, except the SIGUSR1 dumps it asks for. containerd
writes its dump file itself (`containerd.<pid>.stacks.log` in its TMPDIR, overwritten at each
signal); we leave it there, as a manual SIGUSR1 would. Every step has a deadline and records
its error in the manifest; a hung runtime never blocks the collection.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from plegdoctor.errors import UserError
from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.cri.client import DEFAULT_ENDPOINT, CRIClient, CRIError, socket_path
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


# -- discovery ---------------------------------------------------------------------------------
def _unix_inodes(pid: int, path: str) -> set[str]:
    out: set[str] = set()
    try:
        with open(f"/proc/{pid}/net/unix") as fh:
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


def find_containerd_pid(endpoint: str = DEFAULT_ENDPOINT) -> int | None:
    """The containerd serving `endpoint` (by the socket inode it holds); else the only containerd."""
    candidates = [p for p in iter_procs() if p.comm == "containerd"]
    path = socket_path(endpoint)
    if path:
        for p in candidates:
            inodes = _unix_inodes(p.pid, path)
            if inodes and _has_socket_inode(p.pid, inodes):
                return p.pid
    if len(candidates) == 1 and (path is None or path == socket_path(DEFAULT_ENDPOINT)):
        return candidates[0].pid
    return None


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


def run_command(cmd: list[str], timeout: float, max_bytes: int = MAX_LOG_BYTES) -> list[str]:
    """Run a command with a deadline; its stdout lines (stderr joins the error when it fails)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        except FileNotFoundError:
            raise RuntimeError(f"{cmd[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise StepTimeout(f"{' '.join(cmd)}: no result within {timeout:g}s") from None
        out.seek(0)
        data = out.read(max_bytes)
        if proc.returncode != 0:
            err.seek(0)
            msg = err.read(400).decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}: {msg[-1] if msg else ''}")
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def journal_available() -> bool:
    if shutil.which("journalctl") is None:
        return False
    return any(os.path.isdir(d) and any(os.scandir(d)) for d in ("/var/log/journal", "/run/log/journal"))


def journal_lines(unit: str, since: datetime, timeout: float) -> list[str]:
    lines = run_command(
        [
            "journalctl",
            "-u",
            unit,
            "--since",
            since.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            "--all",
            "--no-pager",
            "-o",
            "short-iso-precise",
        ],
        timeout,
    )
    if not lines or (len(lines) == 1 and lines[0].startswith("-- No entries --")):
        raise RuntimeError(f"journal has no entries for unit {unit}")
    return lines


@dataclass
class Task:
    pid: int
    tid: int
    state: str
    comm: str
    wchan: str
    cmd: str


def iter_tasks(limit: int = MAX_TASKS) -> Iterator[Task]:
    """Every task's state, comm and wait channel, read from /proc/<pid>/task/<tid>/{stat,wchan}
    (no binary is run). At most `limit` tasks, but the runtime's own tasks (containerd, its
    shims, runc, crio, dockerd, kubelet) are always read, however many others there are."""
    n = 0
    for proc in iter_procs():
        runtime = proc.comm.startswith(RUNTIME_COMMS)
        if n >= limit and not runtime:
            continue
        cmd = " ".join(proc.cmdline) or f"[{proc.comm}]"
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
            yield Task(proc.pid, tid, state, comm, "-" if wchan == "0" else wchan, cmd)
            n += 1
            if n >= limit and not runtime:
                break


def ps_table(tasks: list[Task]) -> list[str]:
    """`ps -eLo pid,tid,stat,wchan:32,comm,cmd`-like table (read by plegdoctor.parsers.ps)."""
    lines = [f"{'PID':>7} {'TID':>7} STAT {'WCHAN':<32} {'COMMAND':<16} CMD\n"]
    for t in tasks:
        comm = t.comm.replace(" ", "_") or "-"
        lines.append(f"{t.pid:>7} {t.tid:>7} {t.state:<4} {t.wchan[:32]:<32} {comm:<16} {t.cmd}\n")
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
    lines: list[str] = []
    for t in tasks:
        if t.state != "D" and not is_runtime_task(t):
            continue
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


def dmesg_lines(timeout: float) -> list[str]:
    errors: list[str] = []
    for cmd in (["dmesg", "--time-format", "iso"], ["dmesg"]):
        try:
            return run_command(cmd, timeout)
        except (RuntimeError, StepTimeout) as exc:
            errors.append(str(exc))
    return kmsg_lines() or _raise(RuntimeError("; ".join(errors)))


def _raise(exc: Exception) -> Any:
    raise exc


def kmsg_lines(limit: int = 20000) -> list[str]:
    """Read /dev/kmsg without blocking; `<prio>,seq,usec,flags;msg` -> `[sec.usec] msg`."""
    out: list[str] = []
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return out
    try:
        while len(out) < limit:
            try:
                rec = os.read(fd, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except OSError:
                continue  # EPIPE: records overwritten while reading
            head, _, msg = rec.partition(";")
            parts = head.split(",")
            if len(parts) >= 3 and parts[2].isdigit():
                usec = int(parts[2])
                out.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {msg.splitlines()[0] if msg else ''}\n")
    finally:
        os.close(fd)
    return out


def go_build_version(path: str) -> str:
    """Go version from a Go binary's build info (`\\xff Go buildinf:` header), '' if not found."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 << 20)
    except OSError:
        return ""
    i = data.find(b"\xff Go buildinf:")
    if i < 0:
        return ""
    flags = data[i + 15]
    if flags & 2:  # Go >= 1.18: inline varint-prefixed strings after the 32-byte header
        pos = i + 32
        length, shift = 0, 0
        while pos < len(data):
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        return data[pos : pos + length].decode("utf-8", "replace")
    m = re.search(rb"go1\.\d+(?:\.\d+)?", data[i : i + 4096])
    return m.group(0).decode() if m else ""


def same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _runnable(name: str, pid: int | None) -> tuple[str | None, str | None]:
    """(binary to execute, binary to read) for the running `name` process.

    A binary found through /proc/<pid>/exe is never executed: a process can be in another
    mount namespace (a container may name itself "kubelet"), and running its binary as root
    on the host would run whatever it is. The one on PATH is run when it is the same file the
    process runs; the /proc copy is only read (Go build info)."""
    on_path = shutil.which(name)
    if pid is None:
        return on_path, on_path
    exe = f"/proc/{pid}/exe"
    return (on_path if on_path and same_file(exe, on_path) else None), exe


def versions_text(ctd_pid: int | None, timeout: float) -> list[str]:
    """Versions as `name: value` lines (read by plegdoctor.parsers.versions)."""
    uname = os.uname()
    lines = [f"kernel: {uname.release}\n", f"kernel_version: {uname.version}\n", f"machine: {uname.machine}\n"]
    with contextlib.suppress(OSError):
        lines.append("proc_version: " + Path("/proc/version").read_text().strip() + "\n")
    with contextlib.suppress(OSError):
        for line in Path(in_root(ctd_pid, "/etc/os-release")).read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                lines.append("os: " + line.split("=", 1)[1].strip('"') + "\n")
    kubelet = next((p for p in iter_procs() if p.comm == "kubelet"), None)
    # (name, binary to run for --version, binary to read the Go build info from)
    binaries: list[tuple[str, str | None, str | None]] = [
        ("containerd", *_runnable("containerd", ctd_pid)),
        ("runc", shutil.which("runc"), shutil.which("runc")),
        ("kubelet", *_runnable("kubelet", kubelet.pid if kubelet else None)),
    ]
    for name, path, image in binaries:
        if not path and not image:
            lines.append(f"{name}: not found\n")
            continue
        if path:
            try:
                out = run_command([path, "--version"], timeout)
                first = out[0].strip() if out else ""
                lines.append(f"{name}: {first}\n")
                lines.extend(f"{name}_detail: {ln.strip()}\n" for ln in out[1:5] if ln.strip())
            except (RuntimeError, StepTimeout) as exc:
                lines.append(f"{name}: error: {exc}\n")
        else:
            lines.append(f"{name}: not run: the running binary is not the {name} on PATH (read, not executed)\n")
        go = go_build_version(image or path or "")
        if go:
            lines.append(f"{name}_go: {go}\n")
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


def shim_pids_of(ctd_address: str | None) -> list[int]:
    out = []
    for p in iter_procs():
        if not p.comm.startswith("containerd-shim"):
            continue
        if ctd_address and not any(ctd_address == a or a.endswith(ctd_address) for a in p.cmdline):
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

    # 3. The runtime: which containerd, what it answers.
    ctd_pid = opts.containerd_pid or find_containerd_pid(opts.runtime_endpoint)
    info = read_proc(ctd_pid) if ctd_pid else None
    runtime: dict[str, Any] = {"endpoint": opts.runtime_endpoint, "containerd_pid": ctd_pid}
    try:
        if not opts.query_runtime:
            raise CRIError("skipped", "CRI not queried during a stall (the relist probe's call is pending)")
        with CRIClient(opts.runtime_endpoint) as client:
            v = client.version(timeout=3)
            runtime.update(name=v.runtime_name, version=v.runtime_version, api=v.runtime_api_version)
            t0 = time.monotonic()
            n = len(client.list_containers(timeout=5))
            runtime.update(containers=n, list_containers_seconds=round(time.monotonic() - t0, 3))
    except CRIError as exc:
        runtime["error"] = str(exc)
        say(f"runtime: {exc}")
    w.extra["runtime"] = runtime
    is_containerd = info is not None or runtime.get("name") in (None, "containerd")
    if runtime.get("name") not in (None, "containerd"):
        w.notes.append(f"runtime is {runtime['name']}, not containerd: containerd-specific steps skipped")
    if ctd_pid is None:
        w.notes.append(f"no containerd process found for {opts.runtime_endpoint}: dumps, config and its log skipped")

    # 4. Mounts and config.
    mountinfo = f"/proc/{ctd_pid}/mountinfo" if ctd_pid else "/proc/self/mountinfo"
    step("proc/mountinfo", "mounts", lambda: Path(mountinfo).read_text(), source=mountinfo)
    config_text = ""
    if info is not None and is_containerd:
        cfg = config_path_of(info)
        cfg_read = in_root(ctd_pid, cfg)
        entry = step("config/containerd.toml", "containerd-config", lambda: Path(cfg_read).read_text(), source=cfg)
        if entry.error is None:
            with contextlib.suppress(OSError):
                config_text = Path(cfg_read).read_text()
        runnable, _ = _runnable("containerd", ctd_pid)
        if runnable:
            step(
                "config/containerd-config-dump.toml",
                "containerd-config",
                lambda: run_command([runnable, "--config", cfg_read, "config", "dump"], T),
                command=["containerd", "--config", cfg, "config", "dump"],
            )
        else:
            w.add_failed(
                "config/containerd-config-dump.toml",
                "containerd-config",
                f"not run: containerd pid {ctd_pid} does not run the containerd on PATH (its binary is never executed)",
                command=["containerd", "--config", cfg, "config", "dump"],
            )

    # 5. Versions, dmesg.
    step("versions.txt", "versions", lambda: versions_text(ctd_pid, 5.0), timeout=T)
    step("kernel/dmesg.txt", "dmesg", lambda: dmesg_lines(T), command=["dmesg", "--time-format", "iso"])

    # 6. Goroutine dumps (the only thing that touches the node: SIGUSR1).
    log_file = stderr_log_file(ctd_pid) if ctd_pid else None
    if opts.dump and info is not None and ctd_pid is not None and is_containerd:
        debug_socket = opts.debug_socket or debug_address_from_config(config_text)
        got = False
        if debug_socket:
            sock = in_root(ctd_pid, debug_socket)
            entry = step(
                f"goroutines/containerd-{ctd_pid}.pprof-debug2.txt",
                "goroutine-dump",
                lambda: pprof_goroutines(sock, opts.dump_timeout),
                timeout=opts.dump_timeout + 1,
                redact=False,
                source=f"GET /debug/pprof/goroutine?debug=2 on {debug_socket}",
            )
            got = entry.error is None
        if not got:
            tmpdir = environ_of(ctd_pid).get("TMPDIR") or "/tmp"
            dump_path = os.path.join(tmpdir, f"containerd.{ctd_pid}.stacks.log")
            readable = in_root(ctd_pid, tmpdir) + f"/containerd.{ctd_pid}.stacks.log"
            before = file_signature(readable)
            os.kill(ctd_pid, signal.SIGUSR1)
            w.changes.append(
                f"sent SIGUSR1 to containerd pid {ctd_pid}: it wrote its goroutine dump to {dump_path} "
                "(containerd's own file, left in place) and logged it"
            )
            step(
                f"goroutines/containerd-{ctd_pid}.stacks.log",
                "goroutine-dump",
                lambda: wait_for_new_file(readable, before, opts.dump_timeout),
                timeout=opts.dump_timeout + 1,
                redact=False,
                source=dump_path,
            )
        shims = shim_pids_of(_grpc_address(info, config_text))[: opts.max_shims]
        if shims:
            for pid in shims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            w.changes.append(f"sent SIGUSR1 to {len(shims)} containerd-shim processes ({', '.join(map(str, shims))})")
            _collect_shim_dumps(w, shims, ctd_pid, log_file, since, opts, say)

    # 7. Logs.
    if ctd_pid is not None and is_containerd:
        _collect_log(w, "logs/containerd", "containerd", log_file, since, T, say, ["/var/log/containerd.log"])
    kubelet = next((p for p in iter_procs() if p.comm == "kubelet"), None)
    kubelet_file = stderr_log_file(kubelet.pid) if kubelet else None
    _collect_log(w, "logs/kubelet", "kubelet", kubelet_file, since, T, say, ["/var/log/kubelet.log"])


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
                lines = run_command(
                    ["journalctl", "-u", "containerd", "--since", "-2min", "--all", "--no-pager", "-o", "cat"], 10
                )
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
) -> None:
    kind = f"{unit}-log"
    errors: list[str] = []
    if journal_available():
        try:
            lines = run_with_deadline(lambda: journal_lines(unit, since, timeout), timeout + 1, f"journalctl -u {unit}")
            w.add_text(
                f"{base}.journal",
                "journal",
                lines,
                command=["journalctl", "-u", unit, "--since", since.isoformat(), "--all"],
            )
            return
        except Exception as exc:
            errors.append(str(exc))
    for path in [p for p in [log_file, *fallbacks] if p]:
        if not os.path.isfile(path):
            continue
        try:
            lines = run_with_deadline(_log_reader(path, unit, since), timeout, f"read {path}")
            w.add_text(f"{base}.log", kind, lines, source=path)
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
    log their dump through containerd). --no-dump skips them.
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
    if not manifest.get("changes"):
        click.echo("pleg-doctor collect: changed nothing on the node", err=True)
    sys.stdout.flush()
