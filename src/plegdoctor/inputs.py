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

from plegdoctor.errors import InputError

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
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
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
