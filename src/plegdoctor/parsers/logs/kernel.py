"""Kernel lines inside a journal (`kernel: INFO: task <comm>:<pid> blocked for more than N
seconds`): HUNG_TASK events. Not a kind of its own (dmesg output is `parsers.dmesg`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from plegdoctor.model import Event, EventKind, Ref, quote
from plegdoctor.parsers.logs.registry import LogFormat
from plegdoctor.parsers.logs.scanner import TAG_IDENT, Needle

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.parsers.logs.common import StampResolver

TAG_KERNEL = 12

_HUNG = re.compile(r"INFO: task (\S+):(\d{1,20}) blocked for more than (\d{1,20}) seconds")


class KernelHandler:
    def __init__(self, ctx: ParseContext, path: str, _resolver: StampResolver | None = None) -> None:
        self.ctx = ctx
        self.path = path
        self.records = 0
        self.unparsed = 0

    def feed(self, lineno: int, prefix: str, msg: str, pid: int | None) -> None:
        m = _HUNG.search(msg)
        if m is None:
            return
        self.records += 1
        self.ctx.evidence.events.append(
            Event(
                None,
                EventKind.HUNG_TASK,
                "kernel",
                Ref(self.path, lineno, quote(prefix + msg)),
                {"comm": m.group(1), "pid": int(m.group(2)), "seconds": int(m.group(3))},
            )
        )

    def finish(self) -> None:
        pass


def by_content(text: str) -> bool:
    """An unframed journal line that is the kernel's (`-o cat`)."""
    return "INFO: task " in text or text.startswith("[")


FORMAT = LogFormat(
    process="kernel",
    handler=KernelHandler,
    idents=("kernel",),
    needles=(Needle(b" kernel: ", TAG_IDENT), Needle(b"INFO: task ", TAG_KERNEL)),
    by_content=by_content,
)
