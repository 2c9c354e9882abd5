"""floe-core's own telemetry runtime under the distro: it reuses the distro's providers instead of making its own.

floe-core sets up OpenTelemetry itself in two places; the ``floe_core`` instrumentor (turn it off with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_core``) wraps both with wrapt when floe-core is imported, and
only while the distro is active (telemetry installed):

* ``floe_core.telemetry.initialization.ensure_telemetry_initialized()`` (the ``floe`` CLI and floe's Dagster
  runtime call it): floe's structured logging is configured as floe does it, but no TracerProvider /
  MeterProvider is built, so the API never prints "Overriding of current TracerProvider is not allowed", and
  floe-core's tracer cache is reset so its spans (``compile.*``, ``governance.*``) go to the distro's
  providers with the floe resource. If floe's runtime rewrote ``OTEL_EXPORTER_OTLP_ENDPOINT`` after the
  distro started, the start-up value is put back (one ``floe-otel:`` line): child processes plan from the same
  inputs as this one and export where this process exports.
* ``floe_core.telemetry.provider.TelemetryProvider``: ``initialize()`` adopts the distro's global providers
  (no exporter, sampler or propagator of its own); ``force_flush()`` flushes them; ``shutdown()`` flushes
  and leaves them running (the distro shuts them down at exit).

When the distro is not active, floe-core runs exactly as without it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from floe_otel_distro import _state
from floe_otel_distro.instrumentation._hooks import ImportHooks

_log = logging.getLogger(__name__)

INIT_MODULE = "floe_core.telemetry.initialization"
PROVIDER_MODULE = "floe_core.telemetry.provider"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"

_hooks = ImportHooks()


class _Installed:
    def __init__(self) -> None:
        self.endpoint_at_start: str | None = os.environ.get(ENDPOINT)
        self.patched: list[tuple[Any, str]] = []
        self.restored_once = False


_installed: _Installed | None = None


def _active() -> bool:
    return _installed is not None and _state.STATE.active


def _restore_endpoint(installed: _Installed) -> None:
    now = os.environ.get(ENDPOINT)
    if now == installed.endpoint_at_start:
        return
    if installed.endpoint_at_start is None:
        os.environ.pop(ENDPOINT, None)
    else:
        os.environ[ENDPOINT] = installed.endpoint_at_start
    if not installed.restored_once:
        installed.restored_once = True
        sys.stderr.write(
            f"floe-otel: {ENDPOINT} was changed by floe's runtime after start-up; put back (the distro exports "
            "as planned at start-up, and so do child processes)\n"
        )


def _ensure_telemetry_initialized(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    installed = _installed
    if installed is None or not _state.STATE.active:
        return wrapped(*args, **kwargs)
    module: Any = sys.modules.get(INIT_MODULE)
    _restore_endpoint(installed)
    if module is None or getattr(module, "_initialized", False):
        return None
    if not getattr(module, "_logging_configured", False):
        module.configure_logging()
        module._logging_configured = True
    module.reset_tracer()  # floe-core's tracer cache: its next tracers come from the distro's provider
    module._initialized = True
    return None


def _provider_initialize(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if not _active():
        return wrapped(*args, **kwargs)
    module = sys.modules.get(PROVIDER_MODULE)
    state = getattr(module, "ProviderState", None)
    if state is None or instance._state != state.UNINITIALIZED or instance.is_noop:
        return wrapped(*args, **kwargs)
    instance._tracer_provider = trace.get_tracer_provider()
    instance._meter_provider = metrics.get_meter_provider()
    instance._floe_otel_adopted = True
    instance._state = state.INITIALIZED
    return None


def _provider_shutdown(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if not getattr(instance, "_floe_otel_adopted", False):
        return wrapped(*args, **kwargs)
    module = sys.modules.get(PROVIDER_MODULE)
    state = getattr(module, "ProviderState", None)
    timeout = int(kwargs.get("timeout_millis", args[0] if args else 30000))
    for provider in (instance._tracer_provider, instance._meter_provider):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(timeout)
    instance._tracer_provider = None
    instance._meter_provider = None
    if state is not None:
        instance._state = state.SHUTDOWN
    return None


def _patch(obj: Any, name: str, wrapper: Callable[..., Any]) -> None:
    installed = _installed
    if installed is None:
        return
    wrapt.wrap_function_wrapper(obj, name, wrapper)
    installed.patched.append((obj, name))


def _patch_init(module: ModuleType) -> None:
    _patch(module, "ensure_telemetry_initialized", _ensure_telemetry_initialized)
    # floe's CLI imports the function by name from this module inside its command group; the telemetry
    # package re-exports it: patch the re-export too when it is the same function
    package = sys.modules.get("floe_core.telemetry")
    original = getattr(module.ensure_telemetry_initialized, "__wrapped__", None)
    if package is not None and getattr(package, "ensure_telemetry_initialized", None) is original:
        _patch(package, "ensure_telemetry_initialized", _ensure_telemetry_initialized)


def _patch_provider(module: ModuleType) -> None:
    _patch(module.TelemetryProvider, "initialize", _provider_initialize)
    _patch(module.TelemetryProvider, "shutdown", _provider_shutdown)


class FloeCoreInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """floe-core's ``ensure_telemetry_initialized`` and ``TelemetryProvider`` reuse the distro's providers."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("floe-core >= 0.1.0a1",)

    def _instrument(self, **kwargs: Any) -> None:
        global _installed
        _installed = _Installed()
        _hooks.activate()
        _hooks.when_imported(INIT_MODULE, _patch_init)
        _hooks.when_imported(PROVIDER_MODULE, _patch_provider)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _installed
        _hooks.deactivate()
        installed, _installed = _installed, None
        if installed is None:
            return
        for obj, name in reversed(installed.patched):
            try:
                unwrap(obj, name)
            except Exception:  # someone wrapped over us: leave theirs in place
                _log.debug("floe-otel: could not unwrap %s.%s", obj, name, exc_info=True)


__all__ = ["FloeCoreInstrumentor"]
