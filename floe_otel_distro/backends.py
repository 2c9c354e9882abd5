"""The telemetry backend plugin contract and its discovery through the ``floe.telemetry_backends`` group.

A backend decides two things from the same manifest line (``plugins.telemetry_backend.type``):
- platform side: the exporter(s), Helm values and pipelines of the OpenTelemetry Collector
  (``get_otlp_exporter_config``, ``get_helm_values``, ``get_pipeline_config``);
- SDK side: what the instrumented process exports to (``span_exporter`` & co). Every shipped backend
  except ``console`` exports OTLP to the platform collector; the collector forwards to the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from floe_otel_distro.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from floe_otel_distro._settings_core import SettingsView

FLOE_API_VERSION = "1.0"
ENTRY_POINT_GROUP = "floe.telemetry_backends"


@dataclass(frozen=True)
class PluginMetadata:
    """Who a plugin is: ``floe_api_version`` must share the distro's major version."""

    name: str
    version: str
    floe_api_version: str
    description: str = ""


@dataclass(frozen=True)
class ConnectionStatus:
    """Result of ``validate_connection``: never carries secrets."""

    ok: bool
    detail: str


class TelemetryBackendPlugin(ABC):
    """Base class of every telemetry backend plugin (see module docstring)."""

    metadata: ClassVar[PluginMetadata]

    def __init__(self, settings: SettingsView) -> None:
        self.settings = settings
        self.config: dict[str, Any] = dict(settings.backend_config)

    # --- platform (collector) side ---------------------------------------------------------------
    @abstractmethod
    def get_otlp_exporter_config(self) -> dict[str, Any]:
        """Collector ``exporters:`` entries (name → config) that deliver to this backend."""

    def get_pipeline_config(self) -> dict[str, list[str]]:
        """Collector exporters per signal; default: every exporter on every signal."""
        names = list(self.get_otlp_exporter_config())
        return {"traces": names, "metrics": names, "logs": names}

    def get_helm_values(self) -> dict[str, Any]:
        """Values for the upstream ``opentelemetry-collector`` Helm chart (gateway mode)."""
        values: dict[str, Any] = {
            "mode": "deployment",
            "image": {"repository": "otel/opentelemetry-collector-contrib"},
            "config": {"exporters": self.get_otlp_exporter_config()},
        }
        if self.settings.backend_secret_ref:
            values["extraEnvsFrom"] = [{"secretRef": {"name": self.settings.backend_secret_ref}}]
        return values

    def validate_connection(self, timeout: float = 2.0) -> ConnectionStatus:
        """Whether the SDK-side endpoint answers (a TCP connect; no data, no credentials sent)."""
        import socket
        from urllib.parse import urlsplit

        url = self.settings.signal_endpoint("traces")
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
                return ConnectionStatus(True, f"{parts.hostname}:{port} accepts connections")
        except OSError as exc:
            return ConnectionStatus(False, f"{parts.hostname}:{port} unreachable ({exc.strerror or exc})")

    def validate_settings(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise :class:`ConfigError` when the backend cannot work with these settings."""

    # --- SDK side ------------------------------------------------------------------------------------
    def span_exporter(self) -> SpanExporter | None:
        """Exporter for spans (default: OTLP to the platform collector)."""
        from floe_otel_distro.exporters import otlp_exporter

        return otlp_exporter("traces", self.settings)  # type: ignore[return-value]

    def metric_exporter(self) -> MetricExporter | None:
        """Exporter for metrics (default: OTLP to the platform collector)."""
        from floe_otel_distro.exporters import otlp_exporter

        return otlp_exporter("metrics", self.settings)  # type: ignore[return-value]

    def log_exporter(self) -> LogRecordExporter | None:
        """Exporter for log records (default: OTLP to the platform collector)."""
        from floe_otel_distro.exporters import otlp_exporter

        return otlp_exporter("logs", self.settings)  # type: ignore[return-value]


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def installed_backends() -> list[str]:
    """Names of every installed backend plugin."""
    return sorted(_entry_points())


def check_api_version(meta: PluginMetadata) -> None:
    """A plugin built for another major floe API version is refused."""
    if meta.floe_api_version.split(".")[0] != FLOE_API_VERSION.split(".", maxsplit=1)[0]:
        raise ConfigError(
            f"backend plugin {meta.name!r}",
            meta.floe_api_version,
            f"floe_api_version is incompatible with this distro's {FLOE_API_VERSION}; "
            "install a plugin release built for it",
        )


def load_backend(settings: SettingsView, source: str = "FLOE_TELEMETRY_BACKEND") -> TelemetryBackendPlugin:
    """Find, check and instantiate the selected plugin."""
    name = settings.backend_name
    eps = _entry_points()
    if name not in eps:
        raise ConfigError(source, name, f"unknown telemetry backend; installed: {', '.join(sorted(eps)) or 'none'}")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, TelemetryBackendPlugin)):
        raise ConfigError(source, name, "entry point is not a TelemetryBackendPlugin; fix the plugin package")
    check_api_version(cls.metadata)
    want = settings.backend_version
    if want and want != cls.metadata.version:
        raise ConfigError(
            "plugins.telemetry_backend.version",
            want,
            f"installed {name!r} plugin is {cls.metadata.version}; pin that version or install {want}",
        )
    plugin = cls(settings)
    plugin.validate_settings()
    return plugin
