# ruff: noqa: E501  (log and goroutine lines are quoted with their real lengths)
"""PD2xx (containerd locks: CRI status locks, bbolt, metadata GC, convoys): each rule fires on a
real or internally consistent case and stays quiet on a plausible look-alike.

Dumps come from tests/fixtures/goroutines (their README says which are verbatim) and
tests/incidents; the two built for these tests are in tests/fixtures/rules/ and named
*-SYNTHETIC.txt (frames copied from real containerd dumps, the holder's caller changed)."""

from __future__ import annotations

from pathlib import Path

from rulecheck import assert_fires, assert_quiet

TESTS = Path(__file__).resolve().parent
GOROUTINES = TESTS / "fixtures" / "goroutines"
RULES = TESTS / "fixtures" / "rules"
INCIDENTS = TESTS / "incidents"

STALL_16 = (
    GOROUTINES / "containerd-1.6-stall-go1.19-raw.txt"
)  # ListContainers <- status lock <- update <- bbolt <- content fsync
UPDATE_VIA_SHIM = (
    GOROUTINES / "containerd-1.7-update-via-shim-go1.22-raw.txt"
)  # status lock held across the shim's Update
STATUS_FSYNC_21 = (
    GOROUTINES / "containerd-2.1-status-fsync-go1.24-raw.txt"
)  # status lock held across the checkpoint fsync
HEALTHY_1620 = GOROUTINES / "containerd-1.6.20-go1.19-sigusr1-raw.txt"  # a real idle containerd 1.6.20
EXIT_HOLDS_LOCK = RULES / "containerd-2.1-exit-handler-status-fsync-SYNTHETIC.txt"
CONVOY = RULES / "containerd-1.6-label-store-convoy-SYNTHETIC.txt"
BBOLT_06 = INCIDENTS / "06-bbolt-lock-contention" / "tmp" / "containerd.911.stacks.log"
GC_08 = INCIDENTS / "08-runtime-lock-contention-gc" / "containerd-goroutines.txt"


def _without(path: Path, *goroutines: int) -> str:
    """The dump without the given goroutines (blocks are separated by blank lines)."""
    heads = tuple(f"goroutine {g} [" for g in goroutines)
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(b for b in blocks if not b.lstrip().startswith(heads))


def _keep(path: Path, *goroutines: int) -> str:
    heads = tuple(f"goroutine {g} [" for g in goroutines)
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(b for b in blocks if b.lstrip().startswith(heads)) + "\n"


# -- PD201 CRI read blocked on a status lock ---------------------------------------------


def test_pd201_fires_on_listcontainers_waiting_for_a_status_lock() -> None:
    hits = assert_fires("PD201", [STALL_16])
    assert "ListContainers" in hits[0].title


def test_pd201_quiet_on_an_idle_containerd() -> None:
    # a real SIGUSR1 dump of containerd 1.6.20 with its CRI server idle
    assert_quiet("PD201", [HEALTHY_1620])


def test_pd201_quiet_when_the_status_lock_holder_has_no_reader_waiting(tmp_path: Path) -> None:
    # the update that holds the lock is there, the ListContainers/ContainerStatus readers are not
    assert_quiet("PD201", {"containerd.stacks.log": _without(STALL_16, 1665, 1690, 1701)}, tmp_path)


# -- PD202 status lock held by UpdateContainerResources ----------------------------------


def test_pd202_fires_on_update_container_resources_holding_the_lock_across_the_shim_update() -> None:
    hits = assert_fires("PD202", [UPDATE_VIA_SHIM])
    assert "UpdateContainerResources holds a status lock" in hits[0].title


def test_pd202_quiet_when_the_lock_is_held_by_exit_handling() -> None:
    # the same status lock convoy, but the holder is the TaskExit handler's checkpoint write
    assert_quiet("PD202", [EXIT_HOLDS_LOCK])


# -- PD203 status lock held by container exit handling ----------------------------------


def test_pd203_fires_on_the_exit_handler_holding_the_status_lock() -> None:
    hits = assert_fires("PD203", [EXIT_HOLDS_LOCK])
    assert "exit handling" in hits[0].title


def test_pd203_quiet_when_exit_handling_waits_for_the_shim_without_the_status_lock() -> None:
    # handleContainerExit waits in the shim's Delete, but the status lock readers wait for an
    # UpdateContainerResources: exit handling is not the holder
    assert_quiet("PD203", [STALL_16])


# -- PD204 long UpdateContainerResources in containerd's log -----------------------------


_UPDATE = 'Sep 02 14:40:{s} gpu-node-03 containerd[1022]: {{"level":"info","msg":"UpdateContainerResources for \\"e2c91f0d5a7a6b14c3f8f1c0d2b9a7e6f5d4c3b2a1908f7e6d5c4b3a29180f7e\\"{what}","time":"2024-09-02T14:40:{t}Z"}}'


def test_pd204_fires_on_an_update_that_never_returns_in_the_log() -> None:
    inc = INCIDENTS / "07-cri-status-lock-update-resources"
    hits = assert_fires("PD204", [inc / "containerd.journal", inc / "kubelet.journal"])
    assert "e2c91f0d5a7a" in hits[0].title


def test_pd204_quiet_on_an_update_that_returns_in_210ms(tmp_path: Path) -> None:
    # SYNTHETIC lines in containerd's JSON format: start and `returns successfully` 0.21 s apart
    text = "\n".join(
        [
            _UPDATE.format(
                s="30.861059",
                t="30.860911407",
                what=" with Linux: &LinuxContainerResources{CpuPeriod:100000,CpuQuota:0,CpuShares:2,MemoryLimitInBytes:0,OomScoreAdj:0,CpusetCpus:0-3,56-59,CpusetMems:,HugepageLimits:[]*HugepageLimit{},Unified:map[string]string{},MemorySwapLimitInBytes:0,} / Windows: nil",
            ),
            _UPDATE.format(s="31.071380", t="31.071204117", what=" returns successfully"),
        ]
    )
    assert_quiet("PD204", {"containerd.journal": text + "\n"}, tmp_path, year=2024)


# -- PD205 bbolt writer queue, holder not in I/O -----------------------------------------


def test_pd205_fires_on_requests_queued_on_bbolts_writer_lock() -> None:
    assert_fires("PD205", [BBOLT_06])


def test_pd205_quiet_when_the_writer_lock_holder_is_in_fsync() -> None:
    # the holder is visible and doing I/O: that is PD206's case, not an unexplained queue
    assert_quiet("PD205", [STALL_16])


# -- PD206 bbolt writer lock held across fsync -------------------------------------------


def test_pd206_fires_on_a_content_commit_fsyncing_inside_the_bbolt_transaction() -> None:
    hits = assert_fires("PD206", [STALL_16])
    assert "content commit" in hits[0].title


def test_pd206_quiet_when_the_holder_is_not_in_io() -> None:
    assert_quiet("PD206", [BBOLT_06])


def test_pd206_quiet_on_a_lone_commit_in_fsync_nobody_waits_for(tmp_path: Path) -> None:
    # the blob commit in fsync (goroutine 1268) without the goroutines queued on bbolt's lock
    assert_quiet("PD206", {"containerd.stacks.log": _keep(STALL_16, 1, 1268)}, tmp_path)


# -- PD207 status checkpoint fsync under the status write lock --------------------------


def test_pd207_fires_on_the_status_checkpoint_fsync_under_the_lock() -> None:
    hits = assert_fires("PD207", [STATUS_FSYNC_21])
    assert "fsync" in hits[0].title


def test_pd207_quiet_when_the_status_lock_is_held_across_a_shim_call() -> None:
    assert_quiet("PD207", [UPDATE_VIA_SHIM])


# -- PD208 metadata GC lock convoy -------------------------------------------------------


def test_pd208_fires_on_gc_waiting_for_the_metadata_write_lock() -> None:
    hits = assert_fires("PD208", [GC_08])
    assert "GC" in hits[0].title


def test_pd208_quiet_on_metadata_updates_without_a_gc(tmp_path: Path) -> None:
    # the same dump without the GarbageCollect goroutine: readers of wlock, no writer waiting
    assert_quiet("PD208", {"containerd-goroutines.txt": _without(GC_08, 9120)}, tmp_path)


# -- PD209 containerd lock convoy -----------------------------------------------------------


def test_pd209_fires_on_six_goroutines_queued_behind_one_holder() -> None:
    hits = assert_fires("PD209", [CONVOY])
    assert "6 goroutines blocked" in hits[0].title


def test_pd209_quiet_on_two_waiters(tmp_path: Path) -> None:
    # two RunPodSandbox calls behind the holder: contention, not a convoy of 5 or more
    assert_quiet("PD209", {"containerd.stacks.log": _keep(CONVOY, 4090, 4100, 4101)}, tmp_path)


def test_pd209_quiet_on_a_known_chain() -> None:
    # many goroutines behind one status lock are PD201/PD202's chain, not an unnamed convoy
    assert_quiet("PD209", [STALL_16])
