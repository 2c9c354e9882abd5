"""Lazy exporters: the OTLP stack is built on the first real export only."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult, MetricsData

from floe_otel_distro._lazy_metrics import LazyMetricExporter, metric_temporality


class _Recorder:
    def __init__(self) -> None:
        self.exported: list[Any] = []

    def export(self, data: Any, **kwargs: Any) -> MetricExportResult:
        self.exported.append(data)
        return MetricExportResult.SUCCESS

    def shutdown(self, **kwargs: Any) -> None:
        return None


def _collect(record: bool) -> Any:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("t").create_counter("rows")
    if record:
        counter.add(2)
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def test_empty_metrics_build_nothing_and_send_nothing() -> None:
    """A process that measured nothing never imports/constructs the real exporter."""
    built: list[_Recorder] = []

    def factory() -> _Recorder:
        built.append(_Recorder())
        return built[-1]

    lazy = LazyMetricExporter("metrics", "http://c:4318/v1/metrics", factory, metric_temporality("cumulative"))
    assert lazy.export(MetricsData(resource_metrics=[])) is MetricExportResult.SUCCESS
    assert _collect(record=False) is None  # the SDK hands nothing over when nothing was measured
    assert built == []
    assert lazy.export(_collect(record=True)) is MetricExportResult.SUCCESS
    assert len(built) == 1 and len(built[0].exported) == 1
