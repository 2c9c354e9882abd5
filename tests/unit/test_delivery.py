"""Loss accounting: the real OTLP exporters (through our lazy wrappers) against peers that fail on purpose.

Each test exports real spans / log records / metric points with the exporter the installer builds
(``exporters.otlp_exporter``) and asserts on the cause it learnt and the lines it printed.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from floe_otel_distro import delivery, exporters, lifecycle
from floe_otel_distro.plan import ExporterPlan
from tests.support.fake_otlp import FakeOtlpGrpc, FakeOtlpHttp


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    lifecycle.reset()
    yield
    lifecycle.reset()


def _spans(n: int, **attributes: Any) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("t")
    out = []
    for _ in range(n):
        span = tracer.start_span("s", attributes=attributes)
        span.end()
        out.append(span)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def _http(url: str, timeout_s: float = 3.0, **headers: str) -> exporters._Lazy:
    spec = ExporterPlan(kind="otlp", protocol="http/protobuf", endpoint=url, timeout_s=timeout_s, headers=headers)
    return exporters.otlp_exporter("traces", spec)


def _grpc(url: str, **headers: str) -> exporters._Lazy:
    spec = ExporterPlan(kind="otlp", protocol="grpc", endpoint=url, insecure=True, timeout_s=3.0, headers=headers)
    return exporters.otlp_exporter("traces", spec)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("floe-otel:")]


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOtlpHttp]:
    server = FakeOtlpHttp(request.param)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("fake", "status"),
    [("400", "HTTP 400"), ("401", "HTTP 401"), ("403", "HTTP 403"), ("404", "HTTP 404"), ("413", "HTTP 413")],
    indirect=["fake"],
)
def test_http_status_is_the_cause_throttled_and_counted(
    fake: FakeOtlpHttp, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A final HTTP status: the first failure prints one line with the status, later ones none; all counted."""
    lazy = _http(f"{fake.endpoint}/v1/traces", authorization="Bearer sekrit-token")
    assert lazy.export(_spans(5)) is SpanExportResult.FAILURE
    assert lazy.export(_spans(3)) is SpanExportResult.FAILURE
    lines = _lines(capsys)
    assert len(lines) == 1 and status in lines[0] and "exporting traces to" in lines[0]
    assert delivery.summary_lines() == [
        f"floe-otel: 8 spans not delivered to {fake.endpoint}: " + delivery.http_status_cause(int(status[5:]))
    ]
    assert "sekrit" not in lines[0]


@pytest.mark.parametrize("fake", ["503-then-ok"], indirect=True)
def test_retry_after_is_honoured_and_nothing_is_lost(fake: FakeOtlpHttp, capsys: pytest.CaptureFixture[str]) -> None:
    """503 + Retry-After: 1, then OK: the exporter waits ~1 s, delivers, and nothing is printed or counted."""
    lazy = _http(f"{fake.endpoint}/v1/traces")
    started = time.monotonic()
    assert lazy.export(_spans(4)) is SpanExportResult.SUCCESS
    assert 0.8 < time.monotonic() - started < 2.5
    assert fake.spans_received == 4 and _lines(capsys) == [] and delivery.summary_lines() == []


@pytest.mark.parametrize("fake", ["503-long"], indirect=True)
def test_retry_after_beyond_the_exit_budget_gives_up_at_once(fake: FakeOtlpHttp) -> None:
    """At exit, Retry-After longer than what is left of the budget: no waiting, the cause says why."""
    lazy = _http(f"{fake.endpoint}/v1/traces", timeout_s=60)  # upstream alone would wait 30 s
    delivery.begin_exit(time.monotonic() + 2)
    started = time.monotonic()
    assert lazy.export(_spans(2)) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 1
    [line] = delivery.summary_lines()
    assert "2 spans" in line and "HTTP 503" in line and "Retry-After: 30" in line and "exit budget" in line


@pytest.mark.parametrize("fake", ["429"], indirect=True)
def test_backoff_beyond_the_exit_budget_gives_up(fake: FakeOtlpHttp) -> None:
    """At exit, 429 without Retry-After: the exporter's back-off would outlast the budget, so it stops now."""
    lazy = _http(f"{fake.endpoint}/v1/traces", timeout_s=30)
    delivery.begin_exit(time.monotonic() + 0.5)
    started = time.monotonic()
    assert lazy.export(_spans(1)) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 0.5
    assert "HTTP 429" in delivery.summary_lines()[0]


@pytest.mark.parametrize("fake", ["hang"], indirect=True)
def test_peer_that_never_answers_is_a_timeout(fake: FakeOtlpHttp, capsys: pytest.CaptureFixture[str]) -> None:
    """A peer that accepts and never answers: "timeout ... did not answer within 0.5 s"."""
    lazy = _http(f"{fake.endpoint}/v1/traces", timeout_s=0.5)
    assert lazy.export(_spans(3)) is SpanExportResult.FAILURE
    [line] = _lines(capsys)
    assert "timeout: the collector accepted the connection but did not answer within" in line


def test_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lazy = _http(f"http://127.0.0.1:{port}/v1/traces", timeout_s=0.5)
    assert lazy.export(_spans(1)) is SpanExportResult.FAILURE
    assert delivery.REFUSED in delivery.summary_lines()[0]


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
def test_tls_to_a_plain_http_peer_is_a_tls_error(fake: FakeOtlpHttp) -> None:
    lazy = _http(f"https://127.0.0.1:{fake.port}/v1/traces", timeout_s=1)
    assert lazy.export(_spans(1)) is SpanExportResult.FAILURE
    assert "TLS error" in delivery.summary_lines()[0]


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
def test_a_line_break_in_a_header_is_a_local_cause_and_never_shown(
    fake: FakeOtlpHttp, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CR/LF in a header value: "bad header", not "collector unreachable"; the value is never printed."""
    lazy = _http(f"{fake.endpoint}/v1/traces", authorization="Bearer abc-secret\r\nx-evil: 1")
    assert lazy.export(_spans(2)) is SpanExportResult.FAILURE
    [line] = _lines(capsys)
    assert "bad header" in line and "unreachable" not in line and "abc-secret" not in line
    assert fake.requests == 0


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
def test_a_request_over_the_size_limit_is_a_local_cause(
    fake: FakeOtlpHttp, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 70 MB span: upstream drops the request before sending it; we say so (not "unreachable").

    SDK 1.44 has no such limit (it sends the request; the collector decides): there the export goes out.
    """
    from importlib.metadata import version

    lazy = _http(f"{fake.endpoint}/v1/traces")
    if version("opentelemetry-exporter-otlp-proto-http").startswith("1.44."):
        assert lazy.export(_spans(1, blob="x" * (70 * 1024 * 1024))) is SpanExportResult.SUCCESS
        assert fake.requests == 1 and _lines(capsys) == []
        return
    assert lazy.export(_spans(1, blob="x" * (70 * 1024 * 1024))) is SpanExportResult.FAILURE
    [line] = _lines(capsys)
    assert "request too large" in line and "67108864-byte limit" in line
    assert fake.requests == 0


@pytest.mark.parametrize("code", ["UNAUTHENTICATED", "PERMISSION_DENIED"])
def test_grpc_status_is_the_cause(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    """gRPC: the status code and the peer's details, from the exporter's own records (kept off the handlers)."""
    server = FakeOtlpGrpc(code)
    try:
        lazy = _grpc(server.endpoint)
        assert lazy.export(_spans(6)) is SpanExportResult.FAILURE
    finally:
        server.stop()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("floe-otel:")]
    assert len(lines) == 1 and f"gRPC {code}" in lines[0] and f"fake collector says {code}" in lines[0]
    assert "Failed to export" not in err  # upstream's record became our line
    assert f"gRPC {code}" in delivery.summary_lines()[0] and "6 spans" in delivery.summary_lines()[0]


def test_grpc_unavailable_at_exit_stops_at_the_budget() -> None:
    """gRPC UNAVAILABLE is retried; at exit the back-off beyond the budget is not waited for."""
    server = FakeOtlpGrpc("UNAVAILABLE")
    try:
        lazy = _grpc(server.endpoint)
        delivery.begin_exit(time.monotonic() + 0.5)
        started = time.monotonic()
        assert lazy.export(_spans(2)) is SpanExportResult.FAILURE
        assert time.monotonic() - started < 1.0
    finally:
        server.stop()
    assert "gRPC UNAVAILABLE" in delivery.summary_lines()[0]


def test_capture_filter_only_touches_records_of_our_export_calls(caplog: pytest.LogCaptureFixture) -> None:
    """Outside our export calls upstream records pass; inside they become the cause (DEBUG: they pass too)."""
    delivery.install_capture()
    logger = logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter")
    assert any(isinstance(f, delivery.CaptureFilter) for f in logger.filters)
    with caplog.at_level(logging.WARNING):
        logger.warning("outside")
        outcome = delivery.Outcome()
        with delivery.exporting(outcome):
            logger.error("Something %s", "bad")
    assert [r.getMessage() for r in caplog.records] == ["outside"]
    assert outcome.cause == "Something bad"
    logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG), delivery.exporting(delivery.Outcome()):
            logger.error("shown at debug")
        assert "shown at debug" in [r.getMessage() for r in caplog.records]
    finally:
        logger.setLevel(logging.NOTSET)


def test_summary_line_names_every_signal_and_the_latest_cause() -> None:
    """One line per collector: counts per signal (singular/plural), the latest cause first."""
    delivery.record_loss("traces", "http://u:p@c:4318/v1/traces", 100, "HTTP 503 (x)")
    delivery.record_loss("metrics", "http://u:p@c:4318/v1/metrics", 3, "HTTP 401 (y)")
    delivery.record_loss("logs", "http://u:p@c:4318/v1/logs", 1, "HTTP 401 (y)")
    delivery.record_loss("traces", "http://other:4317", 0, "never shown")
    assert delivery.summary_lines() == [
        "floe-otel: 100 spans, 3 metric points, 1 log record not delivered to http://***@c:4318: "
        "HTTP 401 (y); also: HTTP 503 (x)"
    ]


def test_metric_points_and_log_records_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    """The metric exporter counts data points (not metrics); the log exporter counts records."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from floe_otel_distro._lazy_logs import LazyLogExporter
    from floe_otel_distro._lazy_metrics import LazyMetricExporter, metric_temporality

    class _Failing:
        def export(self, *args: Any, **kwargs: Any) -> Any:
            current = delivery.current()
            assert current is not None
            current.cause = "HTTP 401 (test)"
            return "nope"

        def shutdown(self, **kwargs: Any) -> None:
            return None

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("m").create_counter("rows")
    for table in ("a", "b", "c"):
        counter.add(1, {"table": table})
    data = reader.get_metrics_data()
    metrics = LazyMetricExporter("metrics", "m", _Failing, metric_temporality("cumulative"),
                                 target="http://c:4318/v1/metrics")
    metrics.export(data)
    memory = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger_provider.get_logger("l").emit(body="one")
    logger_provider.get_logger("l").emit(body="two")
    logs = LazyLogExporter("logs", "l", _Failing, "http://c:4318/v1/logs")
    logs.export(memory.get_finished_logs())
    provider.shutdown()
    assert delivery.summary_lines() == ["floe-otel: 3 metric points, 2 log records not delivered to http://c:4318: "
                                        "HTTP 401 (test)"]


def test_spans_dropped_on_a_full_queue_are_counted_and_upstreams_record_kept_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The SDK drops spans when its batch queue is full: each one is counted, with that cause."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    lazy = exporters.LazySpanExporter("traces", "x", InMemorySpanExporter, "http://c:4318/v1/traces")
    provider = TracerProvider(shutdown_on_exit=False)
    processor = BatchSpanProcessor(lazy, max_queue_size=2, max_export_batch_size=2, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    lifecycle.install([provider], 1.0)
    tracer = provider.get_tracer("t")
    with processor._batch_processor._export_lock:  # the worker cannot drain the queue meanwhile: 3 drops, always
        for _ in range(5):
            tracer.start_span("s").end()
    assert delivery.summary_lines() == [
        "floe-otel: 3 spans not delivered to http://c:4318: " + delivery.QUEUE_FULL.format(size=2)
    ]
    assert "Queue full" not in capsys.readouterr().err
    provider.shutdown()  # the 2 queued spans are exported: nothing more is counted
    assert len(lazy._get().get_finished_spans()) == 2
    assert "3 spans" in delivery.summary_lines()[0]


def test_peer_text_echoing_a_token_is_scrubbed() -> None:
    """A gRPC peer that echoes the token in its details: the cause never shows it (the lazy exporter's secrets)."""
    import grpc

    lazy = _grpc("http://127.0.0.1:1", authorization="Bearer tok-123456")
    delivery.install_capture()
    with delivery.exporting(lazy._outcome):
        logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").error(
            "Failed to export %s to %s, error code: %s, error details: %s",
            "traces", "x", grpc.StatusCode.UNAUTHENTICATED, "bad token tok-123456",
        )
    cause = lazy._outcome.cause
    assert cause is not None and "gRPC UNAUTHENTICATED" in cause
    assert "tok-123456" not in cause and "bad token ***" in cause


@pytest.mark.parametrize("fake", ["503-long"], indirect=True)
def test_a_wait_started_before_exit_that_outlasts_the_budget_stops_at_exit(fake: FakeOtlpHttp) -> None:
    """Retry-After: 30 seen while the program ran (export timeout 60 s: upstream waits); the exit flush stops it."""
    import threading

    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    lazy = _http(f"{fake.endpoint}/v1/traces", timeout_s=60)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(lazy, schedule_delay_millis=10))
    lifecycle.install([provider], 2.0)
    provider.get_tracer("t").start_span("s").end()
    deadline = time.monotonic() + 5
    while fake.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the exporter is now in its 30 s wait
    started = time.monotonic()
    exiting = threading.Thread(target=lifecycle.flush_and_shutdown)
    exiting.start()
    exiting.join(5)
    assert time.monotonic() - started < 1.0  # not the 2 s budget, let alone 30 s
    [line] = delivery.summary_lines()
    assert line.startswith("floe-otel: 1 span not delivered to ") and "Retry-After: 30" in line
