"""The public API for telemetry backend plugins: the base class, what a plugin receives, a testing helper.

A backend plugin is a class registered in the ``floe.telemetry_backends`` entry-point group::

    [project.entry-points."floe.telemetry_backends"]
    honeycomb = "floe_honeycomb:HoneycombBackend"

It decides two things from one manifest line (``plugins.telemetry_backend.type``):

- the platform side: the OpenTelemetry Collector's exporters and pipelines (``get_otlp_exporter_config``,
  ``get_pipeline_config``) and Helm values (``get_helm_values``);
- the SDK side, declaratively: what the instrumented process exports per signal (``sdk_exporters``):
  ``"otlp"`` (to the platform collector, the usual answer), ``"console"`` or ``"none"``.

A plugin never builds SDK exporters itself and never reads the environment: the distro's plan does, so
``floe-otel doctor`` shows exactly what the run will do. Write one with nothing but this module; check it
with :func:`verify_plugin` in your tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import field
from types import MappingProxyType
from typing import Any, ClassVar

from floe_otel_distro._records import dataclass

__all__ = [
    "FLOE_API_VERSION",
    "PluginContext",
    "PluginProblem",
    "TelemetryBackendPlugin",
    "verify_plugin",
]

FLOE_API_VERSION = "1.0"
EXPORT_KINDS = ("otlp", "console", "none")
_SIGNALS = ("traces", "metrics", "logs")


@dataclass(frozen=True)
class PluginContext:
    """What a plugin receives: its manifest section and the facts of the run it may depend on.

    ``config`` is ``plugins.telemetry_backend.config`` as written (it may hold secrets: never print it);
    ``secret_ref`` is ``connection_secret_ref``; ``collector_endpoint`` the platform collector the SDK
    exports to (redacted of credentials); ``header_names`` the OTLP header names the SDK sends (no values).
    """

    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    secret_ref: str | None = None
    mode: str = "dev"
    collector_endpoint: str | None = None
    header_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class PluginProblem:
    """Something a plugin found wrong with its configuration: ``where`` (a manifest field) and the fix."""

    where: str
    message: str
    fatal: bool = True


class TelemetryBackendPlugin(ABC):
    """Base class of every telemetry backend plugin (see the module docstring).

    Constructible with no arguments (the distro and floe's own registry both do that); the distro then
    calls :meth:`configure` with a :class:`PluginContext`.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    floe_api_version: ClassVar[str] = FLOE_API_VERSION
    description: ClassVar[str] = ""
    #: what the instrumented process exports per signal: "otlp" | "console" | "none"
    sdk_exporters: ClassVar[Mapping[str, str]] = MappingProxyType({s: "otlp" for s in _SIGNALS})

    def __init__(self, context: PluginContext | None = None) -> None:
        self.context = context or PluginContext()

    def configure(self, context: PluginContext) -> None:
        """Receive the run's context (called by the distro before any other method)."""
        self.context = context

    @property
    def config(self) -> Mapping[str, Any]:
        """``plugins.telemetry_backend.config`` from the manifest."""
        return self.context.config

    # --- platform (collector) side -------------------------------------------------------------------
    @abstractmethod
    def get_otlp_exporter_config(self) -> dict[str, Any]:
        """Collector ``exporters:`` entries (name → config) that deliver to this backend."""

    def get_pipeline_config(self) -> dict[str, list[str]]:
        """Collector exporters per signal; default: every exporter on every signal."""
        names = list(self.get_otlp_exporter_config())
        return {signal: names for signal in _SIGNALS}

    def get_helm_values(self) -> dict[str, Any]:
        """Values for the upstream ``opentelemetry-collector`` Helm chart (gateway mode)."""
        values: dict[str, Any] = {
            "mode": "deployment",
            "image": {"repository": "otel/opentelemetry-collector-contrib"},
            "config": {"exporters": self.get_otlp_exporter_config()},
        }
        if self.context.secret_ref:
            values["extraEnvsFrom"] = [{"secretRef": {"name": self.context.secret_ref}}]
        return values

    # --- checks ----------------------------------------------------------------------------------------
    def validate(self) -> Sequence[PluginProblem]:
        """Problems with this configuration (none by default). Called while the plan is built."""
        return ()

    def validate_connection(self) -> bool:
        """Whether the backend is reachable from here (default True: the collector is probed instead)."""
        return True

    # --- floe-core's PluginMetadata contract (so floe's registry lists, loads and activates us) ---------
    @property
    def dependencies(self) -> list[str]:
        """Other floe plugins this one needs (none)."""
        return []

    @property
    def tracer_name(self) -> str | None:
        """floe-core's per-plugin tracer name (the distro instruments, not the plugin)."""
        return None

    @property
    def is_configured(self) -> bool:
        """floe-core asks; a distro plugin is always usable with its defaults."""
        return True

    def get_config_schema(self) -> None:
        """No pydantic schema: ``plugins.telemetry_backend.config`` is checked by :meth:`validate`."""
        return None

    def health_check(self, timeout: float | None = None) -> Any:
        """floe-core's ``HealthStatus`` (healthy iff :meth:`validate_connection`); a dict without floe-core."""
        healthy = self.validate_connection()
        import importlib

        try:  # floe-core is optional: no static import (and no type dependency) on it
            metadata: Any = importlib.import_module("floe_core.plugin_metadata")
        except ImportError:
            return {"state": "healthy" if healthy else "unhealthy"}
        state = metadata.HealthState.HEALTHY if healthy else metadata.HealthState.UNHEALTHY
        return metadata.HealthStatus(state=state)

    def startup(self) -> None:  # noqa: B027 - floe-core lifecycle hook, optional
        """Nothing to start: the distro installs the SDK."""

    def shutdown(self) -> None:  # noqa: B027 - floe-core lifecycle hook, optional
        """Nothing to stop: the distro flushes the SDK at exit."""

    # --- SDK side ---------------------------------------------------------------------------------------
    def console_exporter(self, signal: str) -> Any:
        """The exporter behind ``sdk_exporters[signal] == "console"`` (only the console backend has one)."""
        return None


def verify_plugin(  # noqa: PLR0912 - one check per contract rule
    cls: type[TelemetryBackendPlugin], config: Mapping[str, Any] | None = None
) -> list[str]:
    """Everything wrong with a plugin class, as sentences (an empty list: it is a valid plugin).

    Use it in a plugin's own tests: ``assert verify_plugin(MyBackend, {"endpoint": "https://x"}) == []``.
    """
    errors: list[str] = []
    if not (isinstance(cls, type) and issubclass(cls, TelemetryBackendPlugin)):
        return [f"{cls!r} is not a TelemetryBackendPlugin subclass"]
    for attr in ("name", "version", "floe_api_version"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
            errors.append(f"{attr} must be a non-empty string class attribute")
    if str(getattr(cls, "floe_api_version", "")).split(".")[0] != FLOE_API_VERSION.split(".", maxsplit=1)[0]:
        errors.append(f"floe_api_version must share major version {FLOE_API_VERSION.split('.', maxsplit=1)[0]}")
    for signal in _SIGNALS:
        if cls.sdk_exporters.get(signal) not in EXPORT_KINDS:
            errors.append(f"sdk_exporters[{signal!r}] must be one of {', '.join(EXPORT_KINDS)}")
    try:
        plugin = cls()
        plugin.configure(PluginContext(config=MappingProxyType(dict(config or {}))))
        exporters = plugin.get_otlp_exporter_config()
        pipelines = plugin.get_pipeline_config()
        if not isinstance(exporters, dict) or not exporters:
            errors.append("get_otlp_exporter_config() must return a non-empty dict")
        for signal, used in pipelines.items():
            unknown = [n for n in used if n not in exporters]
            if unknown:
                errors.append(f"get_pipeline_config()[{signal!r}] names unknown exporters {unknown}")
        if not isinstance(plugin.get_helm_values(), dict):
            errors.append("get_helm_values() must return a dict")
        for problem in plugin.validate():
            if not isinstance(problem, PluginProblem):
                errors.append("validate() must return PluginProblem items")
        if "console" in cls.sdk_exporters.values() and plugin.console_exporter("traces") is None:
            errors.append("sdk_exporters names 'console' but console_exporter('traces') returns None")
    except Exception as exc:  # a plugin under test may raise anything
        errors.append(f"raised {type(exc).__name__}: {exc}")
    return errors
