"""The ``grafana-cloud`` backend: the collector exports OTLP/HTTP to Grafana Cloud with Basic auth.

Credentials never live in the manifest: ``connection_secret_ref`` names a Kubernetes Secret whose
``GRAFANA_CLOUD_OTLP_AUTH`` key (base64 ``instance_id:token``) the collector reads from its env.
"""

from __future__ import annotations

from typing import Any, ClassVar

from floe_otel_distro.backends import FLOE_API_VERSION, PluginMetadata, TelemetryBackendPlugin
from floe_otel_distro.errors import ConfigError


class GrafanaCloudBackend(TelemetryBackendPlugin):
    """Grafana Cloud OTLP gateway (traces → Tempo, metrics → Mimir, logs → Loki)."""

    metadata: ClassVar[PluginMetadata] = PluginMetadata(
        "grafana-cloud", "1.0.0", FLOE_API_VERSION, "Grafana Cloud OTLP gateway, credentials from a Secret"
    )

    def validate_settings(self) -> None:
        if not self.config.get("endpoint"):
            raise ConfigError(
                "plugins.telemetry_backend.config.endpoint",
                "",
                "missing; set it to your stack's OTLP gateway, e.g. https://otlp-gateway-prod-eu-west-2.grafana.net/otlp",
            )
        if not self.settings.backend_secret_ref and not self.settings.export_headers().get("authorization"):
            raise ConfigError(
                "plugins.telemetry_backend.connection_secret_ref",
                "",
                "missing credentials; name the Kubernetes Secret holding GRAFANA_CLOUD_OTLP_AUTH "
                "(or set FLOE_OTLP_HEADERS_FILE to a mounted 'authorization=Basic …' file for direct export)",
            )

    def get_otlp_exporter_config(self) -> dict[str, Any]:
        return {
            "otlp_http/grafana_cloud": {
                "endpoint": str(self.config.get("endpoint", "")),
                "headers": {"authorization": "Basic ${env:GRAFANA_CLOUD_OTLP_AUTH}"},
            }
        }
