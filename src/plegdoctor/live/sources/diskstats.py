"""/proc/diskstats (`proc/diskstats`, read by plegdoctor.parsers.diskstats): sampled every watch
period; two samples give iostat-like figures per whole disk (pleg_doctor_disk_*)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from plegdoctor.evidence import Evidence
from plegdoctor.live.samples import METRIC_PREFIX, NodeSnapshot, SampleState, disk_rates

# whole-disk names worth exporting; partitions and pseudo devices are skipped
_SKIP_PREFIXES = ("loop", "ram", "zram", "fd", "sr", "nbd")
MAX_DISKS = 16  # the busiest disks exported
METRIC_NAMES = tuple(
    METRIC_PREFIX + n
    for n in ("disk_utilization_ratio", "disk_write_await_seconds", "disk_writes_per_second", "disk_in_flight")
)


def is_whole_disk(name: str, sys_block: str = "/sys/block") -> bool:
    if name.startswith(_SKIP_PREFIXES):
        return False
    return Path(sys_block, name).exists()


def update(snap: NodeSnapshot, evidence: Evidence | None, state: SampleState) -> None:
    if evidence is None:
        return
    cur = {d.device: d for d in evidence.diskstats if is_whole_disk(d.device, state.sys_block)}
    if state.prev_disk is not None:
        snap.disks = disk_rates(state.prev_disk[1], cur, snap.ts - state.prev_disk[0])
    state.prev_disk = (snap.ts, cur)


def metrics(node: NodeSnapshot) -> Iterator[Metric]:
    util = GaugeMetricFamily(
        METRIC_PREFIX + "disk_utilization_ratio", "Disk busy time ratio (iostat %util/100)", labels=["device"]
    )
    wawait = GaugeMetricFamily(
        METRIC_PREFIX + "disk_write_await_seconds", "Mean write latency over the last period", labels=["device"]
    )
    wps = GaugeMetricFamily(METRIC_PREFIX + "disk_writes_per_second", "Completed writes per second", labels=["device"])
    infl = GaugeMetricFamily(METRIC_PREFIX + "disk_in_flight", "I/Os in flight", labels=["device"])
    for d in sorted(node.disks, key=lambda d: -d.util)[:MAX_DISKS]:
        util.add_metric([d.device], d.util)
        wawait.add_metric([d.device], d.write_await_s)
        wps.add_metric([d.device], d.writes_per_s)
        infl.add_metric([d.device], d.in_flight)
    yield from (util, wawait, wps, infl)
