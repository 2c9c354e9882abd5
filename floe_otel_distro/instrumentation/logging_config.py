"""The app's own logging configuration still takes effect with floe's OTel handler on the root logger.

``logging.basicConfig()`` does nothing when the root logger already has a handler, and ``dictConfig`` /
``fileConfig`` replace the root logger's handlers, so the configurator's ``FloeLoggingHandler`` would
silently cancel the app's console setup (or be dropped by it). This instrumentor (entry point
``floe_logging``) wraps ``logging.basicConfig``, ``logging.config.dictConfig`` and
``logging.config.fileConfig`` with wrapt so that each runs as if our handler were absent and re-attaches
it afterwards (:func:`floe_otel_distro.log_handler.detached`). ``logging.config`` is wrapped when the
app imports it, never imported by us. Turn off with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_logging``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from floe_otel_distro.instrumentation._hooks import ImportHooks

_LOG_HANDLER_MODULE = "floe_otel_distro.log_handler"


class _State:
    """What is wrapped; wrappers pass through when ``active`` is false (someone wrapped over us)."""

    def __init__(self) -> None:
        self.active = False
        self.hooks = ImportHooks()
        self.wrapped: list[tuple[Any, str]] = []  # (owner, attribute), for unwrap


_state = _State()


def _without_our_handler(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """wrapt wrapper: run a logging-configuration function with our handler off the root logger."""
    # Our handler can only be attached if its module was imported; otherwise there is nothing to do
    # (and importing it here would pull in the SDK's logs package for an app that exports no logs).
    log_handler = sys.modules.get(_LOG_HANDLER_MODULE)
    if not _state.active or log_handler is None:
        return wrapped(*args, **kwargs)
    with log_handler.detached():
        return wrapped(*args, **kwargs)


def _wrap(owner: Any, name: str) -> None:
    if callable(getattr(owner, name, None)):
        wrapt.wrap_function_wrapper(owner, name, _without_our_handler)
        _state.wrapped.append((owner, name))


def _patch_logging_config(module: ModuleType) -> None:
    _wrap(module, "dictConfig")
    _wrap(module, "fileConfig")


class LoggingConfigInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Keeps the app's ``basicConfig``/``dictConfig``/``fileConfig`` working next to floe's OTel log handler."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        _state.active = True
        _state.hooks.activate()
        _wrap(logging, "basicConfig")
        _state.hooks.when_imported("logging.config", _patch_logging_config)

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.active = False
        _state.hooks.deactivate()
        for owner, name in reversed(_state.wrapped):
            unwrap(owner, name)
        _state.wrapped.clear()
