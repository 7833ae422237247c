"""The linear rewrites of the quadratic regular expressions (#10 item 3) read what the
old expressions read, and pathological 64 KiB lines are read without error.

Correctness only: the time per line is measured by bench/bench_pathological.py. The old
expressions are kept here as the reference each rewrite is compared with, over every line
of the fixtures and the real-incident corpus (lines cut to 4 KiB: the old ones are slow).
"""

from __future__ import annotations

import io
import re
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plegdoctor.errors import UserError
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.goroutines import framing as gparse
from plegdoctor.inputs import Source
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import runtime_config, top
from plegdoctor.parsers.logs import common as _logcommon
from plegdoctor.parsers.logs import kubelet as kubelet_log
from plegdoctor.parsers.logs import kubelet_events
from plegdoctor.parsers.logs.common import GO_QUOTED, go_unquote, parse_go_duration
from plegdoctor.timeutil import TimeContext

TESTS = Path(__file__).resolve().parent
K64 = 64 * 1024

# ---- the expressions before the rewrite (the reference)
OLD_KV = re.compile(r"([A-Za-z_][\w.\-]*)=(" + GO_QUOTED + r"|\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}|[^ ]*)")
OLD_CRI_FAILED = re.compile(r"(\w+)\b.*? from (runtime|image) service failed")
OLD_LAST_SEEN = re.compile(r"pleg was last seen active (\S+?) ago")
OLD_DU_TOOK = re.compile(
    r"(?:du and find|`du`|disk usage and inodes count) on following dirs took (\S+?): (\[[^\]]*\])"
)
OLD_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
OLD_LOGRUS_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
OLD_TOP = {
    "_SUMMARY": re.compile(r"^top - (\d\d:\d\d:\d\d) up .{1,60}?load average: ([\d.]+), ([\d.]+), ([\d.]+)\s*$"),
    "_CPU": re.compile(r"^%Cpu\(s\):.{0,120}?([\d.]+) wa\b"),
    "_MEM": re.compile(r"^([KMGT]i)B Mem\s*:\s*([\d.]+) total,\s*([\d.]+) free"),
    "_SWAP": re.compile(r"^([KMGT]i)B Swap\s*:\s*([\d.]+) total,.{0,80}?([\d.]+) avail Mem\s*$"),
    "_ROW": re.compile(
        r"^\s*(\d{1,9})\s+(\S{1,32})\s+(-?\d+|rt)\s+(-?\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+([RSDTtZIXWP])\s+([\d.]+)\s+([\d.]+)"
        r"\s+(\S+)\s+(.{1,256}?)\s*$"
    ),
}


def old_duration(text: str) -> float | None:
    pos, total = 0, 0.0
    for m in OLD_DUR_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _logcommon._DUR_SCALE[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


@cache
def corpus_lines() -> tuple[str, ...]:
    out: list[str] = []
    for root in (TESTS / "fixtures", TESTS / "corpus"):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".json", ".gz", ".zst", ".xz", ".bz2", ".tar", ".zip"):
                out.extend(line[:4096] for line in path.read_text("utf-8", "replace").splitlines())
    return tuple(out)


def _lines_with(*needles: str) -> list[str]:
    return [ln for ln in corpus_lines() if any(n in ln for n in needles)]


def test_corpus_is_there() -> None:
    assert len(corpus_lines()) > 5000


def test_kubelet_fields_as_before() -> None:
    seen = 0
    for line in _lines_with("="):
        old = [(m.group(1), m.group(2)) for m in OLD_KV.finditer(line)]
        new = [(m.group(1), m.group(2)) for m in kubelet_events._KV.finditer(line)]
        assert new == old, line
        seen += bool(old)
    assert seen > 300
    # a key inside a run starts at its first letter, as before
    assert kubelet_events._fields('9abc=1 x.y-z="q" _k={a{b}c}') == {"abc": "1", "x.y-z": "q", "_k": "{a{b}c}"}


def test_cri_method_as_before() -> None:
    lines = _lines_with("service failed")
    extra = [
        " from runtime service failed x from image service failed",
        "a\n from runtime service failed",
        "ListPodSandbox with filter nil from runtime service failed",
        "é from image service failed",
        "  from runtime service failed",
    ]
    seen = 0
    for line in lines + extra:
        old = OLD_CRI_FAILED.search(line)
        m, method = kubelet_events._cri_method(line)
        assert (method, m.group(1) if m else None) == ((old.group(1), old.group(2)) if old else (None, None)), line
        seen += old is not None
    assert seen >= len(extra) - 1


def test_last_seen_and_du_as_before() -> None:
    lines = [
        *_lines_with("last seen active", "following dirs"),
        "disk usage and inodes count on following dirs took 1m2s: [/a /b]",
        "du and find on following dirs took 1s:x: [a] took 2s: [b]",
        "`du` on following dirs took 3s: [/unclosed",
    ]
    seen = 0
    for line in lines:
        old, new = OLD_LAST_SEEN.search(line), kubelet_events._LAST_SEEN.search(line)
        assert (old and old.group(1)) == (new and new.group(1)), line
        old_du, new_du = OLD_DU_TOOK.search(line), kubelet_events._DU_TOOK.search(line)
        close = line.find("]", new_du.end()) if new_du else -1
        new_pair = (new_du.group(1), line[new_du.end() - 1 : close + 1]) if new_du and close >= 0 else None
        assert new_pair == (old_du.groups() if old_du else None), line
        seen += (old is not None) + (old_du is not None)
    assert seen >= 4


def test_go_duration_as_before() -> None:
    tokens = {tok.strip(",;\"'()[]") for line in _lines_with("s", "m") for tok in line.split()[:40]}
    tokens |= {"3m2.325658446s", "1h0m5s", "500ms", "1.5µs", "2us", "1m", "", "1", "1.s", "s", "1s2", "1ss", "-1s"}
    matched = 0
    for tok in tokens:
        if not tok.isascii():
            continue  # `\d` read Arabic-Indic digits as a duration; Go durations are ASCII
        assert parse_go_duration(tok) == old_duration(tok), tok
        matched += old_duration(tok) is not None
    assert matched > 20
    # a Go duration is an int64 of nanoseconds: just under reads, just over does not
    assert parse_go_duration("2562047h") == 2562047 * 3600.0
    assert parse_go_duration("2562048h") is None
    assert parse_go_duration("9" * 5000 + "s") is None
    assert parse_go_duration("\u0663s") is None


def test_logrus_fields_as_before() -> None:
    seen = 0
    for line in _lines_with("="):
        old = OLD_LOGRUS_FIELD.findall(line)
        assert gparse._LOGRUS_FIELD.findall(line) == old, line
        seen += bool(old)
    assert seen > 300


def test_top_as_before() -> None:
    seen = 0
    for line in corpus_lines():
        for name, old in OLD_TOP.items():
            o, n = old.match(line), getattr(top, name).match(line)
            assert (o and o.groups()) == (n and n.groups()), (name, line)
            seen += o is not None
    assert seen > 10


@given(st.text(alphabet="ab\\\"nt'xu0U7\n", max_size=40))
def test_go_unquote_fast_path_is_the_escape_regex(body: str) -> None:
    assert go_unquote(body) == _logcommon._GO_ESCAPE.sub(_logcommon._go_escape, body)


def test_go_unquote_of_real_values() -> None:
    seen = 0
    for line in _lines_with('\\"', "\\n", "\\\\"):
        for m in re.finditer(GO_QUOTED, line):
            body = m.group(0)[1:-1]
            assert go_unquote(body) == _logcommon._GO_ESCAPE.sub(_logcommon._go_escape, body)
            seen += 1
    assert seen > 50


# ---- pathological lines through the parsers: read without error, the right counts


def run(mod: object, text: str, kind: str) -> ParseContext:
    data = text.encode()
    ctx = ParseContext(Evidence(), InputReport("x.log", kind), TimeContext(year=2024))
    mod.parse(Source("x.log", None, len(data), _stream=io.BytesIO(data)), ctx)  # type: ignore[attr-defined]
    return ctx


KLOG = 'E0615 10:00:00.000000    1679 kubelet.go:2359] "Skipping pod synchronization" err="PLEG is not healthy: '


@pytest.mark.parametrize("filler", ["7", "\u0663", "9a", " ", '"', "key=", "=<"])
def test_kubelet_pathological_lines(filler: str) -> None:
    fill = filler * (K64 // len(filler.encode()))
    text = "\n".join(
        [
            KLOG + f'pleg was last seen active {fill} ago"',
            KLOG + 'pleg was last seen active 3m2.5s ago"',
            f"pleg was last seen active {fill} ago service failed",  # a candidate, not a kubelet line
            f'E0615 10:00:01.000000    1679 remote.go:1] "{fill.replace(chr(34), "")} ListPodSandbox from runtime'
            ' service failed"',
            "",
        ]
    )
    ctx = run(kubelet_log, text, "kubelet-log")
    unhealthy = [e for e in ctx.evidence.events if e.kind == EventKind.PLEG_UNHEALTHY]
    assert [e.attrs["last_seen_seconds"] for e in unhealthy] == [None, 182.5]
    (cri,) = [e for e in ctx.evidence.events if e.kind == EventKind.CRI_CALL_FAILED]
    assert cri.attrs["service"] == "runtime"
    # records: the candidate lines read (all four); unparsed: the one that is no kubelet line
    assert (ctx.report.records, ctx.report.unparsed) == (4, 1)


def test_kubelet_exit_code_of_5000_digits_stays_text() -> None:
    line = 'I0602 05:51:49.700000 1679 generic.go:334] "Generic (PLEG): container finished" podID="p" exitCode='
    ctx = run(kubelet_log, f"{line}{'9' * 5000}\n{line}137\n{line}-1\n", "kubelet-log")
    codes = [e.attrs["exit_code"] for e in ctx.evidence.events if e.kind == EventKind.CONTAINER_FINISHED]
    assert codes == ["9" * 5000, 137, -1]


def test_klog_header_with_a_5000_digit_pid_is_not_klog() -> None:
    assert _logcommon.parse_klog_header("I0615 10:00:00.000000 " + "1" * 5000 + " a.go:1] x") is None
    assert _logcommon.parse_klog_header("I0615 10:00:00.000000 1234567890 a.go:1] x") is not None


@pytest.mark.parametrize("filler", ["7", "1.", " ", "\u0663"])
def test_top_pathological_lines(filler: str) -> None:
    fill = filler * (K64 // len(filler.encode()))
    text = "\n".join(
        [
            "top - 10:00:00 up 1 day,  1 user,  load average: 1.00, 2.00, 3.00",
            f"KiB Swap:        0 total,  {fill}      0 free,        0 used.    24816 avail Mem ",
            "KiB Mem :  1000 total,   500 free,   300 used,   200 buff/cache",
            f"%Cpu(s):  1.0 us, {fill} 2.0 wa",
            "",
        ]
    )
    ctx = run(top, text, "top")
    (mem,) = ctx.evidence.memory
    assert (mem.mem_total_kb, mem.swap_total_kb, mem.iowait_percent) == (1000, None, None)
    assert ctx.report.unparsed == 2  # the swap and CPU lines, counted, not read
    ctx = run(top, text.replace(fill, ""), "top")  # the same lines without the filler are read
    (mem,) = ctx.evidence.memory
    assert (mem.mem_total_kb, mem.swap_total_kb, mem.iowait_percent, ctx.report.unparsed) == (1000, 0, 2.0, 0)


def test_config_key_of_many_parts_is_refused_with_one_warning() -> None:
    ok = "version = 2\n" + "[" + ".".join(["a"] * runtime_config.MAX_KEY_PARTS) + "]\nx = 1\n"
    assert run(runtime_config, ok, "containerd-config").report.records == 1
    bad = "version = 2\n" + "[" + ".".join(["a"] * (runtime_config.MAX_KEY_PARTS + 1)) + "]\nx = 1\n"
    ctx = run(runtime_config, bad, "containerd-config")
    assert ctx.report.records == 0
    assert ctx.report.warnings == [
        f"x.log:2: a key of more than {runtime_config.MAX_KEY_PARTS} dotted parts: not read as TOML"
    ]
    with pytest.raises(UserError):
        runtime_config.config_from_text("version = 2\n" + "1." * 40_000 + "1 = 2\n", "c.toml")


@pytest.mark.parametrize("value", ["9" * 5000, "[" * 5000 + "]" * 5000])
def test_config_values_tomllib_cannot_take_are_one_warning(value: str) -> None:
    ctx = run(runtime_config, f"version = 2\nx = {value}\n", "containerd-config")
    assert ctx.report.records == 0
    assert len(ctx.report.warnings) == 1 and "not read as TOML" in ctx.report.warnings[0]
