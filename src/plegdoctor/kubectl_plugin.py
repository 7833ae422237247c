"""`kubectl pleg-doctor node/NAME`: collect an evidence bundle on a node and diagnose it here.

Installed as the console script `kubectl-pleg_doctor`, which kubectl runs for `kubectl pleg-doctor`
(a dash in a plugin's command is an underscore in its file name). The steps, each a kubectl call
with a deadline (the subprocess is killed at it; API calls also get `--request-timeout`):

1. `kubectl debug node/NAME --image IMG --profile sysadmin --custom SPEC -c pleg-doctor -- sleep N`:
   a pod in the node's PID and network namespaces with the node's root at /host. SPEC (a partial
   container spec) adds read-only mounts of the node's /var/log, /run/log (the journal),
   /etc/machine-id and the CRI socket's directory, through the `host-root` volume kubectl gives
   the pod, so `collect` finds them where it looks on a node. The pod only sleeps: it ends by
   itself after N seconds if this command dies before deleting it.
2. `kubectl wait --for=condition=Ready pod/POD`.
3. `kubectl exec POD -c pleg-doctor -- /opt/pleg-doctor/bin/pleg-doctor collect -o /tmp/... `:
   the image's own pleg-doctor runs, never a binary of the node: no `chroot /host`, nothing found
   through /proc is executed (collect's own rule; the node's /proc is the pod's with hostPID).
4. `kubectl exec POD -c pleg-doctor -- /usr/bin/cat BUNDLE` streamed into a local file (0600).
5. `kubectl delete pod POD --wait=false` unless --keep (also when a step failed or on Ctrl-C).

The bundle is then analyzed here (`pipeline.analyze_paths`) and the report printed. `--dry-run`
prints the commands and the container spec and runs nothing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from plegdoctor import __version__
from plegdoctor.errors import UserError

DEFAULT_IMAGE = f"ghcr.io/pleg-doctor/pleg-doctor:{__version__}"
CONTAINER = "pleg-doctor"
POD_PLACEHOLDER = "<debug-pod>"
REMOTE_BUNDLE = "/tmp/pleg-doctor-bundle.tar.gz"
REMOTE_BINARY = "/opt/pleg-doctor/bin/pleg-doctor"
REMOTE_CAT = "/usr/bin/cat"  # the image's coreutils
REMOTE_SLEEP = "/usr/bin/sleep"
HOST_ROOT_VOLUME = "host-root"  # the hostPath "/" volume kubectl debug gives a node debugging pod
FORMATS = ("text", "json", "markdown", "html")
# `kubectl debug --custom`: beta and on by default from kubectl 1.31; 1.30 needs this (a user's
# own setting wins)
KUBECTL_ENV = {"KUBECTL_DEBUG_CUSTOM_PROFILE": "true"}
NOT_STARTED_HINT = (
    "a node whose container runtime is stuck cannot start the debug pod: read the bundles the "
    "DaemonSet captured (/var/lib/pleg-doctor/captures on the node), or run `pleg-doctor collect` there over SSH"
)
_CREATED = re.compile(r"Creating debugging pod (\S+) with container (\S+)")
_NODE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Options:
    node: str
    image: str = DEFAULT_IMAGE
    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    kubectl: str = "kubectl"
    runtime_endpoint: str = "unix:///run/containerd/containerd.sock"
    since: str = "2h"
    no_dump: bool = False
    pod_timeout: float = 180.0  # image pull + start
    collect_timeout: float = 600.0
    copy_timeout: float = 300.0
    api_timeout: float = 60.0  # kubectl debug, kubectl delete
    lifetime: int = 3600  # the debug pod's sleep: it ends by itself after this

    @property
    def socket_dir(self) -> str:
        path = self.runtime_endpoint.removeprefix("unix://")
        if not path.startswith("/") or ".." in Path(path).parts:
            raise UserError(f"--runtime-endpoint {self.runtime_endpoint!r}: need unix:///absolute/path")
        return str(Path(path).parent)


@dataclass(frozen=True)
class Step:
    """One kubectl call: its argv and its deadline in seconds."""

    what: str
    argv: list[str]
    timeout: float

    def shell(self) -> str:
        return shlex.join(self.argv)


@dataclass
class Plan:
    custom_spec: dict[str, Any]
    custom_path: str
    steps: dict[str, Step] = field(default_factory=dict)


def parse_node(target: str) -> str:
    """`node/NAME`, `nodes/NAME` or `NAME` -> NAME (a DNS subdomain, as Kubernetes node names are)."""
    kind, sep, name = target.partition("/")
    if not sep:
        kind, name = "node", target
    if kind not in ("node", "nodes", "no") or not _NODE.fullmatch(name):
        raise UserError(f"{target!r}: expected node/NAME (a node name, e.g. node/worker-1)")
    return name


def custom_container_spec(opts: Options) -> dict[str, Any]:
    """The partial container spec for `kubectl debug --custom`: read-only mounts of the node's paths
    `collect` reads, at the paths it reads them (subPaths of kubectl's host-root volume).

    A subPath missing on the node is created there by the kubelet as an empty directory: the
    journal directories and the CRI socket's directory exist on every systemd + containerd node."""
    mounts = [
        ("/var/log", "var/log"),  # the persistent journal, or /var/log/<unit>.log without one
        ("/run/log", "run/log"),  # the volatile journal
        ("/etc/machine-id", "etc/machine-id"),  # journalctl picks the node's journal by it
        (opts.socket_dir, opts.socket_dir.lstrip("/")),  # the CRI socket
    ]
    return {
        "volumeMounts": [
            {"name": HOST_ROOT_VOLUME, "mountPath": path, "subPath": sub, "readOnly": True} for path, sub in mounts
        ],
        "env": [{"name": "TMPDIR", "value": "/tmp"}],
    }


def _global(opts: Options) -> list[str]:
    args = [opts.kubectl]
    if opts.kubeconfig:
        args.append(f"--kubeconfig={opts.kubeconfig}")
    if opts.context:
        args.append(f"--context={opts.context}")
    if opts.namespace:
        args.append(f"--namespace={opts.namespace}")
    return args


def build_plan(opts: Options, custom_path: str, pod: str = POD_PLACEHOLDER) -> Plan:
    """Every kubectl call, in order, for debug pod `pod` (a placeholder until kubectl names it)."""
    g = _global(opts)
    api = f"--request-timeout={int(opts.api_timeout)}s"
    collect = [REMOTE_BINARY, "collect", "-o", REMOTE_BUNDLE, "--runtime-endpoint", opts.runtime_endpoint]
    collect += ["--since", opts.since]
    if opts.no_dump:
        collect.append("--no-dump")
    exec_ = [*g, "exec", pod, "-c", CONTAINER, "--"]
    plan = Plan(custom_spec=custom_container_spec(opts), custom_path=custom_path)
    plan.steps = {
        "debug": Step(
            "start the debug pod",
            [
                *(*g, api, "debug", f"node/{opts.node}", "--image", opts.image, "--profile", "sysadmin"),
                *("--custom", custom_path, "-c", CONTAINER, "--", REMOTE_SLEEP, str(opts.lifetime)),
            ],
            opts.api_timeout + 5,
        ),
        "wait": Step(
            "wait for the pod",
            [*g, "wait", "--for=condition=Ready", f"pod/{pod}", f"--timeout={int(opts.pod_timeout)}s"],
            opts.pod_timeout + 15,
        ),
        "collect": Step("collect on the node", [*exec_, *collect], opts.collect_timeout),
        "copy": Step("copy the bundle back", [*exec_, REMOTE_CAT, REMOTE_BUNDLE], opts.copy_timeout),
        "delete": Step(
            "delete the debug pod",
            [*g, api, "delete", "pod", pod, "--ignore-not-found", "--wait=false"],
            opts.api_timeout + 5,
        ),
    }
    return plan


def _run(step: Step, stdout: IO[bytes] | int = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    """Run one kubectl call (the user's kubectl on this workstation, by the name or path given)
    under its deadline; a non-zero exit or the deadline -> UserError naming the step."""
    try:
        proc = subprocess.run(
            step.argv,
            env=KUBECTL_ENV | dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=step.timeout,
            check=False,
        )
    except FileNotFoundError:
        raise UserError(f"{step.argv[0]}: not found (install kubectl or pass --kubectl PATH)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{step.what}: no answer within {step.timeout:.0f} s ({step.shell()})") from None
    if proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        tail = err[-1] if err else f"exit {proc.returncode}"
        raise UserError(f"{step.what} failed: {tail} ({step.shell()})")
    return proc


def _pod_name(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stdout or b"").decode(errors="replace") + (proc.stderr or b"").decode(errors="replace")
    m = _CREATED.search(text)
    if m is None:
        raise UserError(f"kubectl debug did not name its pod: {text.strip()[-200:]!r}")
    return m[1]


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        click.echo(f"kubectl-pleg_doctor: {msg}", err=True)


def fetch_bundle(opts: Options, dest: Path, *, keep: bool = False, quiet: bool = False) -> Path:
    """Steps 1-5: the bundle collected on `opts.node`, saved at `dest`. The debug pod is deleted
    unless `keep`, whatever happened after it was created."""
    with tempfile.TemporaryDirectory(prefix="pleg-doctor-kubectl-") as tmp:
        custom = Path(tmp) / "container.json"
        plan = build_plan(opts, str(custom))
        custom.write_text(json.dumps(plan.custom_spec, indent=2))
        pod = _pod_name(_run(plan.steps["debug"]))
        plan = build_plan(opts, str(custom), pod)
        _say(quiet, f"debug pod {pod} on node {opts.node}")
        try:
            try:
                _run(plan.steps["wait"])
            except UserError as exc:
                raise UserError(f"{exc}; {NOT_STARTED_HINT}") from None
            _say(quiet, "collecting (goroutine dumps, logs, /proc, the runtime's config)")
            _run(plan.steps["collect"])
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                _run(plan.steps["copy"], stdout=fh)
            if dest.stat().st_size == 0:
                raise UserError(f"{plan.steps['copy'].what}: empty bundle ({plan.steps['copy'].shell()})")
        finally:
            if keep:
                _say(quiet, f"kept the debug pod: {plan.steps['delete'].shell()} removes it")
            else:
                try:
                    _run(plan.steps["delete"], stdout=subprocess.DEVNULL)
                except UserError as exc:
                    click.echo(f"kubectl-pleg_doctor: warning: {exc}", err=True)
    return dest


def print_plan(opts: Options, out: IO[str], *, keep: bool = False) -> None:
    plan = build_plan(opts, "<container.json>")
    out.write(f"# {plan.custom_path} (kubectl debug --custom):\n")
    for line in json.dumps(plan.custom_spec, indent=2).splitlines():
        out.write(f"#   {line}\n")
    for name, step in plan.steps.items():
        if name == "delete" and keep:
            out.write(f"# --keep: the debug pod is left running; {step.shell()} removes it\n")
            continue
        out.write(f"# {step.what} (deadline {step.timeout:.0f} s)\n")
        out.write(f"{step.shell()} > <bundle>\n" if name == "copy" else step.shell() + "\n")


def default_bundle_path(node: str) -> Path:
    return Path(f"pleg-doctor-{node}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.tar.gz")


@click.command(
    name="kubectl-pleg_doctor",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("target", metavar="node/NAME")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="The pleg-doctor image (a digest pins it).")
@click.option("-n", "--namespace", help="Namespace of the debug pod (default: kubectl's current one).")
@click.option("--context", help="kubeconfig context (kubectl --context).")
@click.option("--kubeconfig", help="kubeconfig file (kubectl --kubeconfig).")
@click.option("--kubectl", "kubectl", default="kubectl", show_default=True, help="The kubectl to run.")
@click.option("--keep", is_flag=True, help="Do not delete the debug pod at the end.")
@click.option("--dry-run", is_flag=True, help="Print the kubectl commands and run nothing.")
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--bundle", "bundle", type=click.Path(dir_okay=False), help="Save the bundle here.")
@click.option("--since", default="2h", show_default=True, help="How far back collect takes logs.")
@click.option("--no-dump", is_flag=True, help="No SIGUSR1 goroutine dumps of containerd and its shims.")
@click.option(
    "--runtime-endpoint", default="unix:///run/containerd/containerd.sock", show_default=True, help="CRI socket."
)
@click.option("--pod-timeout", type=float, default=180.0, show_default=True, help="Seconds for the pod to start.")
@click.option("--collect-timeout", type=float, default=600.0, show_default=True, help="Seconds for collect.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def command(
    target: str,
    image: str,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    kubectl: str,
    keep: bool,
    dry_run: bool,
    fmt: str,
    bundle: str | None,
    since: str,
    no_dump: bool,
    runtime_endpoint: str,
    pod_timeout: float,
    collect_timeout: float,
    quiet: bool,
) -> None:
    """Run `pleg-doctor collect` on a node through a `kubectl debug` pod, copy the bundle back and
    diagnose it here. Needs the right to create privileged pods in the namespace (the sysadmin
    debug profile) and to exec into them."""
    opts = Options(
        node=parse_node(target),
        image=image,
        namespace=namespace,
        context=context,
        kubeconfig=kubeconfig,
        kubectl=kubectl,
        runtime_endpoint=runtime_endpoint,
        since=since,
        no_dump=no_dump,
        pod_timeout=pod_timeout,
        collect_timeout=collect_timeout,
    )
    opts.socket_dir  # noqa: B018 (validates --runtime-endpoint before anything runs)
    if dry_run:
        print_plan(opts, sys.stdout, keep=keep)
        return
    dest = Path(bundle) if bundle else default_bundle_path(opts.node)
    fetch_bundle(opts, dest, keep=keep, quiet=quiet)
    _say(quiet, f"bundle saved: {dest} (pleg-doctor analyze {dest} reads it again)")
    from plegdoctor.pipeline import analyze_paths
    from plegdoctor.report import render

    diagnosis = analyze_paths([str(dest)], series=fmt == "html", one_shot=True)  # the plugin exits after it
    text = render(diagnosis, fmt, color=None, width=None)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def main(argv: list[str] | None = None) -> Any:
    """Console entry point `kubectl-pleg_doctor`: errors become one line on stderr and exit 2."""
    try:
        return command.main(args=argv, prog_name="kubectl pleg-doctor", standalone_mode=False)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("kubectl-pleg_doctor: interrupted", err=True)
        sys.exit(130)
    except UserError as exc:
        from plegdoctor.report.common import escape_controls

        click.echo(f"kubectl-pleg_doctor: {escape_controls(str(exc))}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
