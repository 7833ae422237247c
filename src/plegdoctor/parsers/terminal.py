"""A terminal session pasted whole: shell prompts with commands, each followed by its output
(`root@node:~# cat /proc/14378/stack`, `[root@node ~]# top`, `$ dmesg -T`).

Each command's output is a block; a block is read by the parser its content sniffs as (ps,
proc-stack, dmesg, top, a goroutine dump, ...), with the prompt line kept in front (the
proc-stack reader takes the pid from `cat /proc/<pid>/stack`) and its line numbers those of
the pasted file. `uptime` output gives the load average. Lines of blocks no parser reads are
counted as unread. The paste is bounded (MAX_LINES); what is past it is counted, not read.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from plegdoctor.inputs import Source
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import NodeLoad, Ref, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext

KIND = "terminal-session"
MAX_LINES = 50_000

# `root@host:~# cmd`, `user@host:/path$ cmd`, `[root@host ~]# cmd`, `root@hostname~# cmd`
PROMPT = lazy_re(r"^(?:\[[\w.@-]{1,64}(?: [^\]]{0,80})?\][#$]|[\w.-]{1,32}@[\w.-]{1,64}:?[^\s#$]{0,200}[#$]) ?(.*)$")
_UPTIME = lazy_re(r"\bup .{1,60}?load average: ([\d.]+), ([\d.]+), ([\d.]+)\s*$")


def sniff(lines: list[str]) -> float:
    """At least one prompt with a command and output after it, and most output lines not
    prompts: a session, not a log of one kind."""
    body = [ln for ln in lines[:2000] if ln.strip()]
    prompts = [i for i, ln in enumerate(body) if (m := PROMPT.match(ln)) and m.group(1).strip()]
    if not prompts or len(body) - len(prompts) < 2:
        return 0.0
    # output both before the first prompt and after one, or several commands: a session
    if len(prompts) >= 2 or (prompts[0] > 0 and prompts[0] < len(body) - 1):
        return 0.97
    return 0.0


def _blocks(source: Source, ctx: ParseContext) -> list[tuple[int, str | None, list[str]]]:
    """(first line number, command or None, lines including the prompt line)."""
    out: list[tuple[int, str | None, list[str]]] = []
    cur: tuple[int, str | None, list[str]] | None = None
    skipped = 0
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        if lineno > MAX_LINES:
            skipped += 1
            continue
        m = PROMPT.match(raw)
        if m is not None:
            cur = (lineno, m.group(1).strip(), [raw])
            out.append(cur)
            continue
        if cur is None:
            cur = (lineno, None, [])
            out.append(cur)
        cur[2].append(raw)
    if skipped:
        ctx.report.unparsed += skipped
        ctx.report.warn(f"terminal session: {skipped} line(s) past the first {MAX_LINES} not read")
    return out


def parse(source: Source, ctx: ParseContext) -> None:
    from plegdoctor import parsers

    unread = Unread(ctx.report)
    for first, command, lines in _blocks(source, ctx):
        output = lines[1:] if command is not None else lines
        if not any(ln.strip() for ln in output):
            continue
        if command is not None and command.split()[:1] == ["uptime"]:
            m = next((mm for ln in output if (mm := _UPTIME.search(ln))), None)
            if m is not None:
                ln_no = first + 1 + next(i for i, ln in enumerate(output) if _UPTIME.search(ln))
                ref = Ref(source.display, ln_no, quote(output[ln_no - first - 1]))
                try:  # `.9.57` matches the pattern's characters but is no number (found by fuzzing)
                    avg = (float(m.group(1)), float(m.group(2)), float(m.group(3)))
                except ValueError:
                    avg = None
                if avg is not None:
                    ctx.evidence.loads.append(NodeLoad(None, *avg, None, ref))
                    ctx.report.records += 1
                    continue
        head = "\n".join(output[:400]).encode("utf-8", "replace")
        kind, _ = parsers.sniff(head, exclude=frozenset({KIND}))
        if kind == parsers.UNKNOWN:
            for i, ln in enumerate(output):
                if ln.strip():
                    unread(first + (1 if command is not None else 0) + i, ln)
            continue
        # the block, at its own line numbers (blank lines before it), prompt line included
        text = "\n" * (first - 1) + "\n".join(lines) + "\n"
        data = text.encode("utf-8", "replace")
        sub = Source(source.display, source.mtime, len(data), _stream=io.BytesIO(data))  # type: ignore[arg-type]
        parsers.get(kind).parse(sub, ctx)
    unread.warn()
