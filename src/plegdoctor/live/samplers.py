"""Node samplers for watch and collect: PSI, /proc/diskstats, /proc/meminfo, /proc/vmstat, kubelet metrics.

Each sampler reads one kernel interface and returns plain values; the exporter and the bundle
writer consume them. Raw text is kept too (`RawSample`) so a capture can write the recent
series in the pleg-doctor sample format that the psi/diskstats/meminfo/vmstat parsers read:

    # pleg-doctor sample <RFC 3339 time> <path>
    <file content verbatim>
"""

from __future__ import annotations

import collections
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PSI_RESOURCES = ("cpu", "memory", "io")
# whole-disk names worth exporting; partitions and pseudo devices are skipped
_SKIP_PREFIXES = ("loop", "ram", "zram", "fd", "sr", "nbd")


@dataclass(frozen=True, slots=True)
class RawSample:
    ts: float
    path: str
    text: str

    def render(self) -> str:
        stamp = datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = self.text if self.text.endswith("\n") else self.text + "\n"
        return f"# pleg-doctor sample {stamp} {self.path}\n{body}"


def read_text(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def parse_psi(text: str) -> dict[str, dict[str, float]]:
    """`some avg10=.. total=..` lines -> {"some": {"avg10": .., "total": ..}, "full": {...}}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        vals: dict[str, float] = {}
        for kv in parts[1:]:
            k, _, v = kv.partition("=")
            try:
                vals[k] = float(v)
            except ValueError:
                continue
        out[parts[0]] = vals
    return out


def parse_diskstats(text: str) -> dict[str, list[int]]:
    """device -> counters (reads, rd_merged, rd_sectors, rd_ms, writes, wr_merged, wr_sectors, wr_ms,
    in_flight, io_ms, weighted_ms, ...)."""
    out: dict[str, list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        try:
            out[parts[2]] = [int(x) for x in parts[3:]]
        except ValueError:
            continue
    return out


def parse_meminfo(text: str) -> dict[str, int]:
    """key -> bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        out[key.strip()] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return out


def is_whole_disk(name: str, sys_block: str = "/sys/block") -> bool:
    if name.startswith(_SKIP_PREFIXES):
        return False
    return Path(sys_block, name).exists()


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


def disk_rates(prev: dict[str, list[int]], cur: dict[str, list[int]], elapsed: float) -> list[DiskRates]:
    """iostat-style figures from two diskstats samples `elapsed` seconds apart."""
    out: list[DiskRates] = []
    if elapsed <= 0:
        return out
    for dev, c in cur.items():
        p = prev.get(dev)
        if p is None or len(p) < 11 or len(c) < 11:
            continue
        d = [max(0, a - b) for a, b in zip(c, p, strict=False)]
        reads, writes = d[0], d[4]
        out.append(
            DiskRates(
                device=dev,
                util=min(1.0, d[9] / 1000.0 / elapsed),
                reads_per_s=reads / elapsed,
                writes_per_s=writes / elapsed,
                write_kib_per_s=d[6] * 512 / 1024 / elapsed,
                read_await_s=(d[3] / reads / 1000.0) if reads else 0.0,
                write_await_s=(d[7] / writes / 1000.0) if writes else 0.0,
                in_flight=c[8],
            )
        )
    return out


@dataclass
class NodeSnapshot:
    ts: float
    psi: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # resource -> some/full -> values
    disks: list[DiskRates] = field(default_factory=list)
    meminfo: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class NodeSampler:
    """Samples PSI, diskstats, meminfo and vmstat; keeps the last `keep` raw samples per file."""

    def __init__(self, proc: str = "/proc", keep: int = 300, sys_block: str = "/sys/block"):
        self.proc = proc.rstrip("/")
        self.sys_block = sys_block
        self.history: dict[str, collections.deque[RawSample]] = collections.defaultdict(
            lambda: collections.deque(maxlen=keep)
        )
        self._prev_disk: tuple[float, dict[str, list[int]]] | None = None
        self.psi_available: bool | None = None

    def _read(self, rel: str, now: float) -> str | None:
        path = f"{self.proc}/{rel}"
        text = read_text(path)
        if text is not None:
            self.history[f"/proc/{rel}"].append(RawSample(now, f"/proc/{rel}", text))
        return text

    def sample(self, now: float | None = None) -> NodeSnapshot:
        now = time.time() if now is None else now
        snap = NodeSnapshot(ts=now)
        for res in PSI_RESOURCES:
            text = self._read(f"pressure/{res}", now)
            if text is None:
                if res == "io":
                    self.psi_available = False
                    snap.errors.append(f"{self.proc}/pressure/io unreadable (kernel without PSI, or psi=0)")
                continue
            self.psi_available = True
            snap.psi[res] = parse_psi(text)
        disk_text = self._read("diskstats", now)
        if disk_text is not None:
            cur = {k: v for k, v in parse_diskstats(disk_text).items() if is_whole_disk(k, self.sys_block)}
            if self._prev_disk is not None:
                snap.disks = disk_rates(self._prev_disk[1], cur, now - self._prev_disk[0])
            self._prev_disk = (now, cur)
        mem = self._read("meminfo", now)
        if mem is not None:
            snap.meminfo = parse_meminfo(mem)
        self._read("vmstat", now)
        return snap

    def series(self, path: str, since: float | None = None) -> str:
        """The kept raw samples of `path` (e.g. /proc/diskstats) in the pleg-doctor sample format."""
        return "".join(s.render() for s in self.history.get(path, ()) if since is None or s.ts >= since)


def scrape_kubelet_pleg_last_seen(
    url: str, token: str | None = None, timeout: float = 3.0, insecure: bool = False
) -> float | None:
    """kubelet_pleg_last_seen_seconds (epoch seconds) from a kubelet /metrics endpoint; None if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    ctx = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
        body = resp.read(32 * 1024 * 1024).decode("utf-8", "replace")
    for fam in text_string_to_metric_families(body):
        if fam.name == "kubelet_pleg_last_seen_seconds":
            for s in fam.samples:
                return float(s.value)
    return None
