"""Figures of one lab run, the comparison of variants, and the pick of the best fix.

Definitions (the same for every variant, from the records of lab.workload):

- relist latency: one ListPodSandbox + ListContainers, as kubelet's PLEG makes it each second;
  p50 / p99 / max over the whole run.
- relist blocked time: the sum of the relists that took longer than one relist period (1 s),
  i.e. the time kubelet's PLEG would have spent waiting on the runtime.
- gaps over 3 s: relist intervals (start to next start) longer than 3 s, pleg-doctor analyze's
  default gap.
- StopContainer / UpdateContainerResources / PullImage: latency of the calls of the stall phase.
- umount: time a shim thread spent inside umount2(2) (sampled every 0.2 s from /proc), and the
  part of it spent in sync_filesystem (the overlay's syncfs).

The best variant is the one with the lowest worst relist; ties (within 10 %) go to the lower
blocked time, then to fewer mitigations (less to change on the node).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from plegdoctor.lab.workload import WorkloadResult

RELIST_PERIOD = 1.0
GAP_SECONDS = 3.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


@dataclass(slots=True)
class RunFigures:
    variant: str
    containerd: str
    volatile: bool
    mitigations: list[str]
    relists: int = 0
    relist_p50_seconds: float = 0.0
    relist_p99_seconds: float = 0.0
    relist_max_seconds: float = 0.0
    relist_blocked_seconds: float = 0.0
    relist_errors: int = 0
    gaps_over_3s: int = 0
    max_gap_seconds: float = 0.0
    stop_container_p50_seconds: float = 0.0
    stop_container_max_seconds: float = 0.0
    update_container_resources_p50_seconds: float = 0.0
    update_container_resources_max_seconds: float = 0.0
    pull_image_seconds: float = 0.0
    umount_max_seconds: float = 0.0
    umount_syncfs_seconds: float = 0.0
    stall_phase_seconds: float = 0.0
    disk_mb_per_s: float = 0.0
    bundle: str = ""  # the last capture: deepest into the worst stall
    bundles: list[str] = field(default_factory=list)
    diagnosis: str = ""
    diagnosis_summary: str = ""
    diagnosis_classes: list[str] = field(default_factory=list)
    expected_mechanism: str = ""
    diagnosis_matches: bool | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:  # type: ignore[attr-defined]
            v = getattr(self, name)
            out[name] = round(v, 3) if isinstance(v, float) else v
        return out


def figures(variant: str, containerd: str, volatile: bool, mitigations: list[str], res: WorkloadResult) -> RunFigures:
    f = RunFigures(variant=variant, containerd=containerd, volatile=volatile, mitigations=list(mitigations))
    lat = [r.seconds for r in res.relists]
    f.relists = len(lat)
    f.relist_p50_seconds = percentile(lat, 50)
    f.relist_p99_seconds = percentile(lat, 99)
    f.relist_max_seconds = max(lat, default=0.0)
    f.relist_blocked_seconds = sum(x for x in lat if x > RELIST_PERIOD)
    f.relist_errors = sum(1 for r in res.relists if r.error)
    starts = [r.start for r in res.relists]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    f.gaps_over_3s = sum(1 for g in gaps if g > GAP_SECONDS)
    f.max_gap_seconds = max(gaps, default=0.0)

    def calls(method: str) -> list[float]:
        return [c.seconds for c in res.calls if c.method == method and c.phase == "stall"]

    stops, updates, pulls = calls("StopContainer"), calls("UpdateContainerResources"), calls("PullImage")
    f.stop_container_p50_seconds = percentile(stops, 50)
    f.stop_container_max_seconds = max(stops, default=0.0)
    f.update_container_resources_p50_seconds = percentile(updates, 50)
    f.update_container_resources_max_seconds = max(updates, default=0.0)
    f.pull_image_seconds = max(pulls, default=0.0)
    stall = [u for u in res.umounts if res.stall_start <= u.start <= res.stall_end or u.end <= res.stall_end]
    f.umount_max_seconds = max((u.seconds for u in stall if u.what == "umount2"), default=0.0)
    f.umount_syncfs_seconds = max((u.seconds for u in stall if u.what == "syncfs"), default=0.0)
    f.stall_phase_seconds = res.stall_end - res.stall_start
    f.notes = list(res.notes)
    return f


def expected_mechanism(f: RunFigures) -> str:
    """The mechanism this variant should leave, from what was measured (not from its name):
    a shim blocked in syncfs during umount -> overlay-umount-sync; otherwise, a stall with no
    umount sync -> fsync-io-pressure (status checkpoint / bbolt fsync behind writeback)."""
    if f.umount_syncfs_seconds >= 1.0:
        return "overlay-umount-sync"
    return "fsync-io-pressure"


# classes that name the same mechanism one link further up or down the chain
COMPATIBLE = {
    "overlay-umount-sync": {"overlay-umount-sync"},
    "fsync-io-pressure": {"fsync-io-pressure", "bbolt-lock-contention", "disk-io-pressure"},
}


def best_variant(runs: list[RunFigures]) -> RunFigures | None:
    ok = [r for r in runs if not r.error and r.relists]
    if not ok:
        return None
    lowest = min(r.relist_max_seconds for r in ok)
    close = [r for r in ok if r.relist_max_seconds <= lowest * 1.1 + 0.05]
    return min(close, key=lambda r: (r.relist_blocked_seconds, len(r.mitigations), r.relist_max_seconds))


def to_json(runs: list[RunFigures], meta: dict[str, Any]) -> dict[str, Any]:
    best = best_variant(runs)
    return {
        "schema": "pleg-doctor/lab/v1",
        **meta,
        "runs": [r.to_json() for r in runs],
        "best": best.variant if best else None,
    }


def _s(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}s"
    if x >= 1:
        return f"{x:.1f}s"
    return f"{x * 1000:.0f}ms"


def render_text(runs: list[RunFigures], meta: dict[str, Any]) -> str:
    cols = [
        ("variant", lambda r: r.variant),
        ("ctrd", lambda r: r.containerd),
        ("relist p50", lambda r: _s(r.relist_p50_seconds)),
        ("p99", lambda r: _s(r.relist_p99_seconds)),
        ("max", lambda r: _s(r.relist_max_seconds)),
        ("blocked", lambda r: _s(r.relist_blocked_seconds)),
        ("gaps>3s", lambda r: str(r.gaps_over_3s)),
        ("Stop max", lambda r: _s(r.stop_container_max_seconds)),
        ("Update max", lambda r: _s(r.update_container_resources_max_seconds)),
        ("Pull", lambda r: _s(r.pull_image_seconds)),
        ("umount", lambda r: _s(r.umount_max_seconds)),
        ("diagnosis", lambda r: r.diagnosis or "-"),
    ]
    rows = [[name for name, _ in cols]]
    for r in runs:
        if r.error:
            rows.append([r.variant, r.containerd, "failed: " + r.error[:80]] + [""] * (len(cols) - 3))
        else:
            rows.append([fn(r) for _, fn in cols])
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(cols))]
    lines = []
    head = meta.get("title") or "pleg-doctor lab"
    lines.append(head)
    if meta.get("disk"):
        lines.append(meta["disk"])
    if meta.get("workload"):
        lines.append(meta["workload"])
    lines.append("")
    for i, row in enumerate(rows):
        if row[2].startswith("failed:"):
            lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]))
        else:
            lines.append(
                "  ".join(
                    c.ljust(widths[j]) if j < 2 or j == len(row) - 1 else c.rjust(widths[j]) for j, c in enumerate(row)
                ).rstrip()
            )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for r in runs:
        if r.bundle:
            mark = (
                ""
                if r.diagnosis_matches is None
                else (" (as expected)" if r.diagnosis_matches else f" (expected {r.expected_mechanism})")
            )
            lines.append(f"{r.variant}: stall bundle {r.bundle} -> {r.diagnosis or 'no diagnosis'}{mark}")
        elif not r.error:
            lines.append(f"{r.variant}: no stall over the capture threshold, no bundle")
    best = best_variant(runs)
    if best is not None:
        base = next((r for r in runs if not r.mitigations and not r.error), None)
        lines.append("")
        what = best.variant if best.mitigations else f"{best.variant} (no mitigation)"
        line = f"best fix on this node: {what}: worst relist {_s(best.relist_max_seconds)}"
        if base is not None and base is not best:
            line += f" (baseline {base.variant}: {_s(base.relist_max_seconds)})"
        lines.append(line)
    return "\n".join(lines) + "\n"


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
