"""Control characters from file names and log content are shown as escapes in text and
markdown output, goroutine text and error lines (never sent raw to a terminal)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from plegdoctor.report.common import escape_controls
from plegdoctor.report.markdown import render_markdown
from plegdoctor.report.text import render_text
from rulecheck import diagnose

ESC_LINE = (
    "E1014 17:14:42.470286    2261 kubelet.go:1765] skipping pod synchronization - PLEG is not healthy: pleg was "
    "last seen active 3m2.325658446s ago; threshold is 3m0s \x1b]0;pwned\x07\x1b[2J\u202e\n"
)


def test_escape_controls_keeps_newlines_and_escapes_the_rest() -> None:
    assert escape_controls("a\x1b[31mb\tc\nd\x9b\u202e") == "a\\x1b[31mb\tc\nd\\x9b\\u202e"
    assert escape_controls({"k\x07": ["x\x00", 3]}) == {"k\\x07": ["x\\x00", 3]}
    assert escape_controls("plain text") == "plain text"


def test_text_and_markdown_reports_quote_evidence_without_raw_escapes(tmp_path: Path) -> None:
    name = "kube\x1b[2Jlet.log"
    dg = diagnose({name: ESC_LINE}, tmp_path, year=2024)
    doc = dg.to_json()
    for out in (render_text(doc, color=False, width=200), render_markdown(doc)):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "\\x1b[2J" in out  # shown, not dropped


def test_goroutines_text_and_error_lines_are_escaped(tmp_path: Path) -> None:
    dump = tmp_path / "d\x1b]0;x\x07.txt"
    dump.write_text("goroutine 1 [running]:\nmain.main()\n\t/src/\x1b[2Jmain.go:10 +0x1d\n")
    out = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "goroutines", str(dump)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\\x1b" in out.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "plegdoctor.cli", "analyze", str(tmp_path / "no\x1b[2Jfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "\x1b" not in missing.stderr and "\\x1b" in missing.stderr
