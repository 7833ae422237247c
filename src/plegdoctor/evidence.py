"""The evidence store parsers write into, and the context they parse with.

A parser is a function `parse(source: Source, ctx: ParseContext) -> None` (see
plegdoctor.parsers). It reads `source` as a stream, appends typed records to
`ctx.evidence` and counts what it read in `ctx.report` (the InputReport of that source).
Nothing here keeps raw lines: memory stays bounded however large the input.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plegdoctor.model import (
    CgroupFreeze,
    DiskSample,
    DiskStat,
    Event,
    HungTask,
    InputReport,
    LogRecord,
    Meminfo,
    MemoryFigures,
    MetricSample,
    Mount,
    NodeLoad,
    PressureSample,
    ProcCgroup,
    Ref,
    StallTrigger,
    TaskState,
    Versions,
)

if TYPE_CHECKING:
    from plegdoctor.timeutil import TimeContext

# A cap on kept log records (errors/warnings) so a log full of errors stays bounded.
MAX_LOG_RECORDS = 20_000


class RelistSeries:
    """Compact store of kubelet `GenericPLEG: Relisting` ticks.

    Times are float epoch seconds (UTC); each tick keeps its source id and line. The line
    text is kept only where `keep_text` is set (the parser keeps it for ticks that border
    a long interval, which are the ones a report quotes), so 10^6 ticks cost ~20 MB.
    """

    __slots__ = ("line", "sources", "src", "texts", "ts")

    def __init__(self) -> None:
        self.ts = array("d")
        self.src = array("i")
        self.line = array("q")
        self.texts: dict[int, str] = {}
        self.sources: list[str] = []

    def source_id(self, path: str) -> int:
        try:
            return self.sources.index(path)
        except ValueError:
            self.sources.append(path)
            return len(self.sources) - 1

    def append(self, ts: float, src: int, line: int, text: str | None = None) -> None:
        if text is not None:
            self.texts[len(self.ts)] = text
        self.ts.append(ts)
        self.src.append(src)
        self.line.append(line)

    def keep_text(self, index: int, text: str) -> None:
        self.texts[index] = text

    def __len__(self) -> int:
        return len(self.ts)

    def ref(self, index: int) -> Ref:
        return Ref(self.sources[self.src[index]], self.line[index], self.texts.get(index, ""))


@dataclass
class Evidence:
    """Everything parsed from all inputs, by type."""

    inputs: list[InputReport] = field(default_factory=list)
    relists: RelistSeries = field(default_factory=RelistSeries)
    events: list[Event] = field(default_factory=list)
    log_records: list[LogRecord] = field(default_factory=list)
    dumps: list[Any] = field(default_factory=list)  # plegdoctor.goroutines.model.Dump
    pressure: list[PressureSample] = field(default_factory=list)
    diskstats: list[DiskStat] = field(default_factory=list)
    disk_samples: list[DiskSample] = field(default_factory=list)
    meminfo: list[Meminfo] = field(default_factory=list)
    memory: list[MemoryFigures] = field(default_factory=list)  # total/available from top or free
    vmstat: list[tuple[Any, dict[str, int], Ref]] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    hung_tasks: list[HungTask] = field(default_factory=list)
    tasks: list[TaskState] = field(default_factory=list)
    runtime_configs: list[Any] = field(default_factory=list)  # plegdoctor.parsers.runtime_config
    versions: list[Versions] = field(default_factory=list)
    metrics: list[MetricSample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # global inferences, e.g. time zone
    # {bundle member path: kind} from a bundle's manifest.json (read before the members)
    manifest_kinds: dict[str, str] = field(default_factory=dict)
    boot_time: float | None = None  # epoch seconds, from a bundle manifest (dmesg stamps)
    # why a bundle was captured (manifest `trigger`: the relist probe's stalled call)
    triggers: list[StallTrigger] = field(default_factory=list)
    cgroup_freezes: list[CgroupFreeze] = field(default_factory=list)  # cgroup.freeze / freezer.state
    proc_cgroups: list[ProcCgroup] = field(default_factory=list)  # /proc/<pid>/cgroup lines
    loads: list[NodeLoad] = field(default_factory=list)  # load average and CPU count

    def add_log_record(self, rec: LogRecord) -> None:
        if len(self.log_records) < MAX_LOG_RECORDS:
            self.log_records.append(rec)


@dataclass
class ParseContext:
    """What a parser gets besides its source."""

    evidence: Evidence
    report: InputReport
    time: TimeContext
    options: dict[str, Any] = field(default_factory=dict)
