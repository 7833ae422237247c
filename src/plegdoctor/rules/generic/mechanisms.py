"""The generic layer table: which mechanism (class) a wait shows, and the shared readers of PD8xx."""

from __future__ import annotations

import msgspec

from plegdoctor.goroutines.model import CONTAINERD, CRI_DOCKERD, CRIO, DOCKERD, KUBELET, RUNC, SHIM, SHIM_V1
from plegdoctor.model import Chain, ChainLink, EventKind, Ref, RootCauseClass
from plegdoctor.rules.registry import RuleContext
from plegdoctor.rules.signals import events, worst_stall

C = RootCauseClass
LONG_WAIT_MINUTES = 1  # Go prints `, N minutes` from one minute on: any printed wait is long for a lock or a call
CONVOY_MIN = 3  # goroutines on one lock that make a convoy by count alone
CONVOY_BY_SITE_MIN = 50  # goroutines at one lock site (no address) that make a convoy
MAX_CONVOY_LINKS = 5
SHIMS = frozenset({SHIM, SHIM_V1})
RUNTIMES = frozenset({CONTAINERD, *SHIMS, CRIO, DOCKERD, CRI_DOCKERD, KUBELET, RUNC})

_LOCK_KINDS = frozenset({"mutex", "rwmutex-read", "rwmutex-write", "bbolt-writer"})
_CALL_KINDS = frozenset({"ttrpc-call", "grpc-call", "http-call"})
_SYSCALL_KINDS = frozenset({"syscall", "fsync", "fdatasync", "bbolt-commit-io"})
_FS_METADATA_SYSCALLS = frozenset(
    {"newfstatat", "fstatat", "stat", "lstat", "statx", "statfs", "fstatfs", "getdents64", "getdents", "openat"}
)


class Mechanism(msgspec.Struct, frozen=True):
    """One row of the mechanism table: what a wait must show, the class it names and the
    words for it. A row matches when every given condition holds: some tag of `tags_any`
    among the chain's tags, the deepest wait's kind in `kinds`, its process in `processes`,
    its syscall in `syscalls`."""

    name: str
    cls: RootCauseClass
    text: str
    tags_any: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    processes: frozenset[str] = frozenset()
    syscalls: frozenset[str] = frozenset()

    def matches(self, tags: frozenset[str], kind: str, process: str, syscall: str | None) -> bool:
        if self.tags_any and not (self.tags_any & tags):
            return False
        if self.kinds and kind not in self.kinds:
            return False
        if self.processes and process not in self.processes:
            return False
        return not (self.syscalls and syscall not in self.syscalls)


def _m(name: str, cls: RootCauseClass, text: str, **kw: frozenset[str] | set[str]) -> Mechanism:
    return Mechanism(name, cls, text, **{k: frozenset(v) for k, v in kw.items()})  # type: ignore[arg-type]


# Ordered: the most specific subsystem first (what the wait is *inside* decides before what it
# waits *on*: a lock wait inside CNI code is a CNI hang).
MECHANISMS: tuple[Mechanism, ...] = (
    _m("systemd-dbus", C.SYSTEMD_DBUS_HANG, "waits on systemd over D-Bus", tags_any={"systemd-dbus"}),
    _m("cni", C.CNI_HANG, "is inside a CNI call (pod network setup, teardown or status)", tags_any={"cni"}),
    _m("network-fs", C.NETWORK_STORAGE_HANG, "is in a network filesystem", tags_any={"nfs", "network-fs"}),
    _m(
        "umount",
        C.OVERLAY_UMOUNT_SYNC,
        "is unmounting a filesystem (the kernel flushes its dirty pages first)",
        tags_any={"umount", "syncfs", "syscall:umount2", "syscall:syncfs"},
    ),
    _m(
        "fsync",
        C.FSYNC_IO_PRESSURE,
        "is in fsync/fdatasync",
        tags_any={"fsync", "fdatasync", "syscall:sync"},
    ),
    _m("bbolt-io", C.FSYNC_IO_PRESSURE, "is committing a bbolt transaction to disk", kinds={"bbolt-commit-io"}),
    _m(
        "fs-metadata-hung",
        C.NETWORK_STORAGE_HANG,
        "is in a filesystem metadata call (stat, statfs, getdents) that has not returned for minutes: a "
        "filesystem that does not answer, most often a hung network mount (a dead local disk shows I/O errors "
        "in dmesg)",
        kinds={"syscall"},
        syscalls=_FS_METADATA_SYSCALLS,
    ),
    _m("runc", C.RUNC_HANG, "is inside runc", tags_any={"runc", "runc-exec-fifo"}),
    _m("runc-process", C.RUNC_HANG, "is runc itself", processes={"runc"}),
    _m(
        "ttrpc-send-blocked",
        C.SHIM_HANG,
        "cannot write its ttrpc request to the shim's socket (the shim does not read it; the client's send lock is "
        "held meanwhile)",
        tags_any={"ttrpc-send-blocked"},
    ),
    _m("ttrpc", C.SHIM_HANG, "waits for a shim to answer a ttrpc call", kinds={"ttrpc-call"}),
    _m("shim", C.SHIM_HANG, "is inside the shim", processes=SHIMS),
    _m("docker-api", C.DOCKERD_LOCK, "waits for dockerd to answer a Docker API call", kinds={"http-call"}),
    _m(
        "bbolt-lock",
        C.BBOLT_LOCK_CONTENTION,
        "queues on a bbolt metadata DB lock",
        tags_any={"bbolt-writer", "bbolt-lock"},
    ),
    _m(
        "crio-stop-lock",
        C.RUNTIME_LOCK_CONTENTION,
        "holds CRI-O's per-container stop lock while it waits out the stop timeout (later stops of that container "
        "queue behind it)",
        tags_any={"crio-stop-lock"},
    ),
    _m(
        "storage-lock",
        C.RUNTIME_LOCK_CONTENTION,
        "queues on a containers/storage lock (CRI-O's image and layer store)",
        tags_any={"storage-lock"},
        kinds=_LOCK_KINDS,
    ),
    _m(
        "status-lock",
        C.CRI_STATUS_LOCK,
        "queues on a CRI container/sandbox status lock",
        tags_any={"status-lock"},
        kinds=_LOCK_KINDS,
    ),
    _m(
        "dockerd-lock",
        C.DOCKERD_LOCK,
        "queues on a dockerd lock",
        kinds=_LOCK_KINDS,
        processes={"dockerd", "cri-dockerd"},
    ),
    _m("kubelet-lock", C.KUBELET_INTERNAL, "queues on a kubelet lock", kinds=_LOCK_KINDS, processes={"kubelet"}),
    _m(
        "runtime-lock",
        C.RUNTIME_LOCK_CONTENTION,
        "queues on a runtime-internal lock",
        kinds=_LOCK_KINDS,
        processes={"containerd", "crio"},
    ),
    _m(
        "relist-channel",
        C.KUBELET_INTERNAL,
        "is the kubelet's relist, blocked on a channel inside the kubelet",
        tags_any={"kubelet-relist"},
        kinds={"chan", "select"},
    ),
)


def mechanism_of(tags: frozenset[str], kind: str, process: str, syscall: str | None) -> Mechanism | None:
    """The first row of MECHANISMS the wait matches, else None (the class is `unknown`)."""
    for m in MECHANISMS:
        if m.matches(tags, kind, process, syscall):
            return m
    return None


def _deepest(chain: Chain) -> ChainLink:
    return chain.links[-1]


def _syscall(link: ChainLink) -> str | None:
    for t in link.tags:
        if t.startswith("syscall:"):
            return t[8:]
    return None


def _classify(chain: Chain) -> tuple[RootCauseClass, str]:
    last = _deepest(chain)
    m = mechanism_of(chain.tags, last.kind, last.process, _syscall(last))
    if m is None:
        return C.UNKNOWN, f"{last.kind} wait the mechanism table does not name"
    return m.cls, m.text


def _minutes(chain: Chain) -> int:
    return max((lk.wait_minutes or 0 for lk in chain.links), default=0)


def _long_wait_counts(chain: Chain) -> bool:
    """A printed wait of minutes means a stall for a lock, an RPC call, or a symptom path; a
    server loop's `select`/`chan receive`/`IO wait` of hours is how daemons idle."""
    for lk in chain.links:
        if (lk.wait_minutes or 0) < LONG_WAIT_MINUTES:
            continue
        if lk.kind in _LOCK_KINDS or lk.kind in _CALL_KINDS:
            return True
        if lk.kind in _SYSCALL_KINDS and (
            _syscall(lk) in _FS_METADATA_SYSCALLS
            or lk.kind != "syscall"
            or lk.tags & {"fsync", "fdatasync", "umount", "runc", "cni", "nfs", "network-fs"}
        ):
            # minutes on a filesystem call or a flush: it has not returned (a sleep, a poll or a
            # child wait of minutes is how some programs idle)
            return True
        if lk.kind in ("chan", "select", "cond", "waitgroup") and lk.tags & {"symptom", "kubelet-relist"}:
            return True
        if any(t.startswith("cri:") for t in lk.tags) and lk.kind not in ("io", "idle"):
            return True
    return False


def symptom_refs(ctx: RuleContext) -> tuple[Ref, ...]:
    """Evidence that the node showed the stall (a relist gap, PLEG unhealthy, NotReady, a CRI
    deadline, a capture trigger): what makes a goroutine caught mid-call meaningful. Worked
    out once per context."""
    return ctx.memo("symptom-refs", lambda: _symptom_refs(ctx))  # type: ignore[no-any-return]


def _symptom_refs(ctx: RuleContext) -> tuple[Ref, ...]:
    refs: list[Ref] = []
    stall = worst_stall(ctx)
    if stall is not None:
        refs.extend(getattr(stall, "refs", ()) or ())
    for e in events(
        ctx, EventKind.PLEG_UNHEALTHY, EventKind.NODE_NOT_READY, EventKind.SKIPPING_POD_SYNC, EventKind.RELIST_ERROR
    ):
        refs.append(e.ref)
    for e in events(ctx, EventKind.CRI_CALL_FAILED):
        if len(dict.fromkeys(refs)) >= 4:
            break  # only the first four distinct refs are kept
        if "deadline" in str(e.attrs.get("code", "")).lower() or "deadline" in str(e.attrs.get("error", "")).lower():
            refs.append(e.ref)
    # a goroutine dump of runc: a CLI that exits in milliseconds was dumped because it hung
    ga = ctx.goroutines
    for dump in getattr(ga, "dumps", None) or ():
        if dump.process == RUNC and dump.goroutines:
            refs.append(dump.ref(dump.goroutines[0]))
            break
    if stall is not None and not refs:
        return (Ref("(relist timeline)", 0, f"relist gap of {stall.seconds:.0f} s"),)
    return tuple(dict.fromkeys(refs))[:4]


def _weight(base: float, chain: Chain, minutes: int) -> float:
    w = base
    if minutes >= 10:
        w += 0.05
    if chain.blocked >= CONVOY_MIN:
        w += 0.05
    return min(w, 0.65)
