"""`analyze`, `demo`, `rules` and `explain`: the click commands over plegdoctor.pipeline
(the reporters are plegdoctor.report)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from plegdoctor.errors import UserError
from plegdoctor.lazyre import lazy_re
from plegdoctor.pipeline import analyze_paths, parse_datetime_option

if TYPE_CHECKING:
    from pathlib import Path

FORMATS = ("text", "json", "markdown", "html")


def render(diagnosis: Any, fmt: str, *, color: bool | None = None, width: int | None = None) -> str:
    from plegdoctor import report

    return report.render(diagnosis, fmt, color=color, width=width)


_FAIL_ORDER = {"info": 0, "warning": 1, "critical": 2}


def _fail_exit(diagnosis: Any, fail_on: str | None) -> int:
    if not fail_on:
        return 0
    threshold = _FAIL_ORDER[fail_on]
    for f in diagnosis.findings:
        if _FAIL_ORDER.get(str(f.severity), 0) >= threshold:
            return 1
    return 0


def _emit(text: str, output: str | None) -> None:
    if output and output != "-":
        try:
            from pathlib import Path

            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"-O {output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")


def _common_options(fn: Any) -> Any:
    options = [
        click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True),
        click.option("-O", "--output", "output", metavar="FILE", help="Write the report to FILE instead of stdout."),
        click.option("--gap", type=float, default=3.0, show_default=True, help="Relist gap threshold, seconds."),
        click.option("--year", type=click.IntRange(1970, 2200), help="Year of year-less klog/journald stamps."),
        click.option("--tz", help="Zone of zone-less stamps: UTC, +08:00 or an IANA name (default UTC)."),
        click.option("--since", help="Ignore records before this ISO 8601 time."),
        click.option("--until", help="Ignore records after this ISO 8601 time."),
        click.option(
            "--fail-on",
            type=click.Choice(["info", "warning", "critical"]),
            help="Exit 1 when a finding of this severity or worse is found.",
        ),
        click.option("--color/--no-color", default=None, help="Colour the text report (default: only on a TTY)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _run(
    paths: list[str],
    kinds: dict[str, str] | None,
    *,
    fmt: str,
    output: str | None,
    gap: float,
    year: int | None,
    tz: str | None,
    since: str | None,
    until: str | None,
    fail_on: str | None,
    color: bool | None,
    display_root: str | None = None,
    limits: Any = None,
    max_events_per_kind: int | None = None,
) -> int:
    """The body of `analyze` and `demo` (their options are `_common_options`)."""
    from plegdoctor.timeutil import parse_tz

    zone = parse_tz(tz)
    diagnosis = analyze_paths(
        paths,
        kinds=kinds,
        year=year,
        tz=tz,
        gap=gap,
        since=parse_datetime_option(since, "--since", zone),
        until=parse_datetime_option(until, "--until", zone),
        display_root=display_root,
        limits=limits,
        max_events_per_kind=max_events_per_kind,
        series=fmt == "html",
        one_shot=True,
    )
    _emit(render(diagnosis, fmt, color=color if output in (None, "-") else False), output)
    return _fail_exit(diagnosis, fail_on)


def _list_kinds(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from plegdoctor import parsers

    for kind, mod in parsers.available().items():
        doc = (mod.__doc__ or "").strip().splitlines()
        click.echo(f"{kind:<18} {doc[0] if doc else ''}")
    ctx.exit(0)


_SIZE = lazy_re(r"(?i)^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$")


class ByteSize(click.ParamType):
    """A byte count: 1073741824, 512M, 1GiB, 4G (K/M/G/T are powers of 1024)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        m = _SIZE.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a size (e.g. 512M, 2G, 1073741824)", param, ctx)
        n = int(float(m[1]) * 1024 ** "_KMGT".index(m[2].upper() or "_"))
        if n < 1:
            self.fail(f"{value!r}: must be at least 1 byte", param, ctx)
        return n


def _limit_options(fn: Any) -> Any:
    from plegdoctor.evidence import MAX_EVENTS_PER_KIND
    from plegdoctor.inputs import Limits

    d = Limits()
    options = [
        click.option(
            "--max-input-bytes",
            type=ByteSize(),
            default=d.max_input_bytes,
            show_default="1G",
            help="Decompressed bytes read from one compressed file or archive member.",
        ),
        click.option(
            "--max-total-bytes",
            type=ByteSize(),
            default=d.max_total_bytes,
            show_default="4G",
            help="Decompressed and archive bytes read over the whole run.",
        ),
        click.option(
            "--max-ratio",
            type=click.FloatRange(min=1.0),
            default=d.max_ratio,
            show_default=True,
            help=f"Decompressed:compressed ratio at which reading stops (past {d.ratio_floor >> 20} MiB).",
        ),
        click.option(
            "--max-members",
            type=click.IntRange(min=1),
            default=d.max_members,
            show_default=True,
            help="Members read per tar or zip archive.",
        ),
        click.option(
            "--max-events-per-kind",
            type=click.IntRange(min=2),
            default=MAX_EVENTS_PER_KIND,
            show_default=True,
            help="Timeline events kept per kind (first and last halves; the rest are counted).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--list-kinds",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_kinds,
    help="List the input kinds pleg-doctor reads, and exit.",
)
@click.option(
    "--kind",
    "kind_overrides",
    multiple=True,
    metavar="KIND=PATH",
    help="Force the kind of an input (see `pleg-doctor analyze --list-kinds`).",
)
@_common_options
@_limit_options
def analyze(
    paths: tuple[str, ...],
    kind_overrides: tuple[str, ...],
    max_input_bytes: int,
    max_total_bytes: int,
    max_ratio: float,
    max_members: int,
    max_events_per_kind: int,
    **options: Any,
) -> int:
    """Diagnose a PLEG stall from whatever evidence exists.

    PATHS are files, directories (read recursively), archives (.tar, .tar.gz, .zip, a
    `pleg-doctor collect` bundle) or `-` for stdin; compressed files (.gz .zst .xz .bz2)
    are read as they are. The kind of each input is found from its content.
    """
    from plegdoctor import parsers
    from plegdoctor.inputs import Limits, parse_kind_overrides

    kinds = parse_kind_overrides(list(kind_overrides), parsers.known_kinds()) if kind_overrides else None
    limits = Limits(
        max_input_bytes=max_input_bytes,
        max_total_bytes=max_total_bytes,
        max_ratio=max_ratio,
        max_members=max_members,
    )
    return _run(list(paths), kinds, limits=limits, max_events_per_kind=max_events_per_kind, **options)


def demo_dir() -> Path:
    from importlib import resources
    from pathlib import Path

    return Path(str(resources.files("plegdoctor") / "demo" / "seed-incident"))


@click.command()
@_common_options
def demo(**options: Any) -> int:
    """Analyze the built-in sample incident: the seed article's evidence (containerd
    1.6.21, kubelet 1.19) laid out as a node's files. Offline, no node, no root."""
    path = demo_dir()
    if not path.is_dir():
        raise UserError(f"demo data missing from this installation ({path})")
    return _run([str(path)], None, display_root=str(path.parent), **options)


@click.command()
@click.option("-o", "--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
def rules(fmt: str) -> None:
    """List the diagnosis rules."""
    from plegdoctor import rulescmd

    rulescmd.print_rules(fmt)


@click.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print the documentation of one rule (e.g. PD201)."""
    from plegdoctor import rulescmd

    rulescmd.print_explain(code)
