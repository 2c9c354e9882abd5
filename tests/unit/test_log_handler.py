"""The root-logger OTel handler: what it never exports, no feedback, never raising into the application."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from floe_otel_distro import log_handler
from floe_otel_distro.log_handler import FloeLoggingHandler


@pytest.fixture
def exported() -> Iterator[tuple[InMemoryLogRecordExporter, FloeLoggingHandler]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = FloeLoggingHandler(logging.INFO, logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    yield exporter, handler
    root.removeHandler(handler)
    log_handler.release_transports()


def _bodies(exporter: InMemoryLogRecordExporter) -> list[Any]:
    return [r.log_record.body for r in exporter.get_finished_logs()]


def test_own_sdk_and_transport_records_are_never_exported(exported: Any) -> None:
    """opentelemetry.*, floe_otel_distro.*, urllib3/requests/grpc records stay local; the app's are exported."""
    exporter, _ = exported
    for name in (
        "opentelemetry.attributes",
        "floe_otel_distro.x",
        "urllib3.connectionpool",
        "requests",
        "grpc._channel",
    ):
        logging.getLogger(name).warning("internal %s", name)
    logging.getLogger("app").warning("the app's own")
    assert _bodies(exporter) == ["the app's own"]


def test_records_created_on_export_threads_are_not_exported(exported: Any) -> None:
    """A record logged on the SDK's batch thread or the exit-flush thread is telemetry's own: dropped."""
    exporter, _ = exported
    for name in ("OtelBatchSpanRecordProcessor", "floe-otel-flush", "worker-1"):
        thread = threading.Thread(target=lambda: logging.getLogger("app").warning("from a thread"), name=name)
        thread.start()
        thread.join()
    assert _bodies(exporter) == ["from a thread"]  # only worker-1's


def test_a_record_logged_while_emitting_is_dropped_not_recursed(exported: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging from inside our emit (a processor that logs) does not recurse."""
    exporter, handler = exported
    inner = handler._sdk_handler()
    real_emit = inner.emit
    calls: list[str] = []

    def emit_and_log(record: logging.LogRecord) -> None:
        calls.append(record.getMessage())
        logging.getLogger("app").warning("logged while emitting")
        real_emit(record)

    monkeypatch.setattr(inner, "emit", emit_and_log)
    logging.getLogger("app").warning("outer")
    assert calls == ["outer"]
    assert _bodies(exporter) == ["outer"]


def test_a_failing_export_never_raises_into_the_application(exported: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK handler raising is swallowed: the app's logging call returns normally."""
    _, handler = exported

    def boom(record: logging.LogRecord) -> None:
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(handler._sdk_handler(), "emit", boom)
    logging.getLogger("app").warning("still fine")


def test_transport_records_on_export_threads_reach_no_handler_at_all() -> None:
    """The filter drops urllib3's export chatter before any handler — the application's too — sees it."""
    seen: list[str] = []

    class AppHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.threadName}: {record.getMessage()}")

    logger = logging.getLogger("urllib3.connectionpool")
    app_handler = AppHandler()
    logger.addHandler(app_handler)
    logger.setLevel(logging.DEBUG)
    try:
        log_handler.quiet_transports_on_export_threads()
        for name in ("OtelBatchSpanRecordProcessor", "app-worker"):
            thread = threading.Thread(target=lambda: logger.debug('"POST /v1/traces" 200'), name=name)
            thread.start()
            thread.join()
        assert seen == ['app-worker: "POST /v1/traces" 200']
    finally:
        logger.removeHandler(app_handler)
        logger.setLevel(logging.NOTSET)
        log_handler.release_transports()
    assert all(log_handler._FILTER not in lg.filters for lg in [logger])
