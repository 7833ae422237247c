"""The check table, the facts every check reads, and `audit()`.

A check is a small function over `Facts`, registered with `@check(id, reads=..., statuses=...,
about=..., references=...)`; it returns the `Check` results it finds (none, one, or several:
`config-misplaced-N`). `audit()` computes `Facts` once and runs every registered check in
registration order (the order `pleg-doctor check` prints them).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from plegdoctor import knowledge as kb
from plegdoctor.errors import UserError
from plegdoctor.model import Mount, Ref, Versions
from plegdoctor.parsers.mounts import is_volatile, overlay_dirs
from plegdoctor.parsers.runtime_config import RuntimeConfig

PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"
STATUS_ORDER = {PASS: 0, INFO: 0, WARN: 1, FAIL: 2}
OVERLAY_SNAPSHOTS_DIR = "io.containerd.snapshotter.v1.overlayfs"
# what a check may read (its `reads`)
INPUTS = ("config", "containerd", "kernel", "runc", "go", "mounts", "sysctls")
# the modules of checks, in the order `pleg-doctor check` prints them (within a module: the
# order of registration)
SECTIONS = ("volatile", "node")


class Check(msgspec.Struct, frozen=True):
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


# ----------------------------------------------------------------------------------------
# Versions and facts


class ParsedVersions(msgspec.Struct, frozen=True):
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


def containerd_overlay_mounts(config: RuntimeConfig | None, mounts: Sequence[Mount]) -> list[Mount]:
    """Overlay mounts made by containerd: upperdir in its overlayfs snapshotter's directory (the
    config's root or root_path), or a target or upperdir that names containerd (a task rootfs
    under /run/containerd/io.containerd.runtime.v2.task/, a snapshot of a root elsewhere)."""
    roots = []
    if config is not None:
        roots.append(config.overlay_root_path or f"{config.root.rstrip('/')}/{OVERLAY_SNAPSHOTS_DIR}")
    out = []
    for m in mounts:
        if m.fstype != "overlay":
            continue
        upper = overlay_dirs(m).get("upperdir", "")
        if (
            any(upper.startswith(r.rstrip("/") + "/") for r in roots)
            or "containerd" in m.target
            or any("containerd" in o for o in m.options if o.startswith("upperdir="))
        ):
            out.append(m)
    return out


def _refs_about(refs: tuple[Ref, ...], raw: str | None) -> tuple[Ref, ...]:
    """The version refs that quote this component's version string."""
    if not raw:
        return ()
    token = raw.split()[0] if " " not in raw.strip() else raw.strip()
    return tuple(r for r in refs if token in r.text or raw.strip() in r.text)


class Facts(msgspec.Struct, frozen=True):
    """What the checks (and the PD5xx rules) read, derived once from the inputs."""

    config: RuntimeConfig | None
    versions: Versions | None
    mounts: tuple[Mount, ...] | None  # None: no mount table given
    sysctls: Mapping[str, int] | None
    containerd: kb.ContainerdVersion | None
    kernel: kb.KernelVersion | None
    problems: tuple[str, ...]  # versions that could not be parsed
    version_refs: tuple[Ref, ...]
    containerd_refs: tuple[Ref, ...]  # the version refs quoting the containerd version
    kernel_refs: tuple[Ref, ...]
    volatile_configured: bool  # the config's overlay mount_options ask for volatile
    mount_options_ref: Ref | None  # the config line setting overlay mount_options
    overlay_mounts: tuple[Mount, ...]  # containerd's overlayfs-snapshotter mounts
    volatile_mounts: tuple[Mount, ...]  # those of them mounted volatile

    @property
    def config_ref(self) -> Ref | None:
        """Where the config says it: its mount_options line, else its overlay table (or file)."""
        if self.config is None:
            return None
        return self.mount_options_ref or Ref(self.config.path, self.config.overlay_table_line or 1, "")

    @property
    def volatile_in_effect(self) -> bool | None:
        """Every containerd overlay mount is volatile (None: no such mount to look at)."""
        if not self.overlay_mounts:
            return None
        return len(self.volatile_mounts) == len(self.overlay_mounts)


def facts_for(
    config: RuntimeConfig | None,
    versions: Versions | None,
    mounts: Sequence[Mount] | None,
    sysctls: Mapping[str, int] | None = None,
) -> Facts:
    pv = parse_versions(versions)
    vrefs = tuple(versions.refs) if versions is not None else ()
    mo_ref = config.ref(f"plugins.{config.schema_info.overlay}.mount_options") if config else None
    if config is not None and mo_ref is None:
        mo_ref = config.ref("plugins.overlayfs.mount_options") or config.ref(
            "plugins.io.containerd.snapshotter.v1.overlayfs.mount_options"
        )
    ovl = tuple(containerd_overlay_mounts(config, mounts)) if mounts is not None else ()
    return Facts(
        config=config,
        versions=versions,
        mounts=tuple(mounts) if mounts is not None else None,
        sysctls=sysctls,
        containerd=pv.containerd,
        kernel=pv.kernel,
        problems=pv.problems,
        version_refs=vrefs,
        containerd_refs=_refs_about(vrefs, versions.containerd if versions else None),
        kernel_refs=_refs_about(vrefs, versions.kernel if versions else None),
        volatile_configured=config is not None and config.volatile_configured,
        mount_options_ref=mo_ref,
        overlay_mounts=ovl,
        volatile_mounts=tuple(m for m in ovl if is_volatile(m)),
    )


# ----------------------------------------------------------------------------------------
# The table of checks

CheckFn = Callable[[Facts], Iterable[Check]]


class CheckSpec(msgspec.Struct, frozen=True):
    """One registered check: its id (results carry it, `config-misplaced` as a prefix), what it
    reads, the statuses it can give, what it is about, and its references."""

    id: str
    reads: tuple[str, ...]
    statuses: tuple[str, ...]
    about: str
    references: tuple[str, ...]
    run: CheckFn
    section: str  # the module that registered it (one of SECTIONS)


CHECKS: list[CheckSpec] = []


def check(
    cid: str,
    *,
    reads: tuple[str, ...],
    statuses: tuple[str, ...],
    about: str,
    references: tuple[str, ...] = (),
) -> Callable[[CheckFn], CheckFn]:
    """Register a check function (in the order of registration)."""
    bad = [r for r in reads if r not in INPUTS] + [s for s in statuses if s not in STATUS_ORDER]
    if bad or any(c.id == cid for c in CHECKS):
        raise ValueError(f"check {cid}: duplicate id or unknown reads/statuses {bad}")

    def register(fn: CheckFn) -> CheckFn:
        section = fn.__module__.rsplit(".", 1)[-1]
        if section not in SECTIONS:
            raise ValueError(f"check {cid}: module {fn.__module__} is not in SECTIONS")
        CHECKS.append(CheckSpec(cid, reads, statuses, about, references, fn, section))
        CHECKS.sort(key=lambda spec: SECTIONS.index(spec.section))  # stable: registration order within
        return fn

    return register


class Audit(list[Check]):
    """The results of every check, in order (a list, as before), plus the `facts` they were
    computed from. `get(id)` / `status(id)`: the one result of a check id, if it gave one."""

    def __init__(self, checks: Iterable[Check], facts: Facts) -> None:
        super().__init__(checks)
        self.facts = facts

    def get(self, cid: str) -> Check | None:
        return next((c for c in self if c.id == cid), None)

    def status(self, cid: str) -> str | None:
        found = self.get(cid)
        return found.status if found is not None else None


def audit(
    config: RuntimeConfig | None,
    versions: Versions | None,
    mounts: Sequence[Mount] | None,
    sysctls: Mapping[str, int] | None = None,
) -> Audit:
    facts = facts_for(config, versions, mounts, sysctls)
    return Audit((c for spec in CHECKS for c in spec.run(facts)), facts)


def worst(checks: Sequence[Check]) -> str:
    """The most severe status among the checks (pass when none warn or fail)."""
    level = max((STATUS_ORDER[c.status] for c in checks), default=0)
    return {0: PASS, 1: WARN, 2: FAIL}[level]


# ----------------------------------------------------------------------------------------
# The config snippet


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
