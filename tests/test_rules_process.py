"""PD9xx (process states and node resources): each rule fires on its evidence and stays quiet on a
look-alike; a bundle captured while containerd was stopped is diagnosed runtime-frozen."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.sources.tasks import Task, ps_table
from plegdoctor.model import RootCauseClass
from rulecheck import assert_fires, assert_quiet, diagnose

FIX = Path(__file__).parent / "fixtures" / "node"
C = RootCauseClass

HEAD = "  PID   TID STAT WCHAN                            COMMAND         COMMAND\n"


def row(pid: int, tid: int, stat: str, wchan: str, comm: str, args: str | None = None) -> str:
    return f"{pid:>5} {tid:>5} {stat:<4} {wchan:<32} {comm:<15} {args or '/usr/bin/' + comm}\n"


def manifest(trigger: bool = True, pid: int | None = 812, **extra: object) -> str:
    doc: dict[str, object] = {
        "schema": "pleg-doctor/bundle/v1",
        "tool": {"name": "pleg-doctor", "version": "0.1.0"},
        "node": "node-7",
        "collected_at": "2026-11-28T14:29:18.301Z",
        "runtime": {"endpoint": "unix:///run/containerd/containerd.sock", "containerd_pid": pid},
        "files": [],
        **extra,
    }
    if trigger:
        doc["trigger"] = {
            "source": "watch",
            "reason": "ListPodSandbox in flight for 6.2s (threshold 5s)",
            "method": "ListPodSandbox",
            "in_flight_method": "ListPodSandbox",
            "in_flight_seconds": 6.214,
            "call_started_at": "2026-11-28T14:29:12.004Z",
            "detected_at": "2026-11-28T14:29:18.218Z",
            "stall_threshold": 5.0,
            "runtime_endpoint": "unix:///run/containerd/containerd.sock",
        }
    return json.dumps(doc, indent=2)


def frozen_ps(n: int = 8, stat: str = "Tsl", wchan: str = "do_signal_stop") -> str:
    return (
        HEAD
        + "".join(row(812, 812 + i, stat, wchan, "containerd") for i in range(n))
        + row(1679, 1679, "Ssl", "futex_wait_queue", "kubelet")
    )


# ---------------------------------------------------------------------------------------- PD901


def test_pd901_fires_on_a_watch_trigger_and_makes_the_answer_never_silent(tmp_path: Path) -> None:
    (f,) = assert_fires("PD901", {"manifest.json": manifest()}, tmp_path)
    assert "ListPodSandbox on unix:///run/containerd/containerd.sock did not return for 6.2 s" in f.title
    assert "14:29:12 UTC" in f.title
    assert f.evidence[0].path.endswith("manifest.json") and '"reason"' in f.evidence[0].text
    dg = diagnose({"manifest.json": manifest()}, tmp_path)
    assert dg.root_causes, "a stalled probe call must never give an empty answer"
    assert dg.root_causes[0].cls == C.UNKNOWN
    assert dg.next_steps


def test_pd901_quiet_on_a_bundle_without_trigger(tmp_path: Path) -> None:
    dg = assert_quiet("PD901", {"manifest.json": manifest(trigger=False)}, tmp_path)
    assert not dg.root_causes


# ---------------------------------------------------------------------------------------- PD902


def test_pd902_fires_on_a_stopped_containerd_with_the_stalled_probe(tmp_path: Path) -> None:
    (f,) = assert_fires("PD902", {"tasks/ps.txt": frozen_ps(), "manifest.json": manifest()}, tmp_path)
    assert f.weight >= 0.9
    assert "containerd (pid 812)" in f.title and "all 8 threads in state T (do_signal_stop)" in f.title
    assert "ListPodSandbox" in f.title
    assert "kill -CONT 812" in f.fix
    dg = diagnose({"tasks/ps.txt": frozen_ps(), "manifest.json": manifest()}, tmp_path)
    assert dg.root_causes[0].cls == C.RUNTIME_FROZEN


def test_pd902_fires_on_ps_alone_and_on_the_fixture(tmp_path: Path) -> None:
    (f,) = assert_fires("PD902", [FIX / "ps" / "ps-eLo-frozen-containerd.txt"])
    assert 0.7 <= f.weight < 0.9  # no trigger: the snapshot is not known to be during the stall
    (f,) = assert_fires("PD902", [FIX / "ps" / "ps-el-stopped.txt"])  # `ps -el`: S column, do_sig
    (f,) = assert_fires("PD902", [FIX / "ps" / "proc-status-grep.txt"])
    assert "traced by pid 30117" in f.title and "TracerPid" in f.fix


def test_pd902_fires_on_a_frozen_cgroup(tmp_path: Path) -> None:
    (f,) = assert_fires("PD902", [FIX / "ps" / "proc-status-tail.txt"])
    assert "frozen by the cgroup freezer" in f.title and "cgroup.freeze" in f.fix
    # v1: containerd's threads in __refrigerator (D)
    (f,) = assert_fires("PD902", {"ps.txt": frozen_ps(stat="Dsl", wchan="__refrigerator")}, tmp_path)
    assert "__refrigerator" in f.title


def test_pd902_quiet_on_a_running_containerd_and_another_stopped_process(tmp_path: Path) -> None:
    text = (
        HEAD
        + "".join(row(812, 812 + i, "Ssl", "futex_wait_queue", "containerd") for i in range(6))
        + row(3001, 3001, "T", "do_signal_stop", "gdb", "gdb -p 4242")
        + row(4242, 4242, "t", "ptrace_stop", "myapp", "/app/myapp")
    )
    assert_quiet("PD902", {"tasks/ps.txt": text, "manifest.json": manifest()}, tmp_path)
    # a stopped shim is not a stopped runtime daemon (PD904 covers it)
    text = (
        HEAD
        + row(812, 812, "Ssl", "ep_poll", "containerd")
        + row(2471, 2471, "Tl", "do_signal_stop", "containerd-shim")
    )
    assert_quiet("PD902", {"ps.txt": text}, tmp_path)


# ---------------------------------------------------------------------------------------- PD903


def test_pd903_fires_on_runc_init_in_a_frozen_cgroup(tmp_path: Path) -> None:
    text = (
        "    PID STAT WCHAN                            CMD\n"
        "    812 Ssl  ep_poll                          /usr/bin/containerd\n"
        "   9931 D    __refrigerator                   runc:[2:INIT]\n"
    )
    (f,) = assert_fires("PD903", {"ps.txt": text}, tmp_path)
    assert "runc:[2:INIT] (pid 9931)" in f.title and "__refrigerator" in f.title
    dg = diagnose({"ps.txt": text}, tmp_path)
    assert dg.root_causes[0].cls == C.RUNC_HANG


def test_pd903_quiet_on_a_paused_container_and_a_running_runc(tmp_path: Path) -> None:
    text = (
        "    PID STAT WCHAN                            CMD\n"
        "   7001 D    __refrigerator                   sleep 3600\n"  # a paused container's app: legitimate
        "   9931 S    do_wait                          runc --root /run/containerd/runc/k8s.io update 5c0f\n"
    )
    assert_quiet("PD903", {"ps.txt": text}, tmp_path)


# ---------------------------------------------------------------------------------------- PD904


def test_pd904_fires_on_zombie_shims(tmp_path: Path) -> None:
    (f,) = assert_fires("PD904", [FIX / "ps" / "ps-aux-zombie-shims.txt"])
    assert "2 containerd-shim process(es) defunct (Z), e.g. pid 4121" in f.title
    text = "    PID STAT WCHAN    CMD\n" + "".join(f"   {5000 + i} Z    -        [runc] <defunct>\n" for i in range(4))
    (f,) = assert_fires("PD904", {"ps.txt": text}, tmp_path)
    assert "4 runc processes defunct" in f.title


def test_pd904_quiet_on_other_zombies_and_few_defunct_runc(tmp_path: Path) -> None:
    text = (
        "    PID STAT WCHAN    CMD\n"
        "   4121 Z    -        [sh] <defunct>\n"
        "   5001 Z    -        [runc] <defunct>\n"
        "   5002 Z    -        [runc] <defunct>\n"
        "   5012 Sl   ep_poll  /usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id 5c0ffee5\n"
    )
    assert_quiet("PD904", {"ps.txt": text}, tmp_path)


# ---------------------------------------------------------------------------------------- PD905


def test_pd905_fires_and_names_the_deeper_class_from_the_wait_channel(tmp_path: Path) -> None:
    text = (
        HEAD
        + "".join(row(812, 812 + i, "Dsl", "jbd2_log_wait_commit", "containerd") for i in range(3))
        + "".join(row(812, 820 + i, "Ssl", "futex_wait_queue", "containerd") for i in range(3))
        + row(2471, 2471, "Dl", "rpc_wait_bit_killable", "containerd-shim")
        + row(1679, 1679, "Dsl", "some_driver_wait", "kubelet")
    )
    hits = assert_fires("PD905", {"ps.txt": text}, tmp_path)
    by_class = {f.root_cause: f for f in hits}
    assert set(by_class) == {C.FSYNC_IO_PRESSURE, C.NETWORK_STORAGE_HANG, C.KERNEL_D_STATE}
    fs = by_class[C.FSYNC_IO_PRESSURE]
    assert "3 of 6 threads of containerd (pid 812) in D state" in fs.title and "jbd2_log_wait_commit" in fs.title
    assert "syncfs" not in fs.title
    assert fs.chain is not None and "fsync" in fs.chain.tags
    assert "nfs" in by_class[C.NETWORK_STORAGE_HANG].chain.tags  # type: ignore[union-attr]
    text = HEAD + row(3658, 3658, "Dl", "wb_wait_for_completion", "containerd-shim")
    (f,) = assert_fires("PD905", {"ps.txt": text}, tmp_path)
    assert f.root_cause == C.OVERLAY_UMOUNT_SYNC


def test_pd905_quiet_on_other_processes_in_d_and_frozen_runtime(tmp_path: Path) -> None:
    text = (
        HEAD
        + row(812, 812, "Ssl", "futex_wait_queue", "containerd")
        + row(30211, 30211, "D", "jbd2_log_wait_commit", "java", "java -jar app.jar")
        + row(2471, 2471, "Dl", "__refrigerator", "containerd-shim")  # frozen: PD902/PD903's business
    )
    assert_quiet("PD905", {"ps.txt": text}, tmp_path)


# ---------------------------------------------------------------------------------------- PD906


def meminfo(free_kb: int, available_kb: int) -> str:
    return (
        f"MemTotal:        8041432 kB\nMemFree:         {free_kb:>7} kB\nMemAvailable:    {available_kb:>7} kB\n"
        "Dirty:              1204 kB\nWriteback:             0 kB\n"
    )


MEMINFO_LOW = meminfo(61220, 101220)
MEMINFO_OK = meminfo(3061220, 5101220)


def psi(some: float, full: float) -> str:
    return (
        f"some avg10={some:.2f} avg60={some:.2f} avg300={some / 2:.2f} total=912345678\n"
        f"full avg10={full:.2f} avg60={full:.2f} avg300={full / 2:.2f} total=812345678\n"
    )


def test_pd906_fires_on_low_memory_and_memory_pressure(tmp_path: Path) -> None:
    ev = {"proc/meminfo": MEMINFO_LOW, "proc/pressure/memory": psi(63.0, 42.17), "manifest.json": manifest()}
    (f,) = assert_fires("PD906", ev, tmp_path)
    assert "MemAvailable 98 MiB of 7852 MiB (1.3%)" in f.title and "PSI memory full avg10 42%" in f.title
    assert f.weight >= 0.7
    assert any(r.path.endswith("meminfo") for r in f.evidence)


def test_pd906_fires_on_cpu_starvation_from_the_load(tmp_path: Path) -> None:
    load = {"loadavg": [31.5, 28.0, 20.1], "cpus": 2, "source": "/proc/loadavg"}
    ev = {"manifest.json": manifest(node_load=load), "proc/pressure/cpu": psi(97.0, 0.0)}
    (f,) = assert_fires("PD906", ev, tmp_path)
    assert "PSI cpu some avg10 97%" in f.title and "load average 31.5 on 2 CPUs" in f.title


def test_pd906_quiet_on_a_healthy_node_and_on_disk_pressure_only(tmp_path: Path) -> None:
    healthy = {
        "proc/meminfo": MEMINFO_OK,
        "proc/pressure/memory": psi(0.1, 0.0),
        "proc/pressure/cpu": psi(3.0, 0.0),
        "proc/pressure/io": psi(0.5, 0.2),
        "manifest.json": manifest(node_load={"loadavg": [0.5, 0.4, 0.3], "cpus": 2}),
    }
    assert_quiet("PD906", healthy, tmp_path / "healthy")
    # a saturated disk drives the load up with D-state tasks: that is I/O, not CPU or memory
    disk = {
        "proc/meminfo": MEMINFO_OK,
        "proc/pressure/memory": psi(2.0, 1.0),
        "proc/pressure/io": psi(88.0, 63.0),
        "manifest.json": manifest(node_load={"loadavg": [24.0, 20.0, 12.0], "cpus": 2}),
        "ps.txt": HEAD + "".join(row(900 + i, 900 + i, "D", "io_schedule", "java", "java") for i in range(20)),
    }
    assert_quiet("PD906", disk, tmp_path / "disk")


# ---------------------------------------------------------------------------------------- PD907

OOM_RUNTIME = (
    "[  912.004211] containerd invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0\n"
    "[  912.118020] Out of memory: Killed process 812 (containerd) total-vm:2104280kB, anon-rss:1203112kB, "
    "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:3120kB oom_score_adj:-999\n"
)
OOM_POD = (
    "[  912.118020] Memory cgroup out of memory: Killed process 4242 (java) total-vm:4104280kB, "
    "anon-rss:2103112kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:5120kB oom_score_adj:985\n"
)


def test_pd907_fires_on_an_oom_kill_of_containerd(tmp_path: Path) -> None:
    (f,) = assert_fires("PD907", {"kernel/dmesg.txt": OOM_RUNTIME}, tmp_path)
    assert "OOM-killed containerd (pid 812)" in f.title and f.evidence[0].text.startswith(
        "[  912.118020] Out of memory"
    )
    dg = diagnose({"kernel/dmesg.txt": OOM_RUNTIME}, tmp_path)
    assert dg.root_causes[0].cls == C.NODE_RESOURCE_STARVATION


def test_pd907_quiet_on_a_pods_own_memory_limit(tmp_path: Path) -> None:
    dg = assert_quiet("PD907", {"kernel/dmesg.txt": OOM_POD}, tmp_path)
    assert not any(f.code == "PD906" for f in dg.findings)  # a memcg limit is not node starvation


# ---------------------------------------------------------------------------------------- a captured bundle


def build_frozen_bundle(out: Path, pid: int = 812) -> Path:
    """A bundle laid out as `watch` + collect write it (BundleWriter, collect's ps/stack formats and
    trigger record) for a containerd stopped by SIGSTOP."""
    tasks = [Task(pid, pid + i, "T", "containerd", "do_signal_stop", "/usr/bin/containerd") for i in range(12)]
    tasks += [Task(1679, 1679, "S", "kubelet", "futex_wait_queue", "/usr/bin/kubelet")]
    trigger = {
        "source": "watch",
        "reason": "ListPodSandbox in flight for 6.2s (threshold 5s)",
        "method": "ListPodSandbox",
        "in_flight_method": "ListPodSandbox",
        "in_flight_seconds": 6.214,
        "call_seconds": 6.214,
        "call_started_at": "2026-11-28T14:29:12.004Z",
        "detected_at": "2026-11-28T14:29:18.218Z",
        "last_success_at": "2026-11-28T14:29:11.100Z",
        "seconds_since_success": 7.118,
        "stall_threshold": 5.0,
        "call_timeout": 120.0,
        "runtime_endpoint": "unix:///run/containerd/containerd.sock",
    }
    w = BundleWriter(out, node="node-7", extra={"trigger": trigger})
    w.add_text("tasks/ps.txt", "ps", ps_table(tasks), source="/proc/*/task/*/{stat,wchan}")
    # collect's kernel-stack format (task_stacks reads /proc, so the lines are written here)
    stacks = [
        f"# pid={t.tid} tgid={t.pid} comm={t.comm} state={t.state} wchan={t.wchan} cmd={t.cmd}\n"
        "[<0>] do_signal_stop+0x11c/0x240\n[<0>] get_signal+0x6a6/0x8f0\n"
        for t in tasks
        if t.comm == "containerd"
    ]
    w.add_text("tasks/stacks.txt", "proc-stack", stacks, source="/proc/*/task/*/stack")
    w.add_failed(
        f"goroutines/containerd-{pid}.stacks.log",
        "goroutine-dump",
        f"StepTimeout: /tmp/containerd.{pid}.stacks.log was not written within 5s (is the process frozen or stopped?)",
    )
    w.extra["runtime"] = {
        "endpoint": "unix:///run/containerd/containerd.sock",
        "containerd_pid": pid,
        "error": "skipped: CRI not queried during a stall (the relist probe's call is pending)",
    }
    return w.close()


def test_a_frozen_runtime_bundle_is_diagnosed_runtime_frozen(tmp_path: Path) -> None:
    bundle = build_frozen_bundle(tmp_path / "pleg-doctor-node-7-20261128T142918Z.tar.gz")
    with tarfile.open(bundle) as tar:
        assert tar.getnames()[0] == "manifest.json"
        data = tar.extractfile("manifest.json")
        assert data is not None
        assert json.load(io.TextIOWrapper(data))["trigger"]["method"] == "ListPodSandbox"
    dg = diagnose([bundle])
    top = dg.root_causes[0]
    assert top.cls == C.RUNTIME_FROZEN, [(rc.cls, rc.summary) for rc in dg.root_causes]
    assert top.confidence >= 0.8
    assert "containerd (pid 812)" in top.summary and "ListPodSandbox" in top.summary
    assert "stopped" in top.summary
    quoted = [r for lk in top.chain for r in lk.evidence]
    assert any(r.path.endswith(":manifest.json") and '"reason"' in r.text for r in quoted)
    assert any(r.path.endswith(":tasks/ps.txt") and "do_signal_stop" in r.text for r in quoted)
    assert any("kill -CONT 812" in fx for fx in top.fixes)
    assert {"PD901", "PD902"} <= {f.code for f in dg.findings}


def test_a_frozen_runtime_is_not_asked_for_a_sigusr1_dump(tmp_path: Path) -> None:
    dg = diagnose([build_frozen_bundle(tmp_path / "pleg-doctor-node-7-20261128T142918Z.tar.gz")])
    steps = " ".join(dg.next_steps)
    assert "kill -CONT" in steps and "TracerPid" in steps
    assert "kill -USR1 $(pidof containerd)" not in steps
