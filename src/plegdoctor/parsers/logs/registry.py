"""The registry of log formats: which handler reads the lines of which process.

The engine (`engine`, `scanner`, `split`) watches and frames lines; the handlers interpret
them (as in node-problem-detector's watcher / monitor split). Each format module declares
one `FORMAT = LogFormat(...)`: its journald identifiers (SYSLOG_IDENTIFIER, _COMM or unit
names), the needles that mark its lines in a journal of several units, how to tell an
unframed line of its own, and its handler class. The engine knows no format by name.

Adding a log format touches three files: its module (with `FORMAT`, and, if it is a kind
of its own, `KIND`/`sniff`/`parse` and a line in `plegdoctor.parsers.PARSERS`), one line in
`FORMATS` below, and its test.

A handler is built as `handler(ctx, path, resolver)` for one input and has
`feed(lineno, prefix, msg, pid)` (one line, journald prefix split off), `finish()` and an
`unparsed` count. The format with `tick_tag` (the kubelet) also gets relist ticks in
batches (`ticks`, `tick_fast`) and may ask for the lines after an opener (`multi`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.parsers.logs.common import JournalFrame, StampResolver
    from plegdoctor.parsers.logs.scanner import Needle

# The formats, in the order an identifier or an unframed line is tried (first match wins).
FORMATS: list[str] = [
    "plegdoctor.parsers.logs.kubelet",
    "plegdoctor.parsers.logs.containerd",
    "plegdoctor.parsers.logs.dockerd",
    "plegdoctor.parsers.logs.kernel",
]


@dataclass(frozen=True)
class LogFormat:
    """What a log format module declares (see the module docstring)."""

    process: str  # the handler's name: routing key, and the process its events name
    handler: Callable[[ParseContext, str, StampResolver], Any]
    idents: tuple[str, ...] = ()  # identifiers (lower case, `.service` cut) that are its own
    ident_prefixes: tuple[str, ...] = ()
    ident_contains: tuple[str, ...] = ()
    needles: tuple[Needle, ...] = ()  # its lines inside a journal of several units
    own_needles: tuple[Needle, ...] | None = None  # in a file of its own kind (None: every line)
    by_content: Callable[[str], bool] | None = None  # an unframed journal line is its own
    bare_messages: tuple[str, ...] = ()  # messages quoted without a header that it reads
    json_line: Callable[[dict[str, Any]], bool] | None = None  # a JSON line (not a journal entry) is its own
    tick_tag: int | None = None  # needle tag of relist ticks (delivered in batches)
    capped_tag: int | None = None  # needle tag of lines read only until the handler's `cap` are kept

    def owns(self, ident: str) -> bool:
        """`ident` already lower-cased, with `.service` cut."""
        return (
            ident in self.idents
            or ident.startswith(self.ident_prefixes)
            or any(s in ident for s in self.ident_contains)
        )


_FORMATS: tuple[tuple[str, ...], list[LogFormat]] | None = None
_IDENTS: dict[str, str | None] = {}


def formats() -> list[LogFormat]:
    """The `FORMAT` of every module in FORMATS, in order (imported once per table)."""
    global _FORMATS
    key = tuple(FORMATS)
    if _FORMATS is None or _FORMATS[0] != key:
        _FORMATS = (key, [importlib.import_module(name).FORMAT for name in key])
        _IDENTS.clear()
    return _FORMATS[1]


def get_format(process: str) -> LogFormat:
    for fmt in formats():
        if fmt.process == process:
            return fmt
    raise KeyError(process)


def process_of_ident(ident: str) -> str | None:
    """Which handler a journald identifier / _COMM / unit name belongs to, or None."""
    fmts = formats()
    hit = _IDENTS.get(ident, "")
    if hit != "":
        return hit
    i = ident.lower()
    if i.endswith(".service"):
        i = i[:-8]
    proc = next((f.process for f in fmts if f.owns(i)), None)
    if len(_IDENTS) < 4096:
        _IDENTS[ident] = proc
    return proc


def head_lines(lines: list[str]) -> Iterator[tuple[str, JournalFrame | None, str | None]]:
    """For the sniffers: each non-blank line of the first 400 of a head, as (its text without
    the journald frame, the frame or None, the handler the frame's identifier names or None)."""
    from plegdoctor.parsers.logs.common import head_frames

    for line, frame in zip(lines[:400], head_frames(lines), strict=True):
        if not line.strip():
            continue
        if frame is None:
            yield line, None, None
        else:
            yield line[frame.end :], frame, process_of_ident(frame.ident)
