"""What a hostile input costs at start-up: ``build_plan`` over every case of the hostile-input catalogue.

The catalogue is the end-to-end one (``tests/e2e/test_hostile_inputs_e2e.py``); here each case's plan is
built in-process (the part of start-up an input can make slow: reading and checking it), median of 5, and
compared with the same build for a clean environment. Target (issue 9): at most 50 ms per hostile input.

    python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floe_otel_distro.backends import forget_installed
from floe_otel_distro.plan import Inputs, build_plan
from tests.e2e.test_hostile_inputs_e2e import catalogue

BASE = {"FLOE_MODE": "prod", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def cost_ms(env: dict[str, str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        forget_installed()  # each start scans the environment's entry points once
        start = time.perf_counter()
        build_plan(Inputs(env))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    cases = catalogue(Path(tempfile.mkdtemp()))
    clean = cost_ms(BASE)
    costs = sorted(((cost_ms({**BASE, **c.env}), c.id) for c in cases), reverse=True)
    print(f"clean environment: {clean:.1f} ms per plan; {len(cases)} hostile cases")
    print(f"median {statistics.median(c for c, _ in costs):.1f} ms, worst {costs[0][0]:.1f} ms ({costs[0][1]})")
    for ms, case in costs[:8]:
        print(f"  {ms:7.1f} ms  {case}")
    over = [case for ms, case in costs if ms - clean > 50]
    print(f"over 50 ms beyond the clean plan: {len(over)}")


if __name__ == "__main__":
    main()
