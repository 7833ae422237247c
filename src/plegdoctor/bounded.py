"""Bounded reads of inputs (the machinery under `plegdoctor.inputs`): `Limits` (the
`analyze --max-*` options and the notices of the limits that fired), the byte budget every
decompressed read goes through (`_Budget`: bytes per input and per run, the compression
ratio, tarfile's header reads), compression detected by magic bytes, and the errors a read
may raise. Nothing here knows files, directories or archives (that is `inputs`).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

HEAD_BYTES = 64 * 1024
MAX_LINE = 64 * 1024 * 1024  # longer lines are skipped with a warning
MAX_ARCHIVE_DEPTH = 3
CHUNK = 1 << 20
MAX_TAR_HEADER = 1 << 20
_BUDGET_READ = 64 * 1024  # PAX / GNU long-name headers are read into memory by tarfile

MiB = 1 << 20
GiB = 1 << 30

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZ2_MAGIC = b"BZh"
ZIP_MAGIC = b"PK\x03\x04"


class _HeadStream(io.RawIOBase):
    """A one-shot stream that replays an already-read head, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._pos = 0
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(b)
        if self._pos < len(self._head):
            chunk = self._head[self._pos : self._pos + n]
            b[: len(chunk)] = chunk
            self._pos += len(chunk)
            return len(chunk)
        data = self._rest.read(n)
        if not data:
            return 0
        b[: len(data)] = data
        return len(data)


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass
class Limits:
    """How much one run reads. Defaults suit real nodes (a 500 MB journal, a bundle of a
    few thousand files, logs that xz packs 117:1); each field is an `analyze` option.

    Counted: bytes that come out of a decompressor (gzip/zstd/xz/bzip2, zip deflate) or
    a tar archive; a plain file is read whole (its size is what is on the disk).
    """

    max_input_bytes: int = 1 * GiB  # decompressed bytes of one input (file or member)
    max_total_bytes: int = 4 * GiB  # decompressed bytes over the whole run
    # decompressed : compressed, checked past ratio_floor. Measured (bench/bench_bombs.py
    # --ratios): a kubelet journal packs 16:1 (gzip -9) to 25:1 (zstd -19); a log of
    # nothing but time-stamped "PLEG is not healthy" lines 29:1 (gzip) to 117:1 (xz).
    max_ratio: float = 200.0
    ratio_floor: int = 16 * MiB  # a small input may expand as much as it likes
    max_members: int = 5_000  # archive members read per archive
    total: int = 0  # decompressed bytes so far (this run)
    total_hit: bool = False
    notices: list[tuple[str, str]] = field(default_factory=list)  # (input display, message)

    def notice(self, display: str, message: str) -> None:
        if (display, message) not in self.notices[-20:]:
            self.notices.append((display, message))

    def take_notices(self) -> list[tuple[str, str]]:
        out, self.notices = self.notices, []
        return out


class _Counting(io.RawIOBase):
    """Counts the compressed bytes a decompressor consumes."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(b))
        if not data:
            return 0
        n = len(data)
        b[:n] = data
        self.count += n
        return n


class _Budget(io.RawIOBase):
    """Counts the bytes coming out of `inner` against the run's Limits; at a limit it
    returns EOF and records one notice naming the option to raise."""

    def __init__(
        self,
        inner: BinaryIO,
        limits: Limits,
        display: str,
        *,
        per_input: bool = True,
        total: bool = True,
        consumed: Callable[[], int] | None = None,
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._display = display
        self._per_input = per_input
        self._total = total
        self._consumed = consumed
        self.produced = 0
        self.hit: str | None = None

    def readable(self) -> bool:
        return True

    def _stop(self, message: str) -> int:
        self.hit = message
        self._limits.notice(self._display, message)
        return 0

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.hit is not None:
            return 0
        lim = self._limits
        # small reads: a decompressor that fails (a truncated file) loses what that read held
        allowed = min(len(b), _BUDGET_READ)
        if self._per_input:
            allowed = min(allowed, lim.max_input_bytes - self.produced)
        if self._total:
            allowed = min(allowed, lim.max_total_bytes - lim.total)
        if allowed <= 0:
            if not self._inner.read(1):
                return 0  # ends exactly at the limit: nothing was cut
            if self._total and lim.total >= lim.max_total_bytes:
                lim.total_hit = True
                return self._stop(
                    f"run limit: {human_bytes(lim.max_total_bytes)} decompressed over all inputs; "
                    "the rest is not read (raise --max-total-bytes)"
                )
            return self._stop(
                f"input limit: read the first {human_bytes(lim.max_input_bytes)} decompressed, "
                "the rest is not read (raise --max-input-bytes)"
            )
        view = memoryview(b)[:allowed]
        readinto = getattr(self._inner, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:
            data = self._inner.read(allowed)
            n = len(data)
            view[:n] = data
        self.produced += n
        if self._total:
            lim.total += n
        if self._consumed is not None and self.produced > lim.ratio_floor:
            packed = max(self._consumed(), 1)
            if self.produced > lim.max_ratio * packed:
                self._stop(
                    f"compression ratio over {lim.max_ratio:g}:1 ({human_bytes(packed)} -> "
                    f"{human_bytes(self.produced)}): a decompression bomb? the rest is not read (raise --max-ratio)"
                )
        return n


def _decompressor(head: bytes, raw: BinaryIO) -> tuple[str | None, BinaryIO]:
    """Wrap `raw` (positioned at its start, `head` already peeked) by its magic."""
    # The codec modules are imported when an input needs them (plain files are the rule).
    if head.startswith(GZIP_MAGIC):
        import gzip

        return "gzip", gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head.startswith(XZ_MAGIC):
        import lzma

        return "xz", lzma.LZMAFile(raw)  # type: ignore[return-value]
    if head.startswith(BZ2_MAGIC) and len(head) > 3 and head[3:4].isdigit():
        import bz2

        return "bzip2", bz2.BZ2File(raw)  # type: ignore[return-value]
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        return "zstd", zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    return None, raw


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a (decompressed) input may raise: OS errors, truncation, and the
    decompressors' own error types, of the codec modules loaded so far (a codec never
    imported cannot have raised)."""
    out: list[type[BaseException]] = [OSError, EOFError, ValueError]
    codecs = (("lzma", "LZMAError"), ("zlib", "error"), ("zstandard", "ZstdError"), ("tarfile", "TarError"))
    for module, name in (*codecs, ("zipfile", "BadZipFile")):
        mod = sys.modules.get(module)
        if mod is not None:
            out.append(getattr(mod, name))
    return tuple(out)


def _is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"
