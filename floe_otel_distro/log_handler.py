"""The OTel log handler on the root logger, attached without changing how the app's own logging behaves.

Two stdlib behaviours would change if we simply added a handler to the root logger:
- Python's last-resort handler (WARNING+ to stderr when no handler exists) stops firing, so an app
  that never configured logging would lose its console warnings;
- ``logging.basicConfig()`` does nothing when the root logger already has a handler, so the app's own
  configuration (level, format, console handler) would be silently ignored.
``FloeLoggingHandler`` re-creates the first. It is light: the SDK's ``LoggingHandler`` (and with it the
logs SDK) is built when the first record arrives, from the logger provider the installer hands it. For
the second, the ``floe_logging`` instrumentor (:mod:`floe_otel_distro.instrumentation.logging_config`) runs
``basicConfig``/``dictConfig``/``fileConfig`` inside :func:`detached`: as if our handler were absent,
re-attached afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

# Records from these loggers are never exported: the SDK and the distro themselves, and the exporters'
# transports. Exporting them would feed telemetry's own troubles back into telemetry (a retry warning
# exported through the failing exporter, a debug line per export request, the launcher's own warnings).
NOT_EXPORTED = ("opentelemetry", "floe_otel_distro", "urllib3", "requests", "grpc", "charset_normalizer")


def _not_exported(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in NOT_EXPORTED)


# The threads that run exports: the SDK's batch processors and metric reader, and the distro's exit flush.
EXPORT_THREADS = ("OtelBatch", "OtelPeriodicExportingMetricReader", "floe-otel-flush")
# The exporters' transports: what they log while exporting is telemetry's own business.
TRANSPORTS = ("urllib3", "requests", "charset_normalizer", "grpc")


def on_export_thread() -> bool:
    """Whether the current thread is one of the export threads."""
    return threading.current_thread().name.startswith(EXPORT_THREADS)


class _NotFromExports(logging.Filter):
    """Drops what a transport logs on an export thread, before any handler — the application's too — sees it.

    Without it an application handler that reacts to records (opens a span per record, ships DEBUG logs)
    turns every export into the next one: urllib3's "POST /v1/traces" line becomes a span, which is
    exported, which logs the line again (measured: 1,139 spans in 3 s from one log line).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName or not record.threadName.startswith(EXPORT_THREADS)


_FILTER = _NotFromExports()


def quiet_transports_on_export_threads() -> None:
    """Put the filter on every transport logger that exists now (idempotent; call again after imports)."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        transport = any(name == t or name.startswith(t + ".") for t in TRANSPORTS)
        if transport and isinstance(logger, logging.Logger) and _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def release_transports() -> None:
    """Take the filter off again (the installer's undo; tests)."""
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and _FILTER in logger.filters:
            logger.removeFilter(_FILTER)


@functools.cache
def _sdk_handler_class() -> Any:
    """The SDK's ``LoggingHandler`` without its ``flush`` (see ``FloeLoggingHandler.flush``); built on first use."""
    from opentelemetry.sdk._logs import LoggingHandler

    class _SdkHandler(LoggingHandler):
        def flush(self) -> None:
            return None

    return _SdkHandler


_emitting = threading.local()  # a record logged while this thread exports one: dropped, never recursed into


class FloeLoggingHandler(logging.Handler):
    """Exports records through the SDK's ``LoggingHandler`` (built on the first record) and keeps Python's
    last-resort console output for unconfigured apps."""

    def __init__(self, level: int = logging.NOTSET, *, logger_provider: Callable[[], Any] | Any) -> None:
        super().__init__(level=level)
        self._provider = logger_provider
        self._inner: logging.Handler | None = None
        self._build_lock = threading.Lock()

    def _sdk_handler(self) -> logging.Handler:
        inner = self._inner
        if inner is None:
            with self._build_lock:
                if self._inner is None:
                    provider = self._provider() if callable(self._provider) else self._provider
                    self._inner = _sdk_handler_class()(level=logging.NOTSET, logger_provider=provider)
                inner = self._inner
        return inner

    def emit(self, record: logging.LogRecord) -> None:
        if _not_exported(record.name) or on_export_thread() or getattr(_emitting, "active", False):
            pass  # ours, the SDK's, a transport's, or created while exporting / emitting: never exported
        else:
            _emitting.active = True
            try:
                self._sdk_handler().emit(record)
            except Exception:  # nothing the handler does may raise into the application
                _emitting.active = False
                return
            finally:
                _emitting.active = False
        last = logging.lastResort
        if last is not None and record.levelno >= last.level and self._only_handler_for(record):
            last.handle(record)

    def _only_handler_for(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True

    def flush(self) -> None:
        """Nothing: the distro's exit flush (``lifecycle``) flushes the logs pipeline, within its budget.

        ``logging.shutdown()`` calls ``flush()`` on every handler at exit; the SDK's would start a thread
        there, which Python 3.12.0-3.12.2 refuse ("can't create new thread at interpreter shutdown").
        """


def _attached() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, FloeLoggingHandler)]


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """Take our handlers off the root logger for the block; put back those the block did not re-add."""
    root = logging.getLogger()
    ours = _attached()
    for handler in ours:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in ours:
            if handler not in root.handlers:
                root.addHandler(handler)
