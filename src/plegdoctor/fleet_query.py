"""The Prometheus HTTP API client of `pleg-doctor fleet`: instant queries with a deadline on each request.

Standard library only (http.client): one GET of `/api/v1/query` per PromQL expression. Every
request has a whole-request deadline (connect, send, headers and body together: a server that
trickles its answer a byte at a time is cut at the deadline, not at each read's timeout), the
same `timeout` is passed to Prometheus so it stops evaluating too, and the body is capped.
Whatever goes wrong becomes a `FleetError` (a `UserError`: one line, exit 2) that says which
of these it was: a bad URL, an unreachable server, no answer in time, an answer that is not the
Prometheus API, or a query Prometheus rejected.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit

from plegdoctor.errors import UserError

MAX_BODY_BYTES = 64 << 20  # one instant vector per node and label set: far below this for any fleet
READ_CHUNK = 64 << 10


class FleetError(UserError):
    """`pleg-doctor fleet` cannot get an answer it can use from Prometheus."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector: its labels and value."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    prefix: str  # path before /api/v1 (a Prometheus behind a path, e.g. /prometheus)
    auth: str | None  # "Basic ..." from the URL's user:password
    shown: str  # the URL without its user info, for messages and the JSON document


def parse_url(url: str) -> Endpoint:
    """Check `--prometheus URL` (http or https, a host, no query) and split it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FleetError(f"--prometheus: bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FleetError(f"--prometheus: expected http(s)://HOST[:PORT][/PATH], got {url!r}")
    if parts.query or parts.fragment:
        raise FleetError(f"--prometheus: the URL may not carry a query or fragment: {url!r}")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    prefix = parts.path.rstrip("/")
    return Endpoint(
        scheme=parts.scheme,
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
        prefix=prefix,
        auth=auth,
        shown=f"{parts.scheme}://{netloc}{prefix}",
    )


class PromClient:
    """Instant queries against one Prometheus; `timeout` seconds per request, start to last byte."""

    def __init__(self, url: str, timeout: float, max_bytes: int = MAX_BODY_BYTES):
        self.endpoint = parse_url(url)
        self.timeout = timeout
        self.max_bytes = max_bytes

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluate `promql` (an instant vector) at `at` (epoch seconds; None = now)."""
        params = {"query": promql, "timeout": f"{max(1, math.floor(self.timeout))}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        status, body = self._get("/api/v1/query?" + urlencode(params))
        return _vector(self._document(status, body, promql))

    # -- HTTP ---------------------------------------------------------------------------------
    def _get(self, path_query: str) -> tuple[int, bytes]:
        ep = self.endpoint
        deadline = time.monotonic() + self.timeout
        conn: http.client.HTTPConnection
        if ep.scheme == "https":
            conn = http.client.HTTPSConnection(
                ep.host, ep.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=self.timeout)
        headers = {"Accept": "application/json", "User-Agent": "pleg-doctor-fleet"}
        if ep.auth:
            headers["Authorization"] = ep.auth
        try:
            conn.request("GET", ep.prefix + path_query, headers=headers)
            sock = conn.sock  # kept: the response reads from it after the connection lets go of it
            _remaining(deadline, sock)
            resp = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while True:
                _remaining(deadline, sock)
                chunk = resp.read1(READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise FleetError(f"{ep.shown}: answer larger than {self.max_bytes >> 20} MiB; not reading it")
                chunks.append(chunk)
            return resp.status, b"".join(chunks)
        except FleetError:
            raise
        except TimeoutError:
            raise FleetError(f"{ep.shown}: no answer within {self.timeout:g}s (--timeout)") from None
        except ssl.SSLError as exc:
            raise FleetError(f"{ep.shown}: TLS failed: {exc.reason or exc}") from None
        except socket.gaierror as exc:
            raise FleetError(f"cannot resolve {ep.host!r} ({ep.shown}): {exc.strerror or exc}") from None
        except (ConnectionError, OSError) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise FleetError(f"cannot reach Prometheus at {ep.shown}: {why}") from None
        except http.client.HTTPException as exc:
            raise FleetError(
                f"{ep.shown} did not answer HTTP ({type(exc).__name__}): not a Prometheus server?"
            ) from None
        finally:
            conn.close()

    def _document(self, status: int, body: bytes, promql: str) -> dict[str, object]:
        """The API's JSON envelope; a FleetError for anything else (HTML, /metrics text, an API error)."""
        shown = self.endpoint.shown
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
            hint = "" if status == 200 else f" (HTTP {status})"
            raise FleetError(
                f"{shown}/api/v1/query{hint} is not the Prometheus HTTP API "
                "(give the Prometheus server's URL, e.g. http://prometheus:9090)"
            )
        if doc["status"] == "error":
            kind = str(doc.get("errorType") or "error")
            raise FleetError(f"Prometheus at {shown} rejected a query ({kind}: {doc.get('error')}): {promql}")
        if status != 200:
            raise FleetError(f"Prometheus at {shown} answered HTTP {status}")
        return doc


def _remaining(deadline: float, sock: socket.socket | None) -> None:
    """Shrink the socket timeout to what is left of the request's deadline (raise once it is spent)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if sock is not None:
        sock.settimeout(left)


def _vector(doc: dict[str, object]) -> list[Sample]:
    data = doc.get("data")
    if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
        raise FleetError("Prometheus answered with no instant vector (data.resultType); not the Prometheus API?")
    result = data.get("result")
    if data["resultType"] == "scalar":
        result = [{"metric": {}, "value": result}]
    if not isinstance(result, list):
        raise FleetError("Prometheus answered a malformed vector (data.result is not a list)")
    out: list[Sample] = []
    for item in result:
        try:
            metric, (_, value) = item["metric"], item["value"]
            labels = {str(k): str(v) for k, v in metric.items()}
            out.append(Sample(labels, float(value)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise FleetError("Prometheus answered a malformed sample (want metric and [time, value])") from None
    return out
