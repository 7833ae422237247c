"""Turn what the user named (files, directories, archives, `-`) into a stream of Sources.

- Compression is detected from magic bytes, not names: gzip, zstd, xz, bzip2.
- Archives (tar, tar.gz/tgz/..., zip) are read member by member without unpacking to
  disk; members that are themselves compressed or archives are opened recursively.
  Links, devices and absolute or `..` member names are never followed or written.
- Directories are walked recursively in sorted order; symlinks to directories are not
  followed (no loops); special files are skipped.
- `-` reads standard input once.

`iter_sources()` is a generator and each Source's stream must be consumed before asking
for the next one (tar members are read sequentially). Nothing is ever written.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from plegdoctor.errors import InputError

HEAD_BYTES = 64 * 1024
MAX_LINE = 64 * 1024 * 1024  # longer lines are skipped with a warning
MAX_ARCHIVE_DEPTH = 3
CHUNK = 1 << 20

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
    for module, name in (("lzma", "LZMAError"), ("zlib", "error")):
        mod = sys.modules.get(module)
        if mod is not None:
            out.append(getattr(mod, name))
    return tuple(out)


def _is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


@dataclass
class Source:
    """One logical input: a file, an archive member, or stdin, decompressed."""

    display: str
    mtime: float | None
    size: int | None
    compression: list[str] = field(default_factory=list)
    kind_override: str | None = None
    _stream: BinaryIO | None = None
    _head: bytes | None = None
    _consumed: bool = False
    error: str | None = None  # set when the stream failed mid-way (e.g. truncated gzip)

    def head(self) -> bytes:
        """The first HEAD_BYTES decompressed bytes (cached; the stream still starts at 0)."""
        if self._head is None:
            assert self._stream is not None
            try:
                self._head = _read_up_to(self._stream, HEAD_BYTES)
            except _read_errors() as exc:
                self._head = b""
                self.error = f"cannot decompress: {exc}"
        return self._head

    def stream(self) -> BinaryIO:
        """The whole decompressed content as a buffered binary stream (call once)."""
        if self._consumed:
            raise RuntimeError(f"{self.display}: stream already consumed")
        self._consumed = True
        head = self.head()
        assert self._stream is not None
        return io.BufferedReader(_GuardedStream(_HeadStream(head, self._stream), self), CHUNK)

    def lines(self, on_long_line: Callable[[int], None] | None = None) -> Iterator[tuple[int, str]]:
        """(1-based line number, text without the newline); CRLF folded; invalid UTF-8
        replaced; lines over MAX_LINE skipped (reported through `on_long_line`)."""
        stream = self.stream()
        lineno = 0
        readline = stream.readline
        while True:
            raw = readline(MAX_LINE)
            if not raw:
                return
            lineno += 1
            if not raw.endswith(b"\n") and len(raw) >= MAX_LINE:
                while True:  # discard the rest of the overlong line
                    more = readline(MAX_LINE)
                    if not more or more.endswith(b"\n"):
                        break
                if on_long_line is not None:
                    on_long_line(lineno)
                continue
            text = raw.decode("utf-8", "replace")
            if text.endswith("\n"):
                text = text[:-1]
            if text.endswith("\r"):
                text = text[:-1]
            yield lineno, text


class _GuardedStream(io.RawIOBase):
    """Turns decompression errors mid-stream into a clean EOF plus `source.error`."""

    def __init__(self, inner: io.RawIOBase, source: Source) -> None:
        self._inner = inner
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return self._inner.readinto(b) or 0
        except _read_errors() as exc:
            if self._source.error is None:
                self._source.error = f"input ends early or is corrupt ({exc}); read what came before"
            return 0


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def parse_kind_overrides(values: list[str], known: set[str]) -> dict[str, str]:
    """`--kind KIND=PATH` values -> {normalized path: kind}."""
    out: dict[str, str] = {}
    for value in values:
        kind, sep, path = value.partition("=")
        if not sep or not kind or not path:
            raise InputError(f"--kind expects KIND=PATH, got {value!r}")
        if kind not in known:
            raise InputError(f"--kind: unknown kind {kind!r} (known: {', '.join(sorted(known))})")
        out[os.path.normpath(path)] = kind
    return out


def iter_sources(paths: list[str], kinds: dict[str, str] | None = None) -> Iterator[Source]:
    """Yield every Source under `paths`. Missing or unreadable paths raise InputError
    before anything is yielded, so a typo gets one clear line and exit code 2."""
    kinds = kinds or {}
    if not paths:
        raise InputError("no input given (name files, directories, archives or '-')")
    for p in paths:
        if p == "-":
            continue
        if not os.path.lexists(p):
            raise InputError(f"{p}: no such file or directory")
        if not os.access(p, os.R_OK):
            raise InputError(f"{p}: permission denied")
    for p in paths:
        if p == "-":
            yield from _from_stream("<stdin>", sys.stdin.buffer, None, None, kinds.get("-"), 0)
            continue
        yield from _from_path(p, kinds)


def _from_path(path: str, kinds: dict[str, str]) -> Iterator[Source]:
    st = os.stat(path) if os.path.exists(path) else os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        for root, dirs, files in os.walk(path, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                try:
                    fst = os.stat(full)
                except OSError:
                    continue  # dangling link
                if not stat.S_ISREG(fst.st_mode):
                    continue
                yield from _from_file(full, fst, kinds)
        return
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file or directory")
    yield from _from_file(path, st, kinds)


def _from_file(path: str, st: os.stat_result, kinds: dict[str, str]) -> Iterator[Source]:
    override = kinds.get(os.path.normpath(path))
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below after the generator is done
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    with fh:
        head = fh.read(8)
        fh.seek(0)
        if head.startswith(ZIP_MAGIC) and override is None:
            yield from _from_zip(path, fh, st.st_mtime)
            return
        yield from _from_stream(path, fh, st.st_mtime, st.st_size, override, 0)


def _from_stream(
    display: str,
    raw: BinaryIO,
    mtime: float | None,
    size: int | None,
    override: str | None,
    depth: int,
) -> Iterator[Source]:
    magic = _read_up_to(raw, 8)
    raw_replay: BinaryIO = io.BufferedReader(_HeadStream(magic, raw), CHUNK)  # type: ignore[arg-type]
    compressions: list[str] = []
    stream: BinaryIO = raw_replay
    kind_of, stream = _decompressor(magic, raw_replay)
    if kind_of:
        compressions.append(kind_of)
    src = Source(display, mtime, size, compressions, override, stream)
    head = src.head()
    if override is None and _is_tar(head) and depth < MAX_ARCHIVE_DEPTH:
        yield from _from_tar(display, src, depth)
        return
    yield src


def _from_tar(display: str, outer: Source, depth: int) -> Iterator[Source]:
    import tarfile

    stream = outer.stream()
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - closed in finally
    except tarfile.TarError as exc:
        raise InputError(f"{display}: unreadable tar archive ({exc})") from None
    try:
        for member in tar:
            if not member.isreg():
                continue  # links, devices, dirs: never followed
            name = member.name
            if name.startswith("/") or ".." in name.split("/"):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            member_stream: BinaryIO = fh  # type: ignore[assignment]  # tarfile's IO[bytes]
            yield from _from_stream(
                f"{display}:{name}", member_stream, float(member.mtime), member.size, None, depth + 1
            )
    except (tarfile.TarError, OSError, EOFError) as exc:
        # A truncated archive: what was read stands; the caller reports the rest.
        yield Source(
            f"{display}",
            None,
            None,
            [],
            "unreadable",
            io.BytesIO(b""),
            error=f"archive ends early or is corrupt: {exc}",
        )
    finally:
        tar.close()


def _from_zip(display: str, fh: BinaryIO, mtime: float | None) -> Iterator[Source]:
    import zipfile

    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Source(display, mtime, None, [], "unreadable", io.BytesIO(b""), error=f"unreadable zip archive: {exc}")
        return
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if name.startswith("/") or ".." in name.split("/"):
                continue
            # Symlinks in zips carry S_IFLNK in the high bits of external_attr.
            if stat.S_ISLNK(info.external_attr >> 16):
                continue
            try:
                member = zf.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                yield Source(f"{display}:{name}", None, None, [], "unreadable", io.BytesIO(b""), error=str(exc))
                continue
            with member:
                yield from _from_stream(f"{display}:{name}", member, mtime, info.file_size, None, 1)  # type: ignore[arg-type]
