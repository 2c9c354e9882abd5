"""The start-up plan: one pure function turns the inputs into a frozen description of what the process will do.

``build_plan(Inputs)`` reads the environment mapping and the files it names and decides everything:
telemetry on or off and why, the backend plugin, per signal the exporters (kind, protocol, endpoint,
header names) or why the signal is off, the sampler, resource attributes, propagators, instrumentors,
lifecycle budgets, and every problem with its severity. It touches no global, opens no socket and imports
no exporter. The installer applies a plan and decides nothing; ``floe-otel doctor`` prints it.

Precedence, strongest first: standard ``OTEL_*`` variables → ``FLOE_*`` variables → floe's compiled
artifacts (``compiled_artifacts.json``: what ``floe platform compile`` resolved from the two files below, and
what floe's own runtime reads) → the data product spec (``floe.yaml``) → the platform manifest → the selected
floe-core backend plugin's ``get_otlp_exporter_config()`` → defaults for the mode. Only keys floe-core's
schema accepts are read from the files (``schema.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, field
from typing import Any

from floe_otel_distro import env as E
from floe_otel_distro._records import dataclass
from floe_otel_distro.backends import EntryPointRef, installed_entry_points
from floe_otel_distro.redaction import redact_url

FATAL, DEGRADED, WARNING = "fatal", "degraded", "warning"
MODES = ("dev", "staging", "prod")
MODE_SAMPLING = {"dev": 1.0, "staging": 0.5, "prod": 0.1}
MODE_BACKEND = {"dev": "console", "staging": "otlp", "prod": "otlp"}
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")
TEMPORALITIES = ("cumulative", "delta", "lowmemory")
HISTOGRAM_AGGREGATIONS = ("explicit_bucket_histogram", "base2_exponential_bucket_histogram")
PROTOCOLS = ("grpc", "http/protobuf")
WELL_KNOWN_PORTS = {4317: "grpc", 4318: "http/protobuf"}
DEFAULT_PROPAGATORS = ("tracecontext", "baggage")
API_PROPAGATORS = frozenset({"tracecontext", "baggage", "none"})
DEFAULT_DETECTORS = ("floe", "floe_process", "host", "os")
SDK_DETECTORS = frozenset({"otel", "service_instance", "process", "os", "host", "*"})


# --- the plan ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs: ``fatal`` (nothing installed), ``degraded`` (a fallback), ``warning``."""

    severity: str
    where: str
    value: str
    message: str

    def line(self) -> str:
        """The single ``floe-otel:`` stderr line for this problem."""
        shown = f"={self.value!r}" if self.value else ""
        return f"floe-otel: {self.where}{shown}: {self.message}"


@dataclass(frozen=True)
class ExporterPlan:
    """One exporter of one signal. ``endpoint`` and ``headers`` are secret-bearing: never serialised raw."""

    kind: str  # otlp | console | entry point name
    protocol: str | None = None
    endpoint: str | None = None
    endpoint_source: str | None = None
    insecure: bool = False
    timeout_s: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: OTLP/HTTP only: ``stdlib`` (``http_transport``) or ``requests (<why>)``, upstream's transport
    http_client: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the endpoint redacted, header names only."""
        return {
            "kind": self.kind,
            "protocol": self.protocol,
            "endpoint": redact_url(self.endpoint) if self.endpoint else None,
            "endpoint_source": self.endpoint_source,
            "insecure": self.insecure,
            "timeout_s": self.timeout_s,
            "header_names": sorted(self.headers),
            "http_client": self.http_client,
        }


@dataclass(frozen=True)
class SignalPlan:
    """What one signal does: its exporters, or why it is off; ``requested`` = the inputs asked for it."""

    signal: str
    exporters: tuple[ExporterPlan, ...]
    off_reason: str | None
    requested: bool

    @property
    def on(self) -> bool:
        """Whether anything will be exported for this signal."""
        return bool(self.exporters)


@dataclass(frozen=True)
class BackendPlan:
    """The selected backend plugin (``load`` imports its class; never serialised)."""

    name: str
    source: str
    dist: str | None
    dist_version: str | None
    plugin_version: str
    floe_api_version: str
    sdk_exporters: Mapping[str, str]
    shadows: tuple[str, ...] = ()
    #: "distro" (this distro's plugin API) or "floe-core" (a floe_core TelemetryBackendPlugin, adapted)
    api: str = "distro"
    #: what a floe-core plugin's get_otlp_exporter_config() asks for (the weakest endpoint source)
    endpoint: str | None = None
    protocol: str | None = None
    insecure: bool | None = None
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    secret_ref: str | None = None
    load: Callable[[], Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Plan:
    """Everything the process will do (see the module docstring). Frozen; ``to_dict`` is its JSON form."""

    active: bool
    off_reason: str | None
    strict: bool
    mode: str
    backend: BackendPlan | None
    signals: Mapping[str, SignalPlan]
    sampler: str
    sampler_ratio: float | None
    floe_attributes: Mapping[str, str]
    resource: Mapping[str, str]
    resource_detectors: tuple[str, ...]
    propagators: tuple[str, ...]
    baggage: Mapping[str, str]
    instrumentors: Mapping[str, bool]
    log_level: str
    metrics_temporality: str
    bsp_max_queue_size: int
    bsp_max_export_batch_size: int
    bsp_schedule_delay_ms: int
    metric_export_interval_ms: int
    shutdown_timeout_s: float
    env_overrides: Mapping[str, str]
    sources: Mapping[str, str]
    problems: tuple[Problem, ...]
    #: who exports stdlib log records (one export per record): "floe" (the distro's root-logger handler),
    #: "opentelemetry-instrumentation-logging" (that instrumentation's handler), or "none"
    log_export: str = "floe"
    #: OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, as the OTLP metric exporters read it
    metrics_histogram_aggregation: str = "explicit_bucket_histogram"

    @property
    def installs_nothing(self) -> bool:
        """No provider will be installed."""
        return not self.active

    @property
    def dropped(self) -> tuple[str, ...]:
        """Signals the inputs asked for that will not be exported."""
        return tuple(s.signal for s in self.signals.values() if s.requested and not s.on)

    @property
    def fatal_in_strict(self) -> bool:
        """Strict mode and any problem at all: the process exits 78 before the program runs."""
        return self.strict and bool(self.problems)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (secrets redacted: header names only, URLs without credentials)."""
        backend = None
        if self.backend is not None:
            b = self.backend
            backend = {
                "name": b.name,
                "source": b.source,
                "dist": b.dist,
                "dist_version": b.dist_version,
                "plugin_version": b.plugin_version,
                "floe_api_version": b.floe_api_version,
                "sdk_exporters": dict(b.sdk_exporters),
                "shadows": list(b.shadows),
                "api": b.api,
                "endpoint": redact_url(b.endpoint) if b.endpoint else None,
                "protocol": b.protocol,
                "secret_ref": b.secret_ref,
            }
        return {
            "active": self.active,
            "off_reason": self.off_reason,
            "strict": self.strict,
            "mode": self.mode,
            "backend": backend,
            "signals": {
                name: {
                    "on": s.on,
                    "requested": s.requested,
                    "off_reason": s.off_reason,
                    "exporters": [e.to_dict() for e in s.exporters],
                }
                for name, s in self.signals.items()
            },
            "dropped": list(self.dropped),
            "sampler": {"name": self.sampler, "ratio": self.sampler_ratio},
            "floe_attributes": dict(self.floe_attributes),
            "resource": dict(self.resource),
            "resource_detectors": list(self.resource_detectors),
            "propagators": list(self.propagators),
            "baggage": dict(self.baggage),
            "instrumentors": dict(self.instrumentors),
            "log_level": self.log_level,
            "log_export": self.log_export,
            "metrics_temporality": self.metrics_temporality,
            "metrics_histogram_aggregation": self.metrics_histogram_aggregation,
            "lifecycle": {
                "bsp_max_queue_size": self.bsp_max_queue_size,
                "bsp_max_export_batch_size": self.bsp_max_export_batch_size,
                "bsp_schedule_delay_ms": self.bsp_schedule_delay_ms,
                "metric_export_interval_ms": self.metric_export_interval_ms,
                "shutdown_timeout_s": self.shutdown_timeout_s,
            },
            "env_overrides": {
                k: ("<redacted>" if "HEADERS" in k else redact_url(v)) for k, v in self.env_overrides.items()
            },
            "sources": dict(self.sources),
            "problems": [asdict(p) for p in self.problems],
        }


# --- inputs --------------------------------------------------------------------------------------------------
def _http_transport_installed() -> bool:
    """Upstream's OTLP/HTTP transport interface (opentelemetry-exporter-otlp-proto-http 1.45+) is installed."""
    from importlib.util import find_spec

    try:
        return find_spec("opentelemetry.exporter.http.transport") is not None
    except (ImportError, ValueError):
        return False


def _grpc_installed() -> bool:
    from importlib.util import find_spec

    try:
        return find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Inputs:
    """What the plan is built from. Tests inject every part; start-up passes ``os.environ``."""

    environ: Mapping[str, str]
    entry_points: Callable[[str], tuple[EntryPointRef, ...]] = installed_entry_points
    grpc_available: Callable[[], bool] = _grpc_installed
    http_transport_available: Callable[[], bool] = _http_transport_installed
    load_yaml: Callable[[str, str], dict[str, Any]] | None = None  # default: files.load_yaml
    read_text: Callable[[str, str, int], str] | None = None  # default: files.read_text
    #: where ``floe platform compile`` writes by default (relative to the working directory); None: not looked up
    compiled_default: str | None = "target/compiled_artifacts.json"


# --- file layers ---------------------------------------------------------------------------------------------
# (path in the document, setting) — only keys floe-core's own schema accepts (see ``schema.py``)
_SPEC_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("metadata", "name"), "product_name"),
    (("metadata", "version"), "product_version"),
    (("metadata", "labels", "domain"), "namespace"),
)
_MANIFEST_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("plugins", "telemetry_backend", "type"), "backend"),
    (("plugins", "telemetry_backend", "version"), "backend_version"),
    (("plugins", "telemetry_backend", "config"), "backend_config"),
    (("plugins", "telemetry_backend", "connection_secret_ref"), "backend_secret_ref"),
    (("observability", "tracing", "enabled"), "enabled"),
    (("observability", "tracing", "exporter"), "traces_exporter"),
    (("observability", "tracing", "endpoint"), "endpoint"),
    (("observability", "logging", "level"), "log_level"),
)
_TELEMETRY = ("observability", "telemetry")
_RES = (*_TELEMETRY, "resource_attributes")
_COMPILED_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    ((*_TELEMETRY, "enabled"), "enabled"),
    ((*_TELEMETRY, "otlp_endpoint"), "endpoint"),
    ((*_TELEMETRY, "otlp_protocol"), "protocol"),
    ((*_TELEMETRY, "sampling"), "sampling_map"),
    ((*_TELEMETRY, "authentication"), "authentication"),
    ((*_TELEMETRY, "batch_processor", "max_queue_size"), "bsp_max_queue_size"),
    ((*_TELEMETRY, "batch_processor", "max_export_batch_size"), "bsp_max_export_batch_size"),
    ((*_TELEMETRY, "batch_processor", "schedule_delay_millis"), "bsp_schedule_delay_ms"),
    ((*_TELEMETRY, "logging", "log_level"), "log_level"),
    ((*_TELEMETRY, "backend"), "compiled_backend"),
    ((*_RES, "service_name"), "service_name"),
    ((*_RES, "floe_product_name"), "product_name"),
    ((*_RES, "floe_product_version"), "product_version"),
    ((*_RES, "service_version"), "product_version"),
    ((*_RES, "floe_namespace"), "namespace"),
    ((*_RES, "floe_mode"), "mode"),
    ((*_RES, "deployment_environment"), "mode"),
)
# keys this distro once read that floe-core's schema rejects ("Extra inputs are not permitted"): only variables
_REJECTED_MANIFEST_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("observability", "mode"), "FLOE_MODE"),
    (("observability", "namespace"), "FLOE_NAMESPACE"),
    (("observability", "tracing", "protocol"), "OTEL_EXPORTER_OTLP_PROTOCOL"),
    (("observability", "tracing", "sampling_ratio"), "FLOE_SAMPLING_RATIO"),
    (("observability", "metrics", "enabled"), "FLOE_METRICS_ENABLED"),
    (("observability", "logging", "enabled"), "FLOE_LOGS_ENABLED"),
)
_REJECTED_SPEC_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("metadata", "namespace"), "FLOE_NAMESPACE"),
    (("observability",), "the FLOE_* variables"),
)

# setting → the variables that set it, strongest first
_ENV_NAMES: dict[str, tuple[str, ...]] = {
    "namespace": (E.FLOE_NAMESPACE,),
    "product_name": (E.FLOE_PRODUCT_NAME,),
    "product_version": (E.FLOE_PRODUCT_VERSION,),
    "mode": (E.FLOE_MODE,),
    "enabled": (E.FLOE_OTEL_ENABLED,),
    "backend": (E.FLOE_TELEMETRY_BACKEND,),
    "bsp_max_queue_size": (E.OTEL_BSP_MAX_QUEUE_SIZE,),
    "bsp_max_export_batch_size": (E.OTEL_BSP_MAX_EXPORT_BATCH_SIZE,),
    "bsp_schedule_delay_ms": (E.OTEL_BSP_SCHEDULE_DELAY,),
    "traces_exporter": (),
    "endpoint": (E.OTEL_EXPORTER_OTLP_ENDPOINT, E.FLOE_OTLP_ENDPOINT),
    "protocol": (E.OTEL_EXPORTER_OTLP_PROTOCOL, E.FLOE_OTLP_PROTOCOL),
    "sampling_ratio": (E.FLOE_SAMPLING_RATIO,),
    "log_level": (E.FLOE_LOG_LEVEL,),
    "traces_enabled": ("FLOE_TRACES_ENABLED",),
    "metrics_enabled": ("FLOE_METRICS_ENABLED",),
    "logs_enabled": ("FLOE_LOGS_ENABLED",),
}


def _dig(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


class _Layers:
    """Looks a setting up through env → spec → manifest, remembering where each value came from."""

    def __init__(self, env: E.Env) -> None:
        self.env = env
        self.files: list[tuple[dict[str, Any], dict[str, str]]] = []  # (values, origin), strongest first
        self.sources: dict[str, str] = {}

    def add_file(self, doc: dict[str, Any], keys: tuple[tuple[tuple[str, ...], str], ...], label: str) -> None:
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for path, setting in keys:
            value = _dig(doc, path)
            if value is None or setting in values:
                continue
            values[setting] = value
            origin[setting] = f"{label} {'.'.join(path)}"
        self.files.append((values, origin))

    def get(self, setting: str) -> tuple[Any, str]:
        """(value, where) — ``where`` is the variable name, ``<file> key`` or ``default``."""
        value, name = self.env.first(*_ENV_NAMES.get(setting, ()))
        if name is not None:
            self.sources[setting] = f"env:{name}"
            return value, name
        for values, origin in self.files:
            if setting in values:
                self.sources[setting] = origin[setting]
                return values[setting], origin[setting]
        return None, "default"


# --- the builder ---------------------------------------------------------------------------------------------
def _off(reason: str, strict: bool, problems: list[Problem], sources: dict[str, str]) -> Plan:
    return Plan(
        active=False,
        off_reason=reason,
        strict=strict,
        mode="dev",
        backend=None,
        signals={s: SignalPlan(s, (), reason, False) for s in E.SIGNALS},
        sampler="parentbased_traceidratio",
        sampler_ratio=None,
        floe_attributes={},
        resource={},
        resource_detectors=(),
        propagators=(),
        baggage={},
        instrumentors={},
        log_level="INFO",
        metrics_temporality="cumulative",
        bsp_max_queue_size=2048,
        bsp_max_export_batch_size=512,
        bsp_schedule_delay_ms=5000,
        metric_export_interval_ms=60000,
        shutdown_timeout_s=2.0,
        env_overrides={},
        sources=sources,
        problems=tuple(problems),
    )


def build_plan(inputs: Inputs) -> Plan:
    """Decide everything from ``inputs`` (pure; see the module docstring). Never raises for bad input."""
    from floe_otel_distro import _planning

    return _planning.build(inputs)
