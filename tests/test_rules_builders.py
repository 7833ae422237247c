"""Builders for rule and diagnosis tests: evidence records and wait chains made by hand,
in the shapes the parsers and the goroutine engine produce (no tests in this module)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from plegdoctor.evidence import Evidence
from plegdoctor.model import Chain, ChainLink, Event, EventKind, InputReport, Ref, Versions

T0 = datetime(2023, 6, 2, 5, 47, 30, tzinfo=UTC)


def ref(path: str, line: int, text: str = "") -> Ref:
    return Ref(path, line, text)


def glink(
    process: str,
    goroutine: int,
    detail: str,
    tags: set[str],
    *,
    kind: str = "rwmutex-read",
    minutes: int | None = None,
    function: str | None = None,
    pid: int | None = None,
) -> ChainLink:
    return ChainLink(
        kind=kind,
        process=process,
        detail=detail,
        evidence=(ref(f"{process}-goroutines.txt", goroutine, f"goroutine {goroutine} [...]:"),),
        goroutine=goroutine,
        pid=pid,
        function=function,
        wait_minutes=minutes,
        tags=frozenset(tags),
    )


def chain(*links: ChainLink, blocked: int = 1, minutes: int | None = None, score: float = 1.0) -> Chain:
    return Chain(links=tuple(links), blocked=blocked, max_wait_minutes=minutes, score=score)


def seed_chains() -> list[Chain]:
    """The seed incident as the goroutine engine reports it (containerd 1.6.21 + its shim)."""
    list_wait = glink(
        "containerd",
        1665,
        "ListContainers waits for container status read lock",
        {"cri:ListContainers", "status-lock"},
        function="github.com/containerd/containerd/pkg/cri/store/container.(*statusStorage).Get",
    )
    update = glink(
        "containerd",
        1723,
        "UpdateContainerResources holds the status write lock and waits for bbolt's writer lock",
        {"cri:UpdateContainerResources", "update-container-resources", "status-lock", "bbolt-writer"},
        kind="bbolt-writer",
    )
    commit = glink(
        "containerd",
        1268,
        "content commit holds bbolt's writer lock and sits in fsync",
        {"bbolt-writer", "content-commit", "fsync", "image-pull", "syscall:fsync"},
        kind="syscall",
    )
    delete = glink(
        "containerd",
        1654,
        "TaskExit handling waits for the shim's task Delete",
        {"task-exit", "shim:Delete", "ttrpc:containerd.task.v2.Task.Delete"},
        kind="ttrpc-call",
    )
    umount = glink(
        "containerd-shim",
        104,
        "shim Delete unmounts the container rootfs (umount2)",
        {"shim:Delete", "umount", "syscall:umount2"},
        kind="syscall",
        pid=3660,
    )
    return [chain(list_wait, update, commit, blocked=3), chain(delete, umount, blocked=1)]


def add_relists(ev: Evidence, times: list[float], path: str = "kubelet.log") -> None:
    src = ev.relists.source_id(path)
    for i, t in enumerate(times):
        ev.relists.append((T0 + timedelta(seconds=t)).timestamp(), src, i + 1, f'"GenericPLEG: Relisting" {i}')


def relists_with_gap(ev: Evidence, gap_at: float = 37.0, gap: float = 42.3, total: float = 100.0) -> None:
    times = [float(t) for t in range(int(gap_at) + 1)]
    t = gap_at + gap
    while t <= total:
        times.append(t)
        t += 1.0
    add_relists(ev, times)


def event(kind: EventKind, process: str, at: float, line: int, path: str = "containerd.log", **attrs: Any) -> Event:
    return Event(T0 + timedelta(seconds=at), kind, process, ref(path, line, f"{kind} line"), attrs)


def seed_evidence() -> Evidence:
    ev = Evidence()
    ev.inputs.append(InputReport("kubelet.log", "kubelet-log", 100))
    relists_with_gap(ev)
    ev.versions.append(Versions(containerd="1.6.21", kernel="5.15.0", kubelet="v1.19", refs=(ref("versions.txt", 2),)))
    ev.events.append(
        event(
            EventKind.TASK_EXIT_FAILED,
            "containerd",
            47.0,
            1,
            container_id="8f71eadd772ffde7f9537998844aa3f7a8a4f15ec182a5943ef0d60f242b1929",
            error="failed to stop container: failed to delete task: context deadline exceeded: unknown",
        )
    )
    return ev
