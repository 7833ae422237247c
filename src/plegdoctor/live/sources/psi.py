"""Pressure stall information, /proc/pressure/{io,memory,cpu} (`proc/pressure/<resource>`,
read by plegdoctor.parsers.psi): sampled every watch period; exported as
pleg_doctor_pressure_avg10_ratio and pleg_doctor_pressure_stalled_seconds_total."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from plegdoctor.evidence import Evidence
from plegdoctor.live.samples import METRIC_PREFIX, NodeSnapshot, SampleState

RESOURCES = ("io", "memory", "cpu")
METRIC_NAMES = (METRIC_PREFIX + "pressure_avg10_ratio", METRIC_PREFIX + "pressure_stalled_seconds_total")


def updater(resource: str) -> Callable[[NodeSnapshot, Evidence | None, SampleState], None]:
    """The `update` of /proc/pressure/<resource>: its some/full figures into the snapshot."""

    def update(snap: NodeSnapshot, evidence: Evidence | None, state: SampleState) -> None:
        if resource == "io":  # PSI is there when the io file is (a kernel with psi=0 has none)
            state.psi_available = evidence is not None
        if evidence is None:
            if resource == "io":
                snap.errors.append(f"{state.proc}/pressure/io unreadable (kernel without PSI, or psi=0)")
            return
        for s in evidence.pressure[-1:]:
            kinds = {"some": {"avg10": s.some_avg10, "avg60": s.some_avg60, "avg300": s.some_avg300}}
            kinds["some"]["total"] = float(s.some_total_us)
            if s.full_avg10 is not None and s.full_total_us is not None:
                kinds["full"] = {
                    "avg10": s.full_avg10,
                    "avg60": s.full_avg60 or 0.0,
                    "avg300": s.full_avg300 or 0.0,
                    "total": float(s.full_total_us),
                }
            snap.psi[resource] = kinds

    return update


def metrics(node: NodeSnapshot) -> Iterator[Metric]:
    """The PSI families of all resources (one function for the three /proc/pressure lines)."""
    avg = GaugeMetricFamily(
        METRIC_PREFIX + "pressure_avg10_ratio", "PSI avg10 as a ratio (0..1)", labels=["resource", "kind"]
    )
    total = CounterMetricFamily(
        METRIC_PREFIX + "pressure_stalled_seconds", "PSI total stall time", labels=["resource", "kind"]
    )
    for res, kinds in sorted(node.psi.items()):
        for kind, vals in sorted(kinds.items()):
            if "avg10" in vals:
                avg.add_metric([res, kind], vals["avg10"] / 100.0)
            if "total" in vals:
                total.add_metric([res, kind], vals["total"] / 1e6)
    yield avg
    yield total
