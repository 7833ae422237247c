"""PD7xx: dockerd / dockershim (Kubernetes <= 1.23 with the docker runtime, or cri-dockerd)."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.model import EventKind, RootCauseClass, Severity
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    chain_hit,
    chain_wait_minutes,
    events,
    for_minutes,
    link,
    links_with,
    plural,
    step_hit,
)

C = RootCauseClass
MOBY_41676 = "https://github.com/moby/moby/issues/41676"
MOBY_44300 = "https://github.com/moby/moby/issues/44300"
K8S_45419 = "https://github.com/kubernetes/kubernetes/issues/45419"


@rule(
    "PD701",
    "dockerd-container-lock",
    title="dockerd requests queue on a container's lock",
    severity=Severity.CRITICAL,
    cls=C.DOCKERD_LOCK,
    fix=(
        "The container lock holder is stuck (usually waiting for containerd/the shim on a kill, stop or "
        "delete, or on a hung mount): dump dockerd (kill -USR1 $(pidof dockerd); goroutine-stacks-*.log in "
        "/var/run/docker) and containerd to see it. Restarting dockerd releases the convoy; migrating to "
        "containerd CRI removes dockershim's per-container inspect in every relist."
    ),
    references=(MOBY_41676, MOBY_44300, K8S_45419),
    role="cause",
    reads=("dumps",),
)
def dockerd_container_lock(ctx: RuleContext) -> Iterator[Hit]:
    """Detects dockerd goroutines waiting for a container's lock (tag `dockerd-container-lock`:
    `(*Daemon).ContainerInspect` / `containerRoutes.getContainersJSON` -> `(*Container).Lock` /
    `(*State).Lock`) behind a holder that does not finish.

    Why it matters: with dockershim the relist lists and inspects containers through dockerd;
    `docker ps` and inspect take each container's lock. One container stuck in a kill, stop
    or delete (holding its lock) makes every relist hang, and PLEG goes unhealthy.

    Example evidence (dockerd goroutine dump)::

        goroutine 48211 [semacquire, 12 minutes]:
        sync.(*Mutex).Lock(...)
        github.com/docker/docker/container.(*State).Lock(...)
        github.com/docker/docker/daemon.(*Daemon).ContainerInspectCurrent(...)

    Fix: find what the holder waits for (dockerd + containerd dumps); restart dockerd to
    release; move to containerd CRI.
    """
    for chain, _lk in links_with(ctx, "dockerd-container-lock"):
        minutes = chain_wait_minutes(chain)
        yield chain_hit(
            chain,
            f"dockerd requests wait for a container lock: {chain.links[-1].detail}"
            + (f" ({plural(chain.blocked, 'goroutine')} blocked)" if chain.blocked else "")
            + for_minutes(minutes),
            0.6 + (0.05 if chain.blocked >= 5 else 0.0) + (0.05 if minutes >= 1 else 0.0),
        )
        return


@rule(
    "PD702",
    "dockershim-timeouts",
    title="Docker operations from the kubelet time out",
    severity=Severity.WARNING,
    cls=C.DOCKERD_LOCK,
    fix=(
        "dockerd does not answer list/inspect in time: dump its goroutines (kill -USR1 $(pidof dockerd)) to "
        "find the container lock holder; restarting dockerd releases it."
    ),
    references=(MOBY_44300, K8S_45419),
    role="cause",
    reads=("events",),
)
def dockershim_timeouts(ctx: RuleContext) -> Iterator[Hit]:
    """Detects dockerd errors and dockershim/kubelet docker operation failures that are
    timeouts (`operation timeout: context deadline exceeded` on `docker ps`/inspect).

    Why it matters: dockershim turns each relist into `docker ps` plus inspects; when one
    container's lock is held by a stuck operation these time out, the relist takes minutes
    and PLEG goes unhealthy. Without a dockerd dump this is the log-only sign.

    Example evidence::

        E1014 17:14:40.1 2261 remote_runtime.go:262] ListContainers with filter ... from runtime service failed:
        rpc error: code = Unknown desc = operation timeout: context deadline exceeded

    Fix: dump dockerd to find the lock holder.
    """
    # a kubelet repeats its errors: each text is read once (does it say "operation timeout", "deadline")
    says: dict[str, tuple[bool, bool]] = {}
    evs = []
    for e in events(ctx, EventKind.DOCKERD_ERROR, EventKind.CRI_CALL_FAILED):
        error = str(e.attrs.get("error", ""))
        said = says.get(error)
        if said is None:
            low = error.lower()
            said = says[error] = ("operation timeout" in low, "deadline" in low)
        if said[0] or (e.process == "dockerd" and said[1]):
            evs.append(e)
    if not evs:
        return
    yield step_hit(
        f"docker operations timed out {plural(len(evs), 'time')}",
        0.35 + min(0.15, 0.05 * (len(evs) - 1)),
        link("log", "kubelet", "docker list/inspect operations time out", (evs[0].ref,), tags=("dockerd",)),
        evidence=(e.ref for e in evs[:5]),
    )
