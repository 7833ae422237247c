"""PD5xx: configuration and versions (overlay volatile, known-fixed bugs).

These rules support a root cause (they say why a mechanism could happen here and which fix
applies to this node's versions) but never make one on their own: the diagnosis only ranks a
class that some non-configuration evidence shows.

They decide on the config audit (`ctx.config_audit`, plegdoctor.analysis.config_audit): the
statuses of the checks `pleg-doctor check` prints and the facts those read (parsed versions,
containerd's overlay mounts, where the config sets mount_options), so `analyze` and `check`
never disagree about a node. Version comparisons are plegdoctor.knowledge `Change` records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from plegdoctor import knowledge as kb
from plegdoctor.analysis.config_audit import FAIL, PASS, WARN, Audit
from plegdoctor.model import Ref, RootCauseClass, Severity, Versions
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import task_delete_failures

C = RootCauseClass
ISSUE_6406 = "https://github.com/containerd/containerd/issues/6406"


def config_audit(ctx: RuleContext) -> Audit | None:
    """The config audit of this evidence (plegdoctor.analysis.config_audit): its checks'
    statuses and the facts they read are what these rules decide on."""
    found = ctx.config_audit
    return found if isinstance(found, Audit) else None


def _version_hit(ctx: RuleContext, title: str, refs: Iterable[Ref], weight: float, **extra: Any) -> Hit:
    """A hit about this node's versions: its evidence also quotes where the versions were read."""
    return Hit(title=title, evidence=(*refs, *ctx.versions.refs[:1]), weight=weight, **extra)


def _volatile_refs(audit: Audit) -> list[Ref]:
    """Where the config says it (mount_options line, else its overlay table), and the first
    containerd overlay mount."""
    f = audit.facts
    refs = [f.config_ref] if f.config_ref else []
    if f.overlay_mounts:
        refs.append(f.overlay_mounts[0].ref)
    return refs


@rule(
    "PD501",
    "overlay-not-volatile",
    title="Container overlay mounts are not volatile: every rootfs unmount syncs the disk",
    severity=Severity.INFO,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix=fixes.volatile_fix(Versions()),
    references=(kb.PR_MOUNT_OPTIONS, kb.KERNEL_OVERLAY_DOC, kb.ISSUE_9770),
    role="condition",
    reads=("runtime_configs", "versions", "mounts"),
)
def overlay_not_volatile(ctx: RuleContext) -> Iterator[Hit]:
    """Detects that containerd's overlay snapshotter does not mount with `volatile`: the
    containerd config sets no overlay `mount_options`, or `/proc/mounts` shows container
    rootfs overlays without `volatile` (or `fsync=volatile` on kernels >= 6.12.80).

    Why it matters: without volatile, each container stop unmounts its overlay rootfs and
    the kernel syncs the whole upper filesystem, waiting for every dirty page on the disk.
    Under write load this takes minutes, with the shim's mutex held (containerd #9770).
    This is a condition, not a cause; the diagnosis uses it to pick the fix.

    Example evidence::

        overlay /run/containerd/io.containerd.runtime.v2.task/k8s.io/4f1e.../rootfs overlay
        rw,relatime,lowerdir=...,upperdir=...,workdir=... 0 0

    Fix: `[plugins."io.containerd.snapshotter.v1.overlayfs"] mount_options = ["volatile"]`
    (containerd >= 1.6.24 / 1.7.4 / 2.0, kernel >= 5.10); see the fix text for this node's
    versions and the caveats.
    """
    audit = config_audit(ctx)
    if audit is None:
        return
    # volatile-configured: pass/warn (info: no config, or another snapshotter);
    # volatile-in-effect: pass = every containerd overlay mount is volatile, warn = one is not
    configured, in_effect = audit.status("volatile-configured"), audit.status("volatile-in-effect")
    if PASS in (configured, in_effect) or WARN not in (configured, in_effect):
        return
    where = "containerd config sets no overlay mount_options" if configured == WARN else "overlay rootfs mounts lack it"
    yield Hit(
        title=f"overlay snapshots are not volatile ({where})",
        evidence=tuple(_volatile_refs(audit)),
        weight=0.1,
        fix=fixes.volatile_fix(ctx.versions),
    )


@rule(
    "PD502",
    "volatile-ignored-by-containerd",
    title="volatile is configured but this containerd ignores overlay mount_options",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix="Upgrade containerd to >= 1.6.24 / 1.7.4 / 2.0 (overlay mount_options: #8676, #8961, #9005).",
    references=(kb.PR_MOUNT_OPTIONS, kb.PR_MOUNT_OPTIONS_16),
    role="condition",
    reads=("runtime_configs", "versions", "mounts"),
)
def volatile_ignored_by_containerd(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `mount_options = ["volatile"]` in the config with a containerd older than the
    release that reads it (1.6.24 on 1.6, 1.7.4 on 1.7, 2.0), or a config asking for volatile
    while `/proc/mounts` shows container overlays without it.

    Why it matters: older containerd silently ignores the unknown key; the operator believes
    the umount stall is fixed while every unmount still syncs the disk.

    Example evidence: config with `mount_options = ["volatile"]`, `containerd --version`
    1.6.21, overlay mounts without `volatile`.

    Fix: upgrade containerd; restart it and recreate containers (options apply to new mounts).
    """
    audit = config_audit(ctx)
    if audit is None or audit.status("volatile-configured") != PASS:
        return
    cv = audit.facts.containerd
    if cv is not None and audit.status("volatile-containerd") == FAIL:
        target = kb.MOUNT_OPTIONS.upgrade_target(cv)
        yield _version_hit(
            ctx,
            f"volatile configured, but containerd {cv} ignores mount_options (needs {target})",
            _volatile_refs(audit),
            0.15,
            fix=f"Upgrade containerd to {target}. " + fixes.volatile_fix(ctx.versions),
        )
    elif audit.status("volatile-in-effect") == WARN:
        yield Hit(
            title="volatile configured, but container overlay mounts do not show it (restart/recreate needed?)",
            evidence=tuple(_volatile_refs(audit)),
            weight=0.1,
            fix="Restart containerd after changing its config and recreate containers: mount options apply to new "
            "mounts only. Check `containerd config dump` shows the option.",
        )


@rule(
    "PD503",
    "volatile-kernel-too-old",
    title="volatile is configured on a kernel without overlay volatile (< 5.10)",
    severity=Severity.CRITICAL,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix="Remove the volatile mount option or upgrade the kernel to >= 5.10.",
    references=(kb.KERNEL_OVERLAY_DOC, "https://github.com/containerd/containerd/pull/4785"),
    role="condition",
    reads=("runtime_configs", "versions", "mounts"),
)
def volatile_kernel_too_old(ctx: RuleContext) -> Iterator[Hit]:
    """Detects overlay `volatile` requested on a kernel older than 5.10.

    Why it matters: the option appeared in Linux 5.10; containerd does not probe for it, so
    older kernels reject every overlay mount and containers cannot start.

    Example evidence: `mount_options = ["volatile"]` and `uname -r` 5.4.0-150-generic.

    Fix: remove the option or upgrade the kernel.
    """
    audit = config_audit(ctx)
    if audit is None or audit.status("volatile-configured") != PASS:
        return
    kv = audit.facts.kernel
    if kv is not None and audit.status("volatile-kernel") == FAIL:
        yield _version_hit(ctx, f"volatile configured on kernel {kv} (needs >= 5.10)", _volatile_refs(audit), 0.05)


@rule(
    "PD504",
    "volatile-temp-mounts",
    title="volatile with a containerd that keeps it on temporary mounts",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix="Upgrade containerd to >= 1.6.34 / 1.7.19 / 2.0, which strips volatile from temporary mounts (#9555).",
    references=(kb.PR_TEMP_MOUNT_STRIP, ISSUE_6406),
    role="condition",
    reads=("runtime_configs", "versions", "mounts"),
)
def volatile_temp_mounts(ctx: RuleContext) -> Iterator[Hit]:
    """Detects overlay `volatile` in use with containerd older than 1.6.34 / 1.7.19 (2.0 has the
    fix).

    Why it matters: containerd temp-mounts snapshots (image config lookups, volume copy-up)
    reusing the same upper/work dirs; a second volatile mount of the same workdir is refused
    (`incompat/volatile`), so some CRI operations fail until #9555's fix (containerd #6406).

    Example evidence: `mount_options = ["volatile"]` and containerd 1.7.4.

    Fix: upgrade containerd.
    """
    audit = config_audit(ctx)
    if audit is None:
        return
    cv = audit.facts.containerd
    # fail: this containerd keeps volatile on temp mounts and volatile is configured or in effect;
    # only when it reads mount_options at all (else PD502 says so)
    if cv is None or audit.status("volatile-temp-mounts") != FAIL or audit.status("volatile-containerd") != PASS:
        return
    target = kb.TEMP_MOUNT_STRIP_VOLATILE.fixed_in(cv)[1]
    yield _version_hit(
        ctx,
        f"volatile with containerd {cv}: temporary mounts keep volatile (fixed in {target or '2.0'})",
        _volatile_refs(audit),
        0.05,
    )


@rule(
    "PD505",
    "fsync-volatile-spelling",
    title="The kernel shows volatile as fsync=volatile, which this containerd does not recognise",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix="Upgrade containerd to >= 1.7.32 / 2.0.9 / 2.1.8 / 2.2.4 / 2.3.0 (#13256).",
    references=(kb.PR_FSYNC_VOLATILE, kb.ISSUE_FSYNC_VOLATILE),
    role="condition",
    reads=("runtime_configs", "versions", "mounts"),
)
def fsync_volatile_spelling(ctx: RuleContext) -> Iterator[Hit]:
    """Detects `fsync=volatile` in overlay mount options (kernels 6.12.80+ print volatile that
    way) with a containerd older than 1.7.32 / 2.0.9 / 2.1.8 / 2.2.4 / 2.3.0.

    Why it matters: those containerd versions only recognise the literal `volatile`, so they
    do not strip it from temporary mounts when the option is read back from the kernel, and
    the volatile-related safety checks miss it.

    Example evidence: `overlay ... rw,relatime,lowerdir=...,uuid=on,fsync=volatile 0 0` and
    containerd 1.7.24.

    Fix: upgrade containerd.
    """
    audit = config_audit(ctx)
    if audit is None:
        return
    mounts = [m for m in audit.facts.overlay_mounts if "fsync=volatile" in m.options]
    cv = audit.facts.containerd
    if not mounts or cv is None or kb.FSYNC_VOLATILE_SPELLING.contains(cv):
        return
    yield _version_hit(
        ctx,
        f"fsync=volatile mounts with containerd {cv}",
        (mounts[0].ref,),
        0.05,
        fix=fixes.fsync_volatile_spelling_fix(ctx.versions),
    )


@rule(
    "PD506",
    "shim-leak-fix-missing",
    title="containerd lacks the fix for shims leaked under high I/O pressure",
    severity=Severity.WARNING,
    cls=C.SHIM_HANG,
    fix="Upgrade containerd to >= 1.6.24 / 1.7.4 / 2.0 (#8954).",
    references=(kb.PR_SHIM_LEAK, "https://github.com/containerd/containerd/issues/7496"),
    role="condition",
    reads=("versions", "events"),
)
def shim_leak_fix_missing(ctx: RuleContext) -> Iterator[Hit]:
    """Detects task Delete failures after container exits on a containerd older than 1.6.24 /
    1.7.4 (2.0 has the fix).

    Why it matters: on those versions, when the shim-side delete finished but containerd's
    call timed out under I/O pressure, the task was never cleaned up: the shim leaks and the
    container stays in a half-deleted state the kubelet keeps retrying (#7496, #8931).

    Example evidence: `failed to handle container TaskExit event ... failed to delete task:
    context deadline exceeded` and containerd 1.6.21.

    Fix: upgrade containerd.
    """
    audit = config_audit(ctx)
    cv = audit.facts.containerd if audit is not None else None
    if cv is None or kb.SHIM_LEAK_FIX.contains(cv):
        return
    evs = task_delete_failures(ctx)
    if not evs:
        return
    yield _version_hit(
        ctx,
        f"containerd {cv} with task delete failures: shim cleanup fix missing",
        (evs[0].ref,),
        0.1,
        fix=fixes.shim_leak_fix(ctx.versions),
    )
