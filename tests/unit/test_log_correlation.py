"""Trace ids on stdlib log records and structlog events; structlog export to OTel logs without duplicates.

Also the floe_logging instrumentor: the app's basicConfig/dictConfig still work next to our OTel handler.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from floe_otel_distro.instrumentation import log_correlation
from floe_otel_distro.instrumentation.log_correlation import LogCorrelationInstrumentor, add_trace_context
from floe_otel_distro.instrumentation.logging_config import LoggingConfigInstrumentor
from floe_otel_distro.log_handler import FloeLoggingHandler


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def tracer() -> trace.Tracer:
    return trace.get_tracer("test", tracer_provider=TracerProvider())


@pytest.fixture
def otel_logs(monkeypatch: pytest.MonkeyPatch) -> InMemoryLogRecordExporter:
    """Route the structlog export through an in-memory OTel logger provider."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    monkeypatch.setattr(log_correlation, "_otel_logger", provider.get_logger)
    return exporter


@pytest.fixture
def clean_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def instrumented(clean_structlog: None) -> Iterator[LogCorrelationInstrumentor]:
    inst = LogCorrelationInstrumentor()
    inst.instrument()
    yield inst
    inst.uninstrument()


@pytest.fixture
def captured() -> Iterator[_ListHandler]:
    handler = _ListHandler()
    logger = logging.getLogger("floe.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)


def _ids(span: trace.Span) -> tuple[str, str, str]:
    sc = span.get_span_context()
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}", f"{sc.trace_flags:02x}"


def _json_logger(stream: io.StringIO, *processors: Any) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, *processors, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _count(processors: Any) -> int:
    return sum(1 for p in processors if p is add_trace_context)


# ---- stdlib -----------------------------------------------------------------------------------------
def test_stdlib_record_carries_ids_inside_a_span(
    instrumented: Any, captured: _ListHandler, tracer: trace.Tracer
) -> None:
    """Inside a span every LogRecord has trace_id/span_id/trace_flags as lowercase hex of that span."""
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("floe.test.logs").info("hello %s", "world")
    record = captured.records[-1]
    assert (record.trace_id, record.span_id, record.trace_flags) == _ids(span)  # type: ignore[attr-defined]
    assert len(record.trace_id) == 32 and record.trace_id == record.trace_id.lower()  # type: ignore[attr-defined]
    assert len(record.span_id) == 16  # type: ignore[attr-defined]


def test_records_of_interleaved_spans_and_threads_carry_their_own_span(
    instrumented: Any, captured: _ListHandler, tracer: trace.Tracer
) -> None:
    """The ids are formatted once per span and reused: never another span's, across nesting and threads."""
    import threading

    log = logging.getLogger("floe.test.logs")
    worker_spans: list[str] = []

    def ids_of(record: logging.LogRecord) -> tuple[str, str, str] | None:
        fields = tuple(getattr(record, name, None) for name in ("trace_id", "span_id", "trace_flags"))
        return None if fields[0] is None else fields  # type: ignore[return-value]

    def worker() -> None:
        for i in range(200):
            with tracer.start_as_current_span(f"w{i}") as span:
                log.info("worker")
                worker_spans.append(_ids(span)[1])

    with tracer.start_as_current_span("outer") as outer:
        log.info("a")
        with tracer.start_as_current_span("inner") as inner:
            log.info("b")
        log.info("c")
    log.info("d")
    a, b, c, d = captured.records[-4:]
    assert ids_of(a) == _ids(outer) == ids_of(c) and ids_of(b) == _ids(inner) and ids_of(d) is None
    threads = [threading.Thread(target=worker) for _ in range(4)]
    with tracer.start_as_current_span("main") as main:
        for t in threads:
            t.start()
        for _ in range(200):
            log.info("main")
        for t in threads:
            t.join()
    records = [r for r in captured.records if r.getMessage() in ("worker", "main")]
    assert len(records) == 1000
    by_span = {ids_of(r)[1] for r in records if r.getMessage() == "main"}  # type: ignore[index]
    assert by_span == {_ids(main)[1]}
    workers = [r for r in records if r.getMessage() == "worker"]
    assert sorted(ids_of(r)[1] for r in workers) == sorted(worker_spans)  # type: ignore[index]  # each its own span's


def test_stdlib_record_without_a_span_has_no_ids(instrumented: Any, captured: _ListHandler) -> None:
    """Outside any span the record carries no trace fields (Formatter defaults can fill them)."""
    logging.getLogger("floe.test.logs").warning("no span")
    record = captured.records[-1]
    assert not hasattr(record, "trace_id") and not hasattr(record, "span_id")
    formatter = logging.Formatter("%(message)s [%(trace_id)s]", defaults={"trace_id": "-"})
    assert formatter.format(record) == "no span [-]"


def test_uninstrument_restores_the_record_factory(clean_structlog: None) -> None:
    """uninstrument puts the original LogRecord factory and structlog functions back."""
    factory = logging.getLogRecordFactory()
    configure = structlog.configure
    inst = LogCorrelationInstrumentor()
    inst.instrument()
    assert logging.getLogRecordFactory() is not factory and structlog.configure is not configure
    assert _count(structlog.get_config()["processors"]) == 1
    inst.uninstrument()
    assert logging.getLogRecordFactory() is factory and structlog.configure is configure
    assert _count(structlog.get_config()["processors"]) == 0


# ---- structlog --------------------------------------------------------------------------------------
def test_structlog_configured_before_instrument(
    clean_structlog: None, tracer: trace.Tracer, otel_logs: InMemoryLogRecordExporter
) -> None:
    """An app that configured structlog before the distro loaded gets ids, even on an already-bound logger."""
    stream = io.StringIO()
    _json_logger(stream)
    bound = structlog.get_logger().bind(job="nightly")
    inst = LogCorrelationInstrumentor()
    inst.instrument()
    try:
        processors = structlog.get_config()["processors"]
        assert processors[-2] is add_trace_context  # right before the final renderer
        with tracer.start_as_current_span("work") as span:
            bound.info("loaded", rows=3)
    finally:
        inst.uninstrument()
    line = _lines(stream)[-1]
    assert (line["trace_id"], line["span_id"]) == _ids(span)[:2]
    assert line["event"] == "loaded" and line["job"] == "nightly"


def test_structlog_configured_after_instrument(
    instrumented: Any, tracer: trace.Tracer, otel_logs: InMemoryLogRecordExporter
) -> None:
    """A later structlog.configure(processors=...) gets the processor inserted before its renderer."""
    stream = io.StringIO()
    _json_logger(stream)
    processors = structlog.get_config()["processors"]
    assert processors[-2] is add_trace_context and _count(processors) == 1
    log = structlog.get_logger()
    with tracer.start_as_current_span("work") as span:
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(stream)[-2:]
    assert (inside["trace_id"], inside["span_id"]) == _ids(span)[:2]
    assert "trace_id" not in outside and "span_id" not in outside


def test_structlog_default_config_and_reset_defaults_get_the_processor(instrumented: Any) -> None:
    """The built-in default chain (ConsoleRenderer last) and reset_defaults() get the processor once."""
    processors = structlog.get_config()["processors"]
    assert processors[-2] is add_trace_context
    assert isinstance(processors[-1], structlog.dev.ConsoleRenderer)
    structlog.reset_defaults()
    assert _count(structlog.get_config()["processors"]) == 1


def test_structlog_processor_is_never_duplicated(instrumented: Any) -> None:
    """Re-configuring, configure_once, an app that adds it itself, and a second instrument() keep one copy."""
    stream = io.StringIO()
    _json_logger(stream)
    structlog.configure(processors=structlog.get_config()["processors"])
    _json_logger(stream, add_trace_context)
    assert _count(structlog.get_config()["processors"]) == 1
    structlog.reset_defaults()
    structlog.configure_once(processors=[structlog.processors.JSONRenderer()])
    assert structlog.get_config()["processors"][0] is add_trace_context
    LogCorrelationInstrumentor().instrument()  # already instrumented: a warning, nothing added
    _json_logger(stream)
    assert _count(structlog.get_config()["processors"]) == 1


def test_app_bound_ids_win(instrumented: Any, tracer: trace.Tracer) -> None:
    """Values the app bound itself under trace_id/span_id are not overwritten."""
    stream = io.StringIO()
    _json_logger(stream)
    with tracer.start_as_current_span("work"):
        structlog.get_logger().info("x", trace_id="mine")
    assert _lines(stream)[-1]["trace_id"] == "mine"


def test_print_logger_events_are_exported_to_otel_logs(
    instrumented: Any, tracer: trace.Tracer, otel_logs: InMemoryLogRecordExporter
) -> None:
    """structlog over PrintLogger never reaches stdlib logging, so each event is exported to OTel once."""
    stream = io.StringIO()
    _json_logger(stream)
    with tracer.start_as_current_span("work") as span:
        structlog.get_logger().warning("slow query", table="orders", ms=1200)
    (exported,) = otel_logs.get_finished_logs()
    record = exported.log_record
    assert record.body == "slow query"
    assert record.severity_text == "WARN" and record.severity_number is not None
    assert record.severity_number.value == 13
    assert dict(record.attributes or {}) == {"table": "orders", "ms": 1200}
    sc = span.get_span_context()
    assert (record.trace_id, record.span_id) == (sc.trace_id, sc.span_id)


def test_structlog_over_stdlib_is_not_exported_twice(
    instrumented: Any, tracer: trace.Tracer, otel_logs: InMemoryLogRecordExporter, captured: _ListHandler
) -> None:
    """With a stdlib logger factory the event goes through logging (and its handlers) only; ids on both."""
    structlog.configure(
        processors=[structlog.stdlib.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    with tracer.start_as_current_span("work") as span:
        structlog.get_logger("floe.test.logs").info("via stdlib")
    assert otel_logs.get_finished_logs() == ()
    record = captured.records[-1]
    assert json.loads(record.getMessage())["trace_id"] == _ids(span)[0]
    assert record.trace_id == _ids(span)[0]  # type: ignore[attr-defined]


def test_export_can_be_turned_off(clean_structlog: None, otel_logs: InMemoryLogRecordExporter) -> None:
    """instrument(export_structlog=False) adds ids but emits nothing to OTel logs."""
    inst = LogCorrelationInstrumentor()
    inst.instrument(export_structlog=False)
    try:
        _json_logger(io.StringIO())
        structlog.get_logger().info("quiet")
    finally:
        inst.uninstrument()
    assert otel_logs.get_finished_logs() == ()


def test_structlog_is_not_imported_at_instrument_and_patched_on_import() -> None:
    """instrument() does not import structlog; an app importing and configuring it later gets the ids."""
    code = """
import io, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from floe_otel_distro.instrumentation.log_correlation import LogCorrelationInstrumentor
LogCorrelationInstrumentor().instrument()
assert "structlog" not in sys.modules
import structlog
out = io.StringIO()
structlog.configure(processors=[structlog.processors.JSONRenderer()],
                    logger_factory=structlog.PrintLoggerFactory(file=out))
tracer = trace.get_tracer("t", tracer_provider=TracerProvider())
with tracer.start_as_current_span("s") as span:
    structlog.get_logger().info("late")
line = json.loads(out.getvalue())
print(line["trace_id"] == format(span.get_span_context().trace_id, "032x"))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_structlog_export_from_many_threads_loses_nothing(
    instrumented: Any, otel_logs: InMemoryLogRecordExporter
) -> None:
    """Concurrent structlog events from several threads are each exported exactly once."""
    import threading

    _json_logger(io.StringIO())
    log = structlog.get_logger()

    def work() -> None:
        for i in range(200):
            log.info("tick", i=i)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(otel_logs.get_finished_logs()) == 800


def test_structlog_hook_keeps_the_normal_loader() -> None:
    """Under the post-import hook for structlog, importlib.resources and __spec__.loader are as without us."""
    code = """
import importlib.machinery, importlib.resources, sys
from floe_otel_distro.instrumentation.log_correlation import LogCorrelationInstrumentor
LogCorrelationInstrumentor().instrument()
assert "structlog" not in sys.modules
import structlog
normal = importlib.machinery.PathFinder.find_spec("structlog").loader
print(importlib.resources.files("structlog").joinpath("__init__.py").is_file(),
      type(structlog.__spec__.loader) is type(normal), structlog.__loader__ is structlog.__spec__.loader,
      structlog.configure is not structlog._config.configure.__wrapped__)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True", "True"]


# ---- the app's logging configuration next to our OTel handler (floe_logging) -------------------------
@contextlib.contextmanager
def _root_with_only(handler: logging.Handler) -> Iterator[logging.Logger]:
    """The root logger with ``handler`` as its only handler (as the configurator leaves it); restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # pytest's own capture handlers among them
    root.handlers[:] = [handler]
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def ours() -> Iterator[FloeLoggingHandler]:
    """floe's OTel handler, with the floe_logging instrumentor instrumented."""
    handler = FloeLoggingHandler(logger_provider=LoggerProvider(shutdown_on_exit=False))
    inst = LoggingConfigInstrumentor()
    inst.instrument()
    yield handler
    inst.uninstrument()


def test_basic_config_takes_effect_next_to_our_handler(ours: FloeLoggingHandler) -> None:
    """logging.basicConfig() configures the root logger as if our handler were absent; ours stays attached."""
    console = _ListHandler()
    with _root_with_only(ours) as root:
        logging.basicConfig(level=logging.INFO, handlers=[console])
        assert root.level == logging.INFO
        assert console in root.handlers and ours in root.handlers


def test_dict_config_keeps_our_handler() -> None:
    """logging.config (imported after instrument) dictConfig replacing the root handlers keeps ours attached."""
    code = """
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider
from floe_otel_distro.instrumentation.logging_config import LoggingConfigInstrumentor
from floe_otel_distro.log_handler import FloeLoggingHandler
ours = FloeLoggingHandler(logger_provider=LoggerProvider(shutdown_on_exit=False))
logging.getLogger().addHandler(ours)
LoggingConfigInstrumentor().instrument()
assert "logging.config" not in sys.modules
import logging.config
logging.config.dictConfig({
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "DEBUG"}},
    "root": {"level": "WARNING", "handlers": ["console"]},
})
root = logging.getLogger()
console = any(type(h) is logging.StreamHandler for h in root.handlers)
print(root.level == logging.WARNING, ours in root.handlers, console)
"""
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True"]


def test_uninstrument_restores_the_logging_functions() -> None:
    """uninstrument puts the original basicConfig/dictConfig/fileConfig back."""
    import logging.config

    originals = (logging.basicConfig, logging.config.dictConfig, logging.config.fileConfig)
    inst = LoggingConfigInstrumentor()
    inst.instrument()
    assert logging.basicConfig is not originals[0] and logging.config.dictConfig is not originals[1]
    inst.uninstrument()
    assert (logging.basicConfig, logging.config.dictConfig, logging.config.fileConfig) == originals
