"""Meter and logger providers that build their SDK provider on first use (the tracer provider is built eagerly).

A job that never records a metric or emits a log record never imports the metrics or logs SDK and never
starts their export threads (~30 ms and ~3 MiB per process; see ``benchmarks/RESULTS.md``). The installer
puts these API-level providers in place as it would the SDK ones; the first ``get_meter`` /
``get_logger`` (or the first record reaching the root-logger handler) builds the SDK provider from the
plan. Should that fail, one ``floe-otel:`` line says so and only that signal falls back to the API's no-op
provider. ``force_flush``/``shutdown`` are no-ops until the SDK provider exists.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from opentelemetry._logs import LoggerProvider as ApiLoggerProvider
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.metrics import NoOpMeterProvider


class _Deferred:
    """Builds the real provider once, thread-safely; a failed build yields ``fallback`` and one line."""

    def __init__(self, signal: str, build: Callable[[], Any], fallback: Callable[[], Any]) -> None:
        self._signal = signal
        self._build = build
        self._fallback = fallback
        self._real: Any = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        """Whether the SDK provider exists."""
        return self._real is not None

    def real(self) -> Any:
        """The SDK provider (built now if needed)."""
        real = self._real
        if real is not None:
            return real
        with self._lock:
            if self._real is None:
                try:
                    self._real = self._build()
                except Exception as exc:
                    from floe_otel_distro.installer import write_line
                    from floe_otel_distro.redaction import redact_text

                    write_line(
                        f"floe-otel: building the {self._signal} provider failed "
                        f"({type(exc).__name__}: {redact_text(str(exc))}); {self._signal} are not exported "
                        "(please report this)"
                    )
                    self._real = self._fallback()
            return self._real

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        real = self._real
        flush = getattr(real, "force_flush", None)
        return bool(flush(timeout_millis=int(timeout_millis))) if flush is not None else True

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        real = self._real
        if real is None or not hasattr(real, "shutdown"):
            return
        import inspect

        if "timeout_millis" in inspect.signature(real.shutdown).parameters:
            real.shutdown(timeout_millis=timeout_millis)
        else:
            real.shutdown()


class DeferredMeterProvider(_Deferred, ApiMeterProvider):
    """The global meter provider until the first meter is asked for (then the SDK's, see the module)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        _Deferred.__init__(self, "metrics", build, NoOpMeterProvider)

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.real().get_meter(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # SDK-only API (add_metric_reader…) reaches the real provider
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)


class DeferredLoggerProvider(_Deferred, ApiLoggerProvider):
    """The global logger provider until the first logger is asked for (then the SDK's, see the module)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        _Deferred.__init__(self, "logs", build, NoOpLoggerProvider)

    def get_logger(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.real().get_logger(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # SDK-only API (add_log_record_processor…)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)
