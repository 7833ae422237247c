"""Redaction by structure (#10 item 5): a battery of secret shapes, each gone from the output and
replaced by the marker, and look-alikes that must come out unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from plegdoctor.live import redact
from plegdoctor.live.bundle import BundleWriter
from plegdoctor.live.redact import (
    REDACTED,
    EnvRedactor,
    LineRedactor,
    RedactedLines,
    redact_argv,
    redact_json,
    redact_toml,
    redactor_for,
)
from plegdoctor.live.sources.stacks import task_stacks
from plegdoctor.live.sources.tasks import Task, iter_tasks, ps_table
from plegdoctor.parsers.runtime_config import config_from_text


def _lines(redactor: LineRedactor, text: str) -> tuple[str, int]:
    out = "".join(redactor.lines(text.splitlines(keepends=True)))
    return out, redactor.count


def by_line(text: str) -> tuple[str, int]:
    return _lines(LineRedactor(), text)


def by_env(text: str) -> tuple[str, int]:
    return _lines(EnvRedactor(), text)


def by_argv(argv: list[str]) -> tuple[str, int]:
    out, n = redact_argv(argv)
    return "\0".join(out), n


def by_raw_member(text: str) -> tuple[str, int]:
    """A member added with redact=False (a goroutine dump): the minimal rules still run."""
    r = redactor_for("goroutine-dump", "goroutines/containerd-1.stacks.log", redact=False)
    out = "".join(r.lines(text.splitlines(keepends=True)))
    return out, r.count


@dataclass(frozen=True)
class Case:
    shape: str
    run: Callable[..., tuple[str, int]]
    data: object
    secrets: tuple[str, ...]
    count: int | None = None  # redactions expected (default: one per secret)


PEM_BODY = ("MIIEowIBAAKCAQEA0Z3VS5JJcds3xfnygWyF8PbnGy0AHB7MbQ9zV3f0V8pemBody1", "abcdEFGH1234pemBody2xyzQ==")
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGVnLWRvY3RvciJ9.c2lnbmF0dXJlLXNlY3JldA"

CASES = [
    # key = value by key name, in any text
    Case("toml kv", by_line, 'password = "s3cr3t-kv1"', ("s3cr3t-kv1",)),
    Case("json kv", by_line, '{"auth": "dXNlcjpwYXNzLWt2Mg=="}', ("dXNlcjpwYXNzLWt2Mg==",)),
    Case("identitytoken", by_line, 'identitytoken = "idtok-kv3"', ("idtok-kv3",)),
    Case("camelCase key", by_line, '{"apiKey": "apikey-kv4"}', ("apikey-kv4",)),
    Case("env var in a log", by_line, "exec: DB_PASSWORD=dbpw-kv5 ./start", ("dbpw-kv5",)),
    Case("aws secret key var", by_line, "AWS_SECRET_ACCESS_KEY=wJalr/K7MDENG+kv6", ("wJalr/K7MDENG+kv6",)),
    Case("client_secret", by_line, "client_secret: 'cs-kv7'", ("cs-kv7",)),
    Case("X-Registry-Auth header", by_line, "X-Registry-Auth: eyJ1c2VybmFtZSI6ImtWOCJ9", ("eyJ1c2VybmFtZSI6ImtWOCJ9",)),
    # flags in a joined command line
    Case("--token=X", by_line, "kubeadm join --token=abcdef.flag9secret", ("abcdef.flag9secret",)),
    Case("--token X", by_line, "1 1 S - agent /bin/agent --token flag10-secret -v", ("flag10-secret",)),
    Case("--password X", by_line, "mysql --password flag11-pw --host db", ("flag11-pw",)),
    Case("--creds user:pw", by_line, "skopeo copy --creds bob:flag12-pw docker://a", ("flag12-pw",)),
    # headers
    Case("bearer", by_line, "Authorization: Bearer hdr13-bearer-token", ("hdr13-bearer-token",)),
    Case("basic", by_line, "authorization=Basic aGRyMTQtYmFzaWM=", ("aGRyMTQtYmFzaWM=",)),
    Case("token scheme", by_line, "Authorization: token hdr15-gh-token", ("hdr15-gh-token",)),
    Case("proxy-authorization", by_line, "Proxy-Authorization: Basic aGRyMTYtcHJveHk=", ("aGRyMTYtcHJveHk=",)),
    Case("cookie", by_line, "Cookie: session=hdr17-cookie; theme=dark", ("hdr17-cookie",)),
    Case("set-cookie", by_line, "Set-Cookie: sid=hdr18-setcookie; Path=/; HttpOnly", ("hdr18-setcookie",)),
    # URLs
    Case("url user:pw", by_line, "pull https://user:url19-pw@registry.example/v2/", ("url19-pw",)),
    Case("url token@", by_line, "git clone https://url20tokenvalue@github.com/o/r.git", ("url20tokenvalue",)),
    # env printed by containerd / JSON env arrays
    Case("CRI KeyValue env", by_line, "Envs:[]*KeyValue{&KeyValue{Key:DB_PASS,Value:env21-v,},}", ("env21-v",)),
    Case("JSON env array", by_line, '"Env":["DB_PASSWORD=env22-v","X=1"]', ("env22-v",), count=2),
    # TOML shapes, line by line (the fallback for invalid TOML)
    Case("toml '''", by_line, "password = '''toml23-pw'''", ("toml23-pw",)),
    Case(
        "toml ''' multi-line", by_line, "token = '''\ntoml24-a\ntoml24-b'''\nroot = \"/x\"", ("toml24-a", "toml24-b"), 1
    ),
    Case("toml array", by_line, 'passwords = ["toml25-a", "toml25-b"]', ("toml25-a", "toml25-b")),
    Case("toml array multi-line", by_line, 'tokens = [\n  "toml26-a",\n  "toml26-b",\n]', ("toml26-a", "toml26-b"), 1),
    Case(
        "toml table array multi-line",
        lambda t: redact_toml(t),
        '[x.registry.configs."r".auth]\n  tokens = [\n    "toml26c-a",\n    "toml26c-b",\n  ]\n',
        ("toml26c-a", "toml26c-b"),
    ),
    Case(
        "toml registry username",
        lambda t: redact_toml(t),
        '[a.registry.configs."r".auth]\nusername = "toml26d"\n',
        ("toml26d",),
    ),
    # kubeconfig YAML
    Case("*-data key", by_line, "    client-key-data: LS0tLS1CRUdJTiBreWFtbDI3", ("LS0tLS1CRUdJTiBreWFtbDI3",)),
    Case("yaml token", by_line, "    token: yaml28-token", ("yaml28-token",)),
    Case("yaml quoted password", by_line, '    password: "yaml29-pw"', ("yaml29-pw",)),
    Case(
        "yaml block scalar", by_line, "  token: |\n    yaml30-a\n    yaml30-b\n  other: 1", ("yaml30-a", "yaml30-b"), 1
    ),
    # PEM
    Case(
        "PEM private key",
        by_line,
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END RSA PRIVATE KEY-----",
        PEM_BODY,
        1,
    ),
    Case(
        "PEM in a journald prefix",
        by_line,
        "Nov 28 n1 app[1]: -----BEGIN OPENSSH PRIVATE KEY-----\nNov 28 n1 app[1]: b3BlbnNzaC1rZXktdjEpem32\n"
        "Nov 28 n1 app[1]: -----END OPENSSH PRIVATE KEY-----",
        ("b3BlbnNzaC1rZXktdjEpem32",),
        1,
    ),
    Case(
        "PEM on one line",
        by_line,
        '{"key": "x", "k": "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIpem33oneline\\n-----END EC PRIVATE KEY-----"}',
        ("MHcCAQEEIpem33oneline",),
    ),
    # known token prefixes, anywhere
    Case(
        "ghp_",
        by_line,
        "using ghp_16C7e42F292c6912E7710c838347Ae178B4a ok",
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a",),
    ),
    Case(
        "gho_", by_line, "oauth gho_16C7e42F292c6912E7710c838347Ae178B4a", ("gho_16C7e42F292c6912E7710c838347Ae178B4a",)
    ),
    Case(
        "github_pat_", by_line, "pat github_pat_11ABCDEFG0abcdefghijklmnop", ("github_pat_11ABCDEFG0abcdefghijklmnop",)
    ),
    Case("glpat-", by_line, "gitlab glpat-xxxxXXXXxxxx2000yyyy", ("glpat-xxxxXXXXxxxx2000yyyy",)),
    Case("slack xoxb-", by_line, "slack xoxb-1234567890-abcdefghij", ("xoxb-1234567890-abcdefghij",)),
    Case("AWS access key id", by_line, "id AKIAIOSFODNN7EXAMPLE used", ("AKIAIOSFODNN7EXAMPLE",)),
    Case("JWT", by_line, f"sa jwt {JWT} end", (JWT,)),
    Case("openai sk-", by_line, "key sk-proj-abcdefghijklmnopqrstuv1234", ("sk-proj-abcdefghijklmnopqrstuv1234",)),
    Case("stripe sk_live_", by_line, "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", ("sk_live_4eC39HqLyjWDarjtT1zdp7dc",)),
    Case(
        "google AIza",
        by_line,
        "g AIzaSyA1234567890abcdefghijklmnopqrstuv",
        ("AIzaSyA1234567890abcdefghijklmnopqrstuv",),
    ),
    Case(
        "npm_", by_line, "npm npm_abcdefghijklmnopqrstuvwxyz0123456789", ("npm_abcdefghijklmnopqrstuvwxyz0123456789",)
    ),
    Case(
        "docker hub dckr_pat_", by_line, "hub dckr_pat_abcdefghijklmnopqrstuvw", ("dckr_pat_abcdefghijklmnopqrstuvw",)
    ),
    Case("vault hvs.", by_line, "vault hvs.CAESIabcdefghijklmnopqrstuv", ("hvs.CAESIabcdefghijklmnopqrstuv",)),
    # argv, element by element
    Case("argv --token X", by_argv, ["agent", "--token", "argv47-tok"], ("argv47-tok",)),
    Case("argv --password=Y", by_argv, ["agent", "--password=argv48-pw"], ("argv48-pw",)),
    Case("argv --creds", by_argv, ["skopeo", "--creds", "bob:argv49-pw"], ("argv49-pw",)),
    Case("argv curl -u", by_argv, ["curl", "-u", "bob:argv50-pw", "https://x"], ("argv50-pw",)),
    Case("argv KEY=VALUE", by_argv, ["env", "API_TOKEN=argv51-tok", "run"], ("argv51-tok",)),
    Case("argv value with spaces", by_argv, ["app", "--secret", "argv52 two words"], ("argv52", "two words"), 1),
    Case("argv -H header", by_argv, ["curl", "-H", "Authorization: Bearer argv53-bearer"], ("argv53-bearer",)),
    Case("argv url token", by_argv, ["git", "clone", "https://argv54tok@host/r"], ("argv54tok",)),
    # members kept raw (goroutine dumps) still lose token prefixes and URL userinfo
    Case(
        "raw member",
        by_raw_member,
        "goroutine 1 [running]:\nmain.f(...)\n\tlabel url=https://u:raw55-pw@h "
        "ghp_16C7e42F292c6912E7710c838347Ae178B4b\n",
        ("raw55-pw", "ghp_16C7e42F292c6912E7710c838347Ae178B4b"),
    ),
    # env files
    Case(
        "env file value with spaces", by_env, "DB_PASSWORD=env56 with spaces\nHOME=/root", ("env56", "with spaces"), 1
    ),
    Case("env file export", by_env, 'export GITHUB_TOKEN="env57-tok"', ("env57-tok",)),
]


def test_battery_has_at_least_40_distinct_shapes() -> None:
    assert len({c.shape for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.shape for c in CASES])
def test_secret_shape_is_redacted(case: Case) -> None:
    out, n = case.run(case.data)
    for secret in case.secrets:
        assert secret not in out
    assert REDACTED in out
    assert n == (len(case.secrets) if case.count is None else case.count)
    # redacting again changes nothing and counts nothing
    if case.run is by_line:
        assert by_line(out) == (out, 0)


LOOK_ALIKES = [
    "--token-file /var/run/secrets/kubernetes.io/serviceaccount/token",
    "kubeadm init --token-ttl 24h0m0s",
    "kubelet --anonymous-auth=false --authorization-mode=Webhook --kubeconfig=/etc/kubernetes/kubelet.conf",
    "tokenizer=bpe vocab=32000",
    'password_file = "/etc/containerd/registry-password"',
    "auth_type: none",
    "secretName: registry-credentials",
    'I1128 10:00:01.123456    1234 generic.go:205] "GenericPLEG: Unable to retrieve pods" err="rpc error: '
    'code = DeadlineExceeded desc = context deadline exceeded"',
    "E1128 10:03:00.5 1234 kubelet.go:2412] skipping pod synchronization - [PLEG is not healthy: pleg was last "
    "seen active 3m0.5s ago; threshold is 3m0s]",
    "goroutine 7 [select, 12 minutes]:",
    "github.com/containerd/containerd/pkg/cri/server.(*criService).ListPodSandbox(0xc000a1e000, {0x55d, 0xc0})",
    "\t/go/src/github.com/containerd/containerd/vendor/github.com/docker/auth/token.go:88 +0x1a5",
    "goroutine 9 [semacquire]: auth.(*Store).Token(0xc0001)",
    "docker.io/library/busybox@sha256:3fbc632167424a6d997e74f52b878d7cc478225cffac6bc977eedfe51c7f4e79",
    "container 5f2a1c9e7b3d4a6f8e0c1b2a3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7 exited",
    'time="2026-11-28T10:00:00Z" level=info msg="Start cri plugin with config {Registry:{Auth:0xc000123456}}"',
    "mask-abcdefghijklmnopqrstuvwxyz0123 /dev/disk-abcdefghijklmnopqrstuvwxyz task-abcdefghijklmnopqrstu",
    'time="t" level=info msg="PullImage \\"registry.example:5000/app:1\\" returns image reference"',
    "rw,relatime,lowerdir=/var/lib/containerd/l/1,upperdir=/var/lib/containerd/u",
    "cgroup /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0",
    "-----BEGIN CERTIFICATE----- (truncated by the user)",
]


@pytest.mark.parametrize("line", LOOK_ALIKES)
def test_look_alike_is_kept(line: str) -> None:
    assert by_line(line) == (line, 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["kubelet", "--token-file", "/var/lib/kubelet/token", "--v=2"],
        ["containerd", "--config", "/etc/containerd/config.toml", "--address", "/run/containerd/containerd.sock"],
        ["app", "--auth-mode", "oidc", "--password-file=/etc/pw"],
        ["ps", "-u", "root"],
        ["sh", "-c", "exec sleep 600"],
    ],
)
def test_argv_look_alike_is_kept(argv: list[str]) -> None:
    assert redact_argv(argv) == (argv, 0)


# -- TOML by structure (tomlkit) -------------------------------------------------------------------
CONTAINERD_TOML = textwrap.dedent(
    """\
    version = 2
    root = "/var/lib/containerd"

    [plugins."io.containerd.grpc.v1.cri"]
      sandbox_image = "registry.k8s.io/pause:3.9"
      # a path, not a secret
      password_file = "/etc/containerd/pw"
      [plugins."io.containerd.grpc.v1.cri".containerd]
        snapshotter = "overlayfs"
      [plugins."io.containerd.grpc.v1.cri".registry.configs."reg.example:5000".auth]
        username = "toml-user-1"
        password = '''toml-pw-2
    toml-pw-2b'''
        auth = "dG9tbC1hdXRoLTM="
        identitytoken = "toml-idtok-4"
      [plugins."io.containerd.grpc.v1.cri".registry.configs."other.example".auth]
        tokens = ["toml-arr-5", "toml-arr-6"]
      [plugins."io.containerd.grpc.v1.cri".registry.configs."inline.example"]
        auth = { username = "toml-inl-7", password = "toml-inl-8" }
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
        endpoint = ["https://mirror-user:toml-url-9@mirror.example"]
    """
)
TOML_SECRETS = (
    *("toml-user-1", "toml-pw-2", "dG9tbC1hdXRoLTM=", "toml-idtok-4"),
    *(f"toml-{x}" for x in ("arr-5", "arr-6", "inl-7", "inl-8", "url-9")),
)


def test_toml_redacted_by_key_keeps_lines_and_stays_readable() -> None:
    out, n = redact_toml(CONTAINERD_TOML)
    assert not [s for s in TOML_SECRETS if s in out]
    assert n == len(TOML_SECRETS)
    # every other byte as it was, line count kept (report line numbers still match)
    assert out.count("\n") == CONTAINERD_TOML.count("\n")
    kept = [a for a, b in zip(CONTAINERD_TOML.splitlines(), out.splitlines(), strict=True) if a == b]
    assert '  password_file = "/etc/containerd/pw"' in kept and "    # a path, not a secret" not in kept
    data = tomllib.loads(out)
    cri = data["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["password_file"] == "/etc/containerd/pw"
    assert cri["registry"]["configs"]["reg.example:5000"]["auth"]["username"] == REDACTED
    cfg = config_from_text(out, "config.toml")
    assert (cfg.schema, cfg.root, cfg.snapshotter) == (2, "/var/lib/containerd", "overlayfs")
    assert redact_toml(out) == (out, 0)


def test_toml_username_kept_outside_registry_configs() -> None:
    text = '[plugins."x".service]\n  username = "svc"\n'
    assert redact_toml(text) == (text, 0)


def test_invalid_toml_falls_back_to_line_rules_with_a_note(tmp_path: Path) -> None:
    bad = "password = '''bad-toml-1\nbad-toml-2'''\n[unclosed\n"
    with pytest.raises(ValueError):
        redact_toml(bad)
    with BundleWriter(tmp_path / "b.tar.gz", node="n") as w:
        e = w.add_text("config/containerd.toml", "containerd-config", bad)
    assert e.redactions == 1 and e.note and "redacted line by line" in e.note
    text = _member(tmp_path / "b.tar.gz", "config/containerd.toml")
    assert "bad-toml" not in text and "[unclosed" in text


# -- JSON by structure -----------------------------------------------------------------------------
def test_json_cri_inspect() -> None:
    doc = {
        "status": {"id": "c1", "image": {"image": "busybox@sha256:abc"}},
        "info": {
            "config": {
                "envs": [{"key": "DB_PASSWORD", "value": "json-1"}, {"key": "HOME", "value": "json-2"}],
                "auth": {"username": "json-3", "password": "json-4"},
            },
            "runtimeSpec": {"process": {"env": ["PATH=json-5", "API_TOKEN=json-6"]}},
            "pod": {"containers": [{"env": [{"name": "X", "value": "k"}], "args": ["--token", "json-7x"]}]},
            "note": "see https://u:json-8@host",
        },
    }
    out, n = redact_json(json.dumps(doc))
    for s in ("json-1", "json-2", "json-3", "json-4", "json-5", "json-6", "json-7x", "json-8"):
        assert s not in out
    data = json.loads(out)
    assert data["status"] == doc["status"]  # the rest as it was
    assert data["info"]["config"]["envs"][0] == {"key": "DB_PASSWORD", "value": REDACTED}
    assert n == 9  # 2 envs, 2 auth, 2 env strings, 1 pod env, 1 argv element, 1 URL
    assert data["info"]["pod"]["containers"][0]["args"] == ["--token", REDACTED]  # argv element by element
    assert redact_json(out) == (out, 0)


def test_json_lines_and_non_json() -> None:
    text = '{"password": "jl-1"}\nnot json password=jl-2\n{"ok": 1}\n'
    out, n = redact_json(text)
    assert "jl-1" not in out and "jl-2" not in out and n == 2
    assert out.splitlines()[2] == '{"ok": 1}'


# -- the bundle hook -------------------------------------------------------------------------------
def _member(path: Path, name: str) -> str:
    with tarfile.open(path) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read().decode()


def _manifest(path: Path) -> dict:
    return json.loads(_member(path, "manifest.json"))


def test_bundle_picks_the_redactor_by_kind_and_counts_per_member(tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    with BundleWriter(out, node="n") as w:
        w.add_text("config/containerd.toml", "containerd-config", CONTAINERD_TOML)
        w.add_text("cri/inspect.json", "cri-inspect", '{"envs": [{"key": "A", "value": "bk-1"}]}')
        w.add_text("logs/containerd.log", "containerd-log", "a --token bk-2 b\nplain line\n")
        w.add_text(
            "goroutines/c.stacks.log", "goroutine-dump", "goroutine 1 [running]:\nhttps://bk3tok@h\n", redact=False
        )
        w.add_text("proc/pressure/io", "psi", "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n", redact=False)
        w.add_text("tasks/ps.txt", "ps", RedactedLines(["PID CMD\n", "1 agent --token <redacted>\n"], redactions=1))
    files = {f["path"]: f for f in _manifest(out)["files"]}
    assert files["config/containerd.toml"]["redactions"] == len(TOML_SECRETS)
    assert files["cri/inspect.json"]["redactions"] == 1
    assert files["logs/containerd.log"]["redactions"] == 1
    assert files["goroutines/c.stacks.log"]["redactions"] == 1
    assert files["proc/pressure/io"].get("redactions", 0) == 0  # the manifest leaves zeros out
    assert files["tasks/ps.txt"]["redactions"] == 1  # the producer's count, nothing redacted twice
    members = "".join(_member(out, p) for p in files)
    assert not [s for s in (*TOML_SECRETS, "bk-1", "bk-2", "bk3tok") if s in members]


def test_structured_member_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "MAX_STRUCTURED", 2000)
    big = 'password = "limit-1"\n' + "# filler\n" * 300  # > 2000 bytes
    small = 'password = "limit-2"\n' + "# filler\n" * 100  # < 2000 bytes
    out = tmp_path / "b.tar.gz"
    with BundleWriter(out, node="n") as w:
        refused = w.add_text("config/big.toml", "containerd-config", big)
        kept = w.add_text("config/small.toml", "containerd-config", small)
    assert refused.error and "too large to redact by structure" in refused.error and refused.sha256 is None
    assert kept.error is None and kept.redactions == 1
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "config/big.toml" not in names and "config/small.toml" in names
    assert "limit-2" not in _member(out, "config/small.toml")


# -- the ps table: argv redacted before it is joined ----------------------------------------------
def test_ps_table_and_stacks_carry_the_argv_count() -> None:
    tasks = [
        Task(10, 10, "S", "agent", "-", "agent --token <redacted>", 1),
        Task(11, 11, "D", "sh", "-", "sh -c true", 0),
        Task(12, 12, "S", "containerd", "-", "containerd --password=<redacted> --creds <redacted>", 2),
    ]
    table = ps_table(tasks)
    assert isinstance(table, RedactedLines) and table.redactions == 3
    stacks = task_stacks(tasks)  # D-state and runtime tasks only
    assert isinstance(stacks, RedactedLines) and stacks.redactions == 2


def test_iter_tasks_redacts_a_real_process_argv() -> None:
    code = "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--token", "iter-tok-1", "--password=iter-pw-2", "--token-file", "/x/token"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        mine = [t for t in iter_tasks() if t.pid == proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert mine
    t = mine[0]
    assert "iter-tok-1" not in t.cmd and "iter-pw-2" not in t.cmd
    assert t.cmd.endswith(f"--token {REDACTED} --password={REDACTED} --token-file /x/token")
    assert t.redactions == 2
    assert os.getpid() != proc.pid
