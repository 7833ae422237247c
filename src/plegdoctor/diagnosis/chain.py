"""A root cause's chain: the symptom first, then its findings' chains from shallow to deep.

A chain step's place comes from its tags, in `LINK_RANKS` (first band that matches wins):
the kubelet's relist, the CRI call and status locks, the runtime's locks and shim calls, the
subsystem (runc, CNI, umount), the flush or network filesystem, the kernel, the node's
figures.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from plegdoctor.model import ChainLink, Finding

MAX_CHAIN = 12
SYMPTOM_CHAIN_RULES = ("PD101", "PD102")  # the relist gap, then PLEG unhealthy, open every chain


class LinkRank(msgspec.Struct, frozen=True):
    """A band of chain steps: those carrying any of `tags` or a tag starting with one of
    `prefixes`, or of one of `kinds`; `kubelet_only`: only steps of the kubelet."""

    rank: int
    tags: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()
    kubelet_only: bool = False

    def matches(self, link: ChainLink) -> bool:
        if self.kubelet_only and link.process != "kubelet":
            return False
        t = link.tags
        return bool(t & self.tags) or any(x.startswith(self.prefixes) for x in t) or link.kind in self.kinds


LINK_RANKS: tuple[LinkRank, ...] = (
    LinkRank(0, frozenset({"symptom", "kubelet-relist", "kubelet-pleg"}), kubelet_only=True),
    LinkRank(1, frozenset({"status-lock", "update-container-resources"}), ("cri:",)),
    LinkRank(
        2,
        frozenset({"task-exit", "bbolt-writer", "metadata-wlock", "dockerd-container-lock", "dockerd"}),
        ("ttrpc:", "shim:"),
    ),
    LinkRank(3, frozenset({"content-commit", "runc", "cni", "umount", "syncfs", "shim-init-mutex"})),
    LinkRank(4, frozenset({"fsync", "fdatasync", "nfs", "network-fs"})),
    LinkRank(5, frozenset({"netdev", "cgroup", "io-wait"}), kinds=frozenset({"kernel"})),
    LinkRank(6, kinds=frozenset({"pressure", "disk", "memory", "metrics"})),
)
DEFAULT_LINK_RANK = 3


def link_rank(link: ChainLink) -> int:
    return next((band.rank for band in LINK_RANKS if band.matches(link)), DEFAULT_LINK_RANK)


def _segments(findings: Iterable[Finding]) -> list[tuple[int, int, tuple[ChainLink, ...], bool]]:
    """(rank, order, links, is_goroutine_chain) per finding chain."""
    out = []
    for i, f in enumerate(findings):
        if f.chain is None or not f.chain.links:
            continue
        links = f.chain.links
        is_goroutine = any(lk.goroutine is not None for lk in links)
        out.append((link_rank(links[0]), i, links, is_goroutine))
    return out


def assemble_chain(symptom_links: list[ChainLink], own: list[Finding], folded: list[Finding]) -> tuple[ChainLink, ...]:
    """Symptom first, then goroutine chains and other steps from shallow to deep."""
    segs = _segments(own) + [(r, o + 1000, links, g) for r, o, links, g in _segments(folded)]
    # the longest goroutine chain of each starting rank first, then the rest
    segs.sort(key=lambda s: (s[0], not s[3], -len(s[2]), s[1]))
    out: list[ChainLink] = list(symptom_links[:1])
    seen: set[tuple[str, int | None, int | None, str]] = {_key(lk) for lk in out}
    covered_tags: set[str] = set()
    for _rank, _order, links, is_goroutine in segs:
        if not is_goroutine and links and all(lk.tags and lk.tags <= covered_tags for lk in links):
            continue  # a log step that a goroutine chain already shows
        for lk in links:
            if lk.goroutine is not None and any(
                (x.process, x.pid, x.goroutine) == (lk.process, lk.pid, lk.goroutine) for x in out
            ):
                continue
            k = _key(lk)
            if k in seen:
                continue
            seen.add(k)
            out.append(lk)
            covered_tags |= set(lk.tags)
    if len(out) > MAX_CHAIN:
        out = [*out[: MAX_CHAIN - 1], out[-1]]
    return tuple(out)


def _key(lk: ChainLink) -> tuple[str, int | None, int | None, str]:
    return (lk.process, lk.pid, lk.goroutine, lk.detail if lk.goroutine is None else "")


def symptom_links(symptoms: list[Finding]) -> list[ChainLink]:
    """The steps of the symptom findings that open every chain (the relist gap first)."""
    out: list[ChainLink] = []
    for code in SYMPTOM_CHAIN_RULES:
        for f in symptoms:
            if f.code == code and f.chain is not None:
                out.extend(f.chain.links)
    return out
