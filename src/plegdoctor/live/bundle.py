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
import re
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

SCHEMA = "pleg-doctor/bundle/v1"
MAX_MEMBER = 256 << 20  # a member is cut (and says so) beyond this size

REDACTED = "<redacted>"
# key = value / key: value / "key": "value" where the key names a secret
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|credential|private[_-]?key|"
    r"identitytoken|identity_token|registry_token|auth)[A-Za-z0-9_.-]*"
)
_KV = re.compile(
    r"""(?P<k>["']?(?i:""" + _SECRET_KEY + r""")["']?\s*[=:]\s*)"""
    r"""(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>[^']*)'|(?P<u>[^\s"',;}\]]+))"""
)
_BEARER = re.compile(r"(?i)\b(authorization\s*[:=]\s*)?(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# CRI configs printed by containerd: Envs:[]*KeyValue{&KeyValue{Key:FOO,Value:bar,},}
_CRI_ENV = re.compile(r"(&KeyValue\{Key:[^,}]*,Value:)([^}]*?)(,?\})")
# JSON env arrays: "env": ["A=b", ...] / "Env":[...]
_JSON_ENV = re.compile(r'("(?i:env|envs)"\s*:\s*\[)([^\]]*)(\])')
_ENV_ITEM = re.compile(r'"([^"=]+)=(?:[^"\\]|\\.)*"')
# URLs with user:password@
_URL_CRED = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)")


def redact_line(line: str) -> tuple[str, int]:
    """Redact secrets in one line of text; return (line, number of redactions)."""
    count = 0

    def kv(m: re.Match[str]) -> str:
        nonlocal count
        for group, quote in (("dq", '"'), ("sq", "'"), ("u", "")):
            value = m.group(group)
            if value is not None:
                if not value or value == REDACTED or value.lower() in ("bearer", "basic"):
                    return m.group(0)
                count += 1
                return f"{m.group('k')}{quote}{REDACTED}{quote}"
        return m.group(0)

    def bearer(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"{m.group(1) or ''}{m.group(2)} {REDACTED}"

    def cri_env(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"{m.group(1)}{REDACTED}{m.group(3)}"

    def json_env(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return m.group(1) + _ENV_ITEM.sub(lambda e: f'"{e.group(1)}={REDACTED}"', m.group(2)) + m.group(3)

    def url(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"{m.group(1)}{REDACTED}{m.group(2)}"

    line = _CRI_ENV.sub(cri_env, line)
    line = _JSON_ENV.sub(json_env, line)
    line = _BEARER.sub(bearer, line)
    line = _URL_CRED.sub(url, line)
    line = _KV.sub(kv, line)
    return line, count


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
        """Add text (a string or an iterable of lines, newline-terminated or not)."""
        t0 = time.monotonic()
        entry, dest = self._begin(path, kind, **meta)
        lines: Iterable[str] = text.splitlines(keepends=True) if isinstance(text, str) else text
        h = hashlib.sha256()
        size = 0
        with open(dest, "wb") as fh:
            for line in lines:
                if not line.endswith("\n"):
                    line += "\n"
                if redact:
                    line, n = redact_line(line)
                    entry.redactions += n
                data = line.encode("utf-8", "surrogateescape")
                if size + len(data) > MAX_MEMBER:
                    entry.truncated = True
                    entry.note = f"cut at {MAX_MEMBER} bytes"
                    break
                fh.write(data)
                h.update(data)
                size += len(data)
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
