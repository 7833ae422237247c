"""The lab's ledger of everything it started or changed, so `lab down` can undo it after a crash.

Every resource is written to `<lab dir>/state.json` *before* the lab relies on it (write-ahead:
a process right after it is spawned, a mount right after it succeeds, a sysctl with its old value
before the new one is written). `teardown()` undoes the entries in reverse order:

- process: SIGTERM, then SIGKILL after a grace period, only if the PID still belongs to the same
  process (its start time in /proc/<pid>/stat matches the one recorded); never by name.
- mount / fuse: unmount (lazy as a last resort); FUSE mounts with `fusermount3 -u`.
- loop: `losetup -d` only if the device still points at the recorded backing file.
- sysctl: write the recorded old value back.

Besides the ledger, teardown also sweeps what containerd started on our behalf and we could not
record (runc shims, overlay rootfs mounts): any process whose command line names the lab's
containerd socket, and any mount below the lab directory. Both are matched on the lab directory
path, never on a program name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
DIRTY_PAIRS = {
    "vm.dirty_bytes": "vm.dirty_ratio",
    "vm.dirty_ratio": "vm.dirty_bytes",
    "vm.dirty_background_bytes": "vm.dirty_background_ratio",
    "vm.dirty_background_ratio": "vm.dirty_background_bytes",
}


@dataclass(slots=True)
class Resource:
    """One thing the lab started or changed. `kind` is process|mount|fuse|loop|sysctl|dir."""

    kind: str
    name: str  # what it is for, e.g. "nbdkit", "slow disk", "vm.dirty_bytes"
    pid: int = 0
    start_time: int = 0  # /proc/<pid>/stat field 22 (clock ticks since boot), guards against PID reuse
    path: str = ""  # mount target, loop device, sysctl /proc path
    backing: str = ""  # loop backing file
    old_value: str = ""  # sysctl value to restore
    argv: list[str] = field(default_factory=list)


def proc_start_time(pid: int) -> int:
    """The start time of a process (clock ticks since boot), 0 if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return 0


def proc_state(pid: int) -> str:
    """One-letter process state (R, S, D, Z, ...), '' when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0] if rest else ""


def alive(pid: int, start_time: int) -> bool:
    """True when `pid` still runs and is the process recorded (same start time); zombies count as gone."""
    if pid <= 0:
        return False
    st = proc_start_time(pid)
    if st == 0 or (start_time and st != start_time):
        return False
    return proc_state(pid) not in ("Z", "X", "")


def _mounts() -> list[str]:
    """Mount targets in /proc/self/mountinfo, in mount order (octal escapes decoded)."""
    out: list[str] = []
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4:
            out.append(_unescape(parts[4]))
    return out


def _unescape(field_: str) -> str:
    """Decode mountinfo's octal escapes (`\\040` for a space)."""
    if "\\" not in field_:
        return field_
    out = []
    i = 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def is_mounted(target: str) -> bool:
    return os.path.realpath(target) in _mounts() or target in _mounts()


def mounts_under(directory: str | Path) -> list[str]:
    """Mount targets at or below `directory`, deepest (and most recent) first."""
    base = os.path.realpath(directory).rstrip("/") + "/"
    found = [m for m in _mounts() if (m + "/").startswith(base)]
    # reverse mount order first, then deeper paths first, so stacked mounts come off top-down
    ordered = list(reversed(found))
    ordered.sort(key=lambda m: m.count("/"), reverse=True)
    return ordered


def pids_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (used with the lab directory path only)."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and proc_state(pid) not in ("Z", "X", ""):
            pids.append(pid)
    return pids


def run_quiet(argv: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run a helper command with a deadline; return (exit code, stderr+stdout tail)."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer within {timeout:g}s"
    return cp.returncode, (cp.stderr + cp.stdout).strip()[-500:]


class LabState:
    """The ledger at `<lab dir>/state.json`. Thread-safe; every change is written atomically."""

    def __init__(self, lab_dir: str | Path):
        self.lab_dir = Path(lab_dir)
        self.path = self.lab_dir / STATE_FILE
        self._lock = threading.Lock()
        self.resources: list[Resource] = []
        self.info: dict[str, Any] = {}
        self.load()

    # -- persistence ------------------------------------------------------------------------
    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        self.resources = [Resource(**r) for r in data.get("resources", [])]
        self.info = dict(data.get("info", {}))

    def save(self) -> None:
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {"resources": [asdict(r) for r in self.resources], "info": self.info}
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def add(self, res: Resource) -> Resource:
        with self._lock:
            self.resources.append(res)
            self.save()
        return res

    def remove(self, res: Resource) -> None:
        with self._lock:
            self.resources = [r for r in self.resources if r is not res]
            self.save()

    def set_info(self, **kw: Any) -> None:
        with self._lock:
            self.info.update(kw)
            self.save()

    # -- recording helpers ------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Resource:
        """Start a daemon in its own session (so a Ctrl-C of the lab does not hit it before cleanup)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        # reap it in the background so an early exit does not leave a zombie behind
        threading.Thread(target=proc.wait, daemon=True, name=f"reap-{name}").start()
        return self.add(Resource("process", name, pid=proc.pid, start_time=proc_start_time(proc.pid), argv=argv))

    def track_process(self, name: str, pid: int) -> Resource:
        return self.add(Resource("process", name, pid=pid, start_time=proc_start_time(pid)))

    def record_absent_dirs(self, *paths: str) -> None:
        """Directories that do not exist yet but that the lab's tools create as a side effect
        (mount(8)'s /run/mount, containerd's /run/containerd): removed at teardown if empty,
        so /run is left as it was found."""
        for path in paths:
            if not os.path.exists(path) and not any(r.kind == "dir" and r.path == path for r in self.resources):
                self.add(Resource("dir", "side-effect directory", path=path))

    def record_sysctl(self, name: str) -> None:
        """Record a sysctl's current value (once) so teardown restores it, without changing it."""
        path = "/proc/sys/" + name.replace(".", "/")
        if not any(r.kind == "sysctl" and r.path == path for r in self.resources):
            self.add(Resource("sysctl", name, path=path, old_value=Path(path).read_text().strip()))

    def set_sysctl(self, name: str, value: str) -> None:
        """Set a sysctl (dotted name), recording the first old value so it is restored on down.

        The dirty limits come in pairs (dirty_bytes/dirty_ratio, dirty_background_bytes/
        dirty_background_ratio): writing one zeroes the other, and 0 is not a valid value for
        the *_bytes ones. So both members of a pair are recorded, and teardown writes back the
        member that was non-zero (which zeroes its partner as it was)."""
        partner = DIRTY_PAIRS.get(name)
        if partner:
            self.record_sysctl(partner)
        self.record_sysctl(name)
        Path("/proc/sys/" + name.replace(".", "/")).write_text(value)

    def restore_sysctls(self) -> list[str]:
        """Put back every sysctl the lab changed; return error lines (entries that failed stay recorded)."""
        errors: list[str] = []
        for res in [r for r in reversed(self.resources) if r.kind == "sysctl"]:
            errors += self.undo(res)
        return errors

    # -- teardown ---------------------------------------------------------------------------
    def undo(self, res: Resource) -> list[str]:
        """Undo one recorded resource now and drop it from the ledger; return error lines."""
        errors: list[str] = []
        self._undo(res, errors)
        if not errors:
            self.remove(res)
        return errors

    def _undo(self, res: Resource, errors: list[str]) -> None:
        if res.kind == "process":
            stop_pid(res.pid, res.start_time, res.name)
            if alive(res.pid, res.start_time):
                errors.append(f"{res.name} (pid {res.pid}) did not stop")
        elif res.kind in ("mount", "fuse"):
            if is_mounted(res.path):
                err = unmount(res.path, fuse=res.kind == "fuse")
                if err:
                    errors.append(err)
        elif res.kind == "loop":
            backing = loop_backing(res.path)
            if backing and (not res.backing or os.path.realpath(backing) == os.path.realpath(res.backing)):
                rc, out = run_quiet(["losetup", "-d", res.path])
                if rc != 0:
                    errors.append(f"losetup -d {res.path}: {out}")
        elif res.kind == "dir":
            with contextlib.suppress(OSError):  # not empty (someone else uses it) or gone: leave it
                os.rmdir(res.path)
        elif res.kind == "sysctl":
            if res.name in DIRTY_PAIRS and res.old_value.strip() == "0":
                return  # its partner was the one in force: restoring the partner zeroes this one
            try:
                Path(res.path).write_text(res.old_value)
            except OSError as exc:
                errors.append(f"restore {res.name}={res.old_value}: {exc}")

    def teardown(self, sweep_text: str | None = None) -> list[str]:
        """Undo everything recorded (reverse order) and sweep leftovers; return error lines."""
        errors: list[str] = []
        # 1. containerd and what it started (shims, containers) first, so the mounts are free; the
        #    disk's daemons (nbdfuse, nbdkit) must outlive every mount above them: they go in step 3
        procs = [r for r in reversed(self.resources) if r.kind == "process"]
        for res in procs:
            if res.name.startswith("containerd"):
                self._undo(res, errors)
        if sweep_text:
            from plegdoctor.testbed.procs import descendants

            leftovers = pids_mentioning(sweep_text)
            # containers are children of their shim: stop them too, or they outlive it
            for pid in [*descendants(leftovers), *leftovers]:
                stop_pid(pid, proc_start_time(pid), "leftover", grace=2.0)
        # 2. mounts below the lab dir that containerd made (overlay rootfs, shm) and our own
        for target in mounts_under(self.lab_dir):
            if not any(r.kind == "fuse" and r.path == target for r in self.resources):
                err = unmount(target, fuse=False)
                if err:
                    errors.append(err)
        # 3. the ledger in reverse: loop devices, fuse mounts, sysctls (processes again, harmlessly)
        for res in list(reversed(self.resources)):
            self._undo(res, errors)
        for res in list(self.resources):
            if res.kind != "process" or not alive(res.pid, res.start_time):
                self.remove(res)
        return errors


def stop_pid(pid: int, start_time: int, name: str, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` s, then SIGKILL; only if the PID is still the recorded process."""
    if not alive(pid, start_time):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, start_time):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and alive(pid, start_time):
        time.sleep(0.1)


def unmount(target: str, fuse: bool = False) -> str:
    """Unmount `target`; lazy unmount as a last resort. Return an error line or ''."""
    if fuse:
        rc, out = run_quiet(["fusermount3", "-u", target], timeout=120)
        if rc == 0 or not is_mounted(target):
            return ""
    rc, out = run_quiet(["umount", target], timeout=600)
    if rc == 0 or not is_mounted(target):
        return ""
    rc2, out2 = run_quiet(["umount", "-l", target], timeout=60)
    if rc2 == 0:
        return ""
    return f"umount {target}: {out or out2}"


def loop_backing(device: str) -> str:
    """The backing file of a loop device ('' when the device is not attached)."""
    name = os.path.basename(device)
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def lab_lock(lab_dir: Path, what: str, force: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the lab directory (one `lab run`/`up`/`down` at a time).

    The lock is an flock on `<lab>/lock`, so it goes away with its holder, also after a crash:
    `lab down` after a crash always gets it. `force` goes on without it (down while a run hangs).
    """
    import fcntl

    from plegdoctor.errors import UserError

    lab_dir.mkdir(parents=True, exist_ok=True)
    path = lab_dir / "lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another pleg-doctor lab command"
            if not force:
                raise UserError(
                    f"{holder} is using {lab_dir}: wait for it, stop it (Ctrl-C or kill its PID: it cleans up), "
                    "or use `lab down --force`"
                ) from None
            yield
            return
        fh.seek(0)
        fh.truncate()
        fh.write(f"pleg-doctor lab {what} (pid {os.getpid()})\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt for the duration, so `finally` blocks clean up."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not in the main thread
            old[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
