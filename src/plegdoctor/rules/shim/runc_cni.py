"""PD407, PD420, PD421: runc invocations and CNI calls that do not return, CNI timeouts in the logs."""

from __future__ import annotations

import re
from collections.abc import Iterator

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Severity
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.shim.calls import C
from plegdoctor.rules.signals import (
    chain_hit,
    chain_wait_minutes,
    during_stall,
    for_minutes,
    link,
    links_with,
    plural,
    step_hit,
)

_RUNC_COMMS = ("runc", "runc:[2:INIT]", "runc:[1:CHILD]", "runc:[0:PARENT]", "runc init", "crun")


@rule(
    "PD407",
    "runc-hang",
    title="A runc (or crun) invocation does not return",
    severity=Severity.CRITICAL,
    cls=C.RUNC_HANG,
    fix=(
        "Look at the runc process and its container's cgroup: `ps -eo pid,stat,wchan:32,cmd | grep runc`, "
        "`cat /proc/<pid>/stack`, the cgroup's freezer state (cgroup.freeze / freezer.state). Thaw a frozen "
        "cgroup, kill the stuck runc; upgrade runc if it is a known hang (e.g. runc init in D state)."
    ),
    references=(
        "https://github.com/opencontainers/runc/issues/3904",
        "https://github.com/containerd/containerd/issues/7496",
    ),
    role="cause",
    reads=("dumps", "tasks"),
)
def runc_hang(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a shim or containerd goroutine waiting on a runc/crun child process (tag `runc`:
    `go-runc.(*Runc).Delete/Update/Exec` -> `exec.(*Cmd).Wait` / `os.(*Process).Wait`), or a runc
    process found in D state.

    Why it matters: the shim runs runc for create, start, exec, update, kill and delete, and
    holds its process mutex while it waits; runc itself can hang on a frozen cgroup, a
    process in D state inside the container, or a stuck `runc init`.

    Example evidence::

        goroutine 77 [syscall, 9 minutes]:
        syscall.Syscall6(0xf7, ...)
        os.(*Process).blockUntilWaitable(...)
        github.com/containerd/go-runc.(*Runc).Update(...)

    Fix: inspect and unfreeze the container's cgroup; kill the stuck runc.
    """
    for chain, lk in links_with(ctx, "runc"):
        minutes = lk.wait_minutes or chain_wait_minutes(chain)
        yield chain_hit(
            chain,
            f"{lk.process} waits for runc: {lk.detail}{for_minutes(minutes)}",
            0.55 + (0.1 if minutes >= 1 else 0.0),
        )
        return
    stuck = [t for t in ctx.evidence.tasks if t.state.startswith("D") and t.comm.startswith(_RUNC_COMMS)]
    if stuck:
        t = stuck[0]
        yield step_hit(
            f"{t.comm}:{t.pid} in D state" + (f" (wchan {t.wchan})" if t.wchan else ""),
            0.55,
            link("kernel", "runc", f"{t.comm} {t.pid} in D state in {t.wchan or '?'}", (t.ref,), pid=t.pid),
            evidence=(x.ref for x in stuck[:4]),
        )


@rule(
    "PD420",
    "cni-hang",
    title="A CNI ADD/DEL call does not return",
    severity=Severity.CRITICAL,
    cls=C.CNI_HANG,
    fix=(
        "Check the CNI plugin and its daemon (calico-node, cilium-agent, aws-node, flannel): logs, health, "
        "the plugin processes (`ps -eo pid,etime,cmd | grep /opt/cni/bin`). containerd waits for CNI while "
        "holding sandbox state; fix or restart the network daemon."
    ),
    references=(
        "https://github.com/containerd/containerd/issues/4604",
        "https://www.cni.dev/docs/spec/",
    ),
    role="cause",
    reads=("dumps",),
)
def cni_hang(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a containerd goroutine waiting on a CNI plugin (tag `cni`:
    `go-cni.(*libcni).Setup/Remove` -> `libcni.(*CNIConfig).AddNetworkList/DelNetworkList` ->
    `invoke.ExecPluginWithResult` -> `exec.(*Cmd).Wait`).

    Why it matters: RunPodSandbox and StopPodSandbox call CNI ADD/DEL; a plugin that waits for
    its daemon (IPAM, calico, cilium) blocks the sandbox operation, and kubelet pod workers
    and sandbox status calls pile up behind it.

    Example evidence::

        goroutine 5120 [syscall, 14 minutes]:
        os.(*Process).Wait(...)
        github.com/containernetworking/cni/pkg/invoke.(*RawExec).ExecPlugin(...)
        github.com/containerd/go-cni.(*libcni).Remove(...)

    Fix: repair the network plugin's daemon.
    """
    for chain, lk in links_with(ctx, "cni"):
        minutes = lk.wait_minutes or chain_wait_minutes(chain)
        yield chain_hit(
            chain,
            f"{lk.process} waits for a CNI plugin: {lk.detail}{for_minutes(minutes)}",
            0.6 + (0.1 if minutes >= 1 else 0.0),
        )
        return


@rule(
    "PD421",
    "cni-timeouts-in-log",
    title="The runtime reports CNI setup/teardown timing out",
    severity=Severity.WARNING,
    cls=C.CNI_HANG,
    fix=(
        "The network plugin does not answer in time: check its daemon (calico-node, cilium-agent, aws-node) "
        "and the plugin processes; dump containerd's goroutines to see the waiting CNI call."
    ),
    references=("https://github.com/containerd/containerd/issues/4604",),
    role="cause",
    reads=("relists", "events", "log_records"),
)
def cni_timeouts_in_log(ctx: RuleContext) -> Iterator[Hit]:
    """Detects containerd, dockerd and kubelet error records of a CNI ADD/DEL that did not
    return in time: sandbox networking errors (`failed to setup network for sandbox`,
    `failed to destroy network for sandbox`, `plugin type="calico" failed (add)`, dockershim's
    `NetworkPlugin cni failed to set up pod` / `failed to teardown pod` / `failed on the status
    hook`) whose error is a timeout or deadline.

    Why it matters: a CNI plugin that hangs makes every sandbox creation and teardown wait;
    log lines are the only trace when no goroutine dump was taken.

    Only CNI evidence counts: a record that merely mentions "cni" (an image
    `docker.io/calico/cni:v3.26.1` whose pull timed out, a path under `/opt/cni/bin`) is not
    a CNI call that hung.

    Example evidence::

        level=error msg="StopPodSandbox for \\"4c1f...\\" failed" error="failed to destroy network for sandbox
        \\"4c1f...\\": plugin type=\\"calico\\" failed (delete): context deadline exceeded"

    Fix: repair the network daemon; dump containerd to confirm.
    """
    hits = []
    # A runtime repeats its errors (the same sandbox failing every sync): each distinct
    # message and field values is judged once.
    judged: dict[tuple[str, ...], bool] = {}
    for rec in ctx.evidence.log_records:
        if rec.process not in ("containerd", "dockerd", "kubelet"):
            continue
        key = (rec.msg, *map(str, rec.fields.values()))
        hit = judged.get(key)
        if hit is None:
            hit = judged[key] = _cni_timeout(key)
        if hit:
            hits.append(rec)
    if not hits:
        return
    inside = any(during_stall(ctx, r.ts, slack=30.0) for r in hits)
    yield step_hit(
        f"CNI setup/teardown timed out {plural(len(hits), 'time')}" + (" during the stall" if inside else ""),
        0.35 + min(0.15, 0.05 * (len(hits) - 1)) + (0.1 if inside else 0.0),
        link(
            "log", "containerd", "sandbox network setup/teardown through CNI times out", (hits[0].ref,), tags=("cni",)
        ),
        evidence=(r.ref for r in hits[:5]),
    )


def _cni_timeout(parts: tuple[str, ...]) -> bool:
    """A record's message and field values (`parts`) say a CNI call timed out."""
    text = (parts[0] + " " + " ".join(parts[1:])).replace("\\", "")
    low = text.lower()
    if "network" not in low and "plugin type=" not in low:  # every _CNI_CALL form has one of them
        return False
    return bool(_CNI_CALL.search(text) and _TIMEOUT.search(text))


# What a CNI ADD/DEL/CHECK that failed looks like in containerd's CRI plugin, cri-dockerd/dockershim
# and the kubelet (which quotes the runtime's error); an image or path containing "cni" is not one.
_CNI_CALL = lazy_re(
    r"failed to (?:setup|set up) network for sandbox"
    r"|failed to destroy network for sandbox"
    r"|failed to (?:setup|set up|tear down|teardown) (?:the )?network for sandbox"
    r'|plugin type="[^"]+"(?: name="[^"]*")? failed \((?:add|delete|del|check|status)\)'
    r"|networkplugin cni failed (?:to set up pod|to teardown pod|on the status hook)",
    re.IGNORECASE,
)
_TIMEOUT = lazy_re(r"deadline exceeded|timed out|\btimeout\b", re.IGNORECASE)
