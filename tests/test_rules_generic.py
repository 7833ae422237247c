# ruff: noqa: E501  (goroutine dump text is quoted with its real line lengths)
"""PD8xx, the generic layer: each rule fires on a real (or consistent) case and stays quiet on a
look-alike. Real cases come from tests/corpus/real (verbatim public artifacts); the few dumps
written here are marked SYNTHETIC in their builder and use frame shapes of real dumps."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.model import RootCauseClass as C
from plegdoctor.rules.generic.mechanisms import MECHANISMS, mechanism_of
from rulecheck import assert_fires, assert_quiet, diagnose

REAL = Path(__file__).resolve().parent / "corpus" / "real"


def _case(name: str, *files: str) -> list[Path]:
    d = REAL / name
    return [d / f for f in files]


# -- PD801 long wait ---------------------------------------------------------------------


def test_pd801_fires_on_a_lone_799_minute_ttrpc_send_lock_wait() -> None:
    hits = assert_fires("PD801", _case("ttrpc-174-sendlock-waiter-go124-internal-sync", "containerd-goroutines.txt"))
    assert hits[0].root_cause == C.SHIM_HANG
    assert "799 min" in hits[0].title
    assert any(r.line >= 1 and "goroutine 45534323" in r.text for r in hits[0].evidence)


def test_pd801_fires_on_crio_215_minute_state_lock_wait() -> None:
    hits = assert_fires("PD801", _case("crio-9406-stop-oplock-go121-waitreason", "crio-goroutines.txt"))
    assert "215 min" in hits[0].title


def test_pd801_quiet_on_a_healthy_server_whose_loops_idle_for_minutes() -> None:
    # panicweb: 71 goroutines of an HTTP server, `select`/`chan receive`/`IO wait` for 2 minutes
    dg = assert_quiet("PD801", _case("panicparse-static-panicweb-debug2", "goroutines.txt"))
    assert not dg.root_causes


def test_pd801_quiet_on_channel_waits_of_a_test_program() -> None:
    assert_quiet("PD801", _case("panicparse-fixtures-format-variants", "locked-to-thread-waits.txt"))


# -- PD802 lock convoy ---------------------------------------------------------------------

_CONVOY = """goroutine {gid} [semacquire{minutes}]:
sync.runtime_Semacquire(0xc820354f54)
\t/usr/lib/go1.6/src/runtime/sema.go:47 +0x26
sync.(*Mutex).Lock(0xc820354f50)
\t/usr/lib/go1.6/src/sync/mutex.go:83 +0x1c4
github.com/docker/docker/container.(*State).IsRunning(0xc820354f50, 0xc821841817)
\t/build/amd64-usr/var/tmp/portage/app-emulation/docker-1.11.2-r5/work/docker-1.11.2/.gopath/src/github.com/docker/docker/container/state.go:159 +0x2d
github.com/docker/docker/daemon.(*Daemon).ContainerStop(0xc820414000, 0xc821841817, 0xc, 0x2d, 0x0, 0x0)
\t/build/amd64-usr/var/tmp/portage/app-emulation/docker-1.11.2-r5/work/docker-1.11.2/.gopath/src/github.com/docker/docker/daemon/stop.go:24 +0x9a

"""


def _convoy(minutes: list[int | None]) -> str:
    """SYNTHETIC: goroutines shaped like moby#27827's (frames as posted there), ids and waits
    chosen by the test."""
    return "".join(_CONVOY.format(gid=82200 + i, minutes=f", {m} minutes" if m else "") for i, m in enumerate(minutes))


def test_pd802_fires_on_two_goroutines_minutes_on_one_mutex(tmp_path: Path) -> None:
    hits = assert_fires("PD802", {"dockerd.stacks.log": _convoy([19, 5])}, tmp_path)
    assert hits[0].root_cause == C.DOCKERD_LOCK
    assert "0xc820354f50" in hits[0].title
    assert {lk.goroutine for lk in hits[0].chain.links} == {82200, 82201}


def test_pd802_fires_on_the_real_journald_wrapped_dockerd_dump() -> None:
    hits = assert_fires("PD802", _case("moby-27827-journald-dockerd-state-lock-go16", "dockerd-journal.txt"))
    assert {lk.goroutine for lk in hits[0].chain.links} >= {82238, 82255}


def test_pd802_quiet_on_two_fresh_waiters(tmp_path: Path) -> None:
    # two goroutines on one mutex for under a minute: ordinary contention, not a convoy
    assert_quiet("PD802", {"dockerd.stacks.log": _convoy([None, None])}, tmp_path)


# -- PD803 symptom path caught --------------------------------------------------------------


def test_pd803_fires_on_a_bbolt_writer_waiter_caught_during_a_relist_gap() -> None:
    # containerd#8698: a 42 s relist gap, and one containerd goroutine caught in beginRWTx
    case = "containerd-8698-relist-gap-taskexit-bbolt-umount-kubelet_init"
    hits = assert_fires("PD803", _case(case, "containerd-goroutines.txt", "kubelet.log"))
    assert hits[0].root_cause == C.BBOLT_LOCK_CONTENTION
    assert hits[0].chain.links[0].goroutine == 1723
    assert any("Relisting" in r.text for r in hits[0].evidence)


def test_pd803_yields_to_the_cni_signature_rule_on_the_same_wait() -> None:
    # kubernetes#98044: the dockershim's PodSandboxStatus in CNI code while PLEG is unhealthy;
    # PD420 (the CNI signature) explains the same goroutine, so the generic finding is dropped
    files = _case("k8s-98044-relist-podsandboxstatus-cni-lock-debug1", "kubelet-goroutines-grep.txt", "kubelet.log")
    dg = diagnose(files)
    codes = {f.code for f in dg.findings}
    assert "PD420" in codes and "PD803" not in codes
    assert dg.root_causes[0].cls == C.CNI_HANG


def test_pd803_quiet_on_the_same_dump_without_a_stall() -> None:
    assert_quiet("PD803", _case("k8s-98044-relist-podsandboxstatus-cni-lock-debug1", "kubelet-goroutines-grep.txt"))


# -- PD804 runc stuck -------------------------------------------------------------------------


def test_pd804_fires_on_runc_start_blocked_opening_exec_fifo() -> None:
    hits = assert_fires("PD804", _case("containerd-1882-shim-state-ttrpc-runc-execfifo", "runc-goroutines.txt"))
    assert "exec.fifo" in hits[0].title
    assert hits[0].chain.links[0].goroutine == 1


_RUNC_RUNNING = """goroutine 1 [running]:
main.main()
\t/go/src/github.com/opencontainers/runc/main.go:150 +0x1a
github.com/opencontainers/runc/libcontainer.(*linuxContainer).Run(0xc42011a000, 0xc4200c4000, 0x0, 0x0)
\t/go/src/github.com/opencontainers/runc/libcontainer/container_linux.go:200 +0x10
"""


def test_pd804_quiet_on_a_runc_dump_that_is_running(tmp_path: Path) -> None:
    """SYNTHETIC look-alike: a runc dump whose main goroutine runs (a crash report, not a hang)."""
    assert_quiet("PD804", {"runc-goroutines.txt": _RUNC_RUNNING}, tmp_path)


# -- PD805 systemd D-Bus ------------------------------------------------------------------------

_DBUS = """goroutine 1 [chan receive{minutes}]:
github.com/coreos/go-systemd/v22/dbus.(*Conn).startJob(0xc0001b2000, {{0x55d2c1a0b7c8, 0xc0000a8000}}, 0x0, {{0x55d2c0f6e2a1, 0x18}}, {{0xc0001c4000, 0x4, 0x4}})
\t/go/src/github.com/opencontainers/runc/vendor/github.com/coreos/go-systemd/v22/dbus/methods.go:49 +0x1d1
github.com/coreos/go-systemd/v22/dbus.(*Conn).StartTransientUnitContext(...)
\t/go/src/github.com/opencontainers/runc/vendor/github.com/coreos/go-systemd/v22/dbus/methods.go:209
github.com/opencontainers/runc/libcontainer/cgroups/systemd.startUnit(0xc0001a6000, {{0xc0001ba0c0, 0x4a}}, {{0xc0001c4000, 0x7, 0x8}})
\t/go/src/github.com/opencontainers/runc/libcontainer/cgroups/systemd/common.go:122 +0x1c5
github.com/opencontainers/runc/libcontainer/cgroups/systemd.(*legacyManager).Apply(0xc0001c2000, 0x3e8)
\t/go/src/github.com/opencontainers/runc/libcontainer/cgroups/systemd/v1.go:177 +0x5c5
main.main()
\t/go/src/github.com/opencontainers/runc/main.go:150 +0x1a
"""


def test_pd805_fires_on_runc_waiting_minutes_for_systemd(tmp_path: Path) -> None:
    """SYNTHETIC: runc's systemd cgroup manager waiting in go-systemd's startJob (the call
    runc#3904 and runc#1959 report hanging); frames shaped as runc 1.1 prints them."""
    hits = assert_fires("PD805", {"runc-goroutines.txt": _DBUS.format(minutes=", 7 minutes")}, tmp_path)
    assert hits[0].root_cause == C.SYSTEMD_DBUS_HANG
    dg = diagnose({"runc-goroutines.txt": _DBUS.format(minutes=", 7 minutes")}, tmp_path)
    assert dg.root_causes[0].cls == C.SYSTEMD_DBUS_HANG


_KUBELET_CM = """k8s.io/kubernetes/pkg/kubelet/cm.(*cgroupManagerImpl).Create(0xc000a1e0c0, 0xc0012c4000)
\t/workspace/src/k8s.io/kubernetes/pkg/kubelet/cm/cgroup_manager_linux.go:472 +0x2d2
"""


def test_pd805_quiet_on_a_fresh_dbus_call_of_the_kubelet_with_no_stall(tmp_path: Path) -> None:
    """SYNTHETIC look-alike: the kubelet's cgroup manager (runc's libcontainer systemd code,
    vendored) in a D-Bus call that has not waited a minute, on a node with no stall."""
    dump = _DBUS.format(minutes="").replace(
        "main.main()\n\t/go/src/github.com/opencontainers/runc/main.go:150 +0x1a\n", _KUBELET_CM
    )
    assert "cgroupManagerImpl" in dump
    assert_quiet("PD805", {"kubelet-goroutines.txt": dump}, tmp_path)


# -- PD806 known runtime bug ------------------------------------------------------------------

_NRI = """goroutine 4711 [sync.Mutex.Lock, 12 minutes]:
sync.runtime_SemacquireMutex(0xc000e1a0c4?, 0x0?, 0x0?)
\t/usr/local/go/src/runtime/sema.go:77 +0x25
sync.(*Mutex).lockSlow(0xc000e1a0c0)
\t/usr/local/go/src/sync/mutex.go:171 +0x15d
sync.(*Mutex).Lock(...)
\t/usr/local/go/src/sync/mutex.go:90
github.com/containerd/nri/pkg/adaptation.(*Adaptation).StateChange(0xc000e1a0c0, {{0x55f0c3a4e6d8, 0xc00211e0f0}}, 0xc0021b6000)
\t/go/src/github.com/containerd/containerd/vendor/github.com/containerd/nri/pkg/adaptation/adaptation.go:299 +0x5a
github.com/containerd/containerd/pkg/nri.(*local).StartContainer(0xc000396c30, {{0x55f0c3a4e6d8, 0xc00211e0f0}}, {{0x55f0c3a56a60, 0xc0009e2b40}}, {{0x55f0c3a5b1a8, 0xc0011e4a80}})
\t/go/src/github.com/containerd/containerd/pkg/nri/nri.go:230 +0x1b4
github.com/containerd/containerd/pkg/cri/server.(*criService).StartContainer(0xc0003ec000, {{0x55f0c3a4e6d8, 0xc00211e0f0}}, 0xc0021a4000)
\t/go/src/github.com/containerd/containerd/pkg/cri/server/container_start.go:160 +0x10f5
"""


def test_pd806_fires_when_an_affected_version_shows_the_nri_deadlock(tmp_path: Path) -> None:
    """SYNTHETIC: a containerd 1.7.13 goroutine waiting for the NRI adaptation lock from
    StartContainer (the lock order of containerd#10085); frames shaped as 1.7 prints them."""
    ev = {"containerd.stacks.log": _NRI, "versions.txt": "containerd containerd.io 1.7.13 7c3aca7\n"}
    hits = assert_fires("PD806", ev, tmp_path)
    assert "1.7.16" in hits[0].title
    dg = diagnose(ev, tmp_path)
    assert dg.root_causes[0].cls == C.RUNTIME_KNOWN_BUG


def test_pd806_quiet_on_a_fixed_version_with_the_same_wait(tmp_path: Path) -> None:
    ev = {"containerd.stacks.log": _NRI, "versions.txt": "containerd containerd.io 1.7.16 83031836b\n"}
    assert_quiet("PD806", ev, tmp_path)


# -- the mechanism table ------------------------------------------------------------------------


def test_mechanism_table_orders_subsystem_before_lock() -> None:
    # a lock wait inside CNI code is a CNI hang, not a runtime lock convoy
    m = mechanism_of(frozenset({"cni"}), "mutex", "containerd", None)
    assert m is not None and m.cls == C.CNI_HANG
    assert mechanism_of(frozenset(), "mutex", "containerd", None).cls == C.RUNTIME_LOCK_CONTENTION  # type: ignore[union-attr]
    assert mechanism_of(frozenset(), "mutex", "unknown", None) is None  # a lock of an unknown Go program
    assert mechanism_of(frozenset(), "chan", "containerd", None) is None
    assert len({m.name for m in MECHANISMS}) == len(MECHANISMS)


def test_every_class_is_defined_with_its_remediation_in_docs_and_rules_output() -> None:
    from plegdoctor.diagnosis.classes import CAUSE_CLASSES
    from plegdoctor.model import RootCauseClass
    from plegdoctor.rulescmd import rules_text

    assert set(CAUSE_CLASSES) == set(RootCauseClass)
    text = rules_text()
    docs = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    for cls, rec in CAUSE_CLASSES.items():
        meaning, remedy = rec.meaning, rec.remedy
        assert meaning and remedy
        assert f"  {cls}" in text and meaning in text
        assert f"| `{cls}` | {meaning} |" in docs
    assert "CRI-O" in CAUSE_CLASSES[RootCauseClass.CRI_STATUS_LOCK].meaning
    assert "CRI-O" in CAUSE_CLASSES[RootCauseClass.RUNTIME_LOCK_CONTENTION].meaning


def test_pd805_fires_on_a_hung_runc_with_its_dbus_connection_open() -> None:
    # runc#1959: SIGQUIT dump of a hung docker-runc; only godbus's reader/writer goroutines survive
    files = _case("runc-1959-systemd-dbus-usesystemd-hang-ps-sigquit", "runc-goroutines.txt")
    hits = assert_fires("PD805", files)
    assert hits[0].root_cause == C.SYSTEMD_DBUS_HANG
    assert "godbus" in hits[0].title


def test_pd805_quiet_on_a_hung_runc_without_dbus() -> None:
    assert_quiet("PD805", _case("containerd-1882-shim-state-ttrpc-runc-execfifo", "runc-goroutines.txt"))


def test_pd801_names_a_stat_blocked_46_minutes_a_hung_filesystem() -> None:
    # kubernetes#100178: `HH:MM:SS kubelet[pid]:` prefixes; fstatat for 46 minutes (callers cut)
    case = "k8s-100178-syncloop-islikelynotmountpoint-fstatat-nfs-time-only-prefix"
    hits = assert_fires("PD801", _case(case, "kubelet-goroutines.txt"))
    assert hits[0].root_cause == C.NETWORK_STORAGE_HANG
    assert "46 min" in hits[0].title


def test_pd310_fires_on_dockerd_mounting_a_volume_with_mount_options() -> None:
    # moby#26612: dockerd goroutine 195 in mount(2) from the local volume driver (an NFS volume)
    hits = assert_fires(
        "PD310", _case("moby-26612-dockerd-nfs-volume-mount-syscall-journald-split-line", "dockerd-goroutines.txt")
    )
    assert "mount(2)" in hits[0].title and hits[0].chain.links[0].goroutine == 195


def test_pd802_fires_on_tens_of_thousands_at_one_lock_site_in_aggregated_stacks() -> None:
    # moby#22322: `sort | uniq -c` of one-line stacks; no addresses, 65061 at (*State).IsRunning
    hits = assert_fires(
        "PD802",
        _case("moby-22322-dockerd-semacquire-uniq-c-aggregate-state-lock-libnetwork", "semaphore-trace-counts.txt"),
    )
    top = max(hits, key=lambda f: f.chain.blocked)
    assert top.root_cause == C.DOCKERD_LOCK and top.chain.blocked == 65061
    assert "IsRunning" in top.title


def test_pd802_quiet_on_a_few_goroutines_at_one_site_without_addresses(tmp_path: Path) -> None:
    """SYNTHETIC look-alike: the same one-line stack shape, 12 goroutines: one site is many
    locks (one per container), so a dozen there is ordinary traffic."""
    line = (
        "     12 < sync.runtime_Semacquire sync.(*Mutex).Lock github.com/docker/docker/container.(*State).IsRunning "
        "github.com/docker/docker/daemon.(*Daemon).ContainerStop\n"
    )
    assert_quiet("PD802", {"trace-counts.txt": line}, tmp_path)
