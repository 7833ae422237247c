"""Goroutine dump parser: every framing and Go-version format, on real and derived fixtures."""

from __future__ import annotations

import html
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor.goroutines.flags import ELIDED, GAP, GP_HEADER, ONE_LINE, SCAN, TRUNCATED
from plegdoctor.goroutines.gostrings import go_unquote
from plegdoctor.goroutines.model import Similarity
from plegdoctor.goroutines.parse import parse_dump_binary, parse_dump_stream, parse_dump_text

FIX = Path(__file__).parent / "fixtures" / "goroutines"
HEADER = re.compile(r"^goroutine (\d+) \[([^\]]*)\]:$", re.M)


def parse_file(name: str, **kw):
    path = FIX / name
    with path.open("rb") as fh:
        return parse_dump_binary(fh, source=str(path), **kw)


def parse_str(text: str, source: str = "pasted.txt"):
    return parse_dump_binary(io.BytesIO(text.encode()), source=source)


def signature(dumps):
    """What must survive any re-framing: ids, states, minutes, functions, files, lines."""
    return [
        (g.id, g.state, g.wait_minutes, tuple(loc[0] for loc in g.stack), tuple(loc[1:] for loc in g.stack))
        for d in dumps
        for g in d.goroutines
    ]


def go_quote(text: str) -> str:
    """Go strconv.Quote as logrus applies it to the msg field."""
    return json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------------------------------- real dumps


@pytest.mark.parametrize(
    "name",
    [
        "containerd-1.6.20-go1.19-sigusr1-raw.txt",
        "containerd-1.6.20-go1.19-pprof-debug2.txt",
        "containerd-1.6.20-go1.19-with-cri-pod-raw.txt",
        "containerd-1.7.24-go1.24-sigusr1-raw.txt",
    ],
)
def test_real_raw_dumps_parse_every_goroutine(name: str) -> None:
    text = (FIX / name).read_text()
    expected = [(int(m.group(1)), m.group(2)) for m in HEADER.finditer(text)]
    dumps = parse_file(name)
    assert len(dumps) == 1
    d = dumps[0]
    assert [(g.id, g.state) for g in d.goroutines] == expected
    assert d.process == "containerd" and d.process_source == "frames"
    assert d.problem_count == 0
    assert all(g.stack for g in d.goroutines)
    # every frame has a file and line (raw dumps lose nothing)
    assert all(loc[1] and loc[2] > 0 for g in d.goroutines for loc in g.stack)
    # header line numbers point at the header text
    lines = text.split("\n")
    assert all(lines[g.line - 1] == g.header_text() for g in d.goroutines if not g.scan)


def test_logline_and_raw_of_the_same_dump_agree() -> None:
    raw = parse_file("containerd-1.6.20-go1.19-sigusr1-raw.txt")
    one = parse_file("containerd-1.6.20-go1.19-sigusr1-logline.txt")
    assert signature(raw) == signature(one)
    d = one[0]
    assert d.framing == "logline"
    assert d.dump_time == datetime(2026, 11, 28, 14, 18, 58, 284556, tzinfo=UTC)
    assert all(g.line == 1 and g.flags & ONE_LINE for g in d.goroutines)
    raw17 = parse_file("containerd-1.7.24-go1.24-sigusr1-raw.txt")
    one17 = parse_file("containerd-1.7.24-go1.24-sigusr1-logline.txt")
    assert signature(raw17) == signature(one17)


def test_shim_logline_knows_pid_and_sandbox() -> None:
    (d,) = parse_file("shim-runc-v2-1.6.20-sigusr1-logline.txt")
    assert (d.process, d.pid, d.sandbox, d.namespace) == ("containerd-shim-runc-v2", 6996, "t2", "default")
    assert d.process_source == "log fields"
    (k,) = parse_file("shim-runc-v2-1.6.20-k8s-sandbox-logline.txt")
    assert k.pid == 10338 and k.namespace == "k8s.io"
    assert k.sandbox == "7088920af56d8e2bb9722aec12d35c98cfb17033e781dd933ca7c059ea52d41d"


def test_shim_raw_with_markers_is_recognised_from_frames() -> None:
    (d,) = parse_file("shim-runc-v2-1.6.20-sigusr1-raw-markers.txt")
    assert d.process == "containerd-shim-runc-v2" and d.process_source == "frames"
    assert len(d.goroutines) == len(HEADER.findall((FIX / "shim-runc-v2-1.6.20-sigusr1-raw-markers.txt").read_text()))


def test_go121_created_by_parent_and_version() -> None:
    (d,) = parse_file("containerd-1.7.24-go1.24-sigusr1-raw.txt")
    g = next(g for g in d.goroutines if g.id == 36)
    assert g.parent_id == 1
    assert g.created_by is not None and g.created_by[0].endswith("command.handleSignals")
    assert d.go_version == ">= 1.21"
    (old,) = parse_file("containerd-1.6.20-go1.19-sigusr1-raw.txt")
    assert all(g.parent_id is None for g in old.goroutines)


def test_many_dumps_and_processes_in_one_log() -> None:
    """containerd's journal: its own one-line dumps and its shims', between ordinary lines."""
    parts = []
    for name in ("containerd-1.6.20-go1.19-sigusr1-logline.txt", "shim-runc-v2-1.6.20-sigusr1-logline.txt"):
        parts.append('time="2026-11-28T14:18:57.000000000Z" level=info msg="starting plugins..."')
        parts.append((FIX / name).read_text().strip())
    parts.append('time="2026-11-28T14:19:10.000000000Z" level=info msg="goroutine stack dump written"')
    journal = "\n".join(f"Nov 28 14:19:{i:02d} node1 containerd[2206]: {p}" for i, p in enumerate(parts))
    dumps = parse_str(journal, "journal.txt")
    procs = [(d.process, d.pid, d.framing) for d in dumps]
    assert procs == [("containerd", 2206, "logline"), ("containerd-shim-runc-v2", 6996, "logline")]
    assert [d.first_line for d in dumps] == [2, 4]


# ---------------------------------------------------------------------------------------- derived framings

STALL = "containerd-1.6-stall-go1.19-raw.txt"


@pytest.fixture(scope="module")
def stall_text() -> str:
    return (FIX / STALL).read_text()


@pytest.fixture(scope="module")
def stall_sig():
    return signature(parse_file(STALL))


def test_crlf(stall_text, stall_sig) -> None:
    assert signature(parse_str(stall_text.replace("\n", "\r\n"))) == stall_sig


def test_markdown_code_block_without_tabs(stall_text, stall_sig) -> None:
    pasted = (
        "Here is the dump:\n\n```\n" + "\n".join("    " + ln.lstrip("\t") for ln in stall_text.split("\n")) + "```\n"
    )
    dumps = parse_str(pasted)
    assert signature(dumps) == stall_sig
    assert dumps[0].framing == "pasted"


def test_markdown_links_on_package_paths(stall_text, stall_sig) -> None:
    def linkify(line: str) -> str:
        if not line.startswith("github.com/") or "(" not in line:
            return line
        p = line.rfind("(")
        name = line[:p]
        return f"[{name}](https://{name}){line[p:]}"

    pasted = "\n".join(linkify(ln) for ln in stall_text.split("\n"))
    assert "](https://github.com/containerd/containerd/pkg/cri/server.(*criService).ListContainers)(" in pasted
    assert signature(parse_str(pasted)) == stall_sig


def test_html_escaped(stall_text, stall_sig) -> None:
    extra = (
        "\n\ngoroutine 77 [select]:\nmain.worker(0xc000012345)\n\t<autogenerated>:1 +0x25\n"
        "created by main.main\n\t/src/main.go:12 +0x1d\n"
    )
    escaped = html.escape(stall_text + extra)
    assert "&lt;autogenerated&gt;" in escaped
    dumps = parse_str(escaped)
    g77 = [g for d in dumps for g in d.goroutines if g.id == 77]
    assert g77 and g77[0].stack[0][1] == "<autogenerated>"
    assert [s for s in signature(dumps) if s[0] != 77] == stall_sig


def test_wrapped_long_lines(stall_text, stall_sig) -> None:
    out = []
    for ln in stall_text.split("\n"):
        while len(ln) > 100 and not ln.startswith("\t"):
            cut = ln.rfind(", ", 0, 100)
            if cut < 40:
                break
            out.append(ln[: cut + 1])
            ln = " " + ln[cut + 2 :]
        out.append(ln)
    wrapped = "\n".join(out)
    assert len(wrapped.split("\n")) > len(stall_text.split("\n"))
    assert [s[:4] for s in signature(parse_str(wrapped))] == [s[:4] for s in stall_sig]


def test_journald_prefix_with_tabs_turned_to_spaces(stall_text, stall_sig) -> None:
    lines = [f"Nov 28 14:22:19 node1 containerd[2206]: {ln.replace(chr(9), ' ' * 8)}" for ln in stall_text.split("\n")]
    dumps = parse_str("\n".join(lines))
    assert signature(dumps) == stall_sig
    assert dumps[0].pid == 2206 and dumps[0].framing == "journald"
    assert dumps[0].dump_time is not None and (dumps[0].dump_time.month, dumps[0].dump_time.day) == (11, 28)


def test_containerd_json_log_format(stall_text, stall_sig) -> None:
    line = json.dumps(
        {
            "level": "info",
            "msg": "=== BEGIN goroutine stack dump ===\n" + stall_text + "\n=== END goroutine stack dump ===",
            "time": "2026-11-28T14:22:19.021696518Z",
        }
    )
    (d,) = parse_str(line + "\n")
    assert signature([d]) == stall_sig
    assert d.framing == "json" and d.dump_time == datetime(2026, 11, 28, 14, 22, 19, 21696, tzinfo=UTC)


def _logrus_line(dump_text: str) -> str:
    msg = "=== BEGIN goroutine stack dump ===\n" + dump_text + "\n=== END goroutine stack dump ==="
    return f'time="2026-11-28T14:22:19.021696518Z" level=info msg={go_quote(msg)}'


def test_journalctl_json_with_logrus_message(stall_text, stall_sig) -> None:
    entry = {
        "MESSAGE": _logrus_line(stall_text),
        "_PID": "2206",
        "SYSLOG_IDENTIFIER": "containerd",
        "__REALTIME_TIMESTAMP": "1795875739021696",
    }
    dumps = parse_str(json.dumps(entry) + "\n" + json.dumps({"MESSAGE": None, "_PID": "2206"}) + "\n")
    withg = [d for d in dumps if d.goroutines]
    assert signature(withg) == stall_sig
    assert withg[0].pid == 2206
    assert any("--all" in n for d in dumps for n in d.notes)  # the nulled MESSAGE is reported


def test_journald_48k_pieces_are_rejoined(stall_text, stall_sig) -> None:
    line = _logrus_line(stall_text * 1)
    pieces = [line[i : i + 4096] for i in range(0, len(line), 4096)]
    assert len(pieces) > 3
    # a piece boundary inside an escape (`\` | `n`) must not break anything
    text = "\n".join(f"Nov 28 14:22:19 node1 containerd[2206]: {p}" for p in pieces)
    dumps = parse_str(text)
    assert signature(dumps) == stall_sig
    assert any("re-joined" in n for n in dumps[0].notes)


def test_excerpt_gaps_and_truncated_last_goroutine(stall_text) -> None:
    blocks = stall_text.strip().split("\n\n")
    first = blocks[0].split("\n")
    with_gap = "\n".join([*first[:5], "...", *first[5:]])
    cut = blocks[-1][: blocks[-1].rindex("handleStream(") + 20]  # mid-line, inside the argument list
    text = "\n\n### ... ###\n\n".join([with_gap, *blocks[1:-1], cut])
    dumps = parse_str(text)
    gs = {g.id: g for d in dumps for g in d.goroutines}
    assert len(gs) == len(blocks)
    assert gs[int(HEADER.match(first[0]).group(1))].flags & GAP
    last = gs[int(HEADER.match(blocks[-1].split("\n")[0]).group(1))]
    assert last.flags & TRUNCATED
    assert any("cut mid-line" in p.reason for d in dumps for p in d.problems)


def test_seed_ticket_excerpts_split_by_process() -> None:
    dumps = parse_file("seed-ticket-excerpts-zh.txt")
    by_proc = {d.process: sorted(g.id for g in d.goroutines) for d in dumps}
    assert by_proc == {"containerd": [1268, 1654, 1665, 1723], "containerd-shim-runc-v2": [104]}
    gs = {g.id: g for d in dumps for g in d.goroutines}
    assert gs[1723].flags & TRUNCATED  # excerpt cut after updateContainerSpec (no file line)
    assert gs[1723].stack[-1][0].endswith("server.updateContainerSpec")
    assert gs[1268].flags & TRUNCATED and gs[1268].stack[-1][0].endswith("metadata.update")
    # the one problem reported is the excerpt cut mid-line, with its line number
    text = (FIX / "seed-ticket-excerpts-zh.txt").read_text().split("\n")
    problems = [p for d in dumps for p in d.problems]
    assert len(problems) == 1 and text[problems[0].line - 1].endswith("0xc000")
    assert dumps[0].go_version == "<= 1.19"


# ---------------------------------------------------------------------------------------- Go formats


PANIC = """panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4553a1]

goroutine 0 gp=0x4ded80 m=0 mp=0x4df340 [idle]:
runtime.futex(0x4df480, 0x80, 0x0, 0x0, 0x0, 0x0)
\t/usr/lib/go/src/runtime/sys_linux_amd64.s:557 +0x21 fp=0x7ffd5a3b7d68 sp=0x7ffd5a3b7d60 pc=0x45cbe1

goroutine 7 gp=0xc000007dc0 m=nil [select (scan), 12 minutes, locked to thread]:
main.loop(0xc00001c0c0)
\t/src/main.go:40 +0x65 fp=0xc000058fc8 sp=0xc000058f80 pc=0x4553a1
created by main.main in goroutine 1
\t/src/main.go:12 +0x1d fp=0xc000058fe0 sp=0xc000058fc8 pc=0x45519d

goroutine 9 [running]:
main.deep(...)
\t/src/main.go:30
main.deep(0x1)
\t/src/main.go:31 +0x1a
...12 frames elided...
main.start()
\t/src/main.go:20 +0x1a

goroutine 11 [semacquire]:
main.recurse()
\t/src/main.go:50 +0x1a
...additional frames elided...
created by main.main
\t/src/main.go:13 +0x2a

goroutine 12 [running]:
\tgoroutine running on other thread; stack unavailable
created by main.main in goroutine 1
\t/src/main.go:14 +0x2a

goroutine 13 [chan receive]:
main.wait()
\t/src/main.go:60 +0x1a
[originating from goroutine 1]:
main.main()
\t/src/main.go:10 +0x1a

runtime stack:
runtime.throw({0x4b5a1e?, 0x0?})
\t/usr/lib/go/src/runtime/panic.go:1077 +0x5c fp=0x7ffd5a3b7e30 sp=0x7ffd5a3b7e00 pc=0x4321bc
exit status 2
"""


def test_go_format_features_from_crash_output() -> None:
    (d,) = parse_str(PANIC, "panic.txt")
    gs = {g.id: g for g in d.goroutines}
    assert sorted(gs) == [0, 7, 9, 11, 12, 13]
    g7 = gs[7]
    assert (g7.state, g7.wait_minutes, g7.locked) == ("select", 12, True)
    assert g7.flags & SCAN and g7.flags & GP_HEADER and g7.parent_id == 1
    assert g7.stack[0] == ("main.loop", "/src/main.go", 40)  # fp= sp= pc= dropped
    assert gs[0].state == "idle"
    assert gs[9].flags & ELIDED and gs[9].elided == 12
    assert gs[9].args[0] == "..." and gs[9].frame(0).inlined
    assert gs[11].flags & ELIDED and gs[11].elided == -1
    assert gs[12].stack == () and gs[12].parent_id == 1
    assert [loc[0] for loc in gs[13].stack] == ["main.wait"]  # ancestors skipped
    assert d.problem_count == 1  # goroutine 12 has no frames: reported, not fatal
    assert d.go_version == ">= 1.22"


def test_inaccurate_args_and_receivers() -> None:
    (d,) = parse_file(STALL)
    g = next(g for g in d.goroutines if g.id == 1723)
    f = g.frame(1)  # sync.(*Mutex).lockSlow(0xc0002f9178)
    assert f.receiver == "0xc0002f9178" and f.args_inaccurate == (False,)
    f0 = g.frame(0)
    assert f0.receiver is None and f0.args_inaccurate == (True, True, True)


def test_semacquire_vs_go120_reasons_and_internal_sync() -> None:
    (old,) = parse_file(STALL)
    (new,) = parse_file("containerd-2.1-status-fsync-go1.24-raw.txt")
    assert {g.state for g in old.goroutines} >= {"semacquire"}
    assert {g.state for g in new.goroutines} >= {"sync.RWMutex.RLock", "sync.Mutex.Lock"}
    assert new.go_version == ">= 1.24"
    g = next(g for g in new.goroutines if g.id == 8806)
    assert g.stack[0][0] == "internal/sync.runtime_SemacquireMutex"


# ---------------------------------------------------------------------------------------- bad input


def test_broken_dump_parses_the_rest_and_reports_line_numbers(stall_text) -> None:
    lines = stall_text.split("\n")
    # corrupt three lines inside goroutines: garbage, a lost function line, binary junk
    targets = [i for i, ln in enumerate(lines) if ln.startswith("github.com/containerd/containerd/pkg/cri/server.")][:2]
    lines[targets[0]] = "@@@@ garbled by the ticket system @@@@"
    del_at = targets[1]
    lines[del_at] = "\x07\x1b[31m"
    broken = "\n".join(lines)
    (d,) = parse_str(broken)
    assert [g.id for g in d.goroutines] == [s[0] for s in signature(parse_file(STALL))]
    assert d.problem_count >= 2
    problem_lines = {p.line for p in d.problems}
    assert targets[0] + 1 in problem_lines and del_at + 1 in problem_lines


def test_not_a_dump_gives_nothing() -> None:
    assert parse_str("hello\nworld\n") == []
    assert parse_dump_text("just prose about goroutine leaks", source="x") == []


def test_parse_dump_text_api_with_line_map(stall_text, stall_sig) -> None:
    dumps = parse_dump_text(
        stall_text, source="containerd.log", first_line=1, line_map=lambda i: 4242, pid=99, process="containerd"
    )
    assert signature(dumps) == stall_sig
    assert all(g.line == 4242 for g in dumps[0].goroutines)
    assert dumps[0].pid == 99 and dumps[0].process_source == "caller"
    plain = parse_dump_text(stall_text, source="f", first_line=10)
    assert plain[0].goroutines[0].line == 10


def test_parse_dump_stream_accepts_source_lines(stall_text, stall_sig) -> None:
    pairs = list(enumerate(stall_text.split("\n"), 1))
    assert signature(parse_dump_stream(pairs, source="x")) == stall_sig


def test_go_unquote() -> None:
    assert go_unquote(r"a\tb\nc\"d\\n\x41\u00e9") == 'a\tb\nc"d\\nA\u00e9'


def test_similarity_levels_on_goroutines() -> None:
    (d,) = parse_file(STALL)
    a, b = (g for g in d.goroutines if g.id in (1665, 1690))
    assert a.signature(Similarity.EXACT_LINES) != b.signature(Similarity.EXACT_LINES)
    assert a.signature(Similarity.ANY_POINTER) == b.signature(Similarity.ANY_POINTER)
