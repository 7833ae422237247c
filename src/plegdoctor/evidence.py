"""The evidence store parsers write into, and the context they parse with.

A parser is a function `parse(source: Source, ctx: ParseContext) -> None` (see
plegdoctor.parsers). It reads `source` as a stream, appends typed records to
`ctx.evidence` and counts what it read in `ctx.report` (the InputReport of that source).
Nothing here keeps raw lines: memory stays bounded however large the input.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plegdoctor.model import (
    CgroupFreeze,
    DiskSample,
    DiskStat,
    Event,
    EventKind,
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
# Events kept per kind (the first half and the last half of them; the rest are counted).
MAX_EVENTS_PER_KIND = 20_000


@dataclass
class DroppedEvents:
    """Events of one kind that were counted but not kept (between the kept head and tail)."""

    count: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def add(self, ts: datetime | None) -> None:
        self.count += 1
        if ts is not None:
            if self.first is None or ts < self.first:
                self.first = ts
            if self.last is None or ts > self.last:
                self.last = ts


# An event past the kept head of its kind, not built yet: (ts, kind, process, path, line,
# quoted text, attrs to copy). Most of them are dropped before `seal` (see EventList.defer).
_Deferred = tuple[datetime | None, EventKind, str, str, int, str, dict[str, Any]]


class EventList(list[Event]):
    """The events list, bounded per kind: the first `cap // 2` events of a kind and its
    last `cap - cap // 2` are kept, those between are counted in `dropped` (count and
    first/last time), and `counts` has every kind's exact total. Parsers `append` as to
    a list (or `defer`, which builds an event only if it may be kept); `seal()` (after the
    last input) puts the kept tails in place."""

    def __init__(self, cap: int = MAX_EVENTS_PER_KIND) -> None:
        super().__init__()
        self.cap = cap
        self.counts: dict[str, int] = {}
        self.dropped: dict[str, DroppedEvents] = {}
        self._tails: dict[str, deque[Event | _Deferred]] = {}

    def _tail(self, kind: str) -> deque[Event | _Deferred]:
        tail = self._tails.get(kind)
        if tail is None:
            tail = self._tails[kind] = deque(maxlen=max(self.cap - self.cap // 2, 1))
        elif len(tail) == tail.maxlen:
            first = tail[0]
            dropped = self.dropped.get(kind)
            if dropped is None:
                dropped = self.dropped[kind] = DroppedEvents()
            dropped.add(first.ts if isinstance(first, Event) else first[0])
        return tail

    def append(self, event: Event) -> None:
        kind = str(event.kind)
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n <= self.cap // 2:
            super().append(event)
            return
        self._tail(kind).append(event)

    def defer(
        self, ts: datetime | None, kind: EventKind, process: str, path: str, line: int, text: str, attrs: dict[str, Any]
    ) -> bool:
        """`append(Event(ts, kind, process, Ref(path, line, text), dict(attrs)))` for an
        event past the kept head of its kind: counted, and built at `seal` only if it is in
        the kept tail (a log with 10^5 errors of one kind builds 10^4 events, not 10^5).
        False (nothing done): the event goes to the head, build and `append` it."""
        name = str(kind)
        n = self.counts.get(name, 0) + 1
        if n <= self.cap // 2:
            return False
        self.counts[name] = n
        self._tail(name).append((ts, kind, process, path, line, text, attrs))
        return True

    def extend(self, events: Any) -> None:
        for e in events:
            self.append(e)

    def seal(self) -> None:
        refs: dict[tuple[str, int, str], Ref] = {}  # the events of one line share its Ref
        for tail in self._tails.values():
            for item in tail:
                if type(item) is tuple:
                    ts, kind, process, path, line, text, attrs = item
                    ref = refs.get((path, line, text))
                    if ref is None:
                        ref = refs[(path, line, text)] = Ref(path, line, text)
                    super().append(Event(ts, kind, process, ref, dict(attrs)))
                else:
                    super().append(item)  # type: ignore[arg-type]
            tail.clear()


class RelistSeries:
    """Compact store of kubelet `GenericPLEG: Relisting` ticks.

    Times are float epoch seconds (UTC); each tick keeps its source id and line. The line
    text is kept only where `keep_text` is set (the parser keeps it for ticks that border
    a long interval, which are the ones a report quotes), so 10^6 ticks cost ~20 MB.
    """

    __slots__ = ("_ids", "line", "sources", "src", "texts", "ts")

    def __init__(self) -> None:
        self.ts = array("d")
        self.src = array("i")
        self.line = array("q")
        self.texts: dict[int, str] = {}
        self.sources: list[str] = []
        self._ids: dict[str, int] = {}

    def source_id(self, path: str) -> int:
        """The id of `path` in `sources` (a dict look-up: an archive has thousands)."""
        if len(self._ids) != len(self.sources):  # `sources` was set or changed from outside
            self._ids = {p: i for i, p in reversed(list(enumerate(self.sources)))}
        sid = self._ids.get(path)
        if sid is None:
            sid = self._ids[path] = len(self.sources)
            self.sources.append(path)
        return sid

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
    events: list[Event] = field(default_factory=EventList)  # bounded per kind (EventList)
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

    def seal(self) -> list[str]:
        """After the last input: put the kept event tails in place; one line per event
        kind that was capped (for the report's warnings)."""
        if not isinstance(self.events, EventList):
            return []
        self.events.seal()
        out = []
        for kind, d in sorted(self.events.dropped.items()):
            span = f" ({d.first.isoformat()} .. {d.last.isoformat()})" if d.first and d.last else ""
            out.append(
                f"{self.events.counts[kind]} {kind} events: kept the first and last {self.events.cap // 2}, "
                f"counted {d.count} between{span} (raise --max-events-per-kind)"
            )
        return out

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
