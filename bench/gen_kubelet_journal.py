#!/usr/bin/env python3
"""Generate a realistic kubelet journal with PLEG stalls of known length (benchmark input).

The output looks like `journalctl -u kubelet -o short` of a kubelet running at -v=5:
journald short framing around klog lines, one `"GenericPLEG: Relisting"` every ~1.0 s
(relist period 1 s + a relist duration with jitter, occasionally slow but always well
under 3 s), many realistic lines of other kubelet messages (sync loop, probes, PLEG state
changes, volume manager, eviction manager, errors), and injected stalls during which
relisting stops. Stalls longer than 2 minutes get what a real kubelet logs meanwhile:
CRI DeadlineExceeded failures, `GenericPLEG: Unable to retrieve pods`, and after 3
minutes `Skipping pod synchronization` with `PLEG is not healthy` and `Node became not
ready`. The truth file lists every injected gap (last tick before, first tick after).

    python bench/gen_kubelet_journal.py --size 500M --out /tmp/kubelet.log --truth /tmp/kubelet.truth.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta

HOST = "node-7"
PID = 1679
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

PODS = [
    ("default", "web-5d9c7f6c8b-x2x7q", "3f2c9a51-7d1e-4c3b-9a77-0c5f1e2d8b11"),
    ("default", "api-7f9a1c2e05-q8wmr", "a1b2c3d4-1111-4a2b-8c3d-9e8f7a6b5c4d"),
    ("kube-system", "coredns-5d78c9869d-8xk2p", "0d6e1f2a-2222-4b3c-9d4e-8f7a6b5c4d3e"),
    ("kube-system", "kube-proxy-hx9zt", "5e4d3c2b-3333-4c4d-8e5f-7a6b5c4d3e2f"),
    ("monitoring", "node-exporter-6qfzl", "9a8b7c6d-4444-4d5e-9f6a-6b5c4d3e2f1a"),
    ("batch", "etl-28153920-t6k2m", "1c2d3e4f-5555-4e6f-8a7b-5c4d3e2f1a0b"),
]


def _cid(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _noise_templates() -> list[tuple[float, str]]:
    """(weight, format) pairs; {f} = klog file:line prefix pieces are in the format."""
    return [
        (6.0, 'I{h} kubelet.go:2229] "SyncLoop (housekeeping)"'),
        (3.0, 'I{h} kubelet_pods.go:1082] "Clean up pod workers for terminated pods"'),
        (3.0, 'I{h} kubelet_pods.go:1111] "Clean up probes for terminated pods"'),
        (3.0, 'I{h} kubelet_pods.go:1148] "Clean up orphaned pod statuses"'),
        (2.0, 'I{h} kubelet_pods.go:1169] "Clean up orphaned pod directories"'),
        (2.0, 'I{h} kubelet_pods.go:1180] "Clean up orphaned mirror pods"'),
        (2.0, 'I{h} kubelet_pods.go:1187] "Clean up orphaned pod user namespace allocations"'),
        (5.0, 'I{h} kubelet.go:2223] "SyncLoop (SYNC) pods" total=1 pods=["{ns}/{pod}"]'),
        (
            5.0,
            'I{h} pod_workers.go:963] "Notifying pod of pending update" pod="{ns}/{pod}" podUID="{uid}" workType=sync',
        ),
        (5.0, 'I{h} pod_workers.go:1225] "Processing pod event" pod="{ns}/{pod}" podUID="{uid}" updateType=0'),
        (4.0, 'I{h} kubelet.go:1710] "SyncPod enter" pod="{ns}/{pod}" podUID="{uid}"'),
        (
            4.0,
            'I{h} kubelet_pods.go:1612] "Generating pod status" podIsTerminal=false pod="{ns}/{pod}"',
        ),
        (
            4.0,
            'I{h} kuberuntime_manager.go:1013] "computePodActions got for pod" podActions="KillPod: false, '
            "CreateSandbox: false, UpdatePodResources: false, Attempt: 0, InitContainersToStart: [], "
            "ContainersToStart: [], EphemeralContainersToStart: [],ContainersToUpdate: map[], ContainersToKill: "
            'map[]" pod="{ns}/{pod}"',
        ),
        (3.0, 'I{h} kubelet.go:1716] "SyncPod exit" pod="{ns}/{pod}" podUID="{uid}" isTerminal=false'),
        (
            4.0,
            'I{h} status_manager.go:984] "Status for pod is up-to-date; skipping" podUID="{uid}"',
        ),
        (
            3.0,
            'I{h} volume_manager.go:448] "Waiting for volumes to attach and mount for pod" pod="{ns}/{pod}"',
        ),
        (3.0, 'I{h} volume_manager.go:475] "All volumes are attached and mounted for pod" pod="{ns}/{pod}"'),
        (
            3.0,
            'I{h} prober.go:107] "Probe succeeded" probeType="Readiness" pod="{ns}/{pod}" podUID="{uid}" '
            'containerName="app"',
        ),
        (
            2.0,
            'I{h} prober.go:107] "Probe succeeded" probeType="Liveness" pod="{ns}/{pod}" podUID="{uid}" '
            'containerName="app"',
        ),
        (
            2.0,
            'I{h} generic.go:224] "GenericPLEG" podUID="{uid}" containerID="{cid}" oldState="running" '
            'newState="running"',
        ),
        (1.0, 'I{h} eviction_manager.go:292] "Eviction manager: synchronize housekeeping"'),
        (
            1.0,
            'I{h} helpers.go:891] "Eviction manager: observations" signal="memory.available" '
            'available="5873068Ki" capacity="8148204Ki" time="{iso}"',
        ),
        (
            1.0,
            'I{h} helpers.go:891] "Eviction manager: observations" signal="nodefs.available" '
            'available="30287312Ki" capacity="101445540Ki" time="{iso}"',
        ),
        (1.0, 'I{h} eviction_manager.go:395] "Eviction manager: no resources are starved"'),
        (
            1.0,
            'I{h} reconciler_common.go:258] "operationExecutor.VerifyControllerAttachedVolume started for '
            'volume \\"kube-api-access-7xg2k\\" (UniqueName: \\"kubernetes.io/projected/{uid}-kube-api-access-7xg2k'
            '\\") pod \\"{pod}\\" (UID: \\"{uid}\\") " pod="{ns}/{pod}"',
        ),
        (
            0.5,
            'I{h} kubelet.go:2441] "SyncLoop (PLEG): event for pod" pod="{ns}/{pod}" '
            'event={{"ID":"{uid}","Type":"ContainerStarted","Data":"{cid}"}}',
        ),
        (0.5, 'I{h} kubelet.go:2536] "SyncLoop (probe)" probe="readiness" status="ready" pod="{ns}/{pod}"'),
        (
            0.3,
            'W{h} reflector.go:535] object-"{ns}"/"kube-root-ca.crt": watch of *v1.ConfigMap ended with: an '
            'error on the server ("unable to decode an event from the watch stream: http2: client connection '
            'lost") has prevented the request from succeeding',
        ),
        (
            0.3,
            'E{h} pod_workers.go:1300] "Error syncing pod, skipping" err="failed to \\"StartContainer\\" for '
            '\\"app\\" with CrashLoopBackOff: \\"back-off 5m0s restarting failed container=app pod={pod}_{ns}'
            '({uid})\\"" pod="{ns}/{pod}" podUID="{uid}"',
        ),
        (
            0.2,
            'W{h} container.go:586] Failed to update stats for container "/kubepods/burstable/pod{uid}/{cid}": '
            "failed to get container info",
        ),
        (
            0.01,
            "I{h} fsHandler.go:135] fs: disk usage and inodes count on following dirs took 1.262610491s: "
            "[/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/231/fs /var/log/pods/{ns}_{pod}_"
            "{uid}]; will not log again for this container unless duration exceeds 2s",
        ),
    ]


def _frame(t: datetime) -> str:
    return f"{MONTHS[t.month - 1]} {t.day:02d} {t:%H:%M:%S} {HOST} kubelet[{PID}]: "


def _klog_head(t: datetime) -> str:
    # klog: MMDD hh:mm:ss.uuuuuu, then the pid right-aligned in 7 columns
    return f"{t.month:02d}{t.day:02d} {t:%H:%M:%S}.{t.microsecond:06d} {PID:7d}"


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if text.endswith(suffix):
            text, mult = text[:-1], m
            break
    return int(float(text) * mult)


def generate(size: int, out_path: str, truth_path: str, seed: int, stalls: int, start: datetime) -> dict:
    rng = random.Random(seed)
    templates = _noise_templates()
    weights = [w for w, _ in templates]
    formats = [f for _, f in templates]
    cids = [_cid(rng) for _ in range(12)]
    # Estimate the log's duration from its size so stalls spread over the whole file.
    est_bytes_per_second = 36 * 235
    est_seconds = size / est_bytes_per_second
    stall_lengths = [rng.choice((4.5, 8.0, 15.0, 42.0, 95.0, 200.0, 320.0)) for _ in range(stalls)]
    stall_starts = sorted(rng.uniform(0.05, 0.95) * est_seconds for _ in range(stalls))
    # keep stalls apart
    for i in range(1, len(stall_starts)):
        stall_starts[i] = max(stall_starts[i], stall_starts[i - 1] + stall_lengths[i - 1] + 60)
    truth_gaps: list[dict] = []
    written = 0
    t = start
    last_tick: datetime | None = None
    stall_idx = 0
    buf: list[str] = []
    buf_bytes = 0
    with open(out_path, "w", encoding="utf-8", newline="\n") as out:

        def emit(line: str) -> None:
            nonlocal buf_bytes, written
            buf.append(line)
            buf_bytes += len(line) + 1
            if buf_bytes > 1 << 20:
                out.write("\n".join(buf) + "\n")
                written += buf_bytes
                buf.clear()
                buf_bytes = 0

        def noise(at: datetime, n: int) -> None:
            offsets = sorted(rng.randrange(0, 900_000) for _ in range(n))
            for fmt, off in zip(rng.choices(formats, weights, k=n), offsets, strict=True):
                ns, pod, uid = rng.choice(PODS)
                tt = at + timedelta(microseconds=off)
                emit(
                    _frame(tt)
                    + fmt.format(
                        h=_klog_head(tt),
                        ns=ns,
                        pod=pod,
                        uid=uid,
                        cid=rng.choice(cids),
                        iso=tt.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC"),
                    )
                )

        elapsed = 0.0
        while written + buf_bytes < size:
            # one relist tick
            tick = t
            emit(_frame(tick) + "I" + _klog_head(tick) + ' generic.go:191] "GenericPLEG: Relisting"')
            last_tick = tick
            # relist duration: mostly a few ms, sometimes slow (but interval stays < 2.6 s)
            r = rng.random()
            duration = rng.uniform(0.001, 0.03) if r < 0.97 else rng.uniform(0.2, 1.5)
            interval = 1.0 + duration
            noise(tick, rng.randint(28, 44))
            elapsed += interval
            t = tick + timedelta(seconds=interval)
            if stall_idx < len(stall_starts) and elapsed >= stall_starts[stall_idx]:
                length = stall_lengths[stall_idx]
                stall_idx += 1
                _stall(emit, noise, rng, last_tick, length, cids)
                t = last_tick + timedelta(seconds=length)
                elapsed += length
                truth_gaps.append(
                    {
                        "start": last_tick.isoformat(),
                        "end": t.isoformat(),
                        "seconds": round((t - last_tick).total_seconds(), 6),
                    }
                )
        if buf:
            out.write("\n".join(buf) + "\n")
            written += buf_bytes
    truth = {
        "file": out_path,
        "bytes": written,
        "gap_threshold_seconds": 3.0,
        "first": start.isoformat(),
        "last": last_tick.isoformat() if last_tick else None,
        "gaps": truth_gaps,
    }
    with open(truth_path, "w", encoding="utf-8") as fh:
        json.dump(truth, fh, indent=1)
    return truth


def _stall(emit, noise, rng: random.Random, last_tick: datetime, length: float, cids: list[str]) -> None:
    """Lines a kubelet writes while relisting is stuck for `length` seconds."""
    second = 1.0
    pleg_unhealthy_logged = False
    backoff = 0.1
    next_skip = 180.0
    while second < length - 0.5:
        at = last_tick + timedelta(seconds=second)
        noise(at, rng.randint(8, 14))  # the sync loop, probes and housekeeping keep logging
        if abs(second - 120.0) < 0.5:
            emit(
                _frame(at)
                + "E"
                + _klog_head(at)
                + ' remote_runtime.go:390] "ListContainers with filter from runtime service failed" '
                'err="rpc error: code = DeadlineExceeded desc = context deadline exceeded" '
                'filter="&ContainerFilter{Id:,State:nil,PodSandboxId:,LabelSelector:map[string]string{},}"'
            )
            emit(
                _frame(at) + "E" + _klog_head(at) + ' generic.go:238] "GenericPLEG: Unable to retrieve pods" '
                'err="rpc error: code = DeadlineExceeded desc = context deadline exceeded"'
            )
        if second >= next_skip:
            ago = second + rng.uniform(0.001, 0.009)
            mins, secs = divmod(ago, 60)
            emit(
                _frame(at)
                + "E"
                + _klog_head(at)
                + ' kubelet.go:2359] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen '
                f'active {int(mins)}m{secs:.9f}s ago; threshold is 3m0s"'
            )
            backoff = min(backoff * 2, 5.0)
            next_skip = second + backoff
            if not pleg_unhealthy_logged:
                pleg_unhealthy_logged = True
                emit(
                    _frame(at)
                    + "I"
                    + _klog_head(at)
                    + ' setters.go:552] "Node became not ready" node="'
                    + HOST
                    + '" condition={"type":"Ready","status":"False","lastHeartbeatTime":"'
                    + at.strftime("%Y-%m-%dT%H:%M:%SZ")
                    + '","lastTransitionTime":"'
                    + at.strftime("%Y-%m-%dT%H:%M:%SZ")
                    + '","reason":"KubeletNotReady","message":"PLEG is not healthy: pleg was last seen active '
                    f'{int(mins)}m{secs:.9f}s ago; threshold is 3m0s"}}'
                )
        second += 1.0
    if pleg_unhealthy_logged:
        at = last_tick + timedelta(seconds=length - 0.01)
        emit(
            _frame(at)
            + "I"
            + _klog_head(at)
            + ' kubelet_node_status.go:687] "Recording event message for node" node="'
            + HOST
            + '" event="NodeReady"'
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="500M", help="approximate output size (e.g. 500M, 2G)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--seed", type=int, default=8698)
    ap.add_argument("--stalls", type=int, default=12)
    ap.add_argument("--start", default="2023-06-15T00:00:00", help="UTC start (no year rollover by default)")
    args = ap.parse_args(argv)
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    truth = generate(parse_size(args.size), args.out, args.truth, args.seed, args.stalls, start)
    print(f"wrote {truth['bytes']} bytes, {len(truth['gaps'])} injected gaps -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
