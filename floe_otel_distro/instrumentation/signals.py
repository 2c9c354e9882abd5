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

Fork: a handled signal is blocked in the forking thread from just before ``fork()`` until the child's
after-fork hooks (the SDK's and ours) have run, then unblocked (``os.register_at_fork``). CPython discards
the signals a child caught before its own after-fork code ran (``_PySignal_AfterFork``); with a Python-level
handler installed (ours) a SIGTERM sent to a just-forked child, which under load has not run yet
(``Pool.terminate()`` reaching a worker the pool never needed), was lost and the worker, and the pool's
``__exit__`` with it, waited for ever; without us the default disposition kills it in the kernel.
Blocked, it stays pending and is handled once the child is ready. The SDK's batch threads the child
re-creates in its hooks inherit the blocked mask, so a signal to the child goes to its main thread.

The watcher: a Python-level handler runs at the main thread's next bytecode, so a signal that arrives
just before the main thread blocks in C (a ``multiprocessing`` lock, a join) waits until that call
returns: for ever for a pool worker waiting for a task that will never come (``Pool.terminate()``, 8 %
of runs under load). Where the program leaves the signal at its default (die of it), that is a change we
made, so we undo it: our wakeup fd (``signal.set_wakeup_fd``, only when the program has none) wakes the
``floe-otel-signals`` thread, and if our handler has not started ``NUDGE_AFTER_S`` later the thread sends
the signal again to the main thread (``signal.pthread_kill``), which interrupts the blocking call. A
program that sets its own wakeup fd (asyncio's ``add_signal_handler``, gunicorn's workers) replaces ours;
the watcher then never wakes, and the program's own signal handling is what it always was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
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


#: How long after a default-disposition signal arrived our handler may not have started before the watcher
#: sends it again to the main thread (a handler runs within microseconds when the main thread runs Python).
NUDGE_AFTER_S = 0.1


def _start_watcher() -> None:
    """Main thread: our wakeup fd and the thread reading it, unless the program has a wakeup fd of its own."""
    if not hasattr(signal, "pthread_kill"):  # Windows: no per-thread signals
        return
    try:
        current = signal.set_wakeup_fd(-1)
    except (ValueError, OSError):  # not the main thread, or no wakeup fd on this platform
        return
    inherited = _state.watch_fds
    if current != -1 and (inherited is None or current != inherited[1]):
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(current)  # the program's: leave it
        return
    _state.watch_fds = None
    if inherited is not None:  # a forked child: the parent's pipe is the parent's
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)  # set_wakeup_fd requires it
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        thread = threading.Thread(target=_watch, args=(read_fd,), name="floe-otel-signals", daemon=True)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)  # the watcher never takes them
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    except (ValueError, OSError, RuntimeError):
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        os.close(read_fd)
        os.close(write_fd)
        return
    _state.watch_fds = (read_fd, write_fd)


def _stop_watcher() -> None:
    """Main thread: take our wakeup fd back (if it is still ours) and end the watcher."""
    fds, _state.watch_fds = _state.watch_fds, None
    if fds is None:
        return
    with contextlib.suppress(ValueError, OSError):
        current = signal.set_wakeup_fd(-1)
        if current != fds[1]:
            signal.set_wakeup_fd(current)  # someone else's now: leave it
    for fd in fds:  # the watcher's read fails and it returns
        with contextlib.suppress(OSError):
            os.close(fd)


def _watch(read_fd: int) -> None:
    """The ``floe-otel-signals`` thread: one byte per signal the process caught (CPython writes them)."""
    pid = os.getpid()
    while True:
        try:
            data = os.read(read_fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data or os.getpid() != pid:
            return
        for signum in set(data):
            if signum in HANDLED_SIGNALS:
                _nudge_if_unhandled(signum)


def _nudge_if_unhandled(signum: int) -> None:
    """A default-disposition signal our handler has not started on: send it to the main thread again."""
    deadline = time.monotonic() + NUDGE_AFTER_S
    while time.monotonic() < deadline:
        if _state.dying_pid == os.getpid():
            return
        time.sleep(0.01)
    if not _state.active or _state.dying_pid == os.getpid():
        return
    if _state.program_handlers.get(signum, signal.SIG_DFL) != signal.SIG_DFL:
        return  # the program handles it: its handler's timing is CPython's, with or without us
    main = threading.main_thread().ident
    if main is not None:
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_kill(main, signum)  # interrupts the blocking call; the handler runs (once)


_fork_hooks_registered = False  # os.register_at_fork hooks cannot be removed: registered once, inert when inactive
_mask_before_fork = threading.local()  # per forking thread (two threads may fork at once): its mask before


def _block_for_fork() -> None:
    """``os.register_at_fork(before=...)``: hold the handled signals until the child's hooks have run."""
    if _state.active:
        with contextlib.suppress(OSError, ValueError):
            _mask_before_fork.mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)


def _unblock_after_fork() -> None:
    """``after_in_parent``: the mask as it was before the fork (a signal that arrived meanwhile is delivered now)."""
    mask = getattr(_mask_before_fork, "mask", None)
    if mask is not None:
        _mask_before_fork.mask = None
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _child_after_fork() -> None:
    """``after_in_child`` (ours run after the SDK's and ``lifecycle``'s): a watcher of its own, then the mask.

    A signal that arrived since the fork is delivered when the mask is restored, to a child that is ready.
    """
    try:
        if _state.active and _state.watch_fds is not None:
            _start_watcher()  # the parent's pipe and thread are the parent's (none while the signals are blocked)
    finally:
        _unblock_after_fork()


class _State:
    """What is installed; the wrappers pass through when ``active`` is false (someone wrapped over us)."""

    def __init__(self) -> None:
        self.active = False
        self.wrapped = False  # signal.signal / signal.getsignal are ours to unwrap
        self.program_handlers: dict[int, Any] = {}  # what the program set (or had) for each handled signal
        self.handling_pid: int | None = None  # a handler of ours runs in this process (a nested signal)
        self.dying_pid: int | None = None  # this process is flushing to die of a default-disposition signal
        self.watch_fds: tuple[int, int] | None = None  # the watcher's pipe (read, write: our wakeup fd)


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
        if nested and _state.dying_pid == os.getpid():
            return  # the same end, already under way (e.g. the watcher's nudge): the flush is bounded
        _state.dying_pid = os.getpid()
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
        global _fork_hooks_registered
        _state.active = True
        _take_over()
        if not _fork_hooks_registered and hasattr(os, "register_at_fork") and hasattr(signal, "pthread_sigmask"):
            _fork_hooks_registered = True
            os.register_at_fork(before=_block_for_fork, after_in_parent=_unblock_after_fork,
                                after_in_child=_child_after_fork)
        _start_watcher()
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
            _stop_watcher()
