"""`pleg-doctor collect`: an evidence bundle from this node (design.md "Bundle format").

What it reads: kubelet and containerd logs (journalctl --all when there is a journal, else
the log file containerd writes to, else well-known files), containerd's goroutine dump (pprof
on the debug socket when configured, else SIGUSR1 and /tmp/containerd.<pid>.stacks.log), the
shims' dumps (SIGUSR1 per shim, read back from containerd's log), /proc/pressure, two samples
of /proc/diskstats, meminfo and vmstat, the mount table, the containerd config (its file and
the files it `imports`, read through /proc/<pid>/root), versions (read from the binaries' Go
build info and the CRI Version call), the kernel log (/dev/kmsg), every task's state and wait channel (read from
/proc/<pid>/task/<tid>/{stat,wchan}; the runtime's tasks always, however many tasks the node
has), kernel stacks of D-state tasks and of the runtime's tasks, the runtime processes'
/proc/<pid>/status (TracerPid) and cgroup freezer state, the load average, and the boot time.
A bundle captured by `watch` also records why (manifest `trigger`, plegdoctor.live.trigger).

What it runs: no binary found through /proc or by a process's name, ever (a pod can name a
process `kubelet`; running its binary as root would run the pod's code on the host). The only
commands are fixed system tools at fixed paths (`TRUSTED_TOOLS`: journalctl, and dmesg when
/dev/kmsg is unreadable). The runtime is the process holding the CRI socket (SO_PEERCRED of a
connection to it, else the socket inode), not whatever is named containerd; shims must share
its mount namespace; the kubelet must share PID 1's, and its files are only read.

What it changes on the node: nothing, except the SIGUSR1 dumps it asks for. containerd
writes its dump file itself (`containerd.<pid>.stacks.log` in its TMPDIR, overwritten at each
signal); we leave it there, as a manual SIGUSR1 would. The manifest's `actions` list every
command run (argv, exit, seconds), signal sent (pid, signal, why) and socket call (CRI Version,
ListContainers, pprof, the SO_PEERCRED connect). Every step has a deadline and records its
error in the manifest; a hung runtime never blocks the collection.

Every source is a line of `plegdoctor.live.sources.SOURCES` (member, kind, what it reads, bound,
deadline); this module walks that table in order and offers the `collect` command.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from plegdoctor.errors import UserError
from plegdoctor.live.actions import summarize_actions
from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.cri.client import DEFAULT_ENDPOINT
from plegdoctor.live.samplers import NodeSampler
from plegdoctor.live.samples import RawSample
from plegdoctor.live.sources import SOURCES, CollectOptions, CollectRun

__all__ = ["CollectOptions", "collect_bundle", "command", "default_output", "parse_since"]


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`2h`, `30m`, `90s`, `1d` or an ISO 8601 time -> an aware UTC datetime."""
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
        return now - timedelta(seconds=float(m[1]) * mult)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since: cannot parse {value!r} (use 2h, 30m, 1d or an ISO 8601 time)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def default_output(node: str, directory: str = ".") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node) or "node"
    return str(Path(directory) / f"pleg-doctor-{safe}-{stamp}.tar.gz")


def collect_bundle(
    opts: CollectOptions, sampler: NodeSampler | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Collect everything into `opts.output` (atomic); returns the path. Never raises for one failed step.

    With `sampler` (watch's), the sampled sources' members are its recent series; without, collect
    takes two samples `opts.sample_interval` apart, after the tasks (the moment's evidence first)."""
    say = opts.log or (lambda msg: None)
    output = opts.output or default_output(opts.node)
    since = parse_since(opts.since)
    writer = BundleWriter(output, node=opts.node, extra={"since": since.isoformat(), **(extra or {})})
    run = CollectRun(writer, opts, since, say, samples=lambda: _samples(run, sampler))
    writer.extra["actions"] = run.actions.items  # filled as collect goes; the manifest is written at close
    try:
        for src in SOURCES:
            src.collect(run, src)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _samples(run: CollectRun, sampler: NodeSampler | None) -> Mapping[str, Sequence[RawSample]]:
    def take() -> Mapping[str, Sequence[RawSample]]:
        if sampler is not None:
            sampler.sample()
            return {path: list(h) for path, h in sampler.history.items()}
        own = NodeSampler(keep=2)
        own.sample()
        time.sleep(run.opts.sample_interval)
        own.sample()
        return {path: list(h)[-2:] for path, h in own.history.items()}

    samples: Mapping[str, Sequence[RawSample]] = run.once("samples", take)
    return samples


# -- CLI -------------------------------------------------------------------------------------------
@click.command("collect")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Bundle path (default ./pleg-doctor-<node>-<utc>.tar.gz)."
)
@click.option("--since", default="2h", show_default=True, help="How far back to take logs (2h, 30m, 1d, or ISO 8601).")
@click.option("--no-dump", is_flag=True, help="Do not send SIGUSR1 to containerd and its shims (no goroutine dumps).")
@click.option("--runtime-endpoint", default=DEFAULT_ENDPOINT, show_default=True, help="CRI endpoint of containerd.")
@click.option("--containerd-pid", type=int, help="containerd's PID (default: the one serving --runtime-endpoint).")
@click.option("--debug-socket", help="containerd's debug socket for pprof (default: [debug] address of its config).")
@click.option("--step-timeout", type=float, default=20.0, show_default=True, help="Deadline of each step, seconds.")
def command(
    output: str | None,
    since: str,
    no_dump: bool,
    runtime_endpoint: str,
    containerd_pid: int | None,
    debug_socket: str | None,
    step_timeout: float,
) -> None:
    """Collect an evidence bundle from this node (run as root on the node, or in the DaemonSet).

    Changes nothing on the node except the goroutine dumps it asks for: SIGUSR1 to containerd
    (which writes /tmp/containerd.<pid>.stacks.log itself) and to each containerd-shim (which
    log their dump through containerd). --no-dump skips them. Runs no binary of the node's
    processes (versions are read from their files); the only commands are journalctl (and dmesg
    without /dev/kmsg) at fixed paths. The manifest's `actions` list every command, signal and
    socket call, and so does the last lines of the output.
    """
    parse_since(since)
    if output:
        out_dir = Path(output).resolve().parent
        if not out_dir.is_dir():
            raise UserError(f"output directory {out_dir} does not exist")
        if not os.access(out_dir, os.W_OK):
            raise UserError(f"output directory {out_dir} is not writable")
    opts = CollectOptions(
        output=output,
        since=since,
        dump=not no_dump,
        runtime_endpoint=runtime_endpoint,
        containerd_pid=containerd_pid,
        debug_socket=debug_socket,
        step_timeout=step_timeout,
        log=lambda msg: click.echo(f"pleg-doctor collect: {msg}", err=True),
    )
    try:
        path = collect_bundle(opts)
    except OSError as exc:
        raise UserError(f"cannot write the bundle: {exc.strerror or exc}") from None
    import json
    import tarfile

    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        manifest = json.loads(member.read()) if member else {}
    files = manifest.get("files", [])
    failed = [f for f in files if f.get("error")]
    click.echo(str(path))
    click.echo(
        f"pleg-doctor collect: {len(files) - len(failed)} files, {len(failed)} steps failed (see manifest.json)",
        err=True,
    )
    for change in manifest.get("changes", []):
        click.echo(f"pleg-doctor collect: changed on the node: {change}", err=True)
    # exactly what was run, signalled and called (manifest `actions`), never a vaguer "nothing"
    for line in summarize_actions(manifest.get("actions", [])):
        click.echo(f"pleg-doctor collect: {line}", err=True)
    sys.stdout.flush()
