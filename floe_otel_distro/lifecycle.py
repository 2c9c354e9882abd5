"""Process lifecycle: bounded flush at exit and in forked children; the flush the signal handlers call.

- exit (``atexit``): flush and shut down every provider within ``shutdown_timeout_s`` (default 2 s).
  The collector is probed first (one TCP connect): when it is down the exporters are aborted at once,
  so a job exits in its normal time (+ a few ms), not after the exporters' retry back-off. Whatever
  still runs when the budget is spent is aborted; exit never waits longer than the budget. Then
  ``delivery.report_at_exit`` prints one line per collector that lost telemetry (count and cause),
  counting the batches in flight and the items still queued; nothing when nothing was lost.
- signals: the ``floe_signals`` instrumentor (:mod:`floe_otel_distro.instrumentation.signals`) owns the
  SIGTERM/SIGINT/SIGHUP handlers; they call :func:`flush` (the program handles the signal) or
  :func:`finish_exit_flush` (the process is about to die of it).
- fork (``os.register_at_fork``): the SDK's own after-fork hooks re-create the batch threads, clear the
  queues the child inherited (nothing buffered in the parent is exported twice) and re-run the
  process-dependent resource detectors (the plan's ``floe_process``: the child's ``process.pid``).
  Ours, which run after them, make the exporters drop the parent's connections and let the child
  flush at its own exit. ``multiprocessing`` children leave through ``os._exit`` (no ``atexit``): a
  ``multiprocessing.util.Finalize`` registered from its after-fork hook flushes them. Until our hook
  has run, a child flushes nothing: a signal that lands while the SDK's hooks still run (``Pool.terminate()``
  reaching a worker that is still starting) would otherwise export the parent's queue again, and wait
  on locks the parent's threads held at fork time, for ever. Such a child has no telemetry of its own
  yet, so it just dies of the signal. gunicorn workers
  leave through ``sys.exit`` (``atexit`` runs), so they need no server-specific hook (see
  docs/lifecycle.md).
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import threading
import time
from types import ModuleType
from typing import Any

DEFAULT_SHUTDOWN_TIMEOUT_S = 2.0
PROBE_TIMEOUT_S = 0.5  # at most this much of the budget goes to finding out that the collector is down
_GRACE_S = 0.2  # after an abort, how long we wait for the worker to notice

_providers: list[Any] = []
_budget_s = DEFAULT_SHUTDOWN_TIMEOUT_S
_lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
_done = False
_fork_hooks_installed = False
_final_finished = False  # the exit flush + shutdown has completed
_inflight: tuple[threading.Thread, float, bool] | None = None  # the last flush started: thread, deadline, final
_ready_pid = os.getpid()  # the process whose state is its own: install()'s, or a forked child's after our hook


# --- bounded flush ---------------------------------------------------------------------------------
def _work(shutdown: bool, deadline: float) -> None:
    def remaining_ms() -> int:
        return max(int((deadline - time.monotonic()) * 1000), 0)

    if shutdown:
        from floe_otel_distro import delivery

        delivery.begin_exit(deadline)  # Retry-After beyond this is not waited for; no throttled lines now
        with contextlib.suppress(Exception):
            from floe_otel_distro.exporters import give_up_waits_beyond

            give_up_waits_beyond(deadline)
    with contextlib.suppress(Exception):
        from floe_otel_distro.exporters import abort_unreachable

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
    if not _providers:  # nothing installed in this process (e.g. an uninstrumented child): nothing to do
        return True
    if _ready_pid != os.getpid():  # a forked child still in its fork hooks: nothing of its own, locks not its own
        return True
    budget = _budget_s if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    worker = threading.Thread(target=_work, args=(shutdown, deadline), name="floe-otel-flush", daemon=True)
    _inflight = (worker, deadline, shutdown)
    try:
        worker.start()
    except RuntimeError:  # the interpreter is finalizing and refuses new threads: flush inline
        _inflight = None
        _work(shutdown, deadline)
        _report(shutdown)
        return True
    worker.join(budget)
    if not worker.is_alive():
        _report(shutdown)
        return True
    from floe_otel_distro.exporters import abort_all

    if os.environ.get("FLOE_DEBUG_LIFECYCLE"):
        import faulthandler
        import sys

        sys.stderr.write(f"floe-otel debug: flush budget exceeded in pid {os.getpid()}\n")
        faulthandler.dump_traceback(all_threads=True)
    abort_all()
    worker.join(_GRACE_S)
    _report(shutdown)
    return False


def _report(final: bool) -> None:
    """After the final flush: one line per collector with losses (``delivery``); nothing otherwise."""
    if final:
        with contextlib.suppress(Exception):
            from floe_otel_distro import delivery

            delivery.report_at_exit()


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


def finish_exit_flush() -> None:
    """Make sure the exit flush + shutdown has completed before the process dies (signal handlers).

    The caller (a signal handler) runs on the main thread, possibly in the middle of
    :func:`flush_and_shutdown`: either its helper thread is running (wait for it, within its budget),
    or it was interrupted before starting one (do the flush here), or it has not started (start it).
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
    global _lock, _done, _inflight, _final_finished, _ready_pid
    _lock = threading.RLock()
    _done = False
    _final_finished = False
    _inflight = None
    try:
        from floe_otel_distro.exporters import reset_after_fork

        reset_after_fork()
    except Exception:  # never break the child
        pass
    finally:
        _ready_pid = os.getpid()


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
    """Flush and shut down ``providers`` at exit (and in forked children) within ``shutdown_timeout_s``."""
    global _budget_s, _install_pid, _fork_hooks_installed, _ready_pid
    _providers[:] = providers
    _budget_s = shutdown_timeout_s
    _install_pid = _ready_pid = os.getpid()
    atexit.unregister(flush_and_shutdown)
    atexit.register(flush_and_shutdown)
    if _fork_hooks_installed:  # os.register_at_fork hooks cannot be removed: register once
        return
    _fork_hooks_installed = True
    if hasattr(os, "register_at_fork"):
        from floe_otel_distro import exporters

        os.register_at_fork(before=exporters.before_fork, after_in_parent=exporters.after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
    from floe_otel_distro.instrumentation._hooks import when_imported

    when_imported("multiprocessing.util", _watch_multiprocessing)


def reset() -> None:
    """Forget the providers, the budget and the exit hook; a new flush may run (tests).

    The fork hooks stay registered (``os.register_at_fork`` cannot undo them); without providers they
    have nothing to flush.
    """
    global _done, _final_finished, _inflight, _budget_s
    atexit.unregister(flush_and_shutdown)
    _done = False
    _final_finished = False
    _inflight = None
    _budget_s = DEFAULT_SHUTDOWN_TIMEOUT_S
    _providers.clear()
    from floe_otel_distro import delivery

    delivery.reset()
