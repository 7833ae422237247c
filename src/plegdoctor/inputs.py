"""Turn what the user named (files, directories, archives, `-`) into a stream of Sources.

- Compression is detected from magic bytes, not names: gzip, zstd, xz, bzip2.
- Archives (tar, tar.gz/tgz/..., zip) are read member by member without unpacking to
  disk; members that are themselves compressed or archives are opened recursively.
  Links, devices and absolute or `..` member names are never followed or written.
- Directories are walked recursively in sorted order; symlinks to directories are not
  followed (no loops); special files are skipped.
- `-` reads standard input once.

Bounded on any input (`Limits`, the `analyze --max-*` options): decompressed bytes per
input and per run, the compression ratio, archive members, tar header sizes, zip
central-directory sanity (entries whose data overlap another's are a zip bomb and are
not read). A limit that fires stops reading there and leaves one warning naming the
option that raises it (`Limits.take_notices()`); what was read before it stands.

`iter_sources()` is a generator and each Source's stream must be consumed before asking
for the next one (tar members are read sequentially). Nothing is ever written.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from plegdoctor.bounded import (
    BZ2_MAGIC,
    CHUNK,
    GZIP_MAGIC,
    HEAD_BYTES,
    MAX_ARCHIVE_DEPTH,
    MAX_LINE,
    MAX_TAR_HEADER,
    XZ_MAGIC,
    ZIP_MAGIC,
    ZSTD_MAGIC,
    GiB,
    Limits,
    MiB,
    _Budget,
    _Counting,
    _decompressor,
    _HeadStream,
    _is_tar,
    _read_errors,
    human_bytes,
)
from plegdoctor.errors import InputError

__all__ = [  # the names callers import from here (some live in plegdoctor.bounded)
    "BZ2_MAGIC",
    "CHUNK",
    "GZIP_MAGIC",
    "HEAD_BYTES",
    "MAX_ARCHIVE_DEPTH",
    "MAX_LINE",
    "MAX_TAR_HEADER",
    "XZ_MAGIC",
    "ZIP_MAGIC",
    "ZSTD_MAGIC",
    "GiB",
    "Limits",
    "MiB",
    "Source",
    "human_bytes",
    "iter_sources",
    "parse_kind_overrides",
]


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


def iter_sources(
    paths: list[str], kinds: dict[str, str] | None = None, limits: Limits | None = None
) -> Iterator[Source]:
    """Yield every Source under `paths`. Missing or unreadable paths raise InputError
    before anything is yielded, so a typo gets one clear line and exit code 2. What a
    limit stopped is in `limits.take_notices()`."""
    kinds = kinds or {}
    limits = limits if limits is not None else Limits()
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
            yield from _from_stream("<stdin>", sys.stdin.buffer, None, None, kinds.get("-"), 0, limits)
            continue
        yield from _from_path(p, kinds, limits)


def _from_path(path: str, kinds: dict[str, str], limits: Limits) -> Iterator[Source]:
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
                yield from _from_file(full, fst, kinds, limits)
        return
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file or directory")
    yield from _from_file(path, st, kinds, limits)


def _from_file(path: str, st: os.stat_result, kinds: dict[str, str], limits: Limits) -> Iterator[Source]:
    override = kinds.get(os.path.normpath(path))
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below after the generator is done
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    with fh:
        head = fh.read(8)
        fh.seek(0)
        if head.startswith(ZIP_MAGIC) and override is None:
            yield from _from_zip(path, fh, st.st_mtime, st.st_size, limits)
            return
        yield from _from_stream(path, fh, st.st_mtime, st.st_size, override, 0, limits)


def _from_stream(
    display: str,
    raw: BinaryIO,
    mtime: float | None,
    size: int | None,
    override: str | None,
    depth: int,
    limits: Limits,
) -> Iterator[Source]:
    try:
        magic = _read_up_to(raw, 8)
    except _read_errors() as exc:  # e.g. a zip member's CRC fails at once (it is short)
        yield Source(display, mtime, size, [], "unreadable", io.BytesIO(b""), error=f"cannot read: {exc}")
        return
    raw_replay: BinaryIO = io.BufferedReader(_HeadStream(magic, raw), CHUNK)  # type: ignore[arg-type]
    compressions: list[str] = []
    counted = _Counting(raw_replay)
    kind_of, stream = _decompressor(magic, counted)  # type: ignore[arg-type]
    budget: _Budget | None = None
    if kind_of:
        compressions.append(kind_of)
        budget = _Budget(stream, limits, display, consumed=lambda: counted.count)
        stream = io.BufferedReader(budget, CHUNK)  # type: ignore[arg-type,assignment]
    else:
        stream = raw_replay
    src = Source(display, mtime, size, compressions, override, stream)
    head = src.head()
    if override is None and _is_tar(head):
        if depth < MAX_ARCHIVE_DEPTH:
            yield from _from_tar(display, src, depth, limits, budget)
            return
        limits.notice(display, f"archive nested deeper than {MAX_ARCHIVE_DEPTH} levels: not opened")
    yield src


def _unsafe_name(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


class _TarHeaderTooBig(Exception):
    pass


def _safe_tarinfo() -> type:
    """A TarInfo that refuses PAX / GNU long-name / sparse headers over MAX_TAR_HEADER
    (tarfile reads them into memory whole: a 256 MiB PAX header costs 256 MiB+)."""
    import tarfile

    header_types = (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.GNUTYPE_SPARSE,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )

    class SafeTarInfo(tarfile.TarInfo):
        def _proc_member(self, tf: Any) -> Any:
            if self.type in header_types and self.size > MAX_TAR_HEADER:
                raise _TarHeaderTooBig(
                    f"tar header of {human_bytes(self.size)} (extended/long-name) is over "
                    f"{human_bytes(MAX_TAR_HEADER)}: the rest of the archive is not read"
                )
            return super()._proc_member(tf)  # type: ignore[misc]

    return SafeTarInfo


def _from_tar(display: str, outer: Source, depth: int, limits: Limits, budget: _Budget | None) -> Iterator[Source]:
    import tarfile

    stream: BinaryIO = outer.stream()
    if budget is None:  # a plain tar: its bytes still count towards the run total
        budget = _Budget(stream, limits, display, per_input=False)
        stream = io.BufferedReader(budget, CHUNK)  # type: ignore[arg-type,assignment]
    else:
        budget._per_input = False  # an archive is as big as its members; each member is limited
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=_safe_tarinfo())  # noqa: SIM115 - closed in finally
    except tarfile.TarError as exc:
        raise InputError(f"{display}: unreadable tar archive ({exc})") from None
    except _TarHeaderTooBig as exc:
        limits.notice(display, str(exc))
        return
    members = 0
    try:
        for member in tar:
            members += 1
            if members > limits.max_members:
                limits.notice(
                    display,
                    f"archive has more than {limits.max_members} members: the rest is not read (raise --max-members)",
                )
                return
            if not member.isreg():
                continue  # links, devices, dirs: never followed
            name = member.name
            if _unsafe_name(name):
                limits.notice(display, f"member {name!r} skipped: its path leaves the archive (tar-slip)")
                continue
            if member.size > limits.max_total_bytes:
                limits.notice(
                    display,
                    f"member {name!r} declares {human_bytes(member.size)}, over the run limit: "
                    "the rest of the archive is not read (raise --max-total-bytes)",
                )
                return
            fh = tar.extractfile(member)
            if fh is None:
                continue
            member_display = f"{display}:{name}"
            member_stream = io.BufferedReader(_Budget(fh, limits, member_display, total=False), CHUNK)  # type: ignore[arg-type]
            yield from _from_stream(
                member_display, member_stream, float(member.mtime), member.size, None, depth + 1, limits
            )
    except _TarHeaderTooBig as exc:
        limits.notice(display, str(exc))
    except (tarfile.TarError, OSError, EOFError) as exc:
        if budget.hit is not None or limits.total_hit:
            return  # a limit stopped the archive: its notice says so
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


def _zip_entries(display: str, zf: Any, size: int | None, limits: Limits) -> list[Any]:
    """The central directory's file entries that are safe to read, in order: each one's
    data must not overlap another's (a zip bomb re-uses one deflate stream for many
    entries), lie beyond the file, or claim a ratio past the limit."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > limits.max_members:
        limits.notice(
            display,
            f"zip has {len(infos)} entries, more than {limits.max_members}: the rest is not read (raise --max-members)",
        )
        infos = infos[: limits.max_members]
    overlapping: set[int] = set()
    end = -1
    for info in sorted(infos, key=lambda i: i.header_offset):
        # a lower bound of where this entry's data ends (the local extra field may add more)
        if info.header_offset < end:
            overlapping.add(id(info))
            continue
        end = info.header_offset + 30 + len(info.orig_filename.encode("utf-8", "replace")) + info.compress_size
    if overlapping:
        limits.notice(
            display,
            f"zip: {len(overlapping)} entries overlap another entry's data (a zip bomb): not read",
        )
    out = []
    for info in infos:
        if id(info) in overlapping:
            continue
        name = info.filename
        if _unsafe_name(name):
            limits.notice(display, f"member {name!r} skipped: its path leaves the archive (zip-slip)")
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            continue  # symlinks carry S_IFLNK in the high bits of external_attr
        if size is not None and info.header_offset + info.compress_size > size:
            limits.notice(display, f"member {name!r} skipped: its data would lie beyond the end of the file")
            continue
        if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            limits.notice(
                display,
                f"member {name!r} skipped: it declares a compression ratio over {limits.max_ratio:g}:1 "
                f"({human_bytes(info.compress_size)} -> {human_bytes(info.file_size)}): "
                "a zip bomb? (raise --max-ratio)",
            )
            continue
        out.append(info)
    return out


def _from_zip(display: str, fh: BinaryIO, mtime: float | None, size: int | None, limits: Limits) -> Iterator[Source]:
    import zipfile

    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as exc:  # e.g. "zip file version 25.5"
        yield Source(display, mtime, None, [], "unreadable", io.BytesIO(b""), error=f"unreadable zip archive: {exc}")
        return
    with zf:
        for info in _zip_entries(display, zf, size, limits):
            if limits.total_hit:
                return
            name = info.filename
            member_display = f"{display}:{name}"
            try:
                member = zf.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError) as exc:
                yield Source(member_display, None, None, [], "unreadable", io.BytesIO(b""), error=str(exc))
                continue
            with member:
                packed = info.compress_size
                stream: BinaryIO = member  # type: ignore[assignment]
                if info.compress_type != zipfile.ZIP_STORED:
                    budget = _Budget(member, limits, member_display, consumed=functools.partial(int, packed))  # type: ignore[arg-type]
                    stream = io.BufferedReader(budget, CHUNK)  # type: ignore[arg-type,assignment]
                yield from _from_stream(member_display, stream, mtime, info.file_size, None, 1, limits)
