"""collect and check never execute a binary found through /proc or by a process's name (#10 item 1).

Fake processes named `kubelet`, `containerd` and `containerd-shim-runc-v2` run a small C
program that, when executed with any argument but `sleep`, writes a marker file: if collect ran
`/proc/<pid>/exe --version`, `kubelet --version` from PATH or `containerd config dump`, the
marker would appear. Every process spawned during collect is recorded and checked against the
fixed trusted tools. The runtime is the process serving the CRI socket (a fake CRI server in a
child process), found by SO_PEERCRED, not by name.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plegdoctor.live import containerd_config, discover, tools
from plegdoctor.live.actions import Actions, StepTimeout
from plegdoctor.live.collect import CollectOptions, collect_bundle, parse_since
from plegdoctor.live.gobinary import BuildInfo, binary_version, parse_modinfo, read_build_info
from plegdoctor.live.sources import logs
from plegdoctor.live.sources.versions import versions_text
from plegdoctor.live.tools import run_tail

SRC = Path(__file__).resolve().parents[1] / "src" / "plegdoctor"
TESTS = Path(__file__).resolve().parent

FAKE_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "sleep") == 0) { for (;;) pause(); }
    FILE *f = fopen(MARKER, "a");
    if (f) { fprintf(f, "executed %s %s\n", argv[0], argc > 1 ? argv[1] : ""); fclose(f); }
    return 0;
}
"""

FAKE_RUNTIME = """
import signal, sys, time
sys.path.insert(0, {tests!r})
from live_fakes import FakeCRI, standard_handlers
def on_usr1(signum, frame):
    with open({signals!r}, "a") as fh:
        fh.write("SIGUSR1\\n")
signal.signal(signal.SIGUSR1, on_usr1)
with FakeCRI({sock!r}, standard_handlers(2)):
    open({ready!r}, "w").close()
    while True:
        time.sleep(1)
"""


def _wait(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Fake kubelet/containerd/shim processes (a marker-writing C program) and a fake runtime serving a CRI socket."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the marker-writing fake binaries")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "EXECUTED"
    src = tmp_path / "fake.c"
    src.write_text(FAKE_C)
    built = tmp_path / "fake"
    subprocess.run([cc, f'-DMARKER="{marker}"', "-o", str(built), str(src)], check=True, timeout=60)
    for name in ("kubelet", "containerd", "containerd-shim-runc-v2"):
        shutil.copy(built, bindir / name)
    sock = str(tmp_path / "cri.sock")
    ready, signals = tmp_path / "ready", tmp_path / "runtime-signals"
    procs: list[subprocess.Popen[bytes]] = []
    kubelet_log = tmp_path / "kubelet.stderr"
    try:
        with open(kubelet_log, "w") as err:
            err.write("I0101 00:00:00.000000 1 kubelet.go:1 fake kubelet line\n")
            err.flush()
            procs.append(subprocess.Popen([str(bindir / "kubelet"), "sleep"], stderr=err))
        procs.append(subprocess.Popen([str(bindir / "containerd"), "sleep", "--config", "/etc/containerd/config.toml"]))
        procs.append(subprocess.Popen([str(bindir / "containerd-shim-runc-v2"), "sleep", "-address", sock]))
        unshare = shutil.which("unshare")
        other_ns = None
        if unshare and os.geteuid() == 0:
            other_ns = subprocess.Popen(
                [unshare, "-m", str(bindir / "containerd-shim-runc-v2"), "sleep", "-address", sock]
            )
            procs.append(other_ns)
        code = FAKE_RUNTIME.format(tests=str(TESTS), signals=str(signals), sock=sock, ready=str(ready))
        runtime = subprocess.Popen([sys.executable, "-c", code])
        procs.append(runtime)
        _wait(ready.exists)
        _wait(lambda: all(_comm(p.pid) != "fake" for p in procs[:3]))
        yield {
            "bindir": bindir,
            "marker": marker,
            "sock": sock,
            "runtime": runtime.pid,
            "kubelet": procs[0].pid,
            "containerd": procs[1].pid,
            "shim": procs[2].pid,
            "other_ns_shim": other_ns.pid if other_ns else None,
            "signals": signals,
        }
    finally:
        for p in procs:
            with_pid = p.poll() is None
            if with_pid:
                p.kill()
            p.wait(10)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every process spawned (subprocess.Popen) or exec'd (os.exec*/spawn*/system/posix_spawn) from now on."""
    seen: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            seen.append([str(x) for x in ([args] if isinstance(args, str | bytes | os.PathLike) else args)])
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Recording)

    def refuse(name: str) -> Any:
        def fn(*args: Any, **kw: Any) -> Any:
            seen.append([name, *map(str, args[:2])])
            raise AssertionError(f"os.{name} called during collect")

        return fn

    for name in ("execv", "execve", "execvp", "execvpe", "execl", "execlp", "execle", "execlpe", "system", "popen"):
        monkeypatch.setattr(os, name, refuse(name))
    for name in ("posix_spawn", "posix_spawnp", "spawnv", "spawnve", "spawnvp", "spawnl"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(name))
    return seen


def _fake_journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    tool = tmp_path / "journalctl"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    monkeypatch.setitem(tools.TRUSTED_TOOLS, "journalctl", (str(tool),))
    monkeypatch.setattr(tools, "_TRUSTED_PATHS", frozenset({str(tool), *tools.TRUSTED_TOOLS["dmesg"]}))
    return str(tool)


def _read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    with tarfile.open(path) as tar:
        members = {n: tar.extractfile(n).read().decode("utf-8", "replace") for n in tar.getnames()}  # type: ignore[union-attr]
    return json.loads(members["manifest.json"]), members


def test_collect_executes_nothing_it_found_through_proc(
    fakes: dict[str, Any], spawned: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a PATH lookup of kubelet/containerd would find the fakes first
    monkeypatch.setenv("PATH", f"{fakes['bindir']}:{os.environ.get('PATH', '')}")
    journalctl = _fake_journalctl(tmp_path, monkeypatch, 'echo "2026-01-01T00:00:01.000000+0000 n kubelet[1]: hi"\n')
    monkeypatch.setattr(logs, "journal_available", lambda: True)
    out = tmp_path / "b.tar.gz"
    opts = CollectOptions(
        output=str(out),
        since="1h",
        runtime_endpoint=f"unix://{fakes['sock']}",
        step_timeout=5,
        dump_timeout=1.0,
        sample_interval=0.01,
        node="n",
    )
    collect_bundle(opts)
    manifest, members = _read_bundle(out)

    assert not fakes["marker"].exists(), fakes["marker"].read_text()
    # the only programs run: the trusted journalctl, by its fixed path
    assert spawned and all(argv[0] == journalctl for argv in spawned), spawned
    actions = manifest["actions"]
    commands = [a for a in actions if a["type"] == "command"]
    assert [a["argv"] for a in commands] == spawned and all(a["exit"] == 0 for a in commands)
    # the runtime is the process serving the socket, not the process named containerd
    runtime = manifest["runtime"]
    assert runtime["containerd_pid"] == fakes["runtime"] != fakes["containerd"]
    assert runtime["found_by"] == f"SO_PEERCRED of {fakes['sock']}"
    assert runtime["name"] == "containerd" and runtime["version"] == "1.6.20~fake"
    calls = [a["call"] for a in actions if a["type"] == "socket"]
    assert calls[:3] == ["connect (SO_PEERCRED; no request sent)", "CRI Version", "CRI ListContainers"]
    # signals: the runtime and the shim in its mount namespace; never the look-alikes
    signalled = {a["pid"]: a for a in actions if a["type"] == "signal"}
    assert fakes["runtime"] in signalled and signalled[fakes["runtime"]]["signal"] == "SIGUSR1"
    assert fakes["shim"] in signalled
    assert fakes["containerd"] not in signalled and fakes["kubelet"] not in signalled
    if fakes["other_ns_shim"] is not None:
        assert fakes["other_ns_shim"] not in signalled
    _wait(lambda: fakes["signals"].exists())
    assert fakes["signals"].read_text() == "SIGUSR1\n"
    # no config dump member; versions read, not run
    assert "config/containerd-config-dump.toml" not in members
    versions = members["versions.txt"]
    assert "containerd: containerd github.com/containerd/containerd 1.6.20~fake\n" in versions
    assert "containerd_source: CRI Version on unix://" in versions
    assert re.search(rf"kubelet: unknown \(.*/proc/{fakes['kubelet']}/exe read, not executed\)", versions)


def test_collect_cli_states_what_it_ran(fakes: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "c.tar.gz"
    env = {**os.environ, "PATH": f"{fakes['bindir']}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "plegdoctor.cli", "collect", "-o", str(out), "--no-dump"),
            *("--step-timeout", "5", "--runtime-endpoint", f"unix://{fakes['sock']}"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert not fakes["marker"].exists()
    assert "changed nothing on the node" not in proc.stderr
    assert "pleg-doctor collect: sent no signal" in proc.stderr
    assert f"CRI Version on unix://{fakes['sock']}" in proc.stderr
    manifest, _ = _read_bundle(out)
    assert not [a for a in manifest["actions"] if a["type"] == "signal"]


def test_kubelet_and_shims_are_chosen_by_mount_namespace(fakes: dict[str, Any]) -> None:
    assert discover.find_kubelet_pid() == fakes["kubelet"]
    shims = discover.shim_pids_of(fakes["sock"], fakes["runtime"])
    assert fakes["shim"] in shims
    if fakes["other_ns_shim"] is None:
        pytest.skip("needs root and unshare for a process in another mount namespace")
    assert fakes["other_ns_shim"] not in shims
    assert fakes["other_ns_shim"] in discover.shim_pids_of(fakes["sock"])  # same name and address: ns decides


def test_run_tail_refuses_untrusted_binaries(fakes: dict[str, Any]) -> None:
    for argv in (
        [str(fakes["bindir"] / "kubelet"), "--version"],
        ["kubelet", "--version"],
        [f"/proc/{fakes['kubelet']}/exe", "--version"],
    ):
        with pytest.raises(RuntimeError, match="not run"):
            run_tail(argv, 5)
    assert not fakes["marker"].exists()


def test_run_tail_runs_a_trusted_tool_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _fake_journalctl(tmp_path, monkeypatch, "echo one\necho two\nexit 0\n")
    actions = Actions()
    tail = run_tail([tool, "-u", "x"], 5, actions=actions)
    assert tail.lines == ["one\n", "two\n"] and tail.dropped == 0 and tail.note() is None
    (item,) = actions.items
    assert item["argv"] == [tool, "-u", "x"] and item["exit"] == 0 and item["type"] == "command"


def test_journal_tail_keeps_the_newest_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _fake_journalctl(tmp_path, monkeypatch, 'seq 1 200000 | sed "s/^/line /"\n')
    tail = run_tail([tool], 10, max_bytes=4096)
    assert tail.lines[-1] == "line 200000\n"
    assert all(re.fullmatch(r"line \d+\n", ln) for ln in tail.lines)  # the partial first line was dropped
    numbers = [int(ln.split()[1]) for ln in tail.lines]
    assert numbers == list(range(numbers[0], 200001)) and numbers[0] > 199000
    assert tail.total == sum(len(f"line {i}\n") for i in range(1, 200001))
    assert tail.dropped == tail.total - sum(len(ln) for ln in tail.lines)
    assert f"{tail.dropped} dropped from the head" in (tail.note() or "")
    # the look-alike: a cap larger than the output keeps everything and says nothing was cut
    full = run_tail([tool], 10, max_bytes=64 << 20)
    assert len(full.lines) == 200000 and full.dropped == 0 and full.note() is None


def test_run_tail_stderr_is_bounded_and_never_written_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 32 MiB of stderr (journalctl complaining about every corrupt file) then a failed exit
    tool = _fake_journalctl(
        tmp_path, monkeypatch, "head -c 33554432 /dev/zero | tr '\\0' e >&2\necho last >&2\nexit 3\n"
    )
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    with pytest.raises(RuntimeError, match=r"exited 3: e+$") as exc:
        run_tail([tool], 20)
    assert len(str(exc.value)) < 600  # the first 400 bytes at most, not 32 MiB
    assert list(tmpdir.iterdir()) == []
    # the look-alike: a short stderr of a failed run gives its own line
    short = _fake_journalctl(tmp_path, monkeypatch, "echo 'No journal files were found.' >&2\nexit 1\n")
    with pytest.raises(RuntimeError, match=r"exited 1: No journal files were found\.$"):
        run_tail([short], 5)


def test_journal_lines_and_the_bundle_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_journalctl(tmp_path, monkeypatch, 'seq 1 50000 | sed "s/^/2026-01-01T00:00:00.000000+0000 n kubelet[1]: /"\n')
    monkeypatch.setattr(logs, "journal_available", lambda: True)
    monkeypatch.setattr(logs, "MAX_LOG_BYTES", 8192)
    monkeypatch.setattr(logs, "journal_lines", lambda u, s, t, a: run_tail([logs.journal_argv(u, s)[0]], t, 8192, a))
    from plegdoctor.live.bundle import BundleWriter

    w = BundleWriter(tmp_path / "j.tar.gz", node="n")
    logs._collect_log(w, "logs/kubelet", "kubelet", None, parse_since("1h"), 5, lambda m: None, [], Actions())
    (entry,) = w.entries
    w.abort()
    assert entry.truncated and entry.note and "dropped from the head" in entry.note


def test_run_tail_deadline_kills_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _fake_journalctl(tmp_path, monkeypatch, "echo started\nexec sleep 30\n")
    actions = Actions()
    t0 = time.monotonic()
    with pytest.raises(StepTimeout, match="killed"):
        run_tail([tool], 0.5, actions=actions)
    assert time.monotonic() - t0 < 5
    assert actions.items[0]["exit"] is None


def test_run_tail_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _fake_journalctl(tmp_path, monkeypatch, "echo 'No journal files were found.' >&2\nexit 1\n")
    with pytest.raises(RuntimeError, match=r"exited 1: No journal files were found\.$"):
        run_tail([tool], 5)


def _dpkg_upstream(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        return None
    version = proc.stdout.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


@pytest.mark.parametrize("binary", ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2"])
def test_elf_version_of_real_containerd_matches_dpkg(binary: str) -> None:
    expected = _dpkg_upstream("containerd")
    if expected is None or not os.path.exists(binary):
        pytest.skip("needs Debian's containerd package")
    bv = binary_version("containerd", binary)
    assert bv.version is not None and bv.version.value == expected, bv
    assert bv.go.startswith("go1.") and bv.module.startswith("github.com/containerd/containerd/cmd/")
    info = read_build_info(binary)
    assert info is not None and info.go == bv.go


def test_elf_reader_on_real_runc_reads_its_build_info() -> None:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("needs runc")
    bv = binary_version("runc", runc)
    assert bv.module == "github.com/opencontainers/runc" and bv.go.startswith("go1.")
    if os.path.exists("/usr/bin/containerd"):  # the look-alike: containerd's file has no kubelet version
        assert binary_version("kubelet", "/usr/bin/containerd").version is None


def test_build_info_ldflags_give_kubelet_version() -> None:
    text = textwrap.dedent(
        """\
        path\tk8s.io/kubernetes/cmd/kubelet
        mod\tk8s.io/kubernetes\t(devel)\t
        build\t-compiler=gc
        build\t-ldflags="-s -w -X 'k8s.io/component-base/version.gitVersion=v1.28.2' -X {commit}"
        build\tvcs.revision=abc
        """
    ).format(commit="k8s.io/component-base/version.gitCommit=89a4ea3e1e4ddd7f7572286090359983e0387b2f")
    info = parse_modinfo(text, "go1.20.8")
    assert info.path == "k8s.io/kubernetes/cmd/kubelet" and info.module_version == "(devel)"
    stamped = info.ldflags_vars()
    assert stamped["k8s.io/component-base/version.gitVersion"] == "v1.28.2"
    assert stamped["k8s.io/component-base/version.gitCommit"].startswith("89a4ea3")
    # the look-alike: no -X, no version
    assert BuildInfo(settings={"-ldflags": "-s -w"}).ldflags_vars() == {}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x7fELF",
        b"\x7fELF\x02\x01" + b"\x00" * 10 + b"\xff" * 200,  # absurd table offsets and counts
        b"\x7fELF\x02\x01\x01" + b"\x00" * 200 + b"\xff Go buildinf:\x08\x02" + b"\x00" * 16 + b"\xff" * 20,
        b"\xff Go buildinf:\x08\x00" + b"\xff" * 64,
        os.urandom(4096),
    ],
)
def test_hostile_binaries_give_no_version_and_no_exception(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bin"
    path.write_bytes(data)
    bv = binary_version("kubelet", str(path))
    assert bv.version is None and bv.revision is None
    assert read_build_info(str(path)) is None


def test_versions_text_reads_never_runs(fakes: dict[str, Any], spawned: list[list[str]]) -> None:
    lines = versions_text(fakes["containerd"], fakes["kubelet"], None, ("v9.9.9", "unix:///x.sock"))
    text = "".join(lines)
    assert "containerd: containerd github.com/containerd/containerd v9.9.9\n" in text
    assert f"kubelet: unknown (no version in its Go build info or symbols; /proc/{fakes['kubelet']}/exe read" in text
    assert spawned == [] and not fakes["marker"].exists()


# -- static: no code path executes anything but fixed tools ---------------------------------------
_EXEC_CALLS = (
    {
        ("subprocess", name)
        for name in ("run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput")
    }
    | {("os", name) for name in ("system", "popen", "posix_spawn", "posix_spawnp")}
    | {("os", f"exec{s}") for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
    | {("os", f"spawn{s}") for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
    | {("pty", "spawn")}
)

# (file under src/plegdoctor, enclosing function) -> what argv[0] it runs, and why that is fixed
ALLOWED = {
    ("live/tools.py", "run_tail"): "a TRUSTED_TOOLS path only (journalctl, dmesg); refuses anything else",
    ("live/cri/gen.py", "build_descriptor"): "sys.executable -m grpc_tools.protoc (developer tool, not run on nodes)",
    ("kubectl_plugin.py", "_run"): "the user's kubectl on a workstation (--kubectl, default from PATH), not on a node",
}


def _exec_sites() -> list[tuple[str, str, str]]:
    sites = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("lab/", "testbed/")):
            continue  # run binaries they installed themselves
        tree = ast.parse(path.read_text(), rel)
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            base = node.func.value
            if isinstance(base, ast.Name) and (base.id, node.func.attr) in _EXEC_CALLS:
                fn: ast.AST | None = node
                while fn is not None and not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    fn = parents.get(fn)
                sites.append(
                    (
                        rel,
                        fn.name if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) else "<module>",
                        f"{base.id}.{node.func.attr}:{node.lineno}",
                    )
                )
        src = path.read_text()
        for m in re.finditer(r"^\s*from (subprocess|os|pty) import ([^\n]+)", src, re.M):
            names = {n.strip().split(" as ")[0] for n in m.group(2).strip("()").split(",")}
            bad = {n for n in names if (m.group(1), n) in _EXEC_CALLS}
            assert not bad, f"{rel}: `from {m.group(1)} import {', '.join(sorted(bad))}` hides an exec from this test"
    return sites


def test_every_exec_in_the_package_is_a_fixed_tool() -> None:
    sites = _exec_sites()
    unexpected = [s for s in sites if (s[0], s[1]) not in ALLOWED]
    assert unexpected == [], f"exec sites not in the allowlist (fixed argv[0]s only): {unexpected}"
    assert {(s[0], s[1]) for s in sites} == set(ALLOWED), "an allowlisted exec site is gone: shrink ALLOWED"
    assert not [s for s in sites if s[0] == "checkcmd.py"]
    assert {"/usr/bin/journalctl", "/bin/journalctl", "/usr/bin/dmesg", "/bin/dmesg"} == tools._TRUSTED_PATHS


def test_exec_site_scanner_sees_a_planted_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "pkg"
    (planted / "live").mkdir(parents=True)
    (planted / "live" / "x.py").write_text("import subprocess\n\ndef f(p):\n    subprocess.run([p, '--version'])\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", planted)
    assert _exec_sites() == [("live/x.py", "f", "subprocess.run:4")]


def test_signal_actions_name_pid_and_why() -> None:
    a = Actions()
    a.signal(42, signal.SIGUSR1, "goroutine dump")
    a.command(["/usr/bin/journalctl", "-u", "kubelet"], 0, 0.5)
    a.socket("unix:///x", "CRI Version", 0.01)
    assert a.summary() == [
        "ran /usr/bin/journalctl -u kubelet",
        "sent SIGUSR1 to pid 42 (goroutine dump)",
        "socket calls: CRI Version on unix:///x",
    ]
    assert Actions().summary() == ["ran no command", "sent no signal", "socket calls: none"]


def test_containerd_config_and_its_imports_are_read_not_dumped(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "containerd"
    (etc / "conf.d").mkdir(parents=True)
    main = etc / "config.toml"
    main.write_text('version = 2\nimports = ["conf.d/*.toml", "/nonexistent/*.toml"]\n')
    (etc / "conf.d" / "10-a.toml").write_text(
        'imports = ["../b.toml"]\n[plugins."io.containerd.grpc.v1.cri"]\n  x = 1\n'
    )
    (etc / "conf.d" / "20-big.toml").write_text("# " + "x" * (containerd_config.MAX_CONFIG_BYTES + 10) + "\n")
    (etc / "b.toml").write_text("version = 2\n")
    got = containerd_config.containerd_configs(None, str(main))
    assert [(Path(p).name, text is not None) for p, text, _ in got] == [
        ("config.toml", True),
        ("10-a.toml", True),
        ("20-big.toml", False),
        ("b.toml", True),
    ]
    assert "larger than" in (got[2][2] or "")
    # the look-alike: a config without imports is one file
    main.write_text("version = 2\n")
    assert len(containerd_config.containerd_configs(None, str(main))) == 1


def test_config_import_loops_and_fan_out_are_bounded(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    for i in range(containerd_config.MAX_CONFIG_FILES + 5):
        (d / f"{i:03d}.toml").write_text('imports = ["*.toml"]\n')  # every file imports all, itself included
    got = containerd_config.containerd_configs(None, str(d / "000.toml"))
    assert len(got) == containerd_config.MAX_CONFIG_FILES + 1
    assert "imports not read" in (got[-1][2] or "")
