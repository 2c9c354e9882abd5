"""Traffic for the scale-out proof: N traces of 3 spans each, run under opentelemetry-instrument (floe distro).

Usage: scale_out_app.py N SEED OUT.jsonl [SECONDS [GATE]]
  Trace i is a pipeline run when i % 10 == 3 (root "dbt build" with dbt.command / floe.pipeline.id, the
  attributes the dbt instrumentation sets; every other one of them a "dagster.run" root with floe.pipeline.id
  only), an error when i % 10 == 7 (a child span with status ERROR), ordinary otherwise. One JSON line per
  trace goes to OUT.jsonl: {"trace_id", "kind", "half"}. With SECONDS the traces are spread evenly over that
time; with GATE (a path) the process prints "half", flushes, and waits for GATE to exist before the 2nd half.
"""

import json
import sys
import time
import uuid
from pathlib import Path

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
gate = Path(sys.argv[5]) if len(sys.argv) > 5 else None
tracer = trace.get_tracer("scale_out_app")
start = time.monotonic()
with open(out, "w") as sink:
    for i in range(n):
        if gate is not None and i == n // 2:
            sink.flush()
            trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
            print("half", flush=True)
            deadline = time.monotonic() + 60
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            start = time.monotonic() - seconds / 2
        kind = "pipeline" if i % 10 == 3 else "error" if i % 10 == 7 else "plain"
        if kind == "pipeline" and (i // 10) % 2:
            name, attributes = "dagster.run nightly", {"floe.pipeline.id": str(uuid.uuid4()),
                                                       "floe.job.type": "dagster_run"}
        elif kind == "pipeline":
            name, attributes = "dbt build", {"dbt.command": "build", "floe.pipeline.id": str(uuid.uuid4()),
                                             "floe.job.type": "dbt_build"}
        else:
            name, attributes = "request", {"proof.seq": i}
        with tracer.start_as_current_span(name, attributes=attributes) as root:
            for step in ("load", "transform"):
                with tracer.start_as_current_span(step) as child:
                    if kind == "error" and step == "transform":
                        child.set_status(Status(StatusCode.ERROR, "boom"))
            trace_id = format(root.get_span_context().trace_id, "032x")
        sink.write(json.dumps({"trace_id": trace_id, "kind": kind, "half": 1 + (i >= n // 2), "seed": seed}) + "\n")
        sink.flush()
        if seconds:
            delay = start + seconds * (i + 1) / n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
print("done", n, flush=True)
