"""The ``opentelemetry_configurator`` entry point ``floe``: builds the three providers from the settings.

Steps: resource → tracer provider (floe sampler, floe-attributes processor, batch export) → meter
provider (periodic reader) → logger provider (+ stdlib ``LoggingHandler``) → start-up context (env
carriers + floe baggage) → lifecycle hooks (signals, fork, bounded exit). Exporters come from the
selected backend plugin; all export is asynchronous. Nothing runs when the distro disabled telemetry.
"""

from __future__ import annotations

import contextlib
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
        raise ConfigError(
            f"OTEL_{signal.upper()}_EXPORTER", name, "no such exporter installed; use otlp, console or none"
        )
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
        interval = settings.metric_export_interval_ms
        readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=interval))
    provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    return provider


def install_logging(settings: Any, plugin: Any, resource: Any) -> Any:
    """Logger provider with batch export, and an OTel handler on the root logger at ``log_level``."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from floe_otel_distro.log_handler import FloeLoggingHandler

    exporter = _named_exporter("logs", settings.logs_exporter or "otlp", plugin.log_exporter)
    if exporter is None:
        return None
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    set_logger_provider(provider)
    handler = FloeLoggingHandler(level=getattr(logging, settings.log_level), logger_provider=provider)
    logging.getLogger().addHandler(handler)
    return provider


def _host_port(url: str) -> tuple[str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


_OTLP_PORTS = {4317, 4318}  # the same collector's gRPC and HTTP receivers


def collector_bypass(settings: Any, resolved: Any) -> ConfigError | None:
    """Prod mode: an OTLP exporter aimed elsewhere than the manifest's collector (``observability.tracing.endpoint``).

    Same host is the same collector (its gRPC and HTTP ports may differ); anything else bypasses it.
    """
    declared = settings.collector_endpoint
    if settings.mode.value != "prod" or not declared or settings.backend_name == "console":
        return None
    want_host, want_port = _host_port(declared)
    for signal in ("traces", "metrics", "logs"):
        exporter = (getattr(settings, f"{signal}_exporter") or "otlp").strip().lower()
        if not settings.signal_enabled(signal) or exporter != "otlp":
            continue
        url = settings.signal_endpoint(signal)
        host, port = _host_port(url)
        same_port = port == want_port or port is None or want_port is None or {port, want_port} <= _OTLP_PORTS
        if host == want_host and same_port:
            continue
        source = resolved.source_of(f"{signal}_endpoint") if getattr(settings, f"{signal}_endpoint") else (
            resolved.source_of("endpoint"))
        where = source.removeprefix("env:") if source.startswith("env:") else "OTLP endpoint"
        from floe_otel_distro.errors import redact_url

        return ConfigError(
            where,
            redact_url(url),
            f"in prod, telemetry must go through the platform collector {redact_url(declared)} "
            "(manifest observability.tracing.endpoint); unset this to use it",
        )
    return None


def check_collector_bypass(settings: Any, resolved: Any, environ: Mapping[str, str]) -> None:
    """One ``floe-otel:`` warning line (export continues); strict mode: the error, exit 78."""
    error = collector_bypass(settings, resolved)
    if error is None:
        return
    if settings.strict or strict_from_env(dict(environ)):
        report(error, strict=True)
        return
    import sys

    with contextlib.suppress(Exception):
        sys.stderr.write(error.line() + " (warning: exporting there anyway)\n")


def install(environ: Mapping[str, str]) -> None:
    """Build and register everything the settings ask for (the distro has loaded them)."""
    state = _state.STATE
    if not state.active or state.installed or state.resolved is None:
        return
    settings = state.resolved.settings
    plugin = state.plugin
    from floe_otel_distro.resource import build_resource

    check_collector_bypass(settings, state.resolved, environ)
    from floe_otel_distro import lifecycle

    lifecycle.prepare_for_fork()  # before any provider registers its fork hooks
    resource = build_resource(settings, environ)
    steps = (("traces", install_tracing), ("metrics", install_metrics), ("logs", install_logging))
    for signal, step in steps:
        if settings.signal_enabled(signal):
            provider = step(settings, plugin, resource)
            if provider is not None:
                state.providers.append(provider)
    state.installed = True

    from floe_otel_distro import propagation

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
