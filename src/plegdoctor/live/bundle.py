"""Evidence bundle writer: members staged next to the output, redacted, then one atomic rename.

Layout (design.md "Bundle format"): `manifest.json` first (so `analyze` learns each member's
kind before reading it), then the members at the archive root (`proc/pressure/io`,
`goroutines/containerd-1234.stacks.log`, ...). The manifest records, per member: path, kind
(a parser KIND of plegdoctor.parsers), sha256, size, source or command, started, seconds,
error, redactions. A step that failed keeps its entry with `error` and no sha256.

Nothing is written outside the output's directory: members are staged in a hidden temporary
directory there, the archive is written to a temporary file there, fsynced, and renamed over
the output path; the staging directory is removed on success and on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plegdoctor import __version__
from plegdoctor.live.redact import REDACTED, RedactionRefused, redact_line, redactor_for

__all__ = ["MAX_MEMBER", "REDACTED", "SCHEMA", "BundleWriter", "MemberEntry", "redact_line"]

SCHEMA = "pleg-doctor/bundle/v1"
MAX_MEMBER = 256 << 20  # a member is cut (and says so) beyond this size


@dataclass
class MemberEntry:
    path: str
    kind: str | None
    source: str | None = None
    command: list[str] | None = None
    started: str = ""
    seconds: float = 0.0
    size: int = 0
    sha256: str | None = None
    error: str | None = None
    redactions: int = 0
    truncated: bool = False
    note: str | None = None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _safe_member(path: str) -> str:
    p = Path(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"unsafe bundle member name {path!r}")
    return p.as_posix()


class BundleWriter:
    """Stage members, then `close()` writes `output` atomically. Use as a context manager."""

    def __init__(self, output: str | Path, node: str, extra: dict[str, Any] | None = None):
        self.output = Path(output)
        self.node = node
        self.extra = dict(extra or {})
        self.entries: list[MemberEntry] = []
        self.changes: list[str] = []  # what collect did to the node (SIGUSR1 dumps)
        self.notes: list[str] = []
        self.collected_at = _now_iso()
        out_dir = self.output.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=".pleg-doctor-stage-", dir=out_dir))
        self._closed = False

    # -- adding members -----------------------------------------------------------------
    def _begin(self, path: str, kind: str | None, **meta: Any) -> tuple[MemberEntry, Path]:
        name = _safe_member(path)
        if any(e.path == name for e in self.entries):
            raise ValueError(f"duplicate bundle member {name}")
        entry = MemberEntry(path=name, kind=kind, started=_now_iso(), **meta)
        self.entries.append(entry)
        dest = self.stage / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        return entry, dest

    def add_text(
        self, path: str, kind: str | None, text: str | Iterable[str], *, redact: bool = True, **meta: Any
    ) -> MemberEntry:
        """Add text (a string or an iterable of lines, newline-terminated or not).

        The text goes through the redactor of its kind (plegdoctor.live.redact.redactor_for):
        by structure for configs and JSON, line rules for the rest; `redact=False` (goroutine
        dumps, sample series) still removes known token prefixes and URL userinfo. Lines a
        producer redacted itself (`RedactedLines`, the ps table's argv) add their count."""
        t0 = time.monotonic()
        entry, dest = self._begin(path, kind, **meta)
        lines: Iterable[str] = text.splitlines(keepends=True) if isinstance(text, str) else text
        redactor = redactor_for(kind, entry.path, redact)
        h = hashlib.sha256()
        size = 0
        try:
            with open(dest, "wb") as fh:
                for line in redactor.lines(ln if ln.endswith("\n") else ln + "\n" for ln in lines):
                    data = line.encode("utf-8", "surrogateescape")
                    if size + len(data) > MAX_MEMBER:
                        entry.truncated = True
                        entry.note = f"cut at {MAX_MEMBER} bytes"
                        break
                    fh.write(data)
                    h.update(data)
                    size += len(data)
        except RedactionRefused as exc:
            dest.unlink(missing_ok=True)
            entry.error = str(exc)
            entry.seconds = round(time.monotonic() - t0, 3)
            return entry
        entry.redactions = redactor.count + getattr(text, "redactions", 0)
        note = getattr(redactor, "note", None)
        if note:
            entry.note = f"{entry.note}; {note}" if entry.note else note
        entry.size, entry.sha256 = size, h.hexdigest()
        entry.seconds = round(time.monotonic() - t0, 3)
        return entry

    def add_failed(self, path: str, kind: str | None, error: str, **meta: Any) -> MemberEntry:
        entry, _ = self._begin(path, kind, **meta)
        entry.error = " ".join(error.split()) or "failed"
        return entry

    def add_step(self, path: str, kind: str | None, fn: Any, *, redact: bool = True, **meta: Any) -> MemberEntry:
        """Run `fn()` -> text/lines and add it; any exception becomes the entry's error."""
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as exc:  # every step records its error and collect goes on
            entry = self.add_failed(path, kind, f"{type(exc).__name__}: {exc}", **meta)
            entry.seconds = round(time.monotonic() - t0, 3)
            return entry
        entry = self.add_text(path, kind, result, redact=redact, **meta)
        entry.seconds = round(time.monotonic() - t0, 3)
        return entry

    # -- finishing ------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "tool": {"name": "pleg-doctor", "version": __version__},
            "node": self.node,
            "collected_at": self.collected_at,
            "finished_at": _now_iso(),
            "changes": list(self.changes),
            "notes": list(self.notes),
            **self.extra,
            "files": [
                {k: v for k, v in asdict(e).items() if v not in (None, False) or k in ("kind", "error")}
                for e in self.entries
            ],
        }

    def close(self) -> Path:
        """Write the archive atomically; returns the output path."""
        if self._closed:
            return self.output
        self._closed = True
        fd, tmp_name = tempfile.mkstemp(prefix=".pleg-doctor-", suffix=".tar.gz.tmp", dir=self.output.parent)
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
                    data = json.dumps(self.manifest(), indent=2).encode()
                    info = tarfile.TarInfo("manifest.json")
                    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                    tar.addfile(info, io.BytesIO(data))
                    for e in self.entries:
                        if e.error is not None and e.sha256 is None:
                            continue
                        src = self.stage / e.path
                        info = tarfile.TarInfo(e.path)
                        info.size, info.mtime, info.mode = src.stat().st_size, int(time.time()), 0o644
                        with open(src, "rb") as fh:
                            tar.addfile(info, fh)
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(tmp_name, 0o600)  # bundles hold logs: readable by the owner only
            os.replace(tmp_name, self.output)
            with contextlib.suppress(OSError):
                dfd = os.open(self.output.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
        return self.output

    def abort(self) -> None:
        self._closed = True
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
