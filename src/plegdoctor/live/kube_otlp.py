"""`watch --otlp-endpoint URL`: one OTLP log record per analysed capture (OTLP/HTTP, protobuf).

Needs `opentelemetry-sdk` and `opentelemetry-exporter-otlp-proto-http` (imported only when the
option is given). Records are batched and sent by the SDK's own thread, each export bounded
by `timeout`; a collector that is down costs log lines, never the watch.

The record: body = the one-line verdict; severity WARN; event name `pleg_doctor.diagnosis`;
attributes `pleg_doctor.root_cause.class` (verbatim), `pleg_doctor.root_cause.reason` (the
condition's CamelCase form), `pleg_doctor.root_cause.confidence`, `pleg_doctor.capture`,
`pleg_doctor.findings` (the finding codes); resource `service.name=pleg-doctor`,
`k8s.node.name`, `host.name`.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from plegdoctor.errors import UserError
from plegdoctor.live import kube_objects as ko

EVENT_NAME = "pleg_doctor.diagnosis"


def logs_url(endpoint: str) -> str:
    """An OTLP/HTTP endpoint as the logs URL: a bare `http://host:4318` gets `/v1/logs`."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"--otlp-endpoint: expected http(s)://HOST:PORT[/v1/logs], got {endpoint!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/logs")
    return urlunsplit(parts)


class OtlpDiagnosisLog:
    def __init__(self, endpoint: str, node: str, timeout: float = 5.0):
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            raise UserError(
                "--otlp-endpoint needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http"
            ) from None
        from plegdoctor import __version__

        self.url = logs_url(endpoint)
        resource = Resource.create({"service.name": "pleg-doctor", "k8s.node.name": node, "host.name": node})
        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=self.url, timeout=timeout), schedule_delay_millis=1000)
        )
        self.logger = self.provider.get_logger("pleg-doctor.watch", __version__)

    def emit(self, verdict: ko.Verdict, diagnosis: Any) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber

        doc = diagnosis.to_json() if diagnosis is not None else {}
        causes = doc.get("root_causes") or []
        attributes: dict[str, Any] = {
            "pleg_doctor.root_cause.class": verdict.cls or "none",
            "pleg_doctor.root_cause.reason": ko.reason_from_class(verdict.cls),
            "pleg_doctor.capture": verdict.capture or "",
            "pleg_doctor.findings": sorted({str(f.get("code")) for f in doc.get("findings") or []}),
        }
        if causes:
            attributes["pleg_doctor.root_cause.confidence"] = float(causes[0].get("confidence") or 0.0)
        self.logger.emit(
            LogRecord(
                timestamp=time.time_ns(),
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body=verdict.line,
                attributes=attributes,
                event_name=EVENT_NAME,
            )
        )

    def stop(self) -> None:
        """Flush what is queued (bounded by the exporter's timeout) and stop the SDK's thread."""
        self.provider.shutdown()
