"""A real containerd frozen with SIGSTOP under `pleg-doctor watch`, scraped by a real Prometheus.

    sudo .venv/bin/python bench/bench_sigstop.py [--duration 600] [--scrape-every 2] [--no-prometheus]

Starts a containerd (testbed: own root, state, socket and TMPDIR under a temporary dir),
`pleg-doctor watch` against it (metrics on 127.0.0.1, captures into the temporary dir), and,
when `prometheus` is installed, a Prometheus scraping watch every 5 s as job
"pleg-doctor/pleg-doctor" and evaluating deploy/prometheusrule.yaml. Then:

  1. waits for runtime_up 1, SIGSTOPs containerd for --duration seconds;
  2. scrapes /metrics every --scrape-every seconds throughout (each within a 5 s deadline):
     every failed or late scrape is counted, and must be 0;
  3. checks: stalled 1, runtime_up 0, seconds_since_success grows with the stall, exactly one
     bundle captured, the PlegDoctorRuntimeStalled expression true on the scraped values, and
     (with Prometheus) which alerts fired and when;
  4. SIGCONTs containerd and checks recovery: stalled 0 and runtime_up 1 within 60 s.

Prints a summary; exit status 0 when every check holds, 1 otherwise. Everything started here
is stopped by PID (containerd gets SIGCONT first) in `finally`, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from plegdoctor.testbed.containerd import ContainerdProcess, ContainerdSpec
from plegdoctor.testbed.registry import free_port

ROOT = Path(__file__).resolve().parent.parent
JOB = "pleg-doctor/pleg-doctor"  # the PodMonitor's job name: the agent alerts select it
SCRAPE_DEADLINE = 5.0


def scrape(port: int) -> tuple[dict[str, float], float]:
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_DEADLINE) as resp:
        text = resp.read().decode()
    took = time.monotonic() - t0
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out, took


def runtime_stalled_expr(m: dict[str, float]) -> bool:
    """PlegDoctorRuntimeStalled's expression, evaluated on one scrape."""
    rule = yaml.safe_load((ROOT / "deploy" / "prometheusrule.yaml").read_text())
    expr = next(
        r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "PlegDoctorRuntimeStalled"
    )
    assert expr == "pleg_doctor_relist_seconds_since_success > 60 or pleg_doctor_relist_in_flight_seconds > 60", expr
    return (
        m.get("pleg_doctor_relist_seconds_since_success", 0) > 60
        or m.get("pleg_doctor_relist_in_flight_seconds", 0) > 60
    )


class Prometheus:
    def __init__(self, base: Path, target_port: int):
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        rule = yaml.safe_load((ROOT / "deploy" / "prometheusrule.yaml").read_text())
        (base / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s", "scrape_timeout": "4s"},
            "rule_files": [str(base / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"], "labels": {"instance": "bench-node"}}],
                }
            ],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary
        self.log = open(self.base / "prometheus.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.base / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).read()
                return
            time.sleep(0.3)
        raise RuntimeError("prometheus not ready after 30 s")

    def query(self, q: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as resp:
            return list(json.load(resp)["data"]["result"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(AttributeError):
            self.log.close()


def stop_pid(proc: subprocess.Popen[bytes] | None, grace: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def vm_hwm_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds containerd stays stopped")
    ap.add_argument("--scrape-every", type=float, default=2.0)
    ap.add_argument("--stall-threshold", default="5s")
    ap.add_argument("--no-prometheus", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary dir (logs, bundle)")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        print("needs root and containerd", file=sys.stderr)
        return 2
    use_prom = not args.no_prometheus and shutil.which("prometheus") is not None

    base = Path(tempfile.mkdtemp(prefix="pd-bench-sigstop-"))
    captures = base / "captures"
    ctd = ContainerdProcess(ContainerdSpec.temporary(prefix="pd-bench-ctd-"))
    watch: subprocess.Popen[bytes] | None = None
    watch_log: Any = None
    prom: Prometheus | None = None
    stopped = False
    checks: dict[str, bool] = {}
    figures: dict[str, Any] = {}
    try:
        ctd.start(timeout=30)
        port = free_port()
        watch_log = open(base / "watch.log", "ab")  # noqa: SIM115 (closed in finally)
        watch = subprocess.Popen(
            [
                *(sys.executable, "-m", "plegdoctor.cli", "watch", "--listen", f"127.0.0.1:{port}"),
                *("--runtime-endpoint", ctd.endpoint, "--period", "1s", "--stall-threshold", args.stall_threshold),
                *("--capture-dir", str(captures), "--cooldown", "10m"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=watch_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                m, _ = scrape(port)
                if m.get("pleg_doctor_runtime_up") == 1:
                    break
            if time.monotonic() > deadline or watch.poll() is not None:
                raise RuntimeError(f"watch never saw the runtime up; log: {(base / 'watch.log').read_text()[-2000:]}")
            time.sleep(0.5)
        if use_prom:
            prom = Prometheus(base, port)
            prom.start()
            time.sleep(12)  # two scrapes before the stall
        print(f"containerd pid {ctd.pid}, watch pid {watch.pid} on :{port}; SIGSTOP for {args.duration:g}s", flush=True)

        os.kill(ctd.pid, signal.SIGSTOP)
        stopped = True
        t_stop = time.monotonic()
        n_ok = n_fail = 0
        worst = 0.0
        first_expr: float | None = None
        first_stalled: float | None = None
        alerts_seen: dict[str, float] = {}
        samples: list[dict[str, float]] = []
        next_prom = 0.0
        while (elapsed := time.monotonic() - t_stop) < args.duration:
            try:
                m, took = scrape(port)
                n_ok += 1
                worst = max(worst, took)
                samples.append(m)
                if m.get("pleg_doctor_stalled") == 1 and first_stalled is None:
                    first_stalled = elapsed
                if first_expr is None and runtime_stalled_expr(m):
                    first_expr = elapsed
            except OSError as exc:
                n_fail += 1
                print(f"  scrape failed at {elapsed:.0f}s: {exc}", flush=True)
            if prom is not None and elapsed >= next_prom:
                next_prom = elapsed + 10
                with contextlib.suppress(OSError, KeyError, ValueError):
                    for r in prom.query('ALERTS{alertstate="firing"}'):
                        alerts_seen.setdefault(r["metric"]["alertname"], elapsed)
            time.sleep(max(0.0, args.scrape_every - (time.monotonic() - t_stop - elapsed)))
        last = samples[-1] if samples else {}
        figures["scrapes"] = {"ok": n_ok, "failed": n_fail, "slowest_s": round(worst, 3)}
        figures["first_stalled_s"] = None if first_stalled is None else round(first_stalled, 1)
        figures["runtime_stalled_expr_true_from_s"] = None if first_expr is None else round(first_expr, 1)
        figures["end_of_stall"] = {
            k: last.get(k)
            for k in (
                "pleg_doctor_stalled",
                "pleg_doctor_runtime_up",
                "pleg_doctor_relist_seconds_since_success",
                "pleg_doctor_relist_in_flight_seconds",
                "pleg_doctor_captures_total{result=ok}",
                "pleg_doctor_captures_total{result=failed}",
            )
        }
        figures["alerts_firing_first_seen_s"] = {k: round(v) for k, v in sorted(alerts_seen.items())}
        bundles = sorted(p.name for p in captures.glob("pleg-doctor-*.tar.gz"))
        figures["bundles"] = bundles
        figures["watch_vm_hwm_mib"] = round(vm_hwm_kib(watch.pid) / 1024, 1)
        checks["every scrape answered within 5 s"] = n_fail == 0 and n_ok > 0
        checks["stalled 1 and runtime_up 0 at the end of the stall"] = (
            last.get("pleg_doctor_stalled") == 1 and last.get("pleg_doctor_runtime_up") == 0
        )
        checks["seconds since success covers the stall"] = (
            last.get("pleg_doctor_relist_seconds_since_success", 0) >= args.duration - 2 * args.scrape_every - 1
        )
        checks["exactly one capture"] = len(bundles) == 1
        if args.duration > 62:
            checks["PlegDoctorRuntimeStalled expression true"] = first_expr is not None
        if prom is not None and args.duration > 150:
            checks["Prometheus fired PlegDoctorRuntimeStalled"] = "PlegDoctorRuntimeStalled" in alerts_seen
            checks["Prometheus fired PlegDoctorRuntimeDown"] = "PlegDoctorRuntimeDown" in alerts_seen
            checks["no agent alert fired"] = not {"PlegDoctorAgentDown", "PlegDoctorAgentAbsent"} & set(alerts_seen)

        os.kill(ctd.pid, signal.SIGCONT)
        stopped = False
        t_cont = time.monotonic()
        recovered: float | None = None
        while time.monotonic() - t_cont < 60:
            with contextlib.suppress(OSError):
                m, _ = scrape(port)
                if m.get("pleg_doctor_stalled") == 0 and m.get("pleg_doctor_runtime_up") == 1:
                    recovered = time.monotonic() - t_cont
                    break
            time.sleep(0.5)
        figures["recovered_after_sigcont_s"] = None if recovered is None else round(recovered, 1)
        checks["recovery after SIGCONT (stalled 0, runtime_up 1) within 60 s"] = recovered is not None
        if prom is not None:
            with contextlib.suppress(OSError, KeyError, ValueError):
                figures["prometheus_up"] = [r["value"][1] for r in prom.query(f'up{{job="{JOB}"}}')]
    finally:
        if stopped:
            with contextlib.suppress(OSError):
                os.kill(ctd.pid, signal.SIGCONT)
        if prom is not None:
            prom.stop()
        stop_pid(watch)
        if watch_log is not None:
            watch_log.close()
        ctd.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    print(json.dumps(figures, indent=2))
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if checks and all(checks.values()) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
