"""Unit tests for the dbt instrumentor: real dbt-core + dbt-duckdb on a tmp copy of the jaffle project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from floe_otel_distro.instrumentation import dbt as dbt_instr
from floe_otel_distro.instrumentation.dbt import DbtInstrumentor
from floe_otel_distro.instrumentation.dbt_secrets import DbtSecretsInstrumentor

JAFFLE = Path(__file__).resolve().parents[1] / "projects" / "jaffle"


@dataclass
class DbtRun:
    """What one instrumented programmatic dbt invocation produced."""

    project: Path
    success: bool
    exception: BaseException | None
    spans: list[ReadableSpan]
    metrics: dict[str, list[tuple[dict[str, Any], Any]]]
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    logs: list[ReadableLogRecord] = field(default_factory=list)

    @property
    def invocation(self) -> ReadableSpan:
        roots = [s for s in self.spans if s.name.startswith("dbt ")]
        assert len(roots) == 1, [s.name for s in roots]
        return roots[0]

    @property
    def nodes(self) -> dict[str, ReadableSpan]:
        out: dict[str, ReadableSpan] = {}
        for s in self.spans:
            uid = (s.attributes or {}).get("dbt.node.unique_id")
            if uid is not None:
                assert uid not in out, f"two spans for {uid}"
                out[str(uid)] = s
        return out

    def run_results(self) -> list[dict[str, Any]]:
        return json.loads((self.project / "target" / "run_results.json").read_text())["results"]

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.project / "target" / "manifest.json").read_text())

    def logs_of(self, span: ReadableSpan) -> list[Any]:
        """The log records (SDK LogRecords) carrying ``span``'s trace and span id."""
        ctx = span.context
        return [
            r.log_record
            for r in self.logs
            if r.log_record.span_id == ctx.span_id and r.log_record.trace_id == ctx.trace_id
        ]


def copy_project(dest: Path) -> Path:
    project = dest / "jaffle"
    shutil.copytree(JAFFLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    return project


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    value = getattr(p, "value", None)
                    if value is None:
                        value = (p.count, p.sum)  # histogram
                    out.setdefault(m.name, []).append((dict(p.attributes or {}), value))
    return out


def invoke_dbt(
    project: Path,
    args: list[str],
    callbacks: list[Callable[[Any], None]] | None = None,
    tracer_provider: Any = None,
    log_level: str | None = None,
) -> DbtRun:
    """Instrument with in-memory providers, run ``dbtRunner().invoke(args)`` in ``project``, uninstrument."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    instrumentor = DbtInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider or provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        log_level=log_level,
    )
    secrets_instrumentor = DbtSecretsInstrumentor()  # as the distro loads it: dbt's own masking must hold
    secrets_instrumentor.instrument()
    old_env = os.environ.get("JAFFLE_DUCKDB_PATH")
    os.environ["JAFFLE_DUCKDB_PATH"] = str(project / "jaffle.duckdb")
    try:
        from dbt.cli.main import dbtRunner

        res = dbtRunner(callbacks=callbacks).invoke(
            [*args, "--project-dir", str(project), "--profiles-dir", str(project)]
        )
    finally:
        instrumentor.uninstrument()
        secrets_instrumentor.uninstrument()
        if old_env is None:
            os.environ.pop("JAFFLE_DUCKDB_PATH", None)
        else:
            os.environ["JAFFLE_DUCKDB_PATH"] = old_env
    return DbtRun(
        project,
        res.success,
        res.exception,
        list(exporter.get_finished_spans()),
        metric_points(reader),
        logs=list(log_exporter.get_finished_logs()),
    )


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbtRun]:
    """One instrumented ``dbt build`` of jaffle (threads: 4), shared by the assertions below."""
    project = copy_project(tmp_path_factory.mktemp("build"))
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def on_event(msg: Any) -> None:  # a user's own dbtRunner callback, called on dbt's worker threads
        if msg.info.name == "NodeExecuting":
            current = trace.get_current_span()
            attrs = dict(getattr(current, "attributes", None) or {})
            seen.append((msg.data.node_info.unique_id, threading.current_thread().name, attrs))

    run = invoke_dbt(project, ["build"], callbacks=[on_event])
    run.events = seen
    yield run


def test_build_fails_like_plain_dbt(build: DbtRun) -> None:
    """Instrumentation does not change dbt's outcome: the failing test still makes the build unsuccessful."""
    assert build.success is False
    assert build.exception is None
    statuses = {r["status"] for r in build.run_results()}
    assert statuses == {"success", "pass", "fail", "skipped"}


def test_invocation_span_attributes(build: DbtRun) -> None:
    """The invocation span carries command, args, version, adapter, target, project and success."""
    from dbt.__version__ import version

    inv = build.invocation
    attrs = dict(inv.attributes or {})
    assert inv.name == "dbt build"
    assert inv.parent is None
    assert attrs["dbt.command"] == "build"
    assert list(attrs["dbt.args"])[:1] == ["build"]
    assert "--project-dir" in attrs["dbt.args"]
    assert attrs["dbt.version"] == version
    assert attrs["dbt.adapter.type"] == "duckdb"
    assert attrs["dbt.target"] == "dev"
    assert attrs["dbt.project.name"] == "jaffle"
    assert attrs["dbt.success"] is False
    run_results = json.loads((build.project / "target" / "run_results.json").read_text())
    assert attrs["dbt.invocation_id"] == run_results["metadata"]["invocation_id"]
    assert inv.status.status_code is StatusCode.ERROR
    assert "1 node(s) failed" in (inv.status.description or "")


def test_every_run_result_has_a_child_span(build: DbtRun) -> None:
    """Every unique_id in run_results.json has exactly one node span, parented by the invocation span."""
    results = build.run_results()
    assert len(results) == 24
    nodes = build.nodes
    assert set(nodes) == {r["unique_id"] for r in results}
    inv = build.invocation
    for uid, span in nodes.items():
        assert span.parent is not None, uid
        assert span.parent.span_id == inv.context.span_id, uid
    assert len(build.spans) == len(results) + 1


def test_hook_operations_get_spans_from_their_timing(build: DbtRun) -> None:
    """on-run-start/end hooks (reported outside the node runner) get spans timed from their RunResult."""
    hooks = {uid: s for uid, s in build.nodes.items() if uid.startswith("operation.")}
    assert set(hooks) == {"operation.jaffle.jaffle-on-run-start-0", "operation.jaffle.jaffle-on-run-end-0"}
    by_id = {r["unique_id"]: r for r in build.run_results()}
    for uid, span in hooks.items():
        assert span.name == f"dbt.node.operation {uid.split('.')[-1]}"
        assert span.attributes["dbt.node.status"] == "success"  # type: ignore[index]
        assert span.parent is not None and span.parent.span_id == build.invocation.context.span_id
        started = min(t["started_at"] for t in by_id[uid]["timing"])
        assert span.start_time is not None
        expected = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        assert abs(span.start_time / 1e9 - expected) < 0.001
    start = hooks["operation.jaffle.jaffle-on-run-start-0"]
    first_node = min(s.start_time for uid, s in build.nodes.items() if uid not in hooks)  # type: ignore[type-var]
    assert start.end_time is not None and start.end_time <= first_node


def test_one_trace_id(build: DbtRun) -> None:
    """The invocation and all node spans share one trace id."""
    assert len({s.context.trace_id for s in build.spans}) == 1


def test_nodes_ran_on_several_threads_within_the_invocation(build: DbtRun) -> None:
    """With threads: 4 the nodes ran on several worker threads, each span inside the invocation's time."""
    inv = build.invocation
    threads = {
        s.attributes["dbt.node.thread"]  # type: ignore[index]
        for uid, s in build.nodes.items()
        if not uid.startswith("operation.")  # project hooks run on the main thread
    }
    assert len(threads) >= 2, threads
    assert all("worker" in str(t) for t in threads)
    for span in build.nodes.values():
        assert inv.start_time <= span.start_time <= span.end_time <= inv.end_time  # type: ignore[operator]


def test_node_span_is_current_on_the_worker_thread(build: DbtRun) -> None:
    """While a node executes, its span is current on dbt's worker thread (user callbacks still run)."""
    assert build.events, "the user's dbtRunner callback never saw NodeExecuting"
    for uid, thread_name, attrs in build.events:
        assert "worker" in thread_name
        assert attrs.get("dbt.node.unique_id") == uid


def test_node_span_attributes(build: DbtRun) -> None:
    """Node spans carry resource type, name, materialization, status, rows, adapter response, thread, time."""
    by_id = {r["unique_id"]: r for r in build.run_results()}
    seed = build.nodes["seed.jaffle.raw_customers"]
    assert seed.name == "dbt.node.seed raw_customers"
    a = dict(seed.attributes or {})
    assert a["dbt.node.resource_type"] == "seed"
    assert a["dbt.node.name"] == "raw_customers"
    assert a["dbt.node.materialization"] == "seed"
    assert a["dbt.node.status"] == "success"
    assert a["dbt.node.rows_affected"] == 6
    assert json.loads(str(a["dbt.node.adapter_response"])) == by_id["seed.jaffle.raw_customers"]["adapter_response"]
    assert a["dbt.node.thread"] == by_id["seed.jaffle.raw_customers"]["thread_id"]
    assert a["dbt.node.execution_time"] == pytest.approx(by_id["seed.jaffle.raw_customers"]["execution_time"])

    expected = {
        "model.jaffle.stg_orders": ("model", "view"),
        "model.jaffle.customers": ("model", "table"),
        "model.jaffle.orders": ("model", "incremental"),
        "snapshot.jaffle.customers_snapshot": ("snapshot", "snapshot"),
        "test.jaffle.assert_order_amounts_positive": ("test", "test"),
    }
    for uid, (rtype, mat) in expected.items():
        attrs = dict(build.nodes[uid].attributes or {})
        assert attrs["dbt.node.resource_type"] == rtype
        assert attrs["dbt.node.materialization"] == mat
        assert attrs["dbt.node.status"] == by_id[uid]["status"]
        assert build.nodes[uid].name == f"dbt.node.{rtype} {uid.split('.')[2]}"
    assert {e.name for e in build.nodes["model.jaffle.orders"].events} >= {"dbt.compile", "dbt.execute"}


def test_floe_span_attributes(build: DbtRun) -> None:
    """floe's optional span attributes: floe.dbt.model on model nodes only, floe.pipeline.id = the invocation id,
    floe.job.type = dbt_<command>; node names never look like floe-dbt-core's dbt.<command> invocation spans."""
    inv = dict(build.invocation.attributes or {})
    invocation_id = inv["dbt.invocation_id"]
    assert (inv["floe.pipeline.id"], inv["floe.job.type"]) == (invocation_id, "dbt_build")
    for uid, span in build.nodes.items():
        attrs = dict(span.attributes or {})
        assert (attrs["floe.pipeline.id"], attrs["floe.job.type"]) == (invocation_id, "dbt_build"), uid
        assert attrs.get("floe.dbt.model") == (uid.split(".")[2] if uid.startswith("model.") else None), uid
        assert span.name.startswith("dbt.node.")
        assert span.name.split()[0] not in {"dbt.build", "dbt.run", "dbt.test", "dbt.seed", "dbt.snapshot"}


def test_failing_test_has_error_status_and_message(build: DbtRun) -> None:
    """The one failing data test is the only ERROR node span; it records the failure message."""
    failing = build.nodes["test.jaffle.assert_order_amounts_positive"]
    assert failing.status.status_code is StatusCode.ERROR
    assert "Got 1 result" in (failing.status.description or "")
    assert failing.attributes["dbt.node.status"] == "fail"  # type: ignore[index]
    assert failing.attributes["dbt.node.failures"] == 1  # type: ignore[index]
    exc = [e for e in failing.events if e.name == "exception"]
    assert len(exc) == 1
    assert exc[0].attributes["exception.type"] == "dbt.test_failure"  # type: ignore[index]
    assert "Got 1 result" in str(exc[0].attributes["exception.message"])  # type: ignore[index]
    errors = [uid for uid, s in build.nodes.items() if s.status.status_code is StatusCode.ERROR]
    assert errors == ["test.jaffle.assert_order_amounts_positive"]


def test_skipped_nodes_are_marked(build: DbtRun) -> None:
    """Nodes downstream of the failing test are marked skipped (not errors)."""
    skipped = {uid for uid, s in build.nodes.items() if (s.attributes or {}).get("dbt.node.skipped") is True}
    assert skipped == {r["unique_id"] for r in build.run_results() if r["status"] == "skipped"}
    assert "model.jaffle.customer_revenue" in skipped
    span = build.nodes["model.jaffle.customer_revenue"]
    assert span.attributes["dbt.node.status"] == "skipped"  # type: ignore[index]
    assert span.status.status_code is StatusCode.UNSET


def test_pipeline_metrics(build: DbtRun) -> None:
    """record_run per invocation, record_materialization per node, record_error per failed node."""
    runs = build.metrics["floe.pipeline.run.duration"]
    assert len(runs) == 1
    attrs, (count, total) = runs[0]
    assert attrs == {
        "floe.pipeline.component": "dbt",
        "floe.pipeline.name": "jaffle",
        "floe.pipeline.status": "failure",
    }
    assert count == 1 and total > 0

    mats = {
        a["floe.asset.key"]: (a["floe.materialization.status"], v)
        for a, v in build.metrics["floe.pipeline.materializations"]
    }
    assert mats == {r["unique_id"]: (r["status"], 1) for r in build.run_results()}
    assert all(a["floe.pipeline.component"] == "dbt" for a, _ in build.metrics["floe.pipeline.materializations"])

    assert build.metrics["floe.pipeline.errors"] == [
        ({"floe.pipeline.component": "dbt", "error.type": "dbt.test_failure"}, 1)
    ]


def test_cli_entry_point_is_traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `dbt` console script path (cli() → cli.main → cli.invoke) gets the same spans as dbtRunner."""
    project = copy_project(tmp_path)
    monkeypatch.setenv("JAFFLE_DUCKDB_PATH", str(project / "jaffle.duckdb"))
    monkeypatch.setattr(sys, "argv", ["dbt", "seed", "--project-dir", str(project), "--profiles-dir", str(project)])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    instrumentor = DbtInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        from dbt.cli.main import cli

        with pytest.raises(SystemExit) as exit_info:
            cli()
    finally:
        instrumentor.uninstrument()
    assert exit_info.value.code == 0
    spans = exporter.get_finished_spans()
    (inv,) = [s for s in spans if s.name == "dbt seed"]
    assert inv.attributes["dbt.success"] is True  # type: ignore[index]
    assert inv.attributes["dbt.project.name"] == "jaffle"  # type: ignore[index]
    assert inv.status.status_code is StatusCode.UNSET
    seeds = {s.attributes["dbt.node.unique_id"] for s in spans if s.name.startswith("dbt.node.seed ")}  # type: ignore[index]
    assert seeds == {"seed.jaffle.raw_customers", "seed.jaffle.raw_orders", "seed.jaffle.raw_payments"}
    assert all(s.parent is not None and s.parent.span_id == inv.context.span_id for s in spans if s is not inv)
    runs = metric_points(reader)["floe.pipeline.run.duration"]
    assert [a["floe.pipeline.status"] for a, _ in runs] == ["success"]


def test_dbt_exception_is_recorded(tmp_path: Path) -> None:
    """A dbt invocation that raises (no dbt_project.yml) gives an ERROR span, the exception and a metric."""
    empty = tmp_path / "empty"
    empty.mkdir()
    run = invoke_dbt(empty, ["run"])
    assert run.success is False and run.exception is not None
    inv = run.invocation
    assert inv.name == "dbt run"
    assert inv.status.status_code is StatusCode.ERROR
    assert inv.attributes["dbt.success"] is False  # type: ignore[index]
    assert [e.name for e in inv.events] == ["exception"]
    assert run.metrics["floe.pipeline.errors"] == [
        ({"floe.pipeline.component": "dbt", "error.type": "dbt.invocation_error"}, 1)
    ]
    assert [a["floe.pipeline.status"] for a, _ in run.metrics["floe.pipeline.run.duration"]] == ["error"]


class _BrokenTracerProvider:
    """A tracer provider whose tracers fail on every span: telemetry must never break dbt."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        class _Tracer:
            def start_span(self, *a: Any, **k: Any) -> Any:
                raise RuntimeError("telemetry is broken")

        return _Tracer()


def test_broken_telemetry_never_breaks_dbt(tmp_path: Path) -> None:
    """If span creation raises, dbt still runs every node and returns its normal result."""
    project = copy_project(tmp_path)
    run = invoke_dbt(project, ["seed"], tracer_provider=_BrokenTracerProvider())
    assert run.success is True
    assert run.exception is None
    assert {r["status"] for r in run.run_results()} == {"success"}
    assert len(run.run_results()) == 5  # 3 seeds + on-run-start/end hooks


def test_uninstrument_restores_dbt() -> None:
    """uninstrument() puts back click's Group.invoke and dbt's original call_runner."""
    from dbt.cli.main import cli
    from dbt.task.runnable import GraphRunnableTask

    original = GraphRunnableTask.call_runner
    instrumentor = DbtInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    assert "invoke" in vars(cli)
    assert GraphRunnableTask.call_runner is not original
    instrumentor.uninstrument()
    assert "invoke" not in vars(cli)
    assert GraphRunnableTask.call_runner is original


def test_instrument_does_not_import_dbt() -> None:
    """instrument() only registers import hooks; dbt is patched when the application imports it."""
    code = (
        "import sys\n"
        "from floe_otel_distro.instrumentation.dbt import DbtInstrumentor\n"
        "DbtInstrumentor().instrument()\n"
        "assert not [m for m in sys.modules if m == 'dbt' or m.startswith('dbt.')], 'dbt imported'\n"
        "from dbt.cli.main import cli, dbtRunner\n"
        "import dbt.task.runnable as r\n"
        "assert 'invoke' in vars(cli)\n"
        "import wrapt\n"
        "assert isinstance(r.GraphRunnableTask.call_runner, wrapt.BaseObjectProxy)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_args_are_redacted() -> None:
    """--vars values and secret-looking options never reach span attributes."""
    args = [
        "run",
        "--vars",
        "{password: hunter2}",
        "--select",
        "key_model",
        "--vars={x: 1}",
        "--api-token",
        "abc",
    ]
    assert dbt_instr._safe_args(args) == [
        "run",
        "--vars",
        "<redacted>",
        "--select",
        "key_model",
        "--vars=<redacted>",
        "--api-token",
        "<redacted>",
    ]


# ---- issue 11: log records, node attributes, DAG links, node duration ---------------------------------


def test_every_node_has_log_records_on_its_span(build: DbtRun) -> None:
    """dbt's events become records on the node span they are about (hooks included), one trace, INFO+."""
    for uid, span in build.nodes.items():
        records = build.logs_of(span)
        assert records, uid
        assert all(
            r.attributes.get("dbt.node.unique_id") == uid for r in records if "dbt.node.unique_id" in r.attributes
        )
    trace_ids = {r.log_record.trace_id for r in build.logs}
    assert trace_ids == {build.invocation.context.trace_id}
    assert all(r.log_record.severity_number.value >= 9 for r in build.logs)  # INFO: no debug events
    assert all("\x1b" not in str(r.log_record.body) for r in build.logs)  # no ANSI colours
    inv_records = build.logs_of(build.invocation)
    assert any("Done. PASS=" in str(r.body) for r in inv_records)  # node-less events: the invocation span


def test_failing_test_error_text_is_a_record_on_its_span(build: DbtRun) -> None:
    failing = build.nodes["test.jaffle.assert_order_amounts_positive"]
    errors = [r for r in build.logs_of(failing) if r.severity_text == "ERROR"]
    assert any("Got 1 result, configured to fail if != 0" in str(r.body) for r in errors), [r.body for r in errors]
    assert {r.attributes["dbt.event.name"] for r in errors} >= {"LogTestResult", "RunResultError"}
    assert all(r.attributes["dbt.node.unique_id"] == "test.jaffle.assert_order_amounts_positive" for r in errors)


def test_links_equal_manifest_depends_on(build: DbtRun) -> None:
    """Each node span links to the spans of its upstream nodes (manifest depends_on.nodes)."""
    manifest = build.manifest()
    nodes = build.nodes
    by_span_id = {s.context.span_id: uid for uid, s in nodes.items()}
    checked = 0
    for uid, span in nodes.items():
        depends_on = manifest["nodes"].get(uid, {}).get("depends_on", {}).get("nodes", [])
        linked = sorted(by_span_id[link.context.span_id] for link in span.links)
        assert linked == sorted(d for d in depends_on if d in nodes), uid  # every upstream ran here
        assert [link.attributes["dbt.node.unique_id"] for link in span.links] == [
            by_span_id[x.context.span_id] for x in span.links
        ]
        if depends_on:
            assert list((span.attributes or {})["dbt.node.depends_on"]) == depends_on
            checked += 1
    assert checked >= 15
    assert len(nodes["model.jaffle.orders"].links) == 2


def test_relation_and_skip_cause(build: DbtRun) -> None:
    nodes = build.nodes
    relation = (nodes["model.jaffle.orders"].attributes or {})["dbt.node.relation"]
    assert relation == "jaffle.main.orders"
    assert (nodes["seed.jaffle.raw_orders"].attributes or {})["dbt.node.relation"] == "jaffle.main.raw_orders"
    assert "dbt.node.relation" not in (nodes["test.jaffle.assert_order_amounts_positive"].attributes or {})
    skipped = {uid: s for uid, s in nodes.items() if (s.attributes or {}).get("dbt.node.skipped")}
    assert sorted(skipped) == [
        "model.jaffle.customer_revenue",
        "test.jaffle.not_null_customer_revenue_customer_id.a01a561673",
    ]
    for uid, span in skipped.items():  # the root failure, also through the skipped model
        assert (span.attributes or {})["dbt.node.skip_cause"] == "test.jaffle.assert_order_amounts_positive", uid
        assert any("SKIP" in str(r.body) for r in build.logs_of(span)), uid
    assert not any("dbt.node.skip_cause" in (s.attributes or {}) for uid, s in nodes.items() if uid not in skipped)


def test_node_duration_histogram(build: DbtRun) -> None:
    points = build.metrics["floe.pipeline.node.duration"]
    keys = {(a["floe.node.type"], a["floe.node.status"]) for a, _ in points}
    assert keys == {
        ("seed", "success"),
        ("model", "success"),
        ("snapshot", "success"),
        ("test", "pass"),
        ("test", "fail"),
        ("model", "skipped"),
        ("test", "skipped"),
        ("operation", "success"),
    }
    for attributes, (_count, total) in points:
        assert set(attributes) == {
            "floe.pipeline.component",
            "floe.pipeline.name",
            "floe.node.type",
            "floe.node.status",
        }
        assert attributes["floe.pipeline.name"] == "jaffle" and attributes["floe.pipeline.component"] == "dbt"
        assert total >= 0
    assert sum(count for _, (count, _) in points) == len(build.run_results())


def test_debug_events_only_at_debug_level(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    info = invoke_dbt(project, ["seed", "--threads", "1"])
    debug = invoke_dbt(project, ["seed", "--threads", "1"], log_level="DEBUG")
    assert not any(r.log_record.severity_text == "DEBUG" for r in info.logs)
    debug_records = [r.log_record for r in debug.logs if r.log_record.severity_text == "DEBUG"]
    assert len(debug_records) > len(info.logs)  # SQL, connections, timings: many
    seed = debug.nodes["seed.jaffle.raw_orders"]
    assert any(r.span_id == seed.context.span_id for r in debug_records)
    warn = invoke_dbt(project, ["seed", "--threads", "1"], log_level="WARNING")
    assert warn.logs == [] and warn.success  # nothing at WARN+ in a green seed


def test_unsampled_invocation_exports_only_warnings_and_errors(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    project = copy_project(tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = invoke_dbt(project, ["build"], tracer_provider=provider)
    assert run.success is False and exporter.get_finished_spans() == ()
    assert run.logs and all(r.log_record.severity_number.value >= 13 for r in run.logs)
    assert any("Got 1 result" in str(r.log_record.body) for r in run.logs)
    assert all(r.log_record.trace_id != 0 for r in run.logs)  # still correlated (trace id, unsampled)
    points = run.metrics["floe.pipeline.node.duration"]
    assert sum(count for _, (count, _) in points) == len(run.run_results())


def test_source_freshness_attributes(tmp_path: Path) -> None:
    """``dbt source freshness``: age (s) and status on the source's node span."""
    project = copy_project(tmp_path)
    assert invoke_dbt(project, ["seed", "--threads", "1"]).success
    (project / "models" / "sources.yml").write_text(
        textwrap.dedent(
            """\
            version: 2
            sources:
              - name: raw
                schema: main
                tables:
                  - name: raw_orders
                    loaded_at_field: "cast(order_date as timestamp)"
                    freshness:
                      warn_after: {count: 1, period: day}
                      error_after: {count: 36500, period: day}
            """
        )
    )
    run = invoke_dbt(project, ["source", "freshness"])
    span = run.nodes["source.jaffle.raw.raw_orders"]
    a = span.attributes or {}
    assert a["dbt.source.freshness.status"] == "warn" == a["dbt.node.status"]
    assert a["dbt.source.freshness.age_s"] > 86400 * 365  # order dates are from 2018
    assert a["dbt.source.freshness.max_loaded_at"].startswith("2018-")
    assert a["dbt.node.relation"] == "jaffle.main.raw_orders"
    assert run.logs_of(span)


def test_dbt_secret_env_values_never_reach_records_or_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dbt masks the values of ``DBT_ENV_SECRET_*`` variables in what it logs; so do the records and spans."""
    secret = "hunter2-s3cr3t-value"
    monkeypatch.setenv("DBT_ENV_SECRET_WAREHOUSE_TOKEN", secret)
    project = copy_project(tmp_path)
    models = project / "models"
    (models / "leaky_log.sql").write_text(f"{{{{ log('connecting with {secret}', info=True) }}}}\nselect 1 as x\n")
    (models / "leaky_error.sql").write_text(
        f"{{{{ config(materialized='table') }}}}\nselect cast('{secret}' as integer) as x\n"
    )
    run = invoke_dbt(project, ["run", "--select", "leaky_log", "leaky_error", "--threads", "1"], log_level="DEBUG")
    assert run.success is False  # leaky_error fails: its database error quotes the value
    bodies = [str(r.log_record.body) for r in run.logs]
    assert any("connecting with *****" in b for b in bodies), bodies  # masked the way dbt masks it
    assert any("*****" in b and "integer" in b.lower() for b in bodies), bodies
    dumped = [f"{r.log_record.body} {dict(r.log_record.attributes or {})}" for r in run.logs]
    dumped += [s.to_json() for s in run.spans]
    assert not [d for d in dumped if secret in d]
    dbt_log = (project / "logs" / "dbt.log").read_text()
    assert secret not in dbt_log and "connecting with *****" in dbt_log  # what dbt itself does


def test_secret_masking_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The masked values are re-read when os.environ changes (set, changed, blank, overlapping)."""
    from floe_otel_distro.instrumentation.dbt_secrets import EnvSecrets

    secrets = EnvSecrets()
    monkeypatch.setenv("DBT_ENV_SECRET_A", "alpha-secret")
    assert secrets.scrub("x alpha-secret y") == "x ***** y"
    monkeypatch.setenv("DBT_ENV_SECRET_B", "beta")
    assert secrets.scrub("alpha-secret beta") == "***** *****"
    monkeypatch.setenv("DBT_ENV_SECRET_A", "gamma")
    assert secrets.scrub("alpha-secret gamma") == "alpha-secret *****"
    monkeypatch.setenv("DBT_ENV_SECRET_C", "   ")  # blank: not a secret (as dbt has it)
    monkeypatch.setenv("DBT_ENV_SECRET_D", "betamax")  # contains another secret: the longer one first
    assert secrets.scrub("betamax beta   x") == "***** *****   x"
    monkeypatch.delenv("DBT_ENV_SECRET_B")
    assert secrets.scrub("beta") == "beta"


def test_dbts_secret_lookup_answers_as_dbt_and_scans_only_when_the_environment_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """floe_dbt_secrets: dbt's per-line scrubber gets dbt's own answer, computed once per environment."""
    import dbt_common.events.functions as functions
    from dbt_common.exceptions import env_secrets as dbts_own

    scans: list[list[str]] = []

    def counted() -> list[str]:  # stands for dbt's function, counting its scans
        scans.append(dbts_own())
        return scans[-1]

    monkeypatch.setattr(functions, "env_secrets", counted)
    instrumentor = DbtSecretsInstrumentor()
    instrumentor.instrument()
    try:
        assert functions.env_secrets is not counted  # wrapped
        monkeypatch.setenv("DBT_ENV_SECRET_A", "alpha-secret")
        assert [functions.env_scrubber("x alpha-secret y") for _ in range(200)] == ["x ***** y"] * 200
        assert len(scans) == 1  # 200 lines, one scan
        monkeypatch.setenv("DBT_ENV_SECRET_B", "beta")
        assert functions.env_scrubber("alpha-secret beta") == "***** *****"
        monkeypatch.setenv("DBT_ENV_SECRET_A", "gamma")
        assert functions.env_scrubber("alpha-secret gamma") == "alpha-secret *****"
        os.environ._data[b"DBT_ENV_SECRET_B"] = b"delta"  # type: ignore[attr-defined]  # behind putenv's back
        try:
            assert functions.env_scrubber("beta delta") == "beta *****"
        finally:
            os.environ._data[b"DBT_ENV_SECRET_B"] = b"beta"  # type: ignore[attr-defined]
        monkeypatch.delenv("DBT_ENV_SECRET_B")
        assert functions.env_scrubber("beta gamma") == "beta *****"
        assert len(scans) == 5  # one per environment a line saw, none in between
        answer = functions.env_secrets()
        assert answer == dbts_own() and answer is not scans[-1]  # dbt's order, a new list
        answer.append("mutated by a caller")
        assert functions.env_secrets() == dbts_own()
    finally:
        instrumentor.uninstrument()
    assert functions.env_secrets is counted  # unwrapped
    calls = len(scans)
    functions.env_scrubber("x")
    assert len(scans) == calls + 1  # dbt's own scan per line again


def test_dbts_exception_constructors_get_dbts_answer_without_a_scan_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """floe_dbt_secrets: each DbtRuntimeError masks its message with env_secrets() (dbt builds ~12
    PackageNotFoundForMacroError per node while resolving macros): one scan per environment, same masking."""
    import dbt_common.exceptions.base as base
    from dbt_common.exceptions import DbtInternalError, DbtRuntimeError

    own = base.env_secrets
    scans: list[list[str]] = []

    def counted() -> list[str]:  # stands for dbt's function, counting its scans
        scans.append([v for k, v in os.environ.items() if k.startswith("DBT_ENV_SECRET") and v.strip()])
        return scans[-1]

    monkeypatch.setattr(base, "env_secrets", counted)
    monkeypatch.setenv("DBT_ENV_SECRET_TOKEN", "tok-123")
    instrumentor = DbtSecretsInstrumentor()
    instrumentor.instrument()
    try:
        assert base.env_secrets is not counted  # wrapped
        errors = [DbtRuntimeError(f"no package for tok-123 #{i}") for i in range(100)]
        assert [e.msg for e in errors] == [f"no package for ***** #{i}" for i in range(100)]
        assert DbtInternalError("tok-123").msg == "*****"
        assert len(scans) == 1  # 101 constructors, one scan
        monkeypatch.setenv("DBT_ENV_SECRET_TOKEN", "tok-456")
        assert DbtRuntimeError("tok-123 tok-456").msg == "tok-123 *****"  # the environment changed: scanned
        assert len(scans) == 2
    finally:
        instrumentor.uninstrument()
    assert base.env_secrets is counted  # unwrapped
    DbtRuntimeError("x")
    assert len(scans) == 3  # dbt's own scan per constructor again
    monkeypatch.setattr(base, "env_secrets", own)
