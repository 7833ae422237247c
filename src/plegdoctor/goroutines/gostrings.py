"""Go string literals: the one `go_unquote` (undoing `strconv.Quote`, which logrus uses for
field values and klog for structured values) and the scanning helpers around it.

Used by the goroutine framings (logrus one-line dumps, their `key="value"` fields) and by
the log parsers (klog structured values, logrus fields). Escapes: the one-character ones
(`\\n`, `\\t`, `\\"`, `\\\\`, `\\a`, ...), `\\xHH` (a raw byte: ASCII kept, a byte of 0x80
or more, alone not valid UTF-8, becomes U+FFFD), `\\uHHHH`, `\\UHHHHHHHH` (an invalid code
point becomes U+FFFD) and three-digit octal. A backslash that starts none of these (Go
never writes one: `\\q`, a `\\x` without two hex digits) is kept as it is. Never raises.
"""

from __future__ import annotations

import re

from plegdoctor.lazyre import lazy_re

_GO_ESCAPE = lazy_re(r"""\\(?:([abfnrtv\\"'])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3}))""")
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
# a backslash followed by anything but a one-character escape (or a backslash)
_NOT_SIMPLE = lazy_re(r"""\\[^abfnrtv\\"']""")
_SIMPLE_PAIRS = [("\\" + k, v) for k, v in _SIMPLE.items() if k != "\\"]

# A Go-quoted string, unrolled-loop form (fast on megabyte-long goroutine dumps).
GO_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'


def _go_escape(m: re.Match[str]) -> str:
    if m.group(1):
        return _SIMPLE[m.group(1)]
    if m.group(2):
        # \xHH is a raw byte in Go; an isolated one is not valid UTF-8 on its own.
        b = int(m.group(2), 16)
        return chr(b) if b < 0x80 else "\ufffd"
    if m.group(3):
        return chr(int(m.group(3), 16))
    if m.group(4):
        cp = int(m.group(4), 16)
        return chr(cp) if cp <= 0x10FFFF else "\ufffd"
    return chr(int(m.group(5), 8) & 0xFF)


def go_unquote(body: str) -> str:
    """The text of a Go-quoted string *without* its surrounding quotes."""
    if "\\" not in body:
        return body
    if _NOT_SIMPLE.search(body) is None:
        # Only one-character escapes (a line of 64 KiB `\"` is 32 768 of them): split at the
        # escaped backslashes (left to right, as escapes are read), where every backslash
        # left starts an escape of one character; str.replace is C, the callback is not.
        parts = body.split("\\\\")
        for i, part in enumerate(parts):
            if "\\" in part:
                for esc, ch in _SIMPLE_PAIRS:
                    part = part.replace(esc, ch)
                parts[i] = part
        return "\\".join(parts)
    return _GO_ESCAPE.sub(_go_escape, body)


def closing_quote(text: str, start: int) -> int:
    """Index of the `"` ending a Go-quoted string whose body starts at `start`, or -1."""
    i = text.find('"', start)
    while i >= 0:
        j = i - 1
        n = 0
        while j >= start and text[j] == "\\":
            n += 1
            j -= 1
        if n % 2 == 0:
            return i
        i = text.find('"', i + 1)
    return -1
