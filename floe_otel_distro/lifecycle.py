"""Process lifecycle: bounded flush at exit and on SIGTERM/SIGINT, then the program's own behaviour.

- exit (``atexit``): flush every provider within ``FLOE_SHUTDOWN_TIMEOUT`` (default 2 s); when the
  budget runs out (collector unreachable), abort the exporters' retries so exit is never held up.
- SIGTERM / SIGINT: the same bounded flush, then whatever the program would have done without us: its
  own handler if it had one, else the default disposition (for SIGTERM: killed by the signal, exit 143).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from floe_otel_distro.settings import FloeSettings

_providers: list[Any] = []
_budget_s = 2.0
_lock = threading.Lock()
_done = False
_previous: dict[int, Any] = {}
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def flush_and_shutdown(budget_s: float | None = None) -> None:
    """Flush all providers within the budget, abort what is left, then shut them down (once)."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
    budget = _budget_s if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    for provider in _providers:
        remaining_ms = max(int((deadline - time.monotonic()) * 1000), 0)
        try:
            provider.force_flush(timeout_millis=remaining_ms)
        except Exception:
            pass
    from floe_otel_distro.exporters import abort_all

    if time.monotonic() >= deadline:
        abort_all()
    else:
        # give in-flight retries no more than the remaining budget
        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), abort_all)
        timer.daemon = True
        timer.start()
    for provider in _providers:
        try:
            provider.shutdown()
        except Exception:
            pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    flush_and_shutdown()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_signal_handlers() -> None:
    """Chain our flush in front of the current SIGTERM/SIGINT handlers (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED_SIGNALS:
        try:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN or current is _on_signal:
                continue
            _previous[signum] = current
            signal.signal(signum, _on_signal)
        except (ValueError, OSError):
            continue


def install(providers: list[Any], settings: FloeSettings) -> None:
    """Register exit and signal hooks for ``providers``."""
    global _budget_s
    _providers[:] = providers
    _budget_s = settings.shutdown_timeout
    atexit.register(flush_and_shutdown)
    install_signal_handlers()


def _reset_for_tests(hook: Callable[[], None] | None = None) -> None:
    global _done
    _done = False
    _providers.clear()
    if hook:
        hook()
