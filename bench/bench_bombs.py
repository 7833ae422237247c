#!/usr/bin/env python3
"""Decompression and archive bombs: is `pleg-doctor analyze` bounded on each?

    python bench/bench_bombs.py [--only NAME ...] [--deadline 120] [--keep DIR]
    python bench/bench_bombs.py --ratios     # ratios of legitimate logs (the --max-ratio default)

Builds twelve hostile inputs in a temporary directory (removed at the end), runs
`pleg-doctor analyze -o json BOMB` on each in a fresh child process with a deadline, and
prints per bomb: wall time, peak RSS of the child (`os.wait4` rusage), the limit warning
the report printed, and whether it was bounded: peak RSS < 300 MB, wall time within the
bomb's budget, exit code 0 and a limit warning in the report. Last line: "bombs bounded N/12".

The bombs (the first six are the ones issue #10 measured on main):
 1 zip-shared-10k       10,000 central-directory entries pointing at one 1 MB member
 2 zip-overlap-8        8 overlapping entries (Fifield quoting) sharing one kubelet-log kernel
 3 zstd-pleg-unhealthy  a small zstd of 2 GiB of "PLEG is not healthy" lines (events)
 4 tar-pax-256m         a tar.gz whose first header is a 256 MiB PAX header
 5 tgz-1g-member        a tar.gz with a 1 GiB log member (decompressed once, not twice)
 6 tar-100k-members     a tar of 100,000 small members
 7 tgz-nested-8         tar.gz in tar.gz ... eight levels deep
 8 gzip-one-line-4g     a gzip of a few kubelet lines and then 4 GiB with no newline
 9 tar-declared-2e62    a tar.gz member whose base-256 size field says 2^62 bytes
10 zip-lying-sizes      a zip entry whose directory claims 2 GiB from 1 MB (ratio lie)
11 xz-containerd-errors 4 GiB of containerd error lines in a multi-stream xz (events)
12 zstd-goroutines-1m   a zstd of one million identical goroutines
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import zstandard

RSS_LIMIT_MB = 300
MiB = 1 << 20
GiB = 1 << 30

KUBELET_LINE = (
    'I0602 05:48:00.123456    1679 kubelet.go:2010] "Skipping pod synchronization" '
    'err="PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s"\n'
)
INFO_LINE = 'I0602 05:48:00.123456    1679 kubelet.go:2182] "SyncLoop (housekeeping)"\n'
CONTAINERD_LINE = (
    'time="2023-06-02T05:48:00.123456789Z" level=error msg="failed to handle container TaskExit event" '
    'error="failed to stop container: context deadline exceeded"\n'
)
GOROUTINE = (
    "goroutine 1 [semacquire, 12 minutes]:\n"
    "sync.runtime_SemacquireMutex(0xc0001, 0x0, 0x1)\n"
    "\t/usr/local/go/src/runtime/sema.go:71 +0x47\n"
    "sync.(*Mutex).lockSlow(0xc0001)\n"
    "\t/usr/local/go/src/sync/mutex.go:138 +0x105\n"
    "github.com/containerd/containerd/pkg/cri/store.(*Store).Get(0xc0001)\n"
    "\t/go/src/github.com/containerd/containerd/pkg/cri/store/store.go:42 +0x30\n\n"
)


def _block(line: str, size: int = MiB) -> bytes:
    raw = line.encode()
    return raw * (size // len(raw))


def gzip_repeat(path: Path, prefix: bytes, block: bytes, count: int, suffix: bytes = b"") -> None:
    """A gzip of prefix + block*count + suffix without compressing count blocks: after a
    full flush a deflate compressor forgets its history, so one block's output repeats."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    assert body == again
    tail = comp.compress(suffix) + comp.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(suffix, crc)
    total = len(prefix) + len(block) * count + len(suffix)
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head)
        for _ in range(count):
            out.write(body)
        out.write(tail + struct.pack("<II", crc, total & 0xFFFFFFFF))


def tar_header(name: str, size: int, typ: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = typ
    info.mtime = 1685684880
    return info.tobuf(tarfile.GNU_FORMAT)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 512)


# --------------------------------------------------------------------------------------- bombs


def bomb_zip_shared(d: Path, entries: int = 10_000, member: int = MiB) -> Path:
    path = d / "shared.zip"
    payload = _block(KUBELET_LINE, member)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("kubelet.log", payload)
    data = buf.getvalue()
    cd_off = data.rindex(b"PK\x01\x02")
    entry = data[cd_off : data.rindex(b"PK\x05\x06")]
    local = data[:cd_off]
    # the same directory entry (name, offset) again and again: all point at one local header
    cd = entry * entries
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, entries, entries, len(cd), len(local), 0)
    path.write_bytes(local + cd + eocd)
    return path


def bomb_zip_overlap(d: Path, payload_size: int = 64 * MiB, n: int = 8) -> Path:
    """David Fifield's non-recursive zip bomb, 8 files: each file's deflate data quotes the
    next file's local header in a stored block and then runs into the next file's data."""
    path = d / "overlap.zip"
    payload = _block(KUBELET_LINE, payload_size)
    kernel = zlib.compressobj(9, zlib.DEFLATED, -15)
    kdata = kernel.compress(payload) + kernel.flush()
    names = [f"k{i}.log".encode() for i in range(n)]

    def local_header(name: bytes, crc: int, csize: int, usize: int) -> bytes:
        return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, csize, usize, len(name), 0) + name

    def quote(h: bytes) -> bytes:
        return b"\x00" + struct.pack("<HH", len(h), len(h) ^ 0xFFFF) + h

    headers: list[bytes] = [b""] * n
    crcs = [0] * n
    csizes = [0] * n
    usizes = [0] * n
    # from the back: file i decompresses to headers[i+1:] + payload
    tail_plain_crc_parts: list[bytes] = []
    csize = len(kdata)
    for i in range(n - 1, -1, -1):
        plain_prefix = b"".join(tail_plain_crc_parts)
        crcs[i] = zlib.crc32(payload, zlib.crc32(plain_prefix))
        usizes[i] = len(plain_prefix) + len(payload)
        csizes[i] = csize
        headers[i] = local_header(names[i], crcs[i], csizes[i], usizes[i])
        tail_plain_crc_parts.insert(0, headers[i])
        csize += len(quote(headers[i]))
    out = bytearray()
    offsets = []
    for i in range(n):
        offsets.append(len(out))
        out += headers[i]
        if i + 1 < n:
            out += b"\x00" + struct.pack("<HH", len(headers[i + 1]), len(headers[i + 1]) ^ 0xFFFF)
    out += kdata
    cd = bytearray()
    for i in range(n):
        cd += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crcs[i],
            csizes[i],
            usizes[i],
            len(names[i]),
            0,
            0,
            0,
            0,
            0,
            offsets[i],
        )
        cd += names[i]
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(cd), len(out), 0)
    path.write_bytes(bytes(out) + bytes(cd) + eocd)
    return path


def bomb_zstd_pleg(d: Path) -> Path:
    path = d / "kubelet.log.zst"
    block = _block(KUBELET_LINE, 4 * MiB)
    cctx = zstandard.ZstdCompressor(level=19, write_content_size=False)
    with path.open("wb") as fh, cctx.stream_writer(fh) as w:
        for _ in range(2 * GiB // len(block)):
            w.write(block)
    return path


def bomb_tar_pax(d: Path) -> Path:
    path = d / "pax.tar.gz"
    body = b" path=" + b"a" * (256 * MiB) + b"\n"
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    record = str(length).encode() + body
    assert len(record) == length
    member = _block(KUBELET_LINE, 4096)
    with gzip.open(path, "wb", compresslevel=1) as g:
        g.write(tar_header("././@PaxHeader", len(record), tarfile.XHDTYPE))
        g.write(record)
        g.write(_pad(len(record)) + tar_header("kubelet.log", len(member)) + member + _pad(len(member)))
        g.write(b"\0" * 1024)
    return path


def _varied_block(size: int = MiB) -> bytes:
    """Kubelet info lines with varying numbers: compresses like a real log (about 8:1)."""
    import random

    rnd = random.Random(7)
    out = []
    n = 0
    while n < size:
        line = (
            f"I0602 05:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}.{rnd.randrange(10**6):06d}    1679 "
            f'prober.go:{rnd.randrange(999)}] "Probe succeeded" probeType="Readiness" '
            f'pod="default/web-{rnd.randrange(16**8):08x}" containerName="app-{rnd.randrange(99)}"\n'
        )
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def bomb_tgz_1g(d: Path) -> Path:
    """One 1 GiB kubelet-log member (a real log's ratio) followed by a small one: read in
    one decompression pass (main decompressed it twice: once to learn the year)."""
    path = d / "bundle.tar.gz"
    block = _varied_block()
    size = GiB
    small = _block(KUBELET_LINE, 64 * 1024)
    prefix = tar_header("var/log/big.log", size)
    suffix = _pad(size) + tar_header("var/log/kubelet.log", len(small)) + small + _pad(len(small)) + b"\0" * 1024
    gzip_repeat(path, prefix, block, size // len(block), suffix)
    return path


def bomb_tar_100k(d: Path) -> Path:
    path = d / "many.tar"
    data = KUBELET_LINE.encode()
    with path.open("wb") as fh:
        for i in range(100_000):
            fh.write(tar_header(f"m/{i:06d}.log", len(data)) + data + _pad(len(data)))
        fh.write(b"\0" * 1024)
    return path


def bomb_nested(d: Path, levels: int = 8) -> Path:
    data = _block(KUBELET_LINE, 64 * 1024)
    name = "kubelet.log"
    for level in range(levels):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        data = buf.getvalue()
        name = f"level{level}.tar.gz"
    path = d / "nested.tar.gz"
    path.write_bytes(data)
    return path


def bomb_gzip_one_line(d: Path) -> Path:
    path = d / "oneline.log.gz"
    prefix = (KUBELET_LINE * 50).encode()
    gzip_repeat(path, prefix, b"a" * MiB, 4096, b"\n")
    return path


def bomb_tar_declared(d: Path) -> Path:
    path = d / "declared.tar.gz"
    header = tar_header("var/log/kubelet.log", 1 << 62)
    gzip_repeat(path, header + _block(KUBELET_LINE, 64 * 1024), b"\0" * MiB, 1024)
    return path


def bomb_zip_lying(d: Path) -> Path:
    path = d / "lying.zip"
    payload = _block(KUBELET_LINE, 64 * MiB)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("kubelet.log", payload)
    data = bytearray(buf.getvalue())
    # claim 2 GiB in the central directory and the local header
    cd = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 2 * GiB)
    struct.pack_into("<I", data, 22, 2 * GiB)
    path.write_bytes(bytes(data))
    return path


def bomb_xz(d: Path) -> Path:
    path = d / "containerd.log.xz"
    stream = lzma.compress(_block(CONTAINERD_LINE, 64 * MiB), preset=6)
    with path.open("wb") as fh:
        for _ in range(64):
            fh.write(stream)
    return path


def bomb_goroutines(d: Path) -> Path:
    path = d / "goroutines.txt.zst"
    header = b"SIGQUIT: quit\nPC=0x0 m=0 sigcode=0\n\n"
    chunk = GOROUTINE.encode() * 1000
    cctx = zstandard.ZstdCompressor(level=19)
    with path.open("wb") as fh, cctx.stream_writer(fh) as w:
        w.write(header)
        for _ in range(1000):
            w.write(chunk)
    return path


# (name, builder, wall-time budget in seconds); a bomb in NO_WARNING is bounded by reading
# it once (no limit needs to fire)
NO_WARNING = {"tgz-1g-member"}
BOMBS: list[tuple[str, Callable[[Path], Path], float]] = [
    ("zip-shared-10k", bomb_zip_shared, 20),
    ("zip-overlap-8", bomb_zip_overlap, 20),
    ("zstd-pleg-unhealthy", bomb_zstd_pleg, 30),
    ("tar-pax-256m", bomb_tar_pax, 20),
    ("tgz-1g-member", bomb_tgz_1g, 40),
    ("tar-100k-members", bomb_tar_100k, 20),
    ("tgz-nested-8", bomb_nested, 10),
    ("gzip-one-line-4g", bomb_gzip_one_line, 40),
    ("tar-declared-2e62", bomb_tar_declared, 10),
    ("zip-lying-sizes", bomb_zip_lying, 10),
    ("xz-containerd-errors", bomb_xz, 40),
    ("zstd-goroutines-1m", bomb_goroutines, 40),
]

LIMIT_MARKERS = ("raise --max-", "zip bomb", "tar header of", "nested deeper", "over the run limit")


# A small fresh parent for each run: the child's peak RSS is its own (a child spawned from
# this process would inherit this process's high-water mark, which the builders raised).
WRAPPER = """
import os, resource, sys
fd = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(fd)
    os.execv(sys.argv[2], sys.argv[2:])
_, status = os.waitpid(pid, 0)
os.write(fd, str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_child(cmd: list[str], deadline: float) -> tuple[int | None, float, float, str]:
    """(exit code or None on timeout, wall seconds, peak RSS MB of the child, stdout)."""
    r, w = os.pipe()
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(w), *cmd],
            stdout=out,
            stderr=subprocess.DEVNULL,
            pass_fds=(w,),
            start_new_session=True,
        )
        os.close(w)
        code: int | None
        try:
            code = proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the wrapper's session: it and its child
            proc.wait()
            code = None
        wall = time.monotonic() - start
        with os.fdopen(r, "rb") as fh:
            rss_kb = fh.read().decode() or "0"
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return code, wall, int(rss_kb) / 1024, text


def limit_warnings(report: str) -> list[str]:
    try:
        doc = json.loads(report)
    except ValueError:
        return []
    found = []
    for inp in doc.get("inputs") or []:
        for w in inp.get("warnings") or []:
            if any(m in w for m in LIMIT_MARKERS):
                found.append(w)
    return found


def measure_ratios(work: Path) -> None:
    """Compression ratios of legitimate logs (what --max-ratio's default must let through)."""
    from datetime import datetime, timedelta

    journal = work / "journal.log"
    gen = Path(__file__).with_name("gen_kubelet_journal.py")
    subprocess.run(
        [sys.executable, str(gen), "--size", "50M", "--out", str(journal), "--truth", str(work / "t.json")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    t = datetime(2023, 6, 2, 5, 48)
    lines = []
    for i in range(300_000):
        t += timedelta(milliseconds=100)
        lines.append(
            f'I0602 {t:%H:%M:%S.%f}    1679 kubelet.go:2010] "Skipping pod synchronization" '
            f'err="PLEG is not healthy: pleg was last seen active {180 + i / 10:.1f}s ago; threshold is 3m0s"\n'
        )
    codecs: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("gzip -9", lambda x: gzip.compress(x, 9)),
        ("zstd -19", lambda x: zstandard.ZstdCompressor(level=19).compress(x)),
        ("xz -6", lzma.compress),
    ]
    for name, data in (("kubelet journal", journal.read_bytes()), ("PLEG-unhealthy lines", "".join(lines).encode())):
        for codec, fn in codecs:
            print(
                f"ratio {name:<22} {len(data) >> 20:>4} MiB {codec:<9} {len(data) / len(fn(data)):7.1f}:1", flush=True
            )
    journal.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="bomb names to run")
    ap.add_argument("--deadline", type=float, default=120.0, help="kill a child after this many seconds")
    ap.add_argument("--keep", help="build the bombs in this directory and keep them")
    ap.add_argument("--ratios", action="store_true", help="only measure the ratios of legitimate logs")
    args = ap.parse_args()
    exe = shutil.which("pleg-doctor", path=os.path.dirname(sys.executable)) or shutil.which("pleg-doctor")
    if not exe:
        print("pleg-doctor not found next to this python or on PATH", file=sys.stderr)
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pd-bombs-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.ratios:
        try:
            measure_ratios(work)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        return 0
    bounded = 0
    chosen = [b for b in BOMBS if not args.only or b[0] in args.only]
    print(f"{'bomb':<22} {'input':>9} {'build':>6} {'wall':>7} {'budget':>6} {'RSS MB':>7} exit bounded  limit warning")
    try:
        for name, build, budget in chosen:
            t0 = time.monotonic()
            path = build(work)
            built = time.monotonic() - t0
            code, wall, rss, out = run_child([exe, "analyze", "-o", "json", str(path)], args.deadline)
            warns = limit_warnings(out)
            ok = code == 0 and rss < RSS_LIMIT_MB and wall <= budget and (bool(warns) or name in NO_WARNING)
            bounded += ok
            size = path.stat().st_size
            shown = (warns[0][:90] + ("..." if len(warns[0]) > 90 else "")) if warns else "(none: read once)"
            print(
                f"{name:<22} {size / 1024:>7.0f}KB {built:>5.1f}s {wall:>6.1f}s {budget:>5.0f}s {rss:>7.0f} "
                f"{code!s:>4} {'yes' if ok else 'NO':<8} {shown}",
                flush=True,
            )
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"bombs bounded {bounded}/{len(chosen)} (peak RSS < {RSS_LIMIT_MB} MB, wall within budget, limit warned)")
    return 0 if bounded == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
