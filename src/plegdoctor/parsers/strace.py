"""`strace` output of a stuck process (`strace -f -p <pid>`, `strace -tt`): what it is doing
in a loop, read for the cgroup freezer state it polls.

Accepted variants: plain `syscall(args) = result` lines, with `[pid N] ` or `N ` prefixes
(`-f`), `HH:MM:SS[.ffffff] ` or epoch stamps (`-t`, `-tt`, `-ttt`), `<unfinished ...>` /
`<... read resumed>` halves, `--- SIGCHLD ... ---` and `+++ exited with 0 +++` lines.

Output: CgroupFreeze records (source "strace") for each read of a cgroup's `freezer.state`
(v1) or `cgroup.freeze`/`cgroup.events` (v2) — the file is matched by the fd its openat
returned — with the state read (`read(7, "FREEZING\\n", 512) = 9`). Every other syscall line
is read and counted; lines that are not strace's are counted as unread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plegdoctor.lazyre import lazy_re
from plegdoctor.model import CgroupFreeze, Ref, quote
from plegdoctor.parsers._unread import Unread

if TYPE_CHECKING:
    from plegdoctor.evidence import ParseContext
    from plegdoctor.inputs import Source

KIND = "strace"
MAX_FREEZES = 1000

_PREFIX = lazy_re(r"^(?:\[pid\s+(\d{1,9})\]\s+|(\d{1,9})\s+)?(?:(?:\d\d:\d\d:\d\d|\d{9,11})(?:\.\d{1,9})?\s+)?")
_CALL = lazy_re(r"([a-z_][a-z0-9_]{0,31})\((.{0,4000}?)\)?\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(?:\s.{0,200})?$")
_SPECIAL = lazy_re(
    r"(?:--- SIG\w{1,16} .{0,400}---|\+\+\+ (?:exited with -?\d+|killed by SIG\w+).{0,40}\+\+\+|"
    r"[a-z_][a-z0-9_]{0,31}\(.{0,4000} <unfinished \.\.\.>|<\.\.\. [a-z_0-9]{1,32} resumed>.{0,4000})$"
)
_OPEN_PATH = lazy_re(r'"(/sys/fs/cgroup/[^"]{1,1000}/(freezer\.state|cgroup\.freeze|cgroup\.events))"')
_READ = lazy_re(r'^(\d{1,6}), "([^"]{0,64})"')


def _prefix_end(line: str) -> int:
    m = _PREFIX.match(line)
    return m.end() if m else 0


def _cannot_score(lines: list[str]) -> bool:
    """An exact early exit of `sniff`: it scores only when `calls` (lines of `head` that
    `_CALL` matches) is >= 3 and >= 0.6 of `head`; `_CALL` requires `(` and `=` in the line,
    so the count of such lines bounds `calls` from above."""
    head = [ln for ln in lines[:200] if ln.strip()]
    bound = sum(1 for ln in head if "(" in ln and "=" in ln)
    return not (bound >= 3 and bound >= 0.6 * len(head))


def sniff(lines: list[str]) -> float:
    if _cannot_score(lines):
        return 0.0
    head = [ln for ln in lines[:200] if ln.strip()]
    if not head:
        return 0.0
    calls = sum(1 for ln in head if _CALL.match(ln, _prefix_end(ln)))
    return 0.85 if calls >= 3 and calls >= 0.6 * len(head) else 0.0


def parse(source: Source, ctx: ParseContext) -> None:
    unread = Unread(ctx.report)
    fds: dict[tuple[str, int], tuple[str, str]] = {}  # (pid, fd) -> (cgroup dir, file name)
    kept = 0
    for lineno, raw in source.lines(lambda n: ctx.report.warn(f"line {n} too long, skipped")):
        if not raw.strip():
            continue
        pm = _PREFIX.match(raw)
        assert pm is not None  # every part of the prefix is optional
        pid = pm.group(1) or pm.group(2) or ""
        body = raw[pm.end() :]
        m = _CALL.match(body)
        if m is None:
            if _SPECIAL.match(body):
                ctx.report.records += 1
            else:
                unread(lineno, raw)
            continue
        ctx.report.records += 1
        name, args, result = m.group(1), m.group(2), m.group(3)
        if name in ("openat", "open"):
            om = _OPEN_PATH.search(args)
            if om and result.isdigit():
                path = om.group(1)
                fds[(pid, int(result))] = (path.rsplit("/", 1)[0], om.group(2))
        elif name == "close":
            fd = args.strip()
            if fd.isdigit():
                fds.pop((pid, int(fd)), None)
        elif name == "read":
            rm = _READ.match(args)
            if rm is None:
                continue
            target = fds.get((pid, int(rm.group(1))))
            value = rm.group(2).replace("\\n", "").strip()
            if target is None or not value or kept >= MAX_FREEZES:
                continue
            cgroup, file = target
            ref = Ref(source.display, lineno, quote(raw))
            if file == "freezer.state" and value in ("FROZEN", "FREEZING", "THAWED"):
                frozen, state = value != "THAWED", value
            elif file == "cgroup.freeze" and value in ("0", "1"):
                frozen, state = value == "1", ""
            elif file == "cgroup.events" and value.startswith(("populated", "frozen")):
                frozen, state = "frozen 1" in value, ""
            else:
                continue
            ctx.evidence.cgroup_freezes.append(CgroupFreeze(cgroup, frozen, ref, state, "strace"))
            kept += 1
    unread.warn()
