"""dockerd logs: errors and goroutine-dump pointers of the Docker daemon (logrus format).

Accepted variants (fixture tests/fixtures/logs/dockerd-text.log):
- logrus text `time="..." level=... msg="..." key=value`, bare or journald-framed
  (`dockerd[pid]: ...`); logrus JSON lines.
- `goroutine stacks written to <path>` (SIGUSR1 on current dockerd; the dump itself is in
  that file) and, on old dockerd, the dump logged inline between the BEGIN/END markers.

Error-level lines become DOCKERD_ERROR events; warning+ lines LogRecords; an inline dump is
extracted like containerd's (process "dockerd"). The parsing is `containerd`'s handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.parsers.logs.common import StampResolver
from plegdoctor.parsers.logs.containerd import ContainerdHandler
from plegdoctor.parsers.logs.registry import LogFormat, head_lines
from plegdoctor.parsers.logs.scanner import TAG_IDENT, Needle

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "dockerd-log"

_DOCKER_WORDS = ("dockerd", "libcontainerd", "graphdriver", "moby", "libnetwork", "API listen on", "Docker daemon")


def sniff(lines: list[str]) -> float:
    seen = hits = dockerish = containerdish = 0
    for text, _frame, proc in head_lines(lines):
        seen += 1
        if proc == "dockerd":
            dockerish += 1
        elif proc is not None:
            continue
        if text.startswith('time="') and " level=" in text:
            hits += 1
            if any(w in text for w in _DOCKER_WORDS):
                dockerish += 1
            if "io.containerd." in text:
                containerdish += 1
    if not seen or hits / seen < 0.2 or dockerish <= containerdish:
        return 0.0
    return 0.85 * hits / seen


def parse(source: Source, ctx: ParseContext) -> None:
    from plegdoctor.parsers.logs.engine import run_log_parser

    run_log_parser(source, ctx, default_process="dockerd", what="dockerd log")


def _handler(ctx: ParseContext, path: str, _resolver: StampResolver) -> ContainerdHandler:
    return ContainerdHandler(ctx, path, "dockerd")


FORMAT = LogFormat(
    process="dockerd",
    handler=_handler,
    idents=("dockerd", "docker"),
    needles=(Needle(b" dockerd[", TAG_IDENT), Needle(b"dockerd[", TAG_IDENT, line_start=True)),
)
