"""Type stub of the compiled candidate loop (src/plegdoctor/_fastscan.c)."""

from collections.abc import Callable
from typing import Any

def scan_matches(
    buf: bytes | bytearray,
    start: int,
    end: int,
    matches: list[int],
    skip_to: int,
    counted_to: int,
    cur: int,
    tick_tag: int,
    on_line: Callable[[int, bytes, int], None],
    follow: Callable[[], bool] | None,
    follow_lines: Callable[[int, int], tuple[int, int]],
    ticker: Any,
    slow: Callable[[int, bytes], None] | None,
    check_multi: bool,
    klog: Callable[[int, bytes, int, str, int, int, int, float], None] | None,
) -> tuple[int, int]: ...
def count_nl(buf: bytes | bytearray, start: int, end: int) -> int: ...
def read_klog_head(line: bytes | bytearray) -> tuple[int, int, int, int, int] | None: ...
def intervals(ts: Any) -> tuple[bytes, bytes] | None: ...
