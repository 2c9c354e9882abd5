"""The ``jaeger`` backend: the collector forwards traces to Jaeger v2's OTLP gRPC receiver."""

from __future__ import annotations

from typing import Any, ClassVar

from floe_otel_distro.plugin import TelemetryBackendPlugin

DEFAULT_JAEGER_OTLP = "jaeger-collector.observability.svc:4317"


class JaegerBackend(TelemetryBackendPlugin):
    """Jaeger stores traces only; metrics and logs go to the collector's debug exporter."""

    name: ClassVar[str] = "jaeger"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Traces to Jaeger v2 (OTLP gRPC) through the collector"

    def get_otlp_exporter_config(self) -> dict[str, Any]:
        endpoint = str(self.config.get("endpoint", DEFAULT_JAEGER_OTLP))
        insecure = bool(self.config.get("insecure", True))
        return {
            "otlp_grpc/jaeger": {"endpoint": endpoint, "tls": {"insecure": insecure}},
            "debug/jaeger": {"verbosity": "basic"},
        }

    def get_pipeline_config(self) -> dict[str, list[str]]:
        return {"traces": ["otlp_grpc/jaeger"], "metrics": ["debug/jaeger"], "logs": ["debug/jaeger"]}
