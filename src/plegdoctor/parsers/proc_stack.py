"""/proc/<pid>/stack (kernel stack of a task) -> TaskState with kernel_stack.

Accepted variants (fixtures under tests/fixtures/node/proc_stack/):

- one bare /proc/<pid>/stack file: `[<0>] func+0x2e3/0x740` lines (addresses print as `<0>`
  since 4.17 without CAP_SYSLOG; older kernels print `[<ffffffff8106b8a5>]`); the pid comes
  from the file or archive member name (`proc/3658/stack`, `3658.stack`, `stack-3658.txt`)
  (proc-3658-stack.txt);
- pleg-doctor's collector format: several tasks, each introduced by a header line
      # pid=3658 comm=containerd-shim state=D wchan=rwsem_down_read_slowpath cmd=/usr/bin/containerd-shim ...
  (keys in any order, all but pid optional, `cmd=` takes the rest of the line)
  (proc-stacks-collector.txt);
- `tail -n +1 /proc/*/stack` with `==> /proc/3658/stack <==` headers (proc-stacks-tail.txt);
- `grep . /proc/*/stack` with `/proc/3658/stack:` prefixes (proc-stacks-grep.txt);
- a terminal paste where each stack follows its command at a shell prompt,
  `root@node:~# cat /proc/14378/stack` or `$ sudo cat /proc/14378/task/14380/stack`
  (the prompt line gives the pid; other lines of the session are counted as unread).

Function names only, innermost first, `.isra.0`-style suffixes removed; at most MAX_FRAMES
per task and MAX_TASKS tasks per file. When no header gave the wait channel, `wchan` is the
first frame that is not a scheduler or generic wait helper (plegdoctor.kernelnames), which
is how the kernel computes wchan itself. Lines that are none of the above are counted as
unread (one warning names the first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.kernelnames import waits_in
from plegdoctor.lazyre import lazy_re
from plegdoctor.model import Ref, TaskState, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "proc-stack"
MAX_FRAMES = 64
MAX_TASKS = 20_000

_FRAME = lazy_re(
    r"^(?:(/proc/(\d{1,20})(?:/task/\d+)?/stack):)?\[<[0-9a-fx]+>\] ([A-Za-z_][\w.]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?"
)
_TAIL = lazy_re(r"^==> .*?/proc/(\d{1,20})(?:/task/\d+)?/stack <==$")
_PROMPT = lazy_re(
    r"^\S{0,80}?[#$>] ?(?:sudo )?(?:cat|tail -n \+1|head -\d+) /proc/(\d{1,20})(?:/task/(\d{1,20}))?/stack\s*$"
)
_COLLECTOR = lazy_re(r"^#\s*(?:pleg-doctor proc-stack\s+)?pid=(\d{1,20})\b(.*)$")
_KV = lazy_re(r"(\w+)=(\S*)")
_PID_IN_NAME = lazy_re(
    r"(?:^|/)(?:proc/)?(\d+)(?:/task/\d+)?/stack$|(?:^|[/_.-])(?:stack[_.-])?(\d+)(?:[_.-]stack)?(?:\.txt)?$"
)


def _pid_from_name(display: str) -> int | None:
    name = display.rsplit(":", 1)[-1]
    m = _PID_IN_NAME.search(name)
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: both scores need `frames`, lines of the first 80
    non-blank ones that `_FRAME` matches (stripped), and `_FRAME` requires `[<`."""
    seen = 0
    for ln in lines:
        if ln.strip():
            if "[<" in ln:
                return False
            seen += 1
            if seen == 80:
                break
    return True


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    data = [ln for ln in lines if ln.strip()]
    if not data:
        return 0.0
    frames = sum(1 for ln in data[:80] if _FRAME.match(ln.strip()))
    headers = sum(1 for ln in data[:80] if _TAIL.match(ln.strip()) or _COLLECTOR.match(ln.strip()))
    ratio = (frames + headers) / min(len(data), 80)
    return 0.9 if frames and ratio >= 0.8 else (0.5 if frames and ratio >= 0.5 else 0.0)


class _Task:
    __slots__ = ("cmd", "comm", "frames", "pid", "ref", "state", "wchan")

    def __init__(self, pid: int, ref: Ref) -> None:
        self.pid = pid
        self.ref = ref
        self.comm = ""
        self.state = ""
        self.wchan: str | None = None
        self.cmd = ""
        self.frames: list[str] = []


def parse(source: Source, ctx: ParseContext) -> None:
    current: _Task | None = None
    default_pid = _pid_from_name(source.display)
    unread = Unread(ctx.report)
    kept = 0
    dropped = 0

    def finish() -> None:
        nonlocal current, kept, dropped
        if current is not None and (current.frames or current.state):
            if kept >= MAX_TASKS:
                dropped += 1
                current = None
                return
            kept += 1
            if current.wchan is None and current.frames:
                where = waits_in(current.frames)
                current.wchan = where.function if where is not None else None
            ctx.evidence.tasks.append(
                TaskState(
                    pid=current.pid,
                    comm=current.comm,
                    state=current.state,
                    wchan=current.wchan,
                    kernel_stack=tuple(current.frames),
                    cmd=current.cmd,
                    ref=current.ref,
                )
            )
            ctx.report.records += 1
        current = None

    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        text = raw.strip()
        if not text:
            continue
        ref = Ref(source.display, lineno, quote(raw))
        m = _COLLECTOR.match(text)
        if m:
            finish()
            current = _Task(int(m.group(1)), ref)
            rest = m.group(2)
            cmd_at = rest.find(" cmd=")
            if cmd_at >= 0:
                current.cmd = rest[cmd_at + 5 :].strip()
                rest = rest[:cmd_at]
            kv = dict(_KV.findall(rest))
            current.comm = kv.get("comm", "")
            current.state = kv.get("state", "")
            wchan = kv.get("wchan")
            current.wchan = None if wchan in (None, "", "-", "0") else wchan
            continue
        m = _TAIL.match(text)
        if m:
            finish()
            current = _Task(int(m.group(1)), ref)
            continue
        m = _PROMPT.match(text)
        if m:
            finish()
            current = _Task(int(m.group(2) or m.group(1)), ref)
            continue
        m = _FRAME.match(text)
        if m:
            if m.group(2) is not None and (current is None or current.pid != int(m.group(2))):
                finish()
                current = _Task(int(m.group(2)), ref)
            if current is None:
                if default_pid is None:
                    ctx.report.warn("kernel stack without a pid (name the file <pid>.stack or add a `# pid=` header)")
                    default_pid = -1
                current = _Task(default_pid, ref)
            name = m.group(3)
            if len(current.frames) < MAX_FRAMES:
                current.frames.append(name.split(".", 1)[0])
            continue
        if text.startswith("#"):
            ctx.report.inferred.append(text.lstrip("# ")[:200])  # a collector remark, e.g. "no D-state tasks found"
            continue
        unread(lineno, raw)
    finish()
    if dropped:
        ctx.report.warn(f"{dropped} task(s) beyond the first {MAX_TASKS} not kept")
    unread.warn()
