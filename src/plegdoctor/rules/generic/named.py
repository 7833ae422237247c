"""PD804-PD806: runc stuck, systemd D-Bus waits, known bugs of released runtimes."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.model import Chain, ChainLink, Severity
from plegdoctor.rules.generic.mechanisms import _LOCK_KINDS, LONG_WAIT_MINUTES, C, _minutes, symptom_refs
from plegdoctor.rules.generic.waits import goroutine_link
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import chain_refs, plural


@rule(
    "PD804",
    "runc-stuck",
    title="runc itself is stuck (its goroutine dump shows where)",
    severity=Severity.WARNING,
    cls=C.RUNC_HANG,
    fix="Find what runc waits for: for `runc start` blocked opening exec.fifo, the container's init never reached "
    "exec (check the init process: cat /proc/<init pid>/stack, its cgroup's freezer state); kill the stuck runc "
    "and let the shim retry.",
    references=("https://github.com/containerd/containerd/issues/1882",),
    role="cause",
    reads=("dumps",),
)
def runc_stuck(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a goroutine dump of runc — a short-lived CLI, so a dump of it exists because it did not
    exit (SIGQUIT to a hung `runc start`, `runc delete`, `runc exec`) — whose main goroutine
    is blocked in a syscall or a lock.

    Why it matters: `runc start` blocked in `openat` inside `(*linuxContainer).exec` waits for the
    container's init side of `exec.fifo`: the init process never got to exec (frozen cgroup,
    D state, a hook that hangs).

    Example evidence: runc `goroutine 1 [syscall]: syscall.Syscall6(0x101, ...) ... os.OpenFile ...
    libcontainer.(*linuxContainer).exec` (containerd#1882).

    Fix: see what the container's init waits for (its kernel stack, its cgroup's freezer).
    """
    ga = ctx.goroutines
    if ga is None:
        return
    for di, dump in enumerate(getattr(ga, "dumps", None) or ()):
        if dump.process != "runc":
            continue
        for g in dump.goroutines:
            info = ga.infos.get((di, g.id))
            if info is None or str(info.kind) in ("running", "idle", "io", "select", "sleep", "unknown"):
                continue
            if g.id != 1 and "runc" not in info.tags:
                continue
            fifo = "runc-exec-fifo" in info.tags
            doing = (
                "waits in exec() to open exec.fifo: the container's init never reached exec"
                if fifo
                else f"is blocked ({info.description})"
            )
            link = goroutine_link(
                dump,
                g,
                info,
                f"runc ({dump.label} goroutine {g.id}) {doing}",
                "exec.fifo" if fifo else info.description,
                extra_tags=("runc",),
            )
            chain = Chain(links=(link,), blocked=0, max_wait_minutes=g.wait_minutes, score=0.0)
            yield Hit(
                title=f"runc goroutine {g.id} {doing}",
                evidence=chain_refs(chain),
                weight=0.6 if fifo else 0.45,
                chain=chain,
            )
            break


@rule(
    "PD805",
    "systemd-dbus-wait",
    title="A runtime call waits on systemd over D-Bus",
    severity=Severity.CRITICAL,
    cls=C.SYSTEMD_DBUS_HANG,
    fix="Check systemd: `systemctl status` (does it answer?), `busctl status`, the journal of systemd and "
    "dbus-daemon (D-Bus connection limits, a reload that hangs). Restart dbus/systemd-logind where safe; with the "
    "systemd cgroup driver, runc and the kubelet create every container's scope through systemd, so a systemd that "
    "does not answer stops container start and stop.",
    references=(
        "https://github.com/opencontainers/runc/issues/3904",
        "https://github.com/opencontainers/runc/issues/1959",
        "https://github.com/opencontainers/runc/issues/4481",
    ),
    role="cause",
    reads=("relists", "events", "dumps"),
)
def systemd_dbus_wait(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a goroutine of runc, a shim, containerd, CRI-O or the kubelet blocked inside a D-Bus
    client (`github.com/godbus/dbus`) or go-systemd's unit calls (`StartTransientUnit`,
    `startJob`, `StopUnit`), for a minute or more or on the stalled path while the node shows
    the stall.

    Why it matters: with the systemd cgroup driver every container's cgroup is a systemd scope created
    over D-Bus; when systemd or dbus-daemon does not answer (a hung reload, the D-Bus
    connection limit), runc create/start and the kubelet's cgroup manager wait with no
    deadline, and so does every CRI call behind them.

    Example evidence: `github.com/coreos/go-systemd/v22/dbus.(*Conn).startJob` -> `chan
    receive` under `libcontainer/cgroups/systemd.startUnit` (runc#3904, runc#1959).

    Fix: make systemd answer again (see the fix text); a timeout on runc's D-Bus calls is
    discussed upstream (runc#4481).
    """
    symptom: bool | None = None  # worked out for the first short wait only
    seen: set[tuple[str, int | None]] = set()
    for chain in ctx.chains:
        if "systemd-dbus" not in chain.tags:
            continue
        minutes = _minutes(chain)
        if minutes < LONG_WAIT_MINUTES:
            if symptom is None:
                symptom = bool(symptom_refs(ctx))
            if not symptom:
                continue
        link = next(lk for lk in reversed(chain.links) if "systemd-dbus" in lk.tags)
        key = (link.process, link.goroutine)
        if key in seen:
            continue
        seen.add(key)
        wait = f" for {minutes} min" if minutes else " while the node stalls"
        yield Hit(
            title=f"{link.process} goroutine {link.goroutine} waits on systemd over D-Bus{wait}",
            evidence=chain_refs(chain),
            weight=0.6 if minutes >= LONG_WAIT_MINUTES else 0.45,
            chain=chain,
        )
    if seen:
        return
    # A dump of runc — a CLI that exits in milliseconds, so a dump means it hung — with a live
    # D-Bus connection: runc was talking to systemd when it stopped (its caller may be cut from
    # the excerpt; the connection's reader and writer goroutines are what is left).
    ga = ctx.goroutines
    for di, dump in enumerate(getattr(ga, "dumps", None) or ()):
        if dump.process != "runc":
            continue
        dbus = [g for g in dump.goroutines if "systemd-dbus" in ga.infos[(di, g.id)].tags]
        if not dbus:
            continue
        g = dbus[0]
        info = ga.infos[(di, g.id)]
        detail = (
            f"runc ({dump.label} goroutine {g.id}) has a D-Bus connection to systemd open while it hangs "
            f"({plural(len(dbus), 'D-Bus goroutine')})"
        )
        link = goroutine_link(dump, g, info, detail, "systemd over D-Bus", extra_tags=("runc",))
        chain = Chain(links=(link,), blocked=0, max_wait_minutes=None, score=0.0)
        yield Hit(
            title=f"runc hangs with a D-Bus connection to systemd open ({plural(len(dbus), 'goroutine')} in godbus)",
            evidence=chain_refs(chain),
            weight=0.45,
            chain=chain,
        )


@rule(
    "PD806",
    "known-runtime-bug",
    title="The runtime version has a known deadlock, and its signature is in the dump",
    severity=Severity.CRITICAL,
    cls=C.RUNTIME_KNOWN_BUG,
    fix="Upgrade the runtime to the fixed release named in the finding; restart it to clear the deadlock now "
    "(after saving the dump).",
    references=("https://github.com/containerd/containerd/issues/10085",),
    role="cause",
    reads=("dumps", "versions"),
)
def known_runtime_bug(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a runtime version in the affected range of a known deadlock or regression
    (`knowledge.KNOWN_BUGS`: introduced in, fixed in per release branch, with sources) *and*
    a goroutine of its dump waits for a lock inside the bug's signature functions.

    Why it matters: neither alone is enough: an affected version without the signature is a risk (the
    configuration audit says so), the signature on a fixed version is another bug. Together
    the remediation is an upgrade, not a setting.

    Example evidence: containerd 1.7.13 with goroutines waiting for locks in
    `nri/pkg/adaptation.(*Adaptation).acceptPluginConnections` and `pkg/nri.(*local)`:
    containerd#10085, fixed in 1.7.16.

    Fix: upgrade to the fixed release; restart the runtime to clear the deadlock now.
    """
    from plegdoctor.errors import UserError
    from plegdoctor.knowledge import KNOWN_BUGS, ContainerdVersion

    raw = ctx.versions.containerd
    if not raw:
        return
    try:
        version = ContainerdVersion.parse(str(raw))
    except UserError:
        return
    for bug in KNOWN_BUGS:
        if not bug.affects(version):
            continue
        for chain in ctx.chains:
            hit = next(
                (
                    lk
                    for lk in chain.links
                    if lk.kind in _LOCK_KINDS and any(sig in " ".join(_frames_of(ctx, lk)) for sig in bug.signature)
                ),
                None,
            )
            if hit is None:
                continue
            refs = (*chain_refs(chain), *ctx.versions.refs[:1])
            yield Hit(
                title=f"containerd {version.raw or raw} is affected by {bug.fix.id} (fixed in "
                f"{bug.fix.fixed_in_text()}): {hit.process} goroutine {hit.goroutine} waits for a lock in its code",
                evidence=refs,
                weight=0.7,
                chain=chain,
                fix=f"Upgrade containerd to {bug.fix.fixed_in_text()} or later ({bug.fix.title}); restart it now to "
                f"clear the deadlock ({bug.symptom}). Sources: {', '.join(bug.fix.references)}.",
            )
            break


def _frames_of(ctx: RuleContext, link: ChainLink) -> list[str]:
    """Every function of the goroutine behind a link (canonical names where the engine has them)."""
    ga = ctx.goroutines
    if ga is None or link.goroutine is None:
        return [link.function or ""]
    for di, dump in enumerate(getattr(ga, "dumps", None) or ()):
        if dump.process != link.process or dump.pid != link.pid:
            continue
        g = ga.goroutine((di, link.goroutine))
        if g is not None:
            return [loc[0] for loc in g.stack]
    return [link.function or ""]
