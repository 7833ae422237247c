"""Prometheus text exposition format (kubelet /metrics, containerd /v1/metrics,
node_exporter, pleg-doctor's own exporter) -> MetricSample.

Accepted variants (fixtures under tests/fixtures/node/prom/):

- one scrape: `# HELP`/`# TYPE` comments and `name{label="value",...} value [timestamp_ms]`
  samples; label values with `\\\\`, `\\"` and `\\n` escapes; values `+Inf`, `-Inf`, `NaN`
  (kubelet-metrics-pleg.txt with kubelet_pleg_* and kubelet_runtime_operations_*;
  containerd-metrics-cri.txt with containerd_cri_* histograms; node-exporter-pressure.txt);
- several scrapes separated by the sample headers of plegdoctor.parsers.psi
  (`# pleg-doctor sample <time>`), the header time becoming the sample time
  (kubelet-metrics-series.txt). An explicit per-sample timestamp wins.

Only the families the analysis reads are kept (PREFIXES), unless `ctx.options["all_metrics"]`.
Written here rather than with prometheus_client's parser: that parser yields families
without line numbers (every record here must point at its line) and would add a dependency
for ~40 lines of parsing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import MetricSample, Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.psi import header_of, split_series

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "prom-metrics"

PREFIXES = (
    "kubelet_pleg_",
    "kubelet_evented_pleg_",
    "kubelet_runtime_operations",
    "kubelet_node_name",
    "kubelet_running_",
    "containerd_cri_",
    "node_pressure_",
    "node_disk_",
    "node_memory_Dirty",
    "node_memory_Writeback",
    "node_vmstat_",
    "container_pressure_",
    "pleg_doctor_",
    "process_start_time_seconds",
    "kube_node_status_condition",
)

_SAMPLE = lazy_re(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+(-?\d{1,19}))?\s*$")
_LABEL = lazy_re(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_TYPE = lazy_re(r"^# (?:TYPE|HELP) [a-zA-Z_:][a-zA-Z0-9_:]* ")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], value) if "\\" in value else value


def parse_labels(text: str) -> dict[str, str] | None:
    """`{a="1",b="x\\"y"}` -> dict; None when malformed."""
    inner = text[1:-1]
    out: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        m = _LABEL.match(inner, pos)
        if not m:
            return None if inner[pos:].strip() else out
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def parse_value(text: str) -> float | None:
    try:
        return float(text)  # accepts +Inf, -Inf, NaN
    except ValueError:
        return None


def _may_be_sample(line: str) -> bool:
    """False only if `_SAMPLE` cannot match `line`: a sample is `name value [ts]` (at most
    three whitespace-separated tokens; `\\s` and `str.split` agree on whitespace) or a name
    with `{` right after it (so in the first token)."""
    tokens = line.split(None, 3)
    return len(tokens) <= 3 or "{" in tokens[0]


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: 0.95 needs a line that `_TYPE` matches (it starts
    `# TYPE ` or `# HELP `), 0.5 needs a sample (see `_may_be_sample`) and a `{` in a line.
    No needle holds a newline, so each is in the joined text only if it is in a line."""
    text = "\n".join(lines)
    if "# TYPE " in text or "# HELP " in text:
        return False
    return "{" not in text or not any(_may_be_sample(ln) for ln in lines)


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    data = [ln for ln in lines if ln.strip() and header_of(ln) is None]
    if not data:
        return 0.0
    typed = sum(1 for ln in data[:200] if _TYPE.match(ln))
    samples = sum(1 for ln in data[:200] if not ln.startswith("#") and _SAMPLE.match(ln))
    ratio = (typed + samples) / min(len(data), 200)
    if typed and ratio >= 0.8:
        return 0.95
    return 0.5 if samples and ratio >= 0.9 and any("{" in ln for ln in data[:50]) else 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    keep_all = bool(ctx.options.get("all_metrics"))
    unread = Unread(ctx.report)
    for line in split_series(source, ctx):
        m = _SAMPLE.match(line.text)
        if not m:
            unread(line.lineno, line.raw)
            continue
        name = m.group(1)
        if not keep_all and not name.startswith(PREFIXES):
            continue
        labels = parse_labels(m.group(2)) if m.group(2) else {}
        value = parse_value(m.group(3))
        if labels is None or value is None:
            unread(line.lineno, line.raw)
            continue
        ts = line.ts
        if m.group(4) is not None:
            try:
                ts = datetime.fromtimestamp(int(m.group(4)) / 1000.0, UTC)
            except (OverflowError, OSError, ValueError):  # beyond year 9999
                unread(line.lineno, line.raw)
                continue
        ctx.evidence.metrics.append(
            MetricSample(name, labels, value, ts, Ref(source.display, line.lineno, quote(line.raw)))
        )
        ctx.report.records += 1
    unread.warn()
