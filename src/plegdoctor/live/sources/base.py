"""The record of one evidence source (`NodeSource`) and what its collect function gets (`CollectRun`).

A source says where its evidence lands (the bundle member), what kind of evidence it is (the
parser that reads it: `parsers.PARSERS[kind]`), what it reads, its bound and its deadline, and
how to collect it; a source watch samples every period also names its /proc file (`sample`),
how a parsed sample updates the snapshot (`update`) and the metric families it feeds (`metrics`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from prometheus_client.core import Metric

from plegdoctor import parsers
from plegdoctor.evidence import Evidence
from plegdoctor.live.actions import Actions, run_with_deadline
from plegdoctor.live.bundle import BundleWriter, MemberEntry
from plegdoctor.live.cri.client import DEFAULT_ENDPOINT
from plegdoctor.live.samples import NodeSnapshot, RawSample, SampleState

Deadline = Literal["step", "dump"]  # --step-timeout, or --dump-timeout + 1 s
MANIFEST_KIND = "bundle-manifest"  # a source written as a manifest key, not a member


@dataclass
class CollectOptions:
    output: str | None = None
    since: str = "2h"
    dump: bool = True
    runtime_endpoint: str = DEFAULT_ENDPOINT
    containerd_pid: int | None = None
    debug_socket: str | None = None
    step_timeout: float = 20.0
    dump_timeout: float = 10.0
    sample_interval: float = 1.0
    max_shims: int = 32
    # watch passes False: its probe already has a call pending on a hung runtime; never add more
    query_runtime: bool = True
    node: str = field(default_factory=lambda: os.environ.get("NODE_NAME") or os.uname().nodename)
    log: Callable[[str], None] | None = None


@dataclass
class CollectRun:
    """One collection: the bundle being written, the options, the actions taken, and the facts
    sources share (found once, on first use, in `facts`: the tasks, the runtime, its config)."""

    w: BundleWriter
    opts: CollectOptions
    since: datetime
    say: Callable[[str], None]
    # the recent raw samples per /proc path (watch's history, or collect's own two samples)
    samples: Callable[[], Mapping[str, Sequence[RawSample]]]
    actions: Actions = field(default_factory=Actions)
    facts: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.facts:
            self.facts[key] = fn()
        return self.facts[key]

    def seconds(self, deadline: Deadline) -> float:
        return self.opts.step_timeout if deadline == "step" else self.opts.dump_timeout + 1

    def step(
        self, path: str, kind: str | None, fn: Callable[[], Any], deadline: Deadline = "step", **meta: Any
    ) -> MemberEntry:
        """Add member `path` from `fn`, run under the deadline; a failure is the member's error."""
        timeout = self.seconds(deadline)
        entry = self.w.add_step(path, kind, lambda: run_with_deadline(fn, timeout, path), **meta)
        if entry.error:
            self.say(f"{path}: {entry.error}")
        return entry


@dataclass(frozen=True)
class NodeSource:
    """One evidence source: a line of `plegdoctor.live.sources.SOURCES`."""

    name: str
    member: str  # the bundle member (`<pid>`, `<i>`, `.journal|.log` where it varies); manifest.json#key
    kind: str  # the evidence kind: the parsers.PARSERS key of the parser that reads the member
    reads: str  # what is read or called on the node
    bound: int  # at most this many `unit`s are read
    unit: str
    deadline: Deadline | None  # None: read from memory (the samples) or a bounded /proc read
    collect: Callable[[CollectRun, NodeSource], None]
    sample: str | None = None  # the file under /proc watch reads every period
    update: Callable[[NodeSnapshot, Evidence | None, SampleState], None] | None = None
    # the metric families its figures feed (one function may serve several lines: called once), and their names
    metrics: Callable[[NodeSnapshot], Iterator[Metric]] | None = None
    metric_names: tuple[str, ...] = ()

    @property
    def parser(self) -> str:
        """The module that parses this source's evidence."""
        return parsers.PARSERS[self.kind]

    @property
    def proc_path(self) -> str:
        assert self.sample is not None
        return f"/proc/{self.sample}"


def write_series(run: CollectRun, src: NodeSource) -> None:
    """A sampled source's member: its recent samples in the pleg-doctor sample format."""
    path = src.proc_path
    samples = list(run.samples().get(path, ()))
    if samples:
        run.w.add_text(src.member, src.kind, [s.render() for s in samples], redact=False, source=path)
    else:
        run.w.add_failed(src.member, src.kind, f"{path} unreadable (kernel without it, or not mounted)", source=path)
