"""Unit tests for the Dagster instrumentor: real in-process Dagster runs, in-memory SDK providers."""

from __future__ import annotations

import functools
import importlib.util
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dagster import asset, materialize
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from floe_otel_distro.instrumentation import dagster as floe_dagster
from floe_otel_distro.instrumentation.dagster import DagsterInstrumentor

APP = Path(__file__).resolve().parents[1] / "projects" / "dagster_app" / "definitions.py"


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("floe_test_dagster_app", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = _load_app()


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.log_exporter = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))

    def logs(self) -> list[Any]:
        return [r.log_record for r in self.log_exporter.get_finished_logs()]

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        for p in m.data.data_points:
                            out.append((dict(p.attributes or {}), p))
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    instrumentor = DagsterInstrumentor()
    instrumentor.instrument(
        tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, logger_provider=t.logger_provider
    )
    try:
        yield t
    finally:
        instrumentor.uninstrument()


def _job(name: str) -> Any:
    return app.defs.resolve_job_def(name)


def test_dependencies_declared() -> None:
    assert DagsterInstrumentor().instrumentation_dependencies() == ("dagster >= 1.8",)


def test_run_step_and_asset_spans(telemetry: Telemetry) -> None:
    result = _job("assets_job").execute_in_process()
    assert result.success

    run = telemetry.span("dagster.run assets_job")
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["dagster.run_id"] == result.run_id
    assert run.attributes["dagster.job.name"] == "assets_job"
    assert run.attributes["dagster.status"] == "success"
    assert (run.attributes["floe.pipeline.id"], run.attributes["floe.job.type"]) == (result.run_id, "dagster_run")
    assert run.status.status_code is StatusCode.UNSET

    trace_ids = {s.context.trace_id for s in telemetry.spans()}
    assert trace_ids == {run.context.trace_id}

    steps = {
        s.attributes["dagster.step.key"]: s for s in telemetry.spans() if s.name.startswith("dagster.step ")
    }
    assert set(steps) == {"raw_orders", "order_stats", "order_report"}
    for key, step in steps.items():
        assert step.name == f"dagster.step {key}"
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert step.attributes["dagster.op.name"] == key
        assert step.attributes["dagster.run_id"] == result.run_id
        assert step.attributes["dagster.status"] == "success"
        assert step.attributes["floe.pipeline.id"] == result.run_id
        assert step.attributes["floe.job.type"] == "dagster_step"
        assert "floe.dagster.asset" not in step.attributes

    assets = {
        s.attributes["dagster.asset.key"]: s for s in telemetry.spans() if s.name.startswith("dagster.asset ")
    }
    assert set(assets) == {"raw_orders", "order_count", "order_total", "order_report"}
    expected_step = {
        "raw_orders": "raw_orders",
        "order_count": "order_stats",
        "order_total": "order_stats",
        "order_report": "order_report",
    }
    group = telemetry.span("dagster.assets order_stats")  # order_stats is a multi-asset step
    assert group.parent is not None and group.parent.span_id == steps["order_stats"].context.span_id
    for key, span in assets.items():
        step = steps[expected_step[key]]
        parent = group if expected_step[key] == "order_stats" else step
        assert span.name == f"dagster.asset {key}"
        assert span.attributes is not None
        assert (span.attributes["floe.dagster.asset"], span.attributes["floe.job.type"]) == (key, "dagster_asset")
        assert span.attributes["floe.pipeline.id"] == result.run_id
        assert span.parent is not None and span.parent.span_id == parent.context.span_id
        assert span.attributes["dagster.status"] == "success"
        assert span.attributes["dagster.job.name"] == "assets_job"
        assert "dagster.partition" not in span.attributes
        assert step.start_time <= span.start_time and span.end_time <= step.end_time

    runs = telemetry.points("floe.pipeline.run.duration")
    assert [(attrs, p.count) for attrs, p in runs] == [
        (
            {
                "floe.pipeline.component": "dagster",
                "floe.pipeline.name": "assets_job",
                "floe.pipeline.status": "success",
            },
            1,
        )
    ]
    mats = {
        a["floe.asset.key"]: (a["floe.materialization.status"], p.value)
        for a, p in telemetry.points("floe.pipeline.materializations")
    }
    assert mats == {k: ("success", 1) for k in assets}
    assert telemetry.points("floe.pipeline.errors") == []


def test_asset_span_is_current_during_compute() -> None:
    seen: dict[str, int] = {}

    @asset
    def probe() -> None:
        seen["span_id"] = trace.get_current_span().get_span_context().span_id

    t = Telemetry()
    instrumentor = DagsterInstrumentor()
    instrumentor.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    try:
        assert materialize([probe]).success
    finally:
        instrumentor.uninstrument()
    assert seen["span_id"] == t.span("dagster.asset probe").context.span_id
    # nothing stays attached in the caller once the run is over
    assert not trace.get_current_span().get_span_context().is_valid


def test_multi_asset_step_group_span_is_current_during_compute(telemetry: Telemetry) -> None:
    """A multi-asset step: `dagster.assets <op>` (all keys) is current during compute; each asset under it."""
    seen: list[int] = []
    from dagster import AssetOut, Output, multi_asset

    @multi_asset(outs={"left": AssetOut(), "right": AssetOut()})
    def pair():  # type: ignore[no-untyped-def]
        seen.append(trace.get_current_span().get_span_context().span_id)
        yield Output(1, output_name="left")
        yield Output(2, output_name="right")

    assert materialize([pair]).success
    step = telemetry.span("dagster.step pair")
    group = telemetry.span("dagster.assets pair")
    assert group.parent is not None and group.parent.span_id == step.context.span_id
    assert group.attributes is not None and list(group.attributes["dagster.asset.keys"]) == ["left", "right"]
    assert group.attributes["dagster.status"] == "success"
    assert seen == [group.context.span_id]
    for key in ("left", "right"):
        span = telemetry.span(f"dagster.asset {key}")
        assert span.parent is not None and span.parent.span_id == group.context.span_id


def test_failing_step_records_error(telemetry: Telemetry) -> None:
    result = _job("failing_job").execute_in_process(raise_on_error=False)
    assert not result.success

    run = telemetry.span("dagster.run failing_job")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None and run.attributes["dagster.status"] == "failure"
    assert "broken_asset" in (run.status.description or "")

    step = telemetry.span("dagster.step broken_asset")
    assert step.parent is not None and step.parent.span_id == run.context.span_id
    assert step.status.status_code is StatusCode.ERROR
    assert "broken_asset exploded on purpose" in (step.status.description or "")
    assert step.attributes is not None and step.attributes["dagster.status"] == "failure"
    exceptions = [e for e in step.events if e.name == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0].attributes is not None
    assert exceptions[0].attributes["exception.type"] == "ValueError"
    assert "exploded on purpose" in str(exceptions[0].attributes["exception.message"])

    broken = telemetry.span("dagster.asset broken_asset")
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.attributes is not None and broken.attributes["dagster.status"] == "failure"
    # the downstream step never started: no span for it
    assert not [s for s in telemetry.spans() if "after_broken" in s.name]

    errors = [(a, p.value) for a, p in telemetry.points("floe.pipeline.errors")]
    assert errors == [({"floe.pipeline.component": "dagster", "error.type": "ValueError"}, 1)]
    mats = [
        (a["floe.asset.key"], a["floe.materialization.status"])
        for a, _ in telemetry.points("floe.pipeline.materializations")
    ]
    assert mats == [("broken_asset", "failure")]
    runs = [a["floe.pipeline.status"] for a, _ in telemetry.points("floe.pipeline.run.duration")]
    assert runs == ["failure"]


def test_raise_on_error_is_untouched(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="exploded on purpose"):
        _job("failing_job").execute_in_process()
    assert telemetry.span("dagster.step broken_asset").status.status_code is StatusCode.ERROR
    run = telemetry.span("dagster.run failing_job")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None and run.attributes["dagster.status"] == "failure"
    assert not trace.get_current_span().get_span_context().is_valid


def test_skipped_step_gets_a_span(telemetry: Telemetry) -> None:
    assert _job("conditional_job").execute_in_process().success
    run = telemetry.span("dagster.run conditional_job")
    skipped = telemetry.span("dagster.step after_optional")
    assert skipped.parent is not None and skipped.parent.span_id == run.context.span_id
    assert skipped.attributes is not None and skipped.attributes["dagster.status"] == "skipped"
    optional = telemetry.span("dagster.asset optional_asset")
    assert optional.attributes is not None and optional.attributes["dagster.status"] == "skipped"
    assert [a["floe.asset.key"] for a, _ in telemetry.points("floe.pipeline.materializations")] == []


def test_partition_attributes(telemetry: Telemetry) -> None:
    result = _job("regional_job").execute_in_process(partition_key="eu")
    assert result.success
    for name in ("dagster.run regional_job", "dagster.step regional_sales", "dagster.asset regional_sales"):
        span = telemetry.span(name)
        assert span.attributes is not None and span.attributes["dagster.partition"] == "eu", name


def test_run_inherits_the_callers_context(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        assert _job("assets_job").execute_in_process().success
    run = telemetry.span("dagster.run assets_job")
    assert run.parent is not None and run.parent.span_id == caller.get_span_context().span_id


def test_multiprocess_command_carries_the_run_context(telemetry: Telemetry) -> None:
    """Parent: the pickled step command carries the current context; child: execute() runs under it."""
    from dagster._core.executor.multiprocess import MultiprocessExecutorChildProcessCommand

    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("run") as run_span:
        command = MultiprocessExecutorChildProcessCommand(
            run_config={},
            dagster_run=None,
            step_key="s",
            instance_ref=None,
            term_event=None,
            recon_pipeline=None,
            retry_mode=None,
            known_state=None,
            repository_load_data=None,
        )
    carrier = getattr(command, floe_dagster.CARRIER_ATTRIBUTE)
    run_ctx = run_span.get_span_context()
    assert carrier["traceparent"].startswith(f"00-{run_ctx.trace_id:032x}-{run_ctx.span_id:016x}-")

    child_command = pickle.loads(pickle.dumps(command))  # what multiprocessing hands the child
    seen: list[Any] = []

    def original_execute(self: Any) -> Iterator[str]:
        seen.append(trace.get_current_span().get_span_context())
        yield "event"
        seen.append(trace.get_current_span().get_span_context())

    # what the wrapt wrapper on MultiprocessExecutorChildProcessCommand.execute is called with
    execute = floe_dagster._traced_command_execute(functools.partial(original_execute, child_command),
                                                   child_command, (), {})
    assert list(execute) == ["event"]
    assert [(c.trace_id, c.span_id) for c in seen] == [(run_ctx.trace_id, run_ctx.span_id)] * 2
    assert not trace.get_current_span().get_span_context().is_valid


def test_uninstrument_restores_originals() -> None:
    from dagster._core.execution import api
    from dagster._core.execution.plan import execute_plan
    from dagster._core.executor import multiprocess

    originals = (
        api.ExecuteRunWithPlanIterable.__init__,
        execute_plan.dagster_event_sequence_for_step,
        multiprocess.MultiprocessExecutorChildProcessCommand.__init__,
        multiprocess.MultiprocessExecutorChildProcessCommand.execute,
    )
    t = Telemetry()
    instrumentor = DagsterInstrumentor()
    instrumentor.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    assert execute_plan.dagster_event_sequence_for_step is not originals[1]
    instrumentor.uninstrument()
    assert (
        api.ExecuteRunWithPlanIterable.__init__,
        execute_plan.dagster_event_sequence_for_step,
        multiprocess.MultiprocessExecutorChildProcessCommand.__init__,
        multiprocess.MultiprocessExecutorChildProcessCommand.execute,
    ) == originals
    assert _job("assets_job").execute_in_process().success
    assert t.spans() == []


def test_telemetry_failure_never_breaks_the_run(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("telemetry is broken")

    monkeypatch.setattr(floe_dagster._StepTracker, "on_event", boom)
    monkeypatch.setattr(floe_dagster._RunTracker, "__init__", boom)
    result = _job("assets_job").execute_in_process()
    assert result.success
    assert {s.name for s in telemetry.spans()} >= {"dagster.step raw_orders", "dagster.step order_report"}


def test_dagster_events_and_context_log_are_log_records_on_their_spans(telemetry: Telemetry) -> None:
    """Every step's events and the asset's ``context.log.info`` line are records carrying that span's ids."""
    result = _job("assets_job_in_process").execute_in_process()
    assert result.success
    run = telemetry.span("dagster.run assets_job_in_process")
    logs = telemetry.logs()
    assert logs and all(r.trace_id == run.context.trace_id for r in logs)
    by_span: dict[int, list[Any]] = {}
    for r in logs:
        by_span.setdefault(r.span_id, []).append(r)
    for step in (s for s in telemetry.spans() if s.name.startswith("dagster.step ")):
        key = step.attributes["dagster.step.key"]
        group = [s for s in telemetry.spans() if s.name == f"dagster.assets {key}"]
        asset_spans = [s for s in telemetry.spans() if s.name.startswith("dagster.asset ")]
        ids = {step.context.span_id, *(g.context.span_id for g in group), *(a.context.span_id for a in asset_spans)}
        mine = [r for sid in ids for r in by_span.get(sid, []) if r.attributes.get("dagster.step.key") == key]
        assert {r.attributes.get("dagster.event_type") for r in mine} >= {"STEP_START", "STEP_SUCCESS"}, key
    (line,) = [r for r in logs if "report built in pid" in str(r.body)]
    report = telemetry.span("dagster.asset order_report")
    assert line.span_id == report.context.span_id  # the single-asset step's asset span is current
    assert line.severity_text == "INFO" and "dagster.event_type" not in line.attributes
    assert line.attributes["dagster.run_id"] == result.run_id
    assert all(r.severity_number.value >= 9 for r in logs)  # INFO: Dagster's DEBUG events are not exported


def test_failing_step_error_is_a_record_on_the_step_span(telemetry: Telemetry) -> None:
    result = _job("failing_job").execute_in_process(raise_on_error=False)
    assert not result.success
    step = telemetry.span("dagster.step broken_asset")
    failures = [r for r in telemetry.logs() if r.attributes.get("dagster.event_type") == "STEP_FAILURE"]
    assert len(failures) == 1
    (failure,) = failures
    assert failure.severity_text == "ERROR"
    asset_span = telemetry.span("dagster.asset broken_asset")  # single-asset step: current during the compute
    assert failure.span_id in {step.context.span_id, asset_span.context.span_id}
    assert failure.trace_id == step.context.trace_id
    assert "broken_asset exploded on purpose" in str(failure.body)
    run = telemetry.span("dagster.run failing_job")
    (run_failure,) = [r for r in telemetry.logs() if r.attributes.get("dagster.event_type") == "RUN_FAILURE"]
    assert run_failure.span_id == run.context.span_id


def test_step_duration_histogram(telemetry: Telemetry) -> None:
    assert _job("failing_job").execute_in_process(raise_on_error=False).success is False
    points = telemetry.points("floe.pipeline.node.duration")
    (attributes,) = [a for a, _ in points]  # one step executed (failed); the skipped one never ran
    assert points[0][1].count == 1
    assert attributes == {
        "floe.pipeline.component": "dagster",
        "floe.pipeline.name": "failing_job",
        "floe.node.type": "step",
        "floe.node.status": "failure",
    }


def test_debug_level_exports_dagster_debug_events() -> None:
    t = Telemetry()
    instrumentor = DagsterInstrumentor()
    instrumentor.instrument(
        tracer_provider=t.tracer_provider,
        meter_provider=t.meter_provider,  # never the global one: other tests check it is built lazily
        logger_provider=t.logger_provider,
        log_level="DEBUG",
    )
    try:
        assert _job("assets_job_in_process").execute_in_process().success
    finally:
        instrumentor.uninstrument()
    assert any(r.severity_text == "DEBUG" for r in t.logs())


def test_instrument_builds_no_logger_before_the_first_record() -> None:
    """instrument() runs in every instrumented process: the logs SDK must not be built for it."""
    instrumentor = DagsterInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    try:
        assert floe_dagster._state is not None and floe_dagster._state.logger is None
    finally:
        instrumentor.uninstrument()
