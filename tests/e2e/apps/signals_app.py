"""A plain Python job with no OpenTelemetry setup of its own: one span tree, a counter, a log line."""

import json
import logging
import sys

from opentelemetry import baggage, metrics, trace

log = logging.getLogger("signals_app")
tracer = trace.get_tracer("signals_app")
counter = metrics.get_meter("signals_app").create_counter("signals_app.rows", unit="{row}")

with tracer.start_as_current_span("job") as job:
    with tracer.start_as_current_span("load"):
        counter.add(3, {"table": "orders"})
        log.warning("loaded %d rows", 3)
    ids = {"trace_id": f"{job.get_span_context().trace_id:032x}", "span_id": f"{job.get_span_context().span_id:016x}"}

print(json.dumps({"provider": type(trace.get_tracer_provider()).__name__, "baggage": dict(baggage.get_all()), **ids}))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
