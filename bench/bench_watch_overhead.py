"""Overhead of `pleg-doctor watch` at a 1 s period against a real containerd with 100 containers.

    sudo .venv/bin/python bench/bench_watch_overhead.py [--containers 100] [--seconds 60]

Starts a docker-registry and a containerd (testbed, unique dirs and sockets), runs 25 hostNetwork
pods x 4 busybox `sleep` containers, then measures over the same window:
  - `pleg-doctor watch --period 1s` (a subprocess, scraped every 15 s like Prometheus would):
    CPU time / wall time (% of one core) and RSS (VmRSS, VmHWM);
  - a peer: a bare Python loop making the same two CRI calls every second with the same client
    (what any probe must pay), so the ratio shows what samplers + metrics add;
  - containerd's own CPU serving the probes.
Target (issue #5): watch < 1 % of one core and < 80 MB RSS. Everything is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
import urllib.request

from plegdoctor.live.cri.client import CRIClient, container_config, host_network_sandbox_config
from plegdoctor.testbed import procs
from plegdoctor.testbed.containerd import ContainerdProcess, ContainerdSpec
from plegdoctor.testbed.registry import RegistryProcess, free_port, push_busybox, push_pause

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_kib(pid: int) -> tuple[int, int]:
    vals = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0])
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


PEER = textwrap.dedent(
    """
    import sys, time
    from plegdoctor.live.cri.client import CRIClient
    c = CRIClient(sys.argv[1])
    while True:
        t = time.monotonic()
        c.list_pod_sandbox(timeout=120); c.list_containers(timeout=120)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--per-pod", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_watch_overhead: needs root (containerd)")
    started: list[int] = []
    with RegistryProcess.temporary() as reg:
        pause, busybox = push_pause(reg.url), push_busybox(reg.url)
        spec = ContainerdSpec.temporary(sandbox_image=pause, registry_hosts=[reg.host])
        with ContainerdProcess(spec) as ctd:
            client = CRIClient(ctd.endpoint, timeout=60)
            client.pull_image(busybox)
            t0 = time.monotonic()
            n = 0
            pod = 0
            while n < args.containers:
                sc = host_network_sandbox_config(f"bench-{pod}", cgroup_parent=spec.cgroup_parent)
                sid = client.run_pod_sandbox(sc)
                for i in range(min(args.per_pod, args.containers - n)):
                    cc = container_config(f"c{i}", busybox, command=["/bin/sleep"], args=["3600"])
                    client.start_container(client.create_container(sid, cc, sc))
                    n += 1
                pod += 1
            print(f"setup: {n} containers in {pod} pods in {time.monotonic() - t0:.1f}s", flush=True)
            assert len(client.list_containers()) == n
            port = free_port()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            watch = subprocess.Popen(
                [sys.executable, "-m", "plegdoctor.cli", "watch", "--listen", f"127.0.0.1:{port}",
                 "--runtime-endpoint", ctd.endpoint, "--period", "1s"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            peer = subprocess.Popen(
                [sys.executable, "-c", PEER, ctd.endpoint],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            started += [watch.pid, peer.pid]
            try:
                time.sleep(5)  # imports, first relists
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                assert f"pleg_doctor_relist_containers {float(n)}" in body, "watch does not see the containers"
                c0 = {p: cpu_seconds(p) for p in (watch.pid, peer.pid, ctd.pid)}
                w0 = time.monotonic()
                next_scrape = w0
                while time.monotonic() - w0 < args.seconds:
                    if time.monotonic() >= next_scrape:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                        next_scrape += 15
                    time.sleep(0.5)
                wall = time.monotonic() - w0
                c1 = {p: cpu_seconds(p) for p in c0}
                pct = {p: 100 * (c1[p] - c0[p]) / wall for p in c0}
                w_rss, w_hwm = rss_kib(watch.pid)
                p_rss, _ = rss_kib(peer.pid)
                print(f"window: {wall:.0f}s at period 1s, {n} containers")
                mb, peak = w_rss / 1024, w_hwm / 1024
                print(f"watch:      cpu {pct[watch.pid]:.2f}% of one core, RSS {mb:.1f} MB (peak {peak:.1f} MB)")
                print(f"peer loop:  cpu {pct[peer.pid]:.2f}% of one core, RSS {p_rss / 1024:.1f} MB")
                ratio = pct[watch.pid] / pct[peer.pid] if pct[peer.pid] > 0 else float("inf")
                print(f"watch/peer cpu ratio: {ratio:.2f}")
                print(f"containerd: cpu {pct[ctd.pid]:.2f}% of one core (serving both probers)")
                ok = pct[watch.pid] < 1.0 and w_hwm / 1024 < 80
                print(f"target (< 1% of one core, < 80 MB RSS): {'met' if ok else 'NOT met'}")
            finally:
                for pid in (watch.pid, peer.pid):
                    procs.terminate(pid, grace=5)


if __name__ == "__main__":
    main()
