"""Group identical or similar goroutines (panicparse's buckets, with its similarity levels).

Buckets never span dumps (two processes, or two snapshots of one process, stay apart).
Grouping is a hash of `Goroutine.signature(level)`, so it is linear, not panicparse's
pairwise O(n^2); the pointer-insensitive level normalises each goroutine's arguments (one
string, `Goroutine.argtext`) with one regular-expression pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import attrgetter
from typing import Any

from plegdoctor.goroutines.flags import ELIDED, TRUNCATED
from plegdoctor.goroutines.model import Bucket, Dump, Goroutine, Similarity

_WAIT = attrgetter("wait_minutes")
_ID = attrgetter("id")
_LOCKED = attrgetter("locked")
_ARGTEXT = attrgetter("argtext")
_POINTER = re.compile(r"0x[0-9a-f]{6,}\??")
_HEX = re.compile(r"0x[0-9a-f]+\??")


def _key(g: Goroutine, level: Similarity) -> tuple[Any, ...]:
    created = g.created_by[0] if g.created_by else None
    flags = g.flags & (ELIDED | TRUNCATED)
    if level == Similarity.ANY_VALUE:
        return (g.state, id(g.stack), created, flags)
    if level == Similarity.ANY_POINTER:
        args = _POINTER.sub("*", g.argtext)
        return (g.state, id(g.stack), created, flags, args)
    if level == Similarity.EXACT_LINES:
        return (g.state, id(g.stack), created, flags, g.argtext)
    return (g.state, id(g.stack), created, flags, g.argtext, g.locked)


def bucketize(dumps: list[Dump], level: Similarity = Similarity.ANY_POINTER) -> list[Bucket]:
    """Buckets of all dumps, largest first (ties: longest wait, then dump order)."""
    out: list[Bucket] = []
    for di, dump in enumerate(dumps):
        gs = dump.goroutines
        if level == Similarity.ANY_POINTER:
            for members in _pointer_groups(gs):
                out.append(_make_bucket(di, members))
            continue
        groups: dict[tuple[Any, ...], list[Goroutine]] = {}
        for g in gs:
            k = _key(g, level)
            found = groups.get(k)
            if found is None:
                groups[k] = [g]
            else:
                found.append(g)
        for members in groups.values():
            out.append(_make_bucket(di, members))
    out.sort(key=lambda b: (-b.count, -(b.wait_max or -1), b.dump, b.sample.id))
    return out


def _pointer_groups(gs: tuple[Goroutine, ...]) -> Iterator[list[Goroutine]]:
    """Goroutines grouped at ANY_POINTER: same state, stack, creator and flags, and the same
    arguments once pointer-like words are masked (`_POINTER`, over `Goroutine.argtext`).

    Masking every goroutine is one regular-expression substitution each; in a large group of
    one stack most members differ from the first only in pointers, which `_same_as` tests
    with a match (no new string) before masking the rest."""
    coarse: dict[tuple[Any, ...], list[Goroutine]] = {}
    for g in gs:
        key = (g.state, id(g.stack), g.created_by[0] if g.created_by else None, g.flags & (ELIDED | TRUNCATED))
        found = coarse.get(key)
        if found is None:
            coarse[key] = [g]
        else:
            found.append(g)
    sub = _POINTER.sub
    for members in coarse.values():
        texts = list(map(_ARGTEXT, members))
        masked: Any = map(sub, repeat("*"), texts)
        if len(members) >= _MATCH_FROM:
            first = sub("*", texts[0])
            same = _same_as(texts[0], first) if len(members) >= _MATCH_FROM + 4 * first.count("*") else None
            if same is not None:
                oks = list(map(same, texts))
                if all(oks):
                    yield members
                    continue
                masked = (first if ok else sub("*", t) for t, ok in zip(texts, oks, strict=True))
        groups: dict[str, list[Goroutine]] = {}
        for g, m in zip(members, masked, strict=True):
            found = groups.get(m)
            if found is None:
                groups[m] = [g]
            else:
                found.append(g)
        yield from groups.values()


# members of a group from which compiling a match pays for itself: compiling costs about what
# 250 substitutions save, plus 4 per pointer word (measured); below it, masking is cheaper
_MATCH_FROM = 256
# a pointer word as _POINTER masks it, atomic: all its hex digits and its `?`, never fewer
_ATOMIC_POINTER = r"(?>0x[0-9a-f]{6,}\??)"


def _same_as(text: str, masked: str) -> Callable[[str], object] | None:
    """A test `t -> truthy` that holds exactly when `t` masks to `masked` (= `text` masked),
    or None when there is no such cheap test. The pattern is `masked` with each `*` a pointer
    word, matched atomically; a match then is the masking: no pointer word can start inside a
    literal piece (it would have been masked in `text`, or would run into the next pointer's
    `0x`). A `*` already in `text` would be taken for a pointer: no test then."""
    if "*" in text or len(masked) > 4096 or masked.count("*") > 256:
        return None
    return re.compile(_ATOMIC_POINTER.join(map(re.escape, masked.split("*")))).fullmatch


def _make_bucket(di: int, members: list[Goroutine]) -> Bucket:
    minutes = list(map(_WAIT, members))  # (the passes over members are C-level)
    waits = [m for m in minutes if m is not None]
    sample = members[0]
    if waits:
        sample = members[minutes.index(max(waits))]  # the first with the longest wait
    first_args = members[0].argtext
    return Bucket(
        dump=di,
        state=sample.state,
        ids=tuple(map(_ID, members)),
        wait_min=min(waits) if waits else None,
        wait_max=max(waits) if waits else None,
        locked=any(map(_LOCKED, members)),
        sample=sample,
        args_vary=any(map(first_args.__ne__, map(_ARGTEXT, members))),
    )


def display_args(bucket: Bucket, dump_goroutines: dict[int, Goroutine] | None = None) -> tuple[str, ...]:
    """Arguments as shown: values that differ between members become `*` (like panicparse's `#N`)."""
    if not bucket.args_vary:
        return bucket.sample.args
    return tuple(_HEX.sub(lambda m: m.group(0) if len(m.group(0)) < 8 else "*", a) for a in bucket.sample.args)


def minutes_text(b: Bucket) -> str:
    """` [N min]` or ` [N~M min]` after a bucket's state; "" when the dump printed no wait."""
    if b.wait_min is None:
        return ""
    if b.wait_min == b.wait_max:
        return f" [{b.wait_min} min]"
    return f" [{b.wait_min}~{b.wait_max} min]"
