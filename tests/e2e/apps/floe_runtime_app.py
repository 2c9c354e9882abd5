"""floe-core's own runtime in a program run under the distro: what floe's CLI and Dagster runtime do.

1. floe's runtime rewrites OTEL_EXPORTER_OTLP_ENDPOINT, then calls ensure_telemetry_initialized();
2. a TelemetryProvider is built from a TelemetryConfig, initialised, used, shut down;
3. a span after that shutdown must still be exported (the distro's providers keep running).
"""

import os

from opentelemetry import trace

before = trace.get_tracer_provider()
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://floe-platform-otel:4317"  # what floe's runtime does

from floe_core.schemas.telemetry import ResourceAttributes, TelemetryConfig  # noqa: E402
from floe_core.telemetry.initialization import ensure_telemetry_initialized  # noqa: E402
from floe_core.telemetry.provider import TelemetryProvider  # noqa: E402
from floe_core.telemetry.tracer_factory import get_tracer  # noqa: E402

ensure_telemetry_initialized()
print("SAME-PROVIDER", trace.get_tracer_provider() is before)
print("ENDPOINT-RESTORED", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "http://floe-platform-otel:4317")

config = TelemetryConfig(
    otlp_endpoint="http://floe-platform-otel:4317",
    resource_attributes=ResourceAttributes(
        service_name="orders",
        service_version="2.1.0",
        deployment_environment="prod",
        floe_namespace="sales",
        floe_product_name="orders",
        floe_product_version="2.1.0",
        floe_mode="prod",
    ),
)
provider = TelemetryProvider(config)
provider.initialize()
with get_tracer("floe_runtime_app").start_as_current_span("floe_runtime_app.inside_provider"):
    pass
provider.force_flush()
provider.shutdown()
print("STILL-SAME", trace.get_tracer_provider() is before)
with trace.get_tracer("floe_runtime_app").start_as_current_span("floe_runtime_app.after_shutdown"):
    pass
print("FLOE-RUNTIME-APP ok")
