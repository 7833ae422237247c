"""Run the lab: one variant at a time on a fresh node, evidence captured during the worst stall, analyzed.

For each variant: a new slow disk (so no data of the previous run is flushed in this one), the
variant's containerd and config, the workload (lab.workload), evidence captured with
`live.collect` (the same code as `pleg-doctor collect` and `watch`) while a relist is stalled,
then the node torn down and the bundle analyzed with `pleg-doctor analyze`'s code.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plegdoctor.errors import UserError
from plegdoctor.lab import compare
from plegdoctor.lab.html import render_compare_html
from plegdoctor.lab.images import ensure_images
from plegdoctor.lab.node import LabNode, LabRegistry
from plegdoctor.lab.plot import Series, write_plot
from plegdoctor.lab.state import LabState
from plegdoctor.lab.variants import LINKS, Profile, Variant
from plegdoctor.lab.versions import ContainerdBuild, resolve
from plegdoctor.lab.workload import Workload, WorkloadResult


@dataclass(slots=True)
class MatrixResult:
    run_dir: Path
    runs: list[compare.RunFigures]
    doc: dict[str, Any]
    plot: Path | None
    html: Path | None = None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def capture_bundle(
    node: LabNode, out: Path, log: Callable[[str], None], trigger: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Collect an evidence bundle from the lab node right now (live.collect); `trigger`: the
    manifest's trigger record (Workload.stall_trigger)."""
    from plegdoctor.live.collect import CollectOptions, collect_bundle

    if node.ctd is None:
        return None
    opts = CollectOptions(
        output=str(out),
        since="30m",
        runtime_endpoint=node.endpoint,
        containerd_pid=node.ctd.pid,
        debug_socket=node.spec.debug_address or None,
        step_timeout=20.0,
        dump_timeout=10.0,
        node="pleg-doctor-lab",
        log=lambda msg: None,
    )
    t0 = time.monotonic()
    try:
        path = collect_bundle(opts, extra={"trigger": trigger} if trigger else None)
    except Exception as exc:  # a failed capture must not end the measurement
        log(f"evidence capture failed: {exc}")
        return {"error": str(exc)}
    log(f"evidence captured in {time.monotonic() - t0:.1f}s: {path}")
    return {"bundle": str(path), "capture_seconds": round(time.monotonic() - t0, 2)}


def diagnose_bundle(bundle: str) -> tuple[str, str, list[str]]:
    """(top class, its summary, all classes) from `pleg-doctor analyze`'s code."""
    from plegdoctor.pipeline import analyze_paths

    diag = analyze_paths([bundle])
    classes = [str(rc.cls) for rc in diag.root_causes]
    top = diag.top
    return (str(top.cls) if top else "", top.summary if top else "", classes)


def run_variant(
    state: LabState,
    variant: Variant,
    build: ContainerdBuild,
    profile: Profile,
    registry_url: str,
    images: Any,
    run_dir: Path,
    log: Callable[[str], None],
) -> tuple[compare.RunFigures, WorkloadResult | None]:
    vdir = run_dir / variant.name.replace("/", "_")
    vdir.mkdir(parents=True, exist_ok=True)
    wspec = replace(profile.workload, writers_on_volume=variant.writers_on_volume)
    node = LabNode(state, build, variant, profile.disk, registry_url, images.pause, vdir, log)
    result: WorkloadResult | None = None
    error = ""
    disk_speed = 0.0
    captures = 0
    wl: Workload | None = None

    def on_stall(inflight: float) -> dict[str, Any] | None:
        nonlocal captures
        captures += 1
        log(f"relist stalled for {inflight:.1f}s: capturing evidence")
        return capture_bundle(node, vdir / f"stall-{captures}.tar.gz", log, wl.stall_trigger() if wl else None)

    try:
        node.up()
        disk_speed = profile.disk.mb_per_s
        wl = Workload(
            node.endpoint,
            node.spec.address,
            wspec,
            images.busybox,
            images.big,
            vdir,
            cgroup_parent=node.spec.cgroup_parent,
            on_stall=on_stall,
            log=log,
        )
        result = wl.run()
    except (UserError, RuntimeError, OSError) as exc:
        error = str(exc)
        log(f"{variant.name}: failed: {error}")
    finally:
        errs = node.down()
        for e in errs:
            log(f"cleanup: {e}")
        # the writers' volumes only held filler data (GBs on the fast disk)
        shutil.rmtree(vdir / "volumes", ignore_errors=True)
    if result is None:
        f = compare.RunFigures(variant.name, build.version, variant.volatile, variant.mitigations, error=error)
        return f, None
    f = compare.figures(variant.name, build.version, variant.volatile, variant.mitigations, result)
    f.disk_mb_per_s = disk_speed
    (vdir / "records.json").write_text(json.dumps(asdict(result)))
    bundles = [c["bundle"] for c in result.captures if c.get("bundle")]
    if bundles:
        f.bundles = bundles
        f.bundle = bundles[-1]
        f.expected_mechanism = compare.expected_mechanism(f)
        try:
            f.diagnosis, f.diagnosis_summary, f.diagnosis_classes = diagnose_bundle(f.bundle)
        except Exception as exc:  # analysis of one bundle must not lose the measurements
            f.notes.append(f"analyze failed: {type(exc).__name__}: {exc}")
        if f.diagnosis:
            f.diagnosis_matches = f.diagnosis in compare.COMPATIBLE.get(f.expected_mechanism, {f.expected_mechanism})
    (vdir / "figures.json").write_text(json.dumps(f.to_json(), indent=1))
    return f, result


def run_matrix(
    state: LabState,
    variants: list[Variant],
    profile: Profile,
    log: Callable[[str], None],
    plot_path: Path | None = None,
) -> MatrixResult:
    run_dir = state.lab_dir / "runs" / _stamp()
    run_dir.mkdir(parents=True, exist_ok=True)
    builds: dict[str, ContainerdBuild] = {}
    for v in variants:
        if v.containerd not in builds:
            builds[v.containerd] = resolve(v.containerd, state.lab_dir, log)
    registry = LabRegistry(state)
    started_registry = "registry" not in state.info
    url = registry.up()
    log(f"registry {url}; building images (big image {profile.big.layers} x {profile.big.layer_mib} MiB)")
    images = ensure_images(url, profile.big)
    runs: list[compare.RunFigures] = []
    series: list[tuple[str, list[tuple[float, float]]]] = []
    try:
        for v in variants:
            build = builds[v.containerd]
            log(f"== {v.name} (containerd {build.version}, {v.describe()})")
            f, res = run_variant(state, v, build, profile, url, images, run_dir, log)
            runs.append(f)
            if res is not None:
                series.append((v.name, [(r.start - res.stall_start, r.seconds) for r in res.relists]))
                log(
                    f"{v.name}: worst relist {f.relist_max_seconds:.1f}s, blocked {f.relist_blocked_seconds:.1f}s, "
                    f"StopContainer max {f.stop_container_max_seconds:.1f}s, diagnosis {f.diagnosis or '-'}"
                )
    finally:
        if started_registry:
            registry.down()
    w = profile.workload
    meta: dict[str, Any] = {
        "title": f"pleg-doctor lab, profile {profile.name}",
        "disk": f"slow disk: {profile.disk.mb_per_s:g} MB/s, write latency {profile.disk.write_latency_ms:g} ms "
        f"(nbdkit rate/delay over nbdfuse + loop, ext4)",
        "workload": f"workload: {w.writers} writers x {w.write_mib} MiB, {w.stop} stopped, UpdateContainerResources "
        f"every {w.update_period_s:g}s, pull of {profile.big.layers} x {profile.big.layer_mib} MiB, relist every "
        f"{w.relist_period_s:g}s",
        "profile": profile.name,
        "run_dir": str(run_dir),
        "links": dict(LINKS),
    }
    plot = None
    if series:
        plot = write_plot(plot_path or run_dir / "relist-latency.svg", series, title=meta["title"])
        meta["plot"] = str(plot)
    doc = compare.to_json(runs, meta)
    (run_dir / "compare.json").write_text(compare.dumps(doc))
    (run_dir / "compare.txt").write_text(compare.render_text(runs, meta))
    page: Path | None = None
    try:
        page = write_html(run_dir / "compare.html", doc, series)
    except Exception as exc:  # the page must not lose a finished run's printed results
        log(f"compare.html not written: {type(exc).__name__}: {exc}")
    return MatrixResult(run_dir, runs, doc, plot, page)


def reanalyze(run_dir: Path, log: Callable[[str], None]) -> MatrixResult:
    """Re-read a finished run (figures.json per variant), analyze its bundles again, re-render."""
    doc_path = run_dir / "compare.json"
    if not doc_path.is_file():
        raise UserError(f"{run_dir} holds no compare.json (not a finished lab run)")
    old = json.loads(doc_path.read_text())
    runs: list[compare.RunFigures] = []
    names = set(compare.RunFigures.__slots__)  # type: ignore[attr-defined]
    for item in old.get("runs", []):
        f = compare.RunFigures(**{k: v for k, v in item.items() if k in names})
        if f.bundle and Path(f.bundle).is_file():
            f.notes = [n for n in f.notes if not n.startswith("analyze failed")]
            try:
                f.diagnosis, f.diagnosis_summary, f.diagnosis_classes = diagnose_bundle(f.bundle)
            except Exception as exc:
                f.notes.append(f"analyze failed: {type(exc).__name__}: {exc}")
            if f.diagnosis:
                f.expected_mechanism = f.expected_mechanism or compare.expected_mechanism(f)
                f.diagnosis_matches = f.diagnosis in compare.COMPATIBLE.get(f.expected_mechanism, set())
            log(f"{f.variant}: {f.diagnosis or 'no diagnosis'}")
        runs.append(f)
    meta = {k: v for k, v in old.items() if k not in ("runs", "best")}
    doc = compare.to_json(runs, meta)
    doc_path.write_text(compare.dumps(doc))
    (run_dir / "compare.txt").write_text(compare.render_text(runs, meta))
    page = write_html(run_dir / "compare.html", doc, read_series(run_dir, doc))
    plot = Path(meta["plot"]) if meta.get("plot") else None
    return MatrixResult(run_dir, runs, doc, plot, page)


def read_series(run_dir: Path, doc: dict[str, Any]) -> Series:
    """The relist series of a finished run, from its records.json files (a variant without one is left out)."""
    series: Series = []
    for item in doc.get("runs", []):
        records = run_dir / str(item["variant"]).replace("/", "_") / "records.json"
        if not records.is_file():
            continue
        rec = json.loads(records.read_text())
        stall = float(rec.get("stall_start", 0.0))
        series.append((item["variant"], [(r["start"] - stall, r["seconds"]) for r in rec.get("relists", [])]))
    return series


def write_html(out: Path, doc: dict[str, Any], series: Series) -> Path:
    """The comparison as one self-contained HTML page (lab.html)."""
    out.write_text(render_compare_html(doc, series, page_dir=str(out.resolve().parent)), encoding="utf-8")
    return out


def replot(run_dir: Path, out: Path, title: str = "") -> Path:
    """Draw the relist plot of a finished run again from its records.json files."""
    doc = json.loads((run_dir / "compare.json").read_text())
    series = read_series(run_dir, doc)
    if not series:
        raise UserError(f"{run_dir} holds no records.json to plot")
    return write_plot(out, series, title=title or str(doc.get("title", "")))
