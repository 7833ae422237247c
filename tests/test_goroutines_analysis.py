"""Wait-for analysis, holder inference, chains and buckets on real and crafted dumps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plegdoctor.goroutines import analyze
from plegdoctor.goroutines.chains import chain_text
from plegdoctor.goroutines.model import Similarity
from plegdoctor.goroutines.parse import parse_dump_binary
from plegdoctor.goroutines.render import render_html, render_json, render_text

FIX = Path(__file__).parent / "fixtures" / "goroutines"


def load(*names: str):
    dumps = []
    for name in names:
        with (FIX / name).open("rb") as fh:
            dumps += parse_dump_binary(fh, source=str(FIX / name))
    return analyze(dumps)


def chain_with(a, tag: str):
    return next(c for c in a.chains if tag in c.links[0].tags)


def test_seed_excerpts_rebuild_the_seed_chain() -> None:
    a = load("seed-ticket-excerpts-zh.txt")
    c = chain_with(a, "cri:ListContainers")
    assert chain_text(c) == (
        "CRI ListContainers -> container status read lock held by UpdateContainerResources -> "
        "bbolt writer lock (bbolt.DB@0xc0002f8fc0) held by the content writer Commit -> fsync"
    )
    assert [link.goroutine for link in c.links] == [1665, 1723, 1268]
    assert [link.kind for link in c.links] == ["rwmutex-read", "bbolt-writer", "fsync"]
    first, ucr, commit = c.links
    assert {"cri:ListContainers", "status-lock", "symptom"} <= first.tags
    assert {"update-container-resources", "status-lock", "bbolt-writer"} <= ucr.tags
    assert {"content-commit", "bbolt-writer", "fsync", "syscall:fsync"} <= commit.tags
    # the status-lock holder is inferred from updateContainerSpec (excerpt cut): lower confidence
    assert ucr.confidence < 0.6 < commit.confidence
    # bbolt lock identity: the same metadata DB address in both goroutines
    assert "same lock address" in a.wait_of((0, 1723)).reason
    # every link quotes its evidence by line
    lines = (FIX / "seed-ticket-excerpts-zh.txt").read_text().split("\n")
    assert "goroutine 1665 [semacquire]:" in lines[first.evidence[0].line - 1]
    # the shim side: task-exit -> ttrpc Task.Delete -> shim Delete -> umount
    t = chain_with(a, "task-exit")
    assert [(link.process, link.goroutine) for link in t.links] == [
        ("containerd", 1654),
        ("containerd-shim-runc-v2", 104),
    ]
    assert {"ttrpc:Task.Delete", "task-exit"} <= t.links[0].tags
    assert {"shim:Delete", "umount", "syscall:umount2", "shim-init-mutex"} <= t.links[1].tags


def test_full_16_stall_matches_lock_addresses_and_counts_the_convoy() -> None:
    a = load("containerd-1.6-stall-go1.19-raw.txt", "shim-runc-v2-1.6-delete-umount-raw.txt")
    c = a.chains[0]
    assert [link.goroutine for link in c.links][1:] == [1723, 1268]
    assert c.links[1].confidence >= 0.9  # UpdateSync frame visible, same statusStorage address
    assert c.blocked == 5  # 1665, 1690, 1701 (status lock) + 1723, 1802 (bbolt) behind the commit
    assert c.max_wait_minutes == 3
    w = {(x.dump, x.goroutine): x for x in a.waits}
    assert w[(0, 1665)].resource == "container status read lock (container.statusStorage@0xc00058a880)"
    assert w[(0, 1802)].holder == (0, 1268) and w[(0, 1802)].kind == "bbolt-writer"
    assert w[(0, 1268)].syscall == "fsync"  # decoded from the accurate trap number 0x4a
    # shim: State waits for Init.mu held by Delete, which is in umount2 (0xa6)
    shim = next(i for i, d in enumerate(a.dumps) if d.process == "containerd-shim-runc-v2")
    assert w[(shim, 112)].holder == (shim, 104)
    assert w[(shim, 104)].syscall == "umount2"


def test_19770_update_through_the_shim_across_processes() -> None:
    a = load(
        "containerd-1.7-update-via-shim-go1.22-raw.txt",
        "shim-runc-v2-1.7-update-waits-delete-go1.22-raw.txt",
    )
    c = chain_with(a, "cri:ListContainers")
    assert [(link.process, link.goroutine) for link in c.links] == [
        ("containerd", 5121),
        ("containerd", 5044),
        ("containerd-shim-runc-v2", 83),
        ("containerd-shim-runc-v2", 71),
    ]
    assert [link.kind for link in c.links] == ["rwmutex-read", "ttrpc-call", "mutex", "syscall"]
    assert "ttrpc:Task.Update" in c.links[1].tags and "shim:Update" in c.links[2].tags
    assert {"shim:Delete", "umount", "shim-init-mutex"} <= c.links[3].tags
    assert a.dumps[0].go_version == ">= 1.21"
    # the symptom chain ranks first: it blocks everything behind the shim's Delete
    assert a.chains[0] is c and c.blocked == 4


def test_2x_status_checkpoint_fsync_and_bbolt_commit_io() -> None:
    a = load("containerd-2.1-status-fsync-go1.24-raw.txt")
    c = chain_with(a, "cri:ListContainers")
    assert [link.goroutine for link in c.links] == [8812, 8790]
    assert c.links[1].kind == "fsync" and "update-container-resources" in c.links[1].tags
    w = {x.goroutine: x for x in a.waits}
    assert w[8801].kind == "bbolt-commit-io" and w[8801].syscall == "fdatasync"
    assert w[8806].kind == "bbolt-writer" and w[8806].holder == (0, 8801)  # internal/sync frames (Go 1.24)
    assert "task-exit" in a.infos[(0, 8801)].tags


def test_dockerd_container_lock() -> None:
    a = load("goroutine-stacks-2024-03-05T101500Z.log")
    assert a.dumps[0].process == "dockerd"
    c = a.chains[0]
    assert [link.goroutine for link in c.links] == [30671, 30544]
    assert "dockerd-container-lock" in c.links[0].tags and "task-exit" in c.links[1].tags
    assert c.links[1].kind == "grpc-call"


def test_kubelet_pleg_relist_blocked_on_its_channel() -> None:
    a = load("kubelet-1.20-pleg-relist-chan-send-go1.15-sigquit.txt")
    assert a.dumps[0].process == "kubelet"
    c = a.chains[0]
    assert [link.goroutine for link in c.links] == [412, 398]
    assert {"kubelet-relist", "symptom"} <= c.links[0].tags
    assert "kubelet-syncloop" in c.links[1].tags and c.links[1].kind == "mutex"


def test_idle_real_dumps_have_no_chains_and_no_false_holders() -> None:
    a = load("containerd-1.7.24-go1.24-sigusr1-raw.txt", "containerd-1.6.20-go1.19-with-cri-pod-raw.txt")
    assert a.chains == []
    assert all(w.holder is None for w in a.waits)


def test_syscall_decoding_from_wrapper_when_number_is_inaccurate() -> None:
    a = load("seed-ticket-excerpts-zh.txt")
    w = {x.goroutine: x for x in a.waits}
    assert w[104].syscall == "umount2"  # syscall.Syscall(0x7c?, ...) -> unix.Unmount
    assert w[1268].syscall == "fsync"  # syscall.Syscall(0x0?, ...) -> syscall.Fsync


def test_buckets_similarity_levels_and_ranges() -> None:
    with (FIX / "containerd-1.6-stall-go1.19-raw.txt").open("rb") as fh:
        dumps = parse_dump_binary(fh, source="x")
    by_pointer = analyze(dumps, similarity=Similarity.ANY_POINTER).buckets
    exact = analyze(dumps, similarity=Similarity.EXACT_FLAGS).buckets
    assert len(exact) == len(by_pointer) + 1
    b = next(b for b in by_pointer if 1665 in b.ids)
    assert sorted(b.ids) == [1665, 1690] and (b.wait_min, b.wait_max) == (2, 3)


def test_json_contract() -> None:
    a = load("containerd-1.6-stall-go1.19-raw.txt", "shim-runc-v2-1.6-delete-umount-raw.txt")
    data = json.loads(render_json(a))
    assert data["schema"] == "pleg-doctor/goroutines/v1"
    assert (
        data["goroutines"] == sum(len(d.goroutines) for d in a.dumps) == sum(p["goroutines"] for p in data["processes"])
    )
    assert {"state", "count", "ids", "wait_minutes", "frames"} <= set(data["buckets"][0])
    w = next(w for w in data["waits"] if w["goroutine"] == 1665)
    assert w["waits_for"]["kind"] == "rwmutex-read" and w["waits_for"]["holder"] == 1723
    link = data["chains"][0]["links"][0]
    assert {"kind", "process", "goroutine", "detail", "evidence", "confidence", "tags"} <= set(link)


def test_text_is_at_least_as_compact_as_panicparse() -> None:
    pp = shutil.which("panicparse") or shutil.which("pp")
    if pp is None:
        pytest.skip("panicparse not installed")
    for name in ("containerd-1.6-stall-go1.19-raw.txt", "containerd-1.7.24-go1.24-sigusr1-raw.txt"):
        path = FIX / name
        theirs = subprocess.run([pp, "-parse=false", str(path)], capture_output=True, text=True, check=True)
        ours = render_text(load(name))
        bucket_part = ours[ours.index("Buckets (") :].strip().split("\n")[1:]
        assert len(bucket_part) <= len((theirs.stdout + theirs.stderr).strip().split("\n"))


def test_html_is_self_contained() -> None:
    page = render_html(load("seed-ticket-excerpts-zh.txt"))
    assert page.startswith("<!doctype html>") and "</html>" in page
    assert "<script src" not in page and "<link " not in page
    assert "ListContainers" in page and "umount2" in page


def test_cli_outputs_and_bad_input(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "plegdoctor.cli", "goroutines"]
    seed = str(FIX / "seed-ticket-excerpts-zh.txt")
    out = subprocess.run([*cmd, seed, "-o", "json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["goroutines"] == 5
    txt = subprocess.run([*cmd, seed, "-m", "bbolt", "--min-wait", "0"], capture_output=True, text=True, check=True)
    buckets = txt.stdout[txt.stdout.index("Buckets (") :]
    assert "beginRWTx" in buckets and "(*taskClient).Delete" not in buckets
    notes = tmp_path / "notes.txt"
    notes.write_text("nothing to see here\n")
    bad = subprocess.run([*cmd, str(notes)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "no goroutines found" in bad.stderr and "notes.txt" in bad.stderr
    assert "Traceback" not in bad.stderr
