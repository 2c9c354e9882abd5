"""The installer: applies a plan; a failure at any step leaves nothing installed and one line on stderr."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import _logs, metrics, propagate, trace

from floe_otel_distro import _upstream, installer, lifecycle, propagation
from floe_otel_distro.plan import Inputs, Plan, build_plan

ENV = {
    "FLOE_MODE": "prod",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    "FLOE_NAMESPACE": "sales",
    "OTEL_PROPAGATORS": "tracecontext,nonesuch",
}


@pytest.fixture(autouse=True)
def _clean_globals() -> Iterator[None]:
    """Each test starts and ends with the API's no-op providers and no floe handler."""
    _upstream.reset_global_providers()
    yield
    for handler in list(logging.getLogger().handlers):
        if type(handler).__name__ == "FloeLoggingHandler":
            logging.getLogger().removeHandler(handler)
    propagation.detach_startup_context()
    lifecycle.install([], 2.0)
    _upstream.reset_global_providers()


def _plan(**extra: str) -> Plan:
    return build_plan(Inputs({**ENV, **extra}))


def _nothing_installed() -> bool:
    return (
        type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
        and type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
        and type(_logs.get_logger_provider()).__name__ == "ProxyLoggerProvider"
        and not any(type(h).__name__ == "FloeLoggingHandler" for h in logging.getLogger().handlers)
    )


def test_install_applies_the_plan() -> None:
    """Every planned signal gets its provider, the handler and the corrected environment are in place."""
    environ = dict(ENV)
    done = installer.install(_plan(), environ)
    assert done is not None
    assert type(trace.get_tracer_provider()).__name__ == "TracerProvider"
    meter_provider, logger_provider = metrics.get_meter_provider(), _logs.get_logger_provider()
    assert type(meter_provider).__name__ == "DeferredMeterProvider"
    assert type(logger_provider).__name__ == "DeferredLoggerProvider"
    assert done.handler in logging.getLogger().handlers
    assert environ["OTEL_PROPAGATORS"] == "tracecontext"
    resource = trace.get_tracer_provider().resource  # type: ignore[attr-defined]
    assert resource.attributes["floe.namespace"] == "sales"
    assert resource.attributes["telemetry.distro.name"] == "floe-otel-distro"
    assert "process.command_line" not in resource.attributes


def test_metrics_and_logs_sdk_are_built_on_first_use() -> None:
    """No metric, no log record: no metrics/logs SDK provider; the first use builds the plan's."""
    done = installer.install(_plan(), dict(ENV))
    assert done is not None
    meter_provider = metrics.get_meter_provider()
    logger_provider = _logs.get_logger_provider()
    assert not meter_provider.built and not logger_provider.built  # type: ignore[attr-defined]
    meter_provider.get_meter("t").create_counter("c").add(1)
    assert type(meter_provider.real()).__name__ == "MeterProvider"  # type: ignore[attr-defined]
    logging.getLogger("t").warning("first record")
    sdk_logs = logger_provider.real()  # type: ignore[attr-defined]
    assert type(sdk_logs).__name__ == "LoggerProvider"
    assert sdk_logs.resource.attributes["floe.namespace"] == "sales"


def test_a_failing_deferred_build_turns_only_that_signal_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A metrics SDK that cannot be built: one line, no-op metrics, traces unaffected."""
    done = installer.install(_plan(), dict(ENV))
    assert done is not None

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no metrics for you")

    monkeypatch.setattr(installer, "build_exporter", boom)
    metrics.get_meter_provider().get_meter("t").create_counter("c").add(1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "floe-otel: building the metrics provider failed (RuntimeError: no metrics for you); metrics are not "
        "exported (please report this)"
    ]
    assert type(trace.get_tracer_provider()).__name__ == "TracerProvider"


def test_install_of_an_inactive_plan_does_nothing() -> None:
    """OTEL_SDK_DISABLED: no step runs."""
    assert installer.install(_plan(OTEL_SDK_DISABLED="true"), dict(ENV)) is None
    assert _nothing_installed()


STEPS = [
    "step_environment",
    "step_tracing",
    "step_metrics",
    "step_logging",
    "step_propagators",
    "step_commit",
    "step_lifecycle",
]


@pytest.mark.parametrize("step", STEPS)
def test_a_failing_step_undoes_everything(
    step: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure at any step (after its own work) leaves no provider, no handler, the env as it was, one line."""
    original = getattr(installer, step)

    def failing(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise RuntimeError(f"injected failure in {step}")

    monkeypatch.setattr(installer, step, failing)
    environ = dict(ENV)
    assert installer.install(_plan(), environ) is None
    assert _nothing_installed()
    assert environ == ENV
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("floe-otel: installing telemetry failed at the ")
    assert "injected failure" in err[0]


@pytest.mark.parametrize("where", ["exporter", "handler", "propagator"])
def test_failures_inside_components_undo_everything(
    where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raising exporter factory, log handler or propagator: nothing stays installed."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(f"{where} exploded")

    if where == "exporter":
        monkeypatch.setattr(installer, "build_exporter", boom)
    elif where == "handler":
        import floe_otel_distro.log_handler as log_handler

        monkeypatch.setattr(log_handler, "FloeLoggingHandler", boom)
    else:
        monkeypatch.setattr(propagate, "get_global_textmap", boom)
    assert installer.install(_plan(), dict(ENV)) is None
    assert _nothing_installed()
    assert f"{where} exploded" in capsys.readouterr().err


def test_strict_install_failure_exits_78(monkeypatch: pytest.MonkeyPatch) -> None:
    """In strict mode a failed install stops the process with 78 (EX_CONFIG)."""
    exits: list[int] = []
    monkeypatch.setattr(installer.os, "_exit", exits.append)
    monkeypatch.setattr(installer, "build_exporter", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    installer.install(_plan(FLOE_OTEL_STRICT="true", OTEL_PROPAGATORS="tracecontext"), dict(ENV))
    assert exits == [78]


def test_secrets_in_a_failure_are_redacted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An exception carrying a URL with credentials is printed without them."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("cannot reach https://bob:hunter2@collector:4318?token=abc")

    monkeypatch.setattr(installer, "build_exporter", boom)
    installer.install(_plan(), dict(ENV))
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "abc" not in err
    assert "collector:4318" in err


def test_console_and_named_exporters_are_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """console on every signal (the tree through the console plugin, the SDK's console exporters for the
    rest) and a third-party exporter entry point named in OTEL_TRACES_EXPORTER."""
    from floe_otel_distro import backends
    from floe_otel_distro.backends import EntryPointRef

    class Zipkin:
        """Stands for an installed span exporter package."""

    real = backends.installed_entry_points

    def with_zipkin(group: str) -> tuple[EntryPointRef, ...]:
        if group == "opentelemetry_traces_exporter":
            return (EntryPointRef(group, "zipkin", "z:Z", "zipkin", "1", lambda: Zipkin),)
        return real(group)

    monkeypatch.setattr(backends, "installed_entry_points", with_zipkin)
    plan = build_plan(Inputs({"OTEL_METRICS_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "console"}))
    assert [
        type(installer.build_exporter(s, e, plan)).__name__
        for s in ("traces", "metrics", "logs")
        for e in plan.signals[s].exporters
    ] == ["ConsoleTreeExporter", "ConsoleMetricExporter", "ConsoleLogRecordExporter"]
    named = build_plan(Inputs({"OTEL_TRACES_EXPORTER": "zipkin"}, entry_points=with_zipkin))
    assert isinstance(installer.build_exporter("traces", named.signals["traces"].exporters[0], named), Zipkin)
    monkeypatch.setattr(backends, "installed_entry_points", lambda group: ())
    with pytest.raises(LookupError):
        installer.build_exporter("traces", named.signals["traces"].exporters[0], named)
    with pytest.raises(LookupError):
        installer.build_exporter("traces", plan.signals["traces"].exporters[0], plan)


def test_only_planned_signals_get_providers() -> None:
    """Signals the plan turned off get no provider; the others do."""
    done = installer.install(_plan(OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none"), dict(ENV))
    assert done is not None
    assert (done.meter_provider, done.logger_provider, done.handler) == (None, None, None)
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    assert type(trace.get_tracer_provider()).__name__ == "TracerProvider"


def test_propagator_is_rebuilt_when_imported_before_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """opentelemetry.propagate imported before the environment was corrected: rebuilt from the fixed env."""
    import os

    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,nonesuch")
    assert "opentelemetry.propagate" in __import__("sys").modules
    done = installer.install(_plan(), os.environ)
    assert done is not None
    fields = propagate.get_global_textmap().fields
    assert fields == {"traceparent", "tracestate"}
    installer.undo(done, os.environ)
    assert os.environ["OTEL_PROPAGATORS"] == "tracecontext,nonesuch"
    assert propagate.get_global_textmap().fields == {"traceparent", "tracestate", "baggage"}


def test_deferred_providers_flush_and_shutdown_only_once_built() -> None:
    """force_flush/shutdown are no-ops before the SDK provider exists and reach it afterwards."""
    from floe_otel_distro.providers import DeferredLoggerProvider, DeferredMeterProvider

    calls: list[str] = []

    class Real:
        def get_meter(self, name: str, *args: Any, **kwargs: Any) -> str:
            calls.append(f"meter {name}")
            return "meter"

        def get_logger(self, name: str, *args: Any, **kwargs: Any) -> str:
            calls.append(f"logger {name}")
            return "logger"

        def force_flush(self, timeout_millis: int = 0) -> bool:
            calls.append("flush")
            return True

        def shutdown(self, timeout_millis: float = 0) -> None:
            calls.append("shutdown")

        extra = "sdk-only"

    for deferred in (DeferredMeterProvider(Real), DeferredLoggerProvider(Real)):
        assert deferred.force_flush() is True
        deferred.shutdown()
        assert calls == []
        assert deferred.extra == "sdk-only"  # type: ignore[attr-defined]
        assert deferred.built
        assert deferred.force_flush() is True
        deferred.shutdown()
        assert calls == ["flush", "shutdown"]
        calls.clear()
        with pytest.raises(AttributeError):
            _ = deferred._private  # type: ignore[attr-defined]
    meter = DeferredMeterProvider(Real)
    assert meter.get_meter("m") == "meter"
    logger = DeferredLoggerProvider(Real)
    assert logger.get_logger("l") == "logger"
    assert calls == ["meter m", "logger l"]
