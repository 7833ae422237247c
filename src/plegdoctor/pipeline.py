"""The offline pipeline: inputs (plegdoctor.inputs) -> parsers (plegdoctor.parsers, sniffed by
content) -> Evidence -> analyses + rules (plegdoctor.rules) -> Diagnosis (plegdoctor.diagnosis).

`analyze_paths()` is the library entry point: the `analyze` and `demo` commands, the live
watcher and the lab call it; `collect_evidence()` stops at the Evidence (tests, fuzzing).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from plegdoctor.errors import UserError
from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import InputReport

# Pass 1 (learning the year) reads at most this much decompressed data.
PREPASS_BYTES = 64 << 20
PREPASS_SOURCES = 1000  # ... and looks at this many inputs at most

# A fully dated stamp in a log head teaches the year of year-less klog/journald stamps.
_FULL_DATE = lazy_re(r"\b(20\d\d)-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)")
# Sample series written by `collect`/`watch` carry `# pleg-doctor sample <RFC 3339>` headers.
_DATED_KINDS = {"containerd-log", "journal", "dockerd-log", "kubelet-log", "psi", "diskstats", "meminfo", "vmstat"}


def _learn_year(kind: str, head: bytes, ctx_time: Any) -> None:
    if kind not in _DATED_KINDS or ctx_time.reference_year is not None:
        return
    m = _FULL_DATE.search(head[:16384].decode("utf-8", "replace"))
    if m:
        with contextlib.suppress(ValueError):
            ctx_time.learn(datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC))


def parse_datetime_option(value: str | None, name: str, tz: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{name}: cannot parse {value!r} (use ISO 8601, e.g. 2023-06-02T05:48:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz or UTC)
    return parsed.astimezone(UTC)


def collect_evidence(
    paths: list[str],
    *,
    kinds: dict[str, str] | None = None,
    year: int | None = None,
    tz: str | None = None,
    options: dict[str, Any] | None = None,
    display_root: str | None = None,
    limits: Any = None,
    max_events_per_kind: int | None = None,
) -> Evidence:
    """Read every input into one Evidence store (the first half of analyze).

    `display_root`: a directory prefix left out of the paths the report quotes (the demo
    uses it so that evidence reads `seed-incident/var/log/...`). `limits`: an
    `inputs.Limits` (defaults if None); each limit hit is a warning of the input it cut.
    `max_events_per_kind`: events kept per kind (`evidence.EventList`)."""
    from plegdoctor import parsers
    from plegdoctor.evidence import EventList
    from plegdoctor.inputs import Limits, iter_sources
    from plegdoctor.timeutil import TimeContext, parse_tz

    time_ctx = TimeContext(year=year, tz=parse_tz(tz))
    evidence = Evidence()
    if max_events_per_kind is not None:
        evidence.events = EventList(max_events_per_kind)
    available = parsers.available()
    limits = limits if limits is not None else Limits()

    # Pass 1 (not for stdin, which can be read only once): learn the year from any fully
    # dated log, so that year-less stamps read later resolve consistently. The kinds it
    # sniffs are kept for pass 2 (sniffing a head costs more than reading it again). It
    # reads heads only, but a tar member's head comes after the members before it: pass 1
    # stops after PREPASS_BYTES decompressed, so a big archive is not decompressed twice.
    sniffed: dict[str, str] = {}
    if "-" not in paths and year is None:
        prepass = Limits(
            max_input_bytes=limits.max_input_bytes,
            max_total_bytes=min(PREPASS_BYTES, limits.max_total_bytes),
            max_ratio=limits.max_ratio,
            ratio_floor=limits.ratio_floor,
            max_members=limits.max_members,
        )
        for n, src in enumerate(iter_sources(paths, kinds, prepass)):
            if prepass.total_hit or n >= PREPASS_SOURCES:
                break
            kind = src.kind_override or parsers.sniff(src.head())[0]
            sniffed[src.display] = kind
            _learn_year(kind, src.head(), time_ctx)
            if time_ctx.reference_year is not None or prepass.total_hit:
                break

    strip = display_root.rstrip("/") + "/" if display_root else None

    def flush(current: InputReport | None) -> None:
        for display, message in limits.take_notices():
            if strip and display.startswith(strip):
                display = display[len(strip) :]
            if current is not None and current.path == display:
                current.warn(message)
                continue
            target = next((r for r in evidence.inputs if r.path == display), None)
            if target is None:
                target = InputReport(path=display, kind="archive")
                evidence.inputs.append(target)
            target.warn(message)

    report: InputReport | None = None
    for src in iter_sources(paths, kinds, limits):
        sniffed_kind = sniffed.get(src.display)
        if strip and src.display.startswith(strip):
            src.display = src.display[len(strip) :]
        head = src.head()
        # A bundle member's kind comes from the bundle's manifest (read first), if known.
        member = src.display.rsplit(":", 1)[-1] if ":" in src.display else ""
        kind = src.kind_override or evidence.manifest_kinds.get(member) or ""
        if kind and kind not in available and not src.kind_override:
            kind = ""  # a manifest kind this build does not read: sniff instead
        if not kind:
            kind = sniffed_kind or parsers.sniff(head)[0]
        report = InputReport(path=src.display, kind=kind)
        evidence.inputs.append(report)
        flush(report)  # what the limits said while reaching this source (e.g. its archive's notices)
        if src.compression:
            report.inferred.append("decompressed: " + "+".join(src.compression))
        if kind == "unreadable":
            report.warn(src.error or "unreadable")
            continue
        if not head:
            report.warn(src.error or "empty input")
            continue
        if kind not in available:
            report.kind = "unknown"
            report.warn("format not recognized; skipped (use --kind KIND=PATH if it is one we read)")
            continue
        ctx = ParseContext(evidence=evidence, report=report, time=time_ctx, options=dict(options or {}))
        ctx.options["mtime"] = src.mtime
        if evidence.boot_time is not None:
            ctx.options.setdefault("boot_time", evidence.boot_time)
        try:
            available[kind].parse(src, ctx)
        except UserError as exc:
            report.warn(str(exc))
        except (OSError, EOFError, ValueError, UnicodeError) as exc:
            report.warn(f"read error: {exc}")
        if src.error:
            report.warn(src.error)
        flush(report)
    flush(report)
    capped = evidence.seal()
    if capped:
        events_report = InputReport(path="(all inputs)", kind="events")
        for line in capped:
            events_report.warn(line)
        evidence.inputs.append(events_report)
    evidence.notes.extend(time_ctx.notes)
    return evidence


def _import_analysis() -> None:
    """Load the analysis modules (a big log's parser calls this while a second process
    scans, so the import costs no wall time)."""
    import plegdoctor.diagnosis
    import plegdoctor.report
    import plegdoctor.rules  # noqa: F401


def analyze_paths(
    paths: list[str],
    *,
    kinds: dict[str, str] | None = None,
    year: int | None = None,
    tz: str | None = None,
    gap: float = 3.0,
    since: datetime | None = None,
    until: datetime | None = None,
    display_root: str | None = None,
    limits: Any = None,
    max_events_per_kind: int | None = None,
    series: bool = False,
    one_shot: bool = False,
) -> Any:
    """Inputs -> Diagnosis (plegdoctor.diagnosis.Diagnosis). `limits`: `inputs.Limits`.
    `series`: also build the picture's data (`Diagnosis.series`, for the HTML report).
    `one_shot`: the process ends after this analysis (`analyze`, `demo`, the kubectl
    plugin): the evidence is moved out of the garbage collector's reach (`gc.freeze`), so
    that the collections the rules trigger and the one at exit do not walk its millions of
    objects again (the 500 MB bench journal: 15-20 ms). Long-lived callers (watch, the lab)
    leave it False."""
    if gap <= 0:
        raise UserError("--gap must be a positive number of seconds")
    evidence = collect_evidence(
        paths,
        kinds=kinds,
        year=year,
        tz=tz,
        options={"gap_seconds": gap, "while_scanning": _import_analysis},
        display_root=display_root,
        limits=limits,
        max_events_per_kind=max_events_per_kind,
    )
    if one_shot:
        import gc

        gc.freeze()
    from plegdoctor.diagnosis import diagnose
    from plegdoctor.rules import RuleContext, run_rules

    if since is not None or until is not None:
        _restrict(evidence, since, until)
    rctx = RuleContext.build(evidence, gap_seconds=gap)
    findings = run_rules(rctx)
    diagnosis = diagnose(rctx, findings)
    attach_runtime_activity(diagnosis, evidence)
    if series:
        from plegdoctor.analysis.series import build_series

        diagnosis.series = build_series(evidence, diagnosis.timeline, diagnosis.pleg)
    return diagnosis


MAX_ACTIVITY = 40


def attach_runtime_activity(diagnosis: Any, evidence: Evidence) -> None:
    """Add to each gap and unhealthy window of `diagnosis.pleg` what the runtime was
    doing meanwhile (key `runtime`: events inside the window +-5 s and the runtime
    operations that overlap it), each with its evidence."""
    from plegdoctor.analysis.pleg_timeline import events_around, summarize_event, timed_events

    timeline = getattr(diagnosis, "timeline", None)
    pleg = getattr(diagnosis, "pleg", None)
    if not isinstance(pleg, dict):
        return
    ordered = None  # the timed events, sorted once for all windows
    for window in list(pleg.get("gaps") or []) + list(pleg.get("unhealthy") or []):
        try:
            start = datetime.fromisoformat(window["start"])
            end = datetime.fromisoformat(window["end"]) if window.get("end") else start
        except (KeyError, TypeError, ValueError):
            continue
        if ordered is None:
            ordered = timed_events(evidence)
        around = events_around(evidence, start, end, timeline=timeline, ordered=ordered)
        activity: list[dict[str, Any]] = []
        seen: set[tuple[str, int]] = set()
        for ev in around["events"]:
            if ev.process == "kubelet" and str(ev.kind) not in ("cri-call-failed", "relist-error"):
                continue
            if (ev.ref.path, ev.ref.line) in seen:
                continue  # one log line can carry two events (e.g. TaskExit failed: delete failed)
            seen.add((ev.ref.path, ev.ref.line))
            item = {
                "ts": ev.ts.isoformat() if ev.ts else None,
                "process": ev.process,
                "kind": str(ev.kind),
                "summary": summarize_event(str(ev.kind), ev.attrs),
            }
            item.update(ev.ref.to_json())
            activity.append(item)
        for iv in around["intervals"]:
            dur = "still running at the end of the log" if iv.open else f"took {iv.seconds or 0:.1f} s"
            item = {
                "ts": (iv.start or iv.end).isoformat() if (iv.start or iv.end) else None,
                "process": iv.process,
                "kind": iv.kind,
                "summary": f"{summarize_event(iv.kind, {'id': iv.key})} {dur}",
            }
            ref = iv.start_ref or iv.end_ref
            if ref is not None:
                item.update(ref.to_json())
            activity.append(item)
        activity.sort(key=lambda a: a["ts"] or "")
        window["runtime"] = activity[:MAX_ACTIVITY]
        if len(activity) > MAX_ACTIVITY:
            window["runtime_more"] = len(activity) - MAX_ACTIVITY


def _restrict(evidence: Evidence, since: datetime | None, until: datetime | None) -> None:
    """Keep only time-stamped records inside [since, until] (undated ones stay)."""
    from plegdoctor.evidence import RelistSeries

    lo = since.timestamp() if since else float("-inf")
    hi = until.timestamp() if until else float("inf")

    def inside(ts: datetime | None) -> bool:
        return ts is None or lo <= ts.timestamp() <= hi

    old = evidence.relists
    new = RelistSeries()
    new.sources = old.sources
    for i in range(len(old)):
        if lo <= old.ts[i] <= hi:
            new.append(old.ts[i], old.src[i], old.line[i], old.texts.get(i))
    evidence.relists = new
    evidence.events = [e for e in evidence.events if inside(e.ts)]
    evidence.log_records = [r for r in evidence.log_records if inside(r.ts)]
    evidence.pressure = [p for p in evidence.pressure if inside(p.ts)]
    evidence.notes.append(
        "restricted to "
        + (since.isoformat() if since else "the beginning")
        + " .. "
        + (until.isoformat() if until else "the end")
    )
