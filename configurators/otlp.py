"""The ``otlp`` backend (default outside dev): OTLP to the platform collector, which forwards OTLP on."""

from __future__ import annotations

from typing import Any, ClassVar

from floe_otel_distro.backends import FLOE_API_VERSION, PluginMetadata, TelemetryBackendPlugin


class OtlpBackend(TelemetryBackendPlugin):
    """Generic OTLP: the collector exports to ``config.endpoint`` (any OTLP vendor)."""

    metadata: ClassVar[PluginMetadata] = PluginMetadata(
        "otlp", "1.0.0", FLOE_API_VERSION, "OTLP to the platform collector, forwarded to any OTLP backend"
    )

    def get_otlp_exporter_config(self) -> dict[str, Any]:
        endpoint = self.config.get("endpoint")
        if not endpoint:
            return {"debug": {"verbosity": "basic"}}
        exporter: dict[str, Any] = {"endpoint": endpoint}
        if str(endpoint).startswith("http://"):
            exporter["tls"] = {"insecure": True}
        if self.settings.backend_secret_ref:
            exporter["headers"] = {"authorization": "${env:OTLP_BACKEND_AUTHORIZATION}"}
        return {"otlp_http/backend": exporter}
