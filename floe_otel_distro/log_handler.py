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
                    from opentelemetry.sdk._logs import LoggingHandler

                    provider = self._provider() if callable(self._provider) else self._provider
                    self._inner = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
                inner = self._inner
        return inner

    def emit(self, record: logging.LogRecord) -> None:
        if not _not_exported(record.name):
            self._sdk_handler().emit(record)
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
        if self._inner is not None:
            self._inner.flush()


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
