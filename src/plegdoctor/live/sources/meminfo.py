"""/proc/meminfo (`proc/meminfo`, read by plegdoctor.parsers.meminfo): sampled every watch period;
Dirty and Writeback exported as pleg_doctor_memory_{dirty,writeback}_bytes."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from plegdoctor.evidence import Evidence
from plegdoctor.live.samples import METRIC_PREFIX, NodeSnapshot, SampleState

METRIC_NAMES = (METRIC_PREFIX + "memory_dirty_bytes", METRIC_PREFIX + "memory_writeback_bytes")


def update(snap: NodeSnapshot, evidence: Evidence | None, state: SampleState) -> None:
    if evidence is None:
        return
    for m in evidence.meminfo[-1:]:
        snap.meminfo = {"Dirty": m.dirty_kb * 1024, "Writeback": m.writeback_kb * 1024}
        if m.mem_total_kb is not None:
            snap.meminfo["MemTotal"] = m.mem_total_kb * 1024
        if m.mem_available_kb is not None:
            snap.meminfo["MemAvailable"] = m.mem_available_kb * 1024


def metrics(node: NodeSnapshot) -> Iterator[Metric]:
    if "Dirty" in node.meminfo:
        yield GaugeMetricFamily(METRIC_PREFIX + "memory_dirty_bytes", "Dirty page cache", value=node.meminfo["Dirty"])
    if "Writeback" in node.meminfo:
        yield GaugeMetricFamily(
            METRIC_PREFIX + "memory_writeback_bytes", "Page cache under writeback", value=node.meminfo["Writeback"]
        )
