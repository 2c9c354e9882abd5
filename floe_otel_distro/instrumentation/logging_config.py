"""The app's own logging configuration still takes effect with floe's OTel handler on the root logger.

``logging.basicConfig()`` does nothing when the root logger already has a handler, and ``dictConfig`` /
``fileConfig`` replace the root logger's handlers, so the configurator's ``FloeLoggingHandler`` would
silently cancel the app's console setup (or be dropped by it). This instrumentor (entry point
``floe_logging``) wraps ``logging.basicConfig``, ``logging.config.dictConfig`` and
``logging.config.fileConfig`` with wrapt so that each runs as if our handler were absent and re-attaches
it afterwards (:func:`floe_otel_distro.log_handler.detached`). ``logging.config`` is wrapped when the
app imports it, never imported by us. Turn off with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_logging``.

``logging.basicConfig`` is also wrapped before any instrumentor runs (:func:`pre_instrument`, entry point
group ``opentelemetry_pre_instrument``): opentelemetry-instrumentation-logging calls ``basicConfig`` in its
own ``instrument()`` for ``OTEL_PYTHON_LOG_CORRELATION=true`` (format ``OTEL_PYTHON_LOG_FORMAT``, level
``OTEL_PYTHON_LOG_LEVEL``), and the launcher may load it before ``floe_logging``.
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
    if any(o is owner and n == name for o, n in _state.wrapped):
        return  # already wrapped (pre_instrument, then instrument)
    if callable(getattr(owner, name, None)):
        wrapt.wrap_function_wrapper(owner, name, _without_our_handler)
        _state.wrapped.append((owner, name))


def _patch_logging_config(module: ModuleType) -> None:
    _wrap(module, "dictConfig")
    _wrap(module, "fileConfig")


def pre_instrument() -> None:
    """``opentelemetry_pre_instrument`` hook: wrap ``basicConfig`` before any instrumentor calls it.

    Only when the distro's plan is installed and ``floe_logging`` is not disabled; the instrumentor's own
    ``instrument()`` then finds it wrapped. Never raises into the launcher.
    """
    try:
        from floe_otel_distro import _state as distro_state

        state = distro_state.STATE
        if not state.active or state.plan is None or not state.plan.instrumentors.get("floe_logging", False):
            return
        _state.active = True
        _wrap(logging, "basicConfig")
    except Exception:
        return


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
