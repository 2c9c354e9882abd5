"""Overhead of the floe distro on a real `dbt build`: plain dbt vs `opentelemetry-instrument dbt build`.

Builds the generated bench project (benchmarks/make_dbt_project.py: ≥ 20 models + tests, all green,
threads: 4) with dbt-duckdb, exporting OTLP/http to a real collector (tests/support/collector.py). Runs are
interleaved round by round (plain, prod, full, plain, …) so machine noise hits all variants alike:

* ``plain``  - ``dbt build`` with no OTel at all (the baseline);
* ``prod``   - ``opentelemetry-instrument dbt build`` with FLOE_MODE=prod (10 % trace sampling, metrics on);
* ``full``   - the same at 100 % sampling (OTEL_TRACES_SAMPLER=parentbased_always_on).

Prints the median wall time of each and its overhead over plain; exits 1 if prod overhead ≥ --target %.

    .venv/bin/python benchmarks/dbt_overhead.py [--rounds 7] [--models 24] [--target 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_dbt_project import make_project  # noqa: E402

from tests.support.collector import Collector  # noqa: E402
from tests.support.run import BIN, instrumented_env  # noqa: E402


def _plain_env(base: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in base.items() if not k.startswith(("OTEL_", "FLOE_"))}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--target", type=float, default=5.0, help="max prod overhead in percent")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="floe-dbt-bench-") as tmp:
        work = Path(tmp)
        project = make_project(work / "bench", models=args.models)
        (work / "collector").mkdir()
        collector = Collector(work / "collector")
        try:
            base = instrumented_env(collector.http_endpoint, FLOE_MODE="prod", FLOE_TELEMETRY_BACKEND="otlp")
            base["BENCH_DUCKDB_PATH"] = str(work / "bench.duckdb")
            plain = _plain_env(base)
            full = {**base, "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
            dbt = [str(BIN / "dbt"), "build", "--profiles-dir", str(project)]
            instrumented = [str(BIN / "opentelemetry-instrument"), *dbt]
            variants = {"plain": (dbt, plain), "prod": (instrumented, base), "full": (instrumented, full)}

            _run(dbt, plain, project)  # warm-up: OS caches, partial-parse file, DuckDB file
            _run(instrumented, full, project)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for i in range(args.rounds):
                order = list(variants) if i % 2 == 0 else list(reversed(variants))
                for name in order:
                    cmd, env = variants[name]
                    times[name].append(_run(cmd, env, project))
                print(f"round {i + 1}/{args.rounds}: " + "  ".join(f"{n}={times[n][-1]:.2f}s" for n in variants))

            spans = len(collector.spans())
            nodes = sum(1 for s in collector.spans() if "dbt.node.unique_id" in s["attributes"])
        finally:
            collector.stop()

    base_median = statistics.median(times["plain"])
    print(f"\ndbt build of {args.models} models + {args.models * 2} tests, {args.rounds} interleaved rounds")
    print(f"{'variant':<8} {'median s':>9} {'min s':>7} {'overhead':>9}")
    overhead: dict[str, float] = {}
    for name, values in times.items():
        med = statistics.median(values)
        overhead[name] = (med / base_median - 1) * 100
        print(f"{name:<8} {med:>9.3f} {min(values):>7.3f} {overhead[name]:>+8.1f}%")
    print(f"collector received {spans} spans ({nodes} dbt node spans)")
    ok = overhead["prod"] < args.target
    print(f"prod overhead {overhead['prod']:+.1f}% (target < {args.target:g}%): {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
