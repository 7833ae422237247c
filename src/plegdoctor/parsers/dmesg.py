"""Kernel log: dmesg, kern.log/syslog, `journalctl -k` -> HungTask records and kernel Events.

Line prefixes accepted (fixtures under tests/fixtures/node/dmesg/):

- `dmesg`: `[ 1234.567890] msg` (monotonic seconds since boot; wall time only when the
  context knows the boot time, `ctx.options["boot_time"]` = epoch seconds);
- `dmesg -T`: `[Thu Jun 15 06:41:36 2023] msg` (local time, --tz);
- `dmesg --time-format iso`: `2023-06-15T06:41:36,123456+00:00 msg`;
- `dmesg -x`: `kern  :err   : [ 1234.5] msg`; `dmesg -r`: `<3>[ 1234.5] msg`;
- copies with a level word first: `err [129398.233826] msg` (seen pasted in issues);
- kern.log / syslog / `journalctl -k` (short): `Jun 15 06:41:36 host kernel: [ 1234.5] msg`
  (the monotonic part is optional); `-o short-precise` adds `.uuuuuu`;
- `journalctl -k -o short-iso[-precise]` and rsyslog ISO: `2023-06-15T06:41:36+0000 host kernel: msg`.

Hung-task reports (kernel/hung_task.c; facts.md §9.4):

    INFO: task containerd-shim:12345 blocked for more than 120 seconds.
          Not tainted 5.4.89+ #1 / Tainted: G ...
    "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
    task:containerd-shim state:D stack:0 pid:12345 ppid:1 flags:0x00004080   (>= 5.x)
    containerd-shim D    0 12345      1 0x00004080                           (older)
    Call Trace:
     <TASK>
     __schedule+0x47d/0x600
     ? ovl_sync_fs+0x2b/0x50 [overlay]
     [<ffffffff8c84525e>] schedule+0x7e/0x87                                   (old, with addresses)
     RSP: 002b:000000c0020969d0 EFLAGS: 00000202 ORIG_RAX: 00000000000000a6
     </TASK>

`kernel_stack` holds function names only, innermost first, without `.isra.0`/`.cold`-style
suffixes. Frames marked `? ` are the unwinder's guesses (stale return addresses); they are
left out, unless every frame of the trace is marked (old kernels without reliable
unwinding), then all are kept. A task/Call Trace block without the INFO line (sysrq-w "Show
Blocked State") gives a HungTask with `seconds=None`.

Other kernel events: NFS `server X not responding, still trying|timed out` and `server X OK`,
block I/O errors, OOM kills, `unregister_netdevice: waiting for eth0 to become free`, and
`overlay with incompat feature 'volatile' cannot be mounted`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plegdoctor.kernelnames import waits_in
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Event, EventKind, HungTask, Ref, quote
from plegdoctor.parsers._unread import Unread
from plegdoctor.parsers.psi import parse_stamp

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "dmesg"

_MONTHS = {
    m: i + 1 for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))
}
_SYSLOG = lazy_re(
    r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? "
    r"\S+ kernel: ?(.*)$"
)
_MONO_HOST = lazy_re(r"^\[\s*(\d+\.\d+)\] \S+ kernel: ?(.*)$")
_SHORT_FULL = lazy_re(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)"
    r"(?: ([A-Z]{2,5}|[+-]\d{4}))? \S+ kernel: ?(.*)$"
)
_ISO_HOST = lazy_re(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?) \S+ kernel: ?(.*)$")
_ISO_DMESG = lazy_re(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})) (.*)$")
_DMESG_X = lazy_re(r"^[a-z]+\s*:[a-z]+\s*: ?(.*)$")
_RAW_PRIO = lazy_re(r"^<\d+>(.*)$")
_LEVEL_WORD = lazy_re(r"^(?:emerg|alert|crit|err|warn|warning|notice|info|debug)\s+(?=\[)(.*)$")
_MONO = lazy_re(r"^\[\s*(\d+\.\d+)\] ?(.*)$")
_HUMAN = lazy_re(
    r"^\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) "
    r"(\d{2}):(\d{2}):(\d{2}) (\d{4})\] ?(.*)$"
)

_INFO = lazy_re(r"INFO: task (.+):(\d{1,20}) blocked for more than (\d{1,20}) seconds\.")
_TASK_NEW = lazy_re(r"^task:(\S(?:[^\n]{0,40}?\S)?)\s+state:(\S)\s+stack:\s*\d+\s+pid:\s*(\d+)")
_TASK_OLD = lazy_re(r"^(\S.*?)\s+([DRSTtZXxKWPI])\s+(?:[0-9a-f]{8,16}\s+)?\d+\s+(\d+)\s+(\d+)\s+0x[0-9a-f]+\s*$")
_CALL_TRACE = lazy_re(r"^Call Trace:\s*$")
_FRAME = lazy_re(
    r"^(?:\[<[0-9a-f]+>\]\s+)?(\? )?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[[\w-]+(?: [0-9a-f]+)?\])?\s*$"
)
_ADDR_FRAME = lazy_re(r"^(?:\[<[0-9a-f]+>\]\s+)?(?:\? )?0x[0-9a-f]+\s*$")  # an address the unwinder could not name
_WORKQUEUE = lazy_re(r"^Workqueue: (\S+) (\S+)(?: \((.{1,80})\))?")
_REG = lazy_re(
    r"^(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d{1,2}|Code|FS|GS|CS|DS|ES|CR\d|DR\d|EFLAGS|"
    r"<TASK>|</TASK>|<IRQ>|</IRQ>|<NMI>|</NMI>|<EOI>)(?=\W|$)"
)
_ORIG_RAX = lazy_re(r"ORIG_RAX: ([0-9a-f]+)")
_STACK_WORDS = lazy_re(r"^[0-9a-f]{16}( [0-9a-f]{16})*$")
MAX_HEADER_LINES = 12
_SKIP_IN_HEADER = lazy_re(
    r"^(?:Not tainted|Tainted:|\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message\.)"
)

_NFS = lazy_re(r"nfs: server (\S+) (not responding, still trying|not responding, timed out|OK)")
_IO_ERROR = lazy_re(r"(?:\bdev(?:ice)? |\((?:device )?)([a-z][\w-]*)\)?[,:]")
_OOM = lazy_re(r"(Memory cgroup out of memory|Out of memory): Kill(?:ed)? process (\d+) \(([^)]*)\)")
# the watchdog: a CPU held in the kernel (soft: no scheduling for >20 s; hard: no interrupts),
# and RCU stalls; the kernel, not a process, is stuck
_LOCKUP = lazy_re(
    r"(?:watchdog: )?BUG: soft lockup - CPU#(\d+) stuck for (\d+)s! \[(.{1,64}):(\d+)\]"
    r"|Watchdog detected hard LOCKUP on cpu (\d+)"
    r"|rcu: INFO: rcu_(?:sched|preempt|bh) (?:detected )?(?:self-detected )?stall"
)
_NETDEV = lazy_re(r"unregister_netdevice: waiting for (\S+) to become free\. Usage count = (-?\d{1,20})")
_INCOMPAT = lazy_re(r"overlayfs: overlay with incompat feature '(\w+)' cannot be mounted")


def split_prefix(line: str, ctx: ParseContext, mtime: float | None) -> tuple[datetime | None, float | None, str, bool]:
    """(wall time, monotonic seconds, message, whether a kernel-log prefix was recognised)."""
    ts: datetime | None = None
    text = line
    prefixed = False
    m = _MONO_HOST.match(text)
    if m:  # journalctl -k -o short-monotonic: `[ 1234.567890] host kernel: msg`
        text = f"[{m.group(1)}] {m.group(2)}"
    m = _SYSLOG.match(text)
    if m:
        micro = int((m.group(6) or "0").ljust(6, "0"))
        ts = ctx.time.resolve(
            _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), micro, mtime
        )
        text = m.group(7)
        prefixed = True
    elif (mf := _SHORT_FULL.match(text)) is not None:  # journalctl -o short-full
        zone = mf.group(3) or ""
        zone = zone if zone == "UTC" or zone[:1] in "+-" else ""  # other abbreviations: the --tz zone
        ts = parse_stamp(f"{mf.group(1)}T{mf.group(2)}{zone if zone != 'UTC' else 'Z'}", ctx)
        if ts is not None:
            ctx.time.learn(ts)
        text = mf.group(4)
        prefixed = True
    else:
        m = _ISO_HOST.match(text) or _ISO_DMESG.match(text)
        if m:
            prefixed = True
            ts = parse_stamp(m.group(1), ctx)
            if ts is not None:
                ctx.time.learn(ts)
            text = m.group(2)
    for rx in (_DMESG_X, _RAW_PRIO, _LEVEL_WORD):
        m = rx.match(text)
        if m:
            text = m.group(1)
            prefixed = True
            break
    mono: float | None = None
    m = _MONO.match(text)
    if m:
        mono = float(m.group(1))
        text = m.group(2)
        prefixed = True
        if ts is None and ctx.options.get("boot_time") is not None:
            ts = datetime.fromtimestamp(float(ctx.options["boot_time"]) + mono, UTC)
    else:
        m = _HUMAN.match(text)
        if m:
            try:
                naive = datetime(
                    int(m.group(6)),
                    _MONTHS[m.group(1)],
                    int(m.group(2)),
                    int(m.group(3)),
                    int(m.group(4)),
                    int(m.group(5)),
                )
                ts = naive.replace(tzinfo=ctx.time.zone).astimezone(UTC)
            except ValueError:
                ts = None
            text = m.group(7)
            prefixed = True
    return ts, mono, text, prefixed


def _cannot_score(lines: list[str]) -> bool:
    """Exact early exit of `sniff` (first 200 non-blank lines): with no `strong` needle it
    needs `ratio` >= 0.5, and each kernelish line starts with `[` (`_MONO`, `_HUMAN`), `<`,
    a `\\d` (`_ISO_DMESG`; `isdigit` holds for each) or a-z (`_DMESG_X`, `_LEVEL_WORD`),
    or holds ` kernel: `: lines that do bound `kernelish` from above."""
    data = [ln for ln in lines if ln.strip()][:200]
    bound = sum(1 for ln in data if ln[0] in "[<" or "a" <= ln[0] <= "z" or ln[0].isdigit() or " kernel: " in ln)
    if not data or bound / len(data) >= 0.5:
        return not data
    text = "\n".join(data)  # the needles hold no newline: in the joined text only if in a line
    return not ("blocked for more than" in text or "Call Trace:" in text or "hung_task_timeout_secs" in text)


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    data = [ln for ln in lines if ln.strip()]
    if not data:
        return 0.0
    kernelish = 0
    strong = False
    for ln in data[:200]:
        if (
            " kernel: " in ln
            or _MONO.match(ln)
            or _HUMAN.match(ln)
            or _ISO_DMESG.match(ln)
            or (_DMESG_X.match(ln) and "[" in ln)
            or _RAW_PRIO.match(ln)
            or (_LEVEL_WORD.match(ln) and "]" in ln)
        ):
            kernelish += 1
        if "blocked for more than" in ln or "Call Trace:" in ln or "hung_task_timeout_secs" in ln:
            strong = True
    ratio = kernelish / min(len(data), 200)
    if ratio >= 0.8:
        return 0.93
    if strong:
        return 0.7
    return 0.4 if ratio >= 0.5 else 0.0


MAX_HUNG_TASKS = 2_000  # hung-task reports kept per file (a storm repeats the same tasks)
MAX_FRAMES = 64  # frames kept per trace (the innermost ones say where the task waits)
MAX_EVENTS = 5_000  # other kernel events kept per file


class _Block:
    """A hung-task report being assembled."""

    __slots__ = (
        "comm",
        "frames",
        "guessed",
        "header_lines",
        "in_trace",
        "pid",
        "ref",
        "seconds",
        "state",
        "syscall",
        "ts",
        "workqueue",
    )

    def __init__(self, ts: datetime | None, comm: str, pid: int, seconds: int | None, ref: Ref) -> None:
        self.ts = ts
        self.comm = comm
        self.pid = pid
        self.seconds = seconds
        self.ref = ref
        self.state: str | None = None
        self.frames: list[tuple[str, Ref]] = []
        self.guessed: list[tuple[str, Ref]] = []  # all frames including `? ` ones
        self.in_trace = False
        self.syscall: int | None = None
        self.header_lines = 0
        self.workqueue: str | None = None


def _func_name(raw: str) -> str:
    return raw.split(".", 1)[0] if "." in raw else raw


class _Counts:
    __slots__ = ("dropped_events", "dropped_tasks", "events", "tasks")

    def __init__(self) -> None:
        self.events = 0
        self.tasks = 0
        self.dropped_events = 0
        self.dropped_tasks = 0


def parse(source: Source, ctx: ParseContext) -> None:
    block: _Block | None = None
    warned_mono = False
    unread = Unread(ctx.report)
    counts = _Counts()
    foreign_trace = False  # inside a Call Trace that is not a hung-task report (an oops, a WARN)

    def finish() -> None:
        nonlocal block
        if block is None:
            return
        b, block = block, None
        if counts.tasks >= MAX_HUNG_TASKS:
            counts.dropped_tasks += 1
            return
        counts.tasks += 1
        frames = b.frames if b.frames else b.guessed
        stack = tuple(name for name, _ in frames)
        hung = HungTask(
            ts=b.ts,
            comm=b.comm,
            pid=b.pid,
            seconds=b.seconds,
            kernel_stack=stack,
            ref=b.ref,
            state=b.state,
            syscall_nr=b.syscall,
            stack_refs=tuple(ref for _, ref in frames),
        )
        ctx.evidence.hung_tasks.append(hung)
        attrs: dict[str, object] = {"comm": b.comm, "pid": b.pid, "seconds": b.seconds, "stack": list(stack)}
        where = waits_in(stack)
        if where is not None:
            attrs["waits_in"] = where.function
            attrs["hint"] = where.hint
            attrs["meaning"] = where.meaning
        if b.workqueue:
            attrs["workqueue"] = b.workqueue
        ctx.evidence.events.append(Event(b.ts, EventKind.HUNG_TASK, "kernel", b.ref, attrs))
        ctx.report.records += 1

    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        if not raw.strip():
            continue
        ts, mono, text, prefixed = split_prefix(raw.rstrip(), ctx, source.mtime)
        if ts is None and mono is not None and not warned_mono:
            ctx.time.note("kernel log has only seconds-since-boot stamps; use `dmesg -T` or journalctl -k for times")
            warned_mono = True
        body = text.strip()
        ref = Ref(source.display, lineno, quote(raw))

        if "blocked for more than" in body:
            m = _INFO.search(body)
            if m:
                finish()
                foreign_trace = False
                block = _Block(ts, m.group(1), int(m.group(2)), int(m.group(3)), ref)
                continue
        if block is not None and block.in_trace:
            mf = _FRAME.match(body)
            if mf:
                if len(block.guessed) < MAX_FRAMES:
                    entry = (_func_name(mf.group(2)), ref)
                    block.guessed.append(entry)
                    if not mf.group(1):
                        block.frames.append(entry)
                continue
            mr = _ORIG_RAX.search(body)
            if mr:
                block.syscall = int(mr.group(1), 16)
                continue
            if _REG.match(body) or _ADDR_FRAME.match(body):
                continue
            finish()  # the trace ended; this line is read below as a fresh one
        elif block is not None:
            block.header_lines += 1
            if _SKIP_IN_HEADER.match(body):
                continue
            mt = _TASK_NEW.match(body)
            if mt:
                block.state = mt.group(2)
                continue
            mo = _TASK_OLD.match(body)
            if mo and mo.group(3) == str(block.pid):
                block.state = mo.group(2)
                continue
            mw = _WORKQUEUE.match(body)
            if mw:
                block.workqueue = body[len("Workqueue: ") :][:120]
                continue
            if _CALL_TRACE.match(body):
                block.in_trace = True
                continue
            if _STACK_WORDS.match(body):
                continue  # raw stack words printed by very old kernels before Call Trace
            if block.header_lines > MAX_HEADER_LINES or not prefixed:
                finish()  # no Call Trace came: keep the report without a stack
            else:
                # e.g. the 6.x "blocked on a mutex likely owned by task ..." line: keep going
                _event(body, ts, ref, ctx, counts)
                continue
        mt = _TASK_NEW.match(body)
        if mt:
            # a D-state task dump without the INFO line (sysrq-w "Show Blocked State")
            foreign_trace = False
            block = _Block(ts, mt.group(1), int(mt.group(3)), None, ref)
            block.state = mt.group(2)
            continue
        mo = _TASK_OLD.match(body) if prefixed else None
        if mo and mo.group(2) == "D":
            # the same in the old task-line format (`docker D ffff88021fc12ec0 0 10467 1 0x00000000`),
            # e.g. a hung-task report whose INFO line was cut from the excerpt
            foreign_trace = False
            block = _Block(ts, mo.group(1).strip(), int(mo.group(3)), None, ref)
            block.state = "D"
            continue
        if _event(body, ts, ref, ctx, counts):
            foreign_trace = False
            continue
        if _CALL_TRACE.match(body):
            foreign_trace = True  # an oops or WARN splat: its frames are read, not kept
            continue
        is_frame = bool(_FRAME.match(body) or _ADDR_FRAME.match(body) or _REG.match(body))
        if is_frame and foreign_trace:
            continue
        foreign_trace = False
        if not prefixed or is_frame:
            # no kernel-log prefix (a pasted note, an excerpt gap), or trace frames whose task
            # line is not in the evidence: nothing can be attributed
            unread(lineno, raw)
    finish()
    if counts.dropped_tasks:
        ctx.report.warn(f"{counts.dropped_tasks} hung-task report(s) beyond the first {MAX_HUNG_TASKS} not kept")
    if counts.dropped_events:
        ctx.report.warn(f"{counts.dropped_events} kernel event(s) beyond the first {MAX_EVENTS} not kept")
    unread.warn()


def _event(body: str, ts: datetime | None, ref: Ref, ctx: ParseContext, counts: _Counts) -> bool:
    """Read one kernel message as an event (NFS, netdev, OOM, I/O error, overlay); bounded."""
    if counts.events >= MAX_EVENTS:
        if _classify_event(body, ts, ref, None):
            counts.dropped_events += 1
            return True
        return False
    if _classify_event(body, ts, ref, ctx):
        counts.events += 1
        return True
    return False


def _classify_event(body: str, ts: datetime | None, ref: Ref, ctx: ParseContext | None) -> bool:
    """Append the event a kernel message is (None `ctx`: only say whether it is one)."""
    if ctx is None:
        return bool(
            _NFS.search(body)
            or _NETDEV.search(body)
            or _OOM.search(body)
            or _INCOMPAT.search(body)
            or _LOCKUP.search(body)
            or "I/O error" in body
            or "critical medium error" in body
        )
    m = _NFS.search(body)
    if m:
        if m.group(2) == "OK":
            ctx.evidence.events.append(Event(ts, EventKind.NFS_OK, "kernel", ref, {"server": m.group(1)}))
        else:
            detail = "timed out" if m.group(2).endswith("timed out") else "still trying"
            ctx.evidence.events.append(
                Event(ts, EventKind.NFS_NOT_RESPONDING, "kernel", ref, {"server": m.group(1), "detail": detail})
            )
        ctx.report.records += 1
        return True
    m = _LOCKUP.search(body)
    if m:
        if m.group(1) is not None:
            attrs: dict[str, object] = {
                "what": "soft lockup",
                "cpu": int(m.group(1)),
                "seconds": int(m.group(2)),
                "comm": m.group(3),
                "pid": int(m.group(4)),
            }
        elif m.group(5) is not None:
            attrs = {"what": "hard lockup", "cpu": int(m.group(5))}
        else:
            attrs = {"what": "RCU stall"}
        ctx.evidence.events.append(Event(ts, EventKind.CPU_LOCKUP, "kernel", ref, attrs))
        ctx.report.records += 1
        return True
    m = _NETDEV.search(body)
    if m:
        ctx.evidence.events.append(
            Event(ts, EventKind.NETDEV_WAIT, "kernel", ref, {"device": m.group(1), "usage": int(m.group(2))})
        )
        ctx.report.records += 1
        return True
    m = _OOM.search(body)
    if m:
        ctx.evidence.events.append(
            Event(
                ts,
                EventKind.OOM_KILL,
                "kernel",
                ref,
                {"pid": int(m.group(2)), "comm": m.group(3), "cgroup": m.group(1).startswith("Memory cgroup")},
            )
        )
        ctx.report.records += 1
        return True
    m = _INCOMPAT.search(body)
    if m:
        ctx.evidence.events.append(
            Event(ts, EventKind.OVERLAY_VOLATILE_INCOMPAT, "kernel", ref, {"feature": m.group(1)})
        )
        ctx.report.records += 1
        return True
    if "I/O error" in body or "critical medium error" in body:
        m = _IO_ERROR.search(body)
        device = m.group(1) if m else None
        ctx.evidence.events.append(Event(ts, EventKind.IO_ERROR, "kernel", ref, {"device": device, "msg": body[:200]}))
        ctx.report.records += 1
        return True
    return False
