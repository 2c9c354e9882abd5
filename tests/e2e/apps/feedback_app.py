"""Apps that used to feed telemetry back into itself: ``loop`` (a handler opening a span per record),
``limit`` (DEBUG logging with sampled spans; run with OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=1), ``idle``
(DEBUG logging, one record, then idle)."""

import logging
import sys
import time

from opentelemetry import trace

tracer = trace.get_tracer("feedback_app")
mode = sys.argv[1]
logging.basicConfig(level=logging.DEBUG)


class SpanPerRecord(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        with tracer.start_as_current_span(f"log {record.name}"):
            pass


if mode == "loop":
    logging.getLogger().addHandler(SpanPerRecord())
    logging.getLogger("app").info("start")
    time.sleep(2)
elif mode == "limit":
    for i in range(20):
        with tracer.start_as_current_span("work") as span:
            span.set_attribute("table", "orders_with_a_long_name")
            logging.getLogger("app").warning("row %d", i)
else:
    logging.getLogger("app").warning("one record")
    time.sleep(2)
print("feedback_app done")
