"""`manifest.json` of a pleg-doctor evidence bundle (design: "Bundle format").

Accepted variant (fixtures under tests/fixtures/node/manifest/): one JSON object

    {"tool": {"name": "pleg-doctor", "version": "0.1.0"} | "pleg-doctor 0.1.0",
     "node": "node-7", "collected_at": "2026-11-28T14:29:18Z", "boot_time": 1764300000.0,
     "files": [{"path": "proc/pressure/io", "kind": "psi", "sha256": "...",
                "command": "cat /proc/pressure/io" | "source": "/proc/pressure/io",
                "error": "timed out after 5 s"}, ...]}

A bundle captured by `pleg-doctor watch` also says why it was captured, and collect records
the runtime it found and the node's load (manifest-watch-trigger.json):

    "trigger": {"source": "watch", "reason": "ListPodSandbox in flight for 6.2s (threshold 5s)",
                "method": "ListPodSandbox", "in_flight_method": "ListPodSandbox",
                "in_flight_seconds": 6.214, "call_started_at": "2026-11-28T14:29:12.004Z",
                "detected_at": "2026-11-28T14:29:18.218Z", "last_success_at": "...",
                "seconds_since_success": 7.1, "stall_threshold": 5.0, "call_timeout": 120.0,
                "runtime_endpoint": "unix:///run/containerd/containerd.sock",
                "calls": [["2026-11-28T14:29:10.001Z", "ListPodSandbox", 0.004, true], ...]},
    "runtime": {"endpoint": "unix:///run/containerd/containerd.sock", "containerd_pid": 812,
                "error": "..."},
    "node_load": {"loadavg": [0.52, 0.61, 0.70], "cpus": 2, "source": "/proc/loadavg"}

Older watch bundles wrote only `reason`, `in_flight_method`, `in_flight_seconds`,
`seconds_since_success` and `stall_threshold` (their times then come from `collected_at`).
The trigger becomes a `StallTrigger` (its Ref is the manifest line of the trigger's
`reason`), the load a `NodeLoad`. `calls` are the probe's last calls before the capture
(start, method, seconds, ok; at most MAX_CALLS are read, malformed ones skipped): the CRI
latency the report draws up to the stall.

(`entries` is accepted for `files`; unknown keys are ignored). Each entry with an `error`
becomes a warning of this input (what the collector could not get is part of the story);
node, time and tool version become notes. `kinds_from_manifest(data)` maps member paths to
kinds so the analyze orchestrator can skip sniffing; `boot_time_from_manifest(data)` gives
the epoch boot time that turns dmesg's seconds-since-boot into wall time.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from plegdoctor.model import NodeLoad, Ref, StallTrigger, quote

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
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() of a 5000-digit number
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
    text = raw.decode("utf-8", "replace")
    trigger = trigger_from_manifest(data, text, source.display)
    if trigger is not None:
        ctx.evidence.triggers.append(trigger)
        ctx.report.records += 1
    load = load_from_manifest(data, text, source.display)
    if load is not None:
        ctx.evidence.loads.append(load)
        ctx.report.records += 1
    boot = boot_time_from_manifest(data)
    if boot is not None:
        ctx.evidence.boot_time = boot
        ctx.report.inferred.append(f"boot time {boot:.0f} (epoch s) from the manifest")


# ---------------------------------------------------------------------------------------
# The capture trigger and the node's load


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):  # a hostile manifest's 1e300
            return None
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def key_ref(text: str, display: str, key: str, within: str | None = None) -> Ref:
    """The Ref of the line where `"key":` appears (inside the `"within":` object when given, as
    json.dumps(indent=2) lays it out); line 1 with the start of the text when not found."""
    lines = text.splitlines()
    start = 0
    if within is not None:
        pat = re.compile(rf'"{re.escape(within)}"\s*:')
        start = next((i for i, ln in enumerate(lines) if pat.search(ln)), 0)
    pat = re.compile(rf'"{re.escape(key)}"\s*:')
    for i in range(start, len(lines)):
        if pat.search(lines[i]):
            return Ref(display, i + 1, quote(lines[i].strip()))
    return Ref(display, 1, quote(lines[0].strip() if lines else ""))


MAX_CALLS = 5000


def _calls(value: Any) -> tuple[tuple[float, str, float, bool], ...]:
    if not isinstance(value, list):
        return ()
    out = []
    for item in value[:MAX_CALLS]:
        if not isinstance(item, list) or len(item) < 4:
            continue
        start, method, seconds, ok = item[:4]
        when = _time(start)
        secs = _num(seconds)
        if when is None or secs is None or not 0 <= secs < 1e7 or not isinstance(method, str) or len(method) > 64:
            continue
        out.append((when.timestamp(), method, secs, ok is True))
    return tuple(sorted(out))


def trigger_from_manifest(data: Any, text: str, display: str) -> StallTrigger | None:
    """The manifest's `trigger` (why watch captured the bundle) as a StallTrigger, or None."""
    trig = data.get("trigger") if isinstance(data, dict) else None
    if not isinstance(trig, dict):
        return None
    runtime = data.get("runtime") if isinstance(data.get("runtime"), dict) else {}
    method = str(trig.get("method") or trig.get("in_flight_method") or "")
    reason = str(trig.get("reason") or "")
    if not method:
        m = re.search(r"\b(List\w+|\w+Status)\b", reason)
        method = m.group(1) if m else ""
    seconds = _num(trig.get("in_flight_seconds"))
    if not seconds:
        seconds = _num(trig.get("call_seconds")) or _num(trig.get("seconds_since_success"))
    detected = _time(trig.get("detected_at")) or _time(data.get("collected_at"))
    started = _time(trig.get("call_started_at"))
    if started is None and detected is not None and seconds:
        started = detected - timedelta(seconds=seconds)
    last_success = _time(trig.get("last_success_at"))
    since_ok = _num(trig.get("seconds_since_success"))
    if last_success is None and detected is not None and since_ok is not None:
        last_success = detected - timedelta(seconds=since_ok)
    pid = runtime.get("containerd_pid", runtime.get("pid"))
    key = "reason" if "reason" in trig else next(iter(trig), "trigger")
    return StallTrigger(
        method=method,
        seconds=seconds,
        started=started,
        detected=detected,
        endpoint=str(trig.get("runtime_endpoint") or runtime.get("endpoint") or ""),
        reason=reason,
        ref=key_ref(text, display, key, within="trigger"),
        threshold=_num(trig.get("stall_threshold")),
        last_success=last_success,
        runtime_pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        runtime_error=str(runtime.get("error") or ""),
        source=str(trig.get("source") or "watch"),
        calls=(calls := _calls(trig.get("calls"))),
        calls_ref=key_ref(text, display, "calls", within="trigger") if calls else None,
    )


def load_from_manifest(data: Any, text: str, display: str) -> NodeLoad | None:
    """The manifest's `node_load` ({"loadavg": [1, 5, 15], "cpus": N}) as a NodeLoad, or None."""
    load = data.get("node_load") if isinstance(data, dict) else None
    if not isinstance(load, dict):
        return None
    avg = load.get("loadavg")
    if not isinstance(avg, list) or len(avg) < 3 or any(_num(v) is None for v in avg[:3]):
        return None
    cpus = load.get("cpus")
    return NodeLoad(
        ts=_time(load.get("at")) or _time(data.get("collected_at")),
        load1=float(avg[0]),
        load5=float(avg[1]),
        load15=float(avg[2]),
        cpus=cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 0 else None,
        ref=key_ref(text, display, "loadavg", within="node_load"),
    )
