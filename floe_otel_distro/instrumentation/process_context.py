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

Patch points: ``subprocess.Popen.__init__`` (covers ``run``/``call``/``check_output``/``os.popen``/
asyncio), ``os.execv``/``os.execve`` (``execl*``/``execvp*`` go through them), ``os.spawnv``/``spawnve``/
``spawnvp``/``spawnvpe`` (``spawnl*`` go through them), ``os.posix_spawn``/``posix_spawnp``.
``os.system`` inherits ``os.environ`` in C and is not covered.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from types import ModuleType
from typing import Any

from opentelemetry import context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from floe_otel_distro.instrumentation._import_hooks import when_imported
from floe_otel_distro.instrumentation._patching import Patch, patch, unpatch_all
from floe_otel_distro.propagation import carrier_keys, current_carrier, extract_from_environ, has_valid_span

_log = logging.getLogger(__name__)

#: Key under which the parent's carrier travels in multiprocessing's preparation data.
PREPARATION_DATA_KEY = "floe_otel_context"

_FLUSH_TIMEOUT_MILLIS = 2000
_POOL_WORKER_TARGETS = frozenset(
    {("multiprocessing.pool", "worker"), ("concurrent.futures.process", "_process_worker")}
)

AnyCallable = Callable[..., Any]


class _State:
    """Installed patches; wrappers pass through when ``active`` is false (someone wrapped over us)."""

    def __init__(self) -> None:
        self.active = False
        self.patches: list[Patch] = []
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


def _wrap_env_arg(index: int, name: str = "env") -> Callable[[AnyCallable], AnyCallable]:
    """Wrapper factory for callables that take an environment argument."""

    def factory(original: AnyCallable) -> AnyCallable:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args = _replace_env_arg(args, kwargs, index, name)
            return original(*args, **kwargs)

        return wrapper

    return factory


def _wrap_env_added(with_env_name: str) -> Callable[[AnyCallable], AnyCallable]:
    """Wrapper factory for ``os.execv``-style callables: call the ``…e`` variant with an injected copy."""

    def factory(original: AnyCallable) -> AnyCallable:
        with_env = getattr(os, with_env_name)
        with_env = getattr(with_env, "__floe_original__", with_env)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            env = child_environ(None)
            if env is None:
                return original(*args, **kwargs)
            return with_env(*args, env, **kwargs)

        return wrapper

    return factory


# ---- multiprocessing --------------------------------------------------------------------------------
def _is_pool_worker(process: object) -> bool:
    target = getattr(process, "_target", None)
    key = (getattr(target, "__module__", None), getattr(target, "__qualname__", None))
    return key in _POOL_WORKER_TARGETS


def _wrap_start(original: AnyCallable) -> AnyCallable:
    @functools.wraps(original)
    def start(self: Any) -> Any:
        previous = getattr(_state.starting, "process", None)
        _state.starting.process = self
        try:
            return original(self)
        finally:
            _state.starting.process = previous

    return start


def _wrap_get_preparation_data(original: AnyCallable) -> AnyCallable:
    @functools.wraps(original)
    def get_preparation_data(name: str, *args: Any, **kwargs: Any) -> Any:
        data = original(name, *args, **kwargs)
        try:
            starting = getattr(_state.starting, "process", None)
            carry = _state.active and isinstance(data, dict) and not _is_pool_worker(starting)
            if carry and has_valid_span():
                data[PREPARATION_DATA_KEY] = current_carrier()
        except Exception:
            _log.debug("floe-otel: could not add context to multiprocessing preparation data", exc_info=True)
        return data

    return get_preparation_data


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


def _wrap_prepare(original: AnyCallable) -> AnyCallable:
    @functools.wraps(original)
    def prepare(data: Any, *args: Any, **kwargs: Any) -> Any:
        if _state.active and isinstance(data, Mapping):
            try:
                attach_from_preparation_data(data)
            except Exception:
                _log.debug("floe-otel: could not attach the parent's context", exc_info=True)
        return original(data, *args, **kwargs)

    return prepare


# ---- patching ---------------------------------------------------------------------------------------
def _popen_env_index(init: AnyCallable) -> int:
    try:
        return list(inspect.signature(init).parameters).index("env")
    except (ValueError, TypeError):
        # (self, args, bufsize, executable, stdin, stdout, stderr, preexec_fn, close_fds, shell, cwd, env)
        return 11


def _patch_subprocess(module: ModuleType) -> None:
    if not _state.active:
        return
    popen = module.Popen
    patch(popen, "__init__", _wrap_env_arg(_popen_env_index(popen.__init__)), _state.patches)


def _patch_os() -> None:
    patch(os, "execve", _wrap_env_arg(2), _state.patches)
    patch(os, "execv", _wrap_env_added("execve"), _state.patches)
    if hasattr(os, "spawnve"):
        patch(os, "spawnve", _wrap_env_arg(3), _state.patches)
        patch(os, "spawnv", _wrap_env_added("spawnve"), _state.patches)
    if hasattr(os, "spawnvpe"):
        patch(os, "spawnvpe", _wrap_env_arg(3), _state.patches)
        patch(os, "spawnvp", _wrap_env_added("spawnvpe"), _state.patches)
    for name in ("posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            patch(os, name, _wrap_env_arg(2), _state.patches)


def _patch_mp_process(module: ModuleType) -> None:
    if _state.active:
        patch(module.BaseProcess, "start", _wrap_start, _state.patches)


def _patch_mp_spawn(module: ModuleType) -> None:
    if _state.active:
        patch(module, "get_preparation_data", _wrap_get_preparation_data, _state.patches)
        patch(module, "prepare", _wrap_prepare, _state.patches)


class ProcessContextInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Carries the current trace context into every child process this process starts."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        _state.active = True
        _patch_os()
        when_imported("subprocess", _patch_subprocess)
        when_imported("multiprocessing.process", _patch_mp_process)
        when_imported("multiprocessing.spawn", _patch_mp_spawn)

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.active = False
        unpatch_all(_state.patches)
