"""Audit a containerd config, versions and mounts against the facts in plegdoctor.knowledge.

Public API (used by `pleg-doctor check` and by the diagnosis rules):

    audit(config, versions, mounts, sysctls=None) -> list[Check]

- `config`: plegdoctor.parsers.runtime_config.RuntimeConfig or None;
- `versions`: plegdoctor.model.Versions (strings as printed; parsed here, unparseable ones
  give an `info` check instead of raising) or None;
- `mounts`: a sequence of plegdoctor.model.Mount (e.g. /proc/mounts) or None;
- `sysctls`: optional {"dirty_bytes", "dirty_ratio", "dirty_background_bytes",
  "dirty_background_ratio", "mem_total_kb"} integers.

Each `Check` has a stable `id`, a `status` (pass|warn|fail|info), a title, a detail, the
evidence it read (Refs to config lines and mount lines), a fix (which link of the stall chain
the fix removes) and references. `snippet_for(config, versions)` is the exact config text
that enables volatile for the config's schema. Checks never touch the node.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plegdoctor import knowledge as kb
from plegdoctor.errors import UserError
from plegdoctor.model import Mount, Ref, Versions
from plegdoctor.parsers.mounts import is_volatile, mount_for, overlay_dirs, volatile_spelling
from plegdoctor.parsers.runtime_config import RuntimeConfig

PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"
STATUS_ORDER = {PASS: 0, INFO: 0, WARN: 1, FAIL: 2}
OVERLAY_SNAPSHOTS_DIR = "io.containerd.snapshotter.v1.overlayfs"
LAB_DIRTY_BYTES = 256 * 1024 * 1024
LAB_DIRTY_BACKGROUND_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    status: str
    title: str
    detail: str
    evidence: tuple[Ref, ...] = ()
    fix: str = ""
    references: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "evidence": [r.to_json() for r in self.evidence],
            "fix": self.fix,
            "references": list(self.references),
        }


@dataclass(frozen=True, slots=True)
class ParsedVersions:
    containerd: kb.ContainerdVersion | None
    kernel: kb.KernelVersion | None
    runc: str | None
    problems: tuple[str, ...]


def parse_versions(versions: Versions | None) -> ParsedVersions:
    """Parse the version strings; problems are reported, never raised."""
    if versions is None:
        return ParsedVersions(None, None, None, ())
    problems: list[str] = []
    cv = kv = None
    if versions.containerd:
        try:
            cv = kb.ContainerdVersion.parse(versions.containerd)
        except UserError as exc:
            problems.append(str(exc))
    if versions.kernel:
        try:
            kv = kb.KernelVersion.parse(versions.kernel)
        except UserError as exc:
            problems.append(str(exc))
    return ParsedVersions(cv, kv, versions.runc, tuple(problems))


def default_schema(cv: kb.ContainerdVersion | None) -> int:
    """The schema a new config should use for this containerd (unknown: version 2)."""
    if cv is None or cv.major < 2:
        return 2
    return 4 if (cv.major, cv.minor) >= (2, 3) else 3


def snippet_for(config: RuntimeConfig | None, versions: Versions | None) -> str:
    """The TOML that enables volatile, plus the risks as comments."""
    pv = parse_versions(versions)
    if config is not None:
        table_line = config.overlay_table_line
        body = kb.volatile_snippet(config.schema, config.overlay_mount_options, table_line)
        schema = config.schema
    else:
        schema = default_schema(pv.containerd)
        body = kb.volatile_snippet(schema)
    head = f"# containerd config version {schema}: enable overlayfs volatile; restart containerd after editing."
    lines = [*textwrap.wrap(head, 78, subsequent_indent="# "), body, "# Risks:"]
    for risk in kb.VOLATILE_RISKS:
        lines.extend(textwrap.wrap(risk, 78, initial_indent="# - ", subsequent_indent="#   "))
    return "\n".join(lines) + "\n"


def _containerd_overlay_mounts(config: RuntimeConfig | None, mounts: Sequence[Mount]) -> list[Mount]:
    """Overlay mounts made by containerd's overlayfs snapshotter (upperdir in its snapshots)."""
    roots = []
    if config is not None:
        roots.append(config.overlay_root_path or f"{config.root.rstrip('/')}/{OVERLAY_SNAPSHOTS_DIR}")
    out = []
    for m in mounts:
        if m.fstype != "overlay":
            continue
        upper = overlay_dirs(m).get("upperdir", "")
        if any(upper.startswith(r.rstrip("/") + "/") for r in roots) or f"/{OVERLAY_SNAPSHOTS_DIR}/" in upper:
            out.append(m)
    return out


def _refs_about(refs: tuple[Ref, ...], raw: str | None) -> tuple[Ref, ...]:
    """The version refs that quote this component's version string."""
    if not raw:
        return ()
    token = raw.split()[0] if " " not in raw.strip() else raw.strip()
    return tuple(r for r in refs if token in r.text or raw.strip() in r.text)


def audit(
    config: RuntimeConfig | None,
    versions: Versions | None,
    mounts: Sequence[Mount] | None,
    sysctls: Mapping[str, int] | None = None,
) -> list[Check]:
    pv = parse_versions(versions)
    cv, kv = pv.containerd, pv.kernel
    checks: list[Check] = []
    add = checks.append
    vrefs = tuple(versions.refs) if versions is not None else ()
    crefs = _refs_about(vrefs, versions.containerd if versions else None)
    krefs = _refs_about(vrefs, versions.kernel if versions else None)

    # -- versions ------------------------------------------------------------------------
    parts = []
    if cv:
        parts.append(f"containerd {cv} ({cv.raw})" if cv.raw and cv.raw != str(cv) else f"containerd {cv}")
    if versions is not None and versions.runc:
        parts.append(f"runc {versions.runc}")
    if kv:
        parts.append(f"kernel {kv.raw or kv}")
    if versions is not None and versions.go:
        parts.append(f"Go {versions.go}")
    add(
        Check(
            "versions",
            INFO,
            "Versions read",
            ("; ".join(parts) or "no versions given (use --containerd-version/--kernel-version or --live)")
            + ("" if not pv.problems else ". " + "; ".join(pv.problems)),
            vrefs,
        )
    )

    # -- config schema -------------------------------------------------------------------
    volatile_cfg = config is not None and config.volatile_configured
    if config is not None:
        schema = config.schema_info
        ev = tuple(r for r in (config.ref("version"),) if r)
        min_cv = kb.ContainerdVersion.parse(schema.min_containerd)
        if cv is not None and cv < min_cv:
            add(
                Check(
                    "config-schema",
                    FAIL,
                    f"Config version {config.schema} needs containerd >= {schema.min_containerd}",
                    f"{config.path} declares version {config.schema}; containerd {cv} does not read it.",
                    ev,
                    f"Write the config in version {default_schema(cv)} (plugin IDs of that schema).",
                    (schema.source,),
                )
            )
        else:
            detail = (
                f"version {config.schema}{'' if config.schema_explicit else ' (no version field)'}: "
                f"overlay table [{kb.toml_key(schema.overlay, config.schema)}], CRI images in "
                f"[{kb.toml_key(schema.cri_images, config.schema)}]"
            )
            status = INFO if config.schema == 1 else PASS
            fix = (
                "Version 1 is deprecated: `containerd config migrate` prints the migrated file."
                if status == INFO
                else ""
            )
            add(
                Check(
                    "config-schema", status, f"Config schema version {config.schema}", detail, ev, fix, (schema.source,)
                )
            )
        for i, note in enumerate(config.misplaced):
            add(
                Check(
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
                    (schema.source,),
                )
            )

    # -- volatile supported by containerd ----------------------------------------------------
    mo_ref = config.ref(f"plugins.{config.schema_info.overlay}.mount_options") if config else None
    if config is not None and mo_ref is None:
        mo_ref = config.ref("plugins.overlayfs.mount_options") or config.ref(
            "plugins.io.containerd.snapshotter.v1.overlayfs.mount_options"
        )
    if cv is None:
        add(
            Check(
                "volatile-containerd",
                INFO,
                "containerd support for overlay mount_options: version unknown",
                f"mount_options (volatile) needs containerd >= {kb.MOUNT_OPTIONS.fixed_in_text()}.",
                references=kb.MOUNT_OPTIONS.references,
            )
        )
    elif kb.MOUNT_OPTIONS.contains(cv):
        add(
            Check(
                "volatile-containerd",
                PASS,
                f"containerd {cv} supports overlay mount_options",
                f"First in {kb.MOUNT_OPTIONS.fixed_in_text()} ({kb.MOUNT_OPTIONS.source}).",
                crefs,
                references=kb.MOUNT_OPTIONS.references,
            )
        )
    else:
        add(
            Check(
                "volatile-containerd",
                FAIL,
                f"containerd {cv} cannot set overlay mount options",
                f"The overlay snapshotter's mount_options key arrived in {kb.MOUNT_OPTIONS.fixed_in_text()}; "
                f"{cv} ignores it{' (your config sets it: it has no effect)' if volatile_cfg else ''}.",
                tuple(r for r in (mo_ref,) if r) + crefs,
                f"Upgrade containerd to >= {kb.MOUNT_OPTIONS.fixed_in_text()} (better: 1.6.34 / 1.7.19 / 2.0, "
                "which also strip volatile from temporary mounts).",
                kb.MOUNT_OPTIONS.references,
            )
        )

    # -- kernel --------------------------------------------------------------------------
    if kv is None:
        add(
            Check(
                "volatile-kernel",
                INFO,
                "Kernel support for overlay volatile: version unknown",
                "overlayfs volatile needs Linux >= 5.10.",
                references=kb.KERNEL_VOLATILE.references,
            )
        )
    elif kb.KERNEL_VOLATILE.has(kv):
        add(
            Check(
                "volatile-kernel",
                PASS,
                f"Kernel {kv.raw or kv} supports overlay volatile",
                f"Since 5.10 ({kb.KERNEL_VOLATILE.source}).",
                krefs,
                references=kb.KERNEL_VOLATILE.references,
            )
        )
    else:
        add(
            Check(
                "volatile-kernel",
                FAIL,
                f"Kernel {kv.raw or kv} has no overlay volatile",
                "overlayfs volatile arrived in Linux 5.10; on older kernels a volatile overlay mount fails, so "
                "containers would not start. (Distro kernels may backport it: test on one node.)",
                krefs,
                "Stay without volatile on this kernel; reduce dirty data on containerd's disk instead "
                "(vm.dirty_bytes, a separate disk for /var/lib/containerd).",
                kb.KERNEL_VOLATILE.references,
            )
        )

    # -- volatile configured -------------------------------------------------------------
    if config is None:
        add(
            Check(
                "volatile-configured",
                INFO,
                "Volatile configuration: no containerd config given",
                "Pass --config FILE (or --live) to check mount_options.",
            )
        )
    elif config.snapshotter not in (None, "overlayfs"):
        add(
            Check(
                "volatile-configured",
                INFO,
                f"CRI uses the {config.snapshotter!r} snapshotter",
                "overlayfs volatile applies only to the overlayfs snapshotter.",
                tuple(r for k, r in config.refs.items() if k.endswith(".snapshotter")),
            )
        )
    elif volatile_cfg:
        spelling = next(o for o in config.overlay_mount_options or () if o in ("volatile", "fsync=volatile"))
        add(
            Check(
                "volatile-configured",
                PASS,
                f"Overlay mount_options include {spelling!r}",
                "Unmounting a container rootfs no longer forces syncfs of the backing filesystem.",
                tuple(r for r in (mo_ref,) if r),
                references=(kb.ISSUE_SEED, kb.PR_MOUNT_OPTIONS),
            )
        )
    else:
        add(
            Check(
                "volatile-configured",
                WARN,
                "Overlay volatile is not configured",
                "Each shim Delete unmounts the container rootfs; without volatile the kernel then syncs every "
                "dirty page of the backing filesystem (ovl_sync_fs <- sync_filesystem <- generic_shutdown_super) "
                "while the shim holds its process lock, which is the umount link of the seed stall chain.",
                tuple(r for r in (config.ref(f"plugins.{config.schema_info.overlay}"),) if r),
                "Enable it (removes the umount-syncfs link only; read the risks printed with the snippet):\n"
                + kb.volatile_snippet(config.schema, config.overlay_mount_options, config.overlay_table_line),
                (kb.ISSUE_SEED, kb.ISSUE_PLEG_IO, kb.ISSUE_UMOUNT_SLOW_DISK, kb.KERNEL_OVERLAY_DOC),
            )
        )

    # -- volatile in effect ---------------------------------------------------------------
    if mounts is None:
        add(
            Check(
                "volatile-in-effect",
                INFO,
                "Volatile in effect: no mount table given",
                "Pass --mounts /proc/mounts (or --live) to see the options of running container rootfs mounts.",
            )
        )
    else:
        ovl = _containerd_overlay_mounts(config, mounts)
        vol = [m for m in ovl if is_volatile(m)]
        spellings = sorted({volatile_spelling(m) or "" for m in vol})
        if not ovl:
            add(
                Check(
                    "volatile-in-effect",
                    INFO,
                    "No containerd overlay mounts in the mount table",
                    "No running container rootfs found (nothing to verify).",
                )
            )
        elif len(vol) == len(ovl):
            add(
                Check(
                    "volatile-in-effect",
                    PASS,
                    f"All {len(ovl)} containerd overlay mounts are volatile",
                    f"Mount option spelled {', '.join(spellings)} by this kernel.",
                    tuple(m.ref for m in vol[:3]),
                )
            )
        else:
            why = (
                "The config enables it, so containerd was not restarted since, or these containers were "
                "created before the change (they keep their mounts until recreated)."
                if volatile_cfg
                else "The config does not enable it."
            )
            add(
                Check(
                    "volatile-in-effect",
                    WARN,
                    f"{len(ovl) - len(vol)} of {len(ovl)} containerd overlay mounts are not volatile",
                    why,
                    tuple(m.ref for m in [m for m in ovl if not is_volatile(m)][:3]),
                    "Restart containerd after editing the config; recreate (roll) the pods to get new mounts.",
                )
            )

    # -- temp-mount stripping ----------------------------------------------------------------
    in_effect = mounts is not None and any(is_volatile(m) for m in _containerd_overlay_mounts(config, mounts))
    if cv is not None:
        if kb.TEMP_MOUNT_STRIP_VOLATILE.contains(cv):
            add(
                Check(
                    "volatile-temp-mounts",
                    PASS,
                    f"containerd {cv} strips volatile from temporary mounts",
                    f"First in {kb.TEMP_MOUNT_STRIP_VOLATILE.fixed_in_text()} ({kb.TEMP_MOUNT_STRIP_VOLATILE.source}).",
                    references=kb.TEMP_MOUNT_STRIP_VOLATILE.references,
                )
            )
        else:
            status = FAIL if (volatile_cfg or in_effect) else INFO
            add(
                Check(
                    "volatile-temp-mounts",
                    status,
                    f"containerd {cv} keeps volatile on temporary mounts",
                    "Before 1.6.34 / 1.7.19 / 2.0, temporary mounts of a container rootfs (e.g. reading "
                    "/etc/passwd for the user ID) reuse the snapshot's upper/work dirs with volatile; the "
                    "second mount is refused by the kernel and CRI operations fail."
                    + (
                        " Volatile is configured or in effect here."
                        if status == FAIL
                        else " Matters once volatile is enabled."
                    ),
                    tuple(r for r in (mo_ref,) if r),
                    f"Upgrade to >= {kb.TEMP_MOUNT_STRIP_VOLATILE.fixed_in_text()} before (or with) enabling volatile.",
                    kb.TEMP_MOUNT_STRIP_VOLATILE.references,
                )
            )

    # -- fsync=volatile spelling -------------------------------------------------------------
    cfg_fsync = config is not None and "fsync=volatile" in (config.overlay_mount_options or ())
    kernel_prints = (kv is not None and kb.KERNEL_PRINTS_FSYNC_VOLATILE.has(kv)) or (
        mounts is not None and any(volatile_spelling(m) == "fsync=volatile" for m in mounts)
    )
    knows = cv is not None and kb.FSYNC_VOLATILE_SPELLING.contains(cv)
    if cfg_fsync:
        add(
            Check(
                "fsync-volatile-spelling",
                FAIL if (cv is not None and not knows) else WARN,
                "Config spells the option 'fsync=volatile'",
                "Kernels before the 'fsync=' option reject it, and containerd before "
                f"{kb.FSYNC_VOLATILE_SPELLING.fixed_in_text()} does not recognise it, so temporary mounts keep it.",
                tuple(r for r in (mo_ref,) if r),
                'Write mount_options = ["volatile"]: every kernel >= 5.10 accepts it (newer ones print it as '
                "fsync=volatile).",
                kb.FSYNC_VOLATILE_SPELLING.references,
            )
        )
    elif kernel_prints and cv is not None and not knows:
        add(
            Check(
                "fsync-volatile-spelling",
                INFO,
                "Kernel prints 'fsync=volatile'; this containerd matches only 'volatile'",
                f"containerd recognises both spellings from {kb.FSYNC_VOLATILE_SPELLING.fixed_in_text()}. With "
                "mount_options from config.toml the literal 'volatile' is what containerd passes, so temp-mount "
                "stripping works; option lists read back from the kernel or a proxy snapshotter (and the CRI "
                "image-volume check) miss it.",
                crefs + krefs,
                f"Upgrade to >= {kb.FSYNC_VOLATILE_SPELLING.fixed_in_text()} if you use a proxy snapshotter.",
                kb.FSYNC_VOLATILE_SPELLING.references,
            )
        )
    elif kernel_prints:
        add(
            Check(
                "fsync-volatile-spelling",
                PASS if knows else INFO,
                "Kernel prints 'fsync=volatile'",
                "containerd "
                + (
                    f"{cv} recognises both spellings."
                    if knows
                    else "version unknown: both spellings are matched from "
                    f"{kb.FSYNC_VOLATILE_SPELLING.fixed_in_text()}."
                ),
                references=kb.FSYNC_VOLATILE_SPELLING.references,
            )
        )

    # -- unfixed status lock ----------------------------------------------------------------
    issue = kb.STATUS_LOCK_UNFIXED
    add(
        Check(
            "update-resources-status-lock",
            INFO,
            "Known open issue: UpdateContainerResources holds the container status lock (all versions)",
            issue.detail,
            fix="No setting removes it. Keep the calls inside it fast: less dirty data on containerd's disk "
            "(vm.dirty_bytes / dirty_background_bytes), heavy writers on volumes of another disk or under I/O "
            "limits, a faster or dedicated disk; avoid frequent resource updates (in-place resize, CPU manager).",
            references=issue.references,
        )
    )

    # -- content commit fsync in bbolt tx -------------------------------------------------------
    if cv is not None:
        if kb.CONTENT_COMMIT_PRESYNC.contains(cv):
            add(
                Check(
                    "content-commit-fsync",
                    PASS,
                    "Image blobs are fsynced before the bbolt write lock is taken",
                    kb.CONTENT_COMMIT_PRESYNC.source,
                    references=kb.CONTENT_COMMIT_PRESYNC.references,
                )
            )
        else:
            add(
                Check(
                    "content-commit-fsync",
                    WARN,
                    f"containerd {cv} fsyncs each pulled blob inside the bbolt write transaction",
                    "In 1.6/1.7 the content writer Commit calls fsync while holding bbolt's single writer lock; on "
                    "a busy disk every metadata update (container update, create, delete) waits behind it: the "
                    "bbolt link of the seed chain.",
                    crefs,
                    "containerd 2.0+ pre-syncs outside the transaction (#10128, not backported). Meanwhile: fewer "
                    "parallel pulls, less dirty data on containerd's disk.",
                    kb.CONTENT_COMMIT_PRESYNC.references,
                )
            )

    # -- bbolt no_sync ---------------------------------------------------------------------
    no_sync = config.bbolt_no_sync if config else None
    no_sync_ref = config.ref(f"plugins.{config.schema_info.bolt}.no_sync") if config else None
    if cv is not None:
        if kb.BBOLT_NO_SYNC.contains(cv):
            add(
                Check(
                    "bbolt-no-sync",
                    INFO,
                    "bbolt no_sync is " + ("enabled" if no_sync else "available (off)"),
                    "no_sync = true skips bbolt's fdatasync on every metadata commit (lab, same slow disk: worst "
                    "ListContainers 19 s -> 6.4 s with volatile). Risk: a host crash can lose or corrupt recent "
                    "metadata (containerd's bolt DB).",
                    tuple(r for r in (no_sync_ref,) if r),
                    ""
                    if no_sync
                    else f"Optional: [{kb.toml_key('io.containerd.metadata.v1.bolt', config.schema if config else 3)}] "
                    "no_sync = true (removes the bbolt fdatasync link; crash-consistency risk).",
                    kb.BBOLT_NO_SYNC.references,
                )
            )
        elif no_sync:
            add(
                Check(
                    "bbolt-no-sync",
                    WARN,
                    f"bbolt no_sync has no effect on containerd {cv}",
                    "The option exists from 2.1.0.",
                    tuple(r for r in (no_sync_ref,) if r),
                    "Remove it or upgrade to 2.1+.",
                    kb.BBOLT_NO_SYNC.references,
                )
            )

    # -- image pull parallelism -------------------------------------------------------------------
    if config is not None:
        mcd = config.max_concurrent_downloads
        eff = mcd if mcd is not None else kb.DEFAULT_MAX_CONCURRENT_DOWNLOADS
        transfer = (
            cv is not None and cv >= kb.TRANSFER_SERVICE_PULL and not config.use_local_image_pull and config.schema >= 3
        )
        detail = f"max_concurrent_downloads = {eff}{' (default)' if mcd is None else ''} layers per image"
        if transfer:
            tmcd = config.transfer_max_concurrent_downloads
            detail += (
                f"; containerd {cv} pulls through the transfer service, whose limit is "
                f"{tmcd if tmcd is not None else kb.DEFAULT_MAX_CONCURRENT_DOWNLOADS}"
                f"{'' if tmcd is not None else ' (default)'} ([plugins.'io.containerd.transfer.v1.local'])"
            )
        detail += (
            ". The layers of one image unpack in order (each onto its parent snapshot); different images pull and "
            "unpack at once, bounded by kubelet's serializeImagePulls / maxParallelImagePulls. Unpacks write "
            "straight into snapshot dirs, so all of it is dirty data on containerd's disk."
        )
        if config.image_pull_with_sync_fs:
            detail += " image_pull_with_sync_fs = true: each unpack ends with a syncfs."
        status = WARN if eff > kb.DEFAULT_MAX_CONCURRENT_DOWNLOADS else INFO
        add(
            Check(
                "image-pull-parallelism",
                status,
                "Image pull parallelism" + (f": {eff} downloads per image" if status == WARN else ""),
                detail,
                tuple(
                    r
                    for k, r in config.refs.items()
                    if k.endswith(("max_concurrent_downloads", "image_pull_with_sync_fs"))
                ),
                "Keep max_concurrent_downloads <= 3 and serialized image pulls on nodes with a shared disk; pre-pull "
                "large images.",
                (kb.ISSUE_SEED,),
            )
        )

    # -- containerd root on its own disk -----------------------------------------------------------
    if mounts:
        root = config.root if config else "/var/lib/containerd"
        where = mount_for(root, mounts)
        slash = mount_for("/", mounts)
        kubelet = mount_for("/var/lib/kubelet", mounts)
        if where is None:
            pass
        else:
            shared_with = []
            if slash is not None and where.source == slash.source and where.fstype == slash.fstype:
                shared_with.append("/")
            if (
                kubelet is not None
                and where.source == kubelet.source
                and where.fstype == kubelet.fstype
                and "/" not in shared_with
            ):
                shared_with.append("/var/lib/kubelet")
            ev = tuple(dict.fromkeys(m.ref for m in (where, slash, kubelet) if m is not None))
            if shared_with:
                add(
                    Check(
                        "containerd-root-disk",
                        WARN,
                        f"{root} shares its filesystem with {' and '.join(shared_with)}",
                        f"{root} is on {where.source} ({where.fstype}, mounted at {where.target}); writes of logs, "
                        "emptyDir volumes and the OS share its writeback queue with containerd's bbolt, status and "
                        "image files.",
                        ev,
                        f"Give {root} its own disk (or at least its own filesystem) so image unpacks and container "
                        "writes elsewhere do not queue containerd's fsyncs.",
                        (kb.ISSUE_PLEG_IO,),
                    )
                )
            else:
                add(
                    Check(
                        "containerd-root-disk",
                        PASS,
                        f"{root} has its own filesystem",
                        f"{where.source} ({where.fstype}) mounted at {where.target}.",
                        ev,
                    )
                )

    # -- debug socket (for goroutine dumps) ------------------------------------------------------
    if config is not None:
        if config.debug_address:
            add(
                Check(
                    "debug-socket",
                    PASS,
                    "containerd debug socket is configured",
                    f"Goroutine dumps without SIGUSR1: ctr pprof --debug-socket {config.debug_address} goroutines",
                    tuple(
                        r
                        for r in (
                            config.ref("debug.address") or config.ref("plugins.io.containerd.server.v1.debug.address"),
                        )
                        if r
                    ),
                )
            )
        else:
            table = (
                f"[{kb.toml_key('io.containerd.server.v1.debug', config.schema)}]" if config.schema >= 4 else "[debug]"
            )
            add(
                Check(
                    "debug-socket",
                    INFO,
                    "containerd debug socket is not configured",
                    "Without it goroutine dumps need SIGUSR1 (written to /tmp/containerd.<pid>.stacks.log).",
                    fix=f'{table} address = "/run/containerd/debug.sock" enables `ctr pprof goroutines`.',
                )
            )

    # -- writeback limits ------------------------------------------------------------------------------
    if sysctls:
        dirty_bytes = sysctls.get("dirty_bytes", 0)
        ratio = sysctls.get("dirty_ratio", 0)
        mem_kb = sysctls.get("mem_total_kb")
        limit = dirty_bytes if dirty_bytes else (mem_kb * 1024 * ratio // 100 if mem_kb and ratio else None)
        if limit is not None:
            desc = (
                f"vm.dirty_bytes = {dirty_bytes}"
                if dirty_bytes
                else f"vm.dirty_ratio = {ratio}% of {mem_kb // 1024 if mem_kb else '?'} MiB"
            )
            big = limit > 1024 * 1024 * 1024
            add(
                Check(
                    "writeback-limits",
                    WARN if big else PASS,
                    f"Dirty page limit about {limit // (1024 * 1024)} MiB",
                    f"{desc}. Every fsync on containerd's disk can wait for this much writeback; in the lab, volatile "
                    "plus vm.dirty_bytes=256 MiB / dirty_background_bytes=64 MiB brought the worst ListContainers to "
                    "~1 s on 1.7.24 and 2.1.9.",
                    fix=(
                        f"sysctl -w vm.dirty_bytes={LAB_DIRTY_BYTES} "
                        f"vm.dirty_background_bytes={LAB_DIRTY_BACKGROUND_BYTES} "
                        "(persist in /etc/sysctl.d; lowers throughput of bulk writers)"
                    )
                    if big
                    else "",
                )
            )

    return checks


def worst(checks: Sequence[Check]) -> str:
    """The most severe status among the checks (pass when none warn or fail)."""
    level = max((STATUS_ORDER[c.status] for c in checks), default=0)
    return {0: PASS, 1: WARN, 2: FAIL}[level]
