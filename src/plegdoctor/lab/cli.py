"""`pleg-doctor lab up|run|down|status`: reproduce the seed stall on a real containerd and measure fixes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import click

from plegdoctor.errors import UserError
from plegdoctor.lab import compare
from plegdoctor.lab.node import DEFAULT_LAB_DIR, LabNode, LabRegistry, cleanup_leftovers
from plegdoctor.lab.state import LabState, alive, deferred_signals, is_mounted, lab_lock, mounts_under
from plegdoctor.lab.variants import PROFILES, Profile, baseline_pair, parse_variant, parse_variants

dir_option = click.option(
    "--dir",
    "lab_dir",
    default=lambda: os.environ.get("PLEG_DOCTOR_LAB_DIR", DEFAULT_LAB_DIR),
    show_default=DEFAULT_LAB_DIR,
    type=click.Path(file_okay=False),
    help="Lab directory: all state, downloads, disk images and results (needs a few GB; not /tmp).",
)


def _say(msg: str) -> None:
    click.echo(f"lab: {msg}", err=True)


def _state(lab_dir: str) -> LabState:
    if os.geteuid() != 0:
        raise UserError("the lab needs root (loop devices, mounts, sysctls)")
    path = Path(lab_dir).resolve()
    if str(path).startswith("/tmp/") or str(path) == "/tmp":
        raise UserError(f"--dir {path}: the lab writes GBs; use a directory on a real disk, not /tmp")
    path.mkdir(parents=True, exist_ok=True)
    return LabState(path)


def _profile(name: str, disk_mbps: float | None, latency: float | None, write_mib: int | None) -> Profile:
    p = PROFILES[name]
    disk = p.disk
    if disk_mbps is not None:
        if disk_mbps <= 0:
            raise UserError("--disk-mbps must be positive")
        disk = dataclasses.replace(disk, mb_per_s=disk_mbps)
    if latency is not None:
        disk = dataclasses.replace(disk, write_latency_ms=latency)
    w = p.workload
    if write_mib is not None:
        if write_mib <= 0:
            raise UserError("--write-mib must be positive")
        w = dataclasses.replace(w, write_mib=write_mib)
        need = (w.writers * write_mib) // 1024 + 4
        if disk.size_gib < need:
            disk = dataclasses.replace(disk, size_gib=need)
    return dataclasses.replace(p, disk=disk, workload=w)


@click.group("lab")
def command() -> None:
    """Reproduce the seed stall on a real containerd with a slow disk, and measure which fix ends it.

    Needs root, FUSE and loop devices, and Debian packages: nbdkit libnbd-bin fuse3 e2fsprogs
    containerd runc docker-registry busybox-static. Newer containerd builds are downloaded with
    apt-get download into the lab directory (the system's apt sources are not touched).
    """


@command.command("up")
@dir_option
@click.option("--variant", default="1.7", show_default=True, help="containerd[+volatile][+nosync][+dirty][+volume].")
@click.option("--containerd", "containerd_path", help="Path of a containerd binary to use (variant 'custom').")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="small", show_default=True)
@click.option("--disk-mbps", type=float, help="Slow disk bandwidth, MB/s.")
@click.option("--disk-latency-ms", type=float, help="Slow disk per-request write latency, ms.")
def up(
    lab_dir: str,
    variant: str,
    containerd_path: str | None,
    profile: str,
    disk_mbps: float | None,
    disk_latency_ms: float | None,
) -> None:
    """Bring up a node (registry, slow disk, containerd) and leave it running for your own tests."""
    from plegdoctor.lab.images import ensure_images
    from plegdoctor.lab.versions import resolve

    state = _state(lab_dir)
    if state.info.get("node"):
        raise UserError(f"a lab node is already up in {state.lab_dir} (pleg-doctor lab down first)")
    v = parse_variant("custom" if containerd_path and variant == "1.7" else variant, containerd_path)
    prof = _profile(profile, disk_mbps, disk_latency_ms, None)
    with lab_lock(state.lab_dir, "up"), deferred_signals():
        try:
            build = resolve(v.containerd, state.lab_dir, _say)
            registry = LabRegistry(state)
            url = registry.up()
            images = ensure_images(url, prof.big)
            node = LabNode(state, build, v, prof.disk, url, images.pause, state.lab_dir / "runs" / "up", _say)
            node.up()
            registry.detach()
            node.detach()
        except BaseException:
            state.teardown(sweep_text=str(state.lab_dir / "run"))
            cleanup_leftovers(state)
            raise
    state.set_info(images={"busybox": images.busybox, "pause": images.pause, "big": images.big})
    click.echo(f"endpoint: {node.endpoint}")
    click.echo(f"crictl:   crictl --runtime-endpoint {node.endpoint} ps")
    click.echo(f"images:   {images.busybox}  {images.big}")
    click.echo(f"stop it:  pleg-doctor lab down --dir {state.lab_dir}")


@command.command("run")
@dir_option
@click.option("--compare", "compare_", is_flag=True, help="Run the profile's matrix of variants side by side.")
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="small",
    show_default=True,
    help="small: 2 variants, 3 x 256 MiB (CI, a few minutes); full: 9 variants, 3 x 1 GiB (an hour).",
)
@click.option("--variants", help="Comma-separated variants, e.g. 1.7,1.7+volatile,2.1+volatile+nosync.")
@click.option("--variant", "single", help="Run one variant (default 1.7 without --compare).")
@click.option("--containerd", "containerd_path", help="Path of a containerd binary (variant name 'custom').")
@click.option("--disk-mbps", type=float, help="Slow disk bandwidth, MB/s (profile default).")
@click.option("--disk-latency-ms", type=float, help="Slow disk per-request write latency, ms.")
@click.option("--write-mib", type=int, help="MiB each writer writes (profile default).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Where to write the SVG plot.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def run(
    lab_dir: str,
    compare_: bool,
    profile: str,
    variants: str | None,
    single: str | None,
    containerd_path: str | None,
    disk_mbps: float | None,
    disk_latency_ms: float | None,
    write_mib: int | None,
    plot_path: str | None,
    output: str,
) -> None:
    """Run the workload on a fresh node per variant, capture and analyze each stall, compare."""
    from plegdoctor.lab.runner import run_matrix

    state = _state(lab_dir)
    if state.info.get("node"):
        raise UserError(f"a lab node from `lab up` is still running in {state.lab_dir} (pleg-doctor lab down first)")
    prof = _profile(profile, disk_mbps, disk_latency_ms, write_mib)
    if variants:
        chosen = parse_variants(variants, containerd_path)
    elif compare_:
        chosen = [parse_variant(v) for v in prof.variants]
    else:
        chosen = [parse_variant(single or ("custom" if containerd_path else "1.7"), containerd_path)]
    if compare_:
        chosen = baseline_pair(chosen)
    with lab_lock(state.lab_dir, "run"), deferred_signals():
        state.load()
        try:
            res = run_matrix(state, chosen, prof, _say, Path(plot_path) if plot_path else None)
        finally:
            errors = state.teardown(sweep_text=str(state.lab_dir / "run"))
            errors += cleanup_leftovers(state)
            for e in errors:
                _say(f"cleanup: {e}")
    if output == "json":
        click.echo(compare.dumps(res.doc), nl=False)
    else:
        click.echo(compare.render_text(res.runs, res.doc), nl=False)
        if res.plot:
            click.echo(f"plot: {res.plot}")
        if res.html:
            click.echo(f"page: {res.html}")
        click.echo(f"results: {res.run_dir}")
    sys.stdout.flush()


@command.command("status")
@dir_option
def status(lab_dir: str) -> None:
    """What the lab has running or changed (from its state file), and whether it is still there."""
    path = Path(lab_dir)
    if not path.exists():
        click.echo(f"no lab directory at {path}")
        return
    state = LabState(path)
    node = state.info.get("node")
    click.echo(f"lab directory: {path}")
    click.echo(
        f"node: {node['variant']} containerd {node['containerd']} at {node['endpoint']}" if node else "node: down"
    )
    if state.info.get("registry"):
        click.echo(f"registry: {state.info['registry']['url']}")
    if not state.resources:
        click.echo("nothing running or changed")
    for r in state.resources:
        if r.kind == "process":
            up_ = "running" if alive(r.pid, r.start_time) else "gone"
            click.echo(f"  process {r.name} pid {r.pid}: {up_}")
        elif r.kind in ("mount", "fuse"):
            click.echo(f"  {r.kind} {r.path}: {'mounted' if is_mounted(r.path) else 'not mounted'}")
        elif r.kind == "loop":
            click.echo(f"  loop {r.path} -> {r.backing}")
        elif r.kind == "sysctl":
            click.echo(f"  sysctl {r.name} changed (old value {r.old_value})")
    extra = [m for m in mounts_under(path) if not any(r.path == m for r in state.resources)]
    for m in extra:
        click.echo(f"  other mount below the lab: {m}")
    runs = sorted((path / "runs").glob("*/compare.txt"))
    if runs:
        click.echo(f"last comparison: {runs[-1]}")
        if runs[-1].with_name("compare.html").is_file():
            click.echo(f"its page: {runs[-1].with_name('compare.html')}")


@command.command("down")
@dir_option
@click.option("--purge", is_flag=True, help="Also delete the lab directory (downloads, images, results).")
@click.option("--force", is_flag=True, help="Go on even if a lab command still holds the directory's lock.")
def down(lab_dir: str, purge: bool, force: bool) -> None:
    """Stop everything the lab started (by PID), unmount, detach loop devices, restore sysctls."""
    path = Path(lab_dir)
    if not path.exists():
        click.echo(f"no lab directory at {path}: nothing to do")
        return
    state = _state(lab_dir)
    with lab_lock(state.lab_dir, "down", force=force), deferred_signals():
        state.load()
        errors = state.teardown(sweep_text=str(state.lab_dir / "run"))
        errors += cleanup_leftovers(state)
        state.info.clear()
        state.save()
    for e in errors:
        click.echo(f"lab down: {e}", err=True)
    left = mounts_under(state.lab_dir)
    if errors or left:
        raise UserError(f"lab down left {len(errors)} errors and {len(left)} mounts; run it again or see above")
    if purge:
        shutil.rmtree(state.lab_dir, ignore_errors=True)
        click.echo(f"removed {state.lab_dir}")
    else:
        for sub in ("disk", "node", "run"):
            with contextlib.suppress(OSError):
                shutil.rmtree(state.lab_dir / sub)
        click.echo(f"lab down: nothing left running in {state.lab_dir} (downloads and results kept; --purge removes)")


@command.command("report")
@dir_option
@click.option("--run", "run_dir", type=click.Path(file_okay=False), help="A run directory (default: the latest).")
@click.option("--reanalyze", is_flag=True, help="Analyze the captured bundles again (after an analyzer update).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Draw the relist plot again (SVG) here.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write the comparison as one self-contained HTML page here (e.g. RUN/compare.html).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def report(
    lab_dir: str, run_dir: str | None, reanalyze: bool, plot_path: str | None, html_path: str | None, output: str
) -> None:
    """Show the comparison of a finished run again (no root needed unless --reanalyze writes)."""
    from plegdoctor.lab.runner import read_series, replot, write_html
    from plegdoctor.lab.runner import reanalyze as do_reanalyze

    if run_dir is None:
        found = sorted(Path(lab_dir).glob("runs/*/compare.json"))
        if not found:
            raise UserError(f"no finished lab run under {lab_dir}/runs")
        run_path = found[-1].parent
    else:
        run_path = Path(run_dir)
    if reanalyze:
        doc = do_reanalyze(run_path, _say).doc
    else:
        try:
            doc = json.loads((run_path / "compare.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {run_path}/compare.json: {exc}") from None
    if plot_path:
        doc["plot"] = str(replot(run_path, Path(plot_path)))
    if html_path:
        try:
            page = write_html(Path(html_path), doc, read_series(run_path, doc))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot write the page {html_path} from {run_path}: {exc}") from None
        doc["html"] = str(page)
    if output == "json":
        click.echo(compare.dumps(doc), nl=False)
        return
    names = set(compare.RunFigures.__slots__)  # type: ignore[attr-defined]
    runs = [compare.RunFigures(**{k: v for k, v in r.items() if k in names}) for r in doc.get("runs", [])]
    click.echo(compare.render_text(runs, doc), nl=False)
    if html_path:
        click.echo(f"page: {doc['html']}")
    click.echo(f"results: {run_path}")
