"""The HTML report as a person sees it: rendered by a real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import require
from plegdoctor.commands import demo_dir, render
from plegdoctor.pipeline import analyze_paths

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _chromium() -> str:
    require("chromium")
    exe = shutil.which("chromium")
    assert exe
    return exe


def test_demo_report_renders_in_chromium(tmp_path: Path) -> None:
    exe = _chromium()
    diagnosis = analyze_paths([str(demo_dir())], display_root=str(demo_dir().parent))
    page = tmp_path / "report.html"
    page.write_text(render(diagnosis, "html"), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="pleg-doctor-chromium-") as profile:
        dom = subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        shot = tmp_path / "report.png"
        shot_args = [f"--user-data-dir={profile}", "--window-size=1200,1600", f"--screenshot={shot}"]
        subprocess.run(
            [exe, *CHROMIUM_FLAGS, *shot_args, page.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
    # The DOM Chromium built holds the verdict, the gap table with its evidence, the chain.
    assert 'id="verdict"' in dom and "fsync-io-pressure" in dom
    assert "42 s" in dom and "seed-incident/var/log/journal-kubelet.txt:37" in dom
    assert "TaskExit handling failed" in dom
    assert "goroutine 1665" in dom
    assert '<svg id="timeline"' in dom
    # The screenshot is a real PNG of a non-trivial page.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
