"""Applies a plan, all or nothing: builds every provider first, then commits the globals; decides nothing.

Steps, in order: environment the SDK reads (``plan.env_overrides``) → resource → tracer provider →
meter provider → logger provider and the root-logger handler → propagators → commit (global providers,
handler, start-up context) → lifecycle hooks. The meter and logger providers are ``providers.Deferred*``:
their SDK objects are built on first use, so a job that records no metric and logs nothing never pays
for them. If any step raises, everything done so far is undone —
the API is back to its no-op providers, the handler removed, the environment restored — one
``floe-otel:`` line names the step and the program runs without telemetry (strict mode: exit 78).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import field
from typing import Any

from floe_otel_distro._records import dataclass
from floe_otel_distro.plan import ExporterPlan, Plan

STRICT_EXIT_STATUS = 78  # EX_CONFIG from sysexits.h


@dataclass
class Installed:
    """What the installer put in place (so it can be undone)."""

    providers: list[Any] = field(default_factory=list)
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    handler: logging.Handler | None = None
    env_before: dict[str, str | None] = field(default_factory=dict)
    context_token: object | None = None
    previous_textmap: Any = None
    committed: list[str] = field(default_factory=list)


class InstallError(Exception):
    """A step failed: ``step`` names it."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"{step}: {type(cause).__name__}: {cause}")


# --- exporters ---------------------------------------------------------------------------------------------
def _console(signal: str) -> Any:
    """The console exporter, reached through the ``console`` backend plugin like any other backend."""
    if signal == "traces":
        from floe_otel_distro.backends import candidates, installed_entry_points

        for ref in candidates(installed_entry_points("floe.telemetry_backends"), "console"):
            plugin = ref.load()()
            if not hasattr(plugin, "console_exporter"):  # floe-core's console plugin: not one of ours
                continue
            exporter = plugin.console_exporter("traces")
            if exporter is not None:
                return exporter
        msg = "no console backend plugin provides a trace exporter"
        raise LookupError(msg)
    if signal == "metrics":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    return ConsoleLogRecordExporter()


def _named(signal: str, name: str) -> Any:
    from floe_otel_distro.backends import installed_entry_points

    for ref in installed_entry_points(f"opentelemetry_{signal}_exporter"):
        if ref.name == name:
            return ref.load()()
    msg = f"exporter {name!r} disappeared since the plan was made"
    raise LookupError(msg)


def build_exporter(signal: str, spec: ExporterPlan, plan: Plan) -> Any:
    """The exporter object for one planned exporter (OTLP ones import their stack on first export)."""
    if spec.kind == "otlp":
        from floe_otel_distro.exporters import otlp_exporter

        return otlp_exporter(signal, spec, plan.metrics_temporality, plan.metrics_histogram_aggregation)
    if spec.kind == "console":
        return _console(signal)
    return _named(signal, spec.kind)


# --- steps -------------------------------------------------------------------------------------------------
def step_environment(plan: Plan, done: Installed, environ: MutableMapping[str, str]) -> None:
    """Put the values the SDK reads itself (propagators, resource detectors) into the environment."""
    for key, value in plan.env_overrides.items():
        if environ.get(key) != value:
            done.env_before.setdefault(key, environ.get(key))
            environ[key] = value


def step_tracing(plan: Plan, done: Installed, resource: Any) -> None:
    """Tracer provider: the plan's sampler, floe attributes on every span, batch export per exporter."""
    if not plan.signals["traces"].on:
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from floe_otel_distro.sampling import build_sampler
    from floe_otel_distro.span_processors import FloeAttributesSpanProcessor

    provider = TracerProvider(
        resource=resource, sampler=build_sampler(plan.sampler, plan.sampler_ratio), shutdown_on_exit=False
    )
    done.providers.append(provider)
    provider.add_span_processor(FloeAttributesSpanProcessor(plan.floe_attributes))
    for spec in plan.signals["traces"].exporters:
        provider.add_span_processor(
            BatchSpanProcessor(
                build_exporter("traces", spec, plan),
                max_queue_size=plan.bsp_max_queue_size,
                schedule_delay_millis=plan.bsp_schedule_delay_ms,
                max_export_batch_size=plan.bsp_max_export_batch_size,
            )
        )
    done.tracer_provider = provider


def step_metrics(plan: Plan, done: Installed, resource: Any) -> None:
    """Meter provider, one periodic exporting reader per exporter; the SDK part is built on first use."""
    if not plan.signals["metrics"].on:
        return
    from floe_otel_distro.providers import DeferredMeterProvider

    def build() -> Any:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers = [
            PeriodicExportingMetricReader(
                build_exporter("metrics", spec, plan), export_interval_millis=plan.metric_export_interval_ms
            )
            for spec in plan.signals["metrics"].exporters
        ]
        return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)

    provider = DeferredMeterProvider(build)
    done.providers.append(provider)
    done.meter_provider = provider


def step_logging(plan: Plan, done: Installed, resource: Any) -> None:
    """Logger provider with batch export, and the OTel handler for the root logger at the plan's level.

    The logs SDK is built when the first record (or logger) is asked for.
    """
    if not plan.signals["logs"].on:
        return
    from floe_otel_distro.log_handler import FloeLoggingHandler
    from floe_otel_distro.providers import DeferredLoggerProvider

    def build() -> Any:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        sdk_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for spec in plan.signals["logs"].exporters:
            sdk_provider.add_log_record_processor(BatchLogRecordProcessor(build_exporter("logs", spec, plan)))
        return sdk_provider

    provider = DeferredLoggerProvider(build)
    done.providers.append(provider)
    done.logger_provider = provider
    if plan.log_export == "floe":  # else the logging instrumentation's handler, or none (plan._log_export)
        done.handler = FloeLoggingHandler(level=getattr(logging, plan.log_level), logger_provider=provider.real)


def step_propagators(plan: Plan, done: Installed, was_imported: bool) -> None:
    """The global propagator from ``OTEL_PROPAGATORS`` as the plan corrected it."""
    from opentelemetry import propagate

    if was_imported:  # imported before the environment was corrected: rebuild from it now
        from floe_otel_distro._upstream import propagator_from_environ

        done.previous_textmap = propagate.get_global_textmap()
        propagate.set_global_textmap(propagator_from_environ())
    _ = propagate.get_global_textmap()


def step_commit(plan: Plan, done: Installed, environ: MutableMapping[str, str]) -> None:
    """Make it live: global providers, the root-logger handler, the start-up context."""
    from floe_otel_distro import propagation

    if done.tracer_provider is not None:
        from opentelemetry import trace

        trace.set_tracer_provider(done.tracer_provider)
        done.committed.append("tracer provider")
    if done.meter_provider is not None:
        from opentelemetry import metrics

        metrics.set_meter_provider(done.meter_provider)
        done.committed.append("meter provider")
    if done.logger_provider is not None:
        from opentelemetry._logs import set_logger_provider

        set_logger_provider(done.logger_provider)
        done.committed.append("logger provider")
    if done.handler is not None:
        logging.getLogger().addHandler(done.handler)
    _quiet_transports()
    done.context_token = propagation.attach_startup_context(environ, plan.baggage)


def _quiet_transports() -> None:
    """Transports' records on export threads never reach a handler (see ``log_handler._NotFromExports``):
    the loggers that exist now, and those the exporters create when they import their stack."""
    import wrapt

    from floe_otel_distro.log_handler import TRANSPORTS, quiet_transports_on_export_threads

    quiet_transports_on_export_threads()
    for name in TRANSPORTS:
        wrapt.register_post_import_hook(lambda _module: quiet_transports_on_export_threads(), name)


def step_lifecycle(plan: Plan, done: Installed) -> None:
    """Exit flush, fork hooks (signal handling is the ``floe_signals`` instrumentor)."""
    from floe_otel_distro import lifecycle

    lifecycle.install(done.providers, plan.shutdown_timeout_s)


# --- the installer ----------------------------------------------------------------------------------------
def undo(done: Installed, environ: MutableMapping[str, str]) -> None:
    """Take back everything in ``done`` (never raises)."""
    from floe_otel_distro import _upstream

    if done.handler is not None:
        with contextlib.suppress(Exception):
            logging.getLogger().removeHandler(done.handler)
    with contextlib.suppress(Exception):
        from floe_otel_distro.log_handler import release_transports

        release_transports()
    if done.context_token is not None:
        from floe_otel_distro import propagation

        with contextlib.suppress(Exception):
            propagation.detach_startup_context()
    if done.committed:
        with contextlib.suppress(Exception):
            _upstream.reset_global_providers()
    if done.previous_textmap is not None:
        from opentelemetry import propagate

        propagate.set_global_textmap(done.previous_textmap)
    with contextlib.suppress(Exception):
        from floe_otel_distro import lifecycle

        lifecycle.install([], 0.1)
    for provider in done.providers:
        with contextlib.suppress(Exception):
            provider.shutdown()
    for key, value in done.env_before.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value


Step = Callable[..., None]


def install(plan: Plan, environ: MutableMapping[str, str] | None = None) -> Installed | None:
    """Apply ``plan``; returns what was installed, or None (nothing is) after one ``floe-otel:`` line."""
    if not plan.active:
        return None
    env = os.environ if environ is None else environ
    done = Installed()
    step = "environment"
    try:
        was_imported = "opentelemetry.propagate" in sys.modules
        step_environment(plan, done, env)
        step = "resource"
        from floe_otel_distro import lifecycle
        from floe_otel_distro.resource import build_resource

        lifecycle.prepare_for_fork()  # before any provider registers its fork hooks
        resource = build_resource(plan.resource, plan.resource_detectors)
        step = "tracing"
        step_tracing(plan, done, resource)
        step = "metrics"
        step_metrics(plan, done, resource)
        step = "logging"
        step_logging(plan, done, resource)
        step = "propagators"
        step_propagators(plan, done, was_imported)
        step = "commit"
        step_commit(plan, done, env)
        step = "lifecycle"
        step_lifecycle(plan, done)
    except Exception as exc:
        undo(done, env)
        report_failure(InstallError(step, exc), strict=plan.strict)
        return None
    return done


def report_failure(error: InstallError, *, strict: bool) -> None:
    """One line; strict mode exits 78."""
    cause = f"{type(error.cause).__name__}: {error.cause}"
    from floe_otel_distro.redaction import redact

    write_line(
        f"floe-otel: installing telemetry failed at the {error.step} step ({redact(cause)}); nothing is "
        "installed and the program runs without telemetry (please report this)"
    )
    if strict:
        os._exit(STRICT_EXIT_STATUS)


def write_line(line: str) -> None:
    """Write one line to stderr; never raises (stderr may be closed)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        return
