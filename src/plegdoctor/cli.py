"""Command-line entry point: a thin, lazily loaded group of subcommands.

Each subcommand lives next to the code it drives and is imported only when it runs, so
`pleg-doctor --help` stays fast. To add one: write a click command in its package and add
one line to COMMANDS.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any

import click

from plegdoctor import __version__

# name -> ("module:attribute", one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("plegdoctor.commands:demo", "Analyze the built-in seed incident (no node, no root)."),
    "analyze": ("plegdoctor.commands:analyze", "Diagnose a PLEG stall from logs, dumps, /proc files or a bundle."),
    "goroutines": ("plegdoctor.goroutines.cli:command", "Parse Go goroutine dumps: buckets, waits, blocking chains."),
    "check": ("plegdoctor.checkcmd:command", "Audit containerd config, versions and mounts (volatile, known bugs)."),
    "rules": ("plegdoctor.commands:rules", "List the diagnosis rules."),
    "explain": ("plegdoctor.commands:explain", "Print the documentation of one rule."),
    "collect": ("plegdoctor.live.collect:command", "Collect an evidence bundle from this node."),
    "watch": ("plegdoctor.live.watch:command", "Probe the runtime, export metrics, capture evidence on stalls."),
    "fleet": ("plegdoctor.fleet:command", "Rank a fleet's nodes by runtime stall time and cause (from Prometheus)."),
    "lab": ("plegdoctor.lab.cli:command", "Reproduce the seed stall on a real containerd and measure fixes."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        modname, _, attr = spec[0].partition(":")
        try:
            module = import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                return _unavailable(cmd_name, spec[1])
            raise
        cmd = getattr(module, attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_: str) -> click.Command:
    @click.command(name=name, help=help_ + " (not available in this build)")
    def _cmd() -> None:
        from plegdoctor.errors import UserError

        raise UserError(f"'{name}' is not available in this build")

    return _cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pleg-doctor")
def cli() -> None:
    """Find out why a Kubernetes node's kubelet stopped relisting pods ("PLEG is not
    healthy", node NotReady) and what to change so it does not happen again.

    Exit codes: 0 ran (findings or not), 1 a --fail-on threshold was met, 2 bad usage or
    unreadable input.
    """


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: errors become one line on stderr and exit code 2."""
    from plegdoctor.errors import UserError

    try:
        return cli.main(args=argv, prog_name="pleg-doctor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("pleg-doctor: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(2)
    except UserError as exc:
        from plegdoctor.report.common import escape_controls  # a file name may carry escapes

        click.echo(f"pleg-doctor: {escape_controls(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("pleg-doctor: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # an internal bug: one line, traceback only on request
        if os.environ.get("PLEG_DOCTOR_DEBUG"):
            raise
        click.echo(
            f"pleg-doctor: internal error: {type(exc).__name__}: {exc} (set PLEG_DOCTOR_DEBUG=1 for a traceback)",
            err=True,
        )
        sys.exit(70)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
