"""A JSON log line nested thousands of levels deep is one unread line, not a lost file.

`json.loads` raises RecursionError (not ValueError) on `[[[[...`; found by
bench/bench_pathological.py. Each JSON-reading parser gets the bomb line between two good
lines, and a look-alike: the same line with a sane nesting depth is read as JSON.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plegdoctor.pipeline import collect_evidence

DEEP = "[" * 100_000

GOOD = {
    "journal": (
        '{"__REALTIME_TIMESTAMP":"1700000000000000","_SYSTEMD_UNIT":"kubelet.service",'
        '"MESSAGE":"I1114 22:13:20.000000 1 generic.go:191] \\"GenericPLEG: Relisting\\""}'
    ),
    "containerd-log": '{"level":"info","msg":"starting containerd","time":"2023-11-14T22:13:20.000000000Z"}',
    "kubelet-log": '{"ts":1700000000.0,"caller":"pleg/generic.go:191","msg":"GenericPLEG: Relisting","v":5}',
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_a_deeply_nested_json_line_is_one_unread_line(tmp_path: Path, kind: str) -> None:
    good = GOOD[kind]
    bomb = '{"msg":' + DEEP if kind != "journal" else '{"MESSAGE":' + DEEP
    p = tmp_path / f"{kind}.log"
    p.write_text(f"{good}\n{bomb}\n{good}\n")
    (report,) = collect_evidence([str(p)], kinds={str(p): kind}, year=2023).inputs
    # the look-alike: the same good lines with a JSON line of sane depth in the middle
    q = tmp_path / f"{kind}-sane.log"
    q.write_text(f"{good}\n{bomb[:12]}{'[' * 50}{']' * 50}}}\n{good}\n")
    (sane,) = collect_evidence([str(q)], kinds={str(q): kind}, year=2023).inputs
    assert report.kind == sane.kind == kind
    assert report.unparsed == sane.unparsed == 1  # the bomb line is one unread line, like a sane non-log JSON line
    assert report.records == sane.records >= 2  # the good lines around it were read
