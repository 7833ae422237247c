"""Property tests (hypothesis) for every parser of the registry, the goroutine parser and the
archive reader.

Inputs are built from the lines of the repository's own evidence (tests/fixtures and
tests/corpus/real, grouped by the kind they sniff as), mutated (cut, spliced, digits
blown up, bytes and prose inserted), plus generated goroutine dumps in several framings and
generated gzip/zstd/xz/bzip2/tar/zip bytes, sound and corrupt. For each parse:

- nothing but `UserError` (the documented one-line refusal) is raised, and it terminates
  (a hypothesis deadline per example, the pytest timeout per test);
- every `Ref` names the input and a real line of it; counts are non-negative; goroutine ids
  occur in the input (the checks are fuzz/fuzzlib.py, shared with the atheris targets);
- the same input parses to the same result twice.

Example counts: the `ci` profile (default, 50 per test) keeps the unit suite fast; set
PLEG_DOCTOR_HYPOTHESIS_PROFILE=long for 2000 per test.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import sys
import tarfile
import zipfile
from collections import defaultdict
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plegdoctor import parsers
from plegdoctor.errors import UserError
from plegdoctor.goroutines.gostrings import go_unquote
from plegdoctor.goroutines.parse import parse_dump_binary, parse_dump_stream, parse_dump_text
from plegdoctor.inputs import iter_sources

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))
import fuzzlib  # noqa: E402 - fuzz/ is not a package; the atheris targets share it

settings.register_profile(
    "ci",
    max_examples=50,
    deadline=timedelta(seconds=10),
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("PLEG_DOCTOR_HYPOTHESIS_PROFILE", "ci"))

MAX_POOL = 400  # lines kept per kind
MAX_LINE = 2000  # characters kept per line


@cache
def line_pools() -> dict[str, tuple[str, ...]]:
    """Lines of the repository's evidence files by the kind the file sniffs as."""
    pools: dict[str, list[str]] = defaultdict(list)
    for root in (ROOT / "tests" / "fixtures", ROOT / "tests" / "corpus" / "real"):
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix == ".md" or path.stat().st_size > 2_000_000:
                continue
            data = path.read_bytes()
            kind, _ = parsers.sniff(data[: 64 * 1024])
            lines = data.decode("utf-8", "replace").splitlines()
            pools[kind].extend(ln[:MAX_LINE] for ln in lines[:200])
    return {k: tuple(v[:MAX_POOL]) for k, v in pools.items()}


def test_every_kind_has_lines_to_start_from() -> None:
    """The strategies below start from real lines of each kind: a kind with no fixture
    would be fuzzed with noise only."""
    pools = line_pools()
    missing = [k for k in parsers.PARSERS if len(pools.get(k, ())) < 5]
    assert missing == []


_NOISE = st.one_of(
    st.text(max_size=60),
    st.text(alphabet='0123456789:.-T Z[]{}"=\\/ ', max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@st.composite
def _mutated(draw: st.DrawFn, pool: tuple[str, ...]) -> str:
    line = draw(st.sampled_from(pool))
    how = draw(st.sampled_from(["cut", "splice", "digits", "dup", "strip", "replace"]))
    n = len(line)
    i = draw(st.integers(0, n))
    if how == "cut":
        return line[:i]
    if how == "splice":
        return line[:i] + draw(_NOISE) + line[i:]
    if how == "digits":  # a huge number where digits were (int() of > 4300 digits raises)
        big = draw(st.sampled_from(["9" * 30, "9" * 5000, "-1", "0", "00000000000000000000001"]))
        j = draw(st.integers(i, n))
        return line[:i] + big + line[j:]
    if how == "dup":
        return line[:i] + line
    if how == "strip":
        return line.strip()
    other = draw(st.sampled_from(pool))
    return line[:i] + other[draw(st.integers(0, len(other))) :]


@st.composite
def documents(draw: st.DrawFn, kind: str) -> bytes:
    """Bytes that look like an input of `kind`, more or less."""
    pool = line_pools()[kind]
    line = st.one_of(
        st.sampled_from(pool),
        st.sampled_from(pool),
        _mutated(pool),
        _mutated(pool),
        _NOISE,
        st.just(""),
    )
    if draw(st.booleans()):  # a run of consecutive real lines keeps multi-line records whole
        start = draw(st.integers(0, len(pool) - 1))
        head = list(pool[start : start + draw(st.integers(1, 30))])
    else:
        head = []
    lines = head + draw(st.lists(line, max_size=25))
    lines = draw(st.permutations(lines)) if draw(st.integers(0, 4)) == 0 else lines
    sep = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = sep.join(lines) + (sep if draw(st.booleans()) else "")
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=64)) + data[at:]
    return data


def _check_parse(data: bytes, kind: str | None) -> fuzzlib.Result:
    res = fuzzlib.parse_bytes(data, kind)
    fuzzlib.check_result(res, data)
    again = fuzzlib.parse_bytes_python_loop(data, kind)  # and the compiled scanner loop = the Python one
    assert fuzzlib.fingerprint(again) == fuzzlib.fingerprint(res), "same input, different result"
    return res


@pytest.mark.parametrize("kind", list(parsers.PARSERS))
def test_parser_properties(kind: str) -> None:
    """The parse properties (module docstring), and: the kind's sniffer returns a score in
    0..1 and raises nothing (the registry swallows a sniffer's exception, which would hide
    the bug: the module itself is called), and the registry's pick is a known kind."""
    mod = parsers.get(kind)

    @PROFILE
    @given(documents(kind))
    def prop(data: bytes) -> None:
        res = _check_parse(data, kind)
        assert res.kind == kind
        lines = data.decode("utf-8", "replace").splitlines()
        score = float(mod.sniff(lines))
        assert 0.0 <= score <= 1.0
        assert float(mod.sniff(lines)) == score
        best, best_score = parsers.sniff(data)
        assert best in parsers.PARSERS or best == parsers.UNKNOWN
        assert best == parsers.UNKNOWN or best_score >= parsers.SNIFF_MIN

    prop()


def test_a_broken_invariant_is_caught() -> None:
    """The checks can fail: a Ref past the input's end is reported."""
    data = b'I0602 05:48:06.350695    1679 generic.go:191] "GenericPLEG: Relisting"\n'
    res = fuzzlib.parse_bytes(data, "kubelet-log")
    fuzzlib.check_result(res, data)
    assert len(res.evidence.relists) == 1
    res.evidence.relists.line[0] = 2
    with pytest.raises(fuzzlib.Broken, match="line 2, the input has 1 line"):
        fuzzlib.check_result(res, data)


# ---------------------------------------------------------------------------------------
# Goroutine dumps

_STATES = ["running", "runnable", "select", "chan receive", "semacquire", "sync.Mutex.Lock", "IO wait", "syscall"]
_FUNCS = [
    "main.main",
    "sync.runtime_SemacquireMutex",
    "sync.(*Mutex).Lock",
    "github.com/containerd/containerd/pkg/cri/server.(*criService).ListPodSandbox",
    "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relist",
    "runtime.gopark",
    "go.etcd.io/bbolt.(*DB).beginRWTx",
]


@st.composite
def goroutine_blocks(draw: st.DrawFn, gid: int) -> list[str]:
    state = draw(st.sampled_from(_STATES))
    extra = draw(st.sampled_from(["", ", 5 minutes", ", 1129 minutes", ", locked to thread"]))
    out = [f"goroutine {gid} [{state}{extra}]:"]
    for _ in range(draw(st.integers(1, 5))):
        func = draw(st.sampled_from(_FUNCS))
        args = draw(st.sampled_from(["", "...", "0xc000123456, 0x1", "0x0?"]))
        out.append(f"{func}({args})")
        out.append(f"\t/go/src/{func.split('(')[0].replace('.', '/')}.go:{draw(st.integers(1, 9999))} +0x{gid:x}")
    if draw(st.booleans()):
        out.append(f"created by {draw(st.sampled_from(_FUNCS))} in goroutine {draw(st.integers(1, 99))}")
        out.append(f"\t/go/src/x/y.go:{draw(st.integers(1, 999))} +0x1d")
    return out


@st.composite
def dumps(draw: st.DrawFn) -> tuple[bytes, set[int], str]:
    """(dump bytes, the goroutine ids it holds, its framing)."""
    ids = draw(st.lists(st.integers(1, 10**12), min_size=1, max_size=8, unique=True))
    blocks = [draw(goroutine_blocks(gid)) for gid in ids]
    framing = draw(st.sampled_from(["raw", "journald", "logrus", "indented", "crlf", "spaced"]))
    if framing == "logrus":
        body = "\\n".join("\\n".join(b) for b in blocks).replace("\t", "\\t")
        text = f'time="2024-01-01T00:00:00Z" level=info msg="=== BEGIN goroutine stack dump ===\\n{body}\\n"\n'
    else:
        lines = [ln for b in blocks for ln in [*b, ""]]
        if framing == "journald":
            lines = [f"Nov 28 14:18:58 node containerd[2206]: {ln}" for ln in lines]
        elif framing == "indented":
            lines = ["    " + ln for ln in lines]
        elif framing == "spaced":
            lines = [x for ln in lines for x in (ln, "")]
        sep = "\r\n" if framing == "crlf" else "\n"
        text = sep.join(lines) + sep
    return text.encode(), set(ids), framing


def _ids(found: list) -> set[int]:
    return {g.id for d in found for g in d.goroutines if g.id > 0}


@PROFILE
@given(dumps())
def test_goroutine_dumps_parse_to_the_ids_they_hold(case: tuple[bytes, set[int], str]) -> None:
    data, ids, _framing = case
    by_binary = parse_dump_binary(io.BytesIO(data), source=fuzzlib.DISPLAY)
    by_stream = parse_dump_stream(fuzzlib.source_of(data).lines(), source=fuzzlib.DISPLAY)
    for found in (by_binary, by_stream):
        fuzzlib.check_dumps(found, data)
        assert _ids(found) == ids
    again = parse_dump_binary(io.BytesIO(data), source=fuzzlib.DISPLAY)
    assert repr(again) == repr(by_binary)


@st.composite
def mangled_dumps(draw: st.DrawFn) -> bytes:
    data, _held, _framing = draw(dumps())
    lines = data.split(b"\n")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["cut", "drop", "noise", "dup", "escape"]))
        if how == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif how == "drop":
            del lines[i]
            if not lines:
                lines = [b""]
        elif how == "noise":
            lines.insert(i, draw(_NOISE).encode("utf-8", "surrogatepass"))
        elif how == "dup":
            lines.insert(i, lines[i])
        else:  # broken Go escapes in a logrus message
            at = draw(st.integers(0, len(lines[i])))
            esc = draw(st.sampled_from([b"\\x", b"\\x4", b"\\u12", b"\\U0011ffff", b"\\", b"\\777", b"\\q"]))
            lines[i] = lines[i][:at] + esc + lines[i][at:]
    return b"\n".join(lines)


@PROFILE
@given(st.one_of(mangled_dumps(), documents("goroutine-dump")))
def test_goroutine_parser_properties(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    found_text = parse_dump_text(text, source=fuzzlib.DISPLAY)
    fuzzlib.check_dumps(found_text, data, nlines=text.count("\n") + 1)
    for found in (
        parse_dump_binary(io.BytesIO(data), source=fuzzlib.DISPLAY),
        parse_dump_stream(fuzzlib.source_of(data).lines(), source=fuzzlib.DISPLAY),
    ):
        fuzzlib.check_dumps(found, data)
    assert repr(parse_dump_text(text, source=fuzzlib.DISPLAY)) == repr(found_text)
    _check_parse(data, "goroutine-dump")


@pytest.mark.parametrize(
    ("quoted", "plain"),
    [
        ("a\\x", "a\\x"),  # found by fuzz_goroutines: a `\x` without hex digits raised ValueError; kept as written
        ("a\\x4", "a\\x4"),
        ("a\\x41b", "aAb"),
        ("\\u00e9\\n", "é\n"),
    ],
)
def test_go_unquote_of_broken_escapes(quoted: str, plain: str) -> None:
    assert go_unquote(quoted) == plain


def test_fuzz_found_inputs_parse() -> None:
    """The inputs the fuzzers found crashes with (also seeds in fuzz/seeds/)."""
    # a logrus one-line dump with a stray `\x` lost the whole file to a ValueError
    logrus = (
        b'time="2024-01-01T00:00:00Z" level=info msg="=== BEGIN goroutine stack dump ===\\n'
        b'goroutine 1 [running]:\\nmain.f(\\x)\\n\\t/a/b.go:1 +0x1\\n=== END goroutine stack dump ==="\n'
    )
    assert _ids(parse_dump_binary(io.BytesIO(logrus), source=fuzzlib.DISPLAY)) == {1}
    res = _check_parse(logrus, "containerd-log")
    assert _ids(res.evidence.dumps) == {1}
    # a frame outside any goroutine: its dump (problems only) said it started at line 0
    (only,) = parse_dump_text("\t/a/b.go:1 +0x1\n", source=fuzzlib.DISPLAY)
    assert (only.first_line, only.last_line, only.problem_count) == (1, 2, 1)
    fuzzlib.check_dumps([only], b"\t/a/b.go:1 +0x1\n", nlines=2)


_UNHEALTHY = (
    b'"level":"error","msg":"Skipping pod synchronization","err":"PLEG is not healthy: pleg was last seen '
    b'active 3m0.5s ago; threshold is 3m0s"}\n'
)
_JOURNAL_TICK = (
    b'"_COMM": "kubelet", "SYSLOG_IDENTIFIER": "kubelet", "_PID": "1679", '
    b'"MESSAGE": "I0602 05:48:06.350695    1679 generic.go:191] \\"GenericPLEG: Relisting\\""}\n'
)


@pytest.mark.parametrize(
    ("stamp", "dated"),
    [(b"1685684886350.695", True), (b"1e300", False), (b"1e17", False), (b"NaN", False), (b"-1e300", False)],
)
def test_kubelet_json_stamp_out_of_range_is_dropped_not_fatal(stamp: bytes, dated: bool) -> None:
    """Found by fuzz_logs: `"ts": 1e300` raised OverflowError (a traceback past the CLI's
    error handling), 1e17 a ValueError that lost the file. The event stays, undated."""
    data = b'{"ts":' + stamp + b"," + _UNHEALTHY
    res = _check_parse(data, "kubelet-log")
    kinds = [e.kind for e in res.evidence.events]
    assert "pleg-unhealthy" in kinds and res.report.records == 1
    assert all((e.ts is not None) == dated for e in res.evidence.events)


@pytest.mark.parametrize("realtime", [b"99999999999999999999", "\u00b2".encode(), b"9" * 30, b"1685684886350695"])
def test_journal_json_realtime_out_of_range_is_ignored(realtime: bytes) -> None:
    """Found by fuzz_logs: a `__REALTIME_TIMESTAMP` of year 55260 raised ValueError (the whole
    journal lost); a superscript digit passed `str.isdigit()` and failed `int()`."""
    data = b'{"__REALTIME_TIMESTAMP": "' + realtime + b'", ' + _JOURNAL_TICK
    res = _check_parse(data, "journal")
    assert len(res.evidence.relists) == 1 and res.report.records == 1
    primed = b'{"ts": 1e300, "msg": "x"}\n' + data  # journald's time priming of JSON heads
    assert len(_check_parse(primed, "journal").evidence.relists) == 1


def test_meminfo_value_of_5000_digits_is_an_unread_line() -> None:
    """Found by the meminfo property: int() of a 5000-digit value raised ValueError."""
    data = b"MemTotal: " + b"9" * 5000 + b" kB\nMemTotal: 16 kB\nDirty: 1 kB\n"
    res = _check_parse(data, "meminfo")
    (sample,) = res.evidence.meminfo
    assert (sample.mem_total_kb, sample.dirty_kb, res.report.unparsed) == (16, 1, 1)


@pytest.mark.parametrize("kind", list(parsers.PARSERS))
def test_a_number_of_5000_digits_in_any_field_is_not_fatal(kind: str) -> None:
    """Found by the `digits` mutation and then swept for: int() of more than 4300 digits
    raises ValueError (the rest of the file was lost: diskstats, vmstat, dmesg, ps,
    proc-stack, journald, the manifest's JSON), and float() of hundreds makes inf, which
    int() refused with OverflowError (a traceback: psi, top, prometheus stamps). Each digit
    run of the first lines of a real input of the kind is blown up in turn; the unchanged
    input (the look-alike) still yields records."""
    plain = ("\n".join(line_pools()[kind]) + "\n").encode()
    if kind not in ("bundle-manifest", "containerd-config"):  # whole documents: the pool is cuts of several
        assert _check_parse(plain, kind).report.records > 0
    doc = line_pools()[kind][:20]
    for i, line in enumerate(doc):
        for m in list(re.finditer(r"\d+", line))[:4]:
            big = line[: m.start()] + "9" * 5000 + line[m.end() :]
            _check_parse(("\n".join([*doc[:i], big, *doc[i + 1 :]]) + "\n").encode(), kind)


def test_manifest_time_out_of_range_is_no_time() -> None:
    from plegdoctor.parsers.bundle_manifest import _time

    assert _time(1e300) is None and _time(float("nan")) is None
    dated = _time(1685684886.0)
    assert dated is not None and dated.year == 2023


def test_a_zone_offset_past_a_day_is_no_time() -> None:
    """`+5800` (atheris, 767,888 inputs into fuzz_logs: a dmesg-sniffed line) raised
    ValueError from timezone(); an offset of a day or more, or a year-1 stamp east of UTC,
    is no time. The look-alikes: the real extremes +14:00 and -12:00."""
    from plegdoctor.parsers.psi import parse_stamp

    assert parse_stamp("2024-01-01T00:00:00+5800") is None
    assert parse_stamp("2024-01-01T00:00:00+23:60") is None
    assert parse_stamp("0001-01-01T00:00:00+01:00") is None
    east = parse_stamp("2024-01-01T14:00:00+14:00")
    west = parse_stamp("2024-01-01T00:00:00-12:00")
    assert east is not None and east.isoformat() == "2024-01-01T00:00:00+00:00"
    assert west is not None and west.isoformat() == "2024-01-01T12:00:00+00:00"
    # and through the parser that met it
    _check_parse(b"[2024-01-01T00:00:00+5800] INFO: task x:1 blocked for more than 120 seconds.\n", "dmesg")


# ---------------------------------------------------------------------------------------
# The archive reader

_SAFE_NAMES = ["a.log", "dir/b.txt", "./c.log", "d/e/f.log", "kubelet.log"]
_UNSAFE_NAMES = ["../evil.log", "/etc/passwd", "x/../../y.log"]
_CODECS = ["gzip", "zstd", "xz", "bzip2"]


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, mtime=0)
    if codec == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if codec == "xz":
        return lzma.compress(data)
    return bz2.compress(data)


# Payload text cannot start with a magic number (lower case, digits, spaces).
_payloads = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 :.", max_size=50), max_size=20).map(
    lambda lines: "".join(ln + "\n" for ln in lines).encode()
)


@st.composite
def archives(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes], str]:
    """(file bytes, expected {member name: content} (a plain file's content under ""),
    container: plain, tar or zip)."""
    container = draw(st.sampled_from(["plain", "tar", "zip"]))
    if container == "plain":
        payload = draw(_payloads)
        data = payload
        for codec in draw(st.lists(st.sampled_from(_CODECS), max_size=1)):
            data = _compress(codec, data)  # one layer: a .gz of a .gz is read as its inner .gz
        return data, {"": payload}, container
    names = draw(st.lists(st.sampled_from(_SAFE_NAMES + _UNSAFE_NAMES), min_size=1, max_size=5, unique=True))
    expected: dict[str, bytes] = {}
    buf = io.BytesIO()
    if container == "tar":
        fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            for name in names:
                payload = draw(_payloads)
                body = _compress(draw(st.sampled_from(_CODECS)), payload) if draw(st.booleans()) else payload
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
                if name in _SAFE_NAMES:
                    expected[name] = payload
            link = tarfile.TarInfo("link.log")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/shadow"
            tar.addfile(link)
        data = buf.getvalue()
        for codec in draw(st.lists(st.sampled_from(_CODECS), max_size=1)):
            data = _compress(codec, data)
    else:
        with zipfile.ZipFile(
            buf, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
        ) as zf:
            for name in names:
                payload = draw(_payloads)
                zf.writestr(name, payload)
                if name in _SAFE_NAMES:
                    expected[name] = payload
            zlink = zipfile.ZipInfo("link.log")
            zlink.external_attr = 0o120777 << 16  # S_IFLNK
            zf.writestr(zlink, "/etc/shadow")
        data = buf.getvalue()
    return data, expected, container


def _read_all(path: Path) -> list[tuple[str, bytes, str | None]]:
    """(display, content, error) of every source; only UserError may end it early."""
    out = []
    for src in iter_sources([str(path)]):
        content = b"".join((text + "\n").encode("utf-8", "surrogateescape") for _n, text in src.lines())
        out.append((src.display, content, src.error))
    return out


@pytest.fixture(scope="module")
def archive_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archives") / "input.bin"


def _member(display: str, path: Path) -> str:
    assert display.startswith(str(path))
    return display[len(str(path)) + 1 :]


@given(archives())
@PROFILE
def test_archive_reader_reads_sound_archives_whole(archive_path: Path, case: tuple) -> None:
    data, expected, _container = case
    archive_path.write_bytes(data)
    got = _read_all(archive_path)
    read = {_member(d, archive_path): c for d, c, _e in got}
    assert all(e is None for _d, _c, e in got)
    assert read == expected
    for name in read:
        assert not name.startswith("/") and ".." not in name.split("/")


@st.composite
def corrupt_archives(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes], str, str, bool]:
    """(corrupt bytes, what the sound archive held, container, how corrupted, whether the
    first 8 bytes, the magic number, are intact)."""
    data, expected, container = draw(archives())
    original = data
    how = draw(st.sampled_from(["truncate", "truncate", "flip", "garbage"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    else:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=600)) + data[at:]
    return data, expected, container, how, data[:8] == original[:8]


@given(corrupt_archives())
@PROFILE
def test_archive_reader_survives_corrupt_archives(archive_path: Path, case: tuple) -> None:
    """Corrupt bytes end in a warning (`Source.error`) or a UserError, never another
    exception; a truncated compressed file (magic intact) yields a prefix of what it held."""
    data, expected, container, how, magic_intact = case
    archive_path.write_bytes(data)
    try:
        got = _read_all(archive_path)
    except UserError:
        return
    for display, content, _error in got:
        name = _member(display, archive_path) if display != str(archive_path) else ""
        assert not name.startswith("/") and ".." not in name.split("/")
        if how == "truncate" and container == "plain" and magic_intact:
            assert expected[name].startswith(content.rstrip(b"\n"))


def test_zip_of_an_unknown_version_is_a_warning(tmp_path: Path) -> None:
    """Found by the corrupt-archive property: a bit flip in a central directory record's
    `version needed to extract` made zipfile.ZipFile raise NotImplementedError ("zip file
    version 25.5"), a traceback instead of a warning. A sound zip is read."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("kubelet.log", "kubelet line\n")
    good = tmp_path / "good.zip"
    good.write_bytes(buf.getvalue())
    assert [c for _d, c, _e in _read_all(good)] == [b"kubelet line\n"]
    data = bytearray(buf.getvalue())
    central = data.index(b"PK\x01\x02")
    data[central + 6 : central + 8] = (255).to_bytes(2, "little")  # version needed to extract: 25.5
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    ((_display, content, error),) = _read_all(bad)
    assert content == b"" and error is not None and "zip file version 25.5" in error


def test_corrupt_zstd_frame_is_a_warning(tmp_path: Path) -> None:
    """Found by the corrupt-archive property: a zstd frame asking for a dictionary raised
    zstandard.ZstdError out of `Source.head()` (a traceback). The sound frame is read."""
    bad = tmp_path / "bad.zst"
    bad.write_bytes(b'(\xb5/\xfd"\x00\x01\x00\x00')
    ((_display, content, error),) = _read_all(bad)
    assert content == b"" and error is not None and "Dictionary mismatch" in error
    good = tmp_path / "good.zst"
    good.write_bytes(zstandard.ZstdCompressor().compress(b"kubelet line\n"))
    assert [(c, e) for _d, c, e in _read_all(good)] == [(b"kubelet line\n", None)]
