"""`pleg-doctor fleet` against a canned Prometheus API on 127.0.0.1 (real sockets, real HTTP).

The fake answers each PromQL expression of `FleetQuery.expressions()` with the vector a test
gives for its key; any other query gets Prometheus's own `bad_data` error, so a test fails if
the command asks something the fixture does not know. What PromQL itself computes is checked
against a real Prometheus in tests/integration/test_fleet_prometheus.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from plegdoctor.cli import main
from plegdoctor.fleet import FleetQuery, format_duration, parse_duration
from plegdoctor.fleet_query import FleetError, PromClient

Vector = list[tuple[dict[str, str], float]]


class FakeProm:
    """A Prometheus look-alike: /api/v1/query answers from `vectors[key]` for the window's expressions."""

    def __init__(self) -> None:
        self.vectors: dict[str, Vector] = {}
        self.window = 300
        self.mode = "api"  # api | html | metrics | error | slow | trickle | notjson-vector
        self.requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        params = parse_qs(parts.query)
        self.requests.append(params)
        if self.mode == "slow":
            time.sleep(3)
        if self.mode == "trickle":  # headers at once, then a byte every 0.2 s, never the end
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100000")
            h.end_headers()
            for _ in range(50):
                try:
                    h.wfile.write(b" ")
                    h.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        if self.mode == "html":
            return self.send(h, 200, b"<html><body>Grafana</body></html>", "text/html")
        if self.mode == "metrics" or parts.path != "/api/v1/query":
            return self.send(h, 404, b"# HELP pleg_doctor_build_info x\n", "text/plain")
        if self.mode == "notjson-vector":
            return self.send(h, 200, json.dumps({"status": "success", "data": {"resultType": "matrix"}}).encode())
        if self.mode == "error":
            body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
            return self.send(h, 400, json.dumps(body).encode())
        by_expr = {expr: key for key, expr in FleetQuery(window=self.window).expressions().items()}
        key = by_expr.get(params.get("query", [""])[0])
        if key is None:
            body = {"status": "error", "errorType": "bad_data", "error": f"unexpected query {params.get('query')}"}
            return self.send(h, 400, json.dumps(body).encode())
        at = float(params.get("time", ["0"])[0])
        result = [{"metric": labels, "value": [at, repr(v)]} for labels, v in self.vectors.get(key, [])]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        self.send(h, 200, json.dumps(body).encode())

    @staticmethod
    def send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str = "application/json") -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the client gave up (the deadline tests)
            pass

    def node(self, name: str, **metrics: Any) -> None:
        """Add one node's answers: stall=s, up=0/1, stalled=0/1, longest=s, longest_call=s, episodes=n,
        causes={class: conf}, findings=[(code, class, severity)], captures={result: n},
        causes_window=..., findings_window=..., agents=1 (default)."""
        inst = {"instance": name}
        self.vectors.setdefault("agents", []).append((inst, 1.0))
        for key in ("stall", "up", "stalled", "longest", "longest_call", "episodes"):
            if key in metrics:
                self.vectors.setdefault(key, []).append((inst, float(metrics[key])))
        for key in ("causes", "causes_window"):
            for cls, conf in metrics.get(key, {}).items():
                self.vectors.setdefault(key, []).append(({**inst, "class": cls}, conf))
        for key in ("findings", "findings_window"):
            for code, cls, sev in metrics.get(key, []):
                self.vectors.setdefault(key, []).append(({**inst, "code": code, "class": cls, "severity": sev}, 1.0))
        for result, n in metrics.get("captures", {}).items():
            self.vectors.setdefault("captures", []).append(({**inst, "result": result}, float(n)))


@pytest.fixture
def prom() -> Iterator[FakeProm]:
    fake = FakeProm()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(5)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["fleet", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def fleet_json(capsys: pytest.CaptureFixture[str], prom: FakeProm, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--prometheus", prom.url, "--window", "5m", "-o", "json", *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_nodes_are_ranked_by_stall_time_then_severity(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    prom.node("node-quiet", stall=0, up=1, stalled=0, longest=0.4)
    prom.node(
        "node-warn",
        stall=30,
        up=1,
        stalled=0,
        longest=34,
        episodes=1,
        causes={"disk-io-pressure": 0.9},
        findings=[("PD301", "disk-io-pressure", "warning")],
        captures={"ok": 1, "failed": 0, "skipped": 0},
    )
    prom.node(
        "node-crit",
        stall=30,
        up=1,
        stalled=0,
        longest=10,
        longest_call=35,
        episodes=1,
        causes={"cri-status-lock": 0.6, "disk-io-pressure": 0.3},
        findings=[("PD201", "cri-status-lock", "critical"), ("PD301", "disk-io-pressure", "warning")],
        captures={"ok": 1},
    )
    prom.node(
        "node-frozen",
        stall=150,
        up=0,
        stalled=1,
        longest=156.5,
        longest_call=150,
        episodes=1,
        causes={"runtime-frozen": 0.95},
        findings=[("PD901", "runtime-frozen", "critical"), ("PD902", "runtime-frozen", "critical")],
        captures={"ok": 1, "failed": 0, "skipped": 2},
    )
    doc = fleet_json(capsys, prom)
    assert doc["schema"] == "pleg-doctor/fleet/v1" and doc["window"] == "5m" and doc["window_seconds"] == 300
    assert doc["node_label"] == "instance" and doc["nodes_total"] == 4
    order = [n["node"] for n in doc["nodes"]]
    # the tie on 30 s is broken by severity: critical before warning, though warning's confidence is higher
    assert order == ["node-frozen", "node-crit", "node-warn", "node-quiet"]
    assert [n["rank"] for n in doc["nodes"]] == [1, 2, 3, 4]
    top = doc["nodes"][0]
    assert top["class"] == "runtime-frozen" and top["confidence"] == 0.95 and top["severity"] == "critical"
    assert top["runtime_up"] is False and top["stalled_now"] is True and top["class_from"] == "current"
    assert top["stall_seconds"] == 150 and top["longest_gap_seconds"] == 156.5 and top["stall_episodes"] == 1
    assert top["captures"] == {"ok": 1, "failed": 0, "skipped": 2} and top["next_step"] is None
    assert {f["code"] for f in top["findings"]} == {"PD901", "PD902"}
    crit = doc["nodes"][1]
    assert crit["class"] == "cri-status-lock" and [c["class"] for c in crit["classes"]][1] == "disk-io-pressure"
    assert crit["longest_gap_seconds"] == 35  # the call in flight was older than the time since success
    assert crit["severity"] == "critical"  # the severity of its own class's findings, not the warning
    # every query was evaluated at one instant, each with the server-side timeout
    assert len({r["time"][0] for r in prom.requests}) == 1
    assert {r["timeout"][0] for r in prom.requests} == {"10s"}


def test_top_limits_the_nodes_shown_not_the_total(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    for i, stall in enumerate((5, 50, 20)):
        prom.node(f"n{i}", stall=stall, up=1, stalled=0)
    doc = fleet_json(capsys, prom, "--top", "2")
    assert [n["node"] for n in doc["nodes"]] == ["n1", "n2"] and doc["nodes_total"] == 3


def test_full_ties_fall_back_to_confidence_then_name(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    common = {"stall": 10, "up": 1, "stalled": 0, "findings": [("PD301", "disk-io-pressure", "warning")]}
    prom.node("b-node", causes={"disk-io-pressure": 0.5}, **common)
    prom.node("a-node", causes={"disk-io-pressure": 0.5}, **common)
    prom.node("c-node", causes={"disk-io-pressure": 0.7}, **common)
    prom.node("z-quiet", stall=0, up=1, stalled=0)
    prom.node("y-quiet", stall=0, up=1, stalled=0)
    doc = fleet_json(capsys, prom)
    assert [n["node"] for n in doc["nodes"]] == ["c-node", "a-node", "b-node", "y-quiet", "z-quiet"]


def test_a_missing_class_is_unknown_with_a_next_step(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    prom.node("no-capture", stall=40, up=1, stalled=0, captures={"ok": 0, "failed": 1, "skipped": 0})
    prom.node("never-captured", stall=35, up=1, stalled=0, captures={"ok": 0, "failed": 0, "skipped": 0})
    prom.node("no-analysis", stall=30, up=1, stalled=0, captures={"ok": 2})
    prom.node("gone", stall=20)  # no runtime_up now: the agent is not scraped
    prom.node("said-unknown", stall=10, up=1, stalled=0, causes={"unknown": 0.3}, captures={"ok": 1})
    prom.node(
        "restarted",
        stall=5,
        up=1,
        stalled=0,
        causes_window={"shim-hang": 0.8},
        findings_window=[("PD401", "shim-hang", "critical")],
    )
    prom.node("healthy", stall=0, up=1, stalled=0)
    nodes = {n["node"]: n for n in fleet_json(capsys, prom)["nodes"]}
    for name in ("no-capture", "never-captured", "no-analysis", "gone", "said-unknown", "healthy"):
        assert nodes[name]["class"] == "unknown", name
        assert nodes[name]["next_step"], name
    assert nodes["no-capture"]["confidence"] is None and nodes["no-capture"]["severity"] is None
    assert "1 capture(s) failed" in nodes["no-capture"]["next_step"] and "log" in nodes["no-capture"]["next_step"]
    assert "--capture-dir" in nodes["never-captured"]["next_step"]
    assert (
        "pleg-doctor analyze" in nodes["no-analysis"]["next_step"] and "2 capture" in nodes["no-analysis"]["next_step"]
    )
    assert "not scraped now" in nodes["gone"]["next_step"] and nodes["gone"]["runtime_up"] is None
    assert "named no mechanism" in nodes["said-unknown"]["next_step"]
    assert "no stall" in nodes["healthy"]["next_step"]
    # no class exported now: the last one of the window, said to be so
    r = nodes["restarted"]
    assert (r["class"], r["class_from"], r["severity"], r["next_step"]) == ("shim-hang", "window", "critical", None)


def test_the_subquery_step_scales_stall_time_for_long_windows(
    capsys: pytest.CaptureFixture[str], prom: FakeProm
) -> None:
    prom.window = 7200
    assert FleetQuery(window=7200).step == 2 and FleetQuery(window=3600).step == 1
    prom.node("n", stall=30, up=1, stalled=0)  # 30 steps of 2 s
    code, out, err = run(capsys, "--prometheus", prom.url, "--window", "2h", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["nodes"][0]["stall_seconds"] == 60


def test_text_output_is_a_ranked_table_with_labels_escaped(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    prom.node("node-\x1b[2Jevil", stall=0, up=1, stalled=0)
    prom.node("node-frozen", stall=95, up=0, stalled=1, causes={"runtime-frozen": 0.95})
    code, out, err = run(capsys, "--prometheus", prom.url + "/", "--window", "5m")
    assert code == 0, err
    assert "\x1b" not in out and "node-\\x1b[2Jevil" in out
    frozen_line = next(line for line in out.splitlines() if "node-frozen" in line)
    assert "1m35s" in frozen_line and "DOWN" in frozen_line and "runtime-frozen 95%" in frozen_line
    assert out.index("node-frozen") < out.index("evil")
    assert "Next steps" in out


def test_a_prometheus_behind_a_path_prefix(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    code, _, err = run(capsys, "--prometheus", prom.url + "/prom", "-o", "json", "--window", "5m")
    assert code == 2 and "not the Prometheus HTTP API" in err  # the fake serves no prefix: the path was used
    assert "http://127.0.0.1" in err and "/prom/api/v1/query" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("html", "is not the Prometheus HTTP API"),
        ("metrics", "(HTTP 404) is not the Prometheus HTTP API"),
        ("error", "rejected a query (bad_data: parse error at char 3)"),
        ("notjson-vector", "no instant vector"),
    ],
)
def test_non_prometheus_answers_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], prom: FakeProm, mode: str, message: str
) -> None:
    prom.mode = mode
    code, out, err = run(capsys, "--prometheus", prom.url, "--window", "5m")
    assert code == 2 and not out
    assert err.startswith("pleg-doctor: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://prometheus:9090", "expected http(s)://HOST"),
        ("http://", "expected http(s)://HOST"),
        ("prometheus:9090", "expected http(s)://HOST"),
        ("http://127.0.0.1:99999", "bad URL"),
        ("http://127.0.0.1:9090/?q=1", "query or fragment"),
        ("http://host.invalid", "cannot resolve 'host.invalid'"),
    ],
)
def test_bad_urls_exit_2(capsys: pytest.CaptureFixture[str], url: str, message: str) -> None:
    code, _, err = run(capsys, "--prometheus", url, "--timeout", "3s")
    assert code == 2 and message in err and err.count("\n") == 1


def test_an_unreachable_prometheus_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code, _, err = run(capsys, "--prometheus", url)
    assert code == 2 and f"cannot reach Prometheus at {url}" in err


@pytest.mark.parametrize("mode", ["slow", "trickle"])
def test_every_request_has_a_deadline(capsys: pytest.CaptureFixture[str], prom: FakeProm, mode: str) -> None:
    prom.mode = mode
    t0 = time.monotonic()
    code, _, err = run(capsys, "--prometheus", prom.url, "--timeout", "1s")
    elapsed = time.monotonic() - t0
    assert code == 2 and "no answer within 1s" in err
    assert elapsed < 2.5  # the trickle sends a byte every 0.2 s for 10 s: each read alone would never time out


def test_an_oversized_answer_is_refused(prom: FakeProm) -> None:
    prom.node("n", stall=1)
    client = PromClient(prom.url, timeout=5, max_bytes=100)
    with pytest.raises(FleetError, match="answer larger than"):
        client.query(FleetQuery(window=300).expressions()["agents"])
    assert PromClient(prom.url, timeout=5).query(FleetQuery(window=300).expressions()["agents"])


def test_url_user_info_becomes_basic_auth_and_is_never_shown() -> None:
    client = PromClient("https://alice:s%40cret@prom.example:8443/base/", timeout=1)
    ep = client.endpoint
    assert (ep.scheme, ep.host, ep.port, ep.prefix) == ("https", "prom.example", 8443, "/base")
    assert ep.shown == "https://prom.example:8443/base" and ep.auth == "Basic YWxpY2U6c0BjcmV0"


def test_durations() -> None:
    assert parse_duration("1h30m", "--window") == 5400 and parse_duration("90", "--window") == 90
    assert parse_duration("500ms", "--timeout") == 0.5 and parse_duration("2d", "--window") == 172800
    for bad in ("", "1x", "5m1", "-5m", "0s", "m"):
        with pytest.raises(Exception, match="--window"):
            parse_duration(bad, "--window")
    assert [format_duration(s) for s in (None, 0, 59.6, 95, 3725)] == ["-", "0s", "1m00s", "1m35s", "1h02m"]


def test_a_bad_node_label_or_window_exits_2(capsys: pytest.CaptureFixture[str], prom: FakeProm) -> None:
    code, _, err = run(capsys, "--prometheus", prom.url, "--node-label", "a-b")
    assert code == 2 and "--node-label" in err
    code, _, err = run(capsys, "--prometheus", prom.url, "--window", "soon")
    assert code == 2 and "--window" in err
    assert not prom.requests
