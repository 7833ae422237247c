"""The matrix the lab measures: containerd version x mitigation, and the small/full profiles.

A variant is written `<containerd>[+volatile][+nosync][+dirty][+volume]`:

- `1.6`, `1.7`, `2.1` or a path: which containerd runs (Debian 12 / 13 / unstable builds).
- `+volatile`: overlay snapshotter `mount_options = ["volatile"]` (needs 1.6.24+, 1.7.4+ or 2.0+).
  Removes the link "umount -> syncfs of the whole backing filesystem".
- `+nosync`: bbolt `no_sync = true` (2.1+; data-loss risk on a crash). Removes the bbolt commit
  fdatasync done under the metadata writer lock.
- `+dirty`: vm.dirty_bytes = 256 MiB, vm.dirty_background_bytes = 64 MiB (restored after). Keeps
  little dirty data queued in front of each fsync (writers are throttled instead).
- `+volume`: the writers write to a host volume on another (fast) disk, not their rootfs: the
  dirty data is not on containerd's disk at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from plegdoctor.errors import UserError
from plegdoctor.lab.images import BigImage
from plegdoctor.lab.slowdisk import DiskSpec
from plegdoctor.lab.workload import WorkloadSpec

DIRTY_BYTES = 256 * 1024 * 1024
DIRTY_BACKGROUND_BYTES = 64 * 1024 * 1024
MITIGATIONS = ("volatile", "nosync", "dirty", "volume")
# the link of the chain each mitigation removes (the module docstring, as data for the reports)
LINKS = {
    "volatile": "umount -> syncfs of the whole backing filesystem (the shim's Delete)",
    "nosync": "bbolt's commit fdatasync under the metadata writer lock",
    "dirty": "fsyncs queued behind gigabytes of background writeback (writers are throttled instead)",
    "volume": "the writers' dirty data on containerd's disk (it goes to another disk)",
}


@dataclass(frozen=True, slots=True)
class Variant:
    containerd: str  # 1.6 | 1.7 | 2.1 | a path
    volatile: bool = False
    no_sync: bool = False
    dirty_limits: bool = False
    writers_on_volume: bool = False

    @property
    def name(self) -> str:
        parts = [self.containerd if "/" not in self.containerd else "custom"]
        for flag, word in (
            (self.volatile, "volatile"),
            (self.no_sync, "nosync"),
            (self.dirty_limits, "dirty"),
            (self.writers_on_volume, "volume"),
        ):
            if flag:
                parts.append(word)
        return "+".join(parts)

    @property
    def mitigations(self) -> list[str]:
        return self.name.split("+")[1:]

    def describe(self) -> str:
        m = self.mitigations
        return "no mitigation" if not m else " + ".join(m)


def parse_variant(text: str, custom_containerd: str | None = None) -> Variant:
    parts = [p.strip() for p in text.strip().split("+") if p.strip()]
    if not parts:
        raise UserError(f"empty variant in {text!r}")
    head, flags = parts[0], parts[1:]
    if head == "custom":
        if not custom_containerd:
            raise UserError("variant 'custom' needs --containerd PATH")
        head = custom_containerd
    unknown = [f for f in flags if f not in MITIGATIONS]
    if unknown:
        raise UserError(f"unknown mitigation {unknown[0]!r} in {text!r} (known: {', '.join(MITIGATIONS)})")
    return Variant(
        containerd=head,
        volatile="volatile" in flags,
        no_sync="nosync" in flags,
        dirty_limits="dirty" in flags,
        writers_on_volume="volume" in flags,
    )


def parse_variants(text: str, custom_containerd: str | None = None) -> list[Variant]:
    out: list[Variant] = []
    for item in text.split(","):
        if item.strip():
            v = parse_variant(item, custom_containerd)
            if v not in out:
                out.append(v)
    if not out:
        raise UserError("--variants names no variant")
    return out


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    variants: tuple[str, ...]
    disk: DiskSpec
    workload: WorkloadSpec
    big: BigImage
    notes: str = ""


PROFILES: dict[str, Profile] = {
    # CI: the two variants that prove the point, a few minutes in all
    "small": Profile(
        name="small",
        variants=("1.7", "1.7+volatile"),
        disk=DiskSpec(size_gib=8, mb_per_s=60.0),
        workload=WorkloadSpec(
            writers=3, write_mib=512, stop=2, update_period_s=3.0, max_phase_s=240.0, trigger_s=2.0, settle_s=3.0
        ),
        big=BigImage(layers=4, layer_mib=32),
    ),
    # the measured recipe of issue #6: 3 x 1 GiB, a 1 GiB image, ~30 MB/s
    "full": Profile(
        name="full",
        variants=(
            "1.6",
            "1.7",
            "1.7+volatile",
            "1.7+volatile+dirty",
            "1.7+volume",
            "2.1",
            "2.1+volatile",
            "2.1+volatile+nosync",
            "2.1+volatile+dirty",
        ),
        disk=DiskSpec(size_gib=24, mb_per_s=30.0),
        workload=WorkloadSpec(
            writers=3, write_mib=1024, stop=2, update_period_s=5.0, max_phase_s=900.0, trigger_s=3.0, settle_s=5.0
        ),
        big=BigImage(layers=8, layer_mib=128),
    ),
}


def baseline_pair(variants: list[Variant]) -> list[Variant]:
    """Make sure the run holds a 1.x baseline without volatile and the same version with volatile."""
    out = list(variants)
    ones = [v for v in out if v.containerd in ("1.6", "1.7")]
    version = "1.7"
    if ones:
        # the baseline's volatile twin needs mount_options: 1.6.20 has none, so pair on 1.7
        version = ones[0].containerd if ones[0].containerd == "1.7" else "1.7"
    for want in (Variant(version), Variant(version, volatile=True)):
        if want not in out:
            out.insert(0 if not want.volatile else 1, want)
    return out
