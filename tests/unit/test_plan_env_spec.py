"""Standard variables the plan now honours as upstream does: histogram aggregation, OTEL_CONFIG_FILE refused."""

from __future__ import annotations

import pytest

from floe_otel_distro.plan import Inputs, Plan, build_plan
from tests.unit.test_plan import fake_entry_points

OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}


def _plan(**env: str) -> Plan:
    return build_plan(Inputs({**OTLP, **env}, entry_points=fake_entry_points(), compiled_default=None))


def test_default_histogram_aggregation_reaches_the_metric_reader() -> None:
    """base2_exponential_bucket_histogram: the plan says so and the lazy exporter asks the reader for it."""
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    from floe_otel_distro.installer import build_exporter

    plan = _plan(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION="BASE2_EXPONENTIAL_BUCKET_HISTOGRAM")
    assert plan.metrics_histogram_aggregation == "base2_exponential_bucket_histogram"
    exporter = build_exporter("metrics", plan.signals["metrics"].exporters[0], plan)
    assert isinstance(exporter._preferred_aggregation[Histogram], ExponentialBucketHistogramAggregation)
    assert _plan().metrics_histogram_aggregation == "explicit_bucket_histogram"


def test_an_unknown_histogram_aggregation_is_one_line_and_the_default() -> None:
    """An unknown value falls back to explicit buckets with one degraded problem naming the variable."""
    plan = _plan(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION="tdigest")
    assert plan.metrics_histogram_aggregation == "explicit_bucket_histogram"
    assert [p.where for p in plan.problems] == ["OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"]


def test_otel_config_file_is_refused_with_one_clear_line() -> None:
    """OTEL_CONFIG_FILE: not silently ignored; one degraded line says it is not read and what to do."""
    plan = _plan(OTEL_CONFIG_FILE="/etc/otel/sdk.yaml")
    [problem] = plan.problems
    assert (problem.severity, problem.where, problem.value) == ("degraded", "OTEL_CONFIG_FILE", "/etc/otel/sdk.yaml")
    assert "not supported" in problem.message and "not read" in problem.message
    assert plan.active  # degrade, don't disable: the variables still apply


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "3"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "3", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "7"},
        {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "20"},
    ],
)
def test_export_timeouts_match_upstreams_exporters(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """OTEL_EXPORTER_OTLP_(SIGNAL_)TIMEOUT (seconds, as the Python exporters read them): the plan's timeout per
    signal equals what upstream's OTLP/HTTP exporter built from the same environment uses."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for key in ("", "TRACES_", "METRICS_", "LOGS_"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{key}TIMEOUT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plan = build_plan(
        Inputs({**OTLP, **env, "FLOE_MODE": "prod"}, entry_points=fake_entry_points(), compiled_default=None)
    )
    upstream = {"traces": OTLPSpanExporter(), "metrics": OTLPMetricExporter(), "logs": OTLPLogExporter()}
    for signal, exporter in upstream.items():
        # 1.44: on the exporter; 1.45: on its OTLP client
        theirs = exporter._timeout if hasattr(exporter, "_timeout") else exporter._client._timeout
        assert plan.signals[signal].exporters[0].timeout_s == theirs, signal
