"""Process-state parsing: ps tables (per-thread, aux, -el), /proc status/stat/wchan/cgroup and the
cgroup freezer files (parsers/ps.py), and the capture trigger and load of a bundle manifest
(parsers/bundle_manifest.py)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from plegdoctor import parsers
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import Source, iter_sources
from plegdoctor.live.sources import tasks as live_tasks
from plegdoctor.model import InputReport
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "node"


def load(rel: str, expect_kind: str) -> tuple[Evidence, InputReport]:
    ev = Evidence()
    report = None
    for src in iter_sources([str(FIX / rel)]):
        kind, score = parsers.sniff(src.head())
        assert kind == expect_kind, f"{rel}: sniffed {kind} ({score})"
        report = InputReport(src.display, kind)
        parsers.get(kind).parse(src, ParseContext(ev, report, TimeContext(), {}))
    assert report is not None
    return ev, report


def parse_text(kind: str, text: str, name: str = "input.txt") -> tuple[Evidence, InputReport]:
    data = text.encode()
    ev = Evidence()
    report = InputReport(name, kind)
    src = Source(name, None, len(data), [], None, io.BytesIO(data))
    parsers.get(kind).parse(src, ParseContext(ev, report, TimeContext(), {}))
    return ev, report


def test_per_thread_ps_keeps_pid_tid_comm_state_wchan() -> None:
    ev, rep = load("ps/ps-eLo-frozen-containerd.txt", "ps")
    assert rep.unparsed == 0
    ctd = [t for t in ev.tasks if t.process_id == 812]
    assert len(ctd) == 14
    assert {t.state for t in ctd} == {"Tsl"} and {t.state_letter for t in ctd} == {"T"}
    assert {t.wchan for t in ctd} == {"do_signal_stop"}
    assert {t.comm for t in ctd} == {"containerd"}  # the first COMMAND is comm, the last the args
    assert ctd[0].cmd == "/usr/bin/containerd --config /etc/containerd/config.toml"
    assert sorted(t.pid for t in ctd)[:2] == [812, 813] and all(t.tgid == 812 for t in ctd)
    shim = [t for t in ev.tasks if t.process_id == 2471]
    assert [t.comm for t in shim] == ["containerd-shim", "containerd-shim"]
    assert shim[0].cmd.startswith("/usr/bin/containerd-shim-runc-v2 -namespace k8s.io")


def test_collect_ps_table_round_trips() -> None:
    tasks = [
        live_tasks.Task(812, 812, "T", "containerd", "do_signal_stop", "/usr/bin/containerd"),
        live_tasks.Task(812, 840, "T", "containerd", "do_signal_stop", "/usr/bin/containerd"),
    ]
    ev, rep = parse_text("ps", "".join(live_tasks.ps_table(tasks)))
    assert rep.unparsed == 0
    assert [(t.pid, t.tgid, t.comm, t.state, t.wchan) for t in ev.tasks] == [
        (812, 812, "containerd", "T", "do_signal_stop"),
        (840, 812, "containerd", "T", "do_signal_stop"),
    ]


def test_ps_aux_and_ps_el() -> None:
    ev, _ = load("ps/ps-aux-zombie-shims.txt", "ps")
    z = [(t.pid, t.comm) for t in ev.tasks if t.state_letter == "Z"]
    assert z == [(4121, "containerd-shim"), (4388, "containerd-shim"), (5131, "runc")]
    assert all(t.wchan is None for t in ev.tasks)  # ps aux has no wait channel
    ev, _ = load("ps/ps-el-stopped.txt", "ps")
    (ctd,) = [t for t in ev.tasks if t.comm == "containerd"]
    assert (ctd.pid, ctd.state, ctd.wchan, ctd.ppid) == (812, "T", "do_sig", 1)


def test_ps_ef_has_no_state_and_is_read_with_an_empty_one() -> None:
    text = (
        "UID          PID    PPID  C STIME TTY          TIME CMD\n"
        "root           1       0  0 Nov27 ?        00:00:41 /sbin/init\n"
    )
    ev, rep = parse_text("ps", text)
    assert parsers.sniff(text.encode())[0] == "ps" and rep.unparsed == 0
    (t,) = ev.tasks
    assert (t.pid, t.ppid, t.state, t.comm, t.cmd) == (1, 0, "", "init", "/sbin/init")
    ev, rep = load("ps/ps-ef-headerless.txt", "ps")  # runc#1959: year-only STIME, no header
    assert rep.unparsed == 0 and len(ev.tasks) == 3
    assert ev.tasks[1].cmd.startswith("docker-runc --systemd-cgroup=true kill --all 8561b78c")
    assert ev.tasks[1].comm == "docker-runc" and ev.tasks[1].state == ""


def test_proc_status_tail_with_cgroup_freezer() -> None:
    ev, rep = load("ps/proc-status-tail.txt", "ps")
    assert rep.unparsed == 0
    main = next(t for t in ev.tasks if t.pid == 812)
    assert (main.comm, main.state, main.tgid, main.ppid, main.tracer_pid) == ("containerd", "S", 812, 1, 0)
    assert main.ref.text.startswith("State:")
    thread = next(t for t in ev.tasks if t.pid == 813)
    assert (thread.tgid, thread.wchan) == (812, "do_freezer_trap")
    (cg,) = ev.proc_cgroups
    assert (cg.pid, cg.path) == (812, "/system.slice/containerd.service")
    assert [(f.path, f.frozen) for f in ev.cgroup_freezes] == [
        ("/sys/fs/cgroup/system.slice/containerd.service", True),
        ("/sys/fs/cgroup/system.slice/containerd.service", True),
    ]


def test_proc_status_grep_and_v1_freezer_state() -> None:
    ev, rep = load("ps/proc-status-grep.txt", "ps")
    assert rep.unparsed == 0
    ctd = next(t for t in ev.tasks if t.pid == 812)
    assert (ctd.state, ctd.tracer_pid) == ("t", 30117)
    (f,) = ev.cgroup_freezes
    assert f.frozen and f.path.endswith("/freezer/kubepods/besteffort/pod1234/5c0ffee5")


def test_bare_task_stat_lines() -> None:
    ev, rep = load("ps/proc-task-stat.txt", "ps")
    assert rep.unparsed == 0
    assert sorted((t.pid, t.comm, t.state) for t in ev.tasks) == [
        (812, "containerd", "T"),
        (813, "containerd", "T"),
        (814, "containerd", "T"),
        (815, "containerd", "T"),
    ]


def test_stat_comm_with_spaces_and_parentheses() -> None:
    ev, _ = parse_text("ps", "4242 (my (odd) proc) D 1 4242 4242 0 -1 4194560 0 0 0 0\n")
    (t,) = ev.tasks
    assert (t.pid, t.comm, t.state, t.ppid) == (4242, "my (odd) proc", "D", 1)


def test_manifest_trigger_and_load() -> None:
    ev, rep = load("manifest/manifest-watch-trigger.json", "bundle-manifest")
    (t,) = ev.triggers
    assert t.method == "ListPodSandbox" and t.seconds == 6.214
    assert t.started == datetime(2026, 11, 28, 14, 29, 12, 4000, UTC)
    assert t.endpoint == "unix:///run/containerd/containerd.sock" and t.runtime_pid == 812
    assert t.threshold == 5.0 and t.last_success == datetime(2026, 11, 28, 14, 29, 11, 100000, UTC)
    assert '"reason": "ListPodSandbox in flight for 6.2s' in t.ref.text and t.ref.line == 15
    (ld,) = ev.loads
    assert (ld.load1, ld.cpus) == (0.52, 2) and '"loadavg"' in ld.ref.text
    assert rep.records >= 3


def test_old_watch_trigger_without_times() -> None:
    text = (
        '{"tool": {"name": "pleg-doctor", "version": "0.1.0"}, "collected_at": "2026-11-28T14:29:18Z", '
        '"trigger": {"reason": "ListContainers in flight for 9.0s (threshold 5s)", "in_flight_method": '
        '"ListContainers", "in_flight_seconds": 9.0, "seconds_since_success": 10.0, "stall_threshold": 5.0}, '
        '"runtime": {"endpoint": "unix:///run/containerd/containerd.sock", "containerd_pid": null}, "files": []}'
    )
    ev, _ = parse_text("bundle-manifest", text)
    (t,) = ev.triggers
    assert t.method == "ListContainers" and t.started == datetime(2026, 11, 28, 14, 29, 9, tzinfo=UTC)
    assert t.endpoint.endswith("containerd.sock") and t.runtime_pid is None and t.ref.line == 1


def test_trigger_record_from_a_probe_status() -> None:
    from plegdoctor.live.probe import CallResult, ProbeStatus, RelistResult
    from plegdoctor.live.trigger import trigger_record

    now = 1_764_340_158.218
    st = ProbeStatus(
        now, False, True, "ListPodSandbox in flight for 6.2s (threshold 5s)", "ListPodSandbox", 6.214, now - 7.118, None
    )
    rec = trigger_record(st, "unix:///run/containerd/containerd.sock", 5.0, 120.0)
    assert rec["method"] == "ListPodSandbox" and rec["call_seconds"] == 6.214
    assert rec["call_started_at"] == "2025-11-28T14:29:12.004Z" and rec["detected_at"].endswith("18.218Z")
    assert rec["runtime_endpoint"].endswith("containerd.sock") and rec["seconds_since_success"] == 7.118
    # a stall seen from a call that returned late: the record names that call
    late = RelistResult(
        now - 20, 20.0, False, (CallResult("ListContainers", now - 19, 18.5, False, "deadline-exceeded", "x"),)
    )
    st = ProbeStatus(now, False, True, "x", "", 0.0, None, late)
    rec = trigger_record(st, "unix:///x.sock", 5.0)
    assert (rec["method"], rec["call_seconds"], rec["in_flight_method"]) == ("ListContainers", 18.5, "")
