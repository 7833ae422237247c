"""Versions of Go programs read from their ELF file, never by running them.

`collect` and `check` must not execute a binary found through /proc (a pod can name a process
`kubelet` or `containerd`), so a version comes from the bytes of the file:

1. the Go build info (`.go.buildinfo`, `\\xff Go buildinf:`): the Go version, the main module's
   path and version, and the build settings, whose `-ldflags` carries `-X pkg.var=value` (how
   containerd, runc and Kubernetes stamp their versions) unless the binary was built with
   `-trimpath`; both layouts are read (Go >= 1.18 inline strings; older pointers into the data
   segment, resolved through the ELF program headers);
2. the ELF symbol of that variable (`.symtab`, or `.dynsym` of a dynamically linked build
   such as Debian's containerd): its Go string header, then the bytes it points to;
3. the main module's version, when it is not `(devel)` (Go >= 1.24 stamps it from VCS tags);
4. a bounded scan of the file for `pkg.var=` (an `-ldflags` text the build info parse missed).

Each answer says which of these gave it. Every length and offset read from the file is
bounded: a hostile binary yields "not found", never a huge read or an exception.
ELF only (32/64-bit, either byte order); PE and Mach-O are not read.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shlex
import struct
from dataclasses import dataclass, field
from typing import BinaryIO


def varint(buf: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    """A protobuf/Go uvarint at `pos` -> (value, position after it); ValueError if truncated."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


BUILDINFO_MAGIC = b"\xff Go buildinf:"
MAX_SECTION = 64 << 20  # a symbol or string table larger than this is not read
MAX_STRING = 64 << 10  # a Go string (a version) longer than this is not one
MAX_MODINFO = 4 << 20
MAX_SCAN = 512 << 20  # bytes of a file scanned for the build info magic or an -X text
_CHUNK = 4 << 20
_SHT_SYMTAB, _SHT_DYNSYM, _PT_LOAD = 2, 11, 1

# The Go string variables each program's build stamps with -ldflags -X (first is the version).
VERSION_VARS: dict[str, tuple[str, ...]] = {
    "containerd": (
        "github.com/containerd/containerd/v2/version.Version",
        "github.com/containerd/containerd/version.Version",
    ),
    "runc": ("main.version",),
    "kubelet": (
        "k8s.io/component-base/version.gitVersion",
        "k8s.io/kubernetes/pkg/version.gitVersion",
        "k8s.io/client-go/pkg/version.gitVersion",
    ),
}
REVISION_VARS: dict[str, tuple[str, ...]] = {
    "containerd": (
        "github.com/containerd/containerd/v2/version.Revision",
        "github.com/containerd/containerd/version.Revision",
    ),
    "runc": ("main.gitCommit",),
    "kubelet": ("k8s.io/component-base/version.gitCommit", "k8s.io/kubernetes/pkg/version.gitCommit"),
}


@dataclass
class BuildInfo:
    go: str = ""
    path: str = ""  # the main package's import path
    module: str = ""  # the main module's path
    module_version: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    def ldflags_vars(self) -> dict[str, str]:
        """The `-X name=value` assignments of the recorded `-ldflags`."""
        out: dict[str, str] = {}
        raw = self.settings.get("-ldflags", "")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = raw.split()
        for i, w in enumerate(words):
            assignment = w[3:] if w.startswith("-X=") else (words[i + 1] if w == "-X" and i + 1 < len(words) else "")
            name, sep, value = assignment.partition("=")
            if sep and name:
                out[name] = value
        return out


@dataclass
class Found:
    value: str
    source: str


class _Elf:
    """The few ELF tables we need, read with bounds; raises ValueError on anything malformed."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        fh.seek(0, os.SEEK_END)
        self.size = fh.tell()
        ident = self._read(0, 64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ValueError("not an ELF file")
        self.is64 = ident[4] == 2
        self.e = "<" if ident[5] == 1 else ">"
        if self.is64:
            (_t, _m, _v, _entry, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack(
                self.e + "HHIQQQIHHHHHH", ident[16:64]
            )
        else:
            (_t, _m, _v, _entry, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack(
                self.e + "HHIIIIIHHHHHH", ident[16:52]
            )
        self.sections: list[tuple[int, int, int, int, int, int]] = []  # name, type, addr, offset, size, link
        self.loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
        if shoff and shentsize >= (64 if self.is64 else 40) and 0 < shnum <= 4096:
            raw = self._read(shoff, shnum * shentsize)
            for k in range(len(raw) // shentsize):
                rec = raw[k * shentsize : (k + 1) * shentsize]
                if self.is64:
                    name, typ, _fl, addr, off, size, link, *_ = struct.unpack(self.e + "IIQQQQIIQQ", rec[:64])
                else:
                    name, typ, _fl, addr, off, size, link, *_ = struct.unpack(self.e + "IIIIIIIIII", rec[:40])
                self.sections.append((name, typ, addr, off, size, link))
        if phoff and phentsize >= (56 if self.is64 else 32) and 0 < phnum <= 4096:
            raw = self._read(phoff, phnum * phentsize)
            for k in range(len(raw) // phentsize):
                rec = raw[k * phentsize : (k + 1) * phentsize]
                if self.is64:
                    typ, _fl, off, vaddr, _pa, filesz, *_ = struct.unpack(self.e + "IIQQQQQQ", rec[:56])
                else:
                    typ, off, vaddr, _pa, filesz, *_ = struct.unpack(self.e + "IIIIIIII", rec[:32])
                if typ == _PT_LOAD:
                    self.loads.append((vaddr, off, filesz))
        self.names: dict[str, int] = {}
        if 0 < shstrndx < len(self.sections):
            strtab = self.section_bytes(shstrndx)
            for k, sec in enumerate(self.sections):
                end = strtab.find(b"\0", sec[0])
                if end >= 0:
                    self.names.setdefault(strtab[sec[0] : end].decode("ascii", "replace"), k)

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset > self.size:
            raise ValueError("offset outside the file")
        self.fh.seek(offset)
        return self.fh.read(min(n, self.size - offset))

    def section_bytes(self, k: int) -> bytes:
        _n, _t, _a, off, size, _l = self.sections[k]
        if size > MAX_SECTION:
            raise ValueError("section too large")
        return self._read(off, size)

    def read_vaddr(self, vaddr: int, n: int) -> bytes:
        for start, off, filesz in self.loads:
            if start <= vaddr and vaddr + n <= start + filesz:
                return self._read(off + vaddr - start, n)
        raise ValueError(f"address {vaddr:#x} not in a loaded segment")

    @property
    def ptr(self) -> str:
        return "Q" if self.is64 else "I"

    def go_string(self, header_vaddr: int) -> str:
        """The Go string whose (data pointer, length) header is at `header_vaddr`."""
        size = struct.calcsize(self.ptr)
        data, length = struct.unpack(self.e + self.ptr * 2, self.read_vaddr(header_vaddr, 2 * size))
        if length > MAX_STRING:
            raise ValueError("string too long")
        return self.read_vaddr(data, length).decode("utf-8", "replace") if length else ""

    def symbol(self, name: str) -> tuple[int, int] | None:
        """(value, size) of the symbol `name` in .symtab, else .dynsym."""
        wanted = name.encode()
        for typ in (_SHT_SYMTAB, _SHT_DYNSYM):
            for k, sec in enumerate(self.sections):
                if sec[1] != typ or not 0 < sec[5] < len(self.sections):
                    continue
                strtab = self.section_bytes(sec[5])
                at = strtab.find(b"\0" + wanted + b"\0")
                if at < 0:
                    continue
                name_off = at + 1
                fmt, entsize = (self.e + "IBBHQQ", 24) if self.is64 else (self.e + "IIIBBH", 16)
                table = self.section_bytes(k)
                for rec in struct.iter_unpack(fmt, table[: len(table) - len(table) % entsize]):
                    if rec[0] == name_off:
                        return (rec[4], rec[5]) if self.is64 else (rec[1], rec[2])
        return None


def _unquote(value: str) -> str:
    if value.startswith('"'):
        with contextlib.suppress(ValueError):
            return str(json.loads(value))
        return value.strip('"')
    return value


def parse_modinfo(text: str, go: str = "") -> BuildInfo:
    """The text `go version -m` prints (path, mod, dep, build lines) -> BuildInfo."""
    if len(text) >= 33 and text[-17] == "\n":
        text = text[16:-16]  # the sentinels around the module info
    info = BuildInfo(go=go)
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "path" and len(parts) > 1:
            info.path = parts[1]
        elif parts[0] == "mod" and len(parts) > 2:
            info.module, info.module_version = parts[1], parts[2]
        elif parts[0] == "build" and len(parts) > 1:
            key, _, value = "\t".join(parts[1:]).partition("=")
            info.settings[_unquote(key)] = _unquote(value)
    return info


def _find_magic(elf: _Elf) -> int:
    k = elf.names.get(".go.buildinfo")
    if k is not None:
        return elf.sections[k][3]
    overlap = len(BUILDINFO_MAGIC)
    pos, tail = 0, b""
    while pos < min(elf.size, MAX_SCAN):
        chunk = elf._read(pos, _CHUNK)
        if not chunk:
            break
        buf = tail + chunk
        i = buf.find(BUILDINFO_MAGIC)
        if i >= 0:
            return pos - len(tail) + i
        tail = buf[-overlap:]
        pos += len(chunk)
    return -1


def _read_build_info(elf: _Elf) -> BuildInfo | None:
    start = _find_magic(elf)
    if start < 0:
        return None
    head = elf._read(start, 32)
    if len(head) < 32 or not head.startswith(BUILDINFO_MAGIC):
        return None
    ptr_size, flags = head[14], head[15]
    if flags & 2:  # Go >= 1.18: two varint-prefixed strings after the header
        data = elf._read(start + 32, MAX_MODINFO + 64)
        n, pos = varint(data, 0)
        go = data[pos : pos + n].decode("utf-8", "replace")
        n, pos = varint(data, pos + n)
        if n > MAX_MODINFO:
            return None
        return parse_modinfo(data[pos : pos + n].decode("utf-8", "replace"), go)
    if ptr_size not in (4, 8):
        return None
    e = ">" if flags & 1 else "<"
    fmt = e + ("Q" if ptr_size == 8 else "I") * 2
    vers_ptr, mod_ptr = struct.unpack(fmt, head[16 : 16 + 2 * ptr_size])
    return parse_modinfo(elf.go_string(mod_ptr), elf.go_string(vers_ptr))


def read_build_info(path: str) -> BuildInfo | None:
    """The Go build info of the ELF file at `path`, None when it has none or is not readable."""
    try:
        with open(path, "rb") as fh:
            return _read_build_info(_Elf(fh))
    except (OSError, ValueError, struct.error, IndexError):
        return None


def _scan_assignment(elf: _Elf, names: tuple[str, ...]) -> Found | None:
    needles = [(n, f"{n}=".encode()) for n in names]
    overlap = max(len(b) for _, b in needles)
    pos, tail = 0, b""
    while pos < min(elf.size, MAX_SCAN):
        chunk = elf._read(pos, _CHUNK)
        if not chunk:
            break
        buf = tail + chunk
        for name, needle in needles:
            i = buf.find(needle)
            if i >= 0:
                raw = elf._read(pos - len(tail) + i + len(needle), 200)
                value = raw.split(b" ")[0].split(b"'")[0].split(b'"')[0].split(b"\0")[0]
                if value:
                    return Found(value.decode("utf-8", "replace"), f"scan of the binary for '{name}='")
        tail = buf[-overlap:]
        pos += len(chunk)
    return None


def _variable(elf: _Elf, info: BuildInfo | None, names: tuple[str, ...], scan: bool) -> Found | None:
    stamped = info.ldflags_vars() if info else {}
    for name in names:
        if stamped.get(name):
            return Found(stamped[name], f"Go build info: -ldflags -X {name}")
    for name in names:
        with contextlib.suppress(ValueError, struct.error):
            sym = elf.symbol(name)
            if sym is not None:
                value = elf.go_string(sym[0])
                if value:
                    return Found(value, f"ELF symbol {name}")
    if scan:
        with contextlib.suppress(ValueError, OSError):
            return _scan_assignment(elf, names)
    return None


@dataclass
class BinaryVersion:
    path: str
    go: str = ""
    module: str = ""  # the main package path from the build info (what program this is)
    version: Found | None = None
    revision: Found | None = None
    error: str = ""


def binary_version(component: str, path: str) -> BinaryVersion:
    """Read (never run) the version of `component` (containerd, runc, kubelet) from the file at `path`."""
    out = BinaryVersion(path)
    try:
        with open(path, "rb") as fh:
            elf = _Elf(fh)
            info = None
            with contextlib.suppress(ValueError, struct.error, IndexError):
                info = _read_build_info(elf)
            if info is not None:
                out.go, out.module = info.go, info.path
            names = VERSION_VARS.get(component, ())
            out.version = _variable(elf, info, names, scan=False) if names else None
            if out.version is None and info and info.module_version not in ("", "(devel)"):
                out.version = Found(info.module_version, f"Go build info: main module {info.module}")
            if out.version is None and names:
                out.version = _variable(elf, None, names, scan=True)
            rev_names = REVISION_VARS.get(component, ())
            if rev_names:
                out.revision = _variable(elf, info, rev_names, scan=False)
            if out.revision is None and info and info.settings.get("vcs.revision"):
                out.revision = Found(info.settings["vcs.revision"], "Go build info: vcs.revision")
    except OSError as exc:
        out.error = exc.strerror or str(exc)
    except (ValueError, struct.error, IndexError) as exc:
        out.error = str(exc) or "malformed ELF file"
    return out
