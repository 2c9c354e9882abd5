"""A tiny job with no OpenTelemetry setup of its own: three spans, one counter, one WARNING, one marker line."""

import logging

from opentelemetry import metrics, trace

tracer = trace.get_tracer("doctor_app")
rows = metrics.get_meter("doctor_app").create_counter("doctor_app.rows", unit="{row}")

with tracer.start_as_current_span("doctor_app.job"):
    with tracer.start_as_current_span("doctor_app.load"):
        rows.add(3, {"table": "orders"})
    with tracer.start_as_current_span("doctor_app.save"):
        logging.getLogger("doctor_app").warning("doctor-app warning: %d rows", 3)

print("DOCTOR-APP-MARKER ok")
