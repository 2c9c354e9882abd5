"""The ``opentelemetry_configurator`` entry point ``floe``: builds the three providers from the settings.

Steps: resource → tracer provider (floe sampler, floe-attributes processor, batch export) → meter
provider (periodic reader) → logger provider (+ stdlib ``LoggingHandler``) → start-up context (env
carriers + floe baggage) → lifecycle hooks (signals, fork, bounded exit). Exporters come from the
selected backend plugin; all export is asynchronous. Nothing runs when the distro disabled telemetry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from floe_otel_distro import _state
from floe_otel_distro.errors import ConfigError, report, strict_from_env


def _named_exporter(signal: str, name: str, plugin_default: Any) -> Any:
    """``OTEL_<SIGNAL>_EXPORTER``: ``otlp`` → the backend's; ``console`` → floe console; else an entry point."""
    name = name.strip().lower()
    if name in ("", "otlp"):
        return plugin_default()
    if name == "console":
        if signal != "traces":
            return None
        from configurators.console import ConsoleTreeExporter

        return ConsoleTreeExporter()
    from importlib.metadata import entry_points

    found = list(entry_points(group=f"opentelemetry_{signal}_exporter", name=name))
    if not found:
        raise ConfigError(f"OTEL_{signal.upper()}_EXPORTER", name, "no such exporter installed; use otlp, console or none")
    return found[0].load()()


def install_tracing(settings: Any, plugin: Any, resource: Any) -> Any:
    """Tracer provider with the floe sampler, the floe-attributes processor and batch export."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from floe_otel_distro.sampling import build_sampler
    from floe_otel_distro.span_processors import FloeAttributesSpanProcessor

    provider = TracerProvider(resource=resource, sampler=build_sampler(settings), shutdown_on_exit=False)
    provider.add_span_processor(FloeAttributesSpanProcessor(settings.floe_attributes()))
    exporter = _named_exporter("traces", settings.traces_exporter or "otlp", plugin.span_exporter)
    if exporter is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=settings.bsp_max_queue_size,
                schedule_delay_millis=settings.bsp_schedule_delay_ms,
                max_export_batch_size=min(settings.bsp_max_export_batch_size, settings.bsp_max_queue_size),
            )
        )
    trace.set_tracer_provider(provider)
    return provider


def install_metrics(settings: Any, plugin: Any, resource: Any) -> Any:
    """Meter provider with a periodic exporting reader (no reader when the backend has no metrics)."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = _named_exporter("metrics", settings.metrics_exporter or "otlp", plugin.metric_exporter)
    readers = []
    if exporter is not None:
        readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=settings.metric_export_interval_ms))
    provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    return provider


def install_logging(settings: Any, plugin: Any, resource: Any) -> Any:
    """Logger provider with batch export, and an OTel handler on the root logger at ``log_level``."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    exporter = _named_exporter("logs", settings.logs_exporter or "otlp", plugin.log_exporter)
    if exporter is None:
        return None
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    set_logger_provider(provider)
    handler = LoggingHandler(level=getattr(logging, settings.log_level), logger_provider=provider)
    logging.getLogger().addHandler(handler)
    return provider


def install(environ: Mapping[str, str]) -> None:
    """Build and register everything the settings ask for (the distro has loaded them)."""
    state = _state.STATE
    if not state.active or state.installed or state.resolved is None:
        return
    settings = state.resolved.settings
    plugin = state.plugin
    from floe_otel_distro.resource import build_resource

    resource = build_resource(settings, environ)
    steps = (("traces", install_tracing), ("metrics", install_metrics), ("logs", install_logging))
    for signal, step in steps:
        if settings.signal_enabled(signal):
            provider = step(settings, plugin, resource)
            if provider is not None:
                state.providers.append(provider)
    state.installed = True

    from floe_otel_distro import lifecycle, propagation

    propagation.attach_startup_context(environ, settings.namespace)
    lifecycle.install(state.providers, settings)


class FloeConfigurator:
    """floe's configurator (thin: the work is in ``install``).

    The launcher only calls ``FloeConfigurator().configure(**kwargs)``. We deliberately do not subclass
    the SDK's ``_BaseConfigurator``: importing ``opentelemetry.sdk._configuration`` pulls in every
    exporter hook of the SDK's own auto-configuration (~50 ms at start-up) that floe does not use.
    """

    def configure(self, **kwargs: Any) -> None:
        """Build the providers (called once by ``opentelemetry-instrument``)."""
        environ = os.environ
        try:
            from floe_otel_distro.distro import load_state

            load_state(environ)  # no-op when our distro already ran
            install(environ)
        except ConfigError as error:
            _state.STATE.disabled_reason = "invalid configuration"
            report(error, strict=strict_from_env(environ))
        except Exception as exc:  # never break the host program
            _state.STATE.disabled_reason = "internal error"
            report(
                ConfigError("floe-otel-distro", "", f"internal error {type(exc).__name__}: {exc}; please report it"),
                strict=strict_from_env(environ),
            )
