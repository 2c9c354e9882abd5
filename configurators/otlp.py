"""The ``otlp`` backend (default outside dev): OTLP to the platform collector, which forwards OTLP on."""

from __future__ import annotations

from typing import Any, ClassVar

from floe_otel_distro.plugin import TelemetryBackendPlugin


class OtlpBackend(TelemetryBackendPlugin):
    """Generic OTLP: the collector exports to ``config.endpoint`` (any OTLP vendor)."""

    name: ClassVar[str] = "otlp"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "OTLP to the platform collector, forwarded to any OTLP backend"

    def get_otlp_exporter_config(self) -> dict[str, Any]:
        endpoint = self.config.get("endpoint")
        if not endpoint:
            return {"debug": {"verbosity": "basic"}}
        exporter: dict[str, Any] = {"endpoint": endpoint}
        if str(endpoint).startswith("http://"):
            exporter["tls"] = {"insecure": True}
        if self.context.secret_ref:
            exporter["headers"] = {"authorization": "${env:OTLP_BACKEND_AUTHORIZATION}"}
        return {"otlp_http/backend": exporter}
