"""containerd / dockerd log parsers: logrus text and JSON, journald-wrapped, shim lines,
goroutine dumps embedded in log lines (also cut by journald into LineMax pieces)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import sniff
from plegdoctor.parsers.logs import containerd as containerd_log
from plegdoctor.parsers.logs import dockerd as dockerd_log
from plegdoctor.parsers.logs.common import go_unquote, parse_logrus_text
from plegdoctor.parsers.logs.containerd import DUMP_BEGIN, DUMP_END, ContainerdHandler, EmbeddedDump
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "logs"
CID = "8f71eadd772ffde7f9537998844aa3f7a8a4f15ec182a5943ef0d60f242b1929"


def parse_path(path: Path, mod=containerd_log, **time_kw) -> tuple[Evidence, ParseContext]:
    ev = Evidence()
    ctx = None
    for src in iter_sources([str(path)]):
        ctx = ParseContext(ev, InputReport(src.display, mod.KIND), TimeContext(**time_kw))
        mod.parse(src, ctx)
    assert ctx is not None
    return ev, ctx


def kinds(ev: Evidence) -> list[str]:
    return [str(e.kind) for e in ev.events]


def test_logrus_text_fields_are_unquoted_and_sorted_fields_kept():
    line = (
        'time="2026-11-28T14:18:21.847280786Z" level=info '
        'msg="skip loading plugin \\"io.containerd.snapshotter.v1.aufs\\"..." '
        'error="aufs is not supported (modprobe aufs failed: exec: \\"modprobe\\": '
        'executable file not found in $PATH \\"\\"): skip plugin" type=io.containerd.snapshotter.v1'
    )
    f = parse_logrus_text(line)
    assert f is not None
    assert f["msg"] == 'skip loading plugin "io.containerd.snapshotter.v1.aufs"...'
    assert f["error"].startswith('aufs is not supported (modprobe aufs failed: exec: "modprobe"')
    assert f["type"] == "io.containerd.snapshotter.v1"
    assert go_unquote(r"a\nb\tc\\d\"e\u00e9\x41") == 'a\nb\tc\\d"eéA'


def test_real_containerd_1620_text_log():
    ev, ctx = parse_path(FIX / "containerd-1.6.20-text.log")
    k = kinds(ev)
    assert k.count("update-resources-start") == 1 and k.count("update-resources-end") == 1
    assert k.count("pull-start") == 1 and k.count("pull-end") == 1
    assert k.count("stop-container-start") == 1 and k.count("stop-container-end") == 1
    assert k.count("stop-sandbox-start") == 1 and k.count("stop-sandbox-end") == 1
    start = next(e for e in ev.events if e.kind == EventKind.UPDATE_RESOURCES_START)
    assert start.attrs["container_id"] == "ff51af99ba97f8828398b6f18f83e260dd8a363b896eaeee2ea5ccf34608d240"
    assert start.ts == datetime(2026, 11, 28, 14, 22, 8, 262945, tzinfo=UTC)
    pull_end = next(e for e in ev.events if e.kind == EventKind.PULL_END)
    assert pull_end.attrs["image"] == "127.0.0.1:5000/lab/busybox:1" and pull_end.attrs["ok"] is True
    # two dumps on the axis: containerd's own and the k8s sandbox shim's, forwarded by containerd
    dumps = [e for e in ev.events if e.kind == EventKind.GOROUTINE_DUMP]
    assert [(d.process, d.attrs["pid"]) for d in dumps] == [("containerd", None), ("containerd-shim", 10338)]
    assert dumps[1].attrs["sandbox"] == "7088920af56d8e2bb9722aec12d35c98cfb17033e781dd933ca7c059ea52d41d"
    assert dumps[1].attrs["namespace"] == "k8s.io"
    errors = [e for e in ev.events if e.kind == EventKind.RUNTIME_ERROR]
    assert {e.attrs["msg"] for e in errors} >= {"copy shim log"}
    assert any(
        r.level == "warning" and r.msg == "failed to load plugin io.containerd.snapshotter.v1.devmapper"
        for r in ev.log_records
    )
    assert ctx.time.reference_year == 2026 and ctx.report.unparsed == 0
    assert ctx.report.records == 78


def test_embedded_dumps_reach_the_goroutine_engine():
    pytest.importorskip("plegdoctor.goroutines.parse")
    ev, ctx = parse_path(FIX / "containerd-1.6.20-text.log")
    procs = sorted({(d.process, d.pid) for d in ev.dumps}, key=str)
    assert ("containerd-shim", 10338) in procs
    shim = next(d for d in ev.dumps if d.process == "containerd-shim")
    assert len(shim.goroutines) >= 5
    assert all(g.line == 47 for g in shim.goroutines)  # a one-line dump: every goroutine points at its log line
    assert shim.sandbox == "7088920af56d8e2bb9722aec12d35c98cfb17033e781dd933ca7c059ea52d41d"
    assert not [w for w in ctx.report.warnings if "goroutine" in w]


def test_logrus_json_format_and_the_seed_taskexit_line():
    ev, ctx = parse_path(FIX / "containerd-json.log")
    k = kinds(ev)
    assert k == [
        "pull-start",
        "update-resources-start",
        "stop-container-start",
        "task-exit-failed",
        "task-delete-failed",
        "pull-end",
        "stop-container-end",
        "goroutine-dump",
    ]
    te = next(e for e in ev.events if e.kind == EventKind.TASK_EXIT_FAILED)
    assert te.attrs["container_id"] == CID and "failed to delete task" in te.attrs["error"]
    assert te.ts == datetime(2023, 6, 15, 6, 39, 46, 568049, tzinfo=UTC)
    stop_end = next(e for e in ev.events if e.kind == EventKind.STOP_CONTAINER_END)
    assert stop_end.attrs["ok"] is False and "DeadlineExceeded" in stop_end.attrs["error"]
    assert ctx.report.unparsed == 0


def test_journald_wrapped_containerd_with_shim_lines():
    ev, ctx = parse_path(FIX / "containerd-journald.log", year=2023)
    k = kinds(ev)
    assert k.count("update-resources-start") == 1
    end = next(e for e in ev.events if e.kind == EventKind.UPDATE_RESOURCES_END)
    assert end.attrs["ok"] is False and end.attrs["container_id"] == CID
    assert "task-exit-failed" in k and "task-delete-failed" in k
    assert "runtime-error" in k  # "ttrpc: received message on inactive stream"
    shim_rec = [r for r in ev.log_records if r.process == "containerd-shim"]
    assert shim_rec == []  # the shim line is info level
    assert ctx.report.unparsed == 0


def _dump_line() -> str:
    return (FIX / "containerd-1.6.20-dump-logline.txt").read_text().rstrip("\n")


def _split(line: str, size: int) -> list[str]:
    return [line[i : i + size] for i in range(0, len(line), size)]


def test_dump_cut_by_journald_linemax_is_joined(tmp_path):
    """journald cuts lines over LineMax (48K by default) into several entries; containerd's
    one-line dump must be joined again before unescaping. The real 22 KB dump is repeated
    to exceed 48K, then cut at 48K exactly like journald does."""
    real = _dump_line()
    head, _, rest = real.partition("\\ngoroutine ")
    body = "\\ngoroutine " + rest.split("\\n\\n=== END")[0]
    big = head + body * 6 + '\\n\\n=== END goroutine stack dump ==="'
    assert len(big) > 2 * 48 * 1024
    pieces = _split(big, 48 * 1024)
    frame = "Nov 28 14:18:58 node-7 containerd[4242]: "
    lines = ['Nov 28 14:18:57 node-7 containerd[4242]: time="2026-11-28T14:18:57.000000000Z" level=info msg="before"']
    lines += [frame + p for p in pieces]
    lines.append(
        'Nov 28 14:18:59 node-7 containerd[4242]: time="2026-11-28T14:18:59.000000000Z" level=error msg="after"'
    )
    p = tmp_path / "containerd.journal"
    p.write_text("\n".join(lines) + "\n")
    captured: list[EmbeddedDump] = []
    ev, _ctx = _parse_capturing(p, captured)
    assert len(captured) == 1
    d = captured[0]
    assert d.line == 2 and d.process == "containerd" and d.ts == datetime(2026, 11, 28, 14, 18, 58, 284556, tzinfo=UTC)
    assert d.text.startswith("goroutine 28 [running]:\n") and "\t" in d.text and "\\n" not in d.text
    assert d.text.count("\ngoroutine ") + 1 == 6 * (body.count("\\ngoroutine "))
    assert [e.kind for e in ev.events] == [EventKind.GOROUTINE_DUMP, EventKind.RUNTIME_ERROR]
    assert ev.events[0].attrs["pieces"] == len(pieces)


def test_small_linemax_pieces_of_a_shim_dump(tmp_path):
    shim = (FIX / "shim-runc-v2-dump-logline.txt").read_text().rstrip("\n")
    pieces = _split(shim, 4096)
    p = tmp_path / "c.log"
    p.write_text("".join(f"containerd[2206]: {x}\n" for x in pieces))
    captured: list[EmbeddedDump] = []
    _parse_capturing(p, captured)
    (d,) = captured
    assert d.process == "containerd-shim" and d.pid == 10338 and d.namespace == "k8s.io"
    assert d.sandbox == "7088920af56d8e2bb9722aec12d35c98cfb17033e781dd933ca7c059ea52d41d"
    assert d.text.startswith("goroutine 6 [running]:\ngithub.com/containerd/containerd/runtime/v2/shim.dumpStacks")


def test_dump_without_end_marker_is_kept_and_warned(tmp_path):
    real = _dump_line()
    cut = real[: len(real) // 2]
    p = tmp_path / "c.log"
    p.write_text(f'containerd[1]: {cut}\ncontainerd[1]: time="2026-11-28T14:19:00Z" level=info msg=next\n')
    captured: list[EmbeddedDump] = []
    _ev, ctx = _parse_capturing(p, captured)
    assert len(captured) == 1 and captured[0].text.startswith("goroutine 28 [running]:")
    assert any("cut short" in w for w in ctx.report.warnings)


def _parse_capturing(path: Path, captured: list[EmbeddedDump]) -> tuple[Evidence, ParseContext]:
    orig = ContainerdHandler._default_dump

    def capture(self, dump):
        captured.append(dump)
        orig(self, dump)

    ContainerdHandler._default_dump = capture  # type: ignore[method-assign]
    try:
        return parse_path(path, year=2026)
    finally:
        ContainerdHandler._default_dump = orig  # type: ignore[method-assign]


def test_dockerd_log():
    ev, _ctx = parse_path(FIX / "dockerd-text.log", mod=dockerd_log)
    errs = [e for e in ev.events if e.kind == EventKind.DOCKERD_ERROR]
    assert len(errs) == 1 and errs[0].process == "dockerd" and "did not receive an exit event" in errs[0].attrs["msg"]
    dumps = [e for e in ev.events if e.kind == EventKind.GOROUTINE_DUMP]
    assert len(dumps) == 1 and dumps[0].process == "dockerd"
    assert [r.level for r in ev.log_records] == ["error", "warning"]
    assert sniff((FIX / "dockerd-text.log").read_bytes())[0] == "dockerd-log"


@pytest.mark.parametrize("name", ["containerd-1.6.20-text.log", "containerd-json.log", "containerd-journald.log"])
def test_sniffed_as_containerd(name):
    assert sniff((FIX / name).read_bytes())[0] == "containerd-log"


def test_dump_marker_constants_match_the_real_sample():
    line = _dump_line()
    assert DUMP_BEGIN in line and DUMP_END in line
    assert json.dumps(DUMP_BEGIN)[1:-1] in line
