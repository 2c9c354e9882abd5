"""End to end: `opentelemetry-instrument dbt build` on the jaffle project, asserted at the real collector."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import Collector
from tests.support.run import instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
ERROR = 2  # OTLP JSON status code (UNSET = 0 is omitted)
JAFFLE = Path(__file__).resolve().parents[1] / "projects" / "jaffle"


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "jaffle"
    shutil.copytree(JAFFLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    return project


def _dbt(collector: Collector, project: Path, *args: str, **env: str) -> tuple[int, str]:
    run_env = instrumented_env(
        endpoint=collector.http_endpoint,
        FLOE_MODE="dev",
        FLOE_TELEMETRY_BACKEND="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        JAFFLE_DUCKDB_PATH=str(project / "jaffle.duckdb"),
        **env,
    )
    proc = run_instrumented(["dbt", *args, "--profiles-dir", str(project)], run_env, cwd=project, timeout=180)
    return proc.returncode, proc.stdout + proc.stderr


def test_dbt_build_reaches_the_collector(collector: Collector, tmp_path: Path) -> None:
    """Every run_results node has a span under one invocation span, one trace, the failing test is ERROR."""
    project = _project(tmp_path)
    code, output = _dbt(collector, project, "build")
    assert code == 1, output  # the jaffle project has exactly one failing data test
    results = json.loads((project / "target" / "run_results.json").read_text())
    unique_ids = {r["unique_id"] for r in results["results"]}
    assert len(unique_ids) == 24

    def complete(c: Collector) -> bool:
        names = {s["name"] for s in c.spans()}
        node_ids = {s["attributes"].get("dbt.node.unique_id") for s in c.spans()}
        return "dbt build" in names and unique_ids <= node_ids

    assert collector.wait_for(complete), sorted(s["name"] for s in collector.spans())

    spans = [s for s in collector.spans() if s["scope"] == "floe_otel_distro.instrumentation.dbt"]
    (inv,) = [s for s in spans if s["name"] == "dbt build"]
    a = inv["attributes"]
    assert a["dbt.command"] == "build"
    assert a["dbt.adapter.type"] == "duckdb"
    assert a["dbt.target"] == "dev"
    assert a["dbt.project.name"] == "jaffle"
    assert a["dbt.success"] is False
    assert a["dbt.version"].startswith("1.")
    assert a["dbt.invocation_id"] == results["metadata"]["invocation_id"]
    assert inv["status"].get("code") == ERROR

    nodes = {s["attributes"]["dbt.node.unique_id"]: s for s in spans if "dbt.node.unique_id" in s["attributes"]}
    assert set(nodes) == unique_ids
    assert len(spans) == len(unique_ids) + 1  # no duplicates
    assert {s["trace_id"] for s in spans} == {inv["trace_id"]}
    for uid, span in nodes.items():
        assert span["parent_span_id"] == inv["span_id"], uid
        assert inv["start"] <= span["start"] <= span["end"] <= inv["end"], uid
    assert len({s["attributes"]["dbt.node.thread"] for s in nodes.values()}) >= 2  # threads: 4

    failing = nodes["test.jaffle.assert_order_amounts_positive"]
    assert failing["status"].get("code") == ERROR
    assert "Got 1 result" in failing["status"].get("message", "")
    assert [e["name"] for e in failing["events"] if e["name"] == "exception"] == ["exception"]
    errors = sorted(u for u, s in nodes.items() if s["status"].get("code") == ERROR)
    assert errors == ["test.jaffle.assert_order_amounts_positive"]

    revenue = nodes["model.jaffle.customer_revenue"]
    assert revenue["attributes"]["dbt.node.skipped"] is True
    assert revenue["attributes"]["dbt.node.status"] == "skipped"
    seed = nodes["seed.jaffle.raw_orders"]["attributes"]
    assert seed["dbt.node.rows_affected"] == 8
    assert json.loads(seed["dbt.node.adapter_response"])["rows_affected"] == 8
    assert nodes["model.jaffle.orders"]["attributes"]["dbt.node.materialization"] == "incremental"
    # the floe span processor and resource apply to dbt spans too
    assert inv["resource"]["service.name"]

    assert collector.wait_for(lambda c: bool(c.latest_points("floe.pipeline.errors")))
    runs = collector.latest_points("floe.pipeline.run.duration")
    assert [p["attributes"] for p in runs] == [
        {"floe.pipeline.component": "dbt", "floe.pipeline.name": "jaffle", "floe.pipeline.status": "failure"}
    ]
    assert int(runs[0]["count"]) == 1
    mats = {
        p["attributes"]["floe.asset.key"]: p["attributes"]
        for p in collector.latest_points("floe.pipeline.materializations")
    }
    assert set(mats) == unique_ids
    assert mats["model.jaffle.customer_revenue"]["floe.materialization.status"] == "skipped"
    assert mats["test.jaffle.assert_order_amounts_positive"]["floe.materialization.status"] == "fail"
    assert all(m["floe.pipeline.component"] == "dbt" for m in mats.values())
    errs = collector.latest_points("floe.pipeline.errors")
    assert [(p["attributes"], int(p["asInt"])) for p in errs] == [
        ({"floe.pipeline.component": "dbt", "error.type": "dbt.test_failure"}, 1)
    ]


def test_dbt_seed_success_joins_traceparent(collector: Collector, tmp_path: Path) -> None:
    """A green `dbt seed --threads 1` under a TRACEPARENT joins that trace and reports success."""
    project = _project(tmp_path)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    code, output = _dbt(
        collector,
        project,
        "seed",
        "--threads",
        "1",
        TRACEPARENT=f"00-{trace_id}-00f067aa0ba902b7-01",
    )
    assert code == 0, output
    assert collector.wait_for(lambda c: "dbt seed" in {s["name"] for s in c.spans()})  # ends last
    spans = [s for s in collector.spans() if s["scope"] == "floe_otel_distro.instrumentation.dbt"]
    (inv,) = [s for s in spans if s["name"] == "dbt seed"]
    assert inv["trace_id"] == trace_id
    assert inv["parent_span_id"] == "00f067aa0ba902b7"
    assert inv["attributes"]["dbt.success"] is True
    assert inv["status"].get("code", 0) == 0
    seeds = [s for s in spans if s["name"].startswith("dbt.node.seed ")]
    assert len(seeds) == 3
    assert len({s["attributes"]["dbt.node.thread"] for s in seeds}) == 1  # --threads 1
    hooks = {s["attributes"]["dbt.node.unique_id"] for s in spans if s["name"].startswith("dbt.node.operation ")}
    assert hooks == {"operation.jaffle.jaffle-on-run-start-0", "operation.jaffle.jaffle-on-run-end-0"}
    for s in spans:
        if s is not inv:
            assert s["parent_span_id"] == inv["span_id"]
            assert s["trace_id"] == trace_id
    assert collector.wait_for(lambda c: bool(c.latest_points("floe.pipeline.run.duration")))
    (run,) = collector.latest_points("floe.pipeline.run.duration")
    assert run["attributes"]["floe.pipeline.status"] == "success"


def _raw_links(collector: Collector) -> dict[str, list[dict[str, Any]]]:
    """span id -> its links as the collector received them (the span view of tests.support has none)."""
    out: dict[str, list[dict[str, Any]]] = {}
    path = collector.workdir / "traces.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.strip():
            continue
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    out[sp["spanId"]] = sp.get("links") or []
    return out


def test_dbt_build_logs_links_and_causes_at_the_collector(collector: Collector, tmp_path: Path) -> None:
    """Issue 11: dbt's events are log records on their node spans; links == depends_on; skips name a cause."""
    project = _project(tmp_path)
    code, output = _dbt(collector, project, "build")
    assert code == 1, output
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    unique_ids = {r["unique_id"] for r in results}

    def complete(c: Collector) -> bool:
        spans = {s["attributes"].get("dbt.node.unique_id") for s in c.spans()}
        logged = {r["attributes"].get("dbt.node.unique_id") for r in c.logs()}
        return unique_ids <= spans and unique_ids <= logged and any("Done. PASS=" in str(r["body"]) for r in c.logs())

    assert collector.wait_for(complete, timeout=30)
    spans = [s for s in collector.spans() if s["scope"] == "floe_otel_distro.instrumentation.dbt"]
    (inv,) = [s for s in spans if s["name"] == "dbt build"]
    nodes = {s["attributes"]["dbt.node.unique_id"]: s for s in spans if "dbt.node.unique_id" in s["attributes"]}
    records = [r for r in collector.logs() if r["trace_id"] == inv["trace_id"]]
    by_span: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_span.setdefault(r["span_id"], []).append(r)

    # every executed node (all of run_results.json) has >= 1 record carrying its span id
    for uid in unique_ids:
        assert by_span.get(nodes[uid]["span_id"]), uid
    # no record escaped correlation, and none from dbt's debug events (FLOE_LOG_LEVEL defaults to INFO)
    assert all(r["trace_id"] and r["span_id"] for r in collector.logs() if "dbt.event.name" in r["attributes"])
    assert {r["severity"] for r in records} <= {"INFO", "WARN", "ERROR"}

    failing = nodes["test.jaffle.assert_order_amounts_positive"]
    failing_records = by_span[failing["span_id"]]
    assert any(
        r["severity"] == "ERROR" and "Got 1 result, configured to fail if != 0" in r["body"] for r in failing_records
    ), failing_records

    links = _raw_links(collector)
    span_to_uid = {s["span_id"]: uid for uid, s in nodes.items()}
    for uid, span in nodes.items():
        depends_on = manifest["nodes"].get(uid, {}).get("depends_on", {}).get("nodes", [])
        linked = sorted(span_to_uid[link["spanId"]] for link in links[span["span_id"]])
        assert linked == sorted(depends_on), uid  # every upstream of the jaffle build runs in the build
        assert all(link["traceId"] == inv["trace_id"] for link in links[span["span_id"]])

    for uid in ("model.jaffle.customer_revenue", "test.jaffle.not_null_customer_revenue_customer_id.a01a561673"):
        attributes = nodes[uid]["attributes"]
        assert attributes["dbt.node.skipped"] is True
        assert attributes["dbt.node.skip_cause"] == "test.jaffle.assert_order_amounts_positive", uid
    assert nodes["model.jaffle.orders"]["attributes"]["dbt.node.relation"].endswith(".main.orders")

    assert collector.wait_for(lambda c: bool(c.latest_points("floe.pipeline.node.duration")))
    durations = collector.latest_points("floe.pipeline.node.duration")
    assert sum(int(p["count"]) for p in durations) == len(results)
    assert {p["attributes"]["floe.node.type"] for p in durations} == {"seed", "model", "snapshot", "test", "operation"}
