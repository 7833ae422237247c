"""Group identical or similar goroutines (panicparse's buckets, with its similarity levels).

Buckets never span dumps (two processes, or two snapshots of one process, stay apart).
Grouping is a hash of `Goroutine.signature(level)`, so it is linear, not panicparse's
pairwise O(n^2); the pointer-insensitive level normalises each goroutine's arguments with
one regular-expression pass over their joined text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from plegdoctor.goroutines.model import ELIDED, TRUNCATED, Dump, Frame, Goroutine, Similarity

_POINTER = re.compile(r"0x[0-9a-f]{6,}\??")
_HEX = re.compile(r"0x[0-9a-f]+\??")
_SEP = "\x1f"  # between the arguments of one goroutine (never in dump text)
_GSEP = "\x1e"  # between goroutines


@dataclass(frozen=True, slots=True)
class Bucket:
    """Goroutines of one dump that share a signature. `sample` is the goroutine with the
    longest wait (its frames and arguments are what the bucket shows)."""

    dump: int  # index into the analysed dumps
    state: str
    ids: tuple[int, ...]
    wait_min: int | None
    wait_max: int | None
    locked: bool
    sample: Goroutine
    args_vary: bool  # some argument values differ between members

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def frames(self) -> tuple[Frame, ...]:
        return self.sample.frames

    def to_json(self, dump: Dump) -> dict[str, Any]:
        g = self.sample
        return {
            "process": dump.process,
            "pid": dump.pid,
            "sandbox": dump.sandbox,
            "state": self.state,
            "count": self.count,
            "ids": list(self.ids),
            "wait_minutes": [self.wait_min, self.wait_max],
            "locked": self.locked,
            "truncated": bool(g.flags & TRUNCATED),
            "elided": bool(g.flags & ELIDED),
            "created_by": (
                {"func": g.created_by[0], "file": g.created_by[1], "line": g.created_by[2]} if g.created_by else None
            ),
            "frames": [
                {"func": loc[0], "args": a, "file": loc[1], "line": loc[2]}
                for loc, a in zip(g.stack, g.args, strict=False)
            ],
            "evidence": {"path": dump.source, "line": g.line},
        }


def _key(g: Goroutine, level: Similarity) -> tuple[Any, ...]:
    created = g.created_by[0] if g.created_by else None
    flags = g.flags & (ELIDED | TRUNCATED)
    if level == Similarity.ANY_VALUE:
        return (g.state, id(g.stack), created, flags)
    if level == Similarity.ANY_POINTER:
        args = _POINTER.sub("*", _SEP.join(g.args))
        return (g.state, id(g.stack), created, flags, args)
    if level == Similarity.EXACT_LINES:
        return (g.state, id(g.stack), created, flags, g.args)
    return (g.state, id(g.stack), created, flags, g.args, g.locked)


def bucketize(dumps: list[Dump], level: Similarity = Similarity.ANY_POINTER) -> list[Bucket]:
    """Buckets of all dumps, largest first (ties: longest wait, then dump order)."""
    out: list[Bucket] = []
    for di, dump in enumerate(dumps):
        groups: dict[tuple[Any, ...], list[Goroutine]] = {}
        gs = dump.goroutines
        if level == Similarity.ANY_POINTER:
            # one regular-expression pass over every goroutine's arguments at once
            joined = _GSEP.join([_SEP.join(g.args) for g in gs])
            norms = _POINTER.sub("*", joined).split(_GSEP)
            keys: Any = (
                (g.state, id(g.stack), g.created_by[0] if g.created_by else None, g.flags & (ELIDED | TRUNCATED), n)
                for g, n in zip(gs, norms, strict=True)
            )
        else:
            keys = (_key(g, level) for g in gs)
        for g, k in zip(gs, keys, strict=True):
            members = groups.get(k)
            if members is None:
                groups[k] = [g]
            else:
                members.append(g)
        for members in groups.values():
            out.append(_make_bucket(di, members))
    out.sort(key=lambda b: (-b.count, -(b.wait_max or -1), b.dump, b.sample.id))
    return out


def _make_bucket(di: int, members: list[Goroutine]) -> Bucket:
    waits = [g.wait_minutes for g in members if g.wait_minutes is not None]
    sample = members[0]
    if waits:
        best = max(waits)
        for g in members:
            if g.wait_minutes == best:
                sample = g
                break
    first_args = members[0].args
    vary = any(g.args != first_args for g in members)
    return Bucket(
        dump=di,
        state=sample.state,
        ids=tuple(g.id for g in members),
        wait_min=min(waits) if waits else None,
        wait_max=max(waits) if waits else None,
        locked=any(g.locked for g in members),
        sample=sample,
        args_vary=vary,
    )


def display_args(bucket: Bucket, dump_goroutines: dict[int, Goroutine] | None = None) -> tuple[str, ...]:
    """Arguments as shown: values that differ between members become `*` (like panicparse's `#N`)."""
    if not bucket.args_vary:
        return bucket.sample.args
    return tuple(_HEX.sub(lambda m: m.group(0) if len(m.group(0)) < 8 else "*", a) for a in bucket.sample.args)
