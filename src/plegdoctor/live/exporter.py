"""Prometheus metrics of `watch` (prefix pleg_doctor_), served with prometheus_client on 127.0.0.1 by default.

Latency histograms are updated when calls return; everything that describes "now" (the age of
the call in flight, seconds since the last successful relist, runtime up, PSI, disks, findings)
is computed at scrape time by a collector, so a hung call shows up in the very next scrape.
CRI buckets go up to 300 s because kubelet's own stop at 10 s and record nothing while a call hangs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.wasyncore import close_all, loop

from plegdoctor import __version__
from plegdoctor.live.probe import CallResult, ProbeStatus, RelistProbe, RelistResult
from plegdoctor.live.samples import METRIC_PREFIX, NodeSnapshot
from plegdoctor.live.sources import metric_families, metric_names

PREFIX = METRIC_PREFIX
CRI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300)

# Every metric name watch exports (the dashboard and the alert rules may use only these).
METRIC_NAMES = (
    "pleg_doctor_build_info",
    "pleg_doctor_cri_call_duration_seconds",
    "pleg_doctor_cri_call_errors_total",
    "pleg_doctor_relist_duration_seconds",
    "pleg_doctor_relist_last_success_timestamp_seconds",
    "pleg_doctor_relist_seconds_since_success",
    "pleg_doctor_relist_in_flight_seconds",
    "pleg_doctor_relist_containers",
    "pleg_doctor_relist_sandboxes",
    "pleg_doctor_runtime_up",
    "pleg_doctor_stalled",
    "pleg_doctor_stalls_total",
    "pleg_doctor_kubelet_pleg_last_seen_timestamp_seconds",
    "pleg_doctor_captures_total",
    "pleg_doctor_capture_bytes",
    "pleg_doctor_finding_active",
    "pleg_doctor_root_cause_confidence",
    *metric_names(),  # the sampled SOURCES' (pressure, disks, memory)
)


@dataclass
class WatchState:
    """What the collector reads at scrape time; written by the watch loop."""

    node: NodeSnapshot | None = None
    kubelet_pleg_last_seen: float | None = None
    capture_bytes: int = 0
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # (code, class, severity)
    root_causes: list[tuple[str, float]] = field(default_factory=list)  # (class, confidence)
    stalls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Collector(Collector):
    def __init__(self, probe: RelistProbe | None, state: WatchState):
        self.probe = probe
        self.state = state

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(PREFIX + "build_info", "pleg-doctor version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if self.probe is not None:
            yield from self._probe(self.probe.status())
        with self.state.lock:
            node = self.state.node
            last_seen = self.state.kubelet_pleg_last_seen
            findings = list(self.state.findings)
            causes = list(self.state.root_causes)
            capture_bytes = self.state.capture_bytes
            stalls = self.state.stalls
        yield CounterMetricFamily(PREFIX + "stalls", "Stall episodes seen by the relist probe", value=stalls)
        if node is not None:
            yield from self._node(node)
        if last_seen is not None:
            yield GaugeMetricFamily(
                PREFIX + "kubelet_pleg_last_seen_timestamp_seconds",
                "kubelet_pleg_last_seen_seconds scraped from the kubelet (epoch seconds)",
                value=last_seen,
            )
        yield GaugeMetricFamily(
            PREFIX + "capture_bytes", "Bytes used by bundles in the capture dir", value=capture_bytes
        )
        fam = GaugeMetricFamily(
            PREFIX + "finding_active", "Findings of the last analyzed capture", labels=["code", "class", "severity"]
        )
        for code, cls, sev in findings:
            fam.add_metric([code, cls, sev], 1)
        yield fam
        rc = GaugeMetricFamily(
            PREFIX + "root_cause_confidence", "Root causes of the last analyzed capture", labels=["class"]
        )
        for cls, conf in causes:
            rc.add_metric([cls], conf)
        yield rc

    def _probe(self, st: ProbeStatus) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            PREFIX + "runtime_up",
            "1 if the runtime answered the last relist in time; 0 while it hangs, refuses or its socket is absent",
            value=int(st.runtime_up),
        )
        yield GaugeMetricFamily(PREFIX + "stalled", "1 while the relist probe sees a stall", value=int(st.stalled))
        yield GaugeMetricFamily(
            PREFIX + "relist_in_flight_seconds",
            "Age of the CRI call in flight (0 when none): grows while the runtime hangs",
            value=st.in_flight_seconds,
        )
        if st.last_success is not None:
            yield GaugeMetricFamily(
                PREFIX + "relist_last_success_timestamp_seconds",
                "Start time of the last successful relist probe (like kubelet's relistTime)",
                value=st.last_success,
            )
        since = st.seconds_since_success
        if since is not None:
            # exported from the first scrape on, even if the runtime never answered: then it counts
            # from watch's start (or the first failure a previous watch persisted), a lower bound
            yield GaugeMetricFamily(
                PREFIX + "relist_seconds_since_success",
                "Seconds since the start of the last successful relist probe (a lower bound while none is known)",
                value=since,
            )
        if st.last is not None and st.last.ok:
            yield GaugeMetricFamily(
                PREFIX + "relist_containers", "Containers in the last relist", value=st.last.containers
            )
            yield GaugeMetricFamily(
                PREFIX + "relist_sandboxes", "Sandboxes in the last relist", value=st.last.sandboxes
            )

    def _node(self, node: NodeSnapshot) -> Iterator[Metric]:
        for families in metric_families():  # the sampled SOURCES' metrics (PSI, disks, memory)
            yield from families(node)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds of the metrics HTTP server: nothing a client does can pin more than this."""

    workers: int = 4  # threads that render responses; reading requests never holds one
    connections: int = 64  # open connections; beyond it the listener stops accepting (backlog)
    idle_timeout: float = 10.0  # an idle connection (kept alive or never sending) is closed after this
    request_deadline: float = 10.0  # a request must arrive whole within this, however slowly it trickles
    max_header_bytes: int = 8192  # request line + headers (431 beyond)
    max_body_bytes: int = 0  # /metrics takes no body (413 for any)
    housekeeping: float = 1.0  # how often the deadlines are checked


class _Channel(HTTPChannel):  # type: ignore[misc]
    """waitress's channel, stamped with the time the request in progress started to arrive."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        return bool(super().received(data))


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """waitress closes connections idle for `channel_timeout`; this also closes one whose request
    has been arriving for longer than the deadline (a slow-loris sending a byte at a time)."""

    channel_class = _Channel
    request_deadline = 10.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = time.monotonic() - self.request_deadline
        for channel in list(self.active_channels.values()):
            if channel.request is not None and not channel.requests and channel.request_started < cutoff:
                channel.will_close = True


def _only_get(app: Any) -> Any:
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [b"only GET and HEAD\n"]
        return app(environ, start_response)

    return wrapped


class MetricsServer:
    """/metrics over waitress: requests are read by one event loop (poll, so no FD_SETSIZE limit)
    and only complete requests reach the `workers` threads, so idle or slow clients hold a
    connection slot (bounded, timed out) but never a worker; request sizes are capped."""

    def __init__(self, app: Any, host: str, port: int, limits: ServerLimits):
        adj = Adjustments(
            host=host,
            port=port,
            threads=limits.workers,
            connection_limit=limits.connections,
            backlog=limits.connections,
            channel_timeout=limits.idle_timeout,
            cleanup_interval=limits.housekeeping,
            max_request_header_size=limits.max_header_bytes,
            max_request_body_size=limits.max_body_bytes,
            asyncore_use_poll=True,
            expose_tracebacks=False,
            ident="pleg-doctor",
        )
        self._map: dict[int, Any] = {}
        self._server = _Server(_only_get(app), map=self._map, adj=adj)
        self._server.request_deadline = limits.request_deadline
        self.port = int(self._server.effective_port)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                loop(timeout=0.2, map=self._map, use_poll=True, count=1)
        finally:
            self._server.task_dispatcher.shutdown(timeout=2)
            close_all(self._map)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pleg-doctor-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class Exporter:
    """Owns the registry; the probe's callbacks feed the histograms."""

    def __init__(self, state: WatchState | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.state = state or WatchState()
        self.call_seconds = Histogram(
            PREFIX + "cri_call_duration_seconds",
            "CRI call latency seen by the relist probe",
            ["method"],
            buckets=CRI_BUCKETS,
            registry=self.registry,
        )
        self.call_errors = Counter(
            PREFIX + "cri_call_errors", "Failed CRI calls by error kind", ["method", "kind"], registry=self.registry
        )
        self.relist_seconds = Histogram(
            PREFIX + "relist_duration_seconds",
            "Duration of a relist probe (ListPodSandbox + ListContainers)",
            buckets=CRI_BUCKETS,
            registry=self.registry,
        )
        self.captures = Counter(PREFIX + "captures", "Evidence captures by result", ["result"], registry=self.registry)
        for result in ("ok", "failed", "skipped"):
            self.captures.labels(result)
        self._collector: _Collector | None = None
        self._server: Any = None

    def attach(self, probe: RelistProbe | None) -> None:
        self._collector = _Collector(probe, self.state)
        self.registry.register(self._collector)

    def on_call(self, result: CallResult) -> None:
        self.call_seconds.labels(result.method).observe(result.seconds)
        if not result.ok:
            self.call_errors.labels(result.method, result.error_kind).inc()

    def on_relist(self, result: RelistResult) -> None:
        if result.ok:
            self.relist_seconds.observe(result.seconds)

    def serve(self, host: str, port: int, limits: ServerLimits | None = None) -> int:
        """Start the bounded HTTP server (see `MetricsServer`); returns the bound port (0 picks a free one)."""
        self._server = MetricsServer(make_wsgi_app(self.registry), host, port, limits or ServerLimits())
        self._server.start()
        return self._server.port

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def render(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
