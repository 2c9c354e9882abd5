"""Dagster instrumentation: spans for runs, steps and asset materializations, plus the pipeline metrics.

Span tree (one trace per run, whatever the executor)::

    dagster.run <job>                      orchestrating process
    ├── dagster.step <step_key>            the process that executes the step (a child process under
    │   └── dagster.asset <asset key>      the multiprocess executor), parented by the run span
    └── dagster.step <skipped step>        zero-length, ``dagster.status=skipped``

Hook points (wrapt function wrappers, applied only when Dagster itself imports the module: wrapt post-import
hooks, see ``_hooks``):

- ``dagster._core.execution.api.ExecuteRunWithPlanIterable.__init__``: every run-level execution
  (``execute_job``/``dagster job execute``, ``execute_in_process``/``materialize``, ``dagster api
  execute_run``, host mode) builds this iterable with ``iterator=job_execution_iterator``; we swap in a
  traced iterator. The run span is the current context only while Dagster's own code runs (around each
  ``next()``), never while the caller consumes the events.
- ``dagster._core.execution.plan.execute_plan.dagster_event_sequence_for_step``: one step, in whichever
  process executes it. The step span (or, for a single-asset step, its asset span) is current while the
  step's compute runs, so subprocesses it launches (``dbt build``) continue the trace.
- ``dagster._core.log_manager.DagsterLogHandler._convert_record``: every Dagster event and ``context.log``
  line passes through it once (Dagster's own loggers do not propagate to the root logger, so the root
  OTel handler never sees them); each becomes an OTel log record in the current (step/asset/run) context.
- ``dagster._core.executor.multiprocess.MultiprocessExecutorChildProcessCommand``: ``__init__`` (parent)
  stores the current context (the run span) on the pickled command as a W3C carrier; ``execute`` (child)
  attaches it, so the child's step spans join the run's trace even when no generic process-context
  propagation is installed, then flushes the child's providers before the process exits.

Only the OpenTelemetry API is used. Every hook is defensive: a telemetry failure is logged at debug level
and never changes what Dagster does or yields. ``_uninstrument`` restores every original.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import field
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import _logs, context, metrics, propagate, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from floe_otel_distro._records import dataclass
from floe_otel_distro.instrumentation._hooks import ImportHooks
from floe_otel_distro.instrumentation._metrics import PipelineMetrics, pipeline_metrics

_log = logging.getLogger(__name__)

COMPONENT = "dagster"

# span attributes
RUN_ID = "dagster.run_id"
JOB_NAME = "dagster.job.name"
STEP_KEY = "dagster.step.key"
OP_NAME = "dagster.op.name"
ASSET_KEY = "dagster.asset.key"
ASSET_KEYS = "dagster.asset.keys"
PARTITION = "dagster.partition"
STATUS = "dagster.status"
# floe's optional span attributes (floe spec 001, FloeSpanAttributes)
FLOE_PIPELINE_ID = "floe.pipeline.id"  # the Dagster run id
FLOE_JOB_TYPE = "floe.job.type"  # dagster_run | dagster_step | dagster_asset
FLOE_DAGSTER_ASSET = "floe.dagster.asset"  # the asset key, on asset spans
# log record attributes
EVENT_TYPE = "dagster.event_type"

# dagster.status / floe.pipeline.status / floe.materialization.status values
SUCCESS = "success"
FAILURE = "failure"
CANCELED = "canceled"
SKIPPED = "skipped"
UP_FOR_RETRY = "up_for_retry"

PARTITION_TAG = "dagster/partition"
CARRIER_ATTRIBUTE = "_floe_otel_carrier"
_ORIGINAL = "__floe_otel_original__"
_FLUSH_TIMEOUT_MILLIS = 5000
_FLUSH_TIMEOUT_S = 5.0

_API = "dagster._core.execution.api"
_EXECUTE_PLAN = "dagster._core.execution.plan.execute_plan"
_MULTIPROCESS = "dagster._core.executor.multiprocess"
_LOG_MANAGER = "dagster._core.log_manager"


@dataclass
class _State:
    """What ``instrument()`` was given; read by every hook at call time."""

    tracer: trace.Tracer
    metrics: PipelineMetrics
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    logger: Any = None  # built on the first record: a process that never logs through Dagster never builds the logs SDK
    min_severity: int = SeverityNumber.INFO.value
    wrapped: list[tuple[Any, str]] = field(default_factory=list)  # (owner, attribute), for unwrap

    def otel_logger(self) -> Any:
        if self.logger is None:
            self.logger = _logs.get_logger(__name__, logger_provider=self.logger_provider)
        return self.logger


_state: _State | None = None
_hooks = ImportHooks()
_patch_lock = threading.RLock()

#: a wrapt wrapper: ``(wrapped, instance, args, kwargs)``
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def _plan_log_level() -> str | None:
    try:
        from floe_otel_distro._state import STATE

        return str(STATE.plan.log_level) if STATE.plan is not None else None
    except Exception:
        return None


class DagsterInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces Dagster runs, steps and asset materializations; records the floe pipeline metrics; exports
    Dagster's events and ``context.log`` lines as log records on those spans.

    Accepts ``tracer_provider``, ``meter_provider``, ``logger_provider`` (tests; defaults: the global
    providers) and ``log_level`` (default: the plan's ``FLOE_LOG_LEVEL``).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("dagster >= 1.8",)

    def _instrument(self, **kwargs: Any) -> None:
        global _state
        from floe_otel_distro.instrumentation.dbt import min_severity  # here: floe_dbt may be turned off

        tracer_provider = kwargs.get("tracer_provider")
        meter_provider = kwargs.get("meter_provider")
        logger_provider = kwargs.get("logger_provider")
        _state = _State(
            tracer=trace.get_tracer(__name__, tracer_provider=tracer_provider),
            metrics=pipeline_metrics(meter_provider),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            min_severity=min_severity(kwargs.get("log_level") or _plan_log_level()),
        )
        _hooks.activate()
        _hooks.when_imported(_API, _patch_api)
        _hooks.when_imported(_LOG_MANAGER, _patch_log_manager)
        _hooks.when_imported(_EXECUTE_PLAN, _patch_execute_plan)
        _hooks.when_imported(_MULTIPROCESS, _patch_multiprocess)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _state
        _hooks.deactivate()
        state = _state
        _state = None
        if state is None:
            return
        with _patch_lock:
            for owner, attribute in reversed(state.wrapped):
                unwrap(owner, attribute)
            state.wrapped.clear()


# ---- patching helpers -----------------------------------------------------------------------------


def _patch(owner: Any, attribute: str, wrapper: Wrapper) -> None:
    """Wrap ``owner.attribute`` with the wrapt ``wrapper``; remember it for ``_uninstrument``."""
    state = _state
    if state is None:
        return
    with _patch_lock:
        if getattr(owner, attribute, None) is None:
            return
        wrapt.wrap_function_wrapper(owner, attribute, wrapper)
        state.wrapped.append((owner, attribute))


def _safely(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run telemetry code; a failure is logged at debug level and never reaches Dagster."""
    try:
        return fn(*args)
    except Exception:
        _log.debug("floe-otel dagster: %s failed", what, exc_info=True)
        return None


def _patch_api(module: ModuleType) -> None:
    iterable = getattr(module, "ExecuteRunWithPlanIterable", None)
    if iterable is not None:
        _patch(iterable, "__init__", _traced_run_iterable_init)


def _patch_execute_plan(module: ModuleType) -> None:
    _patch(module, "dagster_event_sequence_for_step", _traced_step_sequence)


def _patch_log_manager(module: ModuleType) -> None:
    handler = getattr(module, "DagsterLogHandler", None)
    if handler is not None:
        _patch(handler, "_convert_record", _traced_convert_record)


def _patch_multiprocess(module: ModuleType) -> None:
    command = getattr(module, "MultiprocessExecutorChildProcessCommand", None)
    if command is not None:
        _patch(command, "__init__", _traced_command_init)
        _patch(command, "execute", _traced_command_execute)


# ---- driving Dagster's generators under a context ---------------------------------------------------


class _Tracker:
    """Observes one Dagster event stream; ``ctx`` is attached while Dagster's code runs."""

    ctx: context.Context | None = None

    def on_event(self, event: Any) -> None:
        raise NotImplementedError

    def on_exception(self, exc: BaseException) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


def _drive(inner: Iterator[Any], tracker: _Tracker | None) -> Iterator[Any]:
    """Yield what ``inner`` yields, with ``tracker.ctx`` current only while ``inner`` runs."""
    if tracker is None:
        yield from inner
        return
    try:
        while True:
            token = context.attach(tracker.ctx) if tracker.ctx is not None else None
            try:
                item = next(inner)
            except StopIteration:
                return
            except BaseException as exc:
                _safely("recording an exception", tracker.on_exception, exc)
                raise
            finally:
                if token is not None:
                    context.detach(token)
            _safely("handling an event", tracker.on_event, item)
            yield item
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            token = context.attach(tracker.ctx) if tracker.ctx is not None else None
            try:
                close()
            finally:
                if token is not None:
                    context.detach(token)
        _safely("ending spans", tracker.finish)


def _event_type(event: Any) -> str:
    """``DagsterEventType`` member name: ``RUN_SUCCESS`` (whose value is the legacy ``PIPELINE_SUCCESS``)."""
    name = getattr(getattr(event, "event_type", None), "name", None)
    return name if isinstance(name, str) else ""


def _error_info_text(error: Any) -> tuple[str, str]:
    """(class name, message) of a SerializableErrorInfo, preferring the user's cause."""
    if error is None:
        return ("", "")
    cause = getattr(error, "cause", None)
    chosen = cause if cause is not None and getattr(error, "cls_name", "") in _WRAPPER_ERRORS else error
    return (str(getattr(chosen, "cls_name", "") or ""), str(getattr(chosen, "message", "") or "").strip())


_WRAPPER_ERRORS = frozenset({"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"})


def _record_error_info(span: Span, error: Any) -> None:
    """Record a SerializableErrorInfo (no live exception object) as an OTel exception event."""
    cls_name, message = _error_info_text(error)
    stack = "".join(getattr(error, "stack", None) or [])
    span.add_event(
        "exception",
        {"exception.type": cls_name or "Error", "exception.message": message, "exception.stacktrace": stack},
    )


def _asset_key_text(asset_key: Any) -> str:
    to_user_string = getattr(asset_key, "to_user_string", None)
    return str(to_user_string()) if callable(to_user_string) else str(asset_key)


# ---- run ---------------------------------------------------------------------------------------------


def _traced_run_iterable_init(
    wrapped: Callable[..., None], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """``ExecuteRunWithPlanIterable.__init__(execution_plan, iterator, …)``: swap in the traced iterator."""
    if "iterator" in kwargs:
        kwargs["iterator"] = _traced_run_iterator(kwargs["iterator"])
    elif len(args) >= 2:
        args = (args[0], _traced_run_iterator(args[1]), *args[2:])
    wrapped(*args, **kwargs)


def _traced_run_iterator(iterator: Any) -> Any:
    """Wrap Dagster's ``job_execution_iterator`` (run level); leave plan-level iterators alone."""
    if getattr(iterator, "__name__", None) != "job_execution_iterator" or hasattr(iterator, _ORIGINAL):
        return iterator

    def job_execution_iterator(*args: Any, **kwargs: Any) -> Iterator[Any]:
        inner = iterator(*args, **kwargs)
        job_context = kwargs.get("job_context", args[0] if args else None)
        state = _state
        tracker = _safely("starting the run span", _RunTracker, state, job_context) if state else None
        yield from _drive(inner, tracker)

    setattr(job_execution_iterator, _ORIGINAL, iterator)
    return job_execution_iterator


class _RunTracker(_Tracker):
    def __init__(self, state: _State, job_context: Any) -> None:
        self.state = state
        self.job_name = str(job_context.job_name)
        self.run_id = str(job_context.run_id)
        attributes: dict[str, str] = {
            RUN_ID: self.run_id,
            JOB_NAME: self.job_name,
            FLOE_PIPELINE_ID: self.run_id,
            FLOE_JOB_TYPE: "dagster_run",
        }
        tags = getattr(getattr(job_context, "dagster_run", None), "tags", None) or {}
        if tags.get(PARTITION_TAG):
            attributes[PARTITION] = str(tags[PARTITION_TAG])
        self.started = time.monotonic()
        self.span = state.tracer.start_span(
            f"dagster.run {self.job_name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        self.ctx = trace.set_span_in_context(self.span, context.get_current())
        _run_contexts[self.run_id] = self.ctx
        self.status: str | None = None
        self.exception_recorded = False

    def on_event(self, event: Any) -> None:
        event_type = _event_type(event)
        if event_type == "RUN_SUCCESS":
            self.status = SUCCESS
        elif event_type == "RUN_FAILURE":
            self.status = FAILURE
            data = getattr(event, "event_specific_data", None)
            error = getattr(data, "error", None)
            # A step failure is already recorded on its step span; record only run-level errors here.
            if error is not None and getattr(getattr(data, "failure_reason", None), "name", "") != "STEP_FAILURE":
                _record_error_info(self.span, error)
                self.exception_recorded = True
            self.span.set_status(Status(StatusCode.ERROR, str(getattr(event, "message", "") or "run failed")))
        elif event_type == "RUN_CANCELED":
            self.status = CANCELED
            self.span.set_status(Status(StatusCode.ERROR, "run canceled"))
        elif event_type == "STEP_SKIPPED":
            self._skipped_step(event)

    def _skipped_step(self, event: Any) -> None:
        step_key = str(event.step_key)
        attributes = {
            RUN_ID: self.run_id,
            JOB_NAME: self.job_name,
            FLOE_PIPELINE_ID: self.run_id,
            FLOE_JOB_TYPE: "dagster_step",
            STEP_KEY: step_key,
            STATUS: SKIPPED,
        }
        node_handle = getattr(event, "node_handle", None)
        if node_handle is not None:
            attributes[OP_NAME] = str(getattr(node_handle, "name", node_handle))
        span = self.state.tracer.start_span(f"dagster.step {step_key}", context=self.ctx, attributes=attributes)
        span.end()

    def on_exception(self, exc: BaseException) -> None:
        if self.status is None:
            self.status = CANCELED if type(exc).__name__ in _INTERRUPTS else FAILURE
        if not self.exception_recorded:
            self.span.record_exception(exc)
            self.exception_recorded = True
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def finish(self) -> None:
        status = self.status or CANCELED
        if self.status is None:
            self.span.set_status(Status(StatusCode.ERROR, "run ended without a result"))
        self.span.set_attribute(STATUS, status)
        self.span.end()
        _run_contexts.pop(self.run_id, None)
        self.state.metrics.record_run(COMPONENT, self.job_name, status, time.monotonic() - self.started)


_INTERRUPTS = frozenset({"KeyboardInterrupt", "DagsterExecutionInterruptedError", "GeneratorExit"})


# ---- step and assets ---------------------------------------------------------------------------------


def _traced_step_sequence(
    wrapped: Callable[..., Iterator[Any]], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[Any]:
    """``dagster_event_sequence_for_step(step_context, …)``: the step's events, under its span."""
    inner = wrapped(*args, **kwargs)
    step_context = args[0] if args else kwargs.get("step_context")
    state = _state
    tracker = _safely("starting the step span", _StepTracker, state, step_context) if state else None
    yield from _drive(inner, tracker)


class _StepTracker(_Tracker):
    def __init__(self, state: _State, step_context: Any) -> None:
        self.state = state
        self.step_context = step_context
        self.step_key = str(step_context.step.key)
        run_id = str(step_context.run_id)
        self.base: dict[str, str] = {RUN_ID: run_id, JOB_NAME: str(step_context.job_name), FLOE_PIPELINE_ID: run_id}
        self.partition: str | None = None
        try:
            if step_context.has_partition_key:
                self.partition = str(step_context.partition_key)
        except Exception:
            self.partition = None
        attributes = {**self.base, FLOE_JOB_TYPE: "dagster_step", STEP_KEY: self.step_key}
        try:
            attributes[OP_NAME] = str(step_context.op_def.name)
        except Exception:
            _log.debug("floe-otel dagster: no op name for %s", self.step_key, exc_info=True)
        if self.partition:
            attributes[PARTITION] = self.partition
        self.start_ns = time.time_ns()
        self.span = state.tracer.start_span(
            f"dagster.step {self.step_key}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=self.start_ns,
        )
        self.step_ctx = trace.set_span_in_context(self.span, context.get_current())
        self.ctx = self.step_ctx
        try:
            self.expected = sorted(_asset_key_text(k) for k in step_context.get_output_asset_keys())
        except Exception:
            self.expected = []
        self.open_assets: dict[str, Span] = {}
        self.group: Span | None = None
        self.asset_parent_ctx = self.step_ctx
        if len(self.expected) > 1:
            # A multi-asset step (e.g. dagster-dbt's @dbt_assets): one `dagster.assets <op>` span covers the
            # compute, so what it runs (the `dbt build` subprocess) sits under an asset-level span; each
            # materialization gets its own `dagster.asset <key>` span under it.
            group_attributes: dict[str, Any] = {**attributes, ASSET_KEYS: list(self.expected)}
            self.group = state.tracer.start_span(
                f"dagster.assets {attributes.get(OP_NAME, self.step_key)}",
                context=self.step_ctx,
                kind=SpanKind.INTERNAL,
                attributes=group_attributes,
                start_time=self.start_ns,
            )
            self.asset_parent_ctx = trace.set_span_in_context(self.group, self.step_ctx)
            self.ctx = self.asset_parent_ctx
        elif len(self.expected) == 1:
            # A single-asset step: the asset span is current during the compute, so whatever the asset
            # runs (a dbt subprocess, a query) is its child.
            key = self.expected[0]
            self.open_assets[key] = self._asset_span(key, self.start_ns)
            self.ctx = trace.set_span_in_context(self.open_assets[key], self.step_ctx)
        self.materialized: set[str] = set()
        self.status: str | None = None
        self.error_type: str | None = None
        self.exception_recorded = False

    def _asset_span(self, key: str, start_ns: int) -> Span:
        attributes = {
            **self.base,
            FLOE_JOB_TYPE: "dagster_asset",
            STEP_KEY: self.step_key,
            ASSET_KEY: key,
            FLOE_DAGSTER_ASSET: key,
        }
        if self.partition:
            attributes[PARTITION] = self.partition
        return self.state.tracer.start_span(
            f"dagster.asset {key}",
            context=self.asset_parent_ctx,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=start_ns,
        )

    def on_event(self, event: Any) -> None:
        event_type = _event_type(event)
        if event_type == "ASSET_MATERIALIZATION":
            self._materialized(event)
        elif event_type == "STEP_SUCCESS":
            self.status = SUCCESS
        elif event_type == "STEP_FAILURE":
            self.status = FAILURE
            self._failed(getattr(getattr(event, "event_specific_data", None), "error", None))
            self.state.metrics.record_error(COMPONENT, self.error_type or "Error")
        elif event_type == "STEP_UP_FOR_RETRY":
            self.status = UP_FOR_RETRY
            self._failed(getattr(getattr(event, "event_specific_data", None), "error", None))

    def _materialized(self, event: Any) -> None:
        key = _asset_key_text(event.asset_key)
        span = self.open_assets.pop(key, None)
        if span is None:
            span = self._asset_span(key, self.start_ns)
        elif self.group is None:
            self.ctx = self.step_ctx
        partition = event.partition
        if partition:
            span.set_attribute(PARTITION, str(partition))
        span.set_attribute(STATUS, SUCCESS)
        span.end()
        self.materialized.add(key)
        self.state.metrics.record_materialization(COMPONENT, key, SUCCESS)

    def _failed(self, error: Any) -> None:
        exc = getattr(self.step_context, "step_exception", None)
        cls_name, message = _error_info_text(error)
        if isinstance(exc, BaseException):
            self.error_type = type(exc).__qualname__
            description = f"{type(exc).__name__}: {exc}"
            if not self.exception_recorded:
                self.span.record_exception(exc)
        else:
            self.error_type = cls_name or "Error"
            description = f"{cls_name}: {message}" if cls_name else message or "step failed"
            if error is not None and not self.exception_recorded:
                _record_error_info(self.span, error)
        self.exception_recorded = True
        self.span.set_status(Status(StatusCode.ERROR, description))

    def on_exception(self, exc: BaseException) -> None:
        if self.status is None:
            self.status = FAILURE
            self.error_type = type(exc).__qualname__
            self.state.metrics.record_error(COMPONENT, self.error_type)
        if not self.exception_recorded:
            self.span.record_exception(exc)
            self.exception_recorded = True
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def finish(self) -> None:
        status = self.status or FAILURE
        # Expected assets that never materialized share the step's outcome.
        for key in self.expected:
            if key in self.materialized:
                continue
            span = self.open_assets.pop(key, None) or self._asset_span(key, self.start_ns)
            span.set_attribute(STATUS, status if status != SUCCESS else SKIPPED)
            if status in (FAILURE, UP_FOR_RETRY):
                span.set_status(Status(StatusCode.ERROR, f"step {self.step_key} did not succeed"))
            span.end()
            if status == FAILURE:
                self.state.metrics.record_materialization(COMPONENT, key, FAILURE)
        if self.group is not None:
            self.group.set_attribute(STATUS, status)
            if status in (FAILURE, UP_FOR_RETRY):
                self.group.set_status(Status(StatusCode.ERROR, f"step {self.step_key} did not succeed"))
            self.group.end()
        self.span.set_attribute(STATUS, status)
        self.span.end()
        seconds = (time.time_ns() - self.start_ns) / 1e9
        self.state.metrics.record_node(COMPONENT, self.base[JOB_NAME], "step", status, seconds)


# ---- Dagster's log lines as OTel log records -------------------------------------------------------

#: run id -> the run span's context, while the run is traced in this process (records logged outside it)
_run_contexts: dict[str, context.Context] = {}


def _severity(levelno: int) -> tuple[SeverityNumber, str]:
    if levelno <= logging.DEBUG:
        return SeverityNumber.DEBUG, "DEBUG"
    if levelno <= logging.INFO:
        return SeverityNumber.INFO, "INFO"
    if levelno <= logging.WARNING:
        return SeverityNumber.WARN, "WARN"
    if levelno <= logging.ERROR:
        return SeverityNumber.ERROR, "ERROR"
    return SeverityNumber.FATAL, "FATAL"


def _traced_convert_record(
    wrapped: Callable[..., logging.LogRecord], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> logging.LogRecord:
    """``DagsterLogHandler._convert_record(record)``: once per Dagster event / ``context.log`` line."""
    record = wrapped(*args, **kwargs)
    state = _state
    if state is not None and isinstance(record, logging.LogRecord):
        _safely("exporting a Dagster log record", _emit_record, state, record)
    return record


#: Dagster logs these events at DEBUG (its console is verbose); they are the run's facts, exported as INFO
LIFECYCLE_EVENTS = frozenset(
    {
        "RUN_START",
        "RUN_SUCCESS",
        "RUN_FAILURE",
        "RUN_CANCELED",
        "STEP_START",
        "STEP_SUCCESS",
        "STEP_FAILURE",
        "STEP_SKIPPED",
        "STEP_UP_FOR_RETRY",
        "STEP_RESTARTED",
        "ASSET_MATERIALIZATION",
        "ASSET_OBSERVATION",
        "ASSET_CHECK_EVALUATION",
    }
)


def _emit_record(state: _State, record: logging.LogRecord) -> None:
    """One OTel log record in the current (step / asset / run) context; below WARN only if sampled."""
    meta = getattr(record, "dagster_meta", None) or {}
    event = meta.get("dagster_event")
    event_type = _event_type(event) if event is not None else ""
    levelno = record.levelno
    if event_type in LIFECYCLE_EVENTS and levelno < logging.INFO:
        levelno = logging.INFO
    number, text = _severity(levelno)
    if number.value < state.min_severity:
        return
    log_context = context.get_current()
    span_context = trace.get_current_span(log_context).get_span_context()
    run_id = meta.get("run_id")
    if not span_context.is_valid and run_id and run_id in _run_contexts:
        log_context = _run_contexts[run_id]
        span_context = trace.get_current_span(log_context).get_span_context()
    if number.value < SeverityNumber.WARN.value and span_context.is_valid and not span_context.trace_flags.sampled:
        return
    attributes: dict[str, str] = {}
    for key, attribute in (("run_id", RUN_ID), ("job_name", JOB_NAME), ("step_key", STEP_KEY)):
        value = meta.get(key)
        if value:
            attributes[attribute] = str(value)
    if event_type:
        attributes[EVENT_TYPE] = event_type
    exc_info = record.exc_info
    state.otel_logger().emit(
        timestamp=int(record.created * 1e9),
        context=log_context,
        severity_number=number,
        severity_text=text,
        body=record.getMessage(),
        attributes=attributes,
        exception=exc_info[1] if exc_info and isinstance(exc_info[1], BaseException) else None,
    )


# ---- multiprocess executor: carry the context on the pickled command ---------------------------------


def _traced_command_init(
    wrapped: Callable[..., None], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """``MultiprocessExecutorChildProcessCommand.__init__`` (parent): keep the current context on the command."""
    wrapped(*args, **kwargs)
    carrier: dict[str, str] = {}
    _safely("injecting the run context", propagate.inject, carrier)
    if carrier:
        setattr(instance, CARRIER_ATTRIBUTE, carrier)


class _CarrierTracker(_Tracker):
    """Attaches the parent's context in the step's child process; creates no span of its own."""

    def __init__(self, carrier: dict[str, str]) -> None:
        self.ctx = propagate.extract(carrier, context=context.get_current())

    def on_event(self, event: Any) -> None:
        return None

    def on_exception(self, exc: BaseException) -> None:
        return None

    def finish(self) -> None:
        _flush()


def _traced_command_execute(
    wrapped: Callable[..., Iterator[Any]], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[Any]:
    """``MultiprocessExecutorChildProcessCommand.execute()`` (child): run under the carried context."""
    inner = wrapped(*args, **kwargs)
    carrier = getattr(instance, CARRIER_ATTRIBUTE, None)
    tracker = None
    if _state is not None:
        tracker = _safely("extracting the run context", _CarrierTracker, dict(carrier or {}))
    yield from _drive(inner, tracker)


def _flush() -> None:
    """Export what this step's child process recorded before multiprocessing ends it (bounded).

    Runs on a daemon helper thread joined for at most ``_FLUSH_TIMEOUT_S``: an exporter that hangs
    (a dead endpoint, a lock inherited across ``fork``) must never hold up the step's result.
    """
    state = _state
    providers = (
        (state.tracer_provider if state else None) or trace.get_tracer_provider(),
        (state.meter_provider if state else None) or metrics.get_meter_provider(),
        (state.logger_provider if state else None) or _logs.get_logger_provider(),
    )

    def flush_all() -> None:
        for provider in providers:
            force_flush = getattr(provider, "force_flush", None)
            if callable(force_flush):
                _safely("flushing", force_flush, _FLUSH_TIMEOUT_MILLIS)

    helper = threading.Thread(target=flush_all, name="floe-otel-dagster-flush", daemon=True)
    helper.start()
    helper.join(_FLUSH_TIMEOUT_S)
