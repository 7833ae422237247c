"""`pleg-doctor goroutines DUMP...`: buckets, waits and blocking chains of goroutine dumps."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime

import click

from plegdoctor.errors import UserError
from plegdoctor.goroutines.model import Dump, Similarity
from plegdoctor.goroutines.parse import parse_dump_binary


def load_dumps(paths: list[str]) -> tuple[list[Dump], list[str]]:
    """Parse every input; returns the dumps and, per input without goroutines, why."""
    from plegdoctor.inputs import iter_sources

    dumps: list[Dump] = []
    reasons: list[str] = []
    for src in iter_sources(paths):
        head = src.head()
        if src.error and not head:
            reasons.append(f"{src.display}: {src.error}")
            continue
        if b"\x00" in head[:8192]:
            reasons.append(f"{src.display}: binary data, not a text dump")
            src.stream().close()
            continue
        when = None
        base = os.path.basename(src.display)
        if src.mtime is not None and re.match(r"^(containerd\.\d+\.stacks\.log|goroutine-stacks-)", base):
            when = datetime.fromtimestamp(src.mtime, UTC)  # the file is written at dump time
        found = parse_dump_binary(src.stream(), source=src.display, dump_time=when)
        with_g = [d for d in found if d.goroutines]
        dumps.extend(with_g)
        if not with_g:
            reasons.append(f"{src.display}: {_why_not(head, found)}")
        if src.error:
            reasons.append(f"{src.display}: {src.error}")
    return dumps, reasons


def _why_not(head: bytes, found: list[Dump]) -> str:
    notes = [n for d in found for n in d.notes]
    if notes:
        return notes[0]
    text = head.decode("utf-8", "replace")
    if not text.strip():
        return "empty input"
    problems = sum(d.problem_count for d in found)
    if problems:
        lines = [p.line for d in found for p in d.problems][:5]
        return f"stack frames without any 'goroutine N [state]:' header (lines {', '.join(map(str, lines))})"
    if "goroutine" in text:
        return "the word 'goroutine' appears, but no 'goroutine N [state]:' header followed by frames"
    first = text.splitlines()[0][:60] if text.splitlines() else ""
    return f"no 'goroutine N [state]:' header (first line: {first!r})"


@click.command(name="goroutines")
@click.argument("dumps", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("-m", "--match", "match", metavar="REGEX", help="Show only buckets whose state or functions match.")
@click.option("--min-wait", type=int, metavar="MIN", help="Show only buckets blocked at least MIN minutes.")
@click.option(
    "--similarity",
    type=click.Choice(["exact", "lines", "pointer", "value"]),
    default="pointer",
    show_default=True,
    help="How alike stacks must be to share a bucket (panicparse's levels).",
)
def command(dumps: tuple[str, ...], output: str, match: str | None, min_wait: int | None, similarity: str) -> None:
    """Parse Go goroutine dumps (containerd, shims, kubelet, dockerd; raw, pprof, log lines,
    journald, pasted) and print buckets, who waits for whom, and blocking chains."""
    from plegdoctor.goroutines.gcpause import no_gc

    filter_re = None
    if match:
        try:
            filter_re = re.compile(match)
        except re.error as exc:
            raise UserError(f"-m: bad regular expression: {exc}") from None
    with no_gc():
        _run(dumps, output, filter_re, min_wait, similarity)


def _run(
    dumps: tuple[str, ...], output: str, filter_re: re.Pattern[str] | None, min_wait: int | None, similarity: str
) -> None:
    from plegdoctor.goroutines.analysis import analyze
    from plegdoctor.goroutines.html import render_html
    from plegdoctor.goroutines.render import iter_json, render_text
    from plegdoctor.report.common import escape_controls

    parsed, reasons = load_dumps(list(dumps))
    if not parsed:
        raise UserError("no goroutines found: " + "; ".join(reasons or ["no input"]))
    for r in reasons:
        click.echo(f"pleg-doctor: {escape_controls(r)}", err=True)
    analysis = analyze(parsed, similarity=Similarity.parse(similarity))
    if output == "json":
        sys.stdout.buffer.writelines(iter_json(analysis))
        sys.stdout.buffer.flush()
    elif output == "html":
        click.echo(render_html(analysis, filter_re=filter_re, min_wait=min_wait), nl=False)
    else:
        click.echo(escape_controls(render_text(analysis, filter_re=filter_re, min_wait=min_wait)), nl=False)
