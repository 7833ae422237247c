"""Samples of /proc files as watch and collect keep them, and what a sample says once parsed.

A raw sample (`RawSample`) is a file's content and the time it was read; rendered, it is the
pleg-doctor sample format that the psi/diskstats/meminfo/vmstat parsers read:

    # pleg-doctor sample <RFC 3339 time> <path>
    <file content verbatim>

`parse_sample` runs the registered parser of the sample's kind over that rendering (the same
code `analyze` runs over a bundle), so the live figures and a bundle's analysis read the
files one way. The figures watch exports for one tick are a `NodeSnapshot`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

from plegdoctor import parsers
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import Source
from plegdoctor.model import DiskStat, InputReport
from plegdoctor.timeutil import TimeContext

METRIC_PREFIX = "pleg_doctor_"  # every metric watch exports (live/exporter.py)


@dataclass(frozen=True, slots=True)
class RawSample:
    ts: float
    path: str
    text: str

    def render(self) -> str:
        stamp = datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = self.text if self.text.endswith("\n") else self.text + "\n"
        return f"# pleg-doctor sample {stamp} {self.path}\n{body}"


def parse_sample(kind: str, sample: RawSample) -> Evidence:
    """The records the parser of `kind` (a parsers.PARSERS key) reads from `sample`."""
    data = sample.render().encode("utf-8", "replace")
    source = Source(sample.path, sample.ts, len(data), kind_override=kind, _stream=io.BytesIO(data))  # type: ignore[arg-type]
    evidence = Evidence()
    ctx = ParseContext(evidence, InputReport(sample.path, kind), TimeContext())
    parsers.get(kind).parse(source, ctx)
    return evidence


@dataclass(frozen=True, slots=True)
class DiskRates:
    device: str
    util: float  # 0..1 (io_ticks delta / elapsed)
    reads_per_s: float
    writes_per_s: float
    write_kib_per_s: float
    read_await_s: float
    write_await_s: float
    in_flight: int


def disk_rates(prev: dict[str, DiskStat], cur: dict[str, DiskStat], elapsed: float) -> list[DiskRates]:
    """iostat-style figures from two diskstats samples (parsed records) `elapsed` seconds apart."""
    out: list[DiskRates] = []
    if elapsed <= 0:
        return out
    for dev, c in cur.items():
        p = prev.get(dev)
        if p is None:
            continue
        reads, writes = max(0, c.reads - p.reads), max(0, c.writes - p.writes)
        out.append(
            DiskRates(
                device=dev,
                util=min(1.0, max(0, c.io_ticks_ms - p.io_ticks_ms) / 1000.0 / elapsed),
                reads_per_s=reads / elapsed,
                writes_per_s=writes / elapsed,
                write_kib_per_s=max(0, c.sectors_written - p.sectors_written) * 512 / 1024 / elapsed,
                read_await_s=(max(0, c.ms_reading - p.ms_reading) / reads / 1000.0) if reads else 0.0,
                write_await_s=(max(0, c.ms_writing - p.ms_writing) / writes / 1000.0) if writes else 0.0,
                in_flight=c.in_flight,
            )
        )
    return out


@dataclass
class NodeSnapshot:
    """The node figures of one watch tick (read by live/exporter at scrape time)."""

    ts: float
    psi: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # resource -> some/full -> values
    disks: list[DiskRates] = field(default_factory=list)
    meminfo: dict[str, int] = field(default_factory=dict)  # key -> bytes
    errors: list[str] = field(default_factory=list)


@dataclass
class SampleState:
    """What the sampler keeps between ticks for the sources' `update` functions."""

    proc: str = "/proc"
    sys_block: str = "/sys/block"
    psi_available: bool | None = None
    prev_disk: tuple[float, dict[str, DiskStat]] | None = None
