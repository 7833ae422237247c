"""Checks of what else queues containerd's fsyncs: known locks and fsyncs of this version,
bbolt `no_sync`, image pull parallelism, the disk under containerd's root, the debug socket,
and the kernel's dirty page limits."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor import knowledge as kb
from plegdoctor.analysis.config_audit.base import INFO, PASS, WARN, Check, Facts, check
from plegdoctor.parsers.mounts import mount_for

LAB_DIRTY_BYTES = 256 * 1024 * 1024
LAB_DIRTY_BACKGROUND_BYTES = 64 * 1024 * 1024


@check(
    "update-resources-status-lock",
    reads=(),
    statuses=(INFO,),
    about="the known open issue: UpdateContainerResources holds the container status lock (all versions)",
    references=kb.STATUS_LOCK_UNFIXED.references,
)
def status_lock(f: Facts) -> Iterator[Check]:
    issue = kb.STATUS_LOCK_UNFIXED
    yield Check(
        "update-resources-status-lock",
        INFO,
        "Known open issue: UpdateContainerResources holds the container status lock (all versions)",
        issue.detail,
        fix="No setting removes it. Keep the calls inside it fast: less dirty data on containerd's disk "
        "(vm.dirty_bytes / dirty_background_bytes), heavy writers on volumes of another disk or under I/O "
        "limits, a faster or dedicated disk; avoid frequent resource updates (in-place resize, CPU manager).",
        references=issue.references,
    )


@check(
    "content-commit-fsync",
    reads=("containerd",),
    statuses=(PASS, WARN),
    about="image blobs are fsynced outside bbolt's write transaction (2.0+)",
    references=kb.CONTENT_COMMIT_PRESYNC.references,
)
def content_commit_fsync(f: Facts) -> Iterator[Check]:
    cv = f.containerd
    if cv is None:
        return
    if kb.CONTENT_COMMIT_PRESYNC.contains(cv):
        yield Check(
            "content-commit-fsync",
            PASS,
            "Image blobs are fsynced before the bbolt write lock is taken",
            kb.CONTENT_COMMIT_PRESYNC.source,
            references=kb.CONTENT_COMMIT_PRESYNC.references,
        )
    else:
        yield Check(
            "content-commit-fsync",
            WARN,
            f"containerd {cv} fsyncs each pulled blob inside the bbolt write transaction",
            "In 1.6/1.7 the content writer Commit calls fsync while holding bbolt's single writer lock; on "
            "a busy disk every metadata update (container update, create, delete) waits behind it: the "
            "bbolt link of the seed chain.",
            f.containerd_refs,
            "containerd 2.0+ pre-syncs outside the transaction (#10128, not backported). Meanwhile: fewer "
            "parallel pulls, less dirty data on containerd's disk.",
            kb.CONTENT_COMMIT_PRESYNC.references,
        )


@check(
    "bbolt-no-sync",
    reads=("containerd", "config"),
    statuses=(INFO, WARN),
    about="bbolt no_sync: available (2.1+) and whether it is set",
    references=kb.BBOLT_NO_SYNC.references,
)
def bbolt_no_sync(f: Facts) -> Iterator[Check]:
    config, cv = f.config, f.containerd
    no_sync = config.bbolt_no_sync if config else None
    no_sync_ref = config.ref(f"plugins.{config.schema_info.bolt}.no_sync") if config else None
    ev = tuple(r for r in (no_sync_ref,) if r)
    if cv is None:
        return
    if kb.BBOLT_NO_SYNC.contains(cv):
        yield Check(
            "bbolt-no-sync",
            INFO,
            "bbolt no_sync is " + ("enabled" if no_sync else "available (off)"),
            "no_sync = true skips bbolt's fdatasync on every metadata commit (lab, same slow disk: worst "
            "ListContainers 19 s -> 6.4 s with volatile). Risk: a host crash can lose or corrupt recent "
            "metadata (containerd's bolt DB).",
            ev,
            ""
            if no_sync
            else f"Optional: [{kb.toml_key('io.containerd.metadata.v1.bolt', config.schema if config else 3)}] "
            "no_sync = true (removes the bbolt fdatasync link; crash-consistency risk).",
            kb.BBOLT_NO_SYNC.references,
        )
    elif no_sync:
        yield Check(
            "bbolt-no-sync",
            WARN,
            f"bbolt no_sync has no effect on containerd {cv}",
            "The option exists from 2.1.0.",
            ev,
            "Remove it or upgrade to 2.1+.",
            kb.BBOLT_NO_SYNC.references,
        )


@check(
    "image-pull-parallelism",
    reads=("config", "containerd"),
    statuses=(INFO, WARN),
    about="how many layers per image are pulled at once (the dirty data image pulls write)",
    references=(kb.ISSUE_SEED,),
)
def image_pull_parallelism(f: Facts) -> Iterator[Check]:
    config, cv = f.config, f.containerd
    if config is None:
        return
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
    yield Check(
        "image-pull-parallelism",
        status,
        "Image pull parallelism" + (f": {eff} downloads per image" if status == WARN else ""),
        detail,
        tuple(r for k, r in config.refs.items() if k.endswith(("max_concurrent_downloads", "image_pull_with_sync_fs"))),
        "Keep max_concurrent_downloads <= 3 and serialized image pulls on nodes with a shared disk; pre-pull "
        "large images.",
        (kb.ISSUE_SEED,),
    )


@check(
    "containerd-root-disk",
    reads=("mounts", "config"),
    statuses=(PASS, WARN),
    about="containerd's root has a filesystem of its own (not shared with / or /var/lib/kubelet)",
    references=(kb.ISSUE_9770,),
)
def containerd_root_disk(f: Facts) -> Iterator[Check]:
    mounts = f.mounts
    if not mounts:
        return
    root = f.config.root if f.config else "/var/lib/containerd"
    where = mount_for(root, mounts)
    if where is None:
        return
    slash = mount_for("/", mounts)
    kubelet = mount_for("/var/lib/kubelet", mounts)
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
        yield Check(
            "containerd-root-disk",
            WARN,
            f"{root} shares its filesystem with {' and '.join(shared_with)}",
            f"{root} is on {where.source} ({where.fstype}, mounted at {where.target}); writes of logs, "
            "emptyDir volumes and the OS share its writeback queue with containerd's bbolt, status and "
            "image files.",
            ev,
            f"Give {root} its own disk (or at least its own filesystem) so image unpacks and container "
            "writes elsewhere do not queue containerd's fsyncs.",
            (kb.ISSUE_9770,),
        )
    else:
        yield Check(
            "containerd-root-disk",
            PASS,
            f"{root} has its own filesystem",
            f"{where.source} ({where.fstype}) mounted at {where.target}.",
            ev,
        )


@check(
    "debug-socket",
    reads=("config",),
    statuses=(PASS, INFO),
    about="containerd's debug socket (goroutine dumps without SIGUSR1)",
)
def debug_socket(f: Facts) -> Iterator[Check]:
    config = f.config
    if config is None:
        return
    if config.debug_address:
        yield Check(
            "debug-socket",
            PASS,
            "containerd debug socket is configured",
            f"Goroutine dumps without SIGUSR1: ctr pprof --debug-socket {config.debug_address} goroutines",
            tuple(
                r
                for r in (config.ref("debug.address") or config.ref("plugins.io.containerd.server.v1.debug.address"),)
                if r
            ),
        )
        return
    table = f"[{kb.toml_key('io.containerd.server.v1.debug', config.schema)}]" if config.schema >= 4 else "[debug]"
    yield Check(
        "debug-socket",
        INFO,
        "containerd debug socket is not configured",
        "Without it goroutine dumps need SIGUSR1 (written to /tmp/containerd.<pid>.stacks.log).",
        fix=f'{table} address = "/run/containerd/debug.sock" enables `ctr pprof goroutines`.',
    )


@check(
    "writeback-limits",
    reads=("sysctls",),
    statuses=(PASS, WARN),
    about="the kernel's dirty page limit (how much writeback an fsync can wait for)",
)
def writeback_limits(f: Facts) -> Iterator[Check]:
    sysctls = f.sysctls
    if not sysctls:
        return
    dirty_bytes = sysctls.get("dirty_bytes", 0)
    ratio = sysctls.get("dirty_ratio", 0)
    mem_kb = sysctls.get("mem_total_kb")
    limit = dirty_bytes if dirty_bytes else (mem_kb * 1024 * ratio // 100 if mem_kb and ratio else None)
    if limit is None:
        return
    desc = (
        f"vm.dirty_bytes = {dirty_bytes}"
        if dirty_bytes
        else f"vm.dirty_ratio = {ratio}% of {mem_kb // 1024 if mem_kb else '?'} MiB"
    )
    big = limit > 1024 * 1024 * 1024
    yield Check(
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
