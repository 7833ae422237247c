"""Relist ticks of the kubelet handler: the hot path of a kubelet log (one line a second).

`RelistTicks` is the part of `kubelet.KubeletHandler` that puts `GenericPLEG: Relisting`
lines into the RelistSeries: one line at a time (`tick_fast`) or a batch from the scanner
(`ticks`), keeping the text only of ticks that border a long interval.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from plegdoctor.model import quote
from plegdoctor.parsers.logs.lines import count_sub as _count
from plegdoctor.parsers.logs.lines import line_from as _line

if TYPE_CHECKING:
    from plegdoctor.evidence import RelistSeries
    from plegdoctor.parsers.logs.common import StampResolver

KEEP_TEXT_INTERVAL = 1.5  # keep the text of ticks that border an interval at least this long

_STAMP = struct.Struct("11sx9sc")  # `Lmmdd hh:mm` `:` `ss.uuuuuu` ` ` of a klog stamp
_TICK_STAMP = re.compile(rb"[IWEF](\d{4} \d\d):(\d\d):(\d\d\.\d{6}) ")


class RelistTicks:
    """Relist ticks into `series` (see the module docstring); needs `resolver`."""

    resolver: StampResolver

    def init_ticks(self, series: RelistSeries, path: str) -> None:
        self.series = series
        self.src_id = series.source_id(path)
        self.last_tick_ts = -1.0
        self.last_tick_text: bytes | None = None
        self.first_tick_text: bytes | None = None  # of the tick this handler put into an empty series
        self._hour_cache: dict[bytes, float] = {}
        self._minute_cache: dict[bytes, float] = {}  # b"I0615 00:00" -> epoch of that minute
        self._ts_append = series.ts.append
        self._src_append = series.src.append
        self._line_append = series.line.append

    def tick_fast(self, lineno: int, raw: bytes) -> bool:
        """A `GenericPLEG: Relisting` line; False if the fast path cannot read it.

        The klog stamp is matched on bytes right after the journald frame (or at the line
        start), the epoch of its local hour is cached by the raw `MMDD hh` bytes, and the
        tick goes straight into the RelistSeries arrays. It also fills the minute cache
        that `ticks` reads."""
        i = raw.find(b"]: ")
        m = _TICK_STAMP.match(raw, i + 3) if i != -1 else None
        if m is None:
            m = _TICK_STAMP.match(raw)
            if m is None:
                return False
        hour_key, minute, sec = m.groups()
        base = self._hour_cache.get(hour_key)
        if base is None:
            base = self._hour_base(hour_key)
            if base is None:
                return False
        minute_base = base + int(minute) * 60
        self._minute_cache[raw[m.start() : m.start() + 11]] = minute_base
        ts = minute_base + float(sec)
        last = self.last_tick_ts
        if last >= 0 and (ts - last >= KEEP_TEXT_INTERVAL or last - ts >= KEEP_TEXT_INTERVAL):
            self._add_tick(ts, lineno, raw)
            return True
        if not len(self.series):
            self.first_tick_text = raw
        self._ts_append(ts)
        self._src_append(self.src_id)
        self._line_append(lineno)
        self.last_tick_ts = ts
        self.last_tick_text = raw
        return True

    def ticks(
        self, buf: bytes, ends: list[int], pos: int, lineno: int, slow: Callable[[int, bytes], None]
    ) -> tuple[int, int]:
        """A batch of relist lines from the scanner (see LineScanner.scan, `on_ticks`):
        `ends` = where the needle ends in each, `lineno` = the lines ending before `pos`;
        returns that pair for the last tick. This runs once per second of log, so it is
        written for speed: newlines are counted from tick to tick, the 22-byte klog stamp
        `Lmmdd hh:mm:ss.uuuuuu ` is sliced at a fixed place (after the first `]: ` of the
        line, the journald frame, or at the line start), its `Lmmdd hh:mm` part looked up in
        a cache of minute epochs (filled by `tick_fast` from validated stamps) and the
        seconds added. A line the cache does not know, or that is not shaped like that, goes
        to `slow(lineno, line)`, in order. Line ends are only looked for when a text is kept."""
        cache = self._minute_cache
        count = _count
        find = buf.find
        rfind = buf.rfind
        stamp = _STAMP.unpack_from
        ts_append = self._ts_append
        src_append = self._src_append
        line_append = self._line_append
        src_id = self.src_id
        keep = KEEP_TEXT_INTERVAL
        last = self.last_tick_ts
        prev_s = prev_to = -1  # the previous tick, while it is in buf and its text not taken
        empty = not len(self.series)
        for to in ends:
            nl = count(buf, b"\n", pos, to)
            if not nl and pos and buf[pos - 1] != 10:
                continue  # a second needle in the line of the previous one
            lineno += nl
            pos = to
            s = rfind(b"\n", 0, to) + 1
            p = find(b"]: ", s, to)
            if p != -1:
                p += 3
            elif find(b"]: ", to, find(b"\n", to)) == -1:
                p = s  # no journald frame: the stamp starts the line
            try:
                if p < 0 or p + 22 > to:  # the stamp and the space after it before the needle
                    raise ValueError
                # b"I0615 00:00", b"ss.uuuuuu", b" " (bytes: buf may be a bytearray)
                key, secs, space = stamp(buf, p)
                base = cache.get(key)
                if base is None or secs[2] != 46 or space != b" " or not (secs[:2] + secs[3:]).isdigit():
                    raise ValueError  # `ss.uuuuuu`: what the regex path reads (float() takes "1e999")
                ts = base + float(secs)
            except ValueError:
                self.last_tick_ts = last
                if prev_s >= 0:
                    self.last_tick_text = _line(buf, prev_s, prev_to)
                slow(lineno + 1, _line(buf, s, to))
                last = self.last_tick_ts
                prev_s = -1
                continue
            if last >= 0 and not -keep < ts - last < keep:
                self.last_tick_ts = last
                if prev_s >= 0:
                    self.last_tick_text = _line(buf, prev_s, prev_to)
                self._add_tick(ts, lineno + 1, _line(buf, s, to))
                last = ts
                prev_s = -1
                continue
            ts_append(ts)
            src_append(src_id)
            line_append(lineno + 1)
            last = ts
            prev_s = s
            prev_to = to
            if empty:
                self.first_tick_text = _line(buf, s, to)
                empty = False
        self.last_tick_ts = last
        if prev_s >= 0:
            self.last_tick_text = _line(buf, prev_s, prev_to)
        return pos, lineno

    def _hour_base(self, hour_key: bytes) -> float | None:
        shift = self.resolver.shift
        base = self.resolver.epoch(int(hour_key[0:2]), int(hour_key[2:4]), int(hour_key[5:7]), 0, 0, 0)
        if self.resolver.shift != shift:
            self._hour_cache.clear()  # year rollover: cached hours belong to the old year
            self._minute_cache.clear()
        if base is not None:
            self._hour_cache[hour_key] = base
        return base

    def _add_tick(self, ts: float, lineno: int, raw: bytes | str) -> None:
        series = self.series
        prev = len(series) - 1
        if self.last_tick_ts >= 0 and abs(ts - self.last_tick_ts) >= KEEP_TEXT_INTERVAL:
            if prev >= 0 and prev not in series.texts and self.last_tick_text is not None:
                series.keep_text(prev, _text(self.last_tick_text))
            series.append(ts, self.src_id, lineno, _text(raw))
        else:
            series.append(ts, self.src_id, lineno)
        self.last_tick_ts = ts
        self.last_tick_text = raw if isinstance(raw, bytes) else raw.encode()

    def finish_tick_text(self) -> None:
        """Keep the text of the latest tick (it borders a long interval)."""
        last = len(self.series) - 1
        if last >= 0 and self.last_tick_text is not None and last not in self.series.texts:
            self.series.keep_text(last, _text(self.last_tick_text))


def _text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return quote(raw)
    return quote(raw[:400].decode("utf-8", "replace"))
