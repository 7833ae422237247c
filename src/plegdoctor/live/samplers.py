"""Node samplers for watch and collect: the sampled lines of `plegdoctor.live.sources.SOURCES`
(PSI, /proc/diskstats, /proc/meminfo, /proc/vmstat), and the kubelet's PLEG metric.

Each period `NodeSampler.sample` reads every sampled source's /proc file (bounded by its
`bound`), keeps the raw text (`RawSample`, so a capture can write the recent series in the
pleg-doctor sample format), parses it with the source's parser (plegdoctor.parsers, the same
code `analyze` runs) and lets the source's `update` put its figures in the `NodeSnapshot` the
exporter serves.
"""

from __future__ import annotations

import collections
import ssl
import time
import urllib.request

from plegdoctor.live.procfs import read_text
from plegdoctor.live.samples import NodeSnapshot, RawSample, SampleState, parse_sample
from plegdoctor.live.sources import NodeSource, sampled

MAX_KUBELET_METRICS = 32 << 20


class NodeSampler:
    """Samples the sampled sources; keeps the last `keep` raw samples per file."""

    def __init__(self, proc: str = "/proc", keep: int = 300, sys_block: str = "/sys/block"):
        self.proc = proc.rstrip("/")
        self.state = SampleState(proc=self.proc, sys_block=sys_block)
        self.sources = sampled()
        self.history: dict[str, collections.deque[RawSample]] = collections.defaultdict(
            lambda: collections.deque(maxlen=keep)
        )

    @property
    def psi_available(self) -> bool | None:
        return self.state.psi_available

    def _read(self, src: NodeSource, now: float) -> RawSample | None:
        try:
            text = read_text(f"{self.proc}/{src.sample}", src.bound)
        except OSError:
            return None
        sample = RawSample(now, src.proc_path, text)
        self.history[src.proc_path].append(sample)
        return sample

    def sample(self, now: float | None = None) -> NodeSnapshot:
        now = time.time() if now is None else now
        snap = NodeSnapshot(ts=now)
        for src in self.sources:
            sample = self._read(src, now)
            if src.update is not None:
                src.update(snap, parse_sample(src.kind, sample) if sample is not None else None, self.state)
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
        body = resp.read(MAX_KUBELET_METRICS).decode("utf-8", "replace")
    for fam in text_string_to_metric_families(body):
        if fam.name == "kubelet_pleg_last_seen_seconds":
            for s in fam.samples:
                return float(s.value)
    return None
