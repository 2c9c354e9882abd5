"""Trace ids on logs: ``trace_id``/``span_id`` on every stdlib ``LogRecord`` and structlog event dict.

- stdlib ``logging``: the ``LogRecord`` factory is wrapped; while a valid span is current, each record
  gets ``trace_id`` (32 lowercase hex), ``span_id`` (16 lowercase hex) and ``trace_flags`` (2 hex, e.g.
  ``"01"`` = sampled). Outside a span the attributes are absent (use ``Formatter(defaults=...)`` when a
  format string names them).
- structlog: :func:`add_trace_context` adds ``trace_id`` / ``span_id`` (``setdefault``: values the app
  bound itself win). It is inserted, once, right before the final renderer of the current structlog
  configuration (also the built-in default one) and of every later ``structlog.configure`` /
  ``configure_once`` / ``reset_defaults`` call, so the app needs no processor of its own and the order
  "app configures structlog before / after the distro loads" does not matter. structlog is never
  imported by us: the patch is applied when the app imports it.
- Export decision: structlog events whose wrapped logger is a stdlib ``logging.Logger`` (structlog over
  stdlib) reach OTel through the stdlib path (the configurator's ``LoggingHandler``) and are *not*
  emitted here, so there are no duplicates. Events of every other wrapped logger (structlog's default
  ``PrintLogger``, ``WriteLogger``, ``BytesLogger``…) never touch stdlib logging; :func:`add_trace_context`
  emits them to the OTel Logs API (``opentelemetry._logs``) itself. Turn that off with
  ``LogCorrelationInstrumentor().instrument(export_structlog=False)``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Collection, MutableMapping, Sequence
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import context, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from floe_otel_distro.instrumentation._hooks import ImportHooks

_log = logging.getLogger(__name__)

TRACE_ID = "trace_id"
SPAN_ID = "span_id"
TRACE_FLAGS = "trace_flags"

# structlog keys that are not exported as OTel attributes (they are the record's own fields)
_NOT_ATTRIBUTES = frozenset({"event", "level", TRACE_ID, SPAN_ID, "exc_info"})
_DEFAULT_OTEL_LOGGER_NAME = "structlog"

AnyCallable = Callable[..., Any]


class _State:
    """What is installed; wrappers pass through when ``active`` is false (someone wrapped over us)."""

    def __init__(self) -> None:
        self.active = False
        self.export_structlog = True
        self.hooks = ImportHooks()
        self.factory: AnyCallable | None = None  # our LogRecord factory
        self.original_factory: AnyCallable | None = None  # the one it wraps
        self.structlog_wrapped: list[tuple[Any, str]] = []  # (owner, attribute), for unwrap
        self.otel_loggers: dict[str, Any] = {}
        self.emitting = threading.local()  # per-thread recursion guard for the structlog export


_state = _State()


# per thread, the last span context formatted and its ids: a span's records (dbt writes ~25 per node) format
# them once. Per thread because threads interleave their records: one slot for the process missed 86 % of the
# time in a 4-thread dbt build (profiled, session 19), each miss three format() calls.
_last = threading.local()


def _current_ids() -> tuple[str, str, str] | None:
    span_context = trace.get_current_span().get_span_context()
    last: tuple[object, tuple[str, str, str]] | None = getattr(_last, "ids", None)
    if last is not None and last[0] is span_context:  # a span hands out one SpanContext object for its life
        return last[1]
    if not span_context.is_valid:
        return None
    ids = (
        format(span_context.trace_id, "032x"),
        format(span_context.span_id, "016x"),
        format(span_context.trace_flags, "02x"),
    )
    _last.ids = (span_context, ids)
    return ids


# ---- stdlib logging ---------------------------------------------------------------------------------
def _record_factory(original: AnyCallable) -> AnyCallable:
    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = original(*args, **kwargs)
        if _state.active:
            ids = _current_ids()
            if ids is not None:
                record.trace_id, record.span_id, record.trace_flags = ids
        return record

    return record_factory


# ---- structlog --------------------------------------------------------------------------------------
_SEVERITY = {
    "debug": 5,
    "info": 9,
    "msg": 9,
    "warn": 13,
    "warning": 13,
    "error": 17,
    "exception": 17,
    "critical": 21,
    "fatal": 21,
}


def _attribute_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = list(value)
        if items and all(isinstance(v, str) for v in items):
            return items
    return str(value)


def _otel_logger(name: str) -> Any:
    logger = _state.otel_loggers.get(name)
    if logger is None:
        from opentelemetry import _logs

        logger = _state.otel_loggers[name] = _logs.get_logger(name)
    return logger


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def _emit_to_otel(method_name: str, event_dict: MutableMapping[str, Any]) -> None:
    """Emit one structlog event through the OTel Logs API (non-stdlib wrapped loggers only)."""
    if getattr(_state.emitting, "active", False):  # an exporter logging through structlog must not recurse
        return
    _state.emitting.active = True
    try:
        level = str(event_dict.get("level", method_name)).lower()
        body = event_dict.get("event")
        _otel_logger(str(event_dict.get("logger") or _DEFAULT_OTEL_LOGGER_NAME)).emit(
            context=context.get_current(),
            severity_number=SeverityNumber(_SEVERITY.get(level, 9)),
            severity_text={"warning": "WARN", "critical": "FATAL"}.get(level, level.upper()),
            body=body if isinstance(body, (str, int, float, bool)) or body is None else str(body),
            attributes={k: _attribute_value(v) for k, v in event_dict.items() if k not in _NOT_ATTRIBUTES},
            exception=_exception_of(event_dict.get("exc_info")),
        )
    except Exception:
        _log.debug("floe-otel: could not export a structlog event", exc_info=True)
    finally:
        _state.emitting.active = False


def add_trace_context(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: add the current span's ``trace_id``/``span_id``; export non-stdlib events."""
    if not _state.active:
        return event_dict
    ids = _current_ids()
    if ids is not None:
        event_dict.setdefault(TRACE_ID, ids[0])
        event_dict.setdefault(SPAN_ID, ids[1])
    if _state.export_structlog and not isinstance(logger, logging.Logger):
        _emit_to_otel(method_name, event_dict)
    return event_dict


def _structlog_config(structlog: ModuleType) -> Any:
    config_module = getattr(structlog, "_config", None)
    return getattr(config_module, "_CONFIG", None)


def ensure_structlog_processor(structlog: ModuleType) -> None:
    """Insert :func:`add_trace_context` before the final renderer of the current config (once)."""
    config = _structlog_config(structlog)
    if config is None:
        return
    processors = config.default_processors
    if any(p is add_trace_context for p in processors):
        return
    position = max(len(list(processors)) - 1, 0)
    if isinstance(processors, list):
        processors.insert(position, add_trace_context)  # in place: already-bound loggers see it too
    else:
        updated = list(processors)
        updated.insert(position, add_trace_context)
        config.default_processors = updated


def _remove_structlog_processor(structlog: ModuleType) -> None:
    config = _structlog_config(structlog)
    if config is None:
        return
    processors = config.default_processors
    if isinstance(processors, list):
        processors[:] = [p for p in processors if p is not add_trace_context]
    else:
        config.default_processors = [p for p in processors if p is not add_trace_context]


def _after_configure(wrapped: AnyCallable, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """wrapt wrapper of ``structlog.configure``/``reset_defaults``: re-insert our processor afterwards."""
    result = wrapped(*args, **kwargs)
    structlog = sys.modules.get("structlog")
    if _state.active and structlog is not None:
        try:
            ensure_structlog_processor(structlog)
        except Exception:
            _log.debug("floe-otel: could not add the structlog trace processor", exc_info=True)
    return result


def _patch_structlog(structlog: ModuleType) -> None:
    config_module = getattr(structlog, "_config", None)
    for owner in (structlog, config_module):
        if owner is None:
            continue
        for name in ("configure", "reset_defaults"):
            if callable(getattr(owner, name, None)):
                wrapt.wrap_function_wrapper(owner, name, _after_configure)
                _state.structlog_wrapped.append((owner, name))
    ensure_structlog_processor(structlog)


class LogCorrelationInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Puts the current span's ids on stdlib log records and structlog event dicts."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        _state.active = True
        _state.export_structlog = bool(kwargs.get("export_structlog", True))
        _state.hooks.activate()
        _state.original_factory = logging.getLogRecordFactory()
        _state.factory = _record_factory(_state.original_factory)
        logging.setLogRecordFactory(_state.factory)
        _state.hooks.when_imported("structlog", _patch_structlog)

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.active = False
        _state.hooks.deactivate()
        original = _state.original_factory
        if original is not None and logging.getLogRecordFactory() is _state.factory:
            logging.setLogRecordFactory(original)
        _state.factory = _state.original_factory = None
        for owner, name in reversed(_state.structlog_wrapped):
            unwrap(owner, name)
        _state.structlog_wrapped.clear()
        structlog = sys.modules.get("structlog")
        if structlog is not None:
            _remove_structlog_processor(structlog)
