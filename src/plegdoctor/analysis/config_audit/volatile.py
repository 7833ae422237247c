"""Checks of versions, the config schema and overlay `volatile` (supported, configured, in
effect, safe on temporary mounts, spelled as this containerd expects)."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor import knowledge as kb
from plegdoctor.analysis.config_audit.base import FAIL, INFO, PASS, WARN, Check, Facts, check, default_schema
from plegdoctor.model import Ref
from plegdoctor.parsers.mounts import VOLATILE_SPELLINGS, is_volatile, volatile_spelling


def _opt(ref: Ref | None) -> tuple[Ref, ...]:
    return (ref,) if ref else ()


@check(
    "versions",
    reads=("containerd", "runc", "kernel", "go"),
    statuses=(INFO,),
    about="the versions read, and those that could not be parsed",
)
def versions_read(f: Facts) -> Iterator[Check]:
    cv, kv, versions = f.containerd, f.kernel, f.versions
    parts = []
    if cv:
        parts.append(f"containerd {cv} ({cv.raw})" if cv.raw and cv.raw != str(cv) else f"containerd {cv}")
    if versions is not None and versions.runc:
        parts.append(f"runc {versions.runc}")
    if kv:
        parts.append(f"kernel {kv.raw or kv}")
    if versions is not None and versions.go:
        parts.append(f"Go {versions.go}")
    yield Check(
        "versions",
        INFO,
        "Versions read",
        ("; ".join(parts) or "no versions given (use --containerd-version/--kernel-version or --live)")
        + ("" if not f.problems else ". " + "; ".join(f.problems)),
        f.version_refs,
    )


@check(
    "config-schema",
    reads=("config", "containerd"),
    statuses=(PASS, INFO, FAIL),
    about="the config's schema version, and whether this containerd reads it",
)
def config_schema(f: Facts) -> Iterator[Check]:
    config, cv = f.config, f.containerd
    if config is None:
        return
    schema = config.schema_info
    ev = tuple(r for r in (config.ref("version"),) if r)
    min_cv = kb.ContainerdVersion.parse(schema.min_containerd)
    if cv is not None and cv < min_cv:
        yield Check(
            "config-schema",
            FAIL,
            f"Config version {config.schema} needs containerd >= {schema.min_containerd}",
            f"{config.path} declares version {config.schema}; containerd {cv} does not read it.",
            ev,
            f"Write the config in version {default_schema(cv)} (plugin IDs of that schema).",
            (schema.source,),
        )
        return
    detail = (
        f"version {config.schema}{'' if config.schema_explicit else ' (no version field)'}: "
        f"overlay table [{kb.toml_key(schema.overlay, config.schema)}], CRI images in "
        f"[{kb.toml_key(schema.cri_images, config.schema)}]"
    )
    status = INFO if config.schema == 1 else PASS
    fix = "Version 1 is deprecated: `containerd config migrate` prints the migrated file." if status == INFO else ""
    yield Check("config-schema", status, f"Config schema version {config.schema}", detail, ev, fix, (schema.source,))


@check(
    "config-misplaced",
    reads=("config",),
    statuses=(WARN,),
    about="settings in a table this schema does not read (one result per setting: config-misplaced-N)",
)
def config_misplaced(f: Facts) -> Iterator[Check]:
    config = f.config
    if config is None:
        return
    for i, note in enumerate(config.misplaced):
        yield Check(
            f"config-misplaced-{i + 1}",
            WARN,
            "Setting in a table this schema does not read",
            note,
            tuple(
                r
                for k, r in config.refs.items()
                if k.startswith(("plugins.overlayfs", "plugins.io.containerd.grpc.v1.cri"))
            ),
            "Move it to the table named above; containerd ignores unknown tables silently.",
            (config.schema_info.source,),
        )


@check(
    "volatile-containerd",
    reads=("containerd", "config"),
    statuses=(PASS, INFO, FAIL),
    about="containerd reads the overlay snapshotter's mount_options (the way to set volatile)",
    references=kb.MOUNT_OPTIONS.references,
)
def volatile_containerd(f: Facts) -> Iterator[Check]:
    cv = f.containerd
    if cv is None:
        yield Check(
            "volatile-containerd",
            INFO,
            "containerd support for overlay mount_options: version unknown",
            f"mount_options (volatile) needs containerd >= {kb.MOUNT_OPTIONS.fixed_in_text()}.",
            references=kb.MOUNT_OPTIONS.references,
        )
    elif kb.MOUNT_OPTIONS.contains(cv):
        yield Check(
            "volatile-containerd",
            PASS,
            f"containerd {cv} supports overlay mount_options",
            f"First in {kb.MOUNT_OPTIONS.fixed_in_text()} ({kb.MOUNT_OPTIONS.source}).",
            f.containerd_refs,
            references=kb.MOUNT_OPTIONS.references,
        )
    else:
        yield Check(
            "volatile-containerd",
            FAIL,
            f"containerd {cv} cannot set overlay mount options",
            f"The overlay snapshotter's mount_options key arrived in {kb.MOUNT_OPTIONS.fixed_in_text()}; "
            f"{cv} ignores it{' (your config sets it: it has no effect)' if f.volatile_configured else ''}.",
            _opt(f.mount_options_ref) + f.containerd_refs,
            f"Upgrade containerd to >= {kb.MOUNT_OPTIONS.fixed_in_text()} (better: 1.6.34 / 1.7.19 / 2.0, "
            "which also strip volatile from temporary mounts).",
            kb.MOUNT_OPTIONS.references,
        )


@check(
    "volatile-kernel",
    reads=("kernel",),
    statuses=(PASS, INFO, FAIL),
    about="the kernel has overlay volatile (5.10+)",
    references=kb.KERNEL_VOLATILE.references,
)
def volatile_kernel(f: Facts) -> Iterator[Check]:
    kv = f.kernel
    if kv is None:
        yield Check(
            "volatile-kernel",
            INFO,
            "Kernel support for overlay volatile: version unknown",
            "overlayfs volatile needs Linux >= 5.10.",
            references=kb.KERNEL_VOLATILE.references,
        )
    elif kb.KERNEL_VOLATILE.has(kv):
        yield Check(
            "volatile-kernel",
            PASS,
            f"Kernel {kv.raw or kv} supports overlay volatile",
            f"Since 5.10 ({kb.KERNEL_VOLATILE.source}).",
            f.kernel_refs,
            references=kb.KERNEL_VOLATILE.references,
        )
    else:
        yield Check(
            "volatile-kernel",
            FAIL,
            f"Kernel {kv.raw or kv} has no overlay volatile",
            "overlayfs volatile arrived in Linux 5.10; on older kernels a volatile overlay mount fails, so "
            "containers would not start. (Distro kernels may backport it: test on one node.)",
            f.kernel_refs,
            "Stay without volatile on this kernel; reduce dirty data on containerd's disk instead "
            "(vm.dirty_bytes, a separate disk for /var/lib/containerd).",
            kb.KERNEL_VOLATILE.references,
        )


@check(
    "volatile-configured",
    reads=("config",),
    statuses=(PASS, WARN, INFO),
    about="the config's overlay mount_options include volatile (the CRI snapshotter is overlayfs)",
    references=(kb.ISSUE_SEED, kb.ISSUE_9770, kb.ISSUE_UMOUNT_SLOW_DISK, kb.KERNEL_OVERLAY_DOC),
)
def volatile_configured(f: Facts) -> Iterator[Check]:
    config = f.config
    if config is None:
        yield Check(
            "volatile-configured",
            INFO,
            "Volatile configuration: no containerd config given",
            "Pass --config FILE (or --live) to check mount_options.",
        )
    elif config.snapshotter not in (None, "overlayfs"):
        yield Check(
            "volatile-configured",
            INFO,
            f"CRI uses the {config.snapshotter!r} snapshotter",
            "overlayfs volatile applies only to the overlayfs snapshotter.",
            tuple(r for k, r in config.refs.items() if k.endswith(".snapshotter")),
        )
    elif f.volatile_configured:
        spelling = next(o for o in config.overlay_mount_options or () if o in VOLATILE_SPELLINGS)
        yield Check(
            "volatile-configured",
            PASS,
            f"Overlay mount_options include {spelling!r}",
            "Unmounting a container rootfs no longer forces syncfs of the backing filesystem.",
            _opt(f.mount_options_ref),
            references=(kb.ISSUE_SEED, kb.PR_MOUNT_OPTIONS),
        )
    else:
        yield Check(
            "volatile-configured",
            WARN,
            "Overlay volatile is not configured",
            "Each shim Delete unmounts the container rootfs; without volatile the kernel then syncs every "
            "dirty page of the backing filesystem (ovl_sync_fs <- sync_filesystem <- generic_shutdown_super) "
            "while the shim holds its process lock, which is the umount link of the seed stall chain.",
            _opt(config.ref(f"plugins.{config.schema_info.overlay}")),
            "Enable it (removes the umount-syncfs link only; read the risks printed with the snippet):\n"
            + kb.volatile_snippet(config.schema, config.overlay_mount_options, config.overlay_table_line),
            (kb.ISSUE_SEED, kb.ISSUE_9770, kb.ISSUE_UMOUNT_SLOW_DISK, kb.KERNEL_OVERLAY_DOC),
        )


@check(
    "volatile-in-effect",
    reads=("mounts", "config"),
    statuses=(PASS, WARN, INFO),
    about="containerd's overlay mounts in the mount table are volatile",
)
def volatile_in_effect(f: Facts) -> Iterator[Check]:
    if f.mounts is None:
        yield Check(
            "volatile-in-effect",
            INFO,
            "Volatile in effect: no mount table given",
            "Pass --mounts /proc/mounts (or --live) to see the options of running container rootfs mounts.",
        )
        return
    ovl, vol = f.overlay_mounts, f.volatile_mounts
    if not ovl:
        yield Check(
            "volatile-in-effect",
            INFO,
            "No containerd overlay mounts in the mount table",
            "No running container rootfs found (nothing to verify).",
        )
    elif len(vol) == len(ovl):
        spellings = sorted({volatile_spelling(m) or "" for m in vol})
        yield Check(
            "volatile-in-effect",
            PASS,
            f"All {len(ovl)} containerd overlay mounts are volatile",
            f"Mount option spelled {', '.join(spellings)} by this kernel.",
            tuple(m.ref for m in vol[:3]),
        )
    else:
        why = (
            "The config enables it, so containerd was not restarted since, or these containers were "
            "created before the change (they keep their mounts until recreated)."
            if f.volatile_configured
            else "The config does not enable it."
        )
        yield Check(
            "volatile-in-effect",
            WARN,
            f"{len(ovl) - len(vol)} of {len(ovl)} containerd overlay mounts are not volatile",
            why,
            tuple(m.ref for m in [m for m in ovl if not is_volatile(m)][:3]),
            "Restart containerd after editing the config; recreate (roll) the pods to get new mounts.",
        )


@check(
    "volatile-temp-mounts",
    reads=("containerd", "config", "mounts"),
    statuses=(PASS, FAIL, INFO),
    about="containerd strips volatile from temporary mounts (fail: volatile is configured or in effect)",
    references=kb.TEMP_MOUNT_STRIP_VOLATILE.references,
)
def volatile_temp_mounts(f: Facts) -> Iterator[Check]:
    cv = f.containerd
    if cv is None:
        return
    if kb.TEMP_MOUNT_STRIP_VOLATILE.contains(cv):
        yield Check(
            "volatile-temp-mounts",
            PASS,
            f"containerd {cv} strips volatile from temporary mounts",
            f"First in {kb.TEMP_MOUNT_STRIP_VOLATILE.fixed_in_text()} ({kb.TEMP_MOUNT_STRIP_VOLATILE.source}).",
            references=kb.TEMP_MOUNT_STRIP_VOLATILE.references,
        )
        return
    status = FAIL if (f.volatile_configured or f.volatile_mounts) else INFO
    yield Check(
        "volatile-temp-mounts",
        status,
        f"containerd {cv} keeps volatile on temporary mounts",
        "Before 1.6.34 / 1.7.19 / 2.0, temporary mounts of a container rootfs (e.g. reading "
        "/etc/passwd for the user ID) reuse the snapshot's upper/work dirs with volatile; the "
        "second mount is refused by the kernel and CRI operations fail."
        + (" Volatile is configured or in effect here." if status == FAIL else " Matters once volatile is enabled."),
        _opt(f.mount_options_ref),
        f"Upgrade to >= {kb.TEMP_MOUNT_STRIP_VOLATILE.fixed_in_text()} before (or with) enabling volatile.",
        kb.TEMP_MOUNT_STRIP_VOLATILE.references,
    )


@check(
    "fsync-volatile-spelling",
    reads=("config", "containerd", "kernel", "mounts"),
    statuses=(PASS, WARN, FAIL, INFO),
    about="'fsync=volatile' (as newer kernels print it) in the config, or with a containerd that only matches "
    "'volatile'",
    references=kb.FSYNC_VOLATILE_SPELLING.references,
)
def fsync_volatile_spelling(f: Facts) -> Iterator[Check]:
    config, cv, kv = f.config, f.containerd, f.kernel
    cfg_fsync = config is not None and "fsync=volatile" in (config.overlay_mount_options or ())
    kernel_prints = (kv is not None and kb.KERNEL_PRINTS_FSYNC_VOLATILE.has(kv)) or (
        f.mounts is not None and any(volatile_spelling(m) == "fsync=volatile" for m in f.mounts)
    )
    knows = cv is not None and kb.FSYNC_VOLATILE_SPELLING.contains(cv)
    fixed_in = kb.FSYNC_VOLATILE_SPELLING.fixed_in_text()
    if cfg_fsync:
        yield Check(
            "fsync-volatile-spelling",
            FAIL if (cv is not None and not knows) else WARN,
            "Config spells the option 'fsync=volatile'",
            "Kernels before the 'fsync=' option reject it, and containerd before "
            f"{fixed_in} does not recognise it, so temporary mounts keep it.",
            _opt(f.mount_options_ref),
            'Write mount_options = ["volatile"]: every kernel >= 5.10 accepts it (newer ones print it as '
            "fsync=volatile).",
            kb.FSYNC_VOLATILE_SPELLING.references,
        )
    elif kernel_prints and cv is not None and not knows:
        yield Check(
            "fsync-volatile-spelling",
            INFO,
            "Kernel prints 'fsync=volatile'; this containerd matches only 'volatile'",
            f"containerd recognises both spellings from {fixed_in}. With "
            "mount_options from config.toml the literal 'volatile' is what containerd passes, so temp-mount "
            "stripping works; option lists read back from the kernel or a proxy snapshotter (and the CRI "
            "image-volume check) miss it.",
            f.containerd_refs + f.kernel_refs,
            f"Upgrade to >= {fixed_in} if you use a proxy snapshotter.",
            kb.FSYNC_VOLATILE_SPELLING.references,
        )
    elif kernel_prints:
        yield Check(
            "fsync-volatile-spelling",
            PASS if knows else INFO,
            "Kernel prints 'fsync=volatile'",
            "containerd "
            + (
                f"{cv} recognises both spellings."
                if knows
                else f"version unknown: both spellings are matched from {fixed_in}."
            ),
            references=kb.FSYNC_VOLATILE_SPELLING.references,
        )
