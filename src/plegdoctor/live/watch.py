"""`pleg-doctor watch`: probe the runtime like kubelet's PLEG, export metrics, capture evidence on stalls.

The loop (one thread, `period`): sample the node (PSI, diskstats, meminfo), read the probe's
status (the probe runs in its own thread with at most one CRI call in flight), optionally
scrape the kubelet's kubelet_pleg_last_seen_seconds, and on the start of a stall capture a
bundle into the capture dir in a background thread (one at a time; cooldown, cap, disk
budget), analyze it and export its findings. A frozen or missing runtime never stops the
loop: metrics keep being served and say the runtime is down.

Safe on a hostile node: the metrics server is bounded (`exporter.MetricsServer`); the capture
dir is created 0700 (and refused when it is not a directory, is a symlink, is writable by
others or owned by someone else); bundles rotate within `--max-captures` and `--disk-budget`;
stage dirs a killed collect left (`.pleg-doctor-stage-*`) are removed at start once older
than `STAGE_MAX_AGE`; the last successful relist and the last capture are kept in
`STATE_FILE` in the capture dir, so a watch restarted mid-stall still reports the stall's
full age (and keeps its cooldown).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from plegdoctor.errors import UserError
from plegdoctor.live.capture_dir import (
    STAGE_MAX_AGE,
    STATE_FILE,
    PersistedState,
    clean_stage_dirs,
    prepare_capture_dir,
)
from plegdoctor.live.collect import CollectOptions, collect_bundle, default_output
from plegdoctor.live.cri.client import DEFAULT_ENDPOINT, CRIClient, CRIError
from plegdoctor.live.exporter import Exporter, WatchState
from plegdoctor.live.kube import PublishOptions
from plegdoctor.live.kube_cli import options_from_cli, publish_options
from plegdoctor.live.probe import RelistProbe
from plegdoctor.live.procfs import boot_time, read_text
from plegdoctor.live.samplers import NodeSampler, scrape_kubelet_pleg_last_seen
from plegdoctor.live.trigger import CaptureTrigger, bytes_used, trigger_record, writable_problem
from plegdoctor.timeutil import parse_duration

log = logging.getLogger("pleg-doctor.watch")

MAX_TOKEN_BYTES = 64 << 10  # a bearer token file (a service account JWT is ~1 KiB)
PERSIST_EVERY = 30.0  # while relists succeed, the last success is written at most this often


@dataclass
class WatchConfig:
    listen: str = "127.0.0.1:9977"
    runtime_endpoint: str = DEFAULT_ENDPOINT
    period: float = 1.0
    stall_threshold: float = 5.0
    call_timeout: float = 120.0
    capture_dir: str | None = None
    cooldown: float = 600.0
    max_captures: int = 10
    disk_budget: int = 1 << 30
    min_free: int = 256 << 20
    dump: bool = True
    analyze: bool = True
    log_window: str = "15m"
    kubelet_metrics_url: str | None = None
    kubelet_token_file: str | None = None
    kubelet_insecure: bool = False
    kubelet_every: float = 10.0
    stage_max_age: float = STAGE_MAX_AGE
    node: str = field(default_factory=lambda: os.environ.get("NODE_NAME") or os.uname().nodename)
    publish: PublishOptions | None = None  # --publish / --publish-dry-run (live/kube.py)


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def summarize_diagnosis(diag: Any) -> tuple[list[tuple[str, str, str]], list[tuple[str, float]]]:
    """(findings as (code, class, severity), root causes as (class, confidence)) from a Diagnosis."""
    findings = [(str(f.code), str(f.root_cause), str(f.severity)) for f in getattr(diag, "findings", [])]
    causes = [(str(rc.cls), float(rc.confidence)) for rc in getattr(diag, "root_causes", [])]
    return findings, causes


class Watcher:
    def __init__(self, cfg: WatchConfig):
        self.cfg = cfg
        self.client = CRIClient(cfg.runtime_endpoint, timeout=cfg.call_timeout)
        self.state = WatchState()
        self.exporter = Exporter(self.state)
        self.probe = RelistProbe(
            self.client,
            period=cfg.period,
            stall_threshold=cfg.stall_threshold,
            call_timeout=cfg.call_timeout,
            on_call=self.exporter.on_call,
            on_relist=self.exporter.on_relist,
        )
        self.exporter.attach(self.probe)
        self.sampler = NodeSampler(keep=max(10, int(300 / max(cfg.period, 0.1))))
        self.trigger = (
            CaptureTrigger(cfg.capture_dir, cfg.cooldown, cfg.max_captures, cfg.disk_budget, cfg.min_free)
            if cfg.capture_dir
            else None
        )
        self.port = 0
        self.captures: list[Path] = []
        self.last_analysis: Any = None
        self._capture_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._said: set[str] = set()
        self._was_stalled = False
        self._next_kubelet = 0.0
        self.state_path: Path | None = None
        self.persisted = PersistedState()
        self._persisted_at = 0.0
        self.publisher: Any = None  # live.kube.Publisher with --publish

    def say_once(self, key: str, msg: str, level: int = logging.WARNING) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, msg)

    # -- startup --------------------------------------------------------------------------
    def start(self) -> Watcher:
        host, port = parse_listen(self.cfg.listen)
        if self.cfg.capture_dir:
            self._prepare_capture_dir(self.cfg.capture_dir)
        try:
            self.port = self.exporter.serve(host, port)
        except OSError as exc:
            raise UserError(f"cannot listen on {self.cfg.listen}: {exc.strerror or exc}") from None
        log.info("serving metrics on http://%s:%d/metrics", host, self.port)
        if self.cfg.capture_dir:
            problem = writable_problem(self.cfg.capture_dir)
            if problem:
                self.say_once(
                    "capture-dir", f"{problem}: captures disabled until it is fixed; probing and metrics go on"
                )
        else:
            log.info("no --capture-dir: stalls are reported in metrics and logs, no bundle is captured")
        try:
            v = self.client.version(timeout=min(5.0, self.cfg.call_timeout))
            if v.runtime_name != "containerd":
                self.say_once(
                    "not-containerd",
                    f"runtime is {v.runtime_name} {v.runtime_version}, not containerd: relist probing works, "
                    "containerd goroutine dumps are skipped",
                )
            else:
                log.info("runtime: %s %s (CRI %s)", v.runtime_name, v.runtime_version, v.runtime_api_version)
        except CRIError as exc:
            self.say_once(f"cri-{exc.kind}", f"{exc}; probing goes on and reports the runtime down")
        if self.cfg.publish is not None:
            from plegdoctor.live.kube import build_publisher

            self.publisher = build_publisher(self.cfg.publish).start()
        self.probe.start()
        return self

    def _prepare_capture_dir(self, directory: str) -> None:
        path = prepare_capture_dir(directory)
        for p in clean_stage_dirs(path, max_age=self.cfg.stage_max_age):
            log.warning("removed %s: staging left by a collect that did not finish", p)
        self.state_path = path / STATE_FILE
        now = time.time()
        state, why = PersistedState.load(self.state_path, now, boot_time())
        if why:
            self.say_once("state-file", why)
        self.persisted = state
        self.probe.seed(state.last_success, state.down_since)
        if state.down_since is None and state.last_success is None:
            self.persisted.down_since = self.probe.down_since
        if self.trigger is not None and state.last_capture is not None:
            self.trigger.captured(state.last_capture)  # the cooldown survives a restart
        if state.last_success is not None:
            log.info("last successful relist (persisted): %.0fs ago", max(0.0, now - state.last_success))
        self._persist(force=True)

    def _persist(self, force: bool = False) -> None:
        """Write the persisted state when it changed: at most every PERSIST_EVERY s while relists
        succeed, at once when they stop (so the last success before a stall is exact) or `force`."""
        if self.state_path is None:
            return
        st = self.probe.status()
        changed = st.last_success != self.persisted.last_success
        first = st.last_success is not None and self.persisted.last_success is None
        if st.last_success is not None:
            self.persisted.down_since = None
        due = (
            force
            or first
            or (changed and (not st.runtime_up or time.monotonic() - self._persisted_at >= PERSIST_EVERY))
        )
        if not due:
            return
        self.persisted.last_success = st.last_success
        try:
            self.persisted.save(self.state_path)
            self._persisted_at = time.monotonic()
        except OSError as exc:
            self.say_once("state-save", f"cannot write {self.state_path}: {exc.strerror or exc}")

    # -- one tick -------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.time()
        snap = self.sampler.sample(now)
        for err in snap.errors:
            self.say_once(err, err)
        kubelet_seen = self.state.kubelet_pleg_last_seen
        if self.cfg.kubelet_metrics_url and now >= self._next_kubelet:
            self._next_kubelet = now + self.cfg.kubelet_every
            try:
                token = (
                    read_text(self.cfg.kubelet_token_file, MAX_TOKEN_BYTES).strip()
                    if self.cfg.kubelet_token_file
                    else None
                )
                kubelet_seen = scrape_kubelet_pleg_last_seen(
                    self.cfg.kubelet_metrics_url, token, timeout=3, insecure=self.cfg.kubelet_insecure
                )
            except Exception as exc:
                self.say_once("kubelet-scrape", f"kubelet metrics at {self.cfg.kubelet_metrics_url}: {exc}")
        status = self.probe.status()
        with self.state.lock:
            self.state.node = snap
            self.state.kubelet_pleg_last_seen = kubelet_seen
            if self.cfg.capture_dir:
                self.state.capture_bytes = bytes_used(self.cfg.capture_dir)
        if status.stalled and not self._was_stalled:
            with self.state.lock:
                self.state.stalls += 1
            log.warning("stall: %s", status.reason)
        elif self._was_stalled and not status.stalled:
            log.warning("stall over: relists answer again")
        if status.last is not None and not status.last.ok and status.last.error_kind != "deadline-exceeded":
            self.say_once(f"cri-{status.last.error_kind}", status.last.error)
        self._was_stalled = status.stalled
        if self.publisher is not None:
            self.publisher.observe(status.stalled, status.reason, known=status.runtime_up)
        self._persist()
        if self.trigger is not None:
            busy = self._capture_thread is not None and self._capture_thread.is_alive()
            decision = self.trigger.decide(now, status.stalled)
            if decision.capture and busy:
                self.exporter.captures.labels("skipped").inc()
                log.warning("stall: a capture is still running; not starting another")
            elif decision.capture:
                self.trigger.captured(now)
                self.persisted.last_capture = now
                self._persist(force=True)
                for p in self.trigger.make_room():
                    log.warning("rotated out %s (--max-captures %d)", p.name, self.cfg.max_captures)
                reason = status.reason
                self._capture_thread = threading.Thread(
                    target=self._capture, args=(reason,), name="pleg-doctor-capture", daemon=True
                )
                self._capture_thread.start()
            elif decision.reason:
                self.exporter.captures.labels("skipped").inc()
                log.warning("stall: no capture: %s", decision.reason)

    # -- capture + analysis ---------------------------------------------------------------
    def _capture(self, reason: str) -> None:
        assert self.cfg.capture_dir is not None
        status = self.probe.status()
        output = default_output(self.cfg.node, self.cfg.capture_dir)
        opts = CollectOptions(
            output=output,
            since=self.cfg.log_window,
            dump=self.cfg.dump,
            runtime_endpoint=self.cfg.runtime_endpoint,
            step_timeout=10.0,
            dump_timeout=5.0,
            node=self.cfg.node,
            query_runtime=False,
            log=lambda msg: log.info("capture: %s", msg),
        )
        record = trigger_record(
            status,
            self.cfg.runtime_endpoint,
            self.cfg.stall_threshold,
            self.cfg.call_timeout,
            history=self.probe.recent_calls(),
        )
        if reason and not status.stalled:
            record["reason"] = reason  # the stall was over by the time the capture started
        trigger = {"trigger": record}
        hold = self.publisher.hold(reason) if self.publisher is not None else contextlib.nullcontext()
        try:
            with hold:  # --hold-for-repair: while the evidence is collected, not during the analysis
                path = collect_bundle(opts, sampler=self.sampler, extra=trigger)
        except Exception as exc:
            self.exporter.captures.labels("failed").inc()
            log.error("capture failed: %s", exc)
            return
        self.exporter.captures.labels("ok").inc()
        self.captures.append(path)
        log.warning("captured %s", path)
        if self.trigger is not None:
            for p in self.trigger.rotate():
                log.warning("rotated out %s (--max-captures %d, --disk-budget)", p.name, self.cfg.max_captures)
        diag = self._analyze(path) if self.cfg.analyze else None
        if self.publisher is not None:
            self.publisher.captured(path, diag)

    def _analyze(self, path: Path) -> Any:
        try:
            from plegdoctor.pipeline import analyze_paths
        except ImportError:
            log.warning("analysis unavailable in this build (plegdoctor.pipeline.analyze_paths missing); bundle kept")
            return None
        try:
            diag = analyze_paths([str(path)])
        except Exception as exc:
            log.error("analysis of %s failed: %s", path, exc)
            return None
        self.last_analysis = diag
        findings, causes = summarize_diagnosis(diag)
        with self.state.lock:
            self.state.findings = findings
            self.state.root_causes = causes
        best = f"{causes[0][0]} ({causes[0][1]:.0%})" if causes else "no root cause"
        codes = ",".join(sorted({c for c, _, _ in findings})) or "none"
        log.warning("analysis of %s: %s; findings: %s", path.name, best, codes)
        return diag

    # -- run ------------------------------------------------------------------------------
    def run(self, duration: float | None = None) -> None:
        end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # keep serving metrics whatever one tick hit
                log.error("tick failed: %s: %s", type(exc).__name__, exc)
            if end is not None and time.monotonic() >= end:
                break
            self._stop.wait(max(0.0, self.cfg.period - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._stop.set()
        self.probe.stop(timeout=1)
        if self._capture_thread is not None:
            self._capture_thread.join(30)
        self._persist(force=True)
        if self.publisher is not None:
            self.publisher.stop()
        self.exporter.shutdown()
        self.client.close()


_duration = parse_duration  # the name the option code and tests use


def _size(value: str) -> int:
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]i?B?)?\s*", value, re.I)
    if not m:
        raise UserError(f"--disk-budget: cannot parse {value!r} (e.g. 1GiB, 500MiB)")
    unit = (m[2] or "").upper()[:1]
    return int(m[1]) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]


@click.command("watch")
@click.option("--listen", default="127.0.0.1:9977", show_default=True, help="Metrics address (HOST:PORT).")
@click.option("--runtime-endpoint", default=DEFAULT_ENDPOINT, show_default=True, help="CRI endpoint.")
@click.option("--period", default="1s", show_default=True, help="Relist probe period (kubelet: 1s).")
@click.option("--stall-threshold", default="5s", show_default=True, help="A relist call older than this is a stall.")
@click.option("--call-timeout", default="120s", show_default=True, help="Deadline of each probe call (kubelet: 2m).")
@click.option(
    "--capture-dir",
    help="Write a bundle here when a stall starts (created 0700 if missing).",
)
@click.option("--cooldown", default="10m", show_default=True, help="Minimum time between two captures.")
@click.option(
    "--max-captures",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Keep the newest this many bundles in the capture dir (older ones are deleted).",
)
@click.option(
    "--disk-budget", default="1GiB", show_default=True, help="Keep the newest bundles within this many bytes."
)
@click.option("--no-dump", is_flag=True, help="Captures send no SIGUSR1 (no goroutine dumps).")
@click.option("--no-analyze", is_flag=True, help="Do not analyze captured bundles.")
@click.option(
    "--kubelet-metrics-url", help="Scrape kubelet_pleg_last_seen_seconds here (e.g. https://127.0.0.1:10250/metrics)."
)
@click.option("--kubelet-token-file", type=click.Path(dir_okay=False), help="Bearer token for the kubelet scrape.")
@click.option("--kubelet-insecure", is_flag=True, help="Do not verify the kubelet's TLS certificate.")
@click.option("--duration", default=None, help="Stop after this long (default: run until SIGTERM/Ctrl-C).")
@click.option("-v", "--verbose", is_flag=True, help="Log every relist failure and capture step.")
@publish_options
def command(
    listen: str,
    runtime_endpoint: str,
    period: str,
    stall_threshold: str,
    call_timeout: str,
    capture_dir: str | None,
    cooldown: str,
    max_captures: int,
    disk_budget: str,
    no_dump: bool,
    no_analyze: bool,
    kubelet_metrics_url: str | None,
    kubelet_token_file: str | None,
    kubelet_insecure: bool,
    duration: str | None,
    verbose: bool,
    **publish: Any,
) -> None:
    """Probe the runtime like kubelet's PLEG, serve Prometheus metrics, capture and analyze evidence on stalls.

    Changes nothing on the node except, when a stall starts and --capture-dir is set, the
    SIGUSR1 goroutine dumps of containerd and its shims (--no-dump to skip them). With --publish
    it writes this Node's ContainerRuntimeStalled condition and Events (docs/fleet.md).
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s pleg-doctor watch: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    log.setLevel(logging.INFO)
    cfg = WatchConfig(
        listen=listen,
        runtime_endpoint=runtime_endpoint,
        period=_duration(period, "--period"),
        stall_threshold=_duration(stall_threshold, "--stall-threshold"),
        call_timeout=_duration(call_timeout, "--call-timeout"),
        capture_dir=capture_dir,
        cooldown=_duration(cooldown, "--cooldown"),
        max_captures=max_captures,
        disk_budget=_size(disk_budget),
        dump=not no_dump,
        analyze=not no_analyze,
        kubelet_metrics_url=kubelet_metrics_url,
        kubelet_token_file=kubelet_token_file,
        kubelet_insecure=kubelet_insecure,
    )
    if publish["node_name"]:
        cfg.node = publish["node_name"]
    cfg.publish = options_from_cli(cfg.node, cfg.cooldown, _duration, **publish)
    watcher = Watcher(cfg).start()

    def on_term(signum: int, frame: Any) -> None:
        watcher._stop.set()

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, on_term)
    try:
        watcher.run(_duration(duration, "--duration") if duration else None)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
