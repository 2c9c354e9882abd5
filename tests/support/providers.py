"""A batching tracer provider with an in-memory exporter, for the lifecycle and signal tests."""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def batching_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider whose batch processor exports only when flushed (the delay is a minute)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"process.pid": os.getpid()}), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    return provider, exporter


def end_spans(provider: TracerProvider, n: int) -> None:
    """End ``n`` spans named s0…s{n-1}."""
    tracer = provider.get_tracer("t")
    for i in range(n):
        tracer.start_span(f"s{i}").end()
