"""journalctl output of several units mixed (kubelet, containerd, dockerd, kernel).

Accepted variants (each has a fixture under tests/fixtures/logs/):
- `-o short` (`Jun 02 05:48:06 host ident[pid]: msg`), `short-precise` (`.uuuuuu`),
  `short-iso` / `short-iso-precise` (`2023-06-02T05:48:06+08:00` or older `+0800`),
  `short-monotonic`, classic syslog files (`Jun  2 ...`), and bare `ident[pid]: msg`
  excerpts (as quoted in incident write-ups);
- `-o cat` (no framing: each line is routed by its content: klog -> kubelet, logrus ->
  containerd, `INFO: task ... blocked` -> kernel);
- `-o json`: one entry per line; `MESSAGE` as a string, as `null` (field over 4096 bytes
  exported without `--all`: counted and warned, the content is lost) or as an array of
  byte values (non-UTF-8 or non-printable content); identifier from SYSLOG_IDENTIFIER,
  else _COMM, else _SYSTEMD_UNIT; time from __REALTIME_TIMESTAMP.

Entries are dispatched by identifier to the handler of each format in `registry.FORMATS`
(kubelet: any identifier containing "kubelet"; containerd, also the shim lines it forwards;
dockerd; kernel). The reading is `engine.run_log_parser`'s; this module is the kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.parsers.logs.common import head_frames
from plegdoctor.parsers.logs.engine import run_log_parser
from plegdoctor.parsers.logs.registry import process_of_ident

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "journal"


def sniff(lines: list[str]) -> float:
    """journald framing with several identifiers, or `journalctl -o json` entries."""
    seen = framed = 0
    idents: set[str] = set()
    json_entries = 0
    for line, frame in zip(lines[:400], head_frames(lines), strict=True):
        if not line.strip():
            continue
        seen += 1
        if line.startswith("{") and '"MESSAGE"' in line and ("__REALTIME_TIMESTAMP" in line or "_PID" in line):
            json_entries += 1
            continue
        if frame is not None and (frame.host is not None or frame.pid is not None):
            framed += 1
            idents.add(process_of_ident(frame.ident) or frame.ident)
    if not seen:
        return 0.0
    if json_entries / seen >= 0.5:
        return 0.95
    share = framed / seen
    if share < 0.3:
        return 0.0
    known = idents & {"kubelet", "containerd", "dockerd", "kernel"}
    if len(idents) >= 2 and known - {"kernel"}:
        # several units incl. a runtime or the kubelet: beats a dmesg reading of the kernel lines
        return 0.96
    return 0.5 * share  # one unit only: its own kind scores higher


def parse(source: Source, ctx: ParseContext) -> None:
    run_log_parser(source, ctx, default_process=None, what="journal")
