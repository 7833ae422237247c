"""Render a GoroutineAnalysis as text (compact, panicparse-like) or JSON
(`pleg-doctor/goroutines/v1`); the HTML viewer is goroutines/html.py (`render_html` is
re-exported here for older callers)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from plegdoctor.goroutines.buckets import display_args, minutes_text
from plegdoctor.goroutines.chains import chain_text
from plegdoctor.goroutines.flags import ELIDED, TRUNCATED
from plegdoctor.goroutines.gcpause import no_gc
from plegdoctor.goroutines.html import render_html
from plegdoctor.goroutines.model import Bucket, GoroutineAnalysis, Wait, short_func

SCHEMA = "pleg-doctor/goroutines/v1"
__all__ = ["SCHEMA", "analysis_json", "iter_json", "render_html", "render_json", "render_text"]


def _ids_text(ids: tuple[int, ...], limit: int = 12) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


_SHARED_MAX = 10_000  # distinct `waits_for` objects kept for sharing


class _WaitJson:
    """`waits[]` entries of the JSON document. The `waits_for` object of waits on the same
    thing is built once and shared (the objects are only read by the encoder)."""

    def __init__(self, a: GoroutineAnalysis) -> None:
        self.a = a
        self.waits_for: dict[tuple[Any, ...], dict[str, Any]] = {}

    @staticmethod
    def key(w: Wait) -> tuple[Any, ...]:
        return (str(w.kind), w.resource, w.holder, w.confidence, w.reason, w.syscall, w.call)

    def waits_for_of(self, w: Wait, key: tuple[Any, ...]) -> dict[str, Any]:
        wf = self.waits_for.get(key)
        if wf is None:
            holder = None
            if w.holder is not None:
                hd = self.a.dumps[w.holder[0]]
                holder = {"goroutine": w.holder[1], "process": hd.process, "pid": hd.pid, "dump": w.holder[0]}
            wf = {
                "kind": str(w.kind),
                "resource": w.resource,
                "holder": w.holder[1] if w.holder else None,
                "holder_detail": holder,
                "confidence": w.confidence,
                "reason": w.reason or None,
                "syscall": w.syscall,
                "call": w.call,
            }
            if len(self.waits_for) < _SHARED_MAX:
                self.waits_for[key] = wf
        return wf

    def __call__(self, w: Wait) -> dict[str, Any]:
        a = self.a
        d = a.dumps[w.dump]
        g = a.goroutine((w.dump, w.goroutine))
        return {
            "goroutine": w.goroutine,
            "dump": w.dump,
            "process": d.process,
            "pid": d.pid,
            "waits_for": self.waits_for_of(w, self.key(w)),
            "evidence": {"path": d.source, "line": g.line if g is not None else None},
        }


class _WaitBytes:
    """One `waits[]` entry encoded as `dumps(_WaitJson(a)(w))` encodes it (same keys in the
    same order, compact), from encoded pieces that repeat (the dump's process and path, the
    `waits_for` object): one bytes-format per wait instead of two dicts."""

    _FORMAT = b'{"goroutine":%d,"dump":%s,"process":%s,"pid":%s,"waits_for":%s,"evidence":{"path":%s,"line":%d}}'

    def __init__(self, a: GoroutineAnalysis, dumps: Callable[[Any], bytes]) -> None:
        self.a = a
        self.dumps = dumps
        self.objects = _WaitJson(a)
        self.per_dump = [(dumps(i), dumps(d.process), dumps(d.pid), dumps(d.source)) for i, d in enumerate(a.dumps)]
        self.encoded: dict[tuple[Any, ...], bytes] = {}  # Wait fields after (dump, goroutine) -> waits_for
        self.index = a.goroutine_index()

    def __call__(self, w: Wait) -> bytes:
        fields = w[2:]  # what `waits_for` is made of (and the lock identity)
        enc = self.encoded.get(fields)
        if enc is None:
            enc = self.dumps(self.objects.waits_for_of(w, self.objects.key(w)))
            if len(self.encoded) < _SHARED_MAX:
                self.encoded[fields] = enc
        g = self.index.get((w.dump, w.goroutine))
        if g is None or type(w.goroutine) is not int or type(g.line) is not int:
            return self.dumps(self.objects(w))  # (not seen: every wait is of a goroutine of the dumps)
        dump, process, pid, path = self.per_dump[w.dump]
        return self._FORMAT % (w.goroutine, dump, process, pid, enc, path, g.line)


def analysis_json(a: GoroutineAnalysis, max_waits: int | None = None) -> dict[str, Any]:
    dumps = a.dumps
    processes = [dict(d.to_json(), index=i) for i, d in enumerate(dumps)]
    wait_json = _WaitJson(a)
    waits_out = [wait_json(w) for w in (a.waits if max_waits is None else a.waits[:max_waits])]
    return {
        "schema": SCHEMA,
        "processes": processes,
        "goroutines": a.goroutine_count,
        "similarity": a.similarity.name.lower(),
        "problems": [
            {
                "path": d.source,
                "count": d.problem_count,
                "lines": [p.line for p in d.problems],
                "reasons": [p.reason for p in d.problems],
            }
            for d in dumps
            if d.problem_count
        ],
        "buckets": [
            dict(b.to_json(dumps[b.dump]), dump=b.dump, wait_kind=str(a.infos[(b.dump, b.sample.id)].kind))
            for b in a.buckets
        ],
        "waits": waits_out,
        "chains": [
            {
                "summary": chain_text(c),
                "blocked": c.blocked,
                "max_wait_minutes": c.max_wait_minutes,
                "score": c.score,
                "tags": sorted(c.tags),
                "links": [link.to_json() for link in c.links],
            }
            for c in a.chains
        ],
    }


def iter_json(a: GoroutineAnalysis, batch: int = 2000) -> Iterator[bytes]:
    """The `pleg-doctor/goroutines/v1` document as compact JSON pieces. The per-goroutine
    `waits` list is encoded a batch at a time, so peak memory does not hold 10^5 wait
    dicts at once (bench/bench_goroutines.py: ~45 MB less at 10^5 goroutines). orjson
    encodes the pieces (~7x faster than the stdlib); the stdlib stays the fallback."""
    dumps: Callable[[Any], bytes]
    try:
        import orjson

        dumps = orjson.dumps
    except ImportError:  # pragma: no cover - orjson is a declared dependency

        def dumps(obj: Any) -> bytes:
            return json.dumps(obj, separators=(",", ":")).encode()

    with no_gc():
        head = analysis_json(a, max_waits=0)
    yield b"{"
    for i, (key, value) in enumerate(head.items()):
        yield (b"," if i else b"") + dumps(key) + b":"
        if key != "waits":
            yield dumps(value)
            continue
        yield b"["
        wait_bytes = _WaitBytes(a, dumps)
        for start in range(0, len(a.waits), batch):
            with no_gc():
                part = b",".join(map(wait_bytes, a.waits[start : start + batch]))
            yield (b"," if start else b"") + part
        yield b"]"
    yield b"}\n"


def render_json(a: GoroutineAnalysis) -> bytes:
    """Compact JSON, whole (see iter_json to stream it)."""
    return b"".join(iter_json(a))


def _frame_rows(b: Bucket) -> Iterator[tuple[str, str, str]]:
    args = display_args(b)
    for loc, a in zip(b.sample.stack, args, strict=False):
        func = short_func(loc[0])
        pkg, _, name = func.partition(".")
        where = f"{loc[1].rsplit('/', 1)[-1]}:{loc[2]}" if loc[1] else "?"
        yield pkg, where, f"{name}({a})"


def render_text(a: GoroutineAnalysis, *, filter_re: re.Pattern[str] | None = None, min_wait: int | None = None) -> str:
    out: list[str] = []
    w = out.append
    total = a.goroutine_count
    w(f"{total} goroutines in {len(a.dumps)} dump(s)")
    for i, d in enumerate(a.dumps):
        when = d.dump_time.isoformat() if d.dump_time else "time unknown"
        extra = (
            f", {d.problem_count} unparsed line(s) at {', '.join(str(p.line) for p in d.problems[:8])}"
            if d.problem_count
            else ""
        )
        w(
            f"  [{i}] {d.label}: {len(d.goroutines)} goroutines, {d.framing}, {when}, "
            f"{d.source}:{d.first_line}-{d.last_line}" + (f", Go {d.go_version}" if d.go_version else "") + extra
        )
        for note in d.notes:
            w(f"      note: {note}")
    if a.chains:
        w("")
        w("Blocking chains (worst first):")
        for n, c in enumerate(a.chains[:10], 1):
            mw = f", up to {c.max_wait_minutes} min" if c.max_wait_minutes else ""
            w(f"{n}. {chain_text(c)}")
            w(f"   blocks {c.blocked} goroutine(s){mw}")
            for link in c.links:
                w(f"   - {link.detail} (confidence {link.confidence:.2f})")
                w(f"     at {link.evidence[-1].path}:{link.evidence[-1].line}")
    w("")
    w(f"Buckets ({len(a.buckets)}, similarity {a.similarity.name.lower()}):")
    shown = 0
    for b in a.buckets:
        d = a.dumps[b.dump]
        if min_wait is not None and (b.wait_max or 0) < min_wait:
            continue
        header = f"{b.state}{minutes_text(b)}"
        if (
            filter_re is not None
            and not filter_re.search(header)
            and not any(filter_re.search(loc[0]) for loc in b.sample.stack)
        ):
            continue
        shown += 1
        info = a.infos[(b.dump, b.sample.id)]
        flags = []
        if b.locked:
            flags.append("locked")
        if b.sample.flags & TRUNCATED:
            flags.append("truncated")
        if b.sample.flags & ELIDED:
            flags.append("elided")
        created = ""
        if b.sample.created_by:
            cb = b.sample.created_by
            created = f" [created by {short_func(cb[0])} @ {cb[1].rsplit('/', 1)[-1]}:{cb[2]}]"
        proc = f" {d.label}" if len(a.dumps) > 1 else ""
        flag_text = " " + " ".join(flags) if flags else ""
        w(f"{b.count}: {header}{proc} ({info.kind}){flag_text} ids {_ids_text(b.ids)}{created}")
        rows = list(_frame_rows(b))
        wp = max((len(r[0]) for r in rows), default=0)
        wl = max((len(r[1]) for r in rows), default=0)
        for pkg, where, call in rows:
            w(f"    {pkg:<{wp}} {where:<{wl}} {call}")
    if shown == 0:
        w("  (no bucket matches the filters)")
    return "\n".join(out) + "\n"
