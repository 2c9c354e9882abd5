"""The OTel log handler on the root logger, attached without changing how the app's own logging behaves.

Two stdlib behaviours would change if we simply added a handler to the root logger:
- Python's last-resort handler (WARNING+ to stderr when no handler exists) stops firing, so an app
  that never configured logging would lose its console warnings;
- ``logging.basicConfig()`` does nothing when the root logger already has a handler, so the app's own
  configuration (level, format, console handler) would be silently ignored.
``FloeLoggingHandler`` re-creates the first; ``keep_handler_attached`` (applied by the log-correlation
instrumentor) makes ``basicConfig``/``dictConfig``/``fileConfig`` run as if our handler were absent and
re-attaches it afterwards.
"""

from __future__ import annotations

import functools
import logging
import logging.config
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk._logs import LoggingHandler


class FloeLoggingHandler(LoggingHandler):
    """OTel ``LoggingHandler`` that keeps Python's last-resort console output for unconfigured apps."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
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


def _attached() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, FloeLoggingHandler)]


def _without_ours(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        root = logging.getLogger()
        ours = _attached()
        for handler in ours:
            root.removeHandler(handler)
        try:
            return fn(*args, **kwargs)
        finally:
            for handler in ours:
                if handler not in root.handlers:
                    root.addHandler(handler)

    wrapper.__floe_wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


_TARGETS: tuple[tuple[Any, str], ...] = (
    (logging, "basicConfig"),
    (logging.config, "dictConfig"),
    (logging.config, "fileConfig"),
)


def keep_handler_attached() -> None:
    """Wrap the stdlib logging-configuration functions (idempotent; undone by ``release_handler``)."""
    for owner, name in _TARGETS:
        current = getattr(owner, name)
        if not hasattr(current, "__floe_wrapped__"):
            setattr(owner, name, _without_ours(current))


def release_handler() -> None:
    """Restore the original stdlib functions."""
    for owner, name in _TARGETS:
        current = getattr(owner, name)
        original = getattr(current, "__floe_wrapped__", None)
        if original is not None:
            setattr(owner, name, original)
