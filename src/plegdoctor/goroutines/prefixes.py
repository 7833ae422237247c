"""The log prefixes a goroutine dump may carry (journald/syslog, a time of day, a markdown
fence glued to the first line), on their own so that the dump sniffer reads them without
importing the goroutine engine (`framing` uses them to strip what it reads)."""

from __future__ import annotations

import re

from plegdoctor.lazyre import lazy_re

JOURNAL_PREFIX = lazy_re(
    r"(?:<\d{1,3}>(?:1 )?)?"
    r"(?:(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<day>[ \d]\d) "
    r"(?P<hms>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?"
    r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?))"
    r" (?P<host>\S+) (?P<ident>[A-Za-z0-9_.@/-]+)(?:\[(?P<pid>[0-9]{1,10})\])?: ?"
)


# A time of day only (`15:20:23 dockerd[1748]: `, `15:20:23.123456 host dockerd[1748]: `),
# as some log viewers and ticket pastes print it: the pid is required.
TOD_PREFIX = re.compile(
    r"(?P<tod>\d\d:\d\d:\d\d)(?:[.,](?P<frac>\d{1,9}))? (?:(?P<host>[^\s\[\]]+) )?"
    r"(?P<ident>[A-Za-z][A-Za-z0-9_.@/-]*)\[(?P<pid>[0-9]{1,10})\]: ?"
)


def unglue_fence(line: str) -> str:
    """A markdown fence glued to the first pasted line (```` ```Dec 29 02:14:19 host kubelet[1]:
    goroutine ...````): the line without the fence, when what follows is a log prefix or a
    goroutine header; any other fence line is returned as it is (and skipped as a fence)."""
    rest = line.lstrip("`~")
    if rest.startswith("goroutine ") or JOURNAL_PREFIX.match(rest) or TOD_PREFIX.match(rest):
        return rest
    return line


def strip_log_prefix(line: str) -> str:
    """`line` without a journald/syslog or time-of-day prefix (for sniffers)."""
    if line[:3] in ("```", "~~~"):
        line = unglue_fence(line)
    c = line[:1]
    if c and (c in "JFMASOND<" or c.isdigit()):
        m = JOURNAL_PREFIX.match(line)
        if m is None and c.isdigit():
            m = TOD_PREFIX.match(line)
        if m is not None:
            return line[m.end() :]
    return line
