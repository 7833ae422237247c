"""The capture dir of `watch`: created 0700 and refused when unsafe, stage dirs a killed collect left
removed, and the state that survives a restart (`STATE_FILE`: the last successful relist, when the
runtime went down, the last capture), so a watch restarted mid-stall still reports the stall's
full age and keeps its cooldown."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from plegdoctor.errors import UserError

STAGE_PREFIX = ".pleg-doctor-stage-"  # live/bundle.BundleWriter's staging dirs
STAGE_MAX_AGE = 3600.0  # a collect's steps are bounded (step timeouts); an hour-old stage is dead
STATE_FILE = ".pleg-doctor-watch-state.json"
STATE_MAX_BYTES = 4096


def prepare_capture_dir(directory: str) -> Path:
    """Create `directory` (and missing parents) with mode 0700, or check the existing one; UserError
    (one line) when it is not a directory, is a symlink, is writable by group/others or owned by another uid."""
    path = Path(os.path.abspath(directory))
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise UserError(f"--capture-dir: cannot create {d}: {exc.strerror or exc}") from None
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UserError(f"--capture-dir: {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"--capture-dir: {path} is a symlink; give the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"--capture-dir: {path} exists and is not a directory")
    if st.st_mode & 0o022:
        raise UserError(
            f"--capture-dir: {path} is writable by group or others (mode {st.st_mode & 0o777:o}); chmod 700 it"
        )
    if st.st_uid != os.geteuid():
        raise UserError(f"--capture-dir: {path} is owned by uid {st.st_uid}, not by us (uid {os.geteuid()})")
    return path


def _newest_mtime(path: Path) -> float:
    """The newest mtime of a directory and everything in it (symlinks not followed)."""
    newest = os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def clean_stage_dirs(directory: str | Path, now: float | None = None, max_age: float = STAGE_MAX_AGE) -> list[Path]:
    """Remove `.pleg-doctor-stage-*` directories (never symlinks or files) in `directory` whose newest
    entry is older than `max_age` seconds: staging a collect that was killed left behind. Younger ones
    may belong to a collect still running and are left alone. Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for e in entries:
        if not e.name.startswith(STAGE_PREFIX) or not e.is_dir(follow_symlinks=False):
            continue
        path = Path(e.path)
        try:
            if now - _newest_mtime(path) < max_age:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: does not follow symlinks
        if not os.path.lexists(path):
            removed.append(path)
    return removed


@dataclass
class PersistedState:
    """What survives a watch restart (in `STATE_FILE`): epoch seconds or None."""

    last_success: float | None = None
    down_since: float | None = None
    last_capture: float | None = None

    @classmethod
    def load(cls, path: Path, now: float, booted: float | None) -> tuple[PersistedState, str]:
        """(state, '' or one line why the file was ignored). Times from the future or from before
        this boot are dropped (a node that rebooted did not stall all night)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return cls(), ""
        except OSError as exc:
            return cls(), f"{path}: {exc.strerror or exc}; ignored"
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return cls(), f"{path} is not a regular file; ignored"
            raw = f.read(STATE_MAX_BYTES + 1)
        if len(raw) > STATE_MAX_BYTES:
            return cls(), f"{path} is larger than {STATE_MAX_BYTES} bytes; ignored"
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            return cls(), f"{path} is not JSON ({exc}); ignored"
        if not isinstance(doc, dict):
            return cls(), f"{path} is not a JSON object; ignored"
        out = cls()
        for key in ("last_success", "down_since", "last_capture"):
            v = doc.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
                t = float(v)
                if t <= now + 60 and (booted is None or key == "last_capture" or t >= booted):
                    setattr(out, key, t)
        return out, ""

    def save(self, path: Path) -> None:
        """Atomic write (temporary file, rename), mode 0600."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        data = json.dumps(
            {"last_success": self.last_success, "down_since": self.down_since, "last_capture": self.last_capture}
        ).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
