"""The ``grafana-cloud`` backend: the collector exports OTLP/HTTP to Grafana Cloud with Basic auth.

Credentials never live in the manifest: ``connection_secret_ref`` names a Kubernetes Secret whose
``GRAFANA_CLOUD_OTLP_AUTH`` key (base64 ``instance_id:token``) the collector reads from its env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from floe_otel_distro.plugin import PluginProblem, TelemetryBackendPlugin


class GrafanaCloudBackend(TelemetryBackendPlugin):
    """Grafana Cloud OTLP gateway (traces → Tempo, metrics → Mimir, logs → Loki)."""

    name: ClassVar[str] = "grafana-cloud"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Grafana Cloud OTLP gateway, credentials from a Secret"

    def validate(self) -> Sequence[PluginProblem]:
        problems = []
        if not self.config.get("endpoint"):
            problems.append(
                PluginProblem(
                    "plugins.telemetry_backend.config.endpoint",
                    "missing; set it to your stack's OTLP gateway, e.g. "
                    "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp",
                )
            )
        if not self.context.secret_ref:
            problems.append(
                PluginProblem(
                    "plugins.telemetry_backend.connection_secret_ref",
                    "missing credentials; name the Kubernetes Secret holding GRAFANA_CLOUD_OTLP_AUTH",
                )
            )
        return problems

    def get_otlp_exporter_config(self) -> dict[str, Any]:
        return {
            "otlp_http/grafana_cloud": {
                "endpoint": str(self.config.get("endpoint", "")),
                "headers": {"authorization": "Basic ${env:GRAFANA_CLOUD_OTLP_AUTH}"},
            }
        }
