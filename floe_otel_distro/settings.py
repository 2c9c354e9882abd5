"""The one settings model: every input (OTEL_* / FLOE_* env, floe.yaml, manifest.yaml, mode defaults).

Precedence, strongest first: standard ``OTEL_*`` env vars → ``FLOE_*`` env vars → the data product spec
``floe.yaml`` (``FLOE_SPEC``) → the platform ``manifest.yaml`` (``FLOE_MANIFEST`` or the spec's
``platform.manifest``) → defaults for the mode. Env is read by pydantic-settings (each field's
``validation_alias`` lists its OTEL name before its FLOE name); the YAML layers enter as init values
ranked below env. ``load_settings`` returns the validated model plus where each value came from.
Nothing else in the distro reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from floe_otel_distro._settings_core import (
    MODE_BACKEND,
    MODE_SAMPLING,
    SAMPLERS,
    SECRET_FIELDS,
    SIGNALS,
    Mode,
    ResolvedSettings,
    SettingsView,
    parse_headers,
)
from floe_otel_distro.errors import ConfigError, redact_url

__all__ = [
    "MODE_BACKEND",
    "MODE_SAMPLING",
    "SAMPLERS",
    "SIGNALS",
    "FloeSettings",
    "Mode",
    "ResolvedSettings",
    "load_settings",
    "parse_headers",
]


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class FloeSettings(BaseSettings, SettingsView):
    """Effective telemetry settings. Field docs are the reference; ``docs/configuration.md`` mirrors them."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=True, env_ignore_empty=True)

    # --- identity ------------------------------------------------------------------------------
    namespace: str | None = Field(None, validation_alias=_alias("FLOE_NAMESPACE", "namespace"))
    product_name: str | None = Field(None, validation_alias=_alias("FLOE_PRODUCT_NAME", "product_name"))
    product_version: str | None = Field(None, validation_alias=_alias("FLOE_PRODUCT_VERSION", "product_version"))
    mode: Mode = Field(Mode.dev, validation_alias=_alias("FLOE_MODE", "mode"))
    service_name: str | None = Field(None, validation_alias=_alias("OTEL_SERVICE_NAME", "service_name"))
    resource_attributes: str | None = Field(
        None, validation_alias=_alias("OTEL_RESOURCE_ATTRIBUTES", "resource_attributes")
    )

    # --- where config comes from / how errors behave -------------------------------------------
    spec_path: Path | None = Field(None, validation_alias=_alias("FLOE_SPEC", "spec_path"))
    manifest_path: Path | None = Field(None, validation_alias=_alias("FLOE_MANIFEST", "manifest_path"))
    strict: bool = Field(False, validation_alias=_alias("FLOE_OTEL_STRICT", "strict"))
    sdk_disabled: bool = Field(False, validation_alias=_alias("OTEL_SDK_DISABLED", "sdk_disabled"))
    enabled: bool = Field(True, validation_alias=_alias("FLOE_OTEL_ENABLED", "enabled"))
    settings_cache: bool = Field(True, validation_alias=_alias("FLOE_SETTINGS_CACHE"))  # read early by settings_cache
    settings_cache_dir: Path | None = Field(None, validation_alias=_alias("FLOE_SETTINGS_CACHE_DIR"))

    # --- backend ---------------------------------------------------------------------------------
    telemetry_backend: str | None = Field(None, validation_alias=_alias("FLOE_TELEMETRY_BACKEND", "telemetry_backend"))
    backend_version: str | None = Field(None, validation_alias=_alias("backend_version"))
    backend_config: dict[str, Any] = Field(default_factory=dict, validation_alias=_alias("backend_config"))
    backend_secret_ref: str | None = Field(None, validation_alias=_alias("backend_secret_ref"))
    collector_endpoint: str | None = Field(
        None, validation_alias=_alias("collector_endpoint")
    )  # the platform collector declared in the manifest (collector-bypass guard)

    # --- export ----------------------------------------------------------------------------------
    endpoint: str | None = Field(
        None, validation_alias=_alias("OTEL_EXPORTER_OTLP_ENDPOINT", "FLOE_OTLP_ENDPOINT", "endpoint")
    )
    traces_endpoint: str | None = Field(None, validation_alias=_alias("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    metrics_endpoint: str | None = Field(None, validation_alias=_alias("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
    logs_endpoint: str | None = Field(None, validation_alias=_alias("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"))
    protocol: Literal["grpc", "http/protobuf"] = Field(
        "http/protobuf", validation_alias=_alias("OTEL_EXPORTER_OTLP_PROTOCOL", "FLOE_OTLP_PROTOCOL", "protocol")
    )
    headers: SecretStr | None = Field(
        None, validation_alias=_alias("OTEL_EXPORTER_OTLP_HEADERS", "FLOE_OTLP_HEADERS", "headers")
    )
    headers_file: Path | None = Field(None, validation_alias=_alias("FLOE_OTLP_HEADERS_FILE", "headers_file"))
    export_timeout: float = Field(10.0, gt=0, validation_alias=_alias("FLOE_EXPORT_TIMEOUT", "export_timeout"))
    metrics_temporality: Literal["cumulative", "delta", "lowmemory"] = Field(
        "cumulative",
        validation_alias=_alias("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "metrics_temporality"),
    )

    # --- signals ---------------------------------------------------------------------------------
    traces_exporter: str | None = Field(None, validation_alias=_alias("OTEL_TRACES_EXPORTER"))
    metrics_exporter: str | None = Field(None, validation_alias=_alias("OTEL_METRICS_EXPORTER"))
    logs_exporter: str | None = Field(None, validation_alias=_alias("OTEL_LOGS_EXPORTER"))
    traces_enabled: bool = Field(True, validation_alias=_alias("FLOE_TRACES_ENABLED", "traces_enabled"))
    metrics_enabled: bool = Field(True, validation_alias=_alias("FLOE_METRICS_ENABLED", "metrics_enabled"))
    logs_enabled: bool = Field(True, validation_alias=_alias("FLOE_LOGS_ENABLED", "logs_enabled"))

    # --- sampling --------------------------------------------------------------------------------
    sampler: str | None = Field(None, validation_alias=_alias("OTEL_TRACES_SAMPLER", "sampler"))
    sampler_arg: str | None = Field(None, validation_alias=_alias("OTEL_TRACES_SAMPLER_ARG", "sampler_arg"))
    sampling_ratio: float | None = Field(None, validation_alias=_alias("FLOE_SAMPLING_RATIO", "sampling_ratio"))

    # --- logs ------------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_alias("FLOE_LOG_LEVEL", "log_level")
    )

    # --- batching / lifecycle ----------------------------------------------------------------------
    bsp_max_queue_size: int = Field(
        2048, gt=0, validation_alias=_alias("OTEL_BSP_MAX_QUEUE_SIZE", "FLOE_BSP_MAX_QUEUE_SIZE", "bsp_max_queue_size")
    )
    bsp_max_export_batch_size: int = Field(
        512,
        gt=0,
        validation_alias=_alias(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "FLOE_BSP_MAX_EXPORT_BATCH_SIZE", "bsp_max_export_batch_size"
        ),
    )
    bsp_schedule_delay_ms: int = Field(
        5000,
        gt=0,
        validation_alias=_alias("OTEL_BSP_SCHEDULE_DELAY", "FLOE_BSP_SCHEDULE_DELAY", "bsp_schedule_delay_ms"),
    )
    metric_export_interval_ms: int = Field(
        60000, gt=0, validation_alias=_alias("OTEL_METRIC_EXPORT_INTERVAL", "metric_export_interval_ms")
    )
    shutdown_timeout: float = Field(2.0, gt=0, validation_alias=_alias("FLOE_SHUTDOWN_TIMEOUT", "shutdown_timeout"))

    # --- validators --------------------------------------------------------------------------------
    @field_validator("endpoint", "traces_endpoint", "metrics_endpoint", "logs_endpoint", "collector_endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"{redact_url(value)!r} is not an http(s) URL; use e.g. http://otel-collector:4318"
            raise ValueError(msg)
        try:
            _ = parts.port
        except ValueError:
            msg = f"{redact_url(value)!r} has an invalid port; use e.g. http://otel-collector:4318"
            raise ValueError(msg) from None
        return value

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if value not in SAMPLERS:
            msg = f"unknown sampler {value!r}; use one of {', '.join(SAMPLERS)}"
            raise ValueError(msg)
        return value

    @field_validator("sampling_ratio")
    @classmethod
    def _ratio_in_range(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            msg = f"{value} is not a ratio; use a number from 0.0 to 1.0"
            raise ValueError(msg)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("mode", "protocol", "metrics_temporality", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("telemetry_backend", mode="before")
    @classmethod
    def _backend_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("sampler_arg")
    @classmethod
    def _ratio_arg(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or info.data.get("sampler") not in (None, "traceidratio", "parentbased_traceidratio"):
            return value
        try:
            ratio = float(value)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            msg = "not a ratio; use a number from 0.0 to 1.0"
            raise ValueError(msg)
        return value


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("floe_settings_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source over an injected mapping (tests pass plain dicts)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return super()._load_env_vars()
        return {k: v for k, v in environ.items() if v != ""}


class _Settings(FloeSettings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env beats YAML (passed as init values); no dotenv, no secrets dir.
        return (_MappingEnvSource(settings_cls), init_settings)


# YAML → field mapping: (path in the document, field)
_SPEC_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("metadata", "name"), "product_name"),
    (("metadata", "version"), "product_version"),
    (("metadata", "namespace"), "namespace"),
    (("metadata", "labels", "domain"), "namespace"),
    (("observability", "mode"), "mode"),
    (("observability", "tracing", "sampling_ratio"), "sampling_ratio"),
    (("observability", "logging", "level"), "log_level"),
)
_MANIFEST_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("plugins", "telemetry_backend", "type"), "telemetry_backend"),
    (("plugins", "telemetry_backend", "version"), "backend_version"),
    (("plugins", "telemetry_backend", "config"), "backend_config"),
    (("plugins", "telemetry_backend", "connection_secret_ref"), "backend_secret_ref"),
    (("observability", "mode"), "mode"),
    (("observability", "namespace"), "namespace"),
    (("observability", "tracing", "enabled"), "enabled"),
    (("observability", "tracing", "endpoint"), "endpoint"),
    (("observability", "tracing", "endpoint"), "collector_endpoint"),
    (("observability", "tracing", "protocol"), "protocol"),
    (("observability", "tracing", "sampling_ratio"), "sampling_ratio"),
    (("observability", "metrics", "enabled"), "metrics_enabled"),
    (("observability", "logging", "enabled"), "logs_enabled"),
    (("observability", "logging", "level"), "log_level"),
)


def _dig(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _read_yaml(path: Path, variable: str) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(variable, str(path), f"cannot read the file ({exc.strerror}); fix the path") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(variable, str(path), f"invalid YAML{where}; fix the file's syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(variable, str(path), "the YAML document must be a mapping") from None
    return doc


def _yaml_layer(
    doc: dict[str, Any], keys: tuple[tuple[tuple[str, ...], str], ...], label: str
) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path, field in keys:
        value = _dig(doc, path)
        if value is None or field in values:
            continue
        values[field] = value
        origin[field] = f"{label} {'.'.join(path)}"
    return values, origin


def _env_value(environ: Mapping[str, str], field: str) -> str | None:
    """Name of the env var that supplied ``field`` (first alias present), if any."""
    alias = FloeSettings.model_fields[field].validation_alias
    names = alias.choices if isinstance(alias, AliasChoices) else []
    for name in names:
        if isinstance(name, str) and environ.get(name):
            return name
    return None


def load_settings(environ: Mapping[str, str] | None = None) -> ResolvedSettings:
    """Read every source and validate. Raises :class:`ConfigError` naming the bad variable/field."""
    env = os.environ if environ is None else environ
    spec_env = env.get("FLOE_SPEC") or None
    manifest_env = env.get("FLOE_MANIFEST") or None

    init: dict[str, Any] = {}
    origin: dict[str, str] = {}
    manifest_path: Path | None = Path(manifest_env) if manifest_env else None
    spec_values: dict[str, Any] = {}
    spec_origin: dict[str, str] = {}
    if spec_env:
        spec_path = Path(spec_env)
        spec_doc = _read_yaml(spec_path, "FLOE_SPEC")
        spec_values, spec_origin = _yaml_layer(spec_doc, _SPEC_KEYS, f"spec:{spec_path}")
        origin.update(spec_origin)
        ref = _dig(spec_doc, ("platform", "manifest"))
        if manifest_path is None and isinstance(ref, str):
            manifest_path = (spec_path.parent / ref).resolve()
            origin["manifest_path"] = f"spec:{spec_path} platform.manifest"
    if manifest_path is not None:
        variable = "FLOE_MANIFEST" if manifest_env else f"{spec_env}: platform.manifest"
        manifest_doc = _read_yaml(manifest_path, variable)
        man_values, man_origin = _yaml_layer(manifest_doc, _MANIFEST_KEYS, f"manifest:{manifest_path}")
        for field, value in man_values.items():
            init[field] = value
            origin[field] = man_origin[field]
        init["manifest_path"] = manifest_path
    for field, value in spec_values.items():
        init[field] = value
        origin[field] = spec_origin[field]  # the spec's own key path (not the manifest's)

    token = _ENVIRON.set(env)
    try:
        settings = _Settings(**init)
    except ValidationError as exc:
        raise _config_error(exc, env, origin, init) from None
    finally:
        _ENVIRON.reset(token)

    sources = dict(origin)
    for field in FloeSettings.model_fields:
        name = _env_value(env, field)
        if name is not None:
            sources[field] = f"env:{name}"
    if settings.headers_file is not None and not settings.headers_file.is_file():
        raise ConfigError(
            "FLOE_OTLP_HEADERS_FILE", str(settings.headers_file), "file not found; mount the Secret there or unset it"
        )
    if settings.headers is not None:  # name the variable that was actually set (OTEL_* or FLOE_*)
        header_var = sources.get("headers", "headers").removeprefix("env:")
        parse_headers(settings.headers.get_secret_value(), source=header_var)
    if settings.headers_file is not None or settings.headers is not None:
        settings.export_headers()  # validate the format now, not at first export
    return ResolvedSettings(settings, sources)


_SECRET_FIELDS = SECRET_FIELDS


def _config_error(
    exc: ValidationError, environ: Mapping[str, str], origin: dict[str, str], init: dict[str, Any]
) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = str(err["loc"][0]) if err["loc"] else "settings"
    field = loc
    if loc not in FloeSettings.model_fields:  # an env alias
        field = next(
            (
                name
                for name, info in FloeSettings.model_fields.items()
                if isinstance(info.validation_alias, AliasChoices) and loc in info.validation_alias.choices
            ),
            loc,
        )
    where = _env_value(environ, field) if field in FloeSettings.model_fields else None
    if where is None:
        where = origin.get(field, loc)
    value = err.get("input")
    secret = field in _SECRET_FIELDS
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "enum" and field == "mode":
        message = "unknown mode; use one of dev, staging, prod"
    elif err["type"] in ("literal_error", "float_parsing", "int_parsing", "bool_parsing"):
        message = message.replace("Input should be", "use")
    elif err["type"] == "greater_than":
        message = message.replace("Input should be", "use a number")
    shown = "<redacted>" if secret else (redact_url(str(value)) if value is not None else "")
    _ = init
    return ConfigError(where, shown, message, secret=secret)
