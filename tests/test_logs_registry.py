"""The log-format registry (parsers/logs/registry.py): identifiers route lines to the
handler of their format, and a new format plugs in by its module and one FORMATS line."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from plegdoctor.evidence import Evidence, ParseContext
from plegdoctor.inputs import iter_sources
from plegdoctor.model import InputReport
from plegdoctor.parsers.logs import journal, registry
from plegdoctor.parsers.logs.registry import LogFormat, formats, process_of_ident
from plegdoctor.parsers.logs.scanner import TAG_IDENT, Needle
from plegdoctor.timeutil import TimeContext


@pytest.mark.parametrize(
    ("ident", "process"),
    [
        ("kubelet", "kubelet"),
        ("kubelet.service", "kubelet"),
        ("kubelet_init", "kubelet"),
        ("hyperkube", "kubelet"),
        ("containerd", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("dockerd", "dockerd"),
        ("docker", "dockerd"),
        ("kernel", "kernel"),
        ("systemd", None),
        ("containerdx", None),  # looks like containerd, is not
        ("dockerd-proxy", None),
    ],
)
def test_identifiers_pick_their_format(ident: str, process: str | None) -> None:
    assert process_of_ident(ident) == process


def test_every_format_declares_a_handler_and_one_ticks() -> None:
    fmts = formats()
    assert [f.process for f in fmts] == ["kubelet", "containerd", "dockerd", "kernel"]
    assert [f.process for f in fmts if f.tick_tag is not None] == ["kubelet"]
    tags = {n.tag for f in fmts for n in f.needles}
    assert all(0 <= t < 32 for t in tags)


SEEN: list[tuple[int, str, str, int | None]] = []


class _Recorder:
    """The handler of a test format: records what the engine feeds it (into SEEN)."""

    def __init__(self, ctx: ParseContext, path: str, resolver: Any) -> None:
        self.unparsed = 0

    def feed(self, lineno: int, prefix: str, msg: str, pid: int | None) -> None:
        SEEN.append((lineno, prefix, msg, pid))

    def finish(self) -> None:
        pass


def _parse_journal(path: Path) -> tuple[Evidence, ParseContext]:
    ev = Evidence()
    (src,) = list(iter_sources([str(path)]))
    ctx = ParseContext(ev, InputReport(src.display, journal.KIND), TimeContext(year=2023))
    journal.parse(src, ctx)
    return ev, ctx


JOURNAL = (
    "Jun 15 00:00:00.100000 node-7 kubelet[1679]: I0615 00:00:00.100000    1679 generic.go:191] "
    '"GenericPLEG: Relisting"\n'
    'Jun 15 00:00:00.200000 node-7 crio[900]: time="2023-06-15T00:00:00.2Z" level=info msg="Checking image"\n'
    "Jun 15 00:00:00.300000 node-7 criolike[901]: crio[ here is not its identifier\n"
    "Jun 15 00:00:01.100000 node-7 kubelet[1679]: I0615 00:00:01.100000    1679 generic.go:191] "
    '"GenericPLEG: Relisting"\n'
)


def test_a_new_format_is_one_module_and_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "journal.log"
    p.write_text(JOURNAL, encoding="utf-8")
    # before: the crio line is another unit's
    SEEN.clear()
    ev, ctx = _parse_journal(p)
    assert len(ev.relists) == 2 and SEEN == []

    mod = types.ModuleType("plegdoctor_test_crio_format")
    mod.FORMAT = LogFormat(  # type: ignore[attr-defined]
        process="crio",
        handler=_Recorder,
        idents=("crio",),
        needles=(Needle(b" crio[", TAG_IDENT),),
    )
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(registry, "FORMATS", [*registry.FORMATS, mod.__name__])
    assert process_of_ident("crio") == "crio"
    assert process_of_ident("criolike") is None
    ev, ctx = _parse_journal(p)
    # the crio line reached its handler, with its line number, prefix and pid; the
    # look-alike identifier did not, and the kubelet's ticks are still read
    assert SEEN == [
        (
            2,
            "Jun 15 00:00:00.200000 node-7 crio[900]: ",
            'time="2023-06-15T00:00:00.2Z" level=info msg="Checking image"',
            900,
        )
    ]
    assert len(ev.relists) == 2
    assert ctx.report.records == 4
    monkeypatch.undo()
    assert process_of_ident("crio") is None  # the table changed back: the cache follows it
