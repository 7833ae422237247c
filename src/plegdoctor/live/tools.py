"""The only programs collect runs: fixed system tools at fixed paths (`TRUSTED_TOOLS`), never a
PATH lookup, never a binary found through /proc/<pid>/exe or named after a process. `run_tail`
is the one exec site of the live package (tests/test_collect_noexec.py holds the allowlist): a
deadline kills the tool, stdout is streamed keeping the newest bytes, stderr is bounded."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass

from plegdoctor.live.actions import Actions, StepTimeout

MAX_LOG_BYTES = 64 << 20  # the newest bytes kept of a log or a tool's output

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
