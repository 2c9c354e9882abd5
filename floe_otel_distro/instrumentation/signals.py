"""SIGTERM, SIGINT and SIGHUP: flush telemetry first, then do what the program would have done without us.

The ``floe_signals`` instrumentor (turn it off with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_signals``)
puts one handler in front of each of these signals, in the main thread:

- the program has a handler of its own (also one installed *after* the distro loaded: ``signal.signal``
  is wrapped with wrapt, ours stays installed, the program's is recorded and ``signal.getsignal``
  returns it): a bounded flush (``lifecycle.flush``), then the program's handler. The final shutdown
  happens at exit.
- the program ignores the signal (``SIG_IGN``, e.g. SIGHUP under ``nohup``): it stays ignored, for real.
- default disposition (SIGTERM and SIGHUP kill the process; SIGINT's default is Python's
  ``default_int_handler``, a handler like any other): the exit flush is finished
  (``lifecycle.finish_exit_flush``), then the process dies of the signal, as without us
  (SIGTERM: returncode -15, shell status 143; SIGHUP: -1, 129).

``uninstrument()`` gives the program its handlers back and unwraps ``signal.signal``/``signal.getsignal``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Collection
from types import FrameType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from floe_otel_distro import lifecycle

_log = logging.getLogger(__name__)

#: The signals we flush on (SIGHUP does not exist on Windows).
HANDLED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)

# The functions as they are before we wrap them: what really installs and reads a disposition.
_set_disposition = signal.signal
_get_disposition = signal.getsignal

AnyCallable = Callable[..., Any]


class _State:
    """What is installed; the wrappers pass through when ``active`` is false (someone wrapped over us)."""

    def __init__(self) -> None:
        self.active = False
        self.wrapped = False  # signal.signal / signal.getsignal are ours to unwrap
        self.program_handlers: dict[int, Any] = {}  # what the program set (or had) for each handled signal
        self.handling_pid: int | None = None  # a handler of ours runs in this process (a nested signal)


_state = _State()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    handler = _state.program_handlers.get(signum, signal.SIG_DFL)
    previous = _state.handling_pid
    nested = previous == os.getpid()  # keyed by pid: a child forked inside a handler starts fresh
    _state.handling_pid = os.getpid()
    try:
        if callable(handler):
            # The program handles it (its handler may log, clean up, exit): flush only.
            if not nested:
                lifecycle.flush()
            handler(signum, frame)
            return
        if handler == signal.SIG_IGN:
            return
        if not nested:
            # A signal that lands while the exit flush runs (multiprocessing's Pool.terminate() does
            # this to workers on their way out) must not cut it short.
            lifecycle.finish_exit_flush()
    finally:
        _state.handling_pid = previous
    # Default disposition: die of the signal, as without us.
    _set_disposition(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _program_handler(signalnum: Any) -> Any:
    """The disposition the program sees: its own handler where ours is installed."""
    current = _get_disposition(signalnum)
    if current is _on_signal:
        return _state.program_handlers.get(signalnum, signal.SIG_DFL)
    return current


def _signal_args(signalnum: Any, handler: Any) -> tuple[Any, Any]:
    return signalnum, handler  # binds the arguments exactly as ``signal.signal`` does


def _getsignal_args(signalnum: Any) -> Any:
    return signalnum


def _traced_signal(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """wrapt wrapper of ``signal.signal``: for a handled signal record the program's handler, keep ours in front."""
    try:
        signalnum, handler = _signal_args(*args, **kwargs)
    except TypeError:  # let the real function raise its own error
        return wrapped(*args, **kwargs)
    if signalnum not in HANDLED_SIGNALS or not _state.active or not _in_main_thread():
        return wrapped(*args, **kwargs)
    if not callable(handler) and handler not in (signal.SIG_DFL, signal.SIG_IGN):
        raise TypeError("signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object")
    previous = _program_handler(signalnum)
    _state.program_handlers[signalnum] = handler
    if handler == signal.SIG_IGN:  # the program ignores the signal: so do we
        wrapped(signalnum, signal.SIG_IGN)
    else:
        wrapped(signalnum, _on_signal)
    return previous


def _traced_getsignal(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """wrapt wrapper of ``signal.getsignal``: the program's handler, not ours."""
    current = wrapped(*args, **kwargs)
    if current is _on_signal:
        return _state.program_handlers.get(_getsignal_args(*args, **kwargs), signal.SIG_DFL)
    return current


def _take_over() -> None:
    """Put our handler in front of every handled signal (an ignored signal stays ignored)."""
    for signum in HANDLED_SIGNALS:
        try:
            current = _get_disposition(signum)
            if current is _on_signal:
                continue
            _state.program_handlers[signum] = current
            if current is signal.SIG_IGN or current is None:  # None: set from C, not ours to replace
                continue
            _set_disposition(signum, _on_signal)
        except (ValueError, OSError):
            _log.debug("floe-otel: cannot handle signal %s", signum, exc_info=True)


def _give_back() -> None:
    """Reinstall the program's handlers where ours is installed."""
    for signum in HANDLED_SIGNALS:
        try:
            if _get_disposition(signum) is _on_signal:
                handler = _state.program_handlers.get(signum)
                _set_disposition(signum, signal.SIG_DFL if handler is None else handler)
        except (ValueError, OSError):
            _log.debug("floe-otel: cannot restore signal %s", signum, exc_info=True)
    _state.program_handlers.clear()


class SignalsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Flushes telemetry on SIGTERM/SIGINT/SIGHUP, then lets the program's own disposition act."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        if not _in_main_thread():  # signal handlers can only be set from the main thread
            _log.debug("floe-otel: not in the main thread, signal handling not installed")
            return
        _state.active = True
        _take_over()
        wrapt.wrap_function_wrapper(signal, "signal", _traced_signal)
        wrapt.wrap_function_wrapper(signal, "getsignal", _traced_getsignal)
        _state.wrapped = True

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.active = False
        if _state.wrapped:
            unwrap(signal, "signal")
            unwrap(signal, "getsignal")
            _state.wrapped = False
        if _in_main_thread():
            _give_back()
