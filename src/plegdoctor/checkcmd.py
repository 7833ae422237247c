"""`pleg-doctor check`: audit containerd config, versions and mounts (read-only).

Inputs come from flags (`--config`, `--containerd-version`, `--kernel-version`,
`--runc-version`, `--mounts`) and/or `--live`, which reads this machine: the containerd and
runc versions from the Go build info and ELF symbols of the binaries on PATH (read, never
executed: plegdoctor.live.gobinary), /etc/containerd/config.toml, `uname -r`, /proc/mounts
and the vm.dirty_* sysctls. Flags win over live values. Nothing is ever written or run.
Bad input (invalid TOML, unknown schema, unparseable version, unreadable
file) ends with one line and exit code 2; `--fail-on` makes warn/fail checks exit 1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from plegdoctor import __version__
from plegdoctor import knowledge as kb
from plegdoctor.analysis.config_audit import FAIL, INFO, PASS, WARN, Check, audit, snippet_for, worst
from plegdoctor.errors import UserError
from plegdoctor.live.gobinary import binary_version
from plegdoctor.model import Mount, Ref, Versions, quote
from plegdoctor.parsers.mounts import parse_line
from plegdoctor.parsers.runtime_config import RuntimeConfig, load_config

SCHEMA = "pleg-doctor/check/v1"
LIVE_CONFIG = "/etc/containerd/config.toml"
MAX_MOUNT_LINES = 200_000


@dataclass
class CheckInputs:
    config: RuntimeConfig | None = None
    versions: Versions = field(default_factory=Versions)
    mounts: list[Mount] | None = None
    sysctls: dict[str, int] | None = None
    extra: list[Check] = field(default_factory=list)  # problems met while reading live inputs


def read_mounts(path: str) -> list[Mount]:
    """A mount table file (/proc/mounts, mountinfo or `mount` output) -> Mounts."""
    out: list[Mount] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if lineno > MAX_MOUNT_LINES:
                    break
                parsed = parse_line(line.strip())
                if parsed is not None:
                    src, target, fstype, options = parsed
                    out.append(Mount(src, target, fstype, options, Ref(path, lineno, quote(line))))
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from None
    if not out:
        raise UserError(f"{path}: no mount table lines found (expected /proc/mounts, mountinfo or `mount` output)")
    return out


def _read_version(component: str, binary: str) -> tuple[str | None, str]:
    """(version, where it was read) of the Go binary `binary`, read from its file, never run."""
    bv = binary_version(component, binary)
    if bv.version is None:
        why = bv.error or "no version in its Go build info or ELF symbols"
        return None, f"{binary}: {why} (its file is read, never executed)"
    return bv.version.value, f"{binary} ({bv.version.source})"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def read_live(inputs: CheckInputs, want_config: bool, want_mounts: bool) -> None:
    """Fill what flags did not give from this machine (read-only)."""
    v = inputs.versions
    containerd = v.containerd
    runc = v.runc
    kernel = v.kernel
    refs = list(v.refs)
    binary = shutil.which("containerd")
    if containerd is None:
        if binary:
            found, where = _read_version("containerd", binary)
            if found:
                containerd = found
                refs.append(Ref(where, 0, quote(found)))
            else:
                inputs.extra.append(Check("live-containerd", INFO, "containerd version not read", where))
        else:
            inputs.extra.append(Check("live-containerd", INFO, "No containerd binary on PATH", "Nothing to read."))
    if runc is None:
        runc_bin = shutil.which("runc")
        if runc_bin:
            found, where = _read_version("runc", runc_bin)
            if found:
                runc = found
                refs.append(Ref(where, 0, quote(found)))
            else:
                inputs.extra.append(Check("live-runc", INFO, "runc version not read", where))
    if kernel is None:
        kernel = os.uname().release
        refs.append(Ref("uname -r", 1, kernel))
    inputs.versions = Versions(
        kernel=kernel, containerd=containerd, kubelet=v.kubelet, runc=runc, go=v.go, refs=tuple(refs)
    )
    if want_config and inputs.config is None and os.path.exists(LIVE_CONFIG):
        try:
            inputs.config = load_config(LIVE_CONFIG)
        except UserError as exc:
            inputs.extra.append(Check("live-config", FAIL, "containerd config unreadable", str(exc)))
    elif want_config and inputs.config is None:
        inputs.extra.append(
            Check(
                "live-config",
                INFO,
                f"No {LIVE_CONFIG}",
                "containerd runs with its built-in defaults (no volatile).",
            )
        )
    if want_mounts and inputs.mounts is None and os.path.exists("/proc/mounts"):
        inputs.mounts = read_mounts("/proc/mounts")
    sysctls: dict[str, int] = {}
    for name in ("dirty_bytes", "dirty_ratio", "dirty_background_bytes", "dirty_background_ratio"):
        value = _read_int(f"/proc/sys/vm/{name}")
        if value is not None:
            sysctls[name] = value
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    sysctls["mem_total_kb"] = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        pass
    inputs.sysctls = sysctls or None


def build_report(inputs: CheckInputs) -> dict[str, Any]:
    result = audit(inputs.config, inputs.versions, inputs.mounts, inputs.sysctls)
    checks = [*inputs.extra, *result]
    cv, kv = result.facts.containerd, result.facts.kernel  # as the checks read them
    counts = {s: sum(1 for c in checks if c.status == s) for s in (PASS, WARN, FAIL, INFO)}
    return {
        "schema": SCHEMA,
        "tool": {"name": "pleg-doctor", "version": __version__},
        "checks": [c.to_json() for c in checks],
        "snippet": snippet_for(inputs.config, inputs.versions),
        "versions": {
            "containerd": str(cv) if cv else None,
            "containerd_raw": inputs.versions.containerd,
            "kernel": str(kv) if kv else None,
            "kernel_raw": inputs.versions.kernel,
            "runc": inputs.versions.runc,
            "go": inputs.versions.go,
        },
        "config": None
        if inputs.config is None
        else {"path": inputs.config.path, "schema": inputs.config.schema, "explicit": inputs.config.schema_explicit},
        "mounts": None if inputs.mounts is None else len(inputs.mounts),
        "summary": counts,
        "worst": worst(checks),
    }


_STYLE = {PASS: "green", WARN: "yellow", FAIL: "bold red", INFO: "cyan"}


def render_text(report: dict[str, Any], color: bool) -> str:
    """Human report, 80 columns, colour only when asked (stdout is a TTY)."""
    from rich.console import Console, Group
    from rich.table import Table
    from rich.text import Text

    console = Console(width=80, no_color=not color, force_terminal=color, highlight=False, emoji=False)
    with console.capture() as cap:
        v = report["versions"]
        head = ", ".join(f"{k} {v[k] or v.get(k + '_raw')}" for k in ("containerd", "kernel", "runc") if v.get(k))
        console.print(Text(f"pleg-doctor check: {head or 'no versions given'}", style="bold"))
        if report["config"]:
            console.print(Text(f"config: {report['config']['path']} (version {report['config']['schema']})"))
        console.print()
        for c in report["checks"]:
            parts: list[Text] = [
                Text(c["title"], style="bold" if c["status"] in (WARN, FAIL) else ""),
                Text(c["detail"]),
            ]
            for ev in c["evidence"][:3]:
                where = f"{ev['path']}:{ev['line']}" if ev["line"] else ev["path"]
                parts.append(Text(f"at {where}: {ev['text'].strip()}", style="dim"))
            if c["fix"]:
                parts.append(Text("fix: " + c["fix"]))
            for ref in c["references"][:3]:
                parts.append(Text(f"see {ref}", style="dim"))
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=6, no_wrap=True)
            grid.add_column(overflow="fold")
            grid.add_row(Text(f"[{c['status'].upper()}]", style=_STYLE[c["status"]]), Group(*parts))
            console.print(grid)
            console.print()
        console.print(Text("Config snippet", style="bold"))
        console.print(Text(report["snippet"], overflow="fold"))
        s = report["summary"]
        console.print(Text(f"{s['pass']} pass, {s['warn']} warn, {s['fail']} fail, {s['info']} info"))
    return "\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n"


@click.command(name="check", context_settings={"max_content_width": 100})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="containerd config.toml to audit.")
@click.option(
    "--containerd-version", help="containerd version (e.g. 1.7.24, v2.1.9, or `containerd --version` output)."
)
@click.option("--kernel-version", help="Kernel release (`uname -r`, e.g. 5.15.0-76-generic).")
@click.option("--runc-version", help="runc version (informational).")
@click.option(
    "--mounts", "mounts_path", type=click.Path(dir_okay=False), help="/proc/mounts, mountinfo or `mount` output."
)
@click.option(
    "--live",
    is_flag=True,
    help="Read this machine: containerd/runc versions (from their files, never run), its config, uname, /proc/mounts.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--fail-on", type=click.Choice(["warn", "fail"]), default=None, help="Exit 1 when a check has this status."
)
def command(
    config_path: str | None,
    containerd_version: str | None,
    kernel_version: str | None,
    runc_version: str | None,
    mounts_path: str | None,
    live: bool,
    output: str,
    fail_on: str | None,
) -> None:
    """Audit containerd config, versions and mounts against known PLEG-stall facts.

    Is overlay `volatile` supported (containerd >= 1.6.24 / 1.7.4 / 2.0, kernel >= 5.10),
    configured and in effect; are temp mounts safe; which known bugs apply to this
    containerd; is /var/lib/containerd on its own disk. Prints the exact config snippet for
    your config's schema with its risks. Never modifies anything.
    """
    refs: list[Ref] = []
    if containerd_version is not None:
        kb.ContainerdVersion.parse(containerd_version)  # UserError -> exit 2
        refs.append(Ref("--containerd-version", 0, containerd_version))
    if kernel_version is not None:
        kb.KernelVersion.parse(kernel_version)
        refs.append(Ref("--kernel-version", 0, kernel_version))
    inputs = CheckInputs(
        versions=Versions(kernel=kernel_version, containerd=containerd_version, runc=runc_version, refs=tuple(refs))
    )
    if config_path is not None:
        inputs.config = load_config(config_path)
    if mounts_path is not None:
        inputs.mounts = read_mounts(mounts_path)
    if live:
        read_live(inputs, want_config=config_path is None, want_mounts=mounts_path is None)
    if (
        not live
        and config_path is None
        and containerd_version is None
        and kernel_version is None
        and mounts_path is None
    ):
        raise UserError("nothing to check: give --config, --containerd-version, --kernel-version, --mounts or --live")
    report = build_report(inputs)
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_text(report, color=sys.stdout.isatty()), nl=False)
    level = report["worst"]
    if (fail_on == "warn" and level in (WARN, FAIL)) or (fail_on == "fail" and level == FAIL):
        raise click.exceptions.Exit(1)
