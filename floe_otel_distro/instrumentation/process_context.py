"""Child-process context injection: subprocess, os.exec*/spawn*/posix_spawn, multiprocessing spawn+forkserver.

Whenever an instrumented process starts a child, the child's environment *copy* carries the current
context as ``TRACEPARENT`` / ``TRACESTATE`` / ``BAGGAGE`` (OTel spec "environment variables as context
carriers"); the parent's ``os.environ`` is never mutated.

Rules:

- Inject only when the current context holds a valid span context. Otherwise the environment is passed
  through untouched (an instrumented process with nothing to propagate behaves like an uninstrumented
  one: whatever carriers the caller gave us travel on unchanged).
- When injecting, stale carrier variables (and any other field of the configured propagators) in the
  given environment are replaced, so a child never continues an outdated trace.
- ``multiprocessing`` ``spawn`` / ``forkserver``: the carrier of the context current at
  ``Process.start()`` rides in the preparation data (``multiprocessing.spawn.get_preparation_data``);
  an instrumented child attaches it in ``multiprocessing.spawn.prepare`` before the target runs and
  runs the distro's bounded flush when the process body ends (forkserver children leave via ``os._exit``,
  so ``atexit`` never runs there).
  Pool workers (``multiprocessing.Pool``, ``ProcessPoolExecutor``) are not given the starter's context:
  they outlive it and run unrelated tasks. ``fork`` needs nothing (the child inherits the context).

Patch points (wrapt function wrappers, undone by ``uninstrument``): ``subprocess.Popen.__init__`` (covers
``run``/``call``/``check_output``/``os.popen``/asyncio), ``os.execv``/``os.execve`` (``execl*``/``execvp*``
go through them), ``os.spawnv``/``spawnve``/``spawnvp``/``spawnvpe`` (``spawnl*`` go through them),
``os.posix_spawn``/``posix_spawnp``. ``os.system`` inherits ``os.environ`` in C and is not covered.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from floe_otel_distro.instrumentation._hooks import ImportHooks
from floe_otel_distro.propagation import carrier_keys, current_carrier, extract_from_environ, has_valid_span

_log = logging.getLogger(__name__)

#: Key under which the parent's carrier travels in multiprocessing's preparation data.
PREPARATION_DATA_KEY = "floe_otel_context"

_FLUSH_TIMEOUT_MILLIS = 2000
_POOL_WORKER_TARGETS = frozenset(
    {("multiprocessing.pool", "worker"), ("concurrent.futures.process", "_process_worker")}
)

AnyCallable = Callable[..., Any]
#: a wrapt wrapper: ``(wrapped, instance, args, kwargs)``
Wrapper = Callable[[AnyCallable, Any, tuple[Any, ...], dict[str, Any]], Any]


class _State:
    """What is wrapped; wrappers pass through when ``active`` is false (someone wrapped over us)."""

    def __init__(self) -> None:
        self.active = False
        self.hooks = ImportHooks()
        self.wrapped: list[tuple[Any, str]] = []  # (owner, attribute), for unwrap
        self.starting = threading.local()
        self.exit_flush_registered = False


_state = _State()


# ---- environment ------------------------------------------------------------------------------------
def child_environ(env: Mapping[Any, Any] | None) -> Mapping[Any, Any] | None:
    """The environment to give a child: ``env`` itself when there is nothing to propagate, else a copy.

    ``env=None`` means "inherit": the copy is made from ``os.environ``. ``bytes`` keys are handled
    (stale ``b"TRACEPARENT"`` is dropped as well). Never raises.
    """
    if not _state.active or not has_valid_span():
        return env
    try:
        carrier = current_carrier()
        stale = carrier_keys()
        stale_bytes = {k.encode() for k in stale}
        base: Mapping[Any, Any] = os.environ if env is None else env
        new = {k: v for k, v in base.items() if k not in stale and k not in stale_bytes}
        new.update(carrier)
        return new
    except Exception:
        _log.debug("floe-otel: could not inject context into a child environment", exc_info=True)
        return env


def _replace_env_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> tuple[Any, ...]:
    """Swap the ``env`` argument (positional ``index`` or keyword ``name``) for ``child_environ(env)``."""
    if len(args) > index:
        new_env = child_environ(args[index])
        if new_env is not args[index]:
            args = (*args[:index], new_env, *args[index + 1 :])
    else:
        given = kwargs.get(name)
        new_env = child_environ(given)
        if new_env is not given:
            kwargs[name] = new_env
    return args


def _env_arg_wrapper(index: int, name: str = "env") -> Wrapper:
    """wrapt wrapper for callables that take an environment argument (``index`` counts after ``self``)."""

    def wrapper(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        args = _replace_env_arg(args, kwargs, index, name)
        return wrapped(*args, **kwargs)

    return wrapper


def _env_added_wrapper(with_env: AnyCallable) -> Wrapper:
    """wrapt wrapper for ``os.execv``-style callables: call the ``…e`` variant ``with_env`` with an injected copy."""

    def wrapper(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        env = child_environ(None)
        if env is None:
            return wrapped(*args, **kwargs)
        return with_env(*args, env, **kwargs)

    return wrapper


# ---- multiprocessing --------------------------------------------------------------------------------
def _is_pool_worker(process: object) -> bool:
    target = getattr(process, "_target", None)
    key = (getattr(target, "__module__", None), getattr(target, "__qualname__", None))
    return key in _POOL_WORKER_TARGETS


def _traced_start(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``BaseProcess.start``: remember which process is starting (pool workers get no context)."""
    previous = getattr(_state.starting, "process", None)
    _state.starting.process = instance
    try:
        return wrapped(*args, **kwargs)
    finally:
        _state.starting.process = previous


def _traced_get_preparation_data(
    wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``multiprocessing.spawn.get_preparation_data``: add the current carrier to the child's data."""
    data = wrapped(*args, **kwargs)
    try:
        starting = getattr(_state.starting, "process", None)
        carry = _state.active and isinstance(data, dict) and not _is_pool_worker(starting)
        if carry and has_valid_span():
            data[PREPARATION_DATA_KEY] = current_carrier()
    except Exception:
        _log.debug("floe-otel: could not add context to multiprocessing preparation data", exc_info=True)
    return data


def _flush_providers() -> None:
    """Flush at a multiprocessing child's exit (forkserver/fork children leave through ``os._exit``).

    Uses the distro's bounded exit (``lifecycle.flush_and_shutdown``: time budget, aborts exporter
    retries) so an unreachable collector never holds the child up; falls back to a short flush of the
    global providers when the floe lifecycle is not available.
    """
    try:
        from floe_otel_distro import lifecycle
    except Exception:
        lifecycle = None  # type: ignore[assignment]
    if lifecycle is not None:
        try:
            lifecycle.flush_and_shutdown()
            return
        except Exception:
            _log.debug("floe-otel: bounded flush at multiprocessing child exit failed", exc_info=True)
    from opentelemetry import _logs, metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider()):
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            try:
                flush(timeout_millis=_FLUSH_TIMEOUT_MILLIS)
            except Exception:
                _log.debug("floe-otel: flush at multiprocessing child exit failed", exc_info=True)


def attach_from_preparation_data(data: Mapping[str, Any]) -> bool:
    """In a multiprocessing child: attach the parent's carried context; True when one was attached."""
    carrier = data.get(PREPARATION_DATA_KEY)
    if not isinstance(carrier, Mapping) or not carrier:
        return False
    ctx = extract_from_environ({str(k): str(v) for k, v in carrier.items()})
    if not has_valid_span(ctx):
        return False
    context.attach(ctx)  # for the child's lifetime: never detached
    if not _state.exit_flush_registered:
        from multiprocessing import util

        util.Finalize(None, _flush_providers, exitpriority=-100)
        _state.exit_flush_registered = True
    return True


def _traced_prepare(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``multiprocessing.spawn.prepare`` (in the child): attach the parent's carried context first."""
    data = args[0] if args else kwargs.get("data")
    if _state.active and isinstance(data, Mapping):
        try:
            attach_from_preparation_data(data)
        except Exception:
            _log.debug("floe-otel: could not attach the parent's context", exc_info=True)
    return wrapped(*args, **kwargs)


# ---- wrapping ---------------------------------------------------------------------------------------
def _wrap(owner: Any, name: str, wrapper: Wrapper) -> None:
    wrapt.wrap_function_wrapper(owner, name, wrapper)
    _state.wrapped.append((owner, name))


def _popen_env_index(init: AnyCallable) -> int:
    """Position of ``env`` among ``Popen.__init__``'s arguments after ``self`` (what a wrapt wrapper sees)."""
    try:
        return list(inspect.signature(init).parameters).index("env") - 1
    except (ValueError, TypeError):
        # (args, bufsize, executable, stdin, stdout, stderr, preexec_fn, close_fds, shell, cwd, env)
        return 10


def _patch_subprocess(module: ModuleType) -> None:
    popen = module.Popen
    _wrap(popen, "__init__", _env_arg_wrapper(_popen_env_index(popen.__init__)))


def _patch_os() -> None:
    execve = os.execve  # the ``…e`` variants as they are before we wrap them
    _wrap(os, "execve", _env_arg_wrapper(2))
    _wrap(os, "execv", _env_added_wrapper(execve))
    if hasattr(os, "spawnve"):
        spawnve = os.spawnve
        _wrap(os, "spawnve", _env_arg_wrapper(3))
        _wrap(os, "spawnv", _env_added_wrapper(spawnve))
    if hasattr(os, "spawnvpe"):
        spawnvpe = os.spawnvpe
        _wrap(os, "spawnvpe", _env_arg_wrapper(3))
        _wrap(os, "spawnvp", _env_added_wrapper(spawnvpe))
    for name in ("posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            _wrap(os, name, _env_arg_wrapper(2))


def _patch_mp_process(module: ModuleType) -> None:
    _wrap(module.BaseProcess, "start", _traced_start)


def _patch_mp_spawn(module: ModuleType) -> None:
    _wrap(module, "get_preparation_data", _traced_get_preparation_data)
    _wrap(module, "prepare", _traced_prepare)


class ProcessContextInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Carries the current trace context into every child process this process starts."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        _state.active = True
        _state.hooks.activate()
        _patch_os()
        _state.hooks.when_imported("subprocess", _patch_subprocess)
        _state.hooks.when_imported("multiprocessing.process", _patch_mp_process)
        _state.hooks.when_imported("multiprocessing.spawn", _patch_mp_spawn)

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.active = False
        _state.hooks.deactivate()
        for owner, name in reversed(_state.wrapped):
            unwrap(owner, name)
        _state.wrapped.clear()
