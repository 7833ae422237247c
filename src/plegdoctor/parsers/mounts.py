"""Mount tables: /proc/mounts, /proc/self/mountinfo and `mount` command output -> Mount.

Accepted variants (fixtures under tests/fixtures/node/mounts/):

- /proc/mounts (= /proc/self/mounts, /etc/mtab): `source target fstype options 0 0`, with the
  kernel's octal escapes for space, tab, newline and backslash (`\\040`, `\\011`, `\\012`,
  `\\134`) (proc-mounts-6.18-real.txt, captured here; proc-mounts-overlay-volatile.txt with
  the `volatile` spelling; proc-mounts-fsync-volatile.txt with the `fsync=volatile` spelling
  printed by kernels carrying "ovl: make fsync after metadata copy-up opt-in", 6.12.80+);
- /proc/self/mountinfo: `id parent maj:min root target mount-options [optional...] - fstype
  source super-options`; the options of a Mount are the mount options followed by the
  super-block options, where overlay prints `volatile` (mountinfo-overlay.txt);
- `mount` command output: `source on target type fstype (options)` (mount-cmd-output.txt).

Helpers used by the config audit and rules: `is_volatile`, `overlay_dirs`, `mount_for`,
`is_network` (NFS, CIFS/SMB, Ceph, GlusterFS, sshfs, ... : `NETWORK_FSTYPES`). Lines that
match no variant are counted as unread, with one warning naming the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Mount, Ref, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "mounts"

_PROC = lazy_re(r"^(\S+) (\S+) (\S+) (\S+) (\d+) (\d+)$")
_INFO = lazy_re(r"^(\d+) (\d+) (\d+:\d+) (\S+) (\S+) (\S+)((?: \S+)*?) - (\S+) (\S+) ?(\S*)$")
_CMD = lazy_re(r"^(.+?) on (.+?) type (\S+) \(([^)]*)\)$")
_OCTAL = lazy_re(r"\\([0-7]{3})")

VOLATILE_SPELLINGS = ("volatile", "fsync=volatile")
# filesystems whose operations wait on a remote server (a hard NFS mount waits forever)
NETWORK_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "fuse.ceph",
        "fuse.ceph-fuse",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "sshfs",
        "9p",
        "lustre",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.juicefs",
        "fuse.davfs2",
        "davfs",
        "afs",
        "beegfs",
        "gpfs",
    }
)
MAX_MOUNTS = 50_000


def is_network(mount: Mount) -> bool:
    """True for a mount of a network filesystem (NFS, CIFS/SMB, Ceph, GlusterFS, sshfs, ...)."""
    return mount.fstype in NETWORK_FSTYPES


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes in mount table fields (`\\040` -> space)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_line(text: str) -> tuple[str, str, str, tuple[str, ...]] | None:
    """One line of any accepted variant -> (source, target, fstype, options) or None."""
    m = _INFO.match(text)
    if m:
        opts = tuple(o for o in (m.group(6) + "," + m.group(10)).split(",") if o)
        return unescape(m.group(9)), unescape(m.group(5)), m.group(8), _dedupe(opts)
    m = _PROC.match(text)
    if m:
        return unescape(m.group(1)), unescape(m.group(2)), m.group(3), tuple(m.group(4).split(","))
    m = _CMD.match(text)
    if m:
        return m.group(1), m.group(2), m.group(3), tuple(o for o in m.group(4).split(",") if o)
    return None


def _dedupe(opts: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for o in opts:
        seen.setdefault(o, None)
    return tuple(seen)


def is_volatile(mount: Mount) -> bool:
    """True when an overlay mount has volatile in effect, in either kernel spelling."""
    return mount.fstype == "overlay" and any(o in VOLATILE_SPELLINGS for o in mount.options)


def volatile_spelling(mount: Mount) -> str | None:
    for o in mount.options:
        if o in VOLATILE_SPELLINGS:
            return o
    return None


def overlay_dirs(mount: Mount) -> dict[str, str]:
    """upperdir/workdir/lowerdir of an overlay mount (empty for other types)."""
    out: dict[str, str] = {}
    for o in mount.options:
        key, sep, value = o.partition("=")
        if sep and key in ("upperdir", "workdir", "lowerdir"):
            out[key] = value
    return out


def mount_for(path: str, mounts: Iterable[Mount]) -> Mount | None:
    """The mount that holds `path` (longest target prefix; the last one wins on ties, as in
    the kernel's stacking order)."""
    best: Mount | None = None
    path = path.rstrip("/") or "/"
    for m in mounts:
        t = m.target.rstrip("/") or "/"
        holds = path == t or t == "/" or path.startswith(t + "/")
        if holds and (best is None or len(t) >= len(best.target.rstrip("/") or "/")):
            best = m
    return best


def _may_parse(text: str) -> bool:
    """False only if `parse_line(text)` is None: `_INFO` needs a leading `\\d` and ` - `,
    `_PROC` a trailing `\\d`, `_CMD` ` type ` and a trailing `)` (`str.isdigit` is true for
    every `\\d`)."""
    return (text[:1].isdigit() and " - " in text) or text[-1:].isdigit() or (text.endswith(")") and " type " in text)


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only with `ratio` >= 0.5, and the lines of
    its window that `_may_parse` bound its hits from above."""
    data = [ln for ln in lines if ln.strip()][:60]
    return not data or sum(1 for ln in data if _may_parse(ln.strip())) / len(data) < 0.5


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    data = [ln for ln in lines if ln.strip()]
    if not data:
        return 0.0
    hits = sum(1 for ln in data[:60] if parse_line(ln.strip()) is not None)
    ratio = hits / min(len(data), 60)
    has_pseudo = any((" proc " in ln or " sysfs " in ln or " overlay " in ln or "type proc" in ln) for ln in data[:60])
    if ratio >= 0.8:
        return 0.9 if has_pseudo or len(data) < 5 else 0.7
    return 0.4 if ratio >= 0.5 else 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    unread = Unread(ctx.report)
    dropped = 0
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        parsed = parse_line(text)
        if parsed is None:
            unread(lineno, raw)
            continue
        if ctx.report.records >= MAX_MOUNTS:
            dropped += 1
            continue
        src, target, fstype, options = parsed
        ctx.evidence.mounts.append(Mount(src, target, fstype, options, Ref(source.display, lineno, quote(raw))))
        ctx.report.records += 1
    if dropped:
        ctx.report.warn(f"{dropped} mount(s) beyond the first {MAX_MOUNTS} not kept")
    unread.warn()
