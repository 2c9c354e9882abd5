"""A small job for the side-by-side env-spec test: the same spans, metrics, logs and propagation everywhere.

Spans: ``parent`` (attributes a0..a4 = "abcdefgh", three events, three links) with a child, then s0..s4.
Metrics: counter ``spec.counter`` (+1 twice), histogram ``spec.hist`` (1, 10, 100). Logs: three warnings.
Prints one line ``PROPAGATION <json>``: the header names the global propagator injects inside ``parent``.
Argument (optional): seconds to sleep before exiting (periodic metric export).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, SpanContext, TraceFlags


def main(sleep_s: float) -> None:
    tracer = trace.get_tracer("env_spec_app")
    meter = metrics.get_meter("env_spec_app")
    counter = meter.create_counter("spec.counter")
    histogram = meter.create_histogram("spec.hist")
    links = [Link(SpanContext(i + 1, i + 1, is_remote=True, trace_flags=TraceFlags(1))) for i in range(3)]
    with tracer.start_as_current_span("parent", links=links) as span:
        for i in range(5):
            span.set_attribute(f"a{i}", "abcdefgh")
        for i in range(3):
            span.add_event(f"e{i}")
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        print("PROPAGATION " + json.dumps(sorted(carrier)), flush=True)
        with tracer.start_as_current_span("child"):
            for i in range(3):
                logging.getLogger("env_spec_app").warning("spec log %d", i)
    for i in range(5):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    counter.add(1)
    counter.add(1)
    for value in (1, 10, 100):
        histogram.record(value)
    time.sleep(sleep_s)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
