"""The private upstream names the distro relies on, in one place (checked on SDK 1.44 and 1.45: tox test-otel144).

The OpenTelemetry API lets a global provider be set once and offers no way back. The installer's
all-or-nothing undo needs one: ``reset_global_providers`` returns the API to its no-op (proxy) state.
"""

from __future__ import annotations

from typing import Any


def reset_global_providers() -> None:
    """Forget the global tracer, meter and logger providers (back to the API's proxies)."""
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._PROXY_METER_PROVIDER._real_meter_provider = None
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()


def propagator_from_environ() -> Any:
    """The composite propagator the API builds from ``OTEL_PROPAGATORS`` at import, built again now."""
    from opentelemetry import propagate

    return propagate._load_propagators()
