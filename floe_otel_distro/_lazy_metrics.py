"""The lazy OTLP metric exporter and the temporality mapping (imported only when metrics are exported)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from floe_otel_distro.delivery import count_items
from floe_otel_distro.exporters import _Lazy


def metric_temporality(preference: str) -> dict[type, AggregationTemporality]:
    """The OTLP temporality preference (cumulative | delta | lowmemory) as the SDK's mapping."""
    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
    )

    cum, delta = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
    if preference == "delta":
        return {
            Counter: delta,
            UpDownCounter: cum,
            Histogram: delta,
            ObservableCounter: delta,
            ObservableUpDownCounter: cum,
            ObservableGauge: cum,
        }
    if preference == "lowmemory":
        return {
            Counter: delta,
            UpDownCounter: cum,
            Histogram: delta,
            ObservableCounter: cum,
            ObservableUpDownCounter: cum,
            ObservableGauge: cum,
        }
    return {
        k: cum for k in (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
    }


def histogram_aggregation_of(name: str) -> dict[type, Any]:
    """The reader's default aggregation for histograms (what the OTLP exporters derive from the variable)."""
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import (
        ExplicitBucketHistogramAggregation,
        ExponentialBucketHistogramAggregation,
    )

    if name == "base2_exponential_bucket_histogram":
        return {Histogram: ExponentialBucketHistogramAggregation()}
    return {Histogram: ExplicitBucketHistogramAggregation()}


class LazyMetricExporter(_Lazy, MetricExporter):
    """A metric exporter that builds the real one on first export (temporality fixed up front)."""

    def __init__(
        self,
        signal: str,
        endpoint: str,
        factory: Callable[[], Any],
        temporality: dict[type, AggregationTemporality],
        *,
        target: str = "",
        secrets: Sequence[str] = (),
        aggregation: dict[type, Any] | None = None,
    ) -> None:
        _Lazy.__init__(self, signal, endpoint, factory, target, secrets)
        MetricExporter.__init__(self, preferred_temporality=temporality, preferred_aggregation=aggregation)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if not any(sm.metrics for rm in metrics_data.resource_metrics for sm in rm.scope_metrics):
            return MetricExportResult.SUCCESS  # nothing measured: no request, no OTLP import
        result: MetricExportResult = self._send(
            lambda inner: inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            MetricExportResult.SUCCESS,
            MetricExportResult.FAILURE,
            count_items("metrics", metrics_data),
        )
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True
