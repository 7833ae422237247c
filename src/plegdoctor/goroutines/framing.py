"""Framings of a goroutine dump -> canonical lines for the scanner (scan.py).

- raw `runtime.Stack` text: containerd's SIGUSR1 file, dockerd's `goroutine-stacks-<ts>.log`,
  `pprof/goroutine?debug=2`, panic / fatal error / SIGQUIT output (the fast path: `looks_raw`);
- `=== BEGIN goroutine stack dump ===` / `=== END ... ===` markers (each pair is one dump);
- logrus one-line dumps, `msg="=== BEGIN goroutine stack dump ===\\ngoroutine 1 ..."` with
  Go-quoted escapes (gostrings.go_unquote) and the shim's fields `namespace= path= pid=
  runtime=` after the message (shim pid and sandbox id come from them); `time=` gives the
  dump time; one-line dumps journald cut into 48K pieces are re-joined (a piece without
  `time=` continues the open message of its process);
- JSON-wrapped lines: containerd's JSON log format (`{"msg": "...", "time": ...}`) and
  `journalctl -o json` (`MESSAGE`, `_PID`, `SYSLOG_IDENTIFIER`, `__REALTIME_TIMESTAMP`; a
  `null` MESSAGE, journald's >4096-byte rule without `--all`, is reported);
- journald/syslog prefixes (`Nov 28 14:18:58 host containerd[2206]: ...`, `short-iso`,
  `<30>` priorities) and time-of-day prefixes with a pid (`15:20:23 dockerd[1748]: `: no
  date, so no dump time): each (identifier, pid) is its own stream and dump;
- anything else is pasted text (pasted.py).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from msgspec.structs import replace

from plegdoctor.goroutines.builder import Caches, DumpMeta
from plegdoctor.goroutines.gostrings import closing_quote, go_unquote
from plegdoctor.goroutines.lines import END_MARK, small_int
from plegdoctor.goroutines.model import CONTAINERD, SHIM, UNKNOWN_PROCESS, Dump
from plegdoctor.goroutines.names import process_of_ident
from plegdoctor.goroutines.pasted import Stream, canonical_into, flush_held
from plegdoctor.goroutines.prefixes import JOURNAL_PREFIX as _JOURNAL_PREFIX
from plegdoctor.goroutines.prefixes import TOD_PREFIX as _TOD_PREFIX
from plegdoctor.goroutines.prefixes import unglue_fence as _unglue_fence
from plegdoctor.goroutines.scan import Scanner

_MONTHS = {
    m: i + 1 for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
}


# a key starts where a word starts (a search from every character of a long word would be
# quadratic); possessive runs (the alternatives never overlap)
_LOGRUS_FIELD = re.compile(r'(?<!\w)(\w++)=("(?:[^"\\]++|\\.)*+"|\S++)')


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    v = value.strip()
    try:
        if v.endswith("Z"):
            v = v[:-1] + "+00:00"
        # Python < 3.11 limits fractions to 6 digits; logrus prints 9
        m = re.match(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(\.\d+)?(.*)$", v)
        if m:
            frac = (m.group(2) or "")[:7]
            v = m.group(1) + frac + m.group(3)
        ts = datetime.fromisoformat(v)
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def looks_raw(lines: list[str]) -> bool:
    """True when `lines` are plain runtime.Stack text (the fast path applies)."""
    headers = 0
    for i, line in enumerate(lines[:400]):
        if line.startswith("goroutine ") and line.endswith("]:"):
            headers += 1
            if i + 2 < len(lines) and lines[i + 1] and not lines[i + 2].startswith("\t") and lines[i + 2]:
                return False
            if i + 2 < len(lines) and not lines[i + 1] and lines[i + 2] and not lines[i + 2].startswith("goroutine "):
                return False  # double-spaced
            continue
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\r" or line.endswith("\r"):
            return False
        if "](" in line or "&lt;" in line or "&gt;" in line or "&amp;" in line or "&#" in line or "&quot;" in line:
            return False
        if "goroutine " in line and (line.endswith("]:") or "\\n" in line):
            return False
        if c == "{" or line.startswith("time=") or _JOURNAL_PREFIX.match(line):
            return False
        if line.startswith(("#\t0x", "# labels:")) or (c.isdigit() and (" @ 0x" in line or _TOD_PREFIX.match(line))):
            return False  # pprof debug=1 records, time-of-day prefixes
    return headers > 0


def with_note(d: Dump, note: str) -> Dump:
    return replace(d, notes=(*d.notes, note))


class Framer:
    """Routes input lines to assemblers, undoing framings on the way."""

    def __init__(
        self,
        source: str,
        meta: DumpMeta,
        explicit: bool,
        time_year: int | None = None,
    ) -> None:
        self.source = source
        self.meta = meta
        self.explicit = explicit
        self.caches = Caches()
        self.out: list[Dump] = []
        self.streams: dict[Any, Stream] = {}
        self.year = time_year
        self.nulls = 0
        self.main = self._stream(None)

    def _stream(self, key: Any, meta: DumpMeta | None = None, explicit: bool | None = None) -> Stream:
        st = self.streams.get(key)
        if st is None:
            asm = Scanner(
                self.source,
                meta or self.meta,
                self.caches,
                self.out,
                self.explicit if explicit is None else explicit,
            )
            st = Stream(asm)
            self.streams[key] = st
        return st

    # -- raw fast path

    def feed_raw(self, lines: list[str], base: int) -> None:
        self.main.asm.scan(lines, base)

    # -- generic path

    def feed_line(self, lineno: int, text: str) -> None:
        if text.endswith("\r"):
            text = text[:-1]
        if text[:3] in ("```", "~~~"):
            text = _unglue_fence(text)
        key: Any = None
        meta = self.meta
        c = text[:1]
        if c and (c in "JFMASOND<" or c.isdigit()):
            m = _JOURNAL_PREFIX.match(text)
            if m is None and c.isdigit():
                m = _TOD_PREFIX.match(text)
            if m is not None:
                ident = m.group("ident")
                pid = int(m.group("pid")) if m.group("pid") else None
                key = (ident, pid)
                text = text[m.end() :]
                st = self.streams.get(key)
                if st is None:
                    proc = process_of_ident(ident)
                    ts = self._prefix_time(m)
                    pmeta = meta.copy(
                        process=proc or meta.process,
                        pid=pid if proc else meta.pid,
                        framing="journald",
                        process_source="journald prefix" if proc else meta.process_source,
                        dump_time=ts or meta.dump_time,
                    )
                    self._stream(key, pmeta, explicit=False if proc else None)
                else:
                    if st.asm.g is None and not st.asm.goroutines:
                        ts = self._prefix_time(m)
                        if ts is not None:
                            st.asm.meta = st.asm.meta.copy(dump_time=ts)
        st = self.streams[key] if key is not None else self.main
        # a one-line dump cut into pieces by journald continues here
        if st.partial is not None:
            if text.startswith("time=") or text.startswith("{"):
                self._close_partial(st, cut=True)
            else:
                st.partial.append(text)
                if END_MARK in text or self._closed(text):
                    self._close_partial(st)
                return
        if text[:1] == "{" and ("goroutine" in text or '"MESSAGE"' in text) and self._json_line(lineno, text, st):
            return
        if "goroutine " in text and "\\n" in text and self._logrus_line(lineno, text, st):
            return
        canonical_into(lineno, text, st)

    def _prefix_time(self, m: re.Match[str]) -> datetime | None:
        if m.re is _TOD_PREFIX:
            return None  # a time of day without a date: no dump time is better than a wrong one
        if m.group("iso"):
            return _parse_time(m.group("iso"))
        mon = _MONTHS.get(m.group("mon") or "")
        if mon is None:
            return None
        year = self.year or (self.meta.dump_time.year if self.meta.dump_time else datetime.now(UTC).year)
        try:
            h, mi, s = (int(x) for x in m.group("hms").split(":"))
            frac = m.group("frac") or "0"
            micro = int((frac + "000000")[:6])
            return datetime(year, mon, int(m.group("day")), h, mi, s, micro, tzinfo=UTC)
        except ValueError:
            return None

    @staticmethod
    def _closed(text: str) -> bool:
        # the closing quote of a logrus msg: `"` not escaped, followed by a space or end
        return text.rstrip().endswith(END_MARK + '"')

    def _json_line(self, lineno: int, text: str, st: Stream) -> bool:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return False
        if not isinstance(obj, dict):
            return False
        if "MESSAGE" in obj:
            msg = obj.get("MESSAGE")
            if msg is None:
                self.nulls += 1
                return True
            if isinstance(msg, list):
                msg = bytes(x for x in msg if isinstance(x, int) and 0 <= x < 256).decode("utf-8", "replace")
            ident = obj.get("SYSLOG_IDENTIFIER") or obj.get("_COMM")
            pid_s = obj.get("_PID") or obj.get("SYSLOG_PID")
            pid = small_int(pid_s) if isinstance(pid_s, str) else None
            key = (ident, pid)
            ts = None
            rt = obj.get("__REALTIME_TIMESTAMP")
            usec = small_int(rt) if isinstance(rt, str) else None
            if usec is not None:
                try:
                    ts = datetime.fromtimestamp(usec / 1e6, UTC)
                except (OverflowError, OSError, ValueError):
                    ts = None
            proc = process_of_ident(str(ident or ""))
            sub = self.streams.get(key)
            if sub is None:
                meta = self.meta.copy(
                    process=proc or self.meta.process,
                    pid=pid if proc else self.meta.pid,
                    framing="journald-json",
                    process_source="journald fields" if proc else self.meta.process_source,
                    dump_time=ts or self.meta.dump_time,
                )
                sub = self._stream(key, meta, explicit=False if proc else None)
            elif ts is not None and sub.asm.g is None:
                sub.asm.meta = sub.asm.meta.copy(dump_time=ts)
            if not isinstance(msg, str):
                return True
            for part in msg.split("\n"):
                self._route_text(lineno, part, sub)
            return True
        msg = obj.get("msg")
        if not isinstance(msg, str) or "goroutine " not in msg:
            return False
        when = _parse_time(str(obj.get("time") or "")) or st.asm.meta.dump_time
        meta = st.asm.meta.copy(framing="json", dump_time=when)
        fields = {k: str(v) for k, v in obj.items() if k not in ("msg", "time", "level")}
        self._one_line_dump(lineno, msg, fields, meta, st)
        return True

    def _route_text(self, lineno: int, text: str, st: Stream) -> None:
        """A line of a journald JSON MESSAGE: may be a logrus line or a raw dump line."""
        if st.partial is not None:
            if text.startswith("time="):
                self._close_partial(st, cut=True)
            else:
                st.partial.append(text)
                if END_MARK in text or self._closed(text):
                    self._close_partial(st)
                return
        if "goroutine " in text and "\\n" in text and self._logrus_line(lineno, text, st):
            return
        canonical_into(lineno, text, st)

    def _logrus_line(self, lineno: int, text: str, st: Stream) -> bool:
        start = text.find('msg="')
        if start < 0:
            return False
        head = text[:start]
        body_start = start + 5
        end = closing_quote(text, body_start)
        meta = st.asm.meta.copy(framing="logline")
        tm = re.search(r'time="([^"]+)"', head)
        if tm:
            meta.dump_time = _parse_time(tm.group(1)) or meta.dump_time
        if end < 0:
            # cut by journald (48K pieces): collect until the closing quote
            st.partial = [text[body_start:]]
            st.partial_ln = lineno
            st.partial_meta = meta
            return True
        fields = {k: v for k, v in _LOGRUS_FIELD.findall(text[end + 1 :])}
        self._one_line_dump(lineno, go_unquote(text[body_start:end]), fields, meta, st)
        return True

    def _close_partial(self, st: Stream, cut: bool = False) -> None:
        pieces = st.partial or []
        st.partial = None
        joined = "".join(pieces)
        meta = st.partial_meta or st.asm.meta
        end = closing_quote(joined, 0)
        fields: dict[str, str] = {}
        if end >= 0:
            fields = {k: v for k, v in _LOGRUS_FIELD.findall(joined[end + 1 :])}
            joined = joined[:end]
        self._one_line_dump(st.partial_ln, go_unquote(joined), fields, meta, st)
        if len(pieces) > 1:
            self.out[-1:] = [with_note(d, f"re-joined from {len(pieces)} journald pieces") for d in self.out[-1:]]

    def _one_line_dump(self, lineno: int, text: str, fields: dict[str, str], meta: DumpMeta, st: Stream) -> None:
        fields = {k: (go_unquote(v[1:-1]) if v.startswith('"') else v) for k, v in fields.items()}
        explicit = st.asm.explicit
        pid_s = fields.get("pid", "")
        if fields.get("runtime", "").startswith("io.containerd.runc") or (pid_s and "path" in fields):
            meta.process = SHIM
            meta.process_source = "log fields"
            explicit = True
        if small_int(pid_s) is not None:
            meta.pid = small_int(pid_s)
        if "path" in fields:
            meta.sandbox = os.path.basename(fields["path"].rstrip("/")) or None
        if "namespace" in fields:
            meta.namespace = fields["namespace"]
        if meta.process is None and not explicit:
            meta.process = CONTAINERD  # containerd logs its own dump without pid/path fields
            meta.process_source = "log line without shim fields"
        asm = Scanner(self.source, meta, self.caches, self.out, explicit)
        lines = text.split("\n")
        if looks_raw(lines):
            asm.scan(lines, 0, lineno)
        else:
            sub = Stream(asm)
            for line in lines:
                canonical_into(lineno, line, sub, one_line=True)
            flush_held(sub)
        asm.finish()

    def finish(self) -> list[Dump]:
        for st in list(self.streams.values()):
            if st.partial is not None:
                self._close_partial(st, cut=True)
            flush_held(st)
            st.asm.finish()
        if self.nulls:
            self.out.append(
                Dump(
                    source=self.source,
                    process=UNKNOWN_PROCESS,
                    pid=None,
                    goroutines=(),
                    first_line=0,
                    last_line=0,
                    framing="journald-json",
                    notes=(
                        f"{self.nulls} journal entries have MESSAGE null (longer than 4096 bytes): "
                        "export with `journalctl -o json --all`",
                    ),
                )
            )
        return self.out
