"""Input readers: compression and archives detected by content, streaming, bad input."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from plegdoctor.errors import InputError
from plegdoctor.inputs import MAX_LINE, iter_sources, parse_kind_overrides

TEXT = b"line one\r\nline two\nline three"


def _read_all(paths: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for src in iter_sources(paths):
        out[src.display] = [t for _, t in src.lines()]
    return out


@pytest.mark.parametrize(
    ("name", "data", "compression"),
    [
        ("plain.log", TEXT, []),
        ("x.gz", gzip.compress(TEXT), ["gzip"]),
        ("x.xz", lzma.compress(TEXT), ["xz"]),
        ("x.bz2", bz2.compress(TEXT), ["bzip2"]),
        ("x.zst", zstandard.ZstdCompressor().compress(TEXT), ["zstd"]),
        # names lie: kind is detected from content
        ("misnamed.txt", gzip.compress(TEXT), ["gzip"]),
    ],
)
def test_compressed_files_are_read_by_magic(tmp_path: Path, name: str, data: bytes, compression: list[str]) -> None:
    p = tmp_path / name
    p.write_bytes(data)
    [src] = list(iter_sources([str(p)]))
    assert src.compression == compression
    assert [t for _, t in src.lines()] == ["line one", "line two", "line three"]


def test_directory_is_walked_recursively_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "inner.log").write_bytes(b"inner\n")
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "fifo").symlink_to(tmp_path / "missing")  # dangling link: skipped
    got = _read_all([str(tmp_path)])
    assert list(got) == [str(tmp_path / "a.log"), str(tmp_path / "b" / "inner.log")]


def _tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("evil-link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:xz", "w:bz2"])
def test_tar_members_are_streamed_without_extraction(tmp_path: Path, mode: str) -> None:
    members = {"logs/kubelet.log": b"k1\nk2\n", "proc/meminfo.gz": gzip.compress(b"Dirty: 1 kB\n")}
    p = tmp_path / "bundle.bin"
    p.write_bytes(_tar_bytes(members, mode))
    before = set(os.listdir(tmp_path))
    got = _read_all([str(p)])
    assert got == {f"{p}:logs/kubelet.log": ["k1", "k2"], f"{p}:proc/meminfo.gz": ["Dirty: 1 kB"]}
    assert set(os.listdir(tmp_path)) == before  # nothing written next to the input


def test_tar_slip_names_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.tar"
    p.write_bytes(_tar_bytes({"../../escape": b"x\n", "/abs": b"y\n", "ok": b"z\n"}))
    assert list(_read_all([str(p)])) == [f"{p}:ok"]


def test_zip_members(tmp_path: Path) -> None:
    p = tmp_path / "t.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a/one.txt", "1\n")
        zf.writestr("two.gz", gzip.compress(b"2\n"))
    assert _read_all([str(p)]) == {f"{p}:a/one.txt": ["1"], f"{p}:two.gz": ["2"]}


def test_truncated_gzip_reads_what_came_before_and_reports(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(b"line %d\n" % i for i in range(50000)))
    p = tmp_path / "cut.gz"
    p.write_bytes(data[: len(data) // 2])
    [src] = list(iter_sources([str(p)]))
    lines = [t for _, t in src.lines()]
    assert 1000 < len(lines) < 50000
    assert lines[0] == "line 0"
    assert src.error and "ends early" in src.error


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "bad.log"
    p.write_bytes(b"ok\n\xff\xfe bad \xc3\n")
    assert _read_all([str(p)])[str(p)] == ["ok", "\ufffd\ufffd bad \ufffd"]


def test_overlong_line_is_skipped_with_its_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import plegdoctor.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_LINE", 1000)
    p = tmp_path / "long.log"
    p.write_bytes(b"first\n" + b"x" * 5000 + b"\nlast\n")
    [src] = list(iter_sources([str(p)]))
    skipped: list[int] = []
    assert [t for _, t in src.lines(on_long_line=skipped.append)] == ["first", "last"]
    assert skipped == [2]
    assert MAX_LINE >= 10 * 1024 * 1024  # a 10 MB line is still read whole by default


def test_missing_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(iter_sources([str(tmp_path / "nope.log")]))


def test_kind_override_syntax() -> None:
    assert parse_kind_overrides(["psi=a/io"], {"psi"}) == {"a/io": "psi"}
    with pytest.raises(InputError, match="KIND=PATH"):
        parse_kind_overrides(["psi"], {"psi"})
    with pytest.raises(InputError, match="unknown kind"):
        parse_kind_overrides(["nope=x"], {"psi"})


def test_input_file_is_not_modified(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    original = gzip.compress(TEXT)
    p.write_bytes(original)
    st = p.stat()
    _read_all([str(p)])
    assert p.read_bytes() == original
    assert p.stat().st_mtime_ns == st.st_mtime_ns
