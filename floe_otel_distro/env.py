"""Every environment variable the distro reads: its name, default and meaning, and typed getters over a mapping.

This is the only module that knows variable names and their syntax. ``Env`` wraps an injected mapping
(``os.environ`` at start-up, a plain dict in tests). A getter never raises: a value it cannot use yields
the default and records a :class:`~floe_otel_distro.plan.Problem` of severity ``degraded`` naming the
variable, the value (unless secret) and what is used instead. ``docs/configuration.md`` lists them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TypeVar

from floe_otel_distro._records import dataclass

T = TypeVar("T")

# --- identity ------------------------------------------------------------------------------------------
FLOE_NAMESPACE = "FLOE_NAMESPACE"  #: data product namespace → ``floe.namespace``. Default ``default``.
FLOE_PRODUCT_NAME = "FLOE_PRODUCT_NAME"  #: → ``floe.product.name`` and the default ``service.name``.
FLOE_PRODUCT_VERSION = "FLOE_PRODUCT_VERSION"  #: → ``floe.product.version``, ``service.version``.
FLOE_MODE = "FLOE_MODE"  #: dev | staging | prod: sampling and the default backend. Default ``dev``.
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
OTEL_EXPERIMENTAL_RESOURCE_DETECTORS = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"

# --- files -------------------------------------------------------------------------------------------------
FLOE_SPEC = "FLOE_SPEC"  #: the data product's ``floe.yaml``.
FLOE_MANIFEST = "FLOE_MANIFEST"  #: the platform ``manifest.yaml`` (else the spec's ``platform.manifest``).
#: floe's ``compiled_artifacts.json`` (default: ``target/compiled_artifacts.json`` if it exists; ``none``: not read).
FLOE_COMPILED_ARTIFACTS = "FLOE_COMPILED_ARTIFACTS"
FLOE_OTLP_HEADERS_FILE = "FLOE_OTLP_HEADERS_FILE"  #: OTLP headers from a mounted Secret (``k=v`` lines).

# --- policy ------------------------------------------------------------------------------------------------
FLOE_OTEL_STRICT = "FLOE_OTEL_STRICT"  #: true: any problem exits 78 before the program runs. Default false.
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"  #: true: nothing is installed.
FLOE_OTEL_ENABLED = "FLOE_OTEL_ENABLED"  #: false: nothing is installed. Default true.

# --- backend / export --------------------------------------------------------------------------------------
FLOE_TELEMETRY_BACKEND = "FLOE_TELEMETRY_BACKEND"  #: backend plugin name (beats the manifest).
FLOE_COLLECTOR_LAYOUT = "FLOE_COLLECTOR_LAYOUT"  #: ``tiered``: agent + tail-sampling gateways (docs/scale-out.md).
OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
FLOE_OTLP_ENDPOINT = "FLOE_OTLP_ENDPOINT"  #: like OTEL_EXPORTER_OTLP_ENDPOINT, weaker than it.
#: ``stdlib`` (default) or ``requests``: the OTLP/HTTP exporters' transport (``http_transport``).
FLOE_OTEL_HTTP_CLIENT = "FLOE_OTEL_HTTP_CLIENT"
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
FLOE_OTLP_PROTOCOL = "FLOE_OTLP_PROTOCOL"
OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
FLOE_OTLP_HEADERS = "FLOE_OTLP_HEADERS"
OTEL_EXPORTER_OTLP_TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT"  #: seconds, as the Python exporters read it. Default 10.
FLOE_EXPORT_TIMEOUT = "FLOE_EXPORT_TIMEOUT"
OTEL_EXPORTER_OTLP_INSECURE = "OTEL_EXPORTER_OTLP_INSECURE"
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
#: explicit_bucket_histogram (default) | base2_exponential_bucket_histogram
OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
#: declarative configuration (a YAML file read by opentelemetry-configuration): not supported by floe
OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"
OTEL_PROPAGATORS = "OTEL_PROPAGATORS"
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"

# --- sampling / logs / batching / lifecycle -----------------------------------------------------------------
OTEL_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
OTEL_TRACES_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
FLOE_SAMPLING_RATIO = "FLOE_SAMPLING_RATIO"  #: 0.0-1.0, beats the mode default, loses to OTEL_TRACES_SAMPLER_ARG.
FLOE_LOG_LEVEL = "FLOE_LOG_LEVEL"  #: level of the OTel log handler on the root logger. Default INFO.
#: the SDK's switch for its root-logger handler: ``false`` = stdlib records are not exported by the SDK's
#: handler (floe's stands for it; upstream default false, floe's default: on). ``true``: floe's handler exports.
OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED = "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"
#: opentelemetry-instrumentation-logging's switch for *its* handler (default true). The plan sets it to
#: ``false`` for that instrumentation when floe's handler exports, so a record is exported once.
OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION = "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION"
#: opentelemetry-instrumentation-logging: ``true`` = otelTraceID/otelSpanID on records and ``basicConfig``
#: with OTEL_PYTHON_LOG_FORMAT at OTEL_PYTHON_LOG_LEVEL (read by that instrumentation, not by floe).
OTEL_PYTHON_LOG_CORRELATION = "OTEL_PYTHON_LOG_CORRELATION"
OTEL_PYTHON_LOG_LEVEL = "OTEL_PYTHON_LOG_LEVEL"
OTEL_PYTHON_LOG_FORMAT = "OTEL_PYTHON_LOG_FORMAT"
OTEL_BSP_MAX_QUEUE_SIZE = "OTEL_BSP_MAX_QUEUE_SIZE"
OTEL_BSP_MAX_EXPORT_BATCH_SIZE = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
OTEL_BSP_SCHEDULE_DELAY = "OTEL_BSP_SCHEDULE_DELAY"
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
FLOE_SHUTDOWN_TIMEOUT = "FLOE_SHUTDOWN_TIMEOUT"  #: seconds the exit flush may take (0.1-60). Default 2.

SIGNALS = ("traces", "metrics", "logs")


def signal_var(template: str, signal: str) -> str:
    """``OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT`` & co for one signal (``template`` holds ``{SIGNAL}``)."""
    return template.replace("{SIGNAL}", signal.upper())


TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Finding:
    """A value the getters could not use (becomes a plan ``Problem``)."""

    severity: str
    where: str
    value: str
    message: str


@dataclass
class Env:
    """Never-raising typed conversions; what could not be used is collected in ``findings``.

    Every getter takes ``where`` (the variable or file field a value came from) and the raw value (a string
    from the environment, or a scalar from a YAML file), so env and file values are checked alike.
    """

    environ: Mapping[str, str]
    findings: list[Finding] = field(default_factory=list)

    def raw(self, name: str) -> str | None:
        """The stripped value of variable ``name``, or None when unset or empty."""
        value = self.environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def first(self, *names: str) -> tuple[str | None, str | None]:
        """The first of ``names`` that is set: (value, name)."""
        for name in names:
            value = self.raw(name)
            if value is not None:
                return value, name
        return None, None

    def degrade(self, where: str, value: object, message: str, *, secret: bool = False) -> None:
        """Record that ``where`` falls back to its default."""
        self.findings.append(Finding("degraded", where, "<redacted>" if secret else str(value), message))

    def warn(self, where: str, value: object, message: str) -> None:
        """Record something worth knowing that changes nothing."""
        self.findings.append(Finding("warning", where, str(value), message))

    def flag(self, where: str, value: object, default: bool) -> bool:
        """A boolean (true/false/1/0/yes/no/on/off, or a YAML bool)."""
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        self.degrade(where, value, f"not a boolean; use true or false (using {str(default).lower()})")
        return default

    def number(  # noqa: PLR0917 - where, value, default, type, range: one call reads as a sentence
        self,
        where: str,
        value: object,
        default: T,
        convert: Callable[[str], T],
        low: float,
        high: float,
        unit: str = "",
    ) -> T:
        """A finite number within [low, high]; anything else falls back to ``default``."""
        if value is None:
            return default
        try:
            number = convert(str(value).strip())
            ok = not isinstance(value, bool) and math.isfinite(float(number)) and low <= float(number) <= high  # type: ignore[arg-type]
        except (ValueError, OverflowError):
            ok = False
        if ok:
            return number
        kind = "an integer" if convert is int else "a number"
        self.degrade(where, value, f"use {kind} from {_fmt(low)} to {_fmt(high)}{unit} (using {default}{unit})")
        return default

    def choice(self, where: str, value: object, options: tuple[str, ...], default: str | None) -> str | None:
        """One of ``options`` (case-insensitive); anything else falls back to ``default``."""
        if value is None:
            return default
        lowered = str(value).strip().lower()
        if lowered in options:
            return lowered
        self.degrade(where, value, f"use one of {', '.join(options)} (using {default or 'the default'})")
        return default


def names(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of names, lower-cased and de-duplicated; None when unset."""
    if value is None:
        return None
    return tuple(dict.fromkeys(item.strip().lower() for item in value.split(",") if item.strip()))


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
