"""End to end: the real Dagster CLI under `opentelemetry-instrument`, asserted at the real collector.

`dagster job execute` runs asset jobs with Dagster's default multiprocess executor: every step in its own
spawned child process. Those step/asset spans (and a `dbt build` launched by a step) must join the run's
trace with correct parentage.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import Collector
from tests.support.run import BIN, instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
ERROR = 2  # OTLP JSON status code
APP = Path(__file__).resolve().parents[1] / "projects" / "dagster_app"
JAFFLE = Path(__file__).resolve().parents[1] / "projects" / "jaffle"
DAGSTER_SCOPE = "floe_otel_distro.instrumentation.dagster"


def _dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def _execute(
    collector: Collector, tmp_path: Path, module: str, job: str, **env: str
) -> subprocess.CompletedProcess[str]:
    run_env = instrumented_env(
        endpoint=collector.http_endpoint,
        FLOE_MODE="dev",
        FLOE_TELEMETRY_BACKEND="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        DAGSTER_HOME=str(_dagster_home(tmp_path)),
        **env,
    )
    return run_instrumented(
        ["dagster", "job", "execute", "-f", str(APP / module), "-j", job], run_env, cwd=tmp_path, timeout=300
    )


def _by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, (name, sorted(s["name"] for s in spans))
    return found[0]


def _ancestors(span: dict[str, Any], spans: list[dict[str, Any]]) -> list[str]:
    """Names of ``span``'s ancestors, nearest first (fails on a dangling parent)."""
    by_id = {s["span_id"]: s for s in spans}
    names = []
    while span["parent_span_id"]:
        assert span["parent_span_id"] in by_id, f"{span['name']} has a parent that never arrived"
        span = by_id[span["parent_span_id"]]
        names.append(span["name"])
    return names


ASSET_STEP = {
    "raw_orders": "raw_orders",
    "order_count": "order_stats",
    "order_total": "order_stats",
    "order_report": "order_report",
}


def _assert_assets_job(collector: Collector, job: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    wanted = (
        {f"dagster.run {job}"}
        | {f"dagster.step {s}" for s in ASSET_STEP.values()}
        | {f"dagster.asset {a}" for a in ASSET_STEP}
        | {"dagster.assets order_stats"}
    )
    assert collector.wait_for(lambda c: wanted <= {s["name"] for s in c.spans()}, timeout=30), sorted(
        s["name"] for s in collector.spans()
    )
    spans = [s for s in collector.spans() if s["scope"] == DAGSTER_SCOPE]
    run = _by_name(spans, f"dagster.run {job}")
    assert run["parent_span_id"] == ""
    assert run["attributes"]["dagster.job.name"] == job
    assert run["attributes"]["dagster.status"] == "success"
    run_id = run["attributes"]["dagster.run_id"]
    assert {s["trace_id"] for s in spans} == {run["trace_id"]}

    steps = {key: _by_name(spans, f"dagster.step {key}") for key in set(ASSET_STEP.values())}
    for key, step in steps.items():
        assert step["parent_span_id"] == run["span_id"], key
        assert step["attributes"]["dagster.step.key"] == key
        assert step["attributes"]["dagster.op.name"] == key
        assert step["attributes"]["dagster.run_id"] == run_id
        assert step["attributes"]["dagster.status"] == "success"
    # order_stats is a multi-asset step: its assets hang under the `dagster.assets order_stats` span
    group = _by_name(spans, "dagster.assets order_stats")
    assert group["parent_span_id"] == steps["order_stats"]["span_id"]
    parents = {key: steps[key]["span_id"] for key in steps} | {"order_stats": group["span_id"]}
    for asset_key, step_key in ASSET_STEP.items():
        asset = _by_name(spans, f"dagster.asset {asset_key}")
        assert asset["parent_span_id"] == parents[step_key], asset_key
        assert asset["attributes"]["dagster.asset.key"] == asset_key
        assert asset["attributes"]["dagster.run_id"] == run_id
        assert asset["attributes"]["dagster.status"] == "success"
        assert asset["resource"]["process.pid"] == steps[step_key]["resource"]["process.pid"]

    def metrics_arrived(c: Collector) -> bool:
        keys = {p["attributes"].get("floe.asset.key") for p in c.latest_points("floe.pipeline.materializations")}
        runs = c.latest_points("floe.pipeline.run.duration")
        return set(ASSET_STEP) <= keys and bool(runs)

    assert collector.wait_for(metrics_arrived, timeout=30), [m["name"] for m in collector.metrics()]
    runs = collector.latest_points("floe.pipeline.run.duration")
    assert [p["attributes"] for p in runs] == [
        {"floe.pipeline.component": "dagster", "floe.pipeline.name": job, "floe.pipeline.status": "success"}
    ]
    for p in collector.latest_points("floe.pipeline.materializations"):
        assert p["attributes"]["floe.pipeline.component"] == "dagster"
        assert p["attributes"]["floe.materialization.status"] == "success"
        assert int(p["asInt"]) == 1
    return run, steps


@pytest.mark.parametrize(
    ("job", "env"),
    [
        ("assets_job", {}),
        # Dagster's own carrier (on the pickled step command) suffices without generic propagation
        ("assets_job", {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "floe_process_context"}),
        ("assets_job_forkserver", {}),
    ],
    ids=["spawn", "spawn-without-process-context", "forkserver"],
)
def test_multiprocess_run_is_one_trace(collector: Collector, tmp_path: Path, job: str, env: dict[str, str]) -> None:
    """Multiprocess executor: each step in a child process, all spans in the run's trace, parentage intact."""
    proc = _execute(collector, tmp_path, "definitions.py", job, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "multiprocess executor" in proc.stdout + proc.stderr
    run, steps = _assert_assets_job(collector, job)
    run_pid = run["resource"]["process.pid"]
    step_pids = {key: step["resource"]["process.pid"] for key, step in steps.items()}
    assert run_pid not in step_pids.values()
    assert len(set(step_pids.values())) == len(step_pids), step_pids  # one child process per step


def test_in_process_executor_run_is_one_trace(collector: Collector, tmp_path: Path) -> None:
    proc = _execute(collector, tmp_path, "definitions.py", "assets_job_in_process")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run, steps = _assert_assets_job(collector, "assets_job_in_process")
    assert {step["resource"]["process.pid"] for step in steps.values()} == {run["resource"]["process.pid"]}


def test_failing_step_in_child_process(collector: Collector, tmp_path: Path) -> None:
    proc = _execute(collector, tmp_path, "definitions.py", "failing_job")
    assert proc.returncode != 0
    wanted = {"dagster.run failing_job", "dagster.step broken_asset", "dagster.asset broken_asset"}
    assert collector.wait_for(lambda c: wanted <= {s["name"] for s in c.spans()}, timeout=30)
    spans = [s for s in collector.spans() if s["scope"] == DAGSTER_SCOPE]
    run = _by_name(spans, "dagster.run failing_job")
    step = _by_name(spans, "dagster.step broken_asset")
    asset = _by_name(spans, "dagster.asset broken_asset")
    assert step["parent_span_id"] == run["span_id"] and asset["parent_span_id"] == step["span_id"]
    assert step["resource"]["process.pid"] != run["resource"]["process.pid"]
    for span in (run, step, asset):
        assert span["status"].get("code") == ERROR, span["name"]
        assert span["attributes"]["dagster.status"] == "failure"
    (exc,) = [e for e in step["events"] if e["name"] == "exception"]
    exc_attrs = {kv["key"]: kv["value"].get("stringValue") for kv in exc["attributes"]}
    assert exc_attrs["exception.type"] == "ValueError"
    assert "exploded on purpose" in exc_attrs["exception.message"]

    def errors(c: Collector) -> list[dict[str, Any]]:
        return [p for p in c.latest_points("floe.pipeline.errors") if p["attributes"].get("error.type") == "ValueError"]

    assert collector.wait_for(lambda c: bool(errors(c)), timeout=30)
    assert int(errors(collector)[0]["asInt"]) == 1
    statuses = {p["attributes"]["floe.pipeline.status"] for p in collector.latest_points("floe.pipeline.run.duration")}
    assert statuses == {"failure"}


# ---- Dagster + dbt ----------------------------------------------------------------------------------


def _dbt_project(tmp_path: Path) -> Path:
    """A temp copy of jaffle with target/manifest.json (``dbt parse``, not instrumented)."""
    project = tmp_path / "jaffle"
    shutil.copytree(JAFFLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    subprocess.run(
        [str(BIN / "dbt"), "parse", "--profiles-dir", str(project)],
        cwd=project,
        check=True,
        capture_output=True,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "JAFFLE_DUCKDB_PATH": str(project / "j.db")},
    )
    return project


def _dbt_env(project: Path) -> dict[str, str]:
    return {"DAGSTER_APP_DBT_PROJECT_DIR": str(project), "JAFFLE_DUCKDB_PATH": str(project / "jaffle.duckdb")}


def _run_results_ids(project: Path) -> set[str]:
    (run_results,) = list((project / "target").rglob("run_results.json"))
    return {r["unique_id"] for r in json.loads(run_results.read_text())["results"]}


def _dbt_trace(
    collector: Collector, job: str, project: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(all spans, the `dbt build` span, its node spans) once the run and every dbt node arrived."""
    unique_ids = _run_results_ids(project)

    def complete(c: Collector) -> bool:
        spans = c.spans()
        names = {s["name"] for s in spans}
        node_ids = {s["attributes"].get("dbt.node.unique_id") for s in spans}
        return f"dagster.run {job}" in names and "dbt build" in names and unique_ids <= node_ids

    assert collector.wait_for(complete, timeout=60), sorted({s["name"] for s in collector.spans()})
    spans = collector.spans()
    assert len({s["trace_id"] for s in spans}) == 1, sorted({(s["trace_id"], s["name"]) for s in spans})
    invocation = _by_name(spans, "dbt build")
    nodes = [s for s in spans if "dbt.node.unique_id" in s["attributes"]]
    return spans, invocation, nodes


def _assert_dbt_nodes(
    spans: list[dict[str, Any]], invocation: dict[str, Any], nodes: list[dict[str, Any]], project: Path
) -> None:
    """Every node in the invocation's run_results.json has a span under the `dbt build` span."""
    unique_ids = _run_results_ids(project)
    assert len(unique_ids) > 20
    assert {n["attributes"]["dbt.node.unique_id"] for n in nodes} == unique_ids
    for node in nodes:
        assert "dbt build" in _ancestors(node, spans), node["name"]
    assert invocation["attributes"]["dbt.project.name"] == "jaffle"


def test_dagster_dbt_assets_one_trace(collector: Collector, tmp_path: Path) -> None:
    """@dbt_assets (one multi-asset step running `dbt build` through DbtCliResource, i.e. a subprocess):
    run → step → assets (the multi-asset compute) → dbt build → every dbt node; one dagster.asset span per
    materialized dbt asset under the same assets span."""
    project = _dbt_project(tmp_path)
    proc = _execute(collector, tmp_path, "dbt_definitions.py", "dbt_job", **_dbt_env(project))
    # the jaffle build has one failing data test: a blocking asset check, so the step and run fail
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "assert_order_amounts_positive" in proc.stdout + proc.stderr
    spans, invocation, nodes = _dbt_trace(collector, "dbt_job", project)
    run = _by_name(spans, "dagster.run dbt_job")
    step = _by_name(spans, "dagster.step jaffle_dbt_assets")
    group = _by_name(spans, "dagster.assets jaffle_dbt_assets")
    assert _ancestors(invocation, spans) == [
        "dagster.assets jaffle_dbt_assets",
        "dagster.step jaffle_dbt_assets",
        "dagster.run dbt_job",
    ]
    assert "orders" in group["attributes"]["dagster.asset.keys"]
    assert (
        len({run["resource"]["process.pid"], step["resource"]["process.pid"], invocation["resource"]["process.pid"]})
        == 3
    )
    _assert_dbt_nodes(spans, invocation, nodes, project)

    assets = {s["attributes"]["dagster.asset.key"]: s for s in spans if s["name"].startswith("dagster.asset ")}
    for model in ("stg_orders", "orders", "customers", "raw_orders", "customers_snapshot"):
        assert assets[model]["parent_span_id"] == group["span_id"]
        assert assets[model]["attributes"]["dagster.status"] == "success"
    # customer_revenue is skipped by dbt (its upstream test failed): never materialized
    assert assets["customer_revenue"]["attributes"]["dagster.status"] == "failure"
    assert step["status"].get("code") == ERROR and run["status"].get("code") == ERROR


def test_dagster_asset_running_dbt_subprocess_one_trace(collector: Collector, tmp_path: Path) -> None:
    """A plain @asset that runs `dbt build` as a subprocess: run → step → asset → dbt build → nodes."""
    project = _dbt_project(tmp_path)
    proc = _execute(collector, tmp_path, "dbt_definitions.py", "dbt_subprocess_job", **_dbt_env(project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spans, invocation, nodes = _dbt_trace(collector, "dbt_subprocess_job", project)
    assert _ancestors(invocation, spans) == [
        "dagster.asset dbt_build_subprocess",
        "dagster.step dbt_build_subprocess",
        "dagster.run dbt_subprocess_job",
    ]
    _assert_dbt_nodes(spans, invocation, nodes, project)
    asset = _by_name(spans, "dagster.asset dbt_build_subprocess")
    assert asset["attributes"]["dagster.status"] == "success"
    assert invocation["resource"]["process.pid"] != asset["resource"]["process.pid"]


def test_failing_run_logs_are_records_on_their_spans(collector: Collector, tmp_path: Path) -> None:
    """Issue 11: Dagster's events reach the logs pipeline with the step's / run's trace and span ids."""
    proc = _execute(collector, tmp_path, "definitions.py", "failing_job")
    assert proc.returncode != 0

    def failure_logged(c: Collector) -> bool:
        types = {r["attributes"].get("dagster.event_type") for r in c.logs()}
        names = {s["name"] for s in c.spans()}
        return {"STEP_FAILURE", "RUN_FAILURE"} <= types and "dagster.step broken_asset" in names

    assert collector.wait_for(failure_logged, timeout=30)
    spans = [s for s in collector.spans() if s["scope"] == DAGSTER_SCOPE]
    run = _by_name(spans, "dagster.run failing_job")
    step = _by_name(spans, "dagster.step broken_asset")
    asset = _by_name(spans, "dagster.asset broken_asset")
    records = [r for r in collector.logs() if "dagster.run_id" in r["attributes"]]
    assert records and all(r["trace_id"] == run["trace_id"] for r in records), records
    (failure,) = [r for r in records if r["attributes"].get("dagster.event_type") == "STEP_FAILURE"]
    assert failure["severity"] == "ERROR"
    assert failure["span_id"] in {step["span_id"], asset["span_id"]}  # logged in the step's child process
    assert "broken_asset exploded on purpose" in failure["body"]
    assert failure["resource"]["process.pid"] == step["resource"]["process.pid"]
    (run_failure,) = [r for r in records if r["attributes"].get("dagster.event_type") == "RUN_FAILURE"]
    assert run_failure["span_id"] == run["span_id"]
    starts = [r for r in records if r["attributes"].get("dagster.event_type") == "STEP_START"]
    assert [r["attributes"]["dagster.step.key"] for r in starts] == ["broken_asset"]
    assert starts[0]["span_id"] in {step["span_id"], asset["span_id"]}
