"""Process lifecycle: bounded flush at exit, on SIGTERM/SIGINT and in forked children; fork re-init.

- exit (``atexit``): flush and shut down every provider within ``FLOE_SHUTDOWN_TIMEOUT`` (default 2 s).
  The collector is probed first (one TCP connect): when it is down the exporters are aborted at once,
  so a job exits in its normal time (+ a few ms), not after the exporters' retry back-off. Whatever
  still runs when the budget is spent is aborted; exit never waits longer than the budget.
- SIGTERM / SIGINT: the same bounded flush, then what the program would have done without us: its own
  handler if it has one — also one installed *after* the distro loaded, because ``signal.signal`` is
  wrapped (ours stays installed, the program's is recorded and ``signal.getsignal`` returns it) — else
  the default disposition (SIGTERM: killed by the signal, status 143 / returncode -15).
- fork (``os.register_at_fork``): in the child, the providers' resource gets the child's
  ``process.pid`` (the SDK re-creates the batch threads and clears the queues it inherited, so
  nothing buffered in the parent is exported twice), exporters drop the parent's connections, and the
  child flushes at its own exit. ``multiprocessing`` children leave through ``os._exit`` (no
  ``atexit``): a ``multiprocessing.util.Finalize`` registered from its after-fork hook flushes them.
  gunicorn workers leave through ``sys.exit`` (``atexit`` runs) and ``signal.signal`` is wrapped, so
  they need no server-specific hook (see docs/lifecycle.md).
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any


HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PROBE_TIMEOUT_S = 0.5  # at most this much of the budget goes to finding out that the collector is down
_GRACE_S = 0.2  # after an abort, how long we wait for the worker to notice

_providers: list[Any] = []
_budget_s = 2.0
_lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
_done = False
_handling = False
_hooks_installed = False
_fork_hooks_installed = False
_final_finished = False  # the exit flush + shutdown has completed
_inflight: tuple[threading.Thread, float, bool] | None = None  # the last flush started: thread, deadline, final
_program_handlers: dict[int, Any] = {}  # what the program set (or had) for each handled signal
_original_signal = signal.signal
_original_getsignal = signal.getsignal


# --- bounded flush ---------------------------------------------------------------------------------
def _work(shutdown: bool, deadline: float) -> None:
    from floe_otel_distro.exporters import abort_unreachable

    def remaining_ms() -> int:
        return max(int((deadline - time.monotonic()) * 1000), 0)

    with contextlib.suppress(Exception):
        abort_unreachable(min(PROBE_TIMEOUT_S, remaining_ms() / 1000))
    for provider in list(_providers):
        with contextlib.suppress(Exception):
            provider.force_flush(timeout_millis=remaining_ms())
    if shutdown:
        for provider in list(_providers):
            try:
                if "timeout_millis" in inspect.signature(provider.shutdown).parameters:
                    provider.shutdown(timeout_millis=remaining_ms())
                else:
                    provider.shutdown()
            except Exception:
                pass


def flush(budget_s: float | None = None, *, shutdown: bool = False) -> bool:
    """Flush (and optionally shut down) every provider; never takes longer than the budget (+0.2 s).

    The work runs on a helper thread so that a stuck export (a collector that drops packets, a lock
    held by the interrupted code) cannot hold the caller: when the budget is spent the exporters are
    aborted and the caller goes on. Returns whether everything finished within the budget.
    """
    global _inflight
    budget = _budget_s if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    worker = threading.Thread(target=_work, args=(shutdown, deadline), name="floe-otel-flush", daemon=True)
    _inflight = (worker, deadline, shutdown)
    try:
        worker.start()
    except RuntimeError:  # the interpreter is finalizing and refuses new threads: flush inline
        _inflight = None
        _work(shutdown, deadline)
        return True
    worker.join(budget)
    if not worker.is_alive():
        return True
    from floe_otel_distro.exporters import abort_all

    if os.environ.get("FLOE_DEBUG_LIFECYCLE"):
        import faulthandler
        import sys

        sys.stderr.write(f"floe-otel debug: flush budget exceeded in pid {os.getpid()}\n")
        faulthandler.dump_traceback(all_threads=True)
    abort_all()
    worker.join(_GRACE_S)
    return False


def wait_for_inflight_flush() -> None:
    """If a flush is under way (e.g. the exit flush, interrupted by SIGTERM), wait for it, within its budget."""
    inflight = _inflight
    if inflight is None or inflight[0] is threading.current_thread():
        return
    worker, deadline, _final = inflight
    worker.join(max(deadline - time.monotonic(), 0.0) + _GRACE_S)


def flush_and_shutdown(budget_s: float | None = None) -> None:
    """Flush and shut down every provider within the budget (once per process)."""
    global _done, _final_finished
    with _lock:
        if _done:
            return
        _done = True
    flush(budget_s, shutdown=True)
    _final_finished = True


def _finish_interrupted_exit_flush() -> None:
    """In a signal handler: make sure the exit flush completes before the process dies of the signal.

    The handler runs on the main thread, possibly in the middle of ``flush_and_shutdown``: either its
    helper thread is running (wait for it, within its budget) or it was interrupted before starting
    one (do the flush here).
    """
    if not _done:
        flush_and_shutdown()
        return
    if _final_finished:
        return
    inflight = _inflight
    if inflight is not None and inflight[2] and inflight[0].ident is not None:
        wait_for_inflight_flush()
    else:
        flush(shutdown=True)


# --- signals ---------------------------------------------------------------------------------------
def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _handling
    handler = _program_handlers.get(signum, signal.SIG_DFL)
    nested = _handling
    _handling = True
    try:
        if callable(handler):
            # The program handles it (its handler may log, clean up, exit): flush only; the final
            # shutdown happens at exit.
            if not nested:
                flush()
            handler(signum, frame)
            return
        if handler == signal.SIG_IGN:
            return
        if not nested:
            # A SIGTERM that lands while the exit flush runs (multiprocessing's Pool.terminate()
            # does this to workers on their way out) must not cut it short.
            _finish_interrupted_exit_flush()
    finally:
        _handling = nested
    # Default disposition: die of the signal, as without us (returncode -15, shell status 143).
    _original_signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _wrapped_signal(signalnum: Any, handler: Any) -> Any:
    """``signal.signal``: for SIGTERM/SIGINT record the program's handler and keep ours in front."""
    if signalnum not in HANDLED_SIGNALS or not _hooks_installed or not _in_main_thread():
        return _original_signal(signalnum, handler)
    if not callable(handler) and handler not in (signal.SIG_DFL, signal.SIG_IGN):
        raise TypeError("signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object")
    previous = _wrapped_getsignal(signalnum)
    _program_handlers[signalnum] = handler
    if handler == signal.SIG_IGN:  # the program ignores the signal: so do we
        _original_signal(signalnum, signal.SIG_IGN)
    else:
        _original_signal(signalnum, _on_signal)
    return previous


def _wrapped_getsignal(signalnum: Any) -> Any:
    """``signal.getsignal``: the program's handler, not ours."""
    current = _original_getsignal(signalnum)
    if current is _on_signal:
        return _program_handlers.get(signalnum, signal.SIG_DFL)
    return current


_wrapped_signal.__wrapped__ = _original_signal  # type: ignore[attr-defined]
_wrapped_getsignal.__wrapped__ = _original_getsignal  # type: ignore[attr-defined]


def install_signal_handlers() -> None:
    """Put our flush in front of SIGTERM/SIGINT (main thread only; an ignored signal stays ignored)."""
    global _hooks_installed
    if not _in_main_thread():
        return
    for signum in HANDLED_SIGNALS:
        try:
            current = _original_getsignal(signum)
            if current is _on_signal:
                continue
            _program_handlers[signum] = current
            if current is signal.SIG_IGN or current is None:  # None: set from C, not ours to replace
                continue
            _original_signal(signum, _on_signal)
        except (ValueError, OSError):
            continue
    _hooks_installed = True
    signal.signal = _wrapped_signal
    signal.getsignal = _wrapped_getsignal


def uninstall_signal_handlers() -> None:
    """Give the program its handlers back and unwrap ``signal.signal`` (tests)."""
    global _hooks_installed
    signal.signal = _original_signal
    signal.getsignal = _original_getsignal
    _hooks_installed = False
    if not _in_main_thread():
        return
    for signum in HANDLED_SIGNALS:
        if _original_getsignal(signum) is _on_signal:
            _original_signal(signum, _program_handlers.get(signum, signal.SIG_DFL))
    _program_handlers.clear()


# --- fork ------------------------------------------------------------------------------------------
def prepare_for_fork() -> None:
    """Call before the providers are built: makes the SDK's own after-fork hooks safe.

    The SDK's providers re-detect their resource after a fork with a ``ThreadPoolExecutor``, whose
    module holds ``_global_shutdown_lock`` across ``fork()`` and re-initialises it in its own
    after-fork hook. ``os.register_at_fork`` runs child hooks in registration order, so if
    ``concurrent.futures.thread`` is first imported *after* a provider exists, the provider's hook
    waits forever for that lock in every forked child (gunicorn workers never boot). Importing it
    first (~1 ms) puts its re-init ahead of the SDK's hooks.
    """
    import concurrent.futures.thread  # noqa: F401


def _after_fork_in_child() -> None:
    """Runs in every forked child, after the SDK's own fork hooks (registration order)."""
    global _lock, _done, _handling, _inflight, _final_finished
    _lock = threading.RLock()
    _done = False
    _final_finished = False
    _handling = False
    _inflight = None
    try:
        from opentelemetry.sdk.resources import Resource

        from floe_otel_distro.exporters import reset_after_fork

        reset_after_fork()
        child = Resource({"process.pid": os.getpid(), "process.parent_pid": os.getppid()})
        for provider in _providers:
            update = getattr(provider, "_update_resource", None)  # the SDK's own after-fork mechanism
            if update is not None:
                update(child)
    except Exception:  # never break the child
        pass


class _MultiprocessingToken:
    """Key object for ``multiprocessing.util.register_after_fork`` (held for the process's life)."""


_MP_TOKEN = _MultiprocessingToken()


def _mp_child_started(_token: object) -> None:
    # Runs in a multiprocessing child (any start method) after it cleared the inherited finalizers.
    import multiprocessing.util as mp_util

    if os.getpid() != _install_pid:  # forked: no atexit at the end (os._exit)
        mp_util.Finalize(None, flush_and_shutdown, exitpriority=-100)


def _watch_multiprocessing(module: ModuleType) -> None:
    module.register_after_fork(_MP_TOKEN, _mp_child_started)


_install_pid = os.getpid()


def install(providers: list[Any], shutdown_timeout_s: float) -> None:
    """Register exit, signal and fork hooks for ``providers``."""
    global _budget_s, _install_pid, _fork_hooks_installed
    _providers[:] = providers
    _budget_s = shutdown_timeout_s
    _install_pid = os.getpid()
    atexit.unregister(flush_and_shutdown)
    atexit.register(flush_and_shutdown)
    install_signal_handlers()
    if _fork_hooks_installed:  # os.register_at_fork hooks cannot be removed: register once
        return
    _fork_hooks_installed = True
    if hasattr(os, "register_at_fork"):
        from floe_otel_distro import exporters

        os.register_at_fork(before=exporters.before_fork, after_in_parent=exporters.after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
    from floe_otel_distro.instrumentation._import_hooks import when_imported

    when_imported("multiprocessing.util", _watch_multiprocessing)


def _reset_for_tests(hook: Callable[[], None] | None = None) -> None:
    global _done, _handling, _final_finished, _inflight
    _done = False
    _final_finished = False
    _inflight = None
    _handling = False
    _providers.clear()
    uninstall_signal_handlers()
    if hook:
        hook()
