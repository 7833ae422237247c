# ruff: noqa: E501  (log lines are quoted with their real lengths)
"""PD3xx (storage I/O; PD310 is tested with the network-filesystem work): each rule fires on a
real or internally consistent case and stays quiet on a plausible look-alike. /proc and log
lines written here use the kernel's and the kubelet's real formats and are marked SYNTHETIC."""

from __future__ import annotations

from pathlib import Path

from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
NODE = TESTS / "fixtures" / "node"
LOGS = TESTS / "fixtures" / "logs"
RULES = TESTS / "fixtures" / "rules"
GOROUTINES = TESTS / "fixtures" / "goroutines"
INCIDENTS = TESTS / "incidents"
DISK_05 = INCIDENTS / "05-disk-io-pressure"


# -- PD301 PSI io pressure ------------------------------------------------------------------


def test_pd301_fires_on_io_full_pressure() -> None:
    hits = assert_fires("PD301", [NODE / "psi" / "psi-series-pleg-doctor.txt"])
    assert "PSI io" in hits[0].title


def test_pd301_quiet_on_light_io_pressure(tmp_path: Path) -> None:
    # SYNTHETIC: a busy but healthy node, some 12 % / full 3 %: tasks rarely stall on I/O
    text = (
        "# pleg-doctor sample 2023-06-15T06:38:50.001204Z /proc/pressure/io\n"
        "some avg10=12.31 avg60=9.87 avg300=6.02 total=48127733\n"
        "full avg10=3.04 avg60=2.51 avg300=1.66 total=12004981\n"
    )
    assert_quiet("PD301", {"pressure-io.txt": text}, tmp_path)


# -- PD302 disk saturated ---------------------------------------------------------------------


def test_pd302_fires_on_a_saturated_disk_in_iostat() -> None:
    assert_fires("PD302", [NODE / "iostat" / "iostat-x-sysstat-12.2.txt"])


def test_pd302_fires_on_two_diskstats_snapshots() -> None:
    hits = assert_fires("PD302", [DISK_05 / "proc" / "diskstats"])
    assert "sda" in hits[0].title


def test_pd302_quiet_on_a_real_idle_disk() -> None:
    assert_quiet("PD302", [NODE / "diskstats" / "diskstats-6.18-real-2samples.txt"])
    assert_quiet("PD302", [NODE / "iostat" / "iostat-x-sysstat-12.6-real.txt"])


def test_pd302_quiet_on_a_busy_disk_with_a_short_queue(tmp_path: Path) -> None:
    # SYNTHETIC: sda busy 96 % of 5 s but 1.5 ms per write and aqu-sz 0.9: an SSD keeping up
    text = (
        "# pleg-doctor sample 2025-01-08T03:22:57.004000Z /proc/diskstats\n"
        "   8       0 sda 112341 1021 882311 901223 9812234 88113 771233112 88123411 1 19811233 99812331 0 0 0 0 120331 40112\n"
        "# pleg-doctor sample 2025-01-08T03:23:02.004000Z /proc/diskstats\n"
        "   8       0 sda 112392 1021 882719 901635 9815234 88113 771622232 88127911 1 19816033 99816831 0 0 0 0 120331 40112\n"
    )
    assert_quiet("PD302", {"diskstats": text}, tmp_path)


# -- PD303 dirty writeback backlog ------------------------------------------------------------


def test_pd303_fires_on_gigabytes_of_dirty_pages() -> None:
    assert_fires("PD303", [NODE / "meminfo" / "meminfo-series-writeback.txt"])


def test_pd303_quiet_on_a_real_meminfo_with_little_dirty_data() -> None:
    assert_quiet("PD303", [NODE / "meminfo" / "meminfo-6.18-real.txt"])


# -- PD304 runtime goroutine in fsync -------------------------------------------------------


FSYNC = RULES / "containerd-1.6-content-commit-fsync-SYNTHETIC.txt"


def test_pd304_fires_on_a_content_commit_in_fsync_for_4_minutes() -> None:
    hits = assert_fires("PD304", [FSYNC])
    assert "4 min" in hits[0].title


def test_pd304_quiet_on_a_fresh_fsync_nobody_waits_for(tmp_path: Path) -> None:
    # the same goroutine caught in fsync under a minute ([syscall]), no goroutine behind it
    text = FSYNC.read_text(encoding="utf-8").replace("[syscall, 4 minutes]", "[syscall]")
    assert_quiet("PD304", {"containerd.stacks.log": text}, tmp_path)


def test_pd304_quiet_on_the_fsync_inside_bbolts_transaction() -> None:
    # a content commit fsyncing inside bbolt's Update is PD206's chain, counted there
    assert_quiet("PD304", [GOROUTINES / "containerd-1.6-stall-go1.19-raw.txt"])


# -- PD305 kubelet du slow -------------------------------------------------------------------


def test_pd305_fires_on_cadvisor_disk_usage_walks_of_40s() -> None:
    assert_fires("PD305", [DISK_05 / "kubelet.log"], year=2025)


def test_pd305_quiet_on_a_stat_error_of_a_removed_snapshot(tmp_path: Path) -> None:
    # SYNTHETIC, cadvisor's real text: a container removed under the walk is an error, not slowness
    line = 'E0108 03:23:33.004813    1201 fsHandler.go:119] failed to collect filesystem stats - rootDiskErr: could not stat "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/4421/fs" to get inode usage: stat /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/4421/fs: no such file or directory, extraDiskErr: <nil>'
    assert_quiet("PD305", {"kubelet.log": line + "\n"}, tmp_path, year=2025)


# -- PD306 CRI calls hit DeadlineExceeded ------------------------------------------------


_EXECSYNC = """E0619 02:11:39.118212    2210 remote_runtime.go:496] "ExecSync cmd from runtime service failed" err="rpc error: code = DeadlineExceeded desc = failed to exec in container: timeout 1s exceeded: context deadline exceeded" containerID="5a1e0c9f3b7d2e8a4c6f1b0d9e7a5c3b2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c" cmd=[/bin/calico-node -felix-ready]
E0619 02:11:39.118377    2210 prober.go:104] "Probe errored" err="rpc error: code = DeadlineExceeded desc = failed to exec in container: timeout 1s exceeded: context deadline exceeded" probeType="Readiness" pod="kube-system/calico-node-x7k2p" podUID=3f0c9e1a-6b2d-4e8f-a1c3-5d7b9f0e2a4c containerName="calico-node"
"""


def test_pd306_fires_on_listcontainers_deadline_exceeded() -> None:
    hits = assert_fires("PD306", [DISK_05 / "kubelet.log"], year=2025)
    assert "ListContainers" in hits[0].title


def test_pd306_quiet_on_execsync_readiness_probe_timeouts(tmp_path: Path) -> None:
    # SYNTHETIC, the kubelet's real texts: a probe command that outlived timeoutSeconds=1 is
    # DeadlineExceeded from ExecSync, not a runtime that stopped answering the relist
    assert_quiet("PD306", {"kubelet.log": _EXECSYNC}, tmp_path, year=2024)


def test_pd306_quiet_on_a_list_call_that_fails_fast(tmp_path: Path) -> None:
    # containerd restarting: ListContainers fails with Unavailable at once; no deadline was reached
    line = 'E0602 05:50:09.100000    1679 remote_runtime.go:390] "ListContainers with filter from runtime service failed" err="rpc error: code = Unavailable desc = connection error: desc = \\"transport: Error while dialing dial unix /run/containerd/containerd.sock: connect: connection refused\\"" filter="&ContainerFilter{Id:,State:nil,PodSandboxId:,LabelSelector:map[string]string{},}"'
    assert_quiet("PD306", {"kubelet.log": line + "\n"}, tmp_path, year=2023)


# -- PD311 tasks stuck on a network filesystem -------------------------------------------


def test_pd311_fires_on_hung_tasks_in_nfs_code() -> None:
    assert_fires("PD311", [NODE / "dmesg" / "journalctl-k-nfs-hung.txt"])


def test_pd311_quiet_on_an_nfs_hiccup_that_recovered(tmp_path: Path) -> None:
    # the server stops answering for 5 s and comes back: no task hung in NFS code
    text = "".join(
        line + "\n"
        for line in (NODE / "dmesg" / "journalctl-k-nfs-hung.txt").read_text(encoding="utf-8").splitlines()
        if "nfs: server" in line
    )
    assert_quiet("PD311", {"kern.log": text}, tmp_path)


def test_pd311_quiet_on_a_hung_task_in_ext4_with_an_nfs_mount_present(tmp_path: Path) -> None:
    # a task hung in jbd2 (local disk) on a node that also mounts NFS: not the network filesystem
    inc = INCIDENTS / "04-fsync-io-pressure-hung-task"
    assert_quiet("PD311", [inc / "dmesg-iso.txt", INCIDENTS / "12-network-storage-hang-nfs" / "proc-mounts"])
