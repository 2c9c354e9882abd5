"""dbt instrumentor: invocation and node spans (DAG links), dbt's events as log records, the pipeline metrics.

Zero-code: ``opentelemetry-instrument dbt build …`` and programmatic ``dbtRunner().invoke([...])`` are both
covered, because both go through the same two dbt extension points, which are patched the moment the
application imports them (never at start-up: wrapt post-import hooks, see :mod:`._hooks`; the patches are
wrapt function wrappers, undone by ``uninstrument``):

* ``dbt.cli.main.cli.invoke`` (the click group): the CLI console script calls ``cli()`` →
  ``cli.main()`` → ``cli.invoke(ctx)``; ``dbtRunner.invoke`` calls ``cli.invoke(ctx)`` directly. The
  invocation span (``dbt <command>``) is opened and made current around it.
* ``dbt.task.runnable.GraphRunnableTask.call_runner``: dbt's runner entry point for one node, called on a
  worker thread of dbt's thread pool (or inline with ``--single-threaded``) for every executed *and*
  skipped node. The node span (``dbt.node.<resource_type> <name>``: never floe-dbt-core's ``dbt.<command>``
  invocation name) is started there with the invocation span
  as its **explicit** parent (worker threads do not inherit the context) and made current on that
  thread, so anything instrumented inside the node nests under it. Attributes come from the
  ``RunResult`` dbt returns (status, adapter response, thread, execution time, timing).

Each node span links to the spans of its upstream nodes (manifest ``depends_on``) that already ran in the
invocation. dbt's structured events reach OTel's logs pipeline through an event callback added to a copy of
``ctx.obj["callbacks"]`` (dbt's own loggers do not propagate to the root logger): one record per event at or
above the plan's log level, on the span of the node it is about. ``GraphRunnableTask._mark_dependent_errors``
is wrapped to record which failed node each skipped node was skipped for.

Results dbt reports without going through ``call_runner`` (e.g. ``on-run-start`` hook operations) get a
node span after the fact, from the ``RunResult`` timing, so every ``unique_id`` of ``run_results.json``
has a span. Every hook is wrapped defensively: a telemetry failure never changes what dbt does.
Span names, attributes and metrics are documented in ``docs/instrumentation-dbt.md``; floe's optional span
attributes are set too: ``floe.pipeline.id`` (the invocation id), ``floe.job.type`` (``dbt_<command>``) and, on
model nodes, ``floe.dbt.model``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import field
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry import _logs, trace
from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer

from floe_otel_distro._records import dataclass
from floe_otel_distro.instrumentation._hooks import ImportHooks
from floe_otel_distro.instrumentation._metrics import PipelineMetrics, pipeline_metrics
from floe_otel_distro.instrumentation.dbt_secrets import secrets as _secrets  # as dbt masks them

_log = logging.getLogger(__name__)

COMPONENT = "dbt"
CLI_MODULE = "dbt.cli.main"
RUNNABLE_MODULE = "dbt.task.runnable"

# Invocation span attributes.
DBT_COMMAND = "dbt.command"
DBT_ARGS = "dbt.args"
DBT_VERSION = "dbt.version"
DBT_ADAPTER_TYPE = "dbt.adapter.type"
DBT_TARGET = "dbt.target"
DBT_PROJECT_NAME = "dbt.project.name"
DBT_SUCCESS = "dbt.success"
DBT_INVOCATION_ID = "dbt.invocation_id"
# Node span attributes.
NODE_UNIQUE_ID = "dbt.node.unique_id"
NODE_RESOURCE_TYPE = "dbt.node.resource_type"
NODE_NAME = "dbt.node.name"
NODE_MATERIALIZATION = "dbt.node.materialization"
NODE_STATUS = "dbt.node.status"
NODE_ROWS_AFFECTED = "dbt.node.rows_affected"
NODE_ADAPTER_RESPONSE = "dbt.node.adapter_response"
NODE_THREAD = "dbt.node.thread"
NODE_EXECUTION_TIME = "dbt.node.execution_time"
NODE_SKIPPED = "dbt.node.skipped"
NODE_FAILURES = "dbt.node.failures"
NODE_MESSAGE = "dbt.node.message"
NODE_RELATION = "dbt.node.relation"  # database.schema.alias (identifier for sources)
NODE_SKIP_CAUSE = "dbt.node.skip_cause"  # unique_id of the failed upstream node a skipped node was skipped for
NODE_DEPENDS_ON = "dbt.node.depends_on"  # manifest depends_on.nodes (the span links cover those that ran)
NODE_BYTES_PROCESSED = "dbt.node.bytes_processed"
NODE_BYTES_BILLED = "dbt.node.bytes_billed"
NODE_ADAPTER_CODE = "dbt.node.adapter.code"
NODE_ADAPTER_MESSAGE = "dbt.node.adapter.message"
NODE_QUERY_ID = "dbt.node.adapter.query_id"
FRESHNESS_STATUS = "dbt.source.freshness.status"
FRESHNESS_AGE = "dbt.source.freshness.age_s"
FRESHNESS_MAX_LOADED_AT = "dbt.source.freshness.max_loaded_at"
FRESHNESS_SNAPSHOTTED_AT = "dbt.source.freshness.snapshotted_at"
# Log record attributes (dbt events).
EVENT_NAME = "dbt.event.name"
EVENT_CODE = "dbt.event.code"
# floe's optional span attributes (floe spec 001, FloeSpanAttributes)
FLOE_PIPELINE_ID = "floe.pipeline.id"  # the dbt invocation id
FLOE_JOB_TYPE = "floe.job.type"  # dbt_<command>, e.g. dbt_run, dbt_build
FLOE_DBT_MODEL = "floe.dbt.model"  # the model's name, on model nodes only
#: node spans are ``dbt.node.<resource type> <name>``: floe-dbt-core names its invocation spans ``dbt.<command>``
NODE_SPAN_PREFIX = "dbt.node."

ERROR_TEST_FAILURE = "dbt.test_failure"
ERROR_NODE_ERROR = "dbt.node_error"
ERROR_INVOCATION = "dbt.invocation_error"

_FAILED_STATUSES = {
    "fail": ERROR_TEST_FAILURE,
    "error": ERROR_NODE_ERROR,
    "runtime error": ERROR_NODE_ERROR,
    "partial success": ERROR_NODE_ERROR,
}
_RELATION_TYPES = frozenset({"model", "seed", "snapshot", "source"})
_ADAPTER_FIELDS = (
    ("bytes_processed", NODE_BYTES_PROCESSED),
    ("bytes_billed", NODE_BYTES_BILLED),
    ("code", NODE_ADAPTER_CODE),
    ("_message", NODE_ADAPTER_MESSAGE),
    ("query_id", NODE_QUERY_ID),
)
# dbt's EventLevel values -> OTel severity (number, text)
_SEVERITIES: dict[str, tuple[SeverityNumber, str]] = {
    "test": (SeverityNumber.TRACE, "TRACE"),
    "debug": (SeverityNumber.DEBUG, "DEBUG"),
    "info": (SeverityNumber.INFO, "INFO"),
    "warn": (SeverityNumber.WARN, "WARN"),
    "error": (SeverityNumber.ERROR, "ERROR"),
}
_INFO = (SeverityNumber.INFO, "INFO")
_MAX_PENDING = 1000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _record_exception(span: Span, exc: BaseException) -> None:
    """``span.record_exception`` + an ERROR status, with dbt's secret values masked in message and stack."""
    message = _secrets.scrub(str(exc))
    stack = _secrets.scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    module, name = type(exc).__module__, type(exc).__qualname__
    attributes = {
        "exception.type": f"{module}.{name}" if module and module != "builtins" else name,  # as the SDK's
        "exception.message": message,
        "exception.stacktrace": stack,
        "exception.escaped": "False",
    }
    span.add_event("exception", attributes)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))


_REDACTED = "<redacted>"
_SECRET_ARG = re.compile(r"(password|passwd|secret|token|key|credential)", re.IGNORECASE)
_VALUE_OPTIONS_TO_REDACT = {"--vars"}


# ---- installed state ---------------------------------------------------------------------------------


def min_severity(level: str | None) -> int:
    """The lowest OTel severity number exported for a log level name (``DEBUG``, ``INFO``, ``WARNING``…).

    The level is the plan's (``FLOE_LOG_LEVEL``, default ``INFO``); unknown names mean ``INFO``.
    """
    name = (level or "INFO").strip().upper()
    number = logging.getLevelName("WARNING" if name == "WARN" else name)
    if not isinstance(number, int):
        return SeverityNumber.INFO.value
    if number <= logging.DEBUG:
        return SeverityNumber.DEBUG.value
    if number <= logging.INFO:
        return SeverityNumber.INFO.value
    if number <= logging.WARNING:
        return SeverityNumber.WARN.value
    if number <= logging.ERROR:
        return SeverityNumber.ERROR.value
    return SeverityNumber.FATAL.value


def _plan_log_level() -> str | None:
    try:
        from floe_otel_distro._state import STATE

        plan = STATE.plan
        return str(plan.log_level) if plan is not None else None
    except Exception:
        return None


@dataclass
class _Installed:
    tracer: Tracer
    meter_provider: MeterProvider | None
    metrics: PipelineMetrics | None = None
    logger_provider: Any = None
    log_level: str | None = None  # instrument(log_level=…); default: the plan's FLOE_LOG_LEVEL
    logger: Any = None
    cli: Any = None  # the click group whose ``invoke`` we wrapped (on the instance)
    runnable_cls: Any = None  # GraphRunnableTask, whose ``call_runner`` we wrapped
    skip_patched: bool = False  # … and its ``_mark_dependent_errors``

    def pipeline_metrics(self) -> PipelineMetrics:
        """The instruments, resolved lazily (after the configurator installed the meter provider)."""
        if self.metrics is None:
            self.metrics = pipeline_metrics(self.meter_provider)
        return self.metrics

    def otel_logger(self) -> Any:
        """The OTel logger dbt events are emitted with (resolved on the first invocation)."""
        if self.logger is None:
            self.logger = _logs.get_logger(__name__, logger_provider=self.logger_provider)
        return self.logger


_installed: _Installed | None = None
_hooks = ImportHooks()
_active_lock = threading.Lock()
_active: list[_Invocation] = []


@dataclass
class _Invocation:
    """One running ``cli.invoke``: its span, and the node spans still open on worker threads."""

    span: Span
    parent: otel_context.Context
    started: float
    command: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    open_nodes: dict[str, Span] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    config: Any = None
    sampled: bool = True  # the invocation span is sampled (parent-based: so are its nodes)
    min_severity: int = SeverityNumber.INFO.value
    closed: bool = False
    project: str | None = None
    #: unique_id -> the node span's context: span links of later nodes, log records of dbt events
    span_contexts: dict[str, SpanContext] = field(default_factory=dict)
    node_contexts: dict[str, otel_context.Context] = field(default_factory=dict)
    #: unique_id of a node dbt will skip -> unique_id of the failed node that caused it
    skip_causes: dict[str, str] = field(default_factory=dict)
    #: records of events about a node that has no span yet (hooks: their span is made from the result)
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _NodeRun:
    invocation: _Invocation | None
    span: Span
    unique_id: str
    token: object
    started: float = 0.0
    resource_type: str = "node"
    skip_cause: str | None = None


def _current_invocation() -> _Invocation | None:
    with _active_lock:
        return _active[-1] if _active else None


# ---- small helpers -----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """An enum's value or a plain string (dbt's NodeType/RunStatus are str enums)."""
    return str(getattr(value, "value", value))


def _safe_args(args: Sequence[Any]) -> list[str]:
    """The dbt arguments with ``--vars`` values and anything secret-looking redacted."""
    out: list[str] = []
    redact_next = False
    for raw in args:
        arg = str(raw)
        if redact_next:
            out.append(_REDACTED)
            redact_next = False
            continue
        option, sep, _value = arg.partition("=")
        if option in _VALUE_OPTIONS_TO_REDACT or (option.startswith("--") and _SECRET_ARG.search(option)):
            if sep:
                out.append(f"{option}={_REDACTED}")
            else:
                out.append(option)
                redact_next = True
            continue
        out.append(_REDACTED if _SECRET_ARG.search(arg) and "=" in arg else arg)
    return out


def _ns(dt: datetime | None) -> int | None:
    """dbt timing datetimes are naive UTC; OTel wants epoch nanoseconds."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000_000)


def _node_attributes(node: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    unique_id = getattr(node, "unique_id", None)
    if unique_id:
        attributes[NODE_UNIQUE_ID] = str(unique_id)
    resource_type = getattr(node, "resource_type", None)
    if resource_type is not None:
        attributes[NODE_RESOURCE_TYPE] = _text(resource_type)
    name = getattr(node, "name", None)
    if name:
        attributes[NODE_NAME] = str(name)
    materialized = getattr(getattr(node, "config", None), "materialized", None)
    if materialized:
        attributes[NODE_MATERIALIZATION] = str(materialized)
    if name and attributes.get(NODE_RESOURCE_TYPE) == "model":
        attributes[FLOE_DBT_MODEL] = str(name)
    attributes.update(_floe_pipeline_attributes(_current_invocation()))
    return attributes


def _relation(node: Any) -> str | None:
    """``database.schema.alias`` of a model/seed/snapshot (``identifier`` for a source), unquoted."""
    if _text(getattr(node, "resource_type", "")) not in _RELATION_TYPES:
        return None
    name = getattr(node, "alias", None) or getattr(node, "identifier", None) or getattr(node, "name", None)
    parts = [getattr(node, "database", None), getattr(node, "schema", None), name]
    return ".".join(str(p) for p in parts if p) or None


def _invocation_id() -> str | None:
    try:
        from dbt_common.invocation import get_invocation_id

        return str(get_invocation_id())
    except Exception:
        return None


def _floe_pipeline_attributes(invocation: _Invocation | None) -> dict[str, Any]:
    """floe.pipeline.id (the dbt invocation id) and floe.job.type (dbt_<command>)."""
    attributes: dict[str, Any] = {}
    pipeline_id = _invocation_id()
    if pipeline_id:
        attributes[FLOE_PIPELINE_ID] = pipeline_id
    if invocation is not None:
        attributes[FLOE_JOB_TYPE] = "dbt_" + ("_".join(invocation.command.split()) or "dbt")
    return attributes


def _span_name(attributes: Mapping[str, Any]) -> str:
    resource_type = attributes.get(NODE_RESOURCE_TYPE, "node")
    name = attributes.get(NODE_NAME) or attributes.get(NODE_UNIQUE_ID, "unknown")
    return f"{NODE_SPAN_PREFIX}{resource_type} {name}"


def _config_attributes(config: Any) -> dict[str, Any]:
    """Project, target and adapter type from dbt's RuntimeConfig (never the credentials themselves)."""
    attributes: dict[str, Any] = {}
    if config is None:
        return attributes
    project_name = getattr(config, "project_name", None)
    if project_name:
        attributes[DBT_PROJECT_NAME] = str(project_name)
    target_name = getattr(config, "target_name", None)
    if target_name:
        attributes[DBT_TARGET] = str(target_name)
    adapter_type = getattr(getattr(config, "credentials", None), "type", None)
    if adapter_type:
        attributes[DBT_ADAPTER_TYPE] = str(adapter_type)
    return attributes


def _dbt_version() -> str | None:
    try:
        from dbt.__version__ import version  # dbt is already imported when this runs
    except Exception:
        return None
    return str(version) if version else None


# ---- node spans --------------------------------------------------------------------------------------


def _apply_result(span: Span, result: Any, metrics: PipelineMetrics, unique_id: str) -> str:
    """Record the node metrics for a RunResult and, if the span is sampled, describe it on the span."""
    status = _text(getattr(result, "status", "unknown"))
    error_type = _FAILED_STATUSES.get(status)
    if error_type is not None:
        metrics.record_error(COMPONENT, error_type)
    metrics.record_materialization(COMPONENT, unique_id, status)
    if span.is_recording():
        _describe_result(span, result, status, error_type)
    return status


_FRESHNESS_TIMES = (("max_loaded_at", FRESHNESS_MAX_LOADED_AT), ("snapshotted_at", FRESHNESS_SNAPSHOTTED_AT))


def _describe_response(span: Span, result: Any, status: str) -> None:
    """The adapter response (whole, as JSON, and its well-known fields) and a source's freshness."""
    adapter_response = getattr(result, "adapter_response", None)
    if isinstance(adapter_response, Mapping) and adapter_response:
        response = json.dumps(dict(adapter_response), default=str, sort_keys=True)
        span.set_attribute(NODE_ADAPTER_RESPONSE, response)
        rows = adapter_response.get("rows_affected")
        if isinstance(rows, int) and not isinstance(rows, bool):
            span.set_attribute(NODE_ROWS_AFFECTED, rows)
        for key, attribute in _ADAPTER_FIELDS:
            value = adapter_response.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
                span.set_attribute(attribute, value)
    age = getattr(result, "age", None)  # SourceFreshnessResult (dbt source freshness)
    if isinstance(age, int | float) and not isinstance(age, bool):
        span.set_attribute(FRESHNESS_AGE, float(age))
        span.set_attribute(FRESHNESS_STATUS, status)
        for name, attribute in _FRESHNESS_TIMES:
            moment = getattr(result, name, None)
            if isinstance(moment, datetime):
                span.set_attribute(attribute, moment.isoformat())


def _describe_result(span: Span, result: Any, status: str, error_type: str | None) -> None:
    """Copy a RunResult onto its node span and set the span status."""
    span.set_attribute(NODE_STATUS, status)
    thread_id = getattr(result, "thread_id", None)
    if thread_id:
        span.set_attribute(NODE_THREAD, str(thread_id))
    execution_time = getattr(result, "execution_time", None)
    if isinstance(execution_time, int | float):
        span.set_attribute(NODE_EXECUTION_TIME, float(execution_time))
    _describe_response(span, result, status)
    failures = getattr(result, "failures", None)
    if isinstance(failures, int) and not isinstance(failures, bool):
        span.set_attribute(NODE_FAILURES, failures)
    message = getattr(result, "message", None)
    for timing in getattr(result, "timing", None) or []:
        started = _ns(getattr(timing, "started_at", None))
        completed = _ns(getattr(timing, "completed_at", None))
        if started is not None:
            attrs: dict[str, Any] = {}
            if completed is not None:
                attrs["dbt.timing.duration_s"] = (completed - started) / 1e9
            span.add_event(f"dbt.{_text(getattr(timing, 'name', 'step'))}", attrs, timestamp=started)

    if status == "skipped":
        span.set_attribute(NODE_SKIPPED, True)
        if message:  # e.g. skipped because an upstream ephemeral model failed
            span.set_attribute(NODE_MESSAGE, _secrets.scrub(str(message)))
    if error_type is not None:
        description = _secrets.scrub(str(message)) if message else f"dbt node {status}"
        span.set_status(Status(StatusCode.ERROR, description))
        span.add_event(
            "exception",
            {"exception.type": error_type, "exception.message": description, "exception.escaped": False},
        )


def _node_begin(task: Any, runner: Any) -> _NodeRun | None:
    installed = _installed
    if installed is None:
        return None
    started = time.perf_counter()
    invocation = _current_invocation()
    node = getattr(runner, "node", None)
    attributes = _node_attributes(node)
    unique_id = str(attributes.get(NODE_UNIQUE_ID, ""))
    parent = invocation.parent if invocation is not None else otel_context.get_current()
    skip_cause: str | None = None
    if getattr(runner, "skip", False):
        if invocation is not None:
            skip_cause = invocation.skip_causes.get(unique_id)
        if skip_cause is None:  # dbt's own cause: an ephemeral upstream's RunResult
            cause_id = getattr(getattr(getattr(runner, "skip_cause", None), "node", None), "unique_id", None)
            skip_cause = str(cause_id) if cause_id else None
    links: list[Link] | None = None
    if invocation is None or invocation.sampled:  # unsampled: no attribute or link work at all
        relation = _relation(node)
        if relation:
            attributes[NODE_RELATION] = relation
        if skip_cause:
            attributes[NODE_SKIP_CAUSE] = skip_cause
        depends_on = getattr(getattr(node, "depends_on", None), "nodes", None)
        if depends_on:
            upstream = [str(d) for d in depends_on]
            attributes[NODE_DEPENDS_ON] = upstream
            if invocation is not None:
                known = invocation.span_contexts
                links = [Link(known[d], {NODE_UNIQUE_ID: d}) for d in upstream if d in known]
    span = installed.tracer.start_span(
        _span_name(attributes), context=parent, kind=SpanKind.INTERNAL, attributes=attributes, links=links
    )
    node_context = trace.set_span_in_context(span, parent)
    if invocation is not None:
        with invocation.lock:
            invocation.open_nodes[unique_id] = span
            invocation.span_contexts[unique_id] = span.get_span_context()
            invocation.node_contexts[unique_id] = node_context
            if invocation.config is None:
                invocation.config = getattr(task, "config", None)
                invocation.project = getattr(invocation.config, "project_name", None)
    token = otel_context.attach(node_context)
    resource_type = str(attributes.get(NODE_RESOURCE_TYPE, "node"))
    return _NodeRun(invocation, span, unique_id, token, started, resource_type, skip_cause)


def _node_end(run: _NodeRun, result: Any, exc: BaseException | None) -> None:
    installed = _installed
    try:
        otel_context.detach(run.token)  # type: ignore[arg-type]
    except Exception:
        _log.debug("detach failed", exc_info=True)
    try:
        if exc is not None:
            _record_exception(run.span, exc)
        elif result is not None and installed is not None:
            metrics = installed.pipeline_metrics()
            status = _apply_result(run.span, result, metrics, run.unique_id)
            invocation = run.invocation
            pipeline = (invocation.project or invocation.command) if invocation is not None else "dbt"
            metrics.record_node(COMPONENT, pipeline, run.resource_type, status, time.perf_counter() - run.started)
    finally:
        if run.invocation is not None:
            with run.invocation.lock:
                run.invocation.open_nodes.pop(run.unique_id, None)
                run.invocation.seen.add(run.unique_id)
        run.span.end()


def _traced_call_runner(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """wrapt wrapper of ``GraphRunnableTask.call_runner(runner)``: one node span around dbt's node run."""
    run: _NodeRun | None = None
    try:
        runner = args[0] if args else kwargs.get("runner")
        run = _node_begin(instance, runner)
    except Exception:
        _log.debug("dbt node span start failed", exc_info=True)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if run is not None:
            try:
                _node_end(run, None, exc)
            except Exception:
                _log.debug("dbt node span end failed", exc_info=True)
        raise
    if run is not None:
        try:
            _node_end(run, result, None)
        except Exception:
            _log.debug("dbt node span end failed", exc_info=True)
    return result


def _late_node_span(installed: _Installed, invocation: _Invocation, result: Any) -> None:
    """A node span, after the fact, for a result dbt produced outside ``call_runner``."""
    attributes = _node_attributes(getattr(result, "node", None))
    unique_id = str(attributes.get(NODE_UNIQUE_ID, ""))
    timings = list(getattr(result, "timing", None) or [])
    starts = [t for t in (_ns(getattr(x, "started_at", None)) for x in timings) if t is not None]
    ends = [t for t in (_ns(getattr(x, "completed_at", None)) for x in timings) if t is not None]
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    span = installed.tracer.start_span(
        _span_name(attributes),
        context=invocation.parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        start_time=start,
    )
    with invocation.lock:
        invocation.span_contexts[unique_id] = span.get_span_context()
        invocation.node_contexts[unique_id] = trace.set_span_in_context(span, invocation.parent)
    _flush_pending(installed, invocation, unique_id)
    try:
        metrics = installed.pipeline_metrics()
        status = _apply_result(span, result, metrics, unique_id)
        execution_time = getattr(result, "execution_time", None)
        if isinstance(execution_time, int | float):
            resource_type = str(attributes.get(NODE_RESOURCE_TYPE, "node"))
            pipeline = invocation.project or invocation.command
            metrics.record_node(COMPONENT, pipeline, resource_type, status, float(execution_time))
    finally:
        span.end(end_time=end if end is not None and (start is None or end >= start) else None)


def _traced_mark_dependent_errors(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``GraphRunnableTask._mark_dependent_errors(node_id, result, cause)``: remember why dependents skip.

    dbt calls it (result handler) for a failed/errored (``build``: also skipped) node before it submits the
    dependents as skipped; each dependent's cause is the *root* failed node (a skipped node passes on its own).
    """
    returned = wrapped(*args, **kwargs)
    try:
        invocation = _current_invocation()
        node_id = args[0] if args else kwargs.get("node_id")
        graph = getattr(instance, "graph", None)
        if invocation is not None and node_id and graph is not None:
            with invocation.lock:
                root = invocation.skip_causes.get(str(node_id), str(node_id))
                for dependent in graph.get_dependent_nodes(node_id):
                    invocation.skip_causes.setdefault(str(dependent), root)
    except Exception:
        _log.debug("dbt skip cause bookkeeping failed", exc_info=True)
    return returned


# ---- dbt events as log records -----------------------------------------------------------------------


def _flush_pending(installed: _Installed, invocation: _Invocation, unique_id: str | None) -> None:
    """Emit the held records of ``unique_id`` on its span now (``None``: all that are left, on the invocation)."""
    with invocation.lock:
        if unique_id is None:
            ready, invocation.pending = invocation.pending, []
        else:
            ready = [p for p in invocation.pending if p[0] == unique_id]
            if ready:
                invocation.pending = [p for p in invocation.pending if p[0] != unique_id]
        contexts = dict(invocation.node_contexts)
    logger = installed.otel_logger()
    for uid, record in ready:
        logger.emit(context=contexts.get(uid, invocation.parent), **record)


def _event_callback(installed: _Installed, invocation: _Invocation) -> Callable[[Any], None]:
    """dbt EventManager callback: each event at or above the log level becomes an OTel log record.

    Called synchronously by dbt on the thread that fires the event, for *every* event (debug ones too), so
    the common path is a dict lookup and a comparison. The record's context is the span of the node the
    event is about (``node_info.unique_id``), else the current span (on a worker thread: the running node),
    else the invocation span. Below WARN, nothing is emitted for an unsampled invocation.
    """
    logger = installed.otel_logger()
    floor = invocation.min_severity if invocation.sampled else max(invocation.min_severity, SeverityNumber.WARN.value)
    # the levels exported, decided once: the per-event test is one set lookup
    exported = {level: sev for level, sev in _SEVERITIES.items() if sev[0].value >= floor}
    node_contexts = invocation.node_contexts

    def on_event(msg: Any) -> None:
        try:
            info = msg.info
            severity = exported.get(info.level)
            if severity is None or invocation.closed:
                return
            text = info.msg
            if not text or text.isspace():
                return
            if "\x1b" in text:
                text = _ANSI.sub("", text)
            text = _secrets.scrub(text)
            attributes = {EVENT_NAME: info.name, EVENT_CODE: info.code}
            node_info = getattr(msg.data, "node_info", None)
            unique_id = node_info.unique_id if node_info is not None else ""
            log_context = node_contexts.get(unique_id) if unique_id else None
            record: dict[str, Any] = {
                "timestamp": time.time_ns(),
                "severity_number": severity[0],
                "severity_text": severity[1],
                "body": text,
                "attributes": attributes,
            }
            if unique_id:
                attributes[NODE_UNIQUE_ID] = unique_id
                if log_context is None:  # a node without a span yet: held until it gets one (bounded)
                    with invocation.lock:
                        if len(invocation.pending) < _MAX_PENDING:
                            invocation.pending.append((unique_id, record))
                            return
            if log_context is None:
                log_context = otel_context.get_current()
                if not trace.get_current_span(log_context).get_span_context().is_valid:
                    log_context = invocation.parent
            logger.emit(context=log_context, **record)
        except Exception:
            _log.debug("dbt event to log record failed", exc_info=True)

    return on_event


# ---- invocation span ---------------------------------------------------------------------------------


def _invocation_args(ctx: Any) -> list[str]:
    obj = getattr(ctx, "obj", None)
    if isinstance(obj, Mapping) and obj.get("dbt_runner_command_args") is not None:
        return [str(a) for a in obj["dbt_runner_command_args"]]
    return [str(a) for a in sys.argv[1:]]


def _command_name(group: Any, ctx: Any) -> str:
    """The (sub)command click will run: ``build``, ``run``, ``docs generate``…"""
    args = [*getattr(ctx, "_protected_args", []), *getattr(ctx, "args", [])]
    names: list[str] = []
    command = group
    for _ in range(3):
        if not args or not hasattr(command, "resolve_command"):
            break
        name, sub, args = command.resolve_command(ctx, args)
        if not name:
            break
        names.append(str(name))
        command = sub
    return " ".join(names) or "dbt"


def _begin_invocation(installed: _Installed, group: Any, ctx: Any) -> tuple[_Invocation, object]:
    try:
        command = _command_name(group, ctx)
    except Exception:
        command = "dbt"
    attributes: dict[str, Any] = {DBT_COMMAND: command, DBT_ARGS: _safe_args(_invocation_args(ctx))}
    version = _dbt_version()
    if version:
        attributes[DBT_VERSION] = version
    span = installed.tracer.start_span(f"dbt {command}", kind=SpanKind.INTERNAL, attributes=attributes)
    parent = trace.set_span_in_context(span)
    invocation = _Invocation(span=span, parent=parent, started=time.perf_counter(), command=command)
    invocation.sampled = span.get_span_context().trace_flags.sampled
    invocation.min_severity = min_severity(installed.log_level or _plan_log_level())
    # The CLI starts with ctx.obj None and dbt then keeps its runtime config on a child context only; give
    # it the same dict dbtRunner would (``callbacks``), so the config lands where we can read it.
    if getattr(ctx, "obj", None) is None:
        ctx.obj = {"callbacks": []}
    if isinstance(ctx.obj, dict):
        # dbt's preflight hands ctx.obj["callbacks"] to its EventManager: ours joins a copy of the list,
        # the user's own dbtRunner(callbacks=[…]) list is never modified.
        ctx.obj["callbacks"] = [*(ctx.obj.get("callbacks") or []), _event_callback(installed, invocation)]
    with _active_lock:
        _active.append(invocation)
    token = otel_context.attach(parent)
    return invocation, token


def _results_of(outcome: Any) -> Iterable[Any]:
    results = getattr(outcome, "results", None)
    if isinstance(results, list | tuple):
        return results
    return ()


def _outcome(returned: Any, exc: BaseException | None) -> tuple[bool, Any, BaseException | None]:
    """(success, results, error) from what ``cli.invoke`` returned or raised (ResultExit/ExceptionExit…)."""
    if exc is None:
        if isinstance(returned, tuple) and len(returned) == 2:
            return bool(returned[1]), returned[0], None
        return True, returned, None
    results = getattr(exc, "result", None)
    inner = getattr(exc, "exception", None)
    if isinstance(inner, BaseException):  # dbt's ExceptionExit
        return False, None, inner
    if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:  # click's clean exit
        return True, None, None
    if type(exc).__name__ == "ResultExit":  # the command ran and did not succeed
        return False, results, None
    return False, results, exc


def _invocation_attributes(invocation: _Invocation, ctx: Any, success: bool) -> dict[str, Any]:
    obj = getattr(ctx, "obj", None)
    config = obj.get("runtime_config") if isinstance(obj, Mapping) else None
    attributes = _config_attributes(config or invocation.config)
    if DBT_PROJECT_NAME not in attributes and isinstance(obj, Mapping):
        project_name = getattr(obj.get("project"), "project_name", None)
        if project_name:
            attributes[DBT_PROJECT_NAME] = str(project_name)
    invocation_id = _invocation_id()
    if invocation_id:
        attributes[DBT_INVOCATION_ID] = invocation_id
    attributes.update(_floe_pipeline_attributes(invocation))
    attributes[DBT_SUCCESS] = success
    return attributes


def _close_nodes(installed: _Installed, invocation: _Invocation, results: Any) -> None:
    """Spans for results dbt reported outside call_runner (hooks); end nodes left open (interrupt)."""
    for result in _results_of(results):
        unique_id = getattr(getattr(result, "node", None), "unique_id", None)
        with invocation.lock:
            known = unique_id in invocation.seen or unique_id in invocation.open_nodes
        if unique_id and not known:
            try:
                _late_node_span(installed, invocation, result)
            except Exception:
                _log.debug("late dbt node span failed", exc_info=True)
    with invocation.lock:
        left_open = list(invocation.open_nodes.values())
        invocation.open_nodes.clear()
    for node_span in left_open:
        node_span.set_status(Status(StatusCode.ERROR, "dbt invocation ended before the node finished"))
        node_span.end()


def _end_invocation(
    installed: _Installed, invocation: _Invocation, ctx: Any, returned: Any, exc: BaseException | None
) -> None:
    span = invocation.span
    invocation.closed = True
    success, results, error = _outcome(returned, exc)
    attributes = _invocation_attributes(invocation, ctx, success)
    span.set_attributes(attributes)
    _close_nodes(installed, invocation, results)
    _flush_pending(installed, invocation, None)
    metrics = installed.pipeline_metrics()
    if error is not None:
        _record_exception(span, error)
        metrics.record_error(COMPONENT, ERROR_INVOCATION)
    elif not success:
        failed = sum(1 for r in _results_of(results) if _text(getattr(r, "status", "")) in _FAILED_STATUSES)
        span.set_status(Status(StatusCode.ERROR, f"dbt {invocation.command}: {failed} node(s) failed"))
    status = "success" if success else ("error" if error is not None else "failure")
    name = str(attributes.get(DBT_PROJECT_NAME) or invocation.command)
    metrics.record_run(COMPONENT, name, status, time.perf_counter() - invocation.started)
    span.end()


def _traced_cli_invoke(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """wrapt wrapper of ``cli.invoke(ctx)`` (the dbt click group): the invocation span, current around it."""
    installed = _installed
    state: tuple[_Invocation, object] | None = None
    ctx = args[0] if args else kwargs.get("ctx")
    if installed is not None:
        try:
            state = _begin_invocation(installed, instance, ctx)
        except Exception:
            _log.debug("dbt invocation span start failed", exc_info=True)
    if state is None:
        return wrapped(*args, **kwargs)
    invocation, token = state
    returned: Any = None
    failure: BaseException | None = None
    try:
        returned = wrapped(*args, **kwargs)
        return returned
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            _end_invocation(installed, invocation, ctx, returned, failure)  # type: ignore[arg-type]
        except Exception:
            _log.debug("dbt invocation span end failed", exc_info=True)
        finally:
            with _active_lock:
                if invocation in _active:
                    _active.remove(invocation)
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception:
                _log.debug("detach failed", exc_info=True)


# ---- patching ----------------------------------------------------------------------------------------


def _patch_cli(module: ModuleType) -> None:
    installed = _installed
    group = getattr(module, "cli", None)
    if installed is None or group is None:
        return
    # On the group instance, not on click's Group class: only dbt's command group is traced.
    wrapt.wrap_function_wrapper(group, "invoke", _traced_cli_invoke)
    installed.cli = group


def _patch_runnable(module: ModuleType) -> None:
    installed = _installed
    cls = getattr(module, "GraphRunnableTask", None)
    if installed is None or cls is None or not callable(getattr(cls, "call_runner", None)):
        return
    wrapt.wrap_function_wrapper(cls, "call_runner", _traced_call_runner)
    installed.runnable_cls = cls
    if callable(getattr(cls, "_mark_dependent_errors", None)):
        wrapt.wrap_function_wrapper(cls, "_mark_dependent_errors", _traced_mark_dependent_errors)
        installed.skip_patched = True


def _unpatch(installed: _Installed) -> None:
    group = installed.cli
    if group is not None:
        unwrap(group, "invoke")
        # unwrap leaves the bound method in the instance dict: drop it, click's Group.invoke is served again
        if not isinstance(vars(group).get("invoke"), wrapt.BaseObjectProxy):
            vars(group).pop("invoke", None)
    if installed.runnable_cls is not None:
        unwrap(installed.runnable_cls, "call_runner")
        if installed.skip_patched:
            unwrap(installed.runnable_cls, "_mark_dependent_errors")


class DbtInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces dbt invocations and their nodes; records the floe pipeline metrics for dbt.

    ``instrument()`` only registers post-import hooks; dbt is patched when the application imports it.
    Accepts ``tracer_provider``, ``meter_provider``, ``logger_provider`` (tests; defaults are the global
    providers) and ``log_level`` (default: the plan's ``FLOE_LOG_LEVEL``).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("dbt-core >= 1.8",)

    def _instrument(self, **kwargs: Any) -> None:
        global _installed
        tracer = trace.get_tracer(__name__, tracer_provider=kwargs.get("tracer_provider"))
        _installed = _Installed(
            tracer=tracer,
            meter_provider=kwargs.get("meter_provider"),
            logger_provider=kwargs.get("logger_provider"),
            log_level=kwargs.get("log_level"),
        )
        _hooks.activate()
        _hooks.when_imported(CLI_MODULE, _patch_cli)
        _hooks.when_imported(RUNNABLE_MODULE, _patch_runnable)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _installed
        _hooks.deactivate()
        installed, _installed = _installed, None
        if installed is not None:
            _unpatch(installed)
