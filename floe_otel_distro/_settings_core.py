"""The pydantic-free half of the settings: mode defaults, derived values and the resolved-settings holder.

``FloeSettings`` (the pydantic model in ``settings``) and ``SettingsSnapshot`` (a validated model read
back from the start-up cache, see ``settings_cache``) both inherit ``SettingsView``, so every reader
computes mode defaults, endpoints and headers the same way whichever one it was handed.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from floe_otel_distro.errors import ConfigError


class Mode(str, Enum):
    """floe's deployment mode; it picks the sampling ratio and default backend."""

    dev = "dev"
    staging = "staging"
    prod = "prod"


MODE_SAMPLING: dict[Mode, float] = {Mode.dev: 1.0, Mode.staging: 0.5, Mode.prod: 0.1}
MODE_BACKEND: dict[Mode, str] = {Mode.dev: "console", Mode.staging: "otlp", Mode.prod: "otlp"}
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
SIGNALS = ("traces", "metrics", "logs")
PATH_FIELDS = frozenset({"spec_path", "manifest_path", "headers_file", "settings_cache_dir"})
SECRET_FIELDS = frozenset({"headers"})


def parse_headers(text: str, source: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (W3C-baggage-like, URL-encoded; newlines also separate)."""
    out: dict[str, str] = {}
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # never echo the value: it is a secret
            raise ConfigError(source, "<redacted>", "headers must look like 'name=value,name2=value2'", secret=True)
        out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


class Secret:
    """A value that is never printed (the snapshot's stand-in for pydantic's ``SecretStr``)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"


class SettingsView:
    """Derived values shared by the pydantic model and the cached snapshot (mode defaults live here)."""

    if TYPE_CHECKING:  # the fields, declared on FloeSettings / set by SettingsSnapshot
        namespace: str | None
        product_name: str | None
        product_version: str | None
        mode: Mode
        service_name: str | None
        resource_attributes: str | None
        spec_path: Path | None
        manifest_path: Path | None
        strict: bool
        sdk_disabled: bool
        enabled: bool
        settings_cache: bool
        settings_cache_dir: Path | None
        telemetry_backend: str | None
        backend_version: str | None
        backend_config: dict[str, Any]
        backend_secret_ref: str | None
        collector_endpoint: str | None
        endpoint: str | None
        traces_endpoint: str | None
        metrics_endpoint: str | None
        logs_endpoint: str | None
        protocol: str
        headers: Any
        headers_file: Path | None
        export_timeout: float
        metrics_temporality: str
        traces_exporter: str | None
        metrics_exporter: str | None
        logs_exporter: str | None
        traces_enabled: bool
        metrics_enabled: bool
        logs_enabled: bool
        sampler: str | None
        sampler_arg: str | None
        sampling_ratio: float | None
        log_level: str
        bsp_max_queue_size: int
        bsp_max_export_batch_size: int
        bsp_schedule_delay_ms: int
        metric_export_interval_ms: int
        shutdown_timeout: float

    @property
    def backend_name(self) -> str:
        """The selected backend plugin name (mode default when unset)."""
        return self.telemetry_backend or MODE_BACKEND[self.mode]

    @property
    def effective_sampling_ratio(self) -> float:
        """Ratio for the default parent-based sampler: OTEL arg → FLOE/manifest ratio → mode default."""
        if self.sampler_arg is not None and self.sampler in (None, "traceidratio", "parentbased_traceidratio"):
            return float(self.sampler_arg)
        if self.sampling_ratio is not None:
            return self.sampling_ratio
        return MODE_SAMPLING[self.mode]

    @property
    def effective_service_name(self) -> str:
        """``OTEL_SERVICE_NAME`` → product name → ``unknown_service``."""
        return self.service_name or self.product_name or "unknown_service"

    @property
    def telemetry_active(self) -> bool:
        """False when the SDK is disabled or telemetry is switched off: then nothing is installed."""
        return self.enabled and not self.sdk_disabled

    def signal_enabled(self, signal: str) -> bool:
        """Whether ``signal`` (traces|metrics|logs) is on: FLOE_*_ENABLED and OTEL_*_EXPORTER!=none."""
        exporter = getattr(self, f"{signal}_exporter")
        if exporter is not None and exporter.strip().lower() == "none":
            return False
        return bool(getattr(self, f"{signal}_enabled"))

    def signal_endpoint(self, signal: str) -> str:
        """Full OTLP URL for ``signal``: the per-signal OTEL var, else the base endpoint (+ path for HTTP)."""
        explicit: str | None = getattr(self, f"{signal}_endpoint")
        if explicit:
            return explicit
        grpc = self.protocol == "grpc"
        base = self.endpoint or ("http://localhost:4317" if grpc else "http://localhost:4318")
        return base if grpc else base.rstrip("/") + f"/v1/{signal}"

    def export_headers(self) -> dict[str, str]:
        """OTLP headers: ``OTEL_EXPORTER_OTLP_HEADERS`` plus the mounted secret file, parsed (values secret)."""
        out: dict[str, str] = {}
        if self.headers_file is not None:
            try:
                text = self.headers_file.read_text()
            except OSError as exc:
                fix = f"cannot read the file ({exc.strerror}); fix the path"
                raise ConfigError("FLOE_OTLP_HEADERS_FILE", str(self.headers_file), fix) from None
            out.update(parse_headers(text, source="FLOE_OTLP_HEADERS_FILE"))
        if self.headers is not None:
            out.update(parse_headers(self.headers.get_secret_value(), source="OTEL_EXPORTER_OTLP_HEADERS"))
        return out

    def floe_attributes(self) -> dict[str, str]:
        """The four floe attributes, on the resource and on every span."""
        return {
            "floe.namespace": self.namespace or "default",
            "floe.product.name": self.product_name or self.effective_service_name,
            "floe.product.version": self.product_version or "unknown",
            "floe.mode": self.mode.value,
        }


class SettingsSnapshot(SettingsView):
    """A validated ``FloeSettings`` read back from the start-up cache (no pydantic import)."""

    def __init__(self, values: dict[str, Any], headers: str | None) -> None:
        for name, raw in values.items():
            value: Any = raw
            if name in PATH_FIELDS and raw is not None:
                value = Path(raw)
            elif name == "mode":
                value = Mode(raw)
            setattr(self, name, value)
        self.headers = Secret(headers) if headers else None


class ResolvedSettings:
    """The validated settings and, per field, where its value came from."""

    def __init__(self, settings: SettingsView, sources: dict[str, str]) -> None:
        self.settings = settings
        self.sources = sources

    def source_of(self, field: str) -> str:
        """``env:NAME``, ``spec:<path> key``, ``manifest:<path> key`` or ``default``."""
        return self.sources.get(field, "default")
