"""PD5xx: configuration and versions (overlay volatile, known-fixed bugs).

These rules support a root cause (they say why a mechanism could happen here and which fix
applies to this node's versions) but never make one on their own: the diagnosis only ranks a
class that some non-configuration evidence shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from plegdoctor.model import Mount, Ref, RootCauseClass, Severity, Versions
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import task_delete_failures

C = RootCauseClass
ISSUE_9770 = "https://github.com/containerd/containerd/issues/9770"
ISSUE_6406 = "https://github.com/containerd/containerd/issues/6406"
PR_8676 = "https://github.com/containerd/containerd/pull/8676"
PR_9555 = "https://github.com/containerd/containerd/pull/9555"
PR_13256 = "https://github.com/containerd/containerd/pull/13256"
PR_8954 = "https://github.com/containerd/containerd/pull/8954"
OVL_VOLATILE = "https://docs.kernel.org/filesystems/overlayfs.html#volatile-mount"


def _is_volatile(options: tuple[str, ...] | list[str]) -> bool:
    return any(o in ("volatile", "fsync=volatile") for o in options)


def container_overlay_mounts(ctx: RuleContext) -> list[Mount]:
    """Overlay mounts made by containerd (container rootfs or snapshot mounts)."""
    return [
        m
        for m in ctx.evidence.mounts
        if m.fstype == "overlay"
        and ("containerd" in m.target or any("containerd" in o for o in m.options if o.startswith("upperdir=")))
    ]


def configured_mount_options(ctx: RuleContext) -> tuple[list[str] | None, Ref | None]:
    """Overlay snapshotter `mount_options` from the parsed containerd config, if any config was
    given: (options, where). (None, None) when no config is known; ([], ref) when a config is
    known but sets none."""
    for cfg in ctx.evidence.runtime_configs:
        ref = _first_ref(cfg)
        for name in ("overlay_mount_options", "mount_options", "snapshotter_mount_options"):
            val = getattr(cfg, name, None)
            if val is not None:
                return [str(x) for x in val], ref
        opts = getattr(cfg, "snapshotter_options", None)
        if isinstance(opts, dict):
            ov = opts.get("overlayfs") or opts.get("io.containerd.snapshotter.v1.overlayfs") or {}
            if isinstance(ov, dict):
                return [str(x) for x in ov.get("mount_options") or []], ref
        return [], ref
    return None, None


def _first_ref(obj: Any) -> Ref | None:
    """Where the config says it: the `mount_options` line, else the overlay table, else the file."""
    ref = getattr(obj, "ref", None)
    if isinstance(ref, Ref):
        return ref
    refs = getattr(obj, "refs", None)
    if isinstance(refs, dict):
        for key, val in refs.items():
            if key.endswith("mount_options") and isinstance(val, Ref):
                return val
    elif refs:
        found = next((r for r in refs if isinstance(r, Ref)), None)
        if found:
            return found
    path = getattr(obj, "path", None)
    if path:
        return Ref(str(path), int(getattr(obj, "overlay_table_line", None) or 1), "")
    return None


def _version_hit(ctx: RuleContext, title: str, refs: Iterable[Ref], weight: float, **extra: Any) -> Hit:
    """A hit about this node's versions: its evidence also quotes where the versions were read."""
    return Hit(title=title, evidence=(*refs, *ctx.versions.refs[:1]), weight=weight, **extra)


def volatile_state(ctx: RuleContext) -> tuple[bool | None, bool | None, list[Ref]]:
    """(volatile configured?, volatile in effect on mounts?, evidence) — None = unknown."""
    configured, cref = configured_mount_options(ctx)
    mounts = container_overlay_mounts(ctx)
    refs = [cref] if cref else []
    in_effect: bool | None = None
    if mounts:
        in_effect = all(_is_volatile(m.options) for m in mounts)
        refs.append(mounts[0].ref)
    conf: bool | None = None if configured is None else _is_volatile(configured)
    return conf, in_effect, refs


@rule(
    "PD501",
    "overlay-not-volatile",
    title="Container overlay mounts are not volatile: every rootfs unmount syncs the disk",
    severity=Severity.INFO,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix=fixes.volatile_fix(Versions()),
    references=(PR_8676, OVL_VOLATILE, ISSUE_9770),
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
    conf, in_effect, refs = volatile_state(ctx)
    if conf is None and in_effect is None:
        return
    if conf or in_effect:
        return
    where = "containerd config sets no overlay mount_options" if conf is False else "overlay rootfs mounts lack it"
    yield Hit(
        title=f"overlay snapshots are not volatile ({where})",
        evidence=tuple(refs),
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
    references=(PR_8676, "https://github.com/containerd/containerd/pull/8961"),
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
    conf, in_effect, refs = volatile_state(ctx)
    if not conf:
        return
    cv = fixes.containerd_version(ctx.versions)
    if cv is not None and not fixes.fixed_in(fixes.MOUNT_OPTIONS, cv)[0]:
        target = fixes.upgrade_target(fixes.MOUNT_OPTIONS, cv)
        yield _version_hit(
            ctx,
            f"volatile configured, but containerd {fixes.fmt_version(cv)} ignores mount_options (needs {target})",
            refs,
            0.15,
            fix=f"Upgrade containerd to {target}. " + fixes.volatile_fix(ctx.versions),
        )
    elif in_effect is False:
        yield Hit(
            title="volatile configured, but container overlay mounts do not show it (restart/recreate needed?)",
            evidence=tuple(refs),
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
    references=(OVL_VOLATILE, "https://github.com/containerd/containerd/pull/4785"),
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
    conf, _, refs = volatile_state(ctx)
    kv = fixes.kernel_version(ctx.versions)
    if conf and kv is not None and kv < fixes.KERNEL_VOLATILE:
        yield _version_hit(ctx, f"volatile configured on kernel {fixes.fmt_version(kv)} (needs >= 5.10)", refs, 0.05)


@rule(
    "PD504",
    "volatile-temp-mounts",
    title="volatile with a containerd that keeps it on temporary mounts",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix="Upgrade containerd to >= 1.6.34 / 1.7.19 / 2.0, which strips volatile from temporary mounts (#9555).",
    references=(PR_9555, ISSUE_6406),
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
    conf, in_effect, refs = volatile_state(ctx)
    cv = fixes.containerd_version(ctx.versions)
    if not (conf or in_effect) or cv is None:
        return
    ok, target = fixes.fixed_in(fixes.TEMP_MOUNT_STRIP, cv)
    if ok or not fixes.fixed_in(fixes.MOUNT_OPTIONS, cv)[0]:
        return
    yield _version_hit(
        ctx,
        f"volatile with containerd {fixes.fmt_version(cv)}: temporary mounts keep volatile (fixed in "
        f"{fixes.fmt_version(target) if target else '2.0'})",
        refs,
        0.05,
    )


@rule(
    "PD505",
    "fsync-volatile-spelling",
    title="The kernel shows volatile as fsync=volatile, which this containerd does not recognise",
    severity=Severity.WARNING,
    cls=C.OVERLAY_UMOUNT_SYNC,
    fix="Upgrade containerd to >= 1.7.32 / 2.0.9 / 2.1.8 / 2.2.4 / 2.3.0 (#13256).",
    references=(PR_13256, "https://github.com/containerd/containerd/issues/13250"),
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
    mounts = [m for m in container_overlay_mounts(ctx) if "fsync=volatile" in m.options]
    cv = fixes.containerd_version(ctx.versions)
    if not mounts or cv is None or fixes.fixed_in(fixes.FSYNC_VOLATILE_SPELLING, cv)[0]:
        return
    yield _version_hit(
        ctx,
        f"fsync=volatile mounts with containerd {fixes.fmt_version(cv)}",
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
    references=(PR_8954, "https://github.com/containerd/containerd/issues/7496"),
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
    cv = fixes.containerd_version(ctx.versions)
    if cv is None or fixes.fixed_in(fixes.SHIM_LEAK_FIX, cv)[0]:
        return
    evs = task_delete_failures(ctx)
    if not evs:
        return
    yield _version_hit(
        ctx,
        f"containerd {fixes.fmt_version(cv)} with task delete failures: shim cleanup fix missing",
        (evs[0].ref,),
        0.1,
        fix=fixes.shim_leak_fix(ctx.versions),
    )
