"""Goroutine dump framings of issue #9 (item 3): pprof debug=1 profiles and their grep
excerpts, headerless fragments, time-of-day prefixes, double-spaced and collapsed pastes,
journald-wrapped dockerd dumps, bad headers; process names from frames; canonical names.

Fixtures: tests/fixtures/goroutines/framings/ (README.md says where each came from).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from plegdoctor.goroutines.cli import command as goroutines_command
from plegdoctor.goroutines.flags import HEADERLESS, ONE_LINE, PROFILE, SPACED
from plegdoctor.goroutines.model import CONTAINERD, CRIO, DOCKERD, KUBELET, RUNC, UNKNOWN_STATE, Dump
from plegdoctor.goroutines.parse import parse_dump_binary, parse_dump_text

FIX = Path(__file__).parent / "fixtures" / "goroutines" / "framings"


def parse_file(name: str) -> list[Dump]:
    path = FIX / name
    with path.open("rb") as fh:
        return parse_dump_binary(fh, source=str(path))


def only(dumps: list[Dump]) -> Dump:
    assert len(dumps) == 1, [d.label for d in dumps]
    return dumps[0]


def goroutines_json(*names: str) -> dict[str, Any]:
    result = CliRunner().invoke(goroutines_command, [*(str(FIX / n) for n in names), "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout_bytes)


def bucket_funcs(doc: dict[str, Any]) -> list[list[str]]:
    return [[f["func"] for f in b["frames"]] for b in doc["buckets"]]


# ---------------------------------------------------------------------------------- pprof debug=1


def test_debug1_grep_excerpt_is_two_headerless_records_of_kubelet() -> None:
    d = only(parse_file("pprof-debug1-grep-kubelet-98044.txt"))
    assert d.process == KUBELET and d.process_source == "frames"
    assert d.framing == "pprof-debug1"
    assert [g.id for g in d.goroutines] == [-1, -2]
    assert all(g.state == UNKNOWN_STATE and g.wait_minutes is None for g in d.goroutines)
    assert all(g.flags & PROFILE and g.flags & HEADERLESS for g in d.goroutines)
    first, second = d.goroutines
    assert first.line == 2 and second.line == 5  # the prompt line (1) and the gap (4) are not frames
    assert [f.func for f in first.frames] == [
        "k8s.io/kubernetes/vendor/google.golang.org/grpc.(*clientStream).RecvMsg.func1",
        "k8s.io/kubernetes/vendor/google.golang.org/grpc.(*clientStream).withRetry",
    ]
    top = second.frames[0]
    assert top.func == "k8s.io/kubernetes/pkg/kubelet/dockershim/network.(*PluginManager).GetPodNetworkStatus"
    assert top.file.endswith("/pkg/kubelet/dockershim/network/plugins.go") and top.line == 389
    assert top.args == ""
    assert [f.line for f in second.frames] == [389, 341, 379, 445]
    assert second.funcs[-1].endswith("(*dockerService).PodSandboxStatus")
    # evidence points at the real lines: one `#` line per frame
    assert [d.ref(second, i).line for i in range(4)] == [5, 6, 7, 8]
    assert "synthetic id -2" in d.ref(second).text
    assert d.problem_count == 0
    assert any("pprof goroutine profile (debug=1): 2 record(s)" in n and "without an 'N @'" in n for n in d.notes)


def test_debug1_record_with_header_line() -> None:
    d = only(parse_file("pprof-debug1-record-crio-6865.txt"))
    assert d.process == CRIO
    (g,) = d.goroutines
    assert g.id == -1 and g.flags & PROFILE and not g.flags & HEADERLESS
    assert g.line == 1  # the `1 @ 0x...` record line
    assert g.funcs[0] == "github.com/cri-o/cri-o/internal/oci.WaitContainerStop"
    assert g.frames[1].func == "github.com/cri-o/cri-o/internal/oci.(*runtimeOCI).StopContainer"
    assert g.frames[1].line == 771
    assert d.ref(g, 1).line == 3


def test_debug1_full_profile_expands_records_into_goroutines() -> None:
    text = (FIX / "pprof-debug1-full-containerd-synthetic.txt").read_text()
    d = only(parse_file("pprof-debug1-full-containerd-synthetic.txt"))
    counts = [int(ln.split(" @ ", 1)[0]) for ln in text.splitlines() if " @ 0x" in ln]
    assert len(counts) == 28 and sum(counts) == 34
    assert len(d.goroutines) == 34 and d.first_line == 1
    assert sorted(g.id for g in d.goroutines) == list(range(-34, 0))
    assert d.process == CONTAINERD
    # the first record (2 goroutines) shares one stack
    a, b = d.goroutines[:2]
    assert a.stack is b.stack and a.line == b.line == 2
    assert a.funcs[0] == "internal/poll.runtime_pollWait" and a.frames[0].line == 305
    assert d.ref(a, 0).line == 3
    # the labelled record: frames start after its `# labels:` line
    lines = text.splitlines()
    labelled = next(g for g in d.goroutines if lines[g.line - 1].startswith("# labels:"))
    assert lines[d.ref(labelled, 0).line - 1].startswith("#\t0x")
    assert any("28 record(s) of 34 goroutine(s)" in n for n in d.notes)
    assert d.problem_count == 0


def test_debug1_header_total_mismatch_is_noted() -> None:
    text = "goroutine profile: total 9\n3 @ 0x1 0x2\n#\t0x1\tmain.f+0x1\t/a/b.go:3\n#\t0x2\tmain.main+0x2\t/a/b.go:9\n"
    d = only(parse_dump_text(text, source="p.txt"))
    assert [g.id for g in d.goroutines] == [-1, -2, -3]
    assert any("header says total 9" in n for n in d.notes)


def test_debug1_end_to_end_json() -> None:
    doc = goroutines_json("pprof-debug1-grep-kubelet-98044.txt")
    (proc,) = doc["processes"]
    assert proc["process"] == "kubelet" and proc["framing"] == "pprof-debug1" and doc["goroutines"] == 2
    funcs = bucket_funcs(doc)
    assert any(any("GetPodNetworkStatus" in f for f in fs) for fs in funcs)
    ids = sorted(i for b in doc["buckets"] for i in b["ids"])
    assert ids == [-2, -1]
    assert all(b["state"] == "unknown" for b in doc["buckets"])


# ---------------------------------------------------------------------------------- headerless


def test_headerless_fragments_become_goroutines_with_a_note() -> None:
    d = only(parse_file("headerless-containerd-1882.txt"))
    assert d.process == CONTAINERD
    assert [g.id for g in d.goroutines] == [-1, -2]
    assert [g.line for g in d.goroutines] == [1, 11]
    for g in d.goroutines:
        assert g.flags & HEADERLESS and not g.flags & PROFILE and g.state == UNKNOWN_STATE
        assert g.funcs[:2] == (
            "github.com/containerd/containerd/vendor/github.com/stevvooe/ttrpc.(*Client).Call",
            "github.com/containerd/containerd/linux/shim/v1.(*shimClient).State",
        )
        assert g.frames[0].line == 63 and g.frames[0].file.endswith("stevvooe/ttrpc/client.go")
        assert g.funcs[-1] == "github.com/containerd/containerd/services/tasks.addTasks"  # its file line was cut
        assert g.truncated
    assert d.problem_count == 0
    assert any("2 stack fragment(s) without a 'goroutine N [state]:' header (line(s) 1, 11)" in n for n in d.notes)


def test_headerless_fragment_line_refs_and_mixed_with_headers() -> None:
    text = (
        "main.inner(0x1)\n\t/src/a.go:10 +0x1\nmain.outer()\n\t/src/a.go:20 +0x2\n\n"
        "goroutine 7 [select]:\nmain.loop()\n\t/src/a.go:30 +0x3\n"
    )
    d = only(parse_dump_text(text, source="x.txt"))
    frag, g7 = d.goroutines
    assert frag.id == -1 and frag.flags & HEADERLESS and frag.funcs == ("main.inner", "main.outer")
    assert [d.ref(frag, i).line for i in range(2)] == [1, 3]
    assert g7.id == 7 and g7.state == "select" and d.ref(g7, 0).line == 7


def test_headerless_end_to_end_json() -> None:
    doc = goroutines_json("headerless-containerd-1882.txt")
    assert doc["processes"][0]["process"] == "containerd"
    assert any("without a 'goroutine N [state]:' header" in n for n in doc["processes"][0]["notes"])
    (b,) = doc["buckets"]
    assert sorted(b["ids"]) == [-2, -1] and b["count"] == 2
    assert "(*shimClient).State" in b["frames"][1]["func"] and "ttrpc.(*Client).Call" in b["frames"][0]["func"]


def test_race_report_sections_are_not_goroutines() -> None:
    text = (
        "WARNING: DATA RACE\nRead at 0x00c000014100 by goroutine 8:\n  main.read()\n      /a/main.go:137 +0x3a\n\n"
        "Goroutine 8 (running) created at:\n  main.main()\n      /a/main.go:54 +0x6c8\n"
    )
    assert not any(d.goroutines for d in parse_dump_text(text, source="race.txt"))


# ---------------------------------------------------------------------------------- Go versions


def test_go121_wait_reason_and_minutes() -> None:
    d = only(parse_file("go121-waitreason-crio-9406.txt"))
    (g,) = d.goroutines
    assert (g.id, g.state, g.wait_minutes) == (41391428, "sync.Mutex.Lock", 215)
    assert d.process == CRIO and d.go_version == ">= 1.20"
    assert g.frames[4].func == "github.com/cri-o/cri-o/internal/oci.(*runtimeOCI).UpdateContainerStatus"
    assert g.frames[4].line == 1020


def test_go122_gp_header() -> None:
    d = only(parse_file("go122-gp-header-kubelet-122491.txt"))
    (g,) = d.goroutines
    assert (g.id, g.state) == (1, "syscall") and d.go_version == ">= 1.22"
    assert g.frames[0].func == "syscall.Syscall" and g.frames[0].line == 69
    assert g.frames[2].file == "github.com/google/cadvisor@v0.49.0/fs/fs.go" and g.frames[2].line == 720


def test_created_by_in_goroutine_records_the_parent() -> None:
    d = only(parse_file("created-in-goroutine-containerd-1.7.24.txt"))
    assert [(g.id, g.state, g.parent_id) for g in d.goroutines] == [
        (36, "running", 1),
        (1, "chan receive", None),
        (38, "syscall", 1),
    ]
    assert d.goroutines[0].created_by == (
        "github.com/containerd/containerd/cmd/containerd/command.handleSignals",
        "github.com/containerd/containerd/cmd/containerd/command/main_unix.go",
        40,
    )
    assert d.process == CONTAINERD and d.go_version == ">= 1.21"


# ---------------------------------------------------------------------------------- pastes


def _shape(dumps: list[Dump]) -> list[tuple[Any, ...]]:
    return [(g.id, g.state, g.wait_minutes, g.parent_id, g.stack, g.created_by) for d in dumps for g in d.goroutines]


def test_double_spaced_paste_equals_the_original() -> None:
    spaced = parse_file("double-spaced-synthetic.txt")
    assert _shape(spaced) == _shape(parse_file("created-in-goroutine-containerd-1.7.24.txt"))
    d = only(spaced)
    assert [g.line for g in d.goroutines] == [1, 17, 37]
    assert all(g.flags & SPACED for g in d.goroutines)
    assert d.ref(d.goroutines[1], 2).line == 17  # lines are not consecutive: the header is quoted
    assert d.problem_count == 0


def test_double_spaced_real_paste() -> None:
    d = only(parse_file("double-spaced-ttrpc-174.txt"))
    (g,) = d.goroutines
    assert (g.id, g.state, g.wait_minutes) == (6132118, "IO wait", 1818)
    assert len(g.stack) >= 8 and g.funcs[0] == "internal/poll.runtime_pollWait"
    assert any("ttrpc" in f for f in g.funcs)
    assert d.process == CONTAINERD


def test_collapsed_one_goroutine_per_line() -> None:
    collapsed = parse_file("collapsed-synthetic.txt")
    assert _shape(collapsed) == _shape(parse_file("created-in-goroutine-containerd-1.7.24.txt"))
    d = only(collapsed)
    assert [g.line for g in d.goroutines] == [1, 2, 3]
    assert all(g.flags & ONE_LINE for g in d.goroutines)
    assert d.ref(d.goroutines[1], 3).line == 2
    assert d.problem_count == 0


def test_collapsed_line_from_the_issue_text() -> None:
    text = "goroutine 5 [select]: main.f(0x1) /a/b.go:12 +0x1d created by main.g /a/c.go:3 +0x22\n"
    (g,) = only(parse_dump_text(text, source="x")).goroutines
    assert (g.id, g.state) == (5, "select")
    assert g.frames[0] == ("main.f", "0x1", "/a/b.go", 12)
    assert g.created_by == ("main.g", "/a/c.go", 3)
    text = "goroutine 9 [chan receive, 3 minutes]: main.h({0x1, 0x2}, 0x3) /a/b.go:7 main.(*T).M(...) /a/b.go:8\n"
    (g,) = only(parse_dump_text(text, source="x")).goroutines
    assert g.wait_minutes == 3 and g.frames[0].args == "{0x1, 0x2}, 0x3"
    assert g.frames[1].func == "main.(*T).M" and g.frames[1].inlined


def test_collapsed_end_to_end_json() -> None:
    doc = goroutines_json("collapsed-synthetic.txt")
    assert doc["goroutines"] == 3 and doc["processes"][0]["process"] == "containerd"
    ids = sorted(i for b in doc["buckets"] for i in b["ids"])
    assert ids == [1, 36, 38]


# ---------------------------------------------------------------------------------- log prefixes


def test_journald_wrapped_dockerd_dump() -> None:
    d = only(parse_file("journald-dockerd-moby-27827.txt"))
    assert (d.process, d.pid, d.framing) == (DOCKERD, 1748, "journald")
    assert [(g.id, g.state, g.wait_minutes) for g in d.goroutines] == [
        (82255, "semacquire", 5),
        (82238, "semacquire", 19),
    ]
    g = d.goroutines[1]
    assert g.funcs[2:4] == (
        "github.com/docker/docker/container.(*State).IsRunning",
        "github.com/docker/docker/daemon.(*Daemon).ContainerStop",
    )
    assert g.frames[2].line == 159
    assert d.dump_time is not None and (d.dump_time.month, d.dump_time.day) == (10, 27)


def test_time_of_day_prefixes() -> None:
    tod = parse_file("tod-prefix-dockerd-synthetic.txt")
    assert _shape(tod) == _shape(parse_file("journald-dockerd-moby-27827.txt"))
    d = only(tod)
    assert (d.process, d.pid, d.dump_time) == (DOCKERD, 1748, None)  # no date: no dump time
    pre = "15:20:23.118307 node-1 containerd[42]: "
    text = f"{pre}goroutine 3 [select]:\n{pre}main.f()\n{pre}\t/a/b.go:1 +0x1\n"
    d = only(parse_dump_text(text, source="x"))
    assert (d.process, d.pid, [g.id for g in d.goroutines]) == (CONTAINERD, 42, [3])


def test_journald_dockerd_end_to_end_json() -> None:
    doc = goroutines_json("journald-dockerd-moby-27827.txt", "tod-prefix-dockerd-synthetic.txt")
    assert [(p["process"], p["pid"]) for p in doc["processes"]] == [("dockerd", 1748), ("dockerd", 1748)]
    assert doc["goroutines"] == 4
    stop = [b for b in doc["buckets"] if any("ContainerStop" in f["func"] for f in b["frames"])]
    assert stop and all(b["wait_minutes"] == [19, 19] for b in stop)


def _analyze(*args: str) -> dict[str, Any]:
    from plegdoctor.commands import analyze

    result = CliRunner().invoke(analyze, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_analyze_reads_a_journald_wrapped_dockerd_dump() -> None:
    doc = _analyze(str(FIX / "journald-dockerd-moby-27827.txt"))
    (inp,) = doc["inputs"]
    assert inp["kind"] == "goroutine-dump" and inp["records"] == 2
    assert doc["root_causes"] and doc["root_causes"][0]["class"] == "dockerd-lock"


@pytest.mark.parametrize("kind", ["dockerd-log", "journal"])
def test_analyze_extracts_a_raw_dump_from_a_dockerd_journal(kind: str) -> None:
    path = str(FIX / "journald-dockerd-mixed-synthetic.log")
    doc = _analyze("--kind", f"{kind}={path}", path)
    (inp,) = doc["inputs"]
    assert inp["kind"] == kind and inp["unparsed_lines"] == 0
    assert any("goroutine dump(s) embedded in the log extracted" in x for x in inp["inferred"])
    assert doc["root_causes"] and doc["root_causes"][0]["class"] == "dockerd-lock"


def test_log_handler_hands_raw_dump_lines_with_their_line_numbers() -> None:
    from plegdoctor.evidence import Evidence, ParseContext
    from plegdoctor.inputs import iter_sources
    from plegdoctor.model import InputReport
    from plegdoctor.parsers.logs import dockerd as dockerd_log
    from plegdoctor.timeutil import TimeContext

    (src,) = list(iter_sources([str(FIX / "journald-dockerd-mixed-synthetic.log")]))
    report = InputReport(path=src.display, kind="dockerd-log")
    ctx = ParseContext(evidence=Evidence(), report=report, time=TimeContext())
    dockerd_log.parse(src, ctx)
    raw = [d for d in ctx.evidence.dumps if any(g.id == 82238 for g in d.goroutines)]
    (d,) = raw
    assert (d.process, d.pid) == (DOCKERD, 1748)
    g = d.goroutines[0]
    assert (g.line, g.wait_minutes) == (7, 19)
    # each journal line keeps its own number: the cut last frame is reported at line 16
    assert [(p.line, p.reason) for p in d.problems] == [(16, "goroutine 82238 is cut mid-line")]


# ---------------------------------------------------------------------------------- robustness


def test_bad_headers_skip_only_their_goroutine() -> None:
    d = only(parse_file("bad-headers-synthetic.txt"))
    assert [g.id for g in d.goroutines] == [36, 1]
    assert [p.reason for p in d.problems] == ["unreadable goroutine id: goroutine skipped"] * 2
    assert [p.line for p in d.problems] == [9, 17]
    assert d.goroutines[1].funcs[0] == "github.com/containerd/containerd/cmd/containerd/command.App.func1"


def test_bad_numbers_elsewhere_do_not_raise() -> None:
    huge = "9" * 5000
    text = (
        f"goroutine 1 [chan receive, {huge} minutes]:\nmain.f()\n\t/a/b.go:{huge} +0x1\n"
        f"created by main.g in goroutine {huge}\n\t/a/b.go:3 +0x1\n\n"
        f"goroutine 2 [running]:\nmain.h()\n\t/a/b.go:4\n...{huge} frames elided...\n"
        f"Jan 02 03:04:05 host containerd[{huge}]: goroutine 3 [select]:\n"
        f'{{"MESSAGE": "goroutine 4 [select]:", "_PID": "{huge}", "__REALTIME_TIMESTAMP": "{huge}"}}\n'
    )
    dumps = parse_dump_text(text, source="x")
    ids = [g.id for d in dumps for g in d.goroutines]
    assert 1 in ids and 2 in ids
    g1 = next(g for d in dumps for g in d.goroutines if g.id == 1)
    assert g1.parent_id is None and g1.frames[0].line == 0


@pytest.mark.parametrize(
    "line",
    [
        "goroutine 1 [" * 5000 + "]:",
        "[a](http://x" * 5400 + ")",
        "goroutine 1 [running]: " + "f(" * 32000,
        "goroutine 1 [running]: " + "main.f(0x1) /a/b.go:12 +0x1d " * 2200,
        "goroutine 1 [running]: " + "... " * 16000,
        "#\t0x1\t" + "f+0x1 " * 10900,
        "\t" + ":1 " * 21800 + "x",
        "Jan 01 00:00:00 h " + "a " * 32000,
    ],
)
def test_long_lines_stay_linear(line: str) -> None:
    assert len(line) >= 60_000
    text = "goroutine 1 [running]:\nmain.f()\n\t/a.go:1\n" + line + "\n" + line
    start = time.perf_counter()
    parse_dump_text(text, source="x")
    parse_dump_binary(io.BytesIO(line.encode()), source="y")
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------- processes, names


def test_process_named_from_frames() -> None:
    assert only(parse_file("raw-runc-1882.txt")).process == RUNC
    cases = {
        "github.com/cri-o/cri-o/server.(*Server).StopContainer": CRIO,
        "github.com/Mirantis/cri-dockerd/core.(*dockerService).PodSandboxStatus": "cri-dockerd",
        "github.com/moby/moby/v2/daemon.(*Daemon).ContainerInspect": DOCKERD,
        "github.com/containerd/containerd/v2/core/runtime/v2.(*shimTask).State": CONTAINERD,
        "github.com/containerd/containerd/runtime/v2/runc/task.(*service).State": "containerd-shim-runc-v2",
        "github.com/containerd/containerd/runtime/v1/shim.(*Service).State": "containerd-shim",
        "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relist": KUBELET,
    }
    for func, proc in cases.items():
        text = f"goroutine 1 [select]:\n{func}(0x1)\n\t/go/src/x/y.go:1 +0x1\n"
        assert only(parse_dump_text(text, source="x")).process == proc, func


def test_canonical_func_and_file() -> None:
    from plegdoctor.goroutines.names import canonical_file, canonical_func

    assert (
        canonical_func("github.com/docker/docker/vendor/github.com/containerd/containerd/services/tasks.(*local).Get")
        == "github.com/containerd/containerd/services/tasks.(*local).Get"
    )
    assert (
        canonical_func("github.com/containerd/containerd/vendor/github.com/stevvooe/ttrpc.(*Client).Call")
        == "github.com/containerd/ttrpc.(*Client).Call"
    )
    assert (
        canonical_func("github.com/containerd/containerd/v2/core/metadata.(*DB).Update")
        == "github.com/containerd/containerd/core/metadata.(*DB).Update"
    )
    assert canonical_func("k8s.io/klog/v2.(*loggingT).flushDaemon") == "k8s.io/klog.(*loggingT).flushDaemon"
    assert canonical_func("vendor/golang.org/x/net/http2/hpack.(*Decoder).Write") == (
        "golang.org/x/net/http2/hpack.(*Decoder).Write"
    )
    # real packages named v1/v2 deeper in the path stay
    for name in (
        "github.com/containerd/containerd/runtime/v2/shim.(*publisher).Publish",
        "github.com/containerd/containerd/api/runtime/task/v2.(*taskClient).State",
        "sync.(*Mutex).Lock",
        "main.main",
        "gopkg.in/yaml.v2.Unmarshal",
    ):
        assert canonical_func(name) == name
    assert canonical_file("/root/go/pkg/mod/github.com/google/cadvisor@v0.49.0/fs/fs.go") == (
        "github.com/google/cadvisor/fs/fs.go"
    )
    assert canonical_file("github.com/google/cadvisor@v0.49.0/fs/fs.go") == "github.com/google/cadvisor/fs/fs.go"
    assert canonical_file(
        "/tmp/cri-containerd-install-deps.wWAG/src/github.com/containerd/containerd/vendor/github.com/stevvooe/ttrpc/client.go"
    ) == ("github.com/containerd/ttrpc/client.go")
    assert canonical_file("/tmp/containerd-build/src/github.com/containerd/containerd/cmd/containerd/main.go") == (
        "github.com/containerd/containerd/cmd/containerd/main.go"
    )
    assert canonical_file("/usr/local/go/src/runtime/proc.go") == "runtime/proc.go"


def test_classification_sees_canonical_names() -> None:
    from plegdoctor.goroutines.roles import func_role

    assert func_role("github.com/containerd/containerd/vendor/github.com/stevvooe/ttrpc.(*Client).Call") == func_role(
        "github.com/containerd/ttrpc.(*Client).Call"
    )
    old = "github.com/containerd/containerd/pkg/cri/store/container.(*statusStorage).Get"
    vendored = "github.com/docker/docker/vendor/" + old
    assert func_role(vendored).lock == func_role(old).lock == "status-lock"


def test_ident_registry() -> None:
    from plegdoctor.goroutines.names import process_of_ident

    assert process_of_ident("containerd-shim-runc-v2") == "containerd-shim-runc-v2"
    assert process_of_ident("dockerd") == DOCKERD and process_of_ident("docker.service") == DOCKERD
    assert process_of_ident("crio") == CRIO and process_of_ident("runc") == RUNC
    assert process_of_ident("systemd") is None


def test_ident_process_and_log_handler_agree_and_share_no_entry() -> None:
    """One identifier, one table: the dump namer asks the log formats for the identifiers they
    declare (kubelet, hyperkube, containerd, dockerd, docker, kernel) and keeps only the shims
    and the daemons without a log parser itself."""
    from plegdoctor.goroutines.names import IDENT_PROCESS, process_of_ident
    from plegdoctor.parsers.logs.registry import process_of_ident as handler_of

    assert process_of_ident("hyperkube") == handler_of("hyperkube") == "kubelet"  # was unknown to the namer
    assert process_of_ident("kubelet_init") == "kubelet" and process_of_ident("kernel") == "kernel"
    assert process_of_ident("containerd") == handler_of("containerd") == "containerd"
    # a look-alike: a snapshotter daemon is not containerd (the namer used to say it was)
    assert process_of_ident("containerd-stargz-grpc") is None and handler_of("containerd-stargz-grpc") is None
    # the shim is its own process for the namer; its lines go to the containerd handler
    assert process_of_ident("containerd-shim-runc-v2") == "containerd-shim-runc-v2"
    assert handler_of("containerd-shim-runc-v2") == "containerd"
    own = {prefix for prefix, _, _ in IDENT_PROCESS}
    assert {"kubelet", "containerd", "dockerd", "docker", "kernel", "hyperkube"}.isdisjoint(own)
    for prefix in own - {"containerd-shim"}:  # a daemon without a log format: no handler claims it
        assert handler_of(prefix) is None, prefix
