"""Audit a containerd config, versions and mounts against the facts in plegdoctor.knowledge.

Public API (used by `pleg-doctor check` and, through `RuleContext.config_audit`, by the PD5xx
rules, which read its results instead of deriving them again):

    audit(config, versions, mounts, sysctls=None) -> Audit  (a list of Check, plus `.facts`)

- `config`: plegdoctor.parsers.runtime_config.RuntimeConfig or None;
- `versions`: plegdoctor.model.Versions (strings as printed; parsed here, unparseable ones
  give an `info` check instead of raising) or None;
- `mounts`: a sequence of plegdoctor.model.Mount (e.g. /proc/mounts) or None;
- `sysctls`: optional {"dirty_bytes", "dirty_ratio", "dirty_background_bytes",
  "dirty_background_ratio", "mem_total_kb"} integers.

Each check is a small function registered in `CHECKS` with `@check` (id, what it reads, the
statuses it can give, what it is about, references): `volatile.py` (versions, schema, overlay
volatile), `node.py` (locks and fsyncs of this version, bbolt, pulls, disk, debug socket,
writeback). Each `Check` result has a stable `id`, a `status` (pass|warn|fail|info), a title,
a detail, the evidence it read (Refs to config lines and mount lines), a fix (which link of
the stall chain the fix removes) and references. `Audit.facts` (`Facts`) is what they were
computed from: parsed versions, the containerd overlay mounts and which are volatile, where
the config sets mount_options. `snippet_for(config, versions)` is the exact config text that
enables volatile for the config's schema. Checks never touch the node.
"""

from __future__ import annotations

# importing the check modules registers their checks (printed in base.SECTIONS order)
from plegdoctor.analysis.config_audit import node, volatile  # noqa: F401
from plegdoctor.analysis.config_audit.base import (
    CHECKS,
    FAIL,
    INFO,
    PASS,
    SECTIONS,
    STATUS_ORDER,
    WARN,
    Audit,
    Check,
    CheckSpec,
    Facts,
    ParsedVersions,
    audit,
    check,
    containerd_overlay_mounts,
    default_schema,
    facts_for,
    parse_versions,
    snippet_for,
    worst,
)

__all__ = [
    "CHECKS",
    "FAIL",
    "INFO",
    "PASS",
    "SECTIONS",
    "STATUS_ORDER",
    "WARN",
    "Audit",
    "Check",
    "CheckSpec",
    "Facts",
    "ParsedVersions",
    "audit",
    "check",
    "containerd_overlay_mounts",
    "default_schema",
    "facts_for",
    "parse_versions",
    "snippet_for",
    "worst",
]
