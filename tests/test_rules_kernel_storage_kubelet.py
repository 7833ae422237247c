"""Fire and look-alike cases for the kernel rules (PD601-PD608), network storage (PD310) and
the kubelet-side causes PD130 (panic in the relist) and PD131 (two relists at once)."""

from __future__ import annotations

from pathlib import Path

from rulecheck import assert_fires, assert_quiet, diagnose

FIX = Path(__file__).parent / "fixtures" / "node"
NIXPKGS = FIX / "dmesg" / "nixpkgs-144787-dmesg-T-xfs-iowait.txt"
K8S_122491 = FIX / "goroutines" / "k8s-122491-kubelet-start-statfs.txt"


def hung(comm: str, pid: int, *frames: str, seconds: int = 122) -> str:
    """A 5.x hung-task report in `dmesg -T` framing."""
    p = "[Thu Jun 15 06:42:10 2023] "
    lines = [
        f"INFO: task {comm}:{pid} blocked for more than {seconds} seconds.",
        "      Not tainted 6.1.0-18-amd64 #1 Debian 6.1.76-1",
        '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
        f"task:{comm:<15} state:D stack:0     pid:{pid:<5} ppid:1      flags:0x00000002",
        "Call Trace:",
        " <TASK>",
        " __schedule+0x351/0xa20",
        " schedule+0x5d/0xe0",
        *(f" {f}" for f in frames),
        " </TASK>",
    ]
    return "".join(p + ln + "\n" for ln in lines)


FSYNC_FRAMES = ("jbd2_log_wait_commit+0xb5/0x140 [jbd2]", "ext4_sync_file+0x15c/0x3b0", "do_fsync+0x38/0x70")
IO_FRAMES = ("io_schedule+0x12/0x40", "folio_wait_bit_common+0x12e/0x300", "filemap_fault+0x6b0/0x9a0")


# ------------------------------------------------------------------------------ PD6xx


def test_pd601_overlay_umount_sync(tmp_path: Path) -> None:
    assert_fires("PD601", [FIX / "dmesg" / "dmesg-hung-overlay-umount-5.4.txt"])
    # syncfs(2) from a backup tool: a whole-filesystem flush, but not an overlay unmount
    text = hung(
        "restic",
        4411,
        "wb_wait_for_completion+0x52/0x80",
        "sync_inodes_sb+0xc2/0x2b0",
        "sync_filesystem+0x74/0x90",
        "__x64_sys_syncfs+0x3f/0x90",
    )
    assert_quiet("PD601", {"dmesg.txt": text}, tmp_path)


def test_pd602_runtime_in_fsync(tmp_path: Path) -> None:
    assert_fires("PD602", {"dmesg.txt": hung("containerd", 1187, *FSYNC_FRAMES)}, tmp_path / "a")
    assert_quiet("PD602", {"dmesg.txt": hung("postgres", 8123, *FSYNC_FRAMES)}, tmp_path / "b")


def test_pd603_xfs_buf_iowait_real_dmesg_T() -> None:
    (f,) = assert_fires("PD603", [NIXPKGS])
    assert "xfs_buf_iowait" in f.title and "XFS metadata buffer I/O not completing" in f.title
    assert "writeback wb_workfn worker" in f.title
    quoted = [r.text for r in f.evidence]
    assert any(t.endswith("xfs_buf_iowait+0x1f/0xa0 [xfs]") for t in quoted)  # the frame it waits in
    dg = diagnose([NIXPKGS])
    assert str(dg.root_causes[0].cls) in ("disk-io-pressure", "kernel-d-state")
    assert all(lk.evidence for lk in dg.root_causes[0].chain)


def test_pd603_quiet_for_a_runtime_task(tmp_path: Path) -> None:
    assert_quiet("PD603", {"dmesg.txt": hung("containerd", 1187, *IO_FRAMES)}, tmp_path)


def test_pd604_netdev(tmp_path: Path) -> None:
    assert_fires("PD604", [FIX / "dmesg" / "dmesg-T-netdev-unregister.txt"])
    text = "[Thu Jun 15 06:40:11 2023] unregister_netdevice: waiting for eth0 to become free. Usage count = 1\n"
    assert_quiet("PD604", {"dmesg.txt": text}, tmp_path)  # the message alone: nothing blocked yet


def test_pd605_cgroup(tmp_path: Path) -> None:
    assert_fires("PD605", [FIX / "dmesg" / "dmesg-x-cgroup-rmdir-3.10.txt"])
    text = hung("kubelet", 1679, "__mutex_lock.constprop.0+0x...", "tty_write_lock+0x1d/0x50", "tty_write+0x1c/0x30")
    assert_quiet("PD605", {"dmesg.txt": text.replace("+0x...", "+0x1a/0x30")}, tmp_path)


def test_pd606_runtime_in_unknown_kernel_wait(tmp_path: Path) -> None:
    text = hung(
        "containerd-shim",
        3658,
        "schedule_timeout+0x1e6/0x330",
        "mlx5_cmd_exec+0x2ab/0x3c0 [mlx5_core]",
        "mlx5_core_destroy_mkey+0x5e/0x90 [mlx5_core]",
    )
    (f,) = assert_fires("PD606", {"dmesg.txt": text}, tmp_path / "a")
    assert "mlx5_cmd_exec" in f.title and "__schedule" not in f.title  # the meaningful frame, not the scheduler
    nfs = hung("containerd", 2206, "rpc_wait_bit_killable+0x1e/0x80 [sunrpc]", "__rpc_execute+0x10f/0x3f0 [sunrpc]")
    assert_quiet("PD606", {"dmesg.txt": nfs}, tmp_path / "b")  # network filesystem: PD310/PD311


FROZEN_SHIM = """# pid=3658 comm=containerd-shim state=D cmd=/usr/bin/containerd-shim-runc-v2 -namespace k8s.io
[<0>] __refrigerator+0x4c/0x130
[<0>] get_signal+0x7d7/0x8a0
[<0>] arch_do_signal_or_restart+0x2e/0x260
[<0>] exit_to_user_mode_prepare+0xd3/0x140
"""


def test_pd607_runtime_frozen(tmp_path: Path) -> None:
    (f,) = assert_fires("PD607", {"proc-stacks.txt": FROZEN_SHIM}, tmp_path / "a")
    assert "__refrigerator" in f.title
    paused = FROZEN_SHIM.replace("containerd-shim", "nginx").replace("/usr/bin/containerd-shim-runc-v2", "nginx")
    assert_quiet("PD607", {"proc-stacks.txt": paused}, tmp_path / "b")  # a paused workload is normal


def test_pd608_rcu_grace_period(tmp_path: Path) -> None:
    assert_fires("PD608", [FIX / "dmesg" / "dmesg-level-word-copy.txt"])
    text = hung(
        "kworker/2:1",
        88,
        "schedule_timeout+0x1e6/0x330",
        "wait_for_completion+0x10a/0x170",
        "flush_work+0x12e/0x1d0",
        "drain_all_pages+0x1a3/0x210",
    )
    assert_quiet("PD608", {"dmesg.txt": text}, tmp_path)


# ------------------------------------------------------------------------------ PD310

VOLUME_STATFS = """goroutine 2077 [syscall]:
syscall.Syscall(0x89, 0xc0012a4000, 0xc000f8e2a8, 0x0)
\t/usr/local/go/src/syscall/syscall_linux.go:69 +0x25
syscall.Statfs({0xc0012a4000?, 0x0?}, 0xc000f8e2a8)
\t/usr/local/go/src/syscall/zsyscall_linux_amd64.go:1376 +0x78
k8s.io/kubernetes/pkg/volume/util/fs.Info({0xc0012a4000, 0x6e})
\tpkg/volume/util/fs/fs.go:42 +0x5a
k8s.io/kubernetes/pkg/volume.(*metricsStatFS).getFsInfo(0xc001b2e0f0, 0xc000e0c000)
\tpkg/volume/metrics_statfs.go:66 +0x3e
k8s.io/kubernetes/pkg/volume.(*metricsStatFS).GetMetrics(0xc001b2e0f0)
\tpkg/volume/metrics_statfs.go:52 +0x7a
k8s.io/kubernetes/pkg/kubelet/server/stats.(*volumeStatCalculator).calcAndStoreStats(0xc000a4a0f0)
\tpkg/kubelet/server/stats/volume_stat_calculator.go:139 +0x356
created by k8s.io/kubernetes/pkg/kubelet/server/stats.(*volumeStatCalculator).StartOnce.func1
\tpkg/kubelet/server/stats/volume_stat_calculator.go:67 +0x9b
"""
NFS_MOUNT = (
    "10.20.0.15:/export/data /var/lib/kubelet/pods/7c1e/volumes/kubernetes.io~nfs/data nfs4 "
    "rw,relatime,vers=4.1,hard,proto=tcp,timeo=600,retrans=2 0 0\n"
    "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
)
NFS_DMESG = """[Thu Jun 15 06:40:02 2023] nfs: server 10.20.0.15 not responding, still trying
[Thu Jun 15 06:40:07 2023] nfs: server 10.20.0.15 not responding, still trying
"""


def test_pd310_kubelet_start_statfs_real_case() -> None:
    (f,) = assert_fires("PD310", [K8S_122491])
    assert f.chain is not None and f.chain.links[0].goroutine == 1
    assert "statfs" in f.title and "getVfsStats" in f.title
    dg = diagnose([K8S_122491])
    top = dg.root_causes[0]
    assert str(top.cls) == "network-storage-hang"
    assert 1 in {lk.goroutine for lk in top.chain} and all(lk.evidence for lk in top.chain)


def test_pd310_quiet_on_a_short_volume_statfs(tmp_path: Path) -> None:
    """A statfs caught in flight by the volume stats collector: no duration, not on the start,
    sync-loop or relist path, no network storage in the evidence."""
    assert_quiet("PD310", {"kubelet-goroutines.txt": VOLUME_STATFS}, tmp_path)


def test_pd310_same_statfs_fires_with_a_network_mount(tmp_path: Path) -> None:
    (f,) = assert_fires("PD310", {"kubelet-goroutines.txt": VOLUME_STATFS, "mounts": NFS_MOUNT}, tmp_path)
    assert f.weight >= 0.6 and any("nfs4" in r.text for r in f.evidence)


def test_pd310_long_wait_on_mount_point_check(tmp_path: Path) -> None:
    dump = """goroutine 251 [syscall, 939 minutes]:
syscall.Syscall6(0x106, 0xffffffffffffff9c, 0xc001357440, 0xc0015a2378, 0x0, 0x0, 0x0)
\t/usr/local/go/src/syscall/asm_linux_amd64.s:41 +0x5
syscall.fstatat(0xffffffffffffff9c, 0xc001357320, 0x5e, 0xc0015a2378, 0x0)
\t/usr/local/go/src/syscall/zsyscall_linux_amd64.go:1480 +0xc8
syscall.Stat(...)
\t/usr/local/go/src/syscall/syscall_linux_amd64.go:65
os.statNolog(0xc001357320, 0x5e, 0x3cf2e80, 0x0)
\t/usr/local/go/src/os/stat_unix.go:31 +0x6e
os.Stat(0xc001357320, 0x5e, 0xc000d56b68, 0x3)
\t/usr/local/go/src/os/stat.go:13 +0x4d
k8s.io/kubernetes/vendor/k8s.io/mount-utils.(*Mounter).IsLikelyNotMountPoint(0xc000becfc0, 0xc001357320, 0x5e)
\t/workspace/src/k8s.io/kubernetes/vendor/k8s.io/mount-utils/mount_linux.go:292 +0x4d
k8s.io/kubernetes/pkg/kubelet.(*Kubelet).getMountedVolumePathListFromDisk(0xc000a8c000, {0xc000d3c0f0, 0x24})
\tpkg/kubelet/kubelet_getters.go:361 +0x2b4
k8s.io/kubernetes/pkg/kubelet.(*Kubelet).cleanupOrphanedPodDirs(0xc000a8c000, {0xc001c0e000, 0x1e, 0x20})
\tpkg/kubelet/kubelet_volumes.go:170 +0x3f2
k8s.io/kubernetes/pkg/kubelet.(*Kubelet).HandlePodCleanups(0xc000a8c000)
\tpkg/kubelet/kubelet_pods.go:1144 +0x8a5
"""
    dump = dump.replace("k8s.io/kubernetes/vendor/k8s.io/mount-utils", "k8s.io/mount-utils")
    (f,) = assert_fires("PD310", {"kubelet-goroutines.txt": dump}, tmp_path)
    assert "939 min" in f.title and "IsLikelyNotMountPoint" in f.title


def test_pd310_kernel_nfs_frames_of_the_runtime() -> None:
    (f,) = assert_fires("PD310", [FIX / "dmesg" / "journalctl-k-nfs-hung.txt"])
    assert "rpc_wait_bit_killable" in f.title or "nfs" in f.title


def test_pd310_nfs_not_responding_messages(tmp_path: Path) -> None:
    (f,) = assert_fires("PD310", {"dmesg.txt": NFS_DMESG}, tmp_path / "a")
    assert "10.20.0.15 not responding" in f.title
    ok = "[Thu Jun 15 06:40:02 2023] nfs: server 10.20.0.15 OK\n"
    assert_quiet("PD310", {"dmesg.txt": ok}, tmp_path / "b")


# ------------------------------------------------------------------------------ PD130, PD131

RELIST_PANIC = """goroutine 412 [running]:
k8s.io/apimachinery/pkg/util/runtime.logPanic({0x3c0e2a0, 0x6b7f1b0})
\tvendor/k8s.io/apimachinery/pkg/util/runtime/runtime.go:75 +0x99
k8s.io/apimachinery/pkg/util/runtime.HandleCrash({0x0, 0x0, 0x0})
\tvendor/k8s.io/apimachinery/pkg/util/runtime/runtime.go:49 +0x75
panic({0x3c0e2a0, 0x6b7f1b0})
\t/usr/local/go/src/runtime/panic.go:884 +0x212
k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).updateCache(0xc000a2e000, {0x4a0b9f8, 0xc0000a6000}, 0xc001b3e000)
\tpkg/kubelet/pleg/generic.go:447 +0x1b2
k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Relist(0xc000a2e000)
\tpkg/kubelet/pleg/generic.go:260 +0x7a5
k8s.io/apimachinery/pkg/util/wait.BackoffUntil.func1(0xc0007a6000?)
\tvendor/k8s.io/apimachinery/pkg/util/wait/backoff.go:226 +0x3e
created by k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Start
\tpkg/kubelet/pleg/generic.go:150 +0x96
"""
VOLUME_PANIC = """goroutine 388 [running]:
k8s.io/apimachinery/pkg/util/runtime.logPanic({0x3c0e2a0, 0x6b7f1b0})
\tvendor/k8s.io/apimachinery/pkg/util/runtime/runtime.go:75 +0x99
panic({0x3c0e2a0, 0x6b7f1b0})
\t/usr/local/go/src/runtime/panic.go:884 +0x212
k8s.io/kubernetes/pkg/kubelet/volumemanager/populator.(*desiredStateOfWorldPopulator).findAndAddNewPods(0xc000e1a000)
\tpkg/kubelet/volumemanager/populator/desired_state_of_world_populator.go:158 +0x2b1
k8s.io/kubernetes/pkg/kubelet/volumemanager/populator.(*desiredStateOfWorldPopulator).populatorLoop(0xc000e1a000)
\tpkg/kubelet/volumemanager/populator/desired_state_of_world_populator.go:128 +0x45
created by k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).Run
\tpkg/kubelet/volumemanager/volume_manager.go:260 +0x1c5
"""


def test_pd130_panic_in_relist(tmp_path: Path) -> None:
    (f,) = assert_fires("PD130", {"kubelet-goroutines.txt": RELIST_PANIC}, tmp_path / "a")
    assert "updateCache" in f.title and f.chain is not None and f.chain.links[0].goroutine == 412
    assert_quiet("PD130", {"kubelet-goroutines.txt": VOLUME_PANIC}, tmp_path / "b")


def _relist_goroutine(gid: int, state: str, top: str) -> str:
    return (
        f"goroutine {gid} [{state}]:\n{top}"
        "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relist(0xc000788960)\n"
        "\tpkg/kubelet/pleg/generic.go:214 +0x2c9\n"
        "k8s.io/apimachinery/pkg/util/wait.JitterUntil.func1()\n"
        "\tvendor/k8s.io/apimachinery/pkg/util/wait/wait.go:155 +0x5f\n"
        "created by k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Start\n"
        "\tpkg/kubelet/pleg/generic.go:130 +0x88\n\n"
    )


SET_CURRENT = (
    "k8s.io/kubernetes/pkg/kubelet/pleg.podRecords.setCurrent(0xc000706690, 0xc001e44600, 0x1d, 0x20)\n"
    "\tpkg/kubelet/pleg/generic.go:464 +0x149\n"
)
GET_PODS = (
    "k8s.io/kubernetes/pkg/kubelet/pleg.getContainersFromPods(0xc000a8fae8, 0x2, 0x2)\n"
    "\tpkg/kubelet/pleg/generic.go:322 +0x335\n"
)
MUTEX = (
    "sync.runtime_SemacquireMutex(0xc000788a04, 0x0, 0x1)\n\t/usr/local/go/src/runtime/sema.go:71 +0x47\n"
    "sync.(*Mutex).lockSlow(0xc000788a00)\n\t/usr/local/go/src/sync/mutex.go:138 +0x105\n"
    "sync.(*Mutex).Lock(...)\n\t/usr/local/go/src/sync/mutex.go:81\n"
)


def test_pd131_two_relists_in_one_dump(tmp_path: Path) -> None:
    dump = _relist_goroutine(1420, "running", SET_CURRENT) + _relist_goroutine(1377, "runnable", GET_PODS)
    (f,) = assert_fires("PD131", {"kubelet-goroutines.txt": dump}, tmp_path / "a")
    assert f.chain is not None and {lk.goroutine for lk in f.chain.links} == {1420, 1377}
    # a second relist waiting for the first (serialized by a lock in the relist's own frame)
    serial = _relist_goroutine(1420, "running", SET_CURRENT) + _relist_goroutine(1377, "sync.Mutex.Lock", MUTEX)
    assert_quiet("PD131", {"kubelet-goroutines.txt": serial}, tmp_path / "b")


def _ticks(offsets: list[float]) -> str:
    out = []
    for t in offsets:
        sec = 10 + t
        out.append(
            f"I0615 06:40:{int(sec):02d}.{round((sec % 1) * 1e6):06d}    1679 generic.go:191] "
            '"GenericPLEG: Relisting"\n'
        )
    return "".join(out)


def test_pd131_interleaved_relist_ticks(tmp_path: Path) -> None:
    two_loops = sorted([i * 1.0 for i in range(14)] + [i * 1.0 + 0.3 for i in range(14)])
    (f,) = assert_fires("PD131", {"kubelet.log": _ticks(two_loops)}, tmp_path / "a")
    assert "shorter than 0.5 s" in f.title and all(r.text for r in f.evidence)
    one_loop = [i * 1.02 for i in range(30)]
    assert_quiet("PD131", {"kubelet.log": _ticks(one_loop)}, tmp_path / "b")


def _structured_panic(frames: list[str]) -> str:
    ticks = "".join(f'I0615 06:39:{i}.000000    1679 generic.go:191] "GenericPLEG: Relisting"\n' for i in range(10, 40))
    head = (
        'E0615 06:40:03.100000    1679 runtime.go:142] "Observed a panic" panic="runtime error: invalid memory '
        'address or nil pointer dereference" stacktrace=<\n'
    )
    body = "".join(f"\t{f}\n" for f in ["goroutine 412 [running]:", *frames])
    return ticks + head + body + " >\n"


def test_pd130_structured_observed_a_panic_log(tmp_path: Path) -> None:
    relist = [
        "panic({0x3c0e2a0?, 0x6b7f1b0?})",
        "\truntime/panic.go:785 +0x132",
        "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).updateCache(0xc000a2e000, {0x4a0b9f8, 0xc0000a6000})",
        "\tk8s.io/kubernetes/pkg/kubelet/pleg/generic.go:447 +0x1b2",
        "k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Relist(0xc000a2e000)",
        "\tk8s.io/kubernetes/pkg/kubelet/pleg/generic.go:260 +0x7a5",
    ]
    (f,) = assert_fires("PD130", {"kubelet.log": _structured_panic(relist)}, tmp_path / "a")
    assert "updateCache" in f.title and "Observed a panic" in f.evidence[0].text
    volume = [
        "panic({0x3c0e2a0?, 0x6b7f1b0?})",
        "k8s.io/kubernetes/pkg/kubelet/volumemanager/populator.(*desiredStateOfWorldPopulator).findAndAddNewPods(0x1)",
    ]
    assert_quiet("PD130", {"kubelet.log": _structured_panic(volume)}, tmp_path / "b")
