"""`manifest.json` of a pleg-doctor evidence bundle (design: "Bundle format").

Accepted variant (fixtures under tests/fixtures/node/manifest/): one JSON object

    {"tool": {"name": "pleg-doctor", "version": "0.1.0"} | "pleg-doctor 0.1.0",
     "node": "node-7", "collected_at": "2026-11-28T14:29:18Z", "boot_time": 1764300000.0,
     "files": [{"path": "proc/pressure/io", "kind": "psi", "sha256": "...",
                "command": "cat /proc/pressure/io" | "source": "/proc/pressure/io",
                "error": "timed out after 5 s"}, ...]}

(`entries` is accepted for `files`; unknown keys are ignored). Each entry with an `error`
becomes a warning of this input (what the collector could not get is part of the story);
node, time and tool version become notes. `kinds_from_manifest(data)` maps member paths to
kinds so the analyze orchestrator can skip sniffing; `boot_time_from_manifest(data)` gives
the epoch boot time that turns dmesg's seconds-since-boot into wall time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "bundle-manifest"

MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def _entries(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    files = data.get("files", data.get("entries"))
    return [e for e in files if isinstance(e, dict)] if isinstance(files, list) else []


def _norm(path: str) -> str:
    return path.lstrip("./").lstrip("/") if path.startswith(("./", "/")) else path


def kinds_from_manifest(data: Any) -> dict[str, str]:
    """{member path: kind} for every entry that names both (paths without a leading ./)."""
    out: dict[str, str] = {}
    for e in _entries(data):
        path, kind = e.get("path"), e.get("kind")
        if isinstance(path, str) and isinstance(kind, str) and path and kind:
            out[_norm(path)] = kind
    return out


def boot_time_from_manifest(data: Any) -> float | None:
    value = data.get("boot_time") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def collection_errors(data: Any) -> list[tuple[str, str]]:
    """(path or command, error) for every entry the collector failed to get."""
    out = []
    for e in _entries(data):
        err = e.get("error")
        if err:
            what = e.get("path") or e.get("command") or e.get("source") or "?"
            out.append((str(what), str(err)))
    return out


def sniff(lines: list[str]) -> float:
    text = "\n".join(lines[:200]).lstrip()
    if not text.startswith("{"):
        return 0.0
    has_files = '"files"' in text or '"entries"' in text
    if has_files and ('"collected_at"' in text or '"pleg-doctor' in text):
        return 0.95
    return 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    raw = source.stream().read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        ctx.report.warn("manifest larger than 16 MiB: not read")
        return
    try:
        data = json.loads(raw.decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        ctx.report.warn(f"manifest is not valid JSON: {exc}")
        return
    if not isinstance(data, dict):
        ctx.report.warn("manifest is not a JSON object")
        return
    tool = data.get("tool")
    if isinstance(tool, dict):
        tool = f"{tool.get('name', 'pleg-doctor')} {tool.get('version', '?')}"
    facts = [f"{k} {v}" for k, v in (("node", data.get("node")), ("collected at", data.get("collected_at"))) if v]
    if tool:
        facts.append(f"by {tool}")
    if facts:
        ctx.evidence.notes.append(f"bundle: {', '.join(facts)}")
    entries = _entries(data)
    ctx.evidence.manifest_kinds.update(kinds_from_manifest(data))
    for what, err in collection_errors(data):
        ctx.report.warn(f"collection of {what} failed: {err}")
    ctx.report.records += len(entries)
    boot = boot_time_from_manifest(data)
    if boot is not None:
        ctx.evidence.boot_time = boot
        ctx.report.inferred.append(f"boot time {boot:.0f} (epoch s) from the manifest")
