"""Goroutine dumps (`goroutines/...`, read by plegdoctor.parsers.goroutine_dump): the only thing
collect changes on the node.

containerd's: `GET /debug/pprof/goroutine?debug=2` on its debug socket when one is configured
(`--debug-socket`, else `[debug] address` of its config), else SIGUSR1, after which containerd
writes `containerd.<pid>.stacks.log` in its TMPDIR itself (read back through its root; left in
place, as a manual SIGUSR1 would). The shims': SIGUSR1 to each shim in containerd's mount
namespace (at most --max-shims), their dumps read back from containerd's log, which relays
them with `pid=<shim pid>`. Every wait has the dump deadline; every read is bounded.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from plegdoctor.live.actions import Actions, StepTimeout
from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.containerd_config import debug_address_from_config
from plegdoctor.live.procfs import environ_of, in_root, read_text
from plegdoctor.live.sources import logs
from plegdoctor.live.sources.base import CollectOptions, CollectRun, NodeSource
from plegdoctor.live.sources.runtime import config_text_of, log_file_of, runtime_of, shims_of
from plegdoctor.live.tools import MAX_LOG_BYTES, TRUSTED_TOOLS, run_command, trusted_tool

DUMP_BEGIN = "=== BEGIN goroutine stack dump ==="
SHIM_LOG_BYTES = 32 << 20  # the newest bytes of containerd's log searched for the shims' dumps


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
                return read_text(path, MAX_LOG_BYTES).splitlines(keepends=True)
            last_size = sig[2]
        time.sleep(0.1)
    raise StepTimeout(f"{path} was not written within {timeout:g}s (is the process frozen or stopped?)")


def shim_dump_lines(log_lines: Iterable[str], shim_pid: int) -> list[str]:
    """The goroutine-dump log lines a shim wrote (containerd relays them with pid=<shim pid>)."""
    needle = f"pid={shim_pid}"
    return [ln for ln in log_lines if DUMP_BEGIN in ln and re.search(rf"(?<![\w=]){re.escape(needle)}\b", ln)]


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
                lines = list(logs.read_tail_lines(log_file, SHIM_LOG_BYTES))
            elif logs.journal_available():  # looked up here: tests replace it
                journalctl = trusted_tool("journalctl") or TRUSTED_TOOLS["journalctl"][0]
                argv = [journalctl, "-u", "containerd", "--since", "-2min", "--all", "--no-pager", "-o", "cat"]
                lines = run_command(argv, 10, SHIM_LOG_BYTES, actions)
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
                if log_file or logs.journal_available()
                else "no containerd log"
            )
            w.add_failed(
                member,
                "goroutine-dump",
                f"shim dump not found in containerd's log within {opts.dump_timeout:g}s ({why})",
            )
            say(f"{member}: not found")


def collect_containerd(run: CollectRun, src: NodeSource) -> None:
    """containerd's dump: pprof on its debug socket, else SIGUSR1 and its dump file."""
    rt, opts, actions, w = runtime_of(run), run.opts, run.actions, run.w
    ctd_pid = rt.pid
    if not (opts.dump and rt.containerd and ctd_pid is not None):
        return
    debug_socket = opts.debug_socket or debug_address_from_config(config_text_of(run))
    if debug_socket:
        sock = in_root(ctd_pid, debug_socket)
        t0 = time.monotonic()
        entry = run.step(
            f"goroutines/containerd-{ctd_pid}.pprof-debug2.txt",
            src.kind,
            lambda: pprof_goroutines(sock, opts.dump_timeout),
            deadline="dump",
            redact=False,
            source=f"GET /debug/pprof/goroutine?debug=2 on {debug_socket}",
        )
        actions.socket(debug_socket, "GET /debug/pprof/goroutine?debug=2", time.monotonic() - t0, error=entry.error)
        if entry.error is None:
            return
    tmpdir = environ_of(ctd_pid).get("TMPDIR") or "/tmp"
    dump_path = os.path.join(tmpdir, f"containerd.{ctd_pid}.stacks.log")
    readable = in_root(ctd_pid, tmpdir) + f"/containerd.{ctd_pid}.stacks.log"
    before = file_signature(readable)
    why = f"goroutine dump of containerd (the process serving {opts.runtime_endpoint}, {rt.how})"
    member = f"goroutines/containerd-{ctd_pid}.stacks.log"
    try:
        os.kill(ctd_pid, signal.SIGUSR1)
    except OSError as exc:
        actions.signal(ctd_pid, signal.SIGUSR1, why, error=exc.strerror or str(exc))
        w.add_failed(member, src.kind, f"SIGUSR1 to pid {ctd_pid}: {exc.strerror or exc}")
        return
    actions.signal(ctd_pid, signal.SIGUSR1, why)
    w.changes.append(
        f"sent SIGUSR1 to containerd pid {ctd_pid}: it wrote its goroutine dump to {dump_path} "
        "(containerd's own file, left in place) and logged it"
    )
    run.step(
        member,
        src.kind,
        lambda: wait_for_new_file(readable, before, opts.dump_timeout),
        deadline="dump",
        redact=False,
        source=dump_path,
    )


def collect_shims(run: CollectRun, src: NodeSource) -> None:
    """The shims' dumps: SIGUSR1 to each, read back from containerd's log."""
    rt, opts, actions = runtime_of(run), run.opts, run.actions
    if not (opts.dump and rt.containerd and rt.pid is not None):
        return
    shims = shims_of(run)[: opts.max_shims]
    if not shims:
        return
    sent = []
    for pid in shims:
        why = f"goroutine dump of containerd-shim (in containerd pid {rt.pid}'s mount namespace)"
        try:
            os.kill(pid, signal.SIGUSR1)
            actions.signal(pid, signal.SIGUSR1, why)
            sent.append(pid)
        except OSError as exc:
            actions.signal(pid, signal.SIGUSR1, why, error=exc.strerror or str(exc))
    if sent:
        run.w.changes.append(f"sent SIGUSR1 to {len(sent)} containerd-shim processes ({', '.join(map(str, sent))})")
    _collect_shim_dumps(run.w, shims, rt.pid, log_file_of(run), run.since, opts, run.say, actions)
