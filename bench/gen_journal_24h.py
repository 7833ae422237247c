#!/usr/bin/env python3
"""Generate a realistic 24 h kubelet journal with the error mix of a troubled node (bench input).

The output is `journalctl -u kubelet -o short-precise` of a kubelet at -v=5 over 24 hours
(a `-- Logs begin at ... --` banner, then `Mon DD hh:mm:ss.uuuuuu host kubelet[pid]: <klog>`):
one `"GenericPLEG: Relisting"` every ~1 s, the kubelet's routine lines (sync loop,
SyncLoop UPDATE / (PLEG), pod workers, status manager, volume manager, probes, image pulls
as `Event occurred` lines, eviction manager) and the error mix of a node whose runtime is
slow now and then: tens of thousands of CRI failures (`... from runtime service failed`
with `rpc error: code = DeadlineExceeded`), `Error syncing pod, skipping` with `failed to
get container status`, `PLEG: Write status`, probe errors and failures (`context deadline
exceeded`), node status and lease errors. Errors come in degraded-runtime episodes (tens
of minutes each, many errors a second) on top of a thin background. A few relist stalls
are injected; those over 2 minutes get what a kubelet logs meanwhile (`GenericPLEG: Unable
to retrieve pods`, `Skipping pod synchronization` with `PLEG is not healthy`, `Node became
not ready`, `NodeReady` at the end). The line shapes are those of bench/gen_kubelet_journal.py
(copied from real kubelets) and of tests/fixtures/logs and tests/corpus.

The file is sized by --size-mb: the 24 h stay, the routine lines per second grow (70 MB is a
busy -v=5 node; 500 MB a very chatty one). Seeded and deterministic: same arguments, same bytes.

    python bench/gen_journal_24h.py --size-mb 70 --out /tmp/j70.log --truth /tmp/j70.truth.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gen_kubelet_journal import PODS, _cid, _klog_head, _noise_templates

HOST = "node-7"
PID = 1679
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DURATION = 86400.0
DEADLINE = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"

# Routine lines this generator adds to gen_kubelet_journal's (weights on the same scale).
ROUTINE: list[tuple[float, str]] = [
    (2.0, 'I{h} kubelet.go:2391] "SyncLoop UPDATE" source="api" pods=["{ns}/{pod}"]'),
    (1.0, 'I{h} kubelet.go:2100] "SyncLoop ADD" source="api" pods=["{ns}/{pod}"]'),
    (
        1.5,
        'I{h} status_manager.go:877] "Patch status for pod" pod="{ns}/{pod}" podUID="{uid}" '
        'patch="{{\\"metadata\\":{{\\"uid\\":\\"{uid}\\"}},\\"status\\":{{\\"conditions\\":[{{\\"type\\":'
        '\\"Ready\\",\\"status\\":\\"True\\"}}]}}}}"',
    ),
    (1.0, 'I{h} status_manager.go:224] "Syncing all statuses"'),
    (
        1.0,
        'I{h} volume_manager.go:448] "Waiting for volumes to attach and mount for pod" pod="{ns}/{pod}"',
    ),
    (
        0.3,
        'I{h} event.go:307] "Event occurred" object="{ns}/{pod}" fieldPath="spec.containers{{app}}" kind="Pod" '
        'apiVersion="v1" type="Normal" reason="Pulling" message="Pulling image \\"registry.k8s.io/pause:3.9\\""',
    ),
    (
        0.3,
        'I{h} event.go:307] "Event occurred" object="{ns}/{pod}" fieldPath="spec.containers{{app}}" kind="Pod" '
        'apiVersion="v1" type="Normal" reason="Pulled" message="Successfully pulled image '
        '\\"registry.k8s.io/pause:3.9\\" in 1.262610491s (1.262615813s including waiting)"',
    ),
]

# The error mix of a degraded runtime (weights among errors).
ERRORS: list[tuple[float, str]] = [
    (
        6.0,
        'E{h} remote_runtime.go:432] "ContainerStatus from runtime service failed" err="' + DEADLINE + '" '
        'containerID="{cid}"',
    ),
    (
        3.0,
        'E{h} remote_runtime.go:294] "ListPodSandbox with filter from runtime service failed" err="'
        + DEADLINE
        + '" filter="&PodSandboxFilter{{Id:,State:&PodSandboxStateValue{{State:SANDBOX_READY,}},LabelSelector:'
        'map[string]string{{}},}}"',
    ),
    (
        2.0,
        'E{h} remote_runtime.go:390] "ListContainers with filter from runtime service failed" err="'
        + DEADLINE
        + '" filter="&ContainerFilter{{Id:,State:nil,PodSandboxId:,LabelSelector:map[string]string{{}},}}"',
    ),
    (
        4.0,
        'E{h} kuberuntime_manager.go:1256] "getPodContainerStatuses for pod failed" err="'
        + DEADLINE
        + '" pod="{ns}/{pod}"',
    ),
    (
        4.0,
        'E{h} pod_workers.go:1300] "Error syncing pod, skipping" err="failed to get container status '
        '{{\\"containerd\\" \\"{cid}\\"}}: ' + DEADLINE + '" pod="{ns}/{pod}" podUID="{uid}"',
    ),
    (3.0, 'E{h} generic.go:453] "PLEG: Write status" err="' + DEADLINE + '" pod="{ns}/{pod}"'),
    (
        2.0,
        'E{h} prober.go:104] "Probe errored" err="rpc error: code = DeadlineExceeded desc = failed to exec in '
        'container: timeout 1s exceeded: context deadline exceeded" probeType="Readiness" pod="{ns}/{pod}" '
        'podUID={uid} containerName="app"',
    ),
    (
        2.0,
        'I{h} prober.go:107] "Probe failed" probeType="Liveness" pod="{ns}/{pod}" podUID="{uid}" '
        'containerName="app" probeResult="failure" output="Get \\"http://10.244.1.17:8080/healthz\\": context '
        'deadline exceeded (Client.Timeout exceeded while awaiting headers)"',
    ),
    (
        0.5,
        'E{h} kubelet_node_status.go:540] "Error updating node status, will retry" err="error getting node '
        '\\"' + HOST + '\\": Get \\"https://10.0.0.1:6443/api/v1/nodes/' + HOST + '?timeout=10s\\": context '
        'deadline exceeded"',
    ),
    (
        0.5,
        'E{h} controller.go:146] "Failed to ensure lease exists, will retry" err="Get \\"https://10.0.0.1:6443/'
        "apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + HOST + '?timeout=10s\\": context '
        'deadline exceeded (Client.Timeout exceeded while awaiting headers)" interval="7s"',
    ),
    (
        0.5,
        'E{h} kuberuntime_sandbox.go:72] "Failed to create sandbox for pod" err="' + DEADLINE + '" pod="{ns}/{pod}"',
    ),
    (
        0.3,
        'E{h} remote_image.go:180] "PullImage from image service failed" err="' + DEADLINE + '" '
        'image="registry.k8s.io/pause:3.9"',
    ),
]


def _frame(t: datetime) -> str:
    return f"{MONTHS[t.month - 1]} {t.day:02d} {t:%H:%M:%S}.{t.microsecond:06d} {HOST} kubelet[{PID}]: "


class Writer:
    """Buffered text output that counts its bytes."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.buf: list[str] = []
        self.pending = 0
        self.written = 0

    def emit(self, line: str) -> None:
        self.buf.append(line)
        self.pending += len(line) + 1
        if self.pending > 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.fh.write("\n".join(self.buf) + "\n")
        self.written += self.pending
        self.buf.clear()
        self.pending = 0


class Gen:
    def __init__(self, rng: random.Random, size: int, start: datetime) -> None:
        self.rng = rng
        self.start = start
        self.size = size
        self.adjust = 1.0  # factor on the routine lines per second (size feedback)
        self.cids = [_cid(rng) for _ in range(24)]
        routine = _noise_templates() + ROUTINE
        self.r_weights = [w for w, _ in routine]
        self.r_formats = [f for _, f in routine]
        self.e_weights = [w for w, _ in ERRORS]
        self.e_formats = [f for _, f in ERRORS]
        # bytes of a second of log: a relist line ~115 B, another line ~215 B, and the
        # errors take ~7 % of the other lines; 24 h in `size`
        per_second = size / DURATION
        self.rate = max(0.5, 0.91 * (per_second - 115) / 215)  # routine lines per second
        # degraded-runtime episodes: ~4 % of the day, many errors a second
        self.episodes: list[tuple[float, float]] = []
        for _ in range(8):
            s = rng.uniform(0.02, 0.97) * DURATION
            self.episodes.append((s, s + rng.uniform(600, 1500)))
        self.episode_rate = 3.0 + self.rate * 0.35  # errors per second inside an episode
        self.background = 0.02 + self.rate * 0.01  # errors per second elsewhere

    def _fmt(self, fmt: str, tt: datetime) -> str:
        ns, pod, uid = self.rng.choice(PODS)
        return _frame(tt) + fmt.format(
            h=_klog_head(tt),
            ns=ns,
            pod=pod,
            uid=uid,
            cid=self.rng.choice(self.cids),
            iso=tt.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC"),
        )

    def _count(self, mean: float) -> int:
        # a cheap Poisson-like draw: floor + Bernoulli of the fraction, with jitter
        x = mean * self.rng.uniform(0.6, 1.4)
        n = int(x)
        return n + (1 if self.rng.random() < x - n else 0)

    def second(self, w: Writer, at: datetime, elapsed: float, scale: float = 1.0) -> None:
        """The non-relist lines of one second of log starting at `at`."""
        rng = self.rng
        in_episode = any(s <= elapsed < e for s, e in self.episodes)
        n_routine = self._count(self.rate * self.adjust * scale)
        n_err = self._count((self.episode_rate if in_episode else self.background) * scale)
        fmts = rng.choices(self.r_formats, self.r_weights, k=n_routine)
        fmts += rng.choices(self.e_formats, self.e_weights, k=n_err)
        offsets = sorted(rng.randrange(1000, 990_000) for _ in fmts)
        rng.shuffle(fmts)
        for fmt, off in zip(fmts, offsets, strict=True):
            w.emit(self._fmt(fmt, at + timedelta(microseconds=off)))


def _stall(w: Writer, gen: Gen, last_tick: datetime, elapsed: float, length: float) -> None:
    """What a kubelet logs while relisting is stuck for `length` seconds (see gen_kubelet_journal)."""
    rng = gen.rng
    second = 1.0
    unhealthy = False
    backoff = 0.1
    next_skip = 180.0
    while second < length - 0.5:
        at = last_tick + timedelta(seconds=second)
        gen.second(w, at, elapsed + second, scale=0.4)
        if abs(second - 120.0) < 0.5:
            w.emit(
                _frame(at) + "E" + _klog_head(at) + ' remote_runtime.go:390] "ListContainers with filter from runtime '
                'service failed" err="' + DEADLINE + '" filter="&ContainerFilter{Id:,State:nil,PodSandboxId:,'
                'LabelSelector:map[string]string{},}"'
            )
            w.emit(
                _frame(at)
                + "E"
                + _klog_head(at)
                + ' generic.go:238] "GenericPLEG: Unable to retrieve pods" err="'
                + DEADLINE
                + '"'
            )
        if second >= next_skip:
            ago = second + rng.uniform(0.001, 0.009)
            mins, secs = divmod(ago, 60)
            last_seen = f"{int(mins)}m{secs:.9f}s"
            w.emit(
                _frame(at) + "E" + _klog_head(at) + ' kubelet.go:2359] "Skipping pod synchronization" err="PLEG is '
                f'not healthy: pleg was last seen active {last_seen} ago; threshold is 3m0s"'
            )
            backoff = min(backoff * 2, 5.0)
            next_skip = second + backoff
            if not unhealthy:
                unhealthy = True
                stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
                w.emit(
                    _frame(at) + "I" + _klog_head(at) + ' setters.go:552] "Node became not ready" node="' + HOST + '" '
                    'condition={"type":"Ready","status":"False","lastHeartbeatTime":"' + stamp + '",'
                    '"lastTransitionTime":"' + stamp + '","reason":"KubeletNotReady","message":"PLEG is not healthy: '
                    f'pleg was last seen active {last_seen} ago; threshold is 3m0s"}}'
                )
        second += 1.0
    if unhealthy:
        at = last_tick + timedelta(seconds=length - 0.01)
        w.emit(
            _frame(at)
            + "I"
            + _klog_head(at)
            + ' kubelet_node_status.go:687] "Recording event message for node" node="'
            + HOST
            + '" event="NodeReady"'
        )


def generate(size_mb: float, out_path: str, truth_path: str | None, seed: int, stalls: int, start: datetime) -> dict:
    rng = random.Random(seed)
    gen = Gen(rng, int(size_mb * 1e6), start)
    stall_lengths = [rng.choice((8.0, 15.0, 42.0, 95.0, 200.0, 320.0, 610.0)) for _ in range(stalls)]
    stall_starts = sorted(rng.uniform(0.05, 0.95) * DURATION for _ in range(stalls))
    for i in range(1, len(stall_starts)):
        stall_starts[i] = max(stall_starts[i], stall_starts[i - 1] + stall_lengths[i - 1] + 60)
    gaps: list[dict] = []
    end = start + timedelta(seconds=DURATION)
    t = start
    last_tick: datetime | None = None
    elapsed = 0.0
    idx = 0
    errors_at = 0
    with open(out_path, "w", encoding="utf-8", newline="\n") as fh:
        w = Writer(fh)
        w.emit(
            f"-- Logs begin at {DAYS[start.weekday()]} {start:%Y-%m-%d %H:%M:%S} UTC, end at "
            f"{DAYS[end.weekday()]} {end:%Y-%m-%d %H:%M:%S} UTC. --"
        )
        while t < end:
            w.emit(_frame(t) + "I" + _klog_head(t) + ' generic.go:191] "GenericPLEG: Relisting"')
            last_tick = t
            r = rng.random()
            interval = 1.0 + (rng.uniform(0.001, 0.03) if r < 0.97 else rng.uniform(0.2, 1.5))
            # keep the size on target: more or fewer routine lines as the bytes so far say
            want = gen.size * (elapsed + interval) / DURATION
            have = w.written + w.pending
            gen.adjust = min(2.0, max(0.5, gen.adjust * (1.02 if have < want else 0.98)))
            gen.second(w, t, elapsed, scale=interval)
            elapsed += interval
            t = t + timedelta(seconds=interval)
            if idx < len(stall_starts) and elapsed >= stall_starts[idx]:
                length = stall_lengths[idx]
                idx += 1
                _stall(w, gen, last_tick, elapsed, length)
                t = last_tick + timedelta(seconds=length)
                elapsed += length - interval
                gaps.append(
                    {
                        "start": last_tick.isoformat(),
                        "end": t.isoformat(),
                        "seconds": round((t - last_tick).total_seconds(), 6),
                    }
                )
        w.flush()
        errors_at = w.written
    truth = {
        "file": out_path,
        "bytes": errors_at,
        "gap_threshold_seconds": 3.0,
        "first": start.isoformat(),
        "last": last_tick.isoformat() if last_tick else None,
        "gaps": gaps,
    }
    if truth_path:
        with open(truth_path, "w", encoding="utf-8") as out:
            json.dump(truth, out, indent=1)
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=70.0, help="approximate output size in MB (1e6 bytes)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--truth", help="where to write the injected gaps (JSON)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--stalls", type=int, default=6)
    ap.add_argument("--start", default="2023-06-15T00:00:00", help="UTC start of the 24 h")
    args = ap.parse_args(argv)
    if not math.isfinite(args.size_mb) or args.size_mb <= 0:
        ap.error("--size-mb must be positive")
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    truth = generate(args.size_mb, args.out, args.truth, args.seed, args.stalls, start)
    print(f"wrote {truth['bytes']} bytes, {len(truth['gaps'])} injected gaps -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
