"""FloeAttributesSpanProcessor: the four floe attributes on every span, nested or not, from any tracer."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from floe_otel_distro.plan import Inputs, build_plan
from floe_otel_distro.span_processors import FloeAttributesSpanProcessor
from tests.unit.conftest import Examples

FLOE_KEYS = ("floe.namespace", "floe.product.name", "floe.product.version", "floe.mode")


@pytest.fixture
def pipeline(examples: Examples) -> tuple[TracerProvider, InMemorySpanExporter, dict[str, str]]:
    """A tracer provider with the floe processor (settings from the example spec, prod) and an in-memory exporter."""
    attributes = build_plan(Inputs({"FLOE_SPEC": str(examples.spec), "FLOE_MODE": "prod"})).floe_attributes
    provider = TracerProvider()
    provider.add_span_processor(FloeAttributesSpanProcessor(attributes))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter, attributes


def test_attributes_come_from_the_settings(
    pipeline: tuple[TracerProvider, InMemorySpanExporter, dict[str, str]],
) -> None:
    """The processor's attributes are the example product's floe attributes."""
    _, _, attributes = pipeline
    assert attributes == {
        "floe.namespace": "manufacturing",
        "floe.product.name": "iot-telemetry",
        "floe.product.version": "1.0.0",
        "floe.mode": "prod",
    }


def test_every_span_carries_the_floe_attributes(
    pipeline: tuple[TracerProvider, InMemorySpanExporter, dict[str, str]],
) -> None:
    """Nested spans from several tracers, and spans started without a context manager, all carry them."""
    provider, exporter, attributes = pipeline
    dbt = provider.get_tracer("floe.dbt")
    dagster = provider.get_tracer("floe.dagster", "1.2.3")
    with dagster.start_as_current_span("run", attributes={"dagster.run_id": "r1"}):
        with dbt.start_as_current_span("dbt build"):
            with dbt.start_as_current_span("model.jaffle.orders") as span:
                span.set_attribute("db.rows", 42)
            dbt.start_span("detached").end()
        with dagster.start_as_current_span("asset.customers"):
            pass
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == sorted(
        ["run", "dbt build", "model.jaffle.orders", "detached", "asset.customers"]
    )
    assert {s.instrumentation_scope.name for s in spans} == {"floe.dbt", "floe.dagster"}
    for span in spans:
        assert {k: span.attributes[k] for k in FLOE_KEYS} == attributes, span.name
    by_name = {s.name: s for s in spans}
    assert by_name["run"].attributes["dagster.run_id"] == "r1"
    assert by_name["model.jaffle.orders"].attributes["db.rows"] == 42
    assert by_name["model.jaffle.orders"].parent.span_id == by_name["dbt build"].context.span_id


def test_attributes_are_present_when_the_span_starts(
    pipeline: tuple[TracerProvider, InMemorySpanExporter, dict[str, str]],
) -> None:
    """They are set in on_start, so they are visible while the span is running (and to samplers' children)."""
    provider, _, attributes = pipeline
    with provider.get_tracer("t").start_as_current_span("live") as span:
        assert {k: span.attributes[k] for k in FLOE_KEYS} == attributes


def test_span_code_can_still_override_an_attribute(
    pipeline: tuple[TracerProvider, InMemorySpanExporter, dict[str, str]],
) -> None:
    """Attributes set by the instrumented code after start are kept (the processor only sets them at start)."""
    provider, exporter, _ = pipeline
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("floe.mode", "custom")
    assert exporter.get_finished_spans()[0].attributes["floe.mode"] == "custom"


def test_processor_lifecycle_methods() -> None:
    """force_flush succeeds and shutdown/on_end are no-ops; the input mapping is copied."""
    source = {"floe.mode": "dev"}
    processor = FloeAttributesSpanProcessor(source)
    source["floe.mode"] = "prod"
    assert processor._attributes == {"floe.mode": "dev"}
    assert processor.force_flush() is True
    assert processor.shutdown() is None
