"""The sniffers' early exits (`_cannot_score`) are exact: with them, every sniffer scores
every input as it does with them disabled (each exit patched to always-False), over every
fixture and corpus file and over mixes of their lines. The exits must also fire (on some
inputs they answer True) and matter (an exit patched to always-True changes some score),
else the comparison would prove nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from plegdoctor import parsers

TESTS = Path(__file__).resolve().parent
HEAD = 64 * 1024

WITH_EXITS = {
    "goroutine-dump",
    "psi",
    "diskstats",
    "meminfo",
    "vmstat",
    "mounts",
    "dmesg",
    "top",
    "kube-events",
    "strace",
    "proc-stack",
    "containerd-config",
    "prom-metrics",
}


def exit_modules() -> dict[str, ModuleType]:
    return {k: m for k, m in parsers.available().items() if hasattr(m, "_cannot_score")}


@contextmanager
def exits_replaced(fake: Callable[[list[str]], bool]) -> Iterator[None]:
    mods = exit_modules()
    saved = {k: m._cannot_score for k, m in mods.items()}
    try:
        for m in mods.values():
            m._cannot_score = fake
        yield
    finally:
        for k, m in mods.items():
            m._cannot_score = saved[k]


def _never(lines: list[str]) -> bool:
    return False


def _always(lines: list[str]) -> bool:
    return True


@cache
def input_heads() -> tuple[tuple[str, bytes], ...]:
    out: list[tuple[str, bytes]] = []
    for root in (TESTS / "fixtures", TESTS / "corpus"):
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    with path.open("rb") as f:
                        out.append((str(path.relative_to(TESTS)), f.read(HEAD)))
    return tuple(out)


def sniff_lines(head: bytes) -> list[str]:
    """The lines `parsers.sniff` hands the sniffers (no-NUL heads: the common case)."""
    lines = head.decode("utf-8", "replace").splitlines()
    return lines[:-1] if len(head) >= HEAD and lines else lines


def scores(lines: list[str]) -> dict[str, float | str]:
    """Each exit-bearing sniffer's score (or the exception it raises)."""
    out: dict[str, float | str] = {}
    for kind, mod in exit_modules().items():
        try:
            out[kind] = float(mod.sniff(lines))
        except Exception as exc:
            out[kind] = type(exc).__name__
    return out


def test_the_exits_are_where_expected() -> None:
    assert set(exit_modules()) == WITH_EXITS


def test_inputs_are_there() -> None:
    assert len(input_heads()) > 100


def test_fixtures_and_corpus_sniff_as_without_exits() -> None:
    for name, head in input_heads():
        got = parsers.sniff(head)
        got_scores = scores(sniff_lines(head))
        with exits_replaced(_never):
            want = parsers.sniff(head)
            want_scores = scores(sniff_lines(head))
        assert got == want, name
        assert got_scores == want_scores, name


def test_each_exit_fires_and_matters() -> None:
    """Each exit answers True on some input (so it is exercised) and the inputs include,
    for each exit-bearing sniffer, one it scores (so an exit that always answered True
    would fail the comparison above)."""
    fired = {kind: 0 for kind in WITH_EXITS}
    scored = {kind: 0 for kind in WITH_EXITS}
    for _, head in input_heads():
        lines = sniff_lines(head)
        for kind, mod in exit_modules().items():
            fired[kind] += bool(mod._cannot_score(lines))
        with exits_replaced(_never):
            ref = scores(lines)
        with exits_replaced(_always):
            broken = scores(lines)
        for kind in WITH_EXITS:
            scored[kind] += ref[kind] != broken[kind]
    assert all(fired.values()), fired
    assert all(scored.values()), scored


@cache
def pool() -> tuple[str, ...]:
    """Lines of every fixture (cut to 512 characters), a few of each file."""
    out: list[str] = []
    for _, head in input_heads():
        lines = [ln[:512] for ln in sniff_lines(head)]
        out.extend(lines[:40])
    return tuple(out)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mixed_lines_sniff_as_without_exits(data: st.DataObject) -> None:
    picked = data.draw(st.lists(st.sampled_from(pool()), min_size=1, max_size=60))
    extra = data.draw(st.lists(st.text(alphabet=" \t[]<>{}=():#-0123456789abzJ.go", max_size=30), max_size=5))
    lines = picked + extra
    head = "\n".join(lines).encode()
    got, got_scores = parsers.sniff(head), scores(sniff_lines(head))
    with exits_replaced(_never):
        want, want_scores = parsers.sniff(head), scores(sniff_lines(head))
    assert got == want
    assert got_scores == want_scores
