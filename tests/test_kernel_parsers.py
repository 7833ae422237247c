"""Kernel-side parsers and the kernel-name table: dmesg in every framing (dmesg -T, plain
stamps, journalctl -k short/short-monotonic/short-full, 5.x/6.x task lines, Workqueue,
<TASK>, `? ` frames, build-id module tags), /proc/<pid>/stack, versions (bare kernel
release), mounts (network filesystems), and the unread-line counting of every node parser."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plegdoctor import kernelnames, parsers
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import Source, iter_sources
from plegdoctor.model import EventKind, InputReport
from plegdoctor.parsers import dmesg, mounts, proc_stack, versions
from plegdoctor.timeutil import TimeContext

FIX = Path(__file__).parent / "fixtures" / "node"


def load(rel: str, expect_kind: str | None = None) -> tuple[Evidence, InputReport]:
    ev = Evidence()
    report = None
    for src in iter_sources([str(FIX / rel)]):
        kind, _ = parsers.sniff(src.head())
        if expect_kind is not None:
            assert kind == expect_kind
        report = InputReport(src.display, kind)
        parsers.get(kind).parse(src, ParseContext(ev, report, TimeContext(), {}))
    assert report is not None
    return ev, report


def parse_text(module: object, text: str, name: str = "input.txt") -> tuple[Evidence, InputReport]:
    ev = Evidence()
    report = InputReport(name, "x")
    data = text.encode()
    src = Source(name, None, len(data), [], None, io.BytesIO(data))
    module.parse(src, ParseContext(ev, report, TimeContext()))  # type: ignore[attr-defined]
    return ev, report


# ------------------------------------------------------------------------------ kernel names


@pytest.mark.parametrize(
    ("stack", "function", "hint"),
    [
        (
            ["__schedule", "schedule", "schedule_timeout", "__wait_for_common", "xfs_buf_iowait"],
            "xfs_buf_iowait",
            "io-wait",
        ),
        (["__schedule", "schedule", "__refrigerator", "get_signal"], "__refrigerator", "freezer"),
        (
            ["__schedule", "schedule", "schedule_timeout", "wait_for_completion", "__synchronize_srcu.part.0"],
            "__synchronize_srcu",
            "srcu",
        ),
        (
            ["__schedule", "schedule", "rpc_wait_bit_killable", "__wait_on_bit", "out_of_line_wait_on_bit"],
            "rpc_wait_bit_killable",
            "nfs",
        ),
        (["__schedule", "schedule", "nfs_wait_bit_killable", "nfs_updatepage"], "nfs_wait_bit_killable", "nfs"),
        (["__schedule", "schedule", "wb_wait_for_completion", "sync_inodes_sb"], "wb_wait_for_completion", "syncfs"),
        (["__schedule", "schedule", "jbd2_log_wait_commit", "ext4_sync_file"], "jbd2_log_wait_commit", "fsync"),
        (["__schedule", "io_schedule", "blk_mq_get_tag", "__blk_mq_alloc_requests"], "blk_mq_get_tag", "io-wait"),
        (
            ["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.isra.8", "rtnl_lock"],
            "rtnl_lock",
            "netdev",
        ),
        (
            ["__schedule", "schedule", "schedule_timeout", "msleep", "netdev_wait_allrefs_any"],
            "netdev_wait_allrefs_any",
            "netdev",
        ),
        (
            ["__schedule", "schedule", "rwsem_down_write_slowpath", "cgroup_kn_lock_live"],
            "cgroup_kn_lock_live",
            "cgroup",
        ),
        (
            ["? __schedule+0x2ae/0x8a0", "schedule+0x39/0x80", "mystery_wait+0x1/0x2 [foo 0123abcd]"],
            "mystery_wait",
            None,
        ),
    ],
)
def test_waits_in_skips_scheduler_and_wait_helpers(stack: list[str], function: str, hint: str | None) -> None:
    w = kernelnames.waits_in(stack)
    assert w is not None and (w.function, w.hint) == (function, hint)


def test_waits_in_helpers_only_and_bare_names() -> None:
    assert kernelnames.waits_in(["__schedule", "schedule", "io_schedule"]) is None
    assert kernelnames.bare("? xfs_buf_iowait.isra.0+0x1f/0xa0 [xfs]") == "xfs_buf_iowait"
    assert kernelnames.bare("[<ffffffff8c84525e>] schedule+0x7e/0x87") == "schedule"
    assert kernelnames.is_wait_helper("rwsem_down_read_slowpath") and not kernelnames.is_wait_helper("ovl_sync_fs")
    assert set(kernelnames.CLASS_HINTS) == {h for _, h, _ in kernelnames.KERNEL_WAITS}


# ------------------------------------------------------------------------------ dmesg


def test_real_dmesg_T_xfs_iowait_with_excerpt_gap() -> None:
    ev, rep = load("dmesg/nixpkgs-144787-dmesg-T-xfs-iowait.txt", "dmesg")
    kw, exe = ev.hung_tasks
    assert (kw.comm, kw.pid, kw.seconds, kw.state) == ("kworker/u64:5", 325, 122, "D")
    assert kw.ts == datetime(2021, 11, 5, 21, 2, 26, tzinfo=UTC)
    assert (exe.comm, exe.pid, exe.seconds) == ("exe", 37475, 245)
    assert "usleep_range" not in exe.kernel_stack and exe.kernel_stack[4] == "xfs_buf_iowait"
    assert exe.stack_refs[4].text.endswith("xfs_buf_iowait+0x1f/0xa0 [xfs]") and exe.stack_refs[4].line == 32
    hung = [e for e in ev.events if e.kind == EventKind.HUNG_TASK]
    assert hung[0].attrs["workqueue"] == "writeback wb_workfn (flush-254:1)"
    assert (hung[1].attrs["waits_in"], hung[1].attrs["hint"]) == ("xfs_buf_iowait", "io-wait")
    # the excerpt gap and the two orphan frames of a trace whose task line is not in the paste
    assert (rep.records, rep.unparsed) == (2, 3)
    assert rep.warnings == ["3 unread line(s), first at line 17: ### [excerpt gap] ###"]


def test_fixtures_read_without_unread_lines() -> None:
    for rel in sorted((FIX / "dmesg").iterdir()):
        if rel.name.startswith("nixpkgs"):
            continue
        _, rep = load(f"dmesg/{rel.name}", "dmesg")
        assert rep.unparsed == 0 and not rep.warnings, rel.name


JOURNAL_6X = """Jun 15 06:42:05 node-9 kernel: INFO: task containerd-shim:3658 blocked for more than 122 seconds.
Jun 15 06:42:05 node-9 kernel:       Tainted: G           OE      6.5.0-1020-aws #20~22.04.1-Ubuntu
Jun 15 06:42:05 node-9 kernel: "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
Jun 15 06:42:05 node-9 kernel: task:containerd-shim state:D stack:0     pid:3658  ppid:1      flags:0x00004002
Jun 15 06:42:05 node-9 kernel: Call Trace:
Jun 15 06:42:05 node-9 kernel:  <TASK>
Jun 15 06:42:05 node-9 kernel:  __schedule+0x2cb/0x750
Jun 15 06:42:05 node-9 kernel:  ? 0xffffffffc0b1e2a4
Jun 15 06:42:05 node-9 kernel:  schedule+0x63/0x110
Jun 15 06:42:05 node-9 kernel:  __refrigerator+0x4c/0x130
Jun 15 06:42:05 node-9 kernel:  get_signal+0x7d7/0x8a0 [vmlinux 1c2d3e4f]
Jun 15 06:42:05 node-9 kernel:  </TASK>
Jun 15 06:42:06 node-9 kernel: eth0: renamed from veth1a2b3c
"""


def test_journalctl_k_short_6x_freezer_build_id_and_address_frames() -> None:
    ev, rep = parse_text(dmesg, JOURNAL_6X)
    (h,) = ev.hung_tasks
    assert h.kernel_stack == ("__schedule", "schedule", "__refrigerator", "get_signal")
    assert ev.events[0].attrs["hint"] == "freezer" and (rep.unparsed, rep.warnings) == (0, [])


def test_journalctl_k_short_monotonic_and_short_full() -> None:
    mono = (
        "[ 6123.441021] node-7 kernel: INFO: task kubelet:1679 blocked for more than 120 seconds.\n"
        "[ 6123.441151] node-7 kernel: task:kubelet         state:D stack:0 pid:1679 tgid:1679 ppid:1 flags:0x2\n"
        "[ 6123.441157] node-7 kernel: Call Trace:\n"
        "[ 6123.441166] node-7 kernel:  __schedule+0x24e/0x590\n"
        "[ 6123.441175] node-7 kernel:  nfs_wait_bit_killable+0x20/0x80 [nfs]\n"
    )
    ev, rep = parse_text(dmesg, mono)
    assert ev.hung_tasks[0].kernel_stack == ("__schedule", "nfs_wait_bit_killable") and rep.unparsed == 0
    full = "Thu 2023-06-15 06:40:02 UTC node-9 kernel: nfs: server 10.20.0.15 not responding, timed out\n"
    ev, rep = parse_text(dmesg, full)
    (e,) = ev.events
    assert e.kind == EventKind.NFS_NOT_RESPONDING and e.attrs["detail"] == "timed out"
    assert e.ts == datetime(2023, 6, 15, 6, 40, 2, tzinfo=UTC)


def test_dmesg_foreign_trace_is_read_orphan_frames_and_notes_are_not() -> None:
    text = (
        "[  12.000001] WARNING: CPU: 3 PID: 1 at fs/overlayfs/super.c:1 ovl_fill_super+0x1/0x2\n"
        "[  12.000002] Call Trace:\n"
        "[  12.000003]  dump_stack+0x1/0x2\n"
        "[  12.000004]  RIP: 0010:ovl_fill_super+0x1/0x2\n"
        "pasted by hand: this part is a note\n"
        "[  13.000000]  ret_from_fork+0x22/0x30\n"
    )
    _, rep = parse_text(dmesg, text)
    assert rep.unparsed == 2
    assert rep.warnings[-1] == "2 unread line(s), first at line 5: pasted by hand: this part is a note"


def test_dmesg_caps_frames_per_trace() -> None:
    frames = "".join(f"[ 1.{i:06d}]  f{i}+0x1/0x2\n" for i in range(200))
    text = "[ 1.0] INFO: task containerd:1 blocked for more than 120 seconds.\n[ 1.0] Call Trace:\n" + frames
    ev, _ = parse_text(dmesg, text)
    assert len(ev.hung_tasks[0].kernel_stack) == dmesg.MAX_FRAMES


# ------------------------------------------------------------------------------ /proc/<pid>/stack


def test_proc_stack_wchan_from_first_meaningful_frame_and_unread() -> None:
    text = (
        "# pid=3658 comm=containerd-shim state=D\n"
        "[<0>] __schedule+0x351/0xa20\n"
        "[<0>] schedule+0x5d/0xe0\n"
        "[<0>] rpc_wait_bit_killable+0x1e/0x80 [sunrpc]\n"
        "[<0>] __rpc_execute+0x10f/0x3f0 [sunrpc]\n"
        "this is not a frame\n"
        "# pid=88 comm=kworker state=D wchan=blk_mq_get_tag\n"
        "[<0>] io_schedule+0x12/0x40\n"
    )
    ev, rep = parse_text(proc_stack, text, "proc-stacks.txt")
    shim, kw = ev.tasks
    assert shim.wchan == "rpc_wait_bit_killable" and kw.wchan == "blk_mq_get_tag"  # a given wchan is kept
    assert (rep.unparsed, rep.warnings) == (1, ["1 unread line(s), first at line 6: this is not a frame"])


def test_proc_stack_fixtures_have_no_unread_lines() -> None:
    for rel in sorted((FIX / "proc_stack").iterdir()):
        _, rep = load(f"proc_stack/{rel.name}", "proc-stack")
        assert rep.unparsed == 0 and not rep.warnings, rel.name


# ------------------------------------------------------------------------------ versions


@pytest.mark.parametrize(
    ("text", "kernel"),
    [
        ("5.10.0-28-amd64\n", "5.10.0-28-amd64"),
        ("6.1.0-18-cloud-amd64\n", "6.1.0-18-cloud-amd64"),
        ("4.18.0-477.27.1.el8_8.x86_64\n", "4.18.0-477.27.1.el8_8.x86_64"),
        (
            "Linux node1 5.15.0-1051-aws #56-Ubuntu SMP Thu Nov 16 19:02:39 UTC 2023 x86_64 x86_64 x86_64 GNU/Linux\n",
            "5.15.0-1051-aws",
        ),
        (
            "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0) #1\n",
            "6.1.0-18-amd64",
        ),
    ],
)
def test_versions_bare_kernel_release(text: str, kernel: str) -> None:
    assert parsers.sniff(text.encode())[0] == "versions"
    ev, rep = parse_text(versions, text)
    assert ev.versions[0].kernel == kernel and rep.unparsed == 0


def test_versions_bare_release_fixture_and_not_a_containerd_version() -> None:
    ev, rep = load("versions/versions-bare-kernel-release.txt", "versions")
    (v,) = ev.versions
    assert (v.kernel, v.containerd, v.runc) == ("6.1.0-18-cloud-amd64", "1.6.28", "1.1.12") and rep.unparsed == 0
    ev, _ = load("versions/versions-uname-a-aws.txt", "versions")
    assert (ev.versions[0].kernel, ev.versions[0].kubelet) == ("5.15.0-1051-aws", "v1.28.3")
    ev, _ = parse_text(versions, "runc version 1.1.12\n1.7.24\n2.0\n")
    assert ev.versions[0].kernel is None  # containerd-like and two-number values are never a kernel


def test_versions_unread_lines() -> None:
    ev, rep = parse_text(versions, "runc version 1.1.12\ncommit: v1.1.12-0-g51d5e946\n!!! garbage here\n")
    assert ev.versions[0].runc == "1.1.12"
    assert (rep.unparsed, rep.warnings) == (1, ["1 unread line(s), first at line 3: !!! garbage here"])
    for rel in sorted((FIX / "versions").iterdir()):
        _, rep = load(f"versions/{rel.name}", "versions")
        assert rep.unparsed == 0, rel.name


# ------------------------------------------------------------------------------ mounts


def test_mounts_network_filesystems_and_unread() -> None:
    text = (
        "10.0.0.5:/export /mnt/nfs nfs4 rw,relatime,vers=4.1,hard 0 0\n"
        "//fs1/share /mnt/smb cifs rw,vers=3.0 0 0\n"
        "user@host:/data /mnt/ssh fuse.sshfs rw,nosuid 0 0\n"
        "/dev/sda1 / ext4 rw,relatime 0 0\n"
        "not a mount line\n"
    )
    ev, rep = parse_text(mounts, text, "mounts")
    assert [m.target for m in ev.mounts if mounts.is_network(m)] == ["/mnt/nfs", "/mnt/smb", "/mnt/ssh"]
    assert (rep.unparsed, rep.warnings) == (1, ["1 unread line(s), first at line 5: not a mount line"])


# ------------------------------------------------------------------------------ every node parser


@pytest.mark.parametrize(
    ("kind", "good", "first_bad"),
    [
        ("psi", "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n", 2),
        ("diskstats", "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n", 2),
        ("meminfo", "Dirty:              12 kB\n", 2),
        ("vmstat", "nr_dirty 12\n", 2),
        ("prom-metrics", "kubelet_pleg_last_seen_seconds 1.6e9\n", 2),
        ("mounts", "/dev/sda1 / ext4 rw 0 0\n", 2),
        ("dmesg", "[ 1.000000] ok\n", 2),
        ("proc-stack", "[<0>] schedule+0x1/0x2\n", 2),
        ("versions", "runc version 1.1.12\n", 2),
    ],
)
def test_every_node_parser_counts_and_warns_unread_lines(kind: str, good: str, first_bad: int) -> None:
    module = parsers.get(kind)
    _, rep = parse_text(module, good + "\x1b[31mgarbage\x1b[0m line\n{not: json\n", "/proc/pressure/io")
    assert rep.unparsed == 2, (kind, rep)
    assert rep.warnings[-1].startswith(f"2 unread line(s), first at line {first_bad}: ")


def test_proc_stack_terminal_paste_prompt_gives_the_pid() -> None:
    text = (
        "5 D root      14378  13862  0  80   0 - 269979 refrig Sep30 ?       00:00:00 /usr/local/bin/runc init\n"
        "root@hsotname:~# cat /proc/14378/stack \n"
        "[<0>] __refrigerator+0x4c/0x130\n"
        "[<0>] unix_stream_data_wait+0x1fa/0x210\n"
        "root@hostname:~# uptime\n"
    )
    ev, rep = parse_text(proc_stack, text, "terminal.txt")
    (t,) = ev.tasks
    assert (t.pid, t.wchan, t.kernel_stack[0]) == (14378, "__refrigerator", "__refrigerator")
    assert t.ref.text.startswith("root@hsotname:~# cat /proc/14378/stack")
    assert rep.unparsed == 2 and rep.warnings[-1].startswith("2 unread line(s), first at line 1: 5 D root")
