"""Lazy exporters: the OTLP stack is built on the first real export only; how it is wired for loss accounting."""

from __future__ import annotations

import logging
from typing import Any

import pytest
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


def test_http_exporter_transport_stdlib_where_supported_else_the_recording_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1.45+: the standard-library transport; 1.44, a proxy or FLOE_OTEL_HTTP_CLIENT=requests: our recording
    requests session; upstream's credential provider wins over both."""
    from floe_otel_distro import delivery, exporters
    from floe_otel_distro.plan import ExporterPlan, _http_transport_installed

    spec = ExporterPlan(kind="otlp", protocol="http/protobuf", endpoint="http://127.0.0.1:1/v1/traces")
    inner = exporters.otlp_exporter("traces", spec)._get()
    if _http_transport_installed():
        assert type(inner._client._transport).__name__ == "StdlibTransport"
        monkeypatch.setenv("FLOE_OTEL_HTTP_CLIENT", "requests")
        inner = exporters.otlp_exporter("traces", spec)._get()
    # 1.45: the session sits in the HTTP transport; 1.44: on the exporter itself
    session = getattr(inner, "_session", None) or inner._client._transport._session
    assert type(session).__name__ == "RecordingSession"
    assert any(isinstance(f, delivery.CaptureFilter)
               for f in logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").filters)
    monkeypatch.delenv("FLOE_OTEL_HTTP_CLIENT", raising=False)
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", "nope")
    with pytest.raises(RuntimeError, match="nope"):  # upstream looked for the named provider: not ours
        exporters.otlp_exporter("traces", spec)._get()


def test_a_failing_build_or_export_is_counted_not_raised() -> None:
    """An exception inside the exporter is a failed export, counted with the exception's type."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    from floe_otel_distro import delivery, exporters

    class _Broken:
        def export(self, spans: Any) -> Any:
            raise KeyError("boom")

    delivery.reset()
    lazy = exporters.LazySpanExporter("traces", "u", _Broken, "http://c:4318/v1/traces")
    span = TracerProvider().get_tracer("t").start_span("s")
    span.end()
    assert lazy.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert delivery.summary_lines() == [
        "floe-otel: 1 span not delivered to http://c:4318: KeyError in the exporter (please report this)"
    ]
    delivery.reset()
