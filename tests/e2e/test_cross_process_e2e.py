"""End to end: one trace across subprocess / multiprocessing spawn+forkserver children, and correlated logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import Collector
from tests.support.run import instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e

CHILD = """
import sys
from opentelemetry import trace

with trace.get_tracer("e2e.child").start_as_current_span("child-" + sys.argv[1]):
    pass
"""

PARENT = """
import json, logging, multiprocessing, subprocess, sys

import structlog
from opentelemetry import trace

CHILD = sys.argv[1]
MODE = sys.argv[2]


def mp_child(label):
    with trace.get_tracer("e2e.child").start_as_current_span("child-" + label):
        pass


def main():
    # the app configures structlog itself, after the distro has loaded (no trace processor of its own)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(),
    )
    tracer = trace.get_tracer("e2e.parent")
    with tracer.start_as_current_span("parent") as span:
        logging.getLogger("e2e.parent").warning("stdlib line")
        structlog.get_logger().warning("structlog line", table="orders")
        subprocess.run([sys.executable, CHILD, "subprocess"], check=True)
        if MODE == "full":
            for method in ("spawn", "forkserver"):
                proc = multiprocessing.get_context(method).Process(target=mp_child, args=(method,))
                proc.start()
                proc.join(60)
                assert proc.exitcode == 0, (method, proc.exitcode)
        sc = span.get_span_context()
        print(json.dumps({"trace_id": f"{sc.trace_id:032x}", "span_id": f"{sc.span_id:016x}"}))


if __name__ == "__main__":
    main()
"""


def _run(collector: Collector, tmp_path: Path, mode: str, **extra: str) -> dict[str, Any]:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    env = instrumented_env(endpoint=collector.http_endpoint, FLOE_MODE="dev", FLOE_TELEMETRY_BACKEND="otlp", **extra)
    proc = run_instrumented([sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "child.py"), mode], env,
                            cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    json_lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {"ids": json_lines[-1], "structlog": [j for j in json_lines if j.get("event") == "structlog line"]}


def _spans_by_name(collector: Collector, names: set[str]) -> dict[str, dict[str, Any]]:
    assert collector.wait_for(lambda c: names <= {s["name"] for s in c.spans()}), [s["name"] for s in collector.spans()]
    return {s["name"]: s for s in collector.spans() if s["name"] in names}


def test_one_trace_across_subprocess_spawn_and_forkserver_children(collector: Collector, tmp_path: Path) -> None:
    """The subprocess, spawn and forkserver children's spans are children of the parent's span, in one trace."""
    out = _run(collector, tmp_path, "full")
    names = {"parent", "child-subprocess", "child-spawn", "child-forkserver"}
    spans = _spans_by_name(collector, names)
    parent = spans["parent"]
    assert parent["trace_id"] == out["ids"]["trace_id"] and parent["span_id"] == out["ids"]["span_id"]
    assert parent["parent_span_id"] == ""
    for name in names - {"parent"}:
        assert spans[name]["trace_id"] == parent["trace_id"], name
        assert spans[name]["parent_span_id"] == parent["span_id"], name
    assert len({s["resource"].get("process.pid") for s in spans.values()}) == 4  # four real processes


def test_log_lines_inside_a_span_carry_its_ids(collector: Collector, tmp_path: Path) -> None:
    """stdlib and structlog lines emitted inside a span reach the collector with that span's trace/span id."""
    out = _run(collector, tmp_path, "simple")
    trace_id, span_id = out["ids"]["trace_id"], out["ids"]["span_id"]
    wanted = {"stdlib line", "structlog line"}
    assert collector.wait_for(lambda c: wanted <= {r["body"] for r in c.logs()}), collector.logs()
    for record in collector.logs():
        if record["body"] in wanted:
            assert (record["trace_id"], record["span_id"]) == (trace_id, span_id), record
    structlog_record = next(r for r in collector.logs() if r["body"] == "structlog line")
    assert structlog_record["attributes"]["table"] == "orders"
    assert [r["body"] for r in collector.logs()].count("structlog line") == 1  # exported once
    (line,) = out["structlog"]  # the app's own rendered line carries the ids too
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)


def test_caller_traceparent_is_continued(collector: Collector, tmp_path: Path) -> None:
    """A TRACEPARENT given to the top-level process makes its root span a child of the caller's span."""
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    out = _run(collector, tmp_path, "simple", TRACEPARENT=f"00-{trace_id}-{caller_span}-01")
    spans = _spans_by_name(collector, {"parent", "child-subprocess"})
    assert out["ids"]["trace_id"] == trace_id
    assert spans["parent"]["trace_id"] == trace_id and spans["parent"]["parent_span_id"] == caller_span
    assert spans["child-subprocess"]["trace_id"] == trace_id
    assert spans["child-subprocess"]["parent_span_id"] == spans["parent"]["span_id"]


def test_malformed_traceparent_starts_a_new_root(collector: Collector, tmp_path: Path) -> None:
    """A malformed TRACEPARENT is ignored: exit 0, the parent span is a new root, its child still joins it."""
    out = _run(collector, tmp_path, "simple", TRACEPARENT="00-not-a-valid-traceparent-01")
    spans = _spans_by_name(collector, {"parent", "child-subprocess"})
    assert spans["parent"]["parent_span_id"] == "" and spans["parent"]["trace_id"] == out["ids"]["trace_id"]
    assert spans["child-subprocess"]["parent_span_id"] == spans["parent"]["span_id"]
