"""Version facts about containerd, the kernel and overlayfs, as data with their sources.

Every fact cites the section of the project's fact sheet (facts.md, shipped with the design
notes) and the upstream change, so a report can say why it believes something.

Public API (used by plegdoctor.analysis.config_audit and the diagnosis rules):

- `ContainerdVersion.parse(text)` / `KernelVersion.parse(text)`: tolerant parsers for what
  `containerd --version`, distro packages and `uname` print (`1.6.20~ds1`, `v1.7.24`,
  `1.7.24~ds1-6+deb13u1`, `containerd github.com/containerd/containerd v1.6.21 3dce8eb`,
  `5.15.0-76-generic`, `Linux node 6.1.0-9-amd64 #1 SMP ...`). Unparseable -> UserError.
- `Change` records with `first_fixed` per release branch, `contains(version)`, `fixed_in(version)`
  (contained?, the release to upgrade to) and `upgrade_target(version)` (the advice text); the one
  version model: the config audit, the PD5xx rules and rules/fixes.py compare through these:
  MOUNT_OPTIONS, TEMP_MOUNT_STRIP_VOLATILE, FSYNC_VOLATILE_SPELLING, SHIM_LEAK_FIX,
  IMAGE_PULL_WITH_SYNC_FS, CONTENT_COMMIT_PRESYNC, BBOLT_NO_SYNC, IMAGE_VOLUME_VOLATILE;
  `UNFIXED` lists known-open issues (the UpdateContainerResources status lock).
- Kernel facts: KERNEL_VOLATILE (5.10), KERNEL_PRINTS_FSYNC_VOLATILE, KERNEL_PSI, ...
- Config schemas: `SCHEMAS[n]` (minimum containerd, plugin IDs for CRI, images, runtime,
  overlay, bolt, transfer, debug) and `volatile_snippet(schema, existing_options)`.
- `VOLATILE_RISKS`: the risks every recommendation of volatile must state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering
from typing import Any

import msgspec

from plegdoctor.errors import UserError
from plegdoctor.lazyre import lazy_re

FACTS = "facts.md"  # the project's fact sheet (docs/facts.md in the repository)

# the umbrella issue of PLEG stalls under disk I/O (one definition: rules import it from here)
ISSUE_9770 = "https://github.com/containerd/containerd/issues/9770"
ISSUE_SEED = "https://github.com/containerd/containerd/issues/8698"
ISSUE_UMOUNT_SLOW_DISK = "https://github.com/containerd/containerd/issues/5325"
PR_MOUNT_OPTIONS = "https://github.com/containerd/containerd/pull/8676"
PR_MOUNT_OPTIONS_17 = "https://github.com/containerd/containerd/pull/9005"
PR_MOUNT_OPTIONS_16 = "https://github.com/containerd/containerd/pull/8961"
PR_TEMP_MOUNT_STRIP = "https://github.com/containerd/containerd/pull/9555"
PR_FSYNC_VOLATILE = "https://github.com/containerd/containerd/pull/13256"
ISSUE_FSYNC_VOLATILE = "https://github.com/containerd/containerd/issues/13250"
PR_STATUS_LOCK = "https://github.com/containerd/containerd/pull/11558"
PR_CONTENT_PRESYNC = "https://github.com/containerd/containerd/pull/10128"
PR_BBOLT_NO_SYNC = "https://github.com/containerd/containerd/pull/10745"
PR_SYNC_FS = "https://github.com/containerd/containerd/pull/9401"
PR_SHIM_LEAK = "https://github.com/containerd/containerd/pull/8954"
KERNEL_OVERLAY_DOC = "https://docs.kernel.org/filesystems/overlayfs.html#volatile-mount"


# ----------------------------------------------------------------------------------------
# Versions


@total_ordering
class _OrderedByKey:
    """Order, equality and hash by `key()`, between instances of the same class only."""

    __slots__ = ()

    def key(self) -> tuple[Any, ...]:
        return ()

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.key() < other.key()  # type: ignore[attr-defined,no-any-return]

    def __le__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.key() <= other.key()  # type: ignore[attr-defined,no-any-return]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.key() == other.key()  # type: ignore[attr-defined,no-any-return]

    def __hash__(self) -> int:
        return hash(self.key())


@dataclass(frozen=True, slots=True, eq=False)
class ContainerdVersion(_OrderedByKey):
    """A containerd release number. Distro suffixes (`~ds1`, `-6+deb13u1`) are kept in
    `raw` but ignored for comparison; `-rc.N`/`-beta.N` pre-releases sort before the release."""

    major: int
    minor: int
    patch: int
    prerelease: str = ""
    raw: str = ""

    # parts of at most 9 digits: `int` never sees a 5000-digit run (ValueError), and a longer
    # run fails the match (UserError) like any other unparseable text
    _TOKEN = lazy_re(r"^v?(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?((?:-(?:alpha|beta|rc)[.\d]*)?)(?:[~+-].*)?$")

    @classmethod
    def parse(cls, text: str) -> ContainerdVersion:
        """Find the version in `containerd --version` output or a bare version string."""
        raw = text.strip()
        for token in raw.split():
            if "/" in token:  # github.com/containerd/containerd/v2
                continue
            m = cls._TOKEN.match(token)
            if m:
                return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), m.group(4).lstrip("-"), raw)
        raise UserError(f"cannot parse a containerd version from {raw[:80]!r} (expected e.g. 1.7.24 or v2.1.9)")

    @property
    def branch(self) -> str:
        return f"{self.major}.{self.minor}"

    def key(self) -> tuple[int, int, int, int, str]:
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, self.prerelease)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{self.prerelease}" if self.prerelease else base


@total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class KernelVersion(_OrderedByKey):
    """A Linux kernel release (`uname -r`); the distro part is kept in `raw`. Distro kernels
    may backport features: comparisons are against mainline/stable numbers."""

    major: int
    minor: int
    patch: int
    raw: str = ""

    _TOKEN = lazy_re(r"^(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?(?:[-+_.~].*)?$")

    @classmethod
    def parse(cls, text: str) -> KernelVersion:
        raw = text.strip()
        tokens = raw.split()
        if len(tokens) >= 3 and tokens[0] == "Linux":  # uname -a: Linux <host> <release> ...
            tokens = [tokens[2], *tokens]
        for token in tokens:
            m = cls._TOKEN.match(token)
            if m and int(m.group(1)) >= 2:
                return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), raw)
        raise UserError(f"cannot parse a kernel version from {raw[:80]!r} (expected e.g. 5.15.0-76-generic)")

    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# ----------------------------------------------------------------------------------------
# containerd changes and the first release of each branch that has them


class Change(msgspec.Struct, frozen=True):
    """An upstream containerd change. `first_fixed` maps a release branch (`1.7`) to its
    first release containing the change. A version on a branch newer than every listed one
    contains it; on an older or unlisted branch it does not."""

    id: str
    title: str
    first_fixed: dict[str, str]
    source: str
    references: tuple[str, ...] = ()

    def releases(self) -> tuple[ContainerdVersion, ...]:
        """The first fixed release of each branch, in the table's order."""
        return tuple(ContainerdVersion.parse(v) for v in self.first_fixed.values())

    def fixed_in(self, version: ContainerdVersion) -> tuple[bool, ContainerdVersion | None]:
        """(does `version` contain the change, the release to upgrade to): the first fixed
        release of its own branch when that branch got the change, else of the next newer
        branch that did; None for a branch newer than every listed one."""
        fixed = {v.branch: v for v in self.releases()}
        if version.branch in fixed:
            first = fixed[version.branch]
            return version >= first, first
        mine = (version.major, version.minor)
        newer = [v for v in fixed.values() if (v.major, v.minor) > mine]
        if not newer:
            return True, None
        return False, min(newer)

    def contains(self, version: ContainerdVersion) -> bool:
        return self.fixed_in(version)[0]

    def upgrade_target(self, version: ContainerdVersion | None) -> str:
        """What to tell a user of `version`: '>= 1.6.24' on 1.6, '1.7.24 (has it)', the list of
        first fixed releases ('1.6.24/1.7.4/2.0.0') when the version is unknown."""
        if version is None:
            return "/".join(str(v) for v in self.releases())
        ok, target = self.fixed_in(version)
        if ok:
            return f"{version} (has it)"
        return f">= {target}" if target else "a newer release"

    def fixed_in_text(self) -> str:
        return " / ".join(self.first_fixed.values())


MOUNT_OPTIONS = Change(
    "mount-options",
    "overlay snapshotter `mount_options` (the way to enable volatile)",
    {"1.6": "1.6.24", "1.7": "1.7.4", "2.0": "2.0.0"},
    f"{FACTS} §7.4, §8: #8676 -> v2.0.0, #9005 -> v1.7.4, #8961 -> v1.6.24",
    (PR_MOUNT_OPTIONS, PR_MOUNT_OPTIONS_17, PR_MOUNT_OPTIONS_16),
)
TEMP_MOUNT_STRIP_VOLATILE = Change(
    "temp-mount-strip-volatile",
    "volatile is stripped from temporary mounts (RemoveVolatileOption in WithTempMount)",
    {"1.6": "1.6.34", "1.7": "1.7.19", "2.0": "2.0.0"},
    f"{FACTS} §7.4, §8: #9555 -> v2.0.0, #10332 -> v1.7.19, #10333 -> v1.6.34",
    (PR_TEMP_MOUNT_STRIP,),
)
FSYNC_VOLATILE_SPELLING = Change(
    "fsync-volatile-spelling",
    "containerd recognises both `volatile` and `fsync=volatile`",
    {"1.7": "1.7.32", "2.0": "2.0.9", "2.1": "2.1.8", "2.2": "2.2.4", "2.3": "2.3.0"},
    f"{FACTS} §7.4, §8, §12.7: #13256 -> v2.3.0, #13299 -> v1.7.32, #13298/#13297/#13296 -> 2.0.9/2.1.8/2.2.4",
    (PR_FSYNC_VOLATILE, ISSUE_FSYNC_VOLATILE),
)
SHIM_LEAK_FIX = Change(
    "shim-leak-high-io",
    "no leaked shim when the shim-side delete already happened under high I/O pressure",
    {"1.6": "1.6.24", "1.7": "1.7.4", "2.0": "2.0.0"},
    f"{FACTS} §7.4: #8954 -> v2.0.0, #9003 -> v1.7.4, #9004 -> v1.6.24",
    (PR_SHIM_LEAK,),
)
IMAGE_PULL_WITH_SYNC_FS = Change(
    "image-pull-with-sync-fs",
    "CRI option `image_pull_with_sync_fs` (syncfs after unpack; default false)",
    {"1.7": "1.7.14", "2.0": "2.0.0"},
    f"{FACTS} §7.4: #9401 -> v2.0.0, #9769 -> v1.7.14, none for 1.6",
    (PR_SYNC_FS,),
)
CONTENT_COMMIT_PRESYNC = Change(
    "content-commit-presync",
    "image content Commit fsyncs the blob before taking the bbolt write lock",
    {"2.0": "2.0.0"},
    f"{FACTS} §0.4, §7.4, §12.2: #10128 -> v2.0.0 only; 1.6/1.7 fsync inside the bbolt transaction",
    (PR_CONTENT_PRESYNC,),
)
BBOLT_NO_SYNC = Change(
    "bbolt-no-sync",
    '`[plugins."io.containerd.metadata.v1.bolt"] no_sync` (bbolt NoSync + NoGrowSync)',
    {"2.1": "2.1.0"},
    f"{FACTS} §3.2, §7.4: #10745 (c94a92f42) -> v2.1.0",
    (PR_BBOLT_NO_SYNC,),
)
IMAGE_VOLUME_VOLATILE = Change(
    "image-volume-volatile",
    "CRI image volumes get volatile when the snapshot uses it",
    {"2.1": "2.1.0"},
    f"{FACTS} §7.4: #11605 follow-up be0ab6e93 -> v2.1.0",
)

CHANGES: tuple[Change, ...] = (
    MOUNT_OPTIONS,
    TEMP_MOUNT_STRIP_VOLATILE,
    FSYNC_VOLATILE_SPELLING,
    SHIM_LEAK_FIX,
    IMAGE_PULL_WITH_SYNC_FS,
    CONTENT_COMMIT_PRESYNC,
    BBOLT_NO_SYNC,
    IMAGE_VOLUME_VOLATILE,
)


NRI_REGISTRATION_DEADLOCK_FIX = Change(
    "nri-registration-deadlock",
    "NRI plugin registration no longer deadlocks with CRI container events (nri v0.6.1: the adaptation lock is "
    "taken after the plugin sync, the same lock order as StartContainer)",
    {"1.7": "1.7.16", "2.0": "2.0.0"},
    "containerd#10085 (NRI plugin registration can trigger a deadlock), fixed by containerd#10097 "
    "(release/1.7: nri v0.6.1) before the v1.7.16 release notes (containerd#10124); main a153b2cd3",
    (
        "https://github.com/containerd/containerd/issues/10085",
        "https://github.com/containerd/containerd/pull/10097",
        "https://github.com/containerd/containerd/pull/10124",
    ),
)


class KnownBug(msgspec.Struct, frozen=True):
    """A deadlock or regression of released runtime versions, and how to recognise it: the
    versions from `introduced` up to (not including) the fix are affected, and a goroutine
    that waits for a lock inside one of the `signature` functions shows it is happening."""

    fix: Change
    introduced: str
    signature: tuple[str, ...]  # function-name substrings (canonical import paths)
    symptom: str  # what users see

    def affects(self, version: ContainerdVersion) -> bool:
        return version >= ContainerdVersion.parse(self.introduced) and not self.fix.contains(version)


KNOWN_BUGS: tuple[KnownBug, ...] = (
    KnownBug(
        NRI_REGISTRATION_DEADLOCK_FIX,
        "1.7.0",  # NRI v0.2+ came with containerd 1.7.0
        (
            "github.com/containerd/nri/pkg/adaptation.(*Adaptation).",
            "github.com/containerd/containerd/pkg/nri.(*local).",
        ),
        "the NRI plugin stays unsynchronised and containerd stops processing StartContainer and other CRI events "
        "until it is restarted",
    ),
)


class OpenIssue(msgspec.Struct, frozen=True):
    id: str
    title: str
    detail: str
    source: str
    references: tuple[str, ...]


STATUS_LOCK_UNFIXED = OpenIssue(
    "update-resources-status-lock",
    "CRI UpdateContainerResources holds the container status write lock across bbolt, shim and fsync",
    "Every containerd release (1.6 through main) runs UpdateContainerResources inside Status.UpdateSync: "
    "while the metadata update, the shim's task.Update and the status checkpoint fsync run, every "
    "ListContainers (so every PLEG relist) waits on that container's status lock. Upstream fixes were "
    "closed or are still open.",
    f"{FACTS} §0.3, §7.3: container_update_resources.go UpdateSync @release/1.6..main; PR #11558 open",
    (ISSUE_9770, PR_STATUS_LOCK, "https://github.com/containerd/containerd/issues/12680"),
)
UNFIXED: tuple[OpenIssue, ...] = (STATUS_LOCK_UNFIXED,)

# ----------------------------------------------------------------------------------------
# Kernel facts


class KernelFact(msgspec.Struct, frozen=True):
    id: str
    title: str
    since: KernelVersion
    source: str
    references: tuple[str, ...] = ()
    # stable backports: branch (major, minor) -> first patch release with the feature
    backports: dict[tuple[int, int], int] = msgspec.field(default_factory=dict)

    def has(self, kernel: KernelVersion) -> bool:
        branch = (kernel.major, kernel.minor)
        if branch in self.backports:
            return kernel.patch >= self.backports[branch]
        return kernel >= self.since


KERNEL_VOLATILE = KernelFact(
    "kernel-overlay-volatile",
    'overlayfs mount option "volatile"',
    KernelVersion(5, 10, 0),
    f"{FACTS} §8: kernel commit c86243b090bc, first in Linux 5.10",
    (KERNEL_OVERLAY_DOC,),
)
KERNEL_VOLATILE_SYNC_ERRORS = KernelFact(
    "kernel-volatile-writeback-errors",
    "after a writeback error on the upper fs, every later fsync/syncfs of a volatile mount fails",
    KernelVersion(5, 11, 0),
    f"{FACTS} §8: commit 335d3fc57941 (5.11, backported to 5.10.15)",
    (),
    {(5, 10): 15},
)
# Which kernels print `fsync=volatile` in /proc/mounts: 6.12 stable from 6.12.80 (facts §8,
# containerd issue #13250); the mainline release is not verified. Observed on 6.18.44 on the
# project's build machine (tests/fixtures/node/mounts/proc-mounts-fsync-volatile.txt).
KERNEL_PRINTS_FSYNC_VOLATILE = KernelFact(
    "kernel-prints-fsync-volatile",
    "/proc/mounts shows `fsync=volatile` instead of `volatile`",
    KernelVersion(6, 18, 44),
    f"{FACTS} §8, §12.7: 'ovl: make fsync after metadata copy-up opt-in', stable 6.12.80+ (6c0cfbe020c0); "
    "observed on 6.18.44; mainline release UNVERIFIED",
    (ISSUE_FSYNC_VOLATILE,),
    {(6, 12): 80},
)
KERNEL_PSI = KernelFact(
    "kernel-psi",
    "pressure stall information (/proc/pressure, CONFIG_PSI; may need psi=1 at boot)",
    KernelVersion(4, 20, 0),
    f"{FACTS} §9.1: node_exporter collector/pressure_linux.go@a7dcc3a0",
)

# ----------------------------------------------------------------------------------------
# containerd config schemas


class Schema(msgspec.Struct, frozen=True):
    version: int
    min_containerd: str
    cri: str  # CRI plugin table (v1/v2: everything; v3+: server-level options only)
    cri_images: str  # where snapshotter / max_concurrent_downloads / image_pull_with_sync_fs live
    cri_images_prefix: tuple[str, ...]  # sub-table inside cri_images holding `snapshotter`
    cri_runtime: str  # where containerd.runtimes live
    overlay: str
    bolt: str
    transfer: str | None
    debug_plugin: str | None  # v4 moves [debug] address to a server plugin
    source: str


SCHEMAS: dict[int, Schema] = {
    1: Schema(
        1,
        "1.0.0",
        "cri",
        "cri",
        ("containerd",),
        "cri",
        "overlayfs",
        "bolt",
        None,
        None,
        f"{FACTS} §3.2: no version field; short plugin IDs (v1MigratePluginName)",
    ),
    2: Schema(
        2,
        "1.3.0",
        "io.containerd.grpc.v1.cri",
        "io.containerd.grpc.v1.cri",
        ("containerd",),
        "io.containerd.grpc.v1.cri",
        "io.containerd.snapshotter.v1.overlayfs",
        "io.containerd.metadata.v1.bolt",
        None,
        None,
        f"{FACTS} §3.2: RELEASES.md config version table; URI plugin IDs",
    ),
    3: Schema(
        3,
        "2.0.0",
        "io.containerd.grpc.v1.cri",
        "io.containerd.cri.v1.images",
        (),
        "io.containerd.cri.v1.runtime",
        "io.containerd.snapshotter.v1.overlayfs",
        "io.containerd.metadata.v1.bolt",
        "io.containerd.transfer.v1.local",
        None,
        f"{FACTS} §3.2: CRI split into io.containerd.cri.v1.runtime / .images (docs/cri/config.md)",
    ),
    4: Schema(
        4,
        "2.3.0",
        "io.containerd.grpc.v1.cri",
        "io.containerd.cri.v1.images",
        (),
        "io.containerd.cri.v1.runtime",
        "io.containerd.snapshotter.v1.overlayfs",
        "io.containerd.metadata.v1.bolt",
        "io.containerd.transfer.v1.local",
        "io.containerd.server.v1.debug",
        f"{FACTS} §3.2: grpc/ttrpc/metrics/debug address move to io.containerd.server.v1.* plugins",
    ),
}

DEFAULT_MAX_CONCURRENT_DOWNLOADS = 3  # per image (docs/cri/config.md, pkg/cri/config MaxConcurrentDownloads)
# containerd 2.1+ pulls through the transfer service by default; its own max_concurrent_downloads
# lives in [plugins.'io.containerd.transfer.v1.local'] (docs/cri/config.md@301026e58 "Image Pull
# Configuration (since containerd v2.1)").
TRANSFER_SERVICE_PULL = ContainerdVersion(2, 1, 0)


def toml_key(plugin_id: str, schema: int) -> str:
    """How a plugin table is written: v1 short IDs bare, URIs quoted (v3+ docs use '')."""
    if "." not in plugin_id:
        return f"plugins.{plugin_id}"
    quote = "'" if schema >= 3 else '"'
    return f"plugins.{quote}{plugin_id}{quote}"


def volatile_snippet(schema: int, existing: tuple[str, ...] | None = None, table_line: int | None = None) -> str:
    """The exact TOML to enable volatile for a config of `schema`, merged with the options
    already set. If the overlay table already exists (`table_line`), say to edit it, since
    TOML forbids declaring a table twice."""
    if schema not in SCHEMAS:
        raise UserError(f"unknown containerd config schema version {schema} (known: 1, 2, 3, 4)")
    options = [o for o in (existing or ()) if o not in ("volatile", "fsync=volatile")] + ["volatile"]
    q = "'" if schema >= 3 else '"'
    values = ", ".join(f"{q}{o}{q}" for o in options)
    table = f"[{toml_key(SCHEMAS[schema].overlay, schema)}]"
    body = f"  mount_options = [{values}]"
    if table_line is not None:
        return f"# in the existing {table} table (line {table_line}), set:\n{body}"
    return f"{table}\n{body}"


VOLATILE_RISKS: tuple[str, ...] = (
    "Crash-time data loss: volatile skips every sync of the container's writable layer (fsync, syncfs, "
    "umount); after a host crash recent writes to container root filesystems (not volumes) can be lost "
    f"or torn. Kubelet recreates the containers. ({FACTS} §8)",
    "Remount after a crash fails: the kernel leaves <snapshot>/work/work/incompat/volatile and refuses to "
    "mount that snapshot again (\"overlay with incompat feature 'volatile' cannot be mounted\") until the "
    f"directory is removed or the snapshot recreated. ({FACTS} §8; seen on 1.7.24 here)",
    "Restarting the same container re-mounts the same snapshot and fails the same way (ctr/nerdctl `start` "
    "of a stopped container: 'failed to mount rootfs component: invalid argument'); Kubernetes creates a "
    "new container with a new snapshot, so kubelet-managed pods are not affected.",
    "Before containerd 1.6.34 / 1.7.19 / 2.0 temporary mounts of the rootfs keep volatile and can fail on "
    f"the second mount of the same upper/work dirs; upgrade first. ({FACTS} §8, #9555 backports)",
    "Volatile removes the umount-time syncfs only; the bbolt fdatasync, the CRI status checkpoint fsync and "
    "(1.x) the image blob fsync still queue behind writeback of dirty data on the same disk.",
)
