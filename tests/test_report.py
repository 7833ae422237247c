"""Reporters render the diagnosis document faithfully in every format."""

from __future__ import annotations

import json
import re

from plegdoctor.report import render

DOC = {
    "schema": "pleg-doctor/diagnosis/v1",
    "tool": {"name": "pleg-doctor", "version": "9.9.9"},
    "inputs": [
        {"path": "var/log/kubelet.txt", "kind": "kubelet-log", "records": 65, "warnings": [], "unparsed_lines": 2},
        {"path": "junk.bin", "kind": "unknown", "records": 0, "warnings": ["format not recognized; skipped"]},
    ],
    "pleg": {
        "relists": 65,
        "first": "2023-06-02T05:47:30.000000+00:00",
        "last": "2023-06-02T05:49:16.000000+00:00",
        "max_gap_seconds": 42.317391,
        "gaps": [
            {
                "start": "2023-06-02T05:48:07.352436+00:00",
                "end": "2023-06-02T05:48:49.669827+00:00",
                "seconds": 42.317391,
                "evidence": [
                    {"path": "var/log/kubelet.txt", "line": 37, "text": "I0602 05:48:07.352436 relist"},
                    {"path": "var/log/kubelet.txt", "line": 38, "text": "I0602 05:48:49.669827 relist"},
                ],
                "runtime": [
                    {
                        "ts": "2023-06-02T05:48:17.568049+00:00",
                        "process": "containerd",
                        "kind": "task-exit-failed",
                        "summary": "failed to handle TaskExit <8f71eadd>",
                        "path": "var/log/containerd.txt",
                        "line": 1,
                        "text": '{"error":"failed to delete task: context deadline exceeded"}',
                    }
                ],
            }
        ],
        "unhealthy": [],
    },
    "root_causes": [
        {
            "class": "fsync-io-pressure",
            "confidence": 0.72,
            "summary": "A content commit holds the bbolt writer lock while it fsyncs <a slow disk>.",
            "chain": [
                {
                    "kind": "rwmutex-read",
                    "process": "containerd",
                    "goroutine": 1665,
                    "detail": "ListContainers waits for container status read lock",
                    "evidence": [{"path": "dump.txt", "line": 52, "text": "goroutine 1665 [semacquire]:"}],
                }
            ],
            "fixes": ["Put /var/lib/containerd on its own disk."],
            "references": ["https://github.com/containerd/containerd/issues/8698"],
        }
    ],
    "findings": [
        {
            "code": "PD201",
            "severity": "critical",
            "title": "ListContainers blocked on a container status lock",
            "evidence": [{"path": "dump.txt", "line": 52, "text": "goroutine 1665 [semacquire]:"}],
            "fix": "x",
            "references": [],
        }
    ],
    "next_steps": ["cat /proc/pressure/io"],
    "notes": ["year 2023 for year-less stamps, from fully dated evidence"],
}


def test_text_fits_80_columns_without_colour_when_not_a_tty() -> None:
    out = render(DOC, "text", color=False)
    assert "\x1b[" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "Verdict: fsync-io-pressure (confidence 72%)" in out
    assert "42 s" in out and "2023-06-02 05:48:07.352Z -> 2023-06-02 05:48:49.669Z" in out
    assert "var/log/kubelet.txt:37" in out and "var/log/containerd.txt:1" in out
    assert "goroutine 1665" in out and "dump.txt:52" in out
    assert "PD201" in out and "cat /proc/pressure/io" in out
    assert "format not recognized" in out and "2 lines not understood" in out
    assert "assumed: year 2023" in out


def test_text_colour_on_request() -> None:
    assert "\x1b[" in render(DOC, "text", color=True)


def test_brackets_in_evidence_are_not_eaten_as_markup() -> None:
    out = render(DOC, "text", color=False)
    assert "[semacquire]" in out


def test_json_is_the_document() -> None:
    assert json.loads(render(DOC, "json")) == DOC


def test_markdown_has_tables_and_quotes() -> None:
    out = render(DOC, "markdown")
    assert "**Verdict:** fsync-io-pressure" in out
    assert re.search(r"^\| 42 s \| 2023-06-02 05:48:07\.352Z \|", out, re.M)
    assert "| PD201 | critical |" in out
    assert "`dump.txt:52`" in out


def test_html_escapes_untrusted_text_and_draws_gaps() -> None:
    out = render(DOC, "html")
    assert "<slow disk>" not in out and "&lt;a slow disk&gt;" in out
    assert "&lt;8f71eadd&gt;" in out
    assert out.count('class="gap"') == 1  # one gap drawn on the timeline
    assert 'id="verdict"' in out


def test_no_cause_verdicts() -> None:
    quiet = dict(DOC, root_causes=[], pleg=dict(DOC["pleg"], gaps=[]))
    assert "No PLEG stall" in render(quiet, "text", color=False)
    stalled = dict(DOC, root_causes=[])
    assert "does not show why" in render(stalled, "text", color=False)
