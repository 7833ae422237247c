"""Parser registry: one module per evidence format, found by content (sniffing).

Each parser module named in `PARSERS` provides:

    KIND: str                       # the kind name users see and pass to --kind
    def sniff(lines: list[str]) -> float   # 0..1 confidence from the first lines
    def parse(source: Source, ctx: ParseContext) -> None

`sniff` gets the first lines of the decompressed input (at most 64 KiB). The kind with
the highest score above SNIFF_MIN wins. Adding a format = one module + one line here +
fixtures (tests/fixtures/<kind>/...).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# kind -> module. Order breaks ties (earlier wins).
PARSERS: dict[str, str] = {
    "goroutine-dump": "plegdoctor.parsers.goroutine_dump",
    "journal": "plegdoctor.parsers.logs.journal",
    "kubelet-log": "plegdoctor.parsers.logs.kubelet",
    "containerd-log": "plegdoctor.parsers.logs.containerd",
    "dockerd-log": "plegdoctor.parsers.logs.dockerd",
    "psi": "plegdoctor.parsers.psi",
    "diskstats": "plegdoctor.parsers.diskstats",
    "iostat": "plegdoctor.parsers.iostat",
    "meminfo": "plegdoctor.parsers.meminfo",
    "vmstat": "plegdoctor.parsers.vmstat",
    "mounts": "plegdoctor.parsers.mounts",
    "dmesg": "plegdoctor.parsers.dmesg",
    "terminal-session": "plegdoctor.parsers.terminal",
    "ps": "plegdoctor.parsers.ps",
    "top": "plegdoctor.parsers.top",
    "kube-events": "plegdoctor.parsers.kube_events",
    "strace": "plegdoctor.parsers.strace",
    "proc-stack": "plegdoctor.parsers.proc_stack",
    "containerd-config": "plegdoctor.parsers.runtime_config",
    "versions": "plegdoctor.parsers.versions",
    "prom-metrics": "plegdoctor.parsers.prom_text",
    "bundle-manifest": "plegdoctor.parsers.bundle_manifest",
}

SNIFF_MIN = 0.3
UNKNOWN = "unknown"


_AVAILABLE: tuple[tuple[tuple[str, str], ...], dict[str, ModuleType]] | None = None


def available() -> dict[str, ModuleType]:
    """Kinds whose parser module exists in this build (import errors are bugs: raise).
    Computed once per PARSERS table (sniff calls this for every input, and an archive
    can hold thousands)."""
    global _AVAILABLE
    key = tuple(PARSERS.items())
    if _AVAILABLE is not None and _AVAILABLE[0] == key:
        return dict(_AVAILABLE[1])
    out: dict[str, ModuleType] = {}
    for kind, modname in PARSERS.items():
        try:
            out[kind] = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
    _AVAILABLE = (key, out)
    return dict(out)


def known_kinds() -> set[str]:
    return set(available())


def get(kind: str) -> ModuleType:
    mod = available().get(kind)
    if mod is None:
        raise KeyError(kind)
    return mod


def sniff(head: bytes, exclude: frozenset[str] = frozenset()) -> tuple[str, float]:
    """Best (kind, score) for an input's first bytes; (`unknown`, 0) if none fits. Kinds in
    `exclude` are not tried (the terminal-session reader sniffs its blocks without itself)."""
    if not head:
        return UNKNOWN, 0.0
    cut = len(head) >= 64 * 1024  # the last line may be cut
    if b"\x00" in head:
        # NUL bytes: a binary file, or a log with some NUL-filled lines (a crash or a disk
        # full leaves zeroed blocks): sniff the lines without NUL if they are most of it.
        # The parser counts and warns the NUL lines it skips.
        raw_lines = head.split(b"\n")
        if cut:
            raw_lines = raw_lines[:-1]
        clean = [ln for ln in raw_lines if b"\x00" not in ln]
        if len(clean) < 2 or 2 * len(clean) < len(raw_lines) or 2 * sum(map(len, clean)) < len(head) - len(raw_lines):
            return UNKNOWN, 0.0
        lines = b"\n".join(clean).decode("utf-8", "replace").splitlines()
    else:
        lines = head.decode("utf-8", "replace").splitlines()
        if cut and lines:
            lines = lines[:-1]
    best, best_score = UNKNOWN, 0.0
    for kind, mod in available().items():
        if kind in exclude:
            continue
        try:
            score = float(mod.sniff(lines))
        except Exception:  # a sniffer bug must not take the whole run down
            score = 0.0
        if score > best_score:
            best, best_score = kind, score
    if best_score < SNIFF_MIN:
        return UNKNOWN, best_score
    return best, best_score
