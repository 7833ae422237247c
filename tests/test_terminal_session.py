"""A pasted terminal session: each command's output read by its own parser, at its own lines."""

from __future__ import annotations

from pathlib import Path

from plegdoctor.model import RootCauseClass as C
from plegdoctor.parsers import sniff
from rulecheck import diagnose

REAL = Path(__file__).resolve().parent / "corpus" / "real" / "runc-4481-runc-init-D-refrigerator-frozen-ps-proc-stack"


def test_runc_4481_session_reads_ps_stack_and_uptime_at_their_lines() -> None:
    path = REAL / "terminal.txt"
    assert sniff(path.read_bytes())[0] == "terminal-session"
    dg = diagnose([path])
    (inp,) = dg.inputs
    assert inp.kind == "terminal-session"
    # ps -el lines 1-2 (runc init in D, wchan refrig), the stack after the `cat` prompt, uptime
    assert inp.records >= 4
    top = dg.root_causes[0]
    assert top.cls == C.RUNC_HANG
    quoted = {r.line for lk in top.chain for r in lk.evidence}
    assert 1 in quoted  # the ps line of pid 14378, quoted at its own line number
    # systemctl's output is no parser's: counted and named, not dropped silently
    assert inp.unparsed >= 3 and any("containerd.service" in w for w in inp.warnings)


def test_a_log_with_user_at_host_words_is_not_a_session(tmp_path: Path) -> None:
    log = (
        'I0602 05:48:06.350695    1679 generic.go:191] "GenericPLEG: Relisting"\n'
        'I0602 05:48:07.352436    1679 kubelet.go:2100] "SyncLoop ADD" source="api" pods=["ops/root@db-0"]\n'
        'I0602 05:48:08.352436    1679 generic.go:191] "GenericPLEG: Relisting"\n'
    )
    p = tmp_path / "kubelet.log"
    p.write_text(log)
    assert sniff(p.read_bytes())[0] == "kubelet-log"
