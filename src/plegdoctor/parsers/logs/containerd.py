"""containerd logs: CRI operations on the PLEG timeline, errors, embedded goroutine dumps.

Accepted variants (each has a fixture under tests/fixtures/logs/):
- logrus text: `time="<RFC3339Nano>" level=<level> msg="..." key=value ...`, values Go-quoted
  only when needed (escaped `\\n`, `\\t`, `\\"`), data fields sorted after `msg`;
- logrus JSON (`[debug] format = "json"`): `{"level":...,"msg":...,"time":...}` + fields;
- either one inside journald framing (`containerd[pid]: ...`, all short modes, `-o json`);
- lines of runc shims forwarded by containerd through the shim log FIFO: text format with
  `namespace=`, `path=<state dir>/<namespace>/<id>`, `pid=<shim pid>`, `runtime=` fields
  (attributed to process `containerd-shim` with the shim pid and sandbox id);
- goroutine dumps (SIGUSR1) logged as ONE message `=== BEGIN goroutine stack dump ===\\n...
  === END goroutine stack dump ===`, by containerd, a shim or (older) dockerd, including
  dumps that journald cut into LineMax (48K) pieces, which are joined again;
- raw goroutine text the daemon printed line by line to stderr (SIGQUIT/SIGABRT, a
  panic), each line journald-framed (`dockerd[1748]: goroutine 82255 [semacquire]:`):
  from a `goroutine N [state]:` line to the next logrus record of the same pid, handed to
  plegdoctor.goroutines.parse with each line's own number.

Events (model.EventKind): UPDATE_RESOURCES_START/END, TASK_EXIT_FAILED, TASK_DELETE_FAILED,
PULL_START/END, STOP_CONTAINER_START/END, STOP_SANDBOX_START/END, GOROUTINE_DUMP and
RUNTIME_ERROR (other error-level lines); warning+ lines become LogRecords. Dumps are
unescaped and handed to plegdoctor.goroutines.parse.parse_dump_text when it exists.
Full RFC 3339 stamps teach the TimeContext the year (and zone) for year-less inputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import replace

from plegdoctor.model import Event, EventKind, LogRecord, Ref, quote
from plegdoctor.parsers.logs.common import (
    LOGRUS_LEVELS,
    WARNING_PLUS,
    StampResolver,
    parse_iso,
    parse_journal_frame,
    parse_logrus_text,
    to_utc,
)
from plegdoctor.parsers.logs.registry import LogFormat, head_lines
from plegdoctor.parsers.logs.scanner import TAG_IDENT, Needle

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "containerd-log"

DUMP_BEGIN = "=== BEGIN goroutine stack dump ==="
DUMP_END = "=== END goroutine stack dump ==="
MAX_DUMP_CHARS = 256 << 20  # a pending split dump larger than this is dropped
MAX_RECORDS_PER_SOURCE = 5000

_QUOTED_ID = re.compile(r'"([^"]+)"')
_TASKEXIT_ID = re.compile(r"ContainerID:([0-9a-f]{12,64})")


def sniff(lines: list[str]) -> float:
    """logrus text/JSON lines with containerd's RFC 3339 stamps, framed or bare."""
    seen = hits = 0
    containerdish = 0
    for text, _frame, proc in head_lines(lines):
        seen += 1
        if proc not in (None, "containerd"):
            continue
        is_text = text.startswith('time="') and " level=" in text
        is_json = text.startswith("{") and '"level"' in text and '"msg"' in text and '"time"' in text
        if is_text or is_json:
            hits += 1
        if "containerd" in text or "io.containerd" in text or "CRI" in text:
            containerdish += 1
    if not seen:
        return 0.0
    share = hits / seen
    if share < 0.2:
        return 0.0
    return 0.8 * share if containerdish else 0.6 * share


def parse(source: Source, ctx: ParseContext) -> None:
    from plegdoctor.parsers.logs.engine import run_log_parser

    run_log_parser(source, ctx, default_process="containerd", what="containerd log")


class EmbeddedDump(msgspec.Struct, frozen=True):
    """A goroutine dump found in a log line, unescaped to real text."""

    text: str  # from `goroutine ...` to the end of the dump (markers stripped)
    process: str  # containerd | containerd-shim | dockerd
    pid: int | None
    sandbox: str | None  # shim bundle id (last element of path=)
    namespace: str | None
    ts: datetime | None
    line: int  # log line of the (first piece of the) message
    path: str


def dump_body(msg: str) -> str | None:
    """The dump between the BEGIN/END markers of an (unescaped) message, else None."""
    b = msg.find(DUMP_BEGIN)
    if b == -1:
        return None
    start = b + len(DUMP_BEGIN)
    e = msg.find(DUMP_END, start)
    body = msg[start:] if e == -1 else msg[start:e]
    return body.strip("\n") + "\n"


def shim_identity(fields: dict[str, Any]) -> tuple[str | None, str | None]:
    """(namespace, bundle id) from the `path=` field the shim logger adds."""
    path = str(fields.get("path") or "")
    if not path:
        return fields.get("namespace"), None
    parts = [p for p in path.split("/") if p]
    bundle = parts[-1] if parts else None
    ns = fields.get("namespace") or (parts[-2] if len(parts) >= 2 else None)
    return ns, bundle


class ContainerdHandler:
    """Parses containerd (and dockerd: same logrus format) messages into evidence."""

    def __init__(
        self,
        ctx: ParseContext,
        path: str,
        process: str = "containerd",
        on_dump: Callable[[EmbeddedDump], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.process = process
        self.evidence = ctx.evidence
        self.records = 0
        self.unparsed = 0
        self.kept_records = 0
        self.dumps: list[EmbeddedDump] = []
        self.on_dump = on_dump if on_dump is not None else self._default_dump
        # journald LineMax pieces of one long message, keyed by the frame's pid
        self.pending: dict[int | None, tuple[int, str, list[str], int]] = {}
        self.dump_failures = 0
        # raw goroutine text printed line by line, per pid: (first prefix, line numbers, lines, size)
        self.raw: dict[int | None, tuple[str, list[int], list[str], int]] = {}

    # ---- pieces of long lines (journald LineMax) -----------------------------------

    def feed(self, lineno: int, prefix: str, payload: str, frame_pid: int | None = None) -> None:
        """One line's message (journald prefix split off as `prefix`)."""
        if (frame_pid in self.raw or payload.startswith("goroutine ")) and self._raw_line(
            lineno, prefix, payload, frame_pid
        ):
            return
        pend = self.pending.get(frame_pid)
        if pend is not None:
            if payload.startswith('time="') or (payload.startswith('{"') and '"level"' in payload[:200]):
                # a new record: the previous message was cut and its end never came
                self._flush_pending(frame_pid, complete=False)
            else:
                first_line, first_prefix, parts, size = pend
                parts.append(payload)
                size += len(payload)
                if DUMP_END in payload[-4096:] or DUMP_END in payload:
                    del self.pending[frame_pid]
                    self.handle(first_line, first_prefix, "".join(parts), pieces=len(parts))
                elif size > MAX_DUMP_CHARS:
                    self._flush_pending(frame_pid, complete=False)
                else:
                    self.pending[frame_pid] = (first_line, first_prefix, parts, size)
                return
        if DUMP_BEGIN in payload and DUMP_END not in payload:
            self.pending[frame_pid] = (lineno, prefix, [payload], len(payload))
            return
        self.handle(lineno, prefix, payload)

    def _flush_pending(self, key: int | None, complete: bool) -> None:
        first_line, first_prefix, parts, _ = self.pending.pop(key)
        text = "".join(parts)
        self.ctx.report.warn(
            f"line {first_line}: goroutine dump cut short ({len(parts)} piece(s), no END marker); kept what was there"
        )
        # Close the quote so the logrus fields before the dump still parse.
        if text.startswith('time="') and not text.endswith('"'):
            text += '"'
        self.handle(first_line, first_prefix, text, pieces=len(parts), truncated=not complete)

    def finish(self) -> None:
        for key in list(self.pending):
            self._flush_pending(key, complete=False)
        for key in list(self.raw):
            self._close_raw(key)

    # ---- raw goroutine text, one journald line per dump line ---------------------------

    def _raw_line(self, lineno: int, prefix: str, payload: str, pid: int | None) -> bool:
        """True when the line belongs to a raw dump (started by a goroutine header)."""
        raw = self.raw.get(pid)
        if raw is None:
            text = payload.rstrip()
            if not (text.endswith("]:") and " [" in text and text[10:11].isdigit()):
                return False
            self.raw[pid] = (prefix, [lineno], [payload], len(payload))
            return True
        if payload.startswith(('time="', "level=")) or (payload.startswith("{") and '"msg"' in payload):
            self._close_raw(pid)  # the next log record: the dump has ended
            return False
        first_prefix, numbers, lines, size = raw
        numbers.append(lineno)
        lines.append(payload)
        size += len(payload)
        self.raw[pid] = (first_prefix, numbers, lines, size)
        if size > MAX_DUMP_CHARS:
            self._close_raw(pid)
        return True

    def _close_raw(self, pid: int | None) -> None:
        prefix, numbers, lines, _ = self.raw.pop(pid)
        try:
            from plegdoctor.goroutines.parse import parse_dump_text
        except ImportError:
            return
        ts = None
        frame = parse_journal_frame(prefix) if prefix else None
        if frame is not None:
            if frame.ts is not None:
                ts = to_utc(frame.ts, self.ctx.time)
            elif frame.local is not None:
                epoch = StampResolver(self.ctx.time, None).epoch(*frame.local)
                ts = datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
        try:
            dumps = parse_dump_text(
                "\n".join(lines), source=self.path, pid=pid, dump_time=ts, line_map=numbers.__getitem__
            )
        except Exception as exc:  # the engine must not take the log parser down
            self.ctx.report.warn(f"line {numbers[0]}: goroutine dump could not be parsed ({type(exc).__name__}: {exc})")
            return
        for d in dumps:
            if d.process == "unknown":  # frames say nothing: the log's own process
                d = replace(d, process=self.process, process_source="journald prefix" if prefix else "log")
            self.ctx.evidence.dumps.append(d)
            self.records += 1
            ref = Ref(self.path, d.first_line, quote(prefix + lines[0]))
            self._event(EventKind.GOROUTINE_DUMP, ts, d.process, ref, pid=d.pid, goroutines=len(d.goroutines))
        if dumps:
            self.dumps.append(EmbeddedDump("", self.process, pid, None, None, ts, numbers[0], self.path))

    # ---- one complete message -------------------------------------------------------

    def handle(self, lineno: int, prefix: str, payload: str, pieces: int = 1, truncated: bool = False) -> None:
        fields: dict[str, Any] | None
        if payload.startswith("{"):
            try:
                obj = json.loads(payload)
            except (ValueError, RecursionError):
                obj = None
            fields = obj if isinstance(obj, dict) and "msg" in obj else None
        else:
            fields = parse_logrus_text(payload)
        if fields is None:
            self.unparsed += 1
            return
        self.records += 1
        ts = None
        raw_time = fields.get("time")
        if isinstance(raw_time, str):
            parsed = parse_iso(raw_time)
            if parsed is not None and parsed.tzinfo is not None:
                self.ctx.time.learn(parsed, zone=True)
            ts = to_utc(parsed, self.ctx.time)
        level = LOGRUS_LEVELS.get(str(fields.get("level", "")).lower(), "info")
        msg = str(fields.get("msg", ""))
        process = self.process
        pid = None
        sandbox = None
        namespace = None
        if "runtime" in fields and "path" in fields and "pid" in fields:
            process = "containerd-shim"
            namespace, sandbox = shim_identity(fields)
            try:
                pid = int(fields["pid"])
            except (TypeError, ValueError):
                pid = None
        text = prefix + payload
        ref = Ref(self.path, lineno, quote(text))
        if DUMP_BEGIN in msg:
            body = dump_body(msg)
            if body is not None:
                dump = EmbeddedDump(body, process, pid, sandbox, namespace, ts, lineno, self.path)
                self.dumps.append(dump)
                self._event(
                    EventKind.GOROUTINE_DUMP,
                    ts,
                    process,
                    ref,
                    pid=pid,
                    sandbox=sandbox,
                    namespace=namespace,
                    pieces=pieces,
                    truncated=truncated,
                    goroutines=body.count("\ngoroutine ") + (1 if body.startswith("goroutine ") else 0),
                )
                self.on_dump(dump)
            return
        self._classify(ts, level, msg, fields, process, pid, ref)

    def _event(self, kind: EventKind, ts: datetime | None, process: str, ref: Ref, **attrs: Any) -> None:
        self.evidence.events.append(Event(ts, kind, process, ref, attrs))

    def _classify(
        self,
        ts: datetime | None,
        level: str,
        msg: str,
        fields: dict[str, Any],
        process: str,
        pid: int | None,
        ref: Ref,
    ) -> None:
        error = str(fields.get("error", "") or fields.get("err", ""))
        handled = False
        if msg.startswith("UpdateContainerResources for "):
            cid = _first_quoted(msg)
            if msg.endswith("returns successfully"):
                self._event(EventKind.UPDATE_RESOURCES_END, ts, process, ref, container_id=cid, ok=True)
            elif msg.endswith(" failed"):
                self._event(EventKind.UPDATE_RESOURCES_END, ts, process, ref, container_id=cid, ok=False, error=error)
            else:
                self._event(EventKind.UPDATE_RESOURCES_START, ts, process, ref, container_id=cid)
            handled = True
        elif msg.startswith("PullImage "):
            image = _first_quoted(msg)
            if " returns image reference " in msg:
                ref_id = _QUOTED_ID.findall(msg)
                self._event(
                    EventKind.PULL_END, ts, process, ref, image=image, ok=True, image_ref=ref_id[-1] if ref_id else None
                )
            elif msg.endswith(" failed"):
                self._event(EventKind.PULL_END, ts, process, ref, image=image, ok=False, error=error)
            else:
                self._event(EventKind.PULL_START, ts, process, ref, image=image)
            handled = True
        elif msg.startswith("StopContainer for ") or msg.startswith("StopPodSandbox for "):
            cid = _first_quoted(msg)
            sandbox = msg.startswith("StopPodSandbox")
            if msg.endswith("returns successfully") or msg.endswith(" failed"):
                kind = EventKind.STOP_SANDBOX_END if sandbox else EventKind.STOP_CONTAINER_END
                ok = not msg.endswith(" failed")
                self._event(kind, ts, process, ref, container_id=cid, ok=ok, error=error or None)
            else:
                kind = EventKind.STOP_SANDBOX_START if sandbox else EventKind.STOP_CONTAINER_START
                self._event(kind, ts, process, ref, container_id=cid)
            handled = True
        if "failed to handle container TaskExit event" in msg:
            m = _TASKEXIT_ID.search(msg)
            cid = m.group(1) if m else None
            self._event(EventKind.TASK_EXIT_FAILED, ts, process, ref, container_id=cid, error=error)
            if "failed to delete task" in error:
                self._event(EventKind.TASK_DELETE_FAILED, ts, process, ref, container_id=cid, error=error)
            handled = True
        elif "failed to delete task" in msg or "failed to delete task" in error:
            m = _TASKEXIT_ID.search(msg)
            cid = m.group(1) if m else _first_quoted(msg)
            self._event(EventKind.TASK_DELETE_FAILED, ts, process, ref, container_id=cid, error=error or msg)
            handled = True
        if level in ("error", "fatal") and not handled:
            kind = EventKind.DOCKERD_ERROR if self.process == "dockerd" else EventKind.RUNTIME_ERROR
            self._event(kind, ts, process, ref, msg=msg, error=error, level=level)
        if level in WARNING_PLUS and self.kept_records < MAX_RECORDS_PER_SOURCE:
            self.kept_records += 1
            flat = {
                k: v if isinstance(v, str) else json.dumps(v)
                for k, v in fields.items()
                if k not in ("msg", "time", "level")
            }
            self.evidence.add_log_record(LogRecord(ts, process, pid, level, msg, flat, ref))

    # ---- goroutine dumps --------------------------------------------------------------

    def _default_dump(self, dump: EmbeddedDump) -> None:
        hand_over_dump(dump, self.ctx)


def _first_quoted(msg: str) -> str | None:
    m = _QUOTED_ID.search(msg)
    return m.group(1) if m else None


def hand_over_dump(dump: EmbeddedDump, ctx: ParseContext) -> bool:
    """Give an embedded dump to the goroutine engine (if that module is available)."""
    try:
        from plegdoctor.goroutines.parse import parse_dump_text
    except ImportError:
        ctx.report.warn("goroutine engine not available: embedded dump kept as an event only")
        return False
    line = dump.line
    try:
        dumps = parse_dump_text(
            dump.text,
            source=dump.path,
            first_line=line,
            process=dump.process,
            pid=dump.pid,
            sandbox=dump.sandbox,
            dump_time=dump.ts,
            line_map=lambda _n: line,
        )
    except Exception as exc:  # the engine must not take the log parser down
        ctx.report.warn(f"line {line}: embedded goroutine dump could not be parsed ({type(exc).__name__}: {exc})")
        return False
    ctx.evidence.dumps.extend(dumps)
    return True


def by_content(text: str) -> bool:
    """An unframed line of a journal (`-o cat`) is a logrus line: containerd's."""
    return text.startswith(('time="', "level="))


def _handler(ctx: ParseContext, path: str, _resolver: StampResolver) -> ContainerdHandler:
    return ContainerdHandler(ctx, path, "containerd")


FORMAT = LogFormat(
    process="containerd",
    handler=_handler,
    idents=("containerd",),
    ident_prefixes=("containerd-shim",),  # v1 shims log on their own identifier, same logrus format
    needles=(
        Needle(b" containerd[", TAG_IDENT),
        Needle(b" containerd-shim", TAG_IDENT),
        Needle(b"containerd[", TAG_IDENT, line_start=True),
        Needle(b'time="', TAG_IDENT, line_start=True),
        Needle(b"level=", TAG_IDENT, line_start=True),
    ),
    by_content=by_content,
    json_line=lambda obj: True,  # logrus JSON: any other JSON line (after the kubelet's)
)
