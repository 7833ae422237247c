"""`watch`'s options that publish to the cluster (the work is in `live/kube.py`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from plegdoctor.errors import UserError
from plegdoctor.live.kube import HOLD_MODES, PublishOptions


def publish_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The click options of `watch` that publish to the cluster (passed on as `**publish`)."""
    opts = [
        click.option("--publish", is_flag=True, help="Publish the ContainerRuntimeStalled condition and Events."),
        click.option("--publish-dry-run", is_flag=True, help="Print what --publish would send (JSON lines)."),
        click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Credentials for --publish."),
        click.option(
            "--in-cluster",
            is_flag=True,
            help="Use the pod's service account (the default with --publish when KUBERNETES_SERVICE_HOST is set).",
        ),
        click.option("--node-name", help="This node's name (default: $NODE_NAME, else the hostname)."),
        click.option(
            "--hold-for-repair",
            type=click.Choice(HOLD_MODES),
            help="While a capture runs, mark the node (karpenter.sh/do-not-disrupt and/or PlegDoctorCapturing).",
        ),
        click.option("--hold-max", default="5m", show_default=True, help="Remove the hold after this long."),
        click.option(
            "--otlp-endpoint",
            metavar="URL",
            help="Send one OTLP log record per analysed capture (OTLP/HTTP, e.g. http://collector:4318).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def options_from_cli(
    node: str,
    cooldown: float,
    parse_duration: Callable[[str, str], float],
    *,
    publish: bool,
    publish_dry_run: bool,
    kubeconfig: str | None,
    in_cluster: bool,
    node_name: str | None,
    hold_for_repair: str | None,
    hold_max: str,
    otlp_endpoint: str | None = None,
) -> PublishOptions | None:
    """PublishOptions from watch's flags, or None when nothing is to be published."""
    if not (publish or publish_dry_run):
        if kubeconfig or in_cluster or hold_for_repair:
            raise UserError("--kubeconfig, --in-cluster and --hold-for-repair need --publish or --publish-dry-run")
        if not otlp_endpoint:
            return None
        return PublishOptions(node=node_name or node, kube=False, otlp_endpoint=otlp_endpoint)
    if publish and not publish_dry_run and not kubeconfig and not in_cluster:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise UserError("--publish: give --kubeconfig FILE or --in-cluster (no KUBERNETES_SERVICE_HOST)")
        in_cluster = True
    return PublishOptions(
        node=node_name or node,
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        dry_run=publish_dry_run,
        hold=hold_for_repair,
        hold_max=parse_duration(hold_max, "--hold-max"),
        event_cooldown=cooldown,
        otlp_endpoint=otlp_endpoint,
    )
