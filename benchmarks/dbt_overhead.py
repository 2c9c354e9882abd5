"""Overhead of the floe distro on a real `dbt build`: plain dbt vs `opentelemetry-instrument dbt build`.

Builds the generated bench project (benchmarks/make_dbt_project.py: ≥ 20 models + tests, all green,
threads: 4) with dbt-duckdb, exporting OTLP/http to a real collector (tests/support/collector.py). Runs are
interleaved round by round (plain, distro, prod, full, …) so machine noise hits all variants alike:

* ``plain``  - ``dbt build`` with no OTel at all (the baseline);
* ``distro`` - ``opentelemetry-instrument dbt build``, FLOE_MODE=prod, but the dbt instrumentor disabled
  (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_dbt): the distro's fixed start-up/shutdown cost alone;
* ``prod``   - ``opentelemetry-instrument dbt build`` with FLOE_MODE=prod (10 % trace sampling, metrics on);
* ``full``   - the same at 100 % sampling (OTEL_TRACES_SAMPLER=parentbased_always_on).

Prints median wall and CPU (user+sys) time of each and the overhead over plain; exits 1 if prod overhead ≥ --target %.

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


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of the dbt process and its children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{out.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


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
            distro = {**base, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "floe_dbt"}
            variants = {
                "plain": (dbt, plain),
                "distro": (instrumented, distro),
                "prod": (instrumented, base),
                "full": (instrumented, full),
            }

            _run(dbt, plain, project)  # warm-up: OS caches, partial-parse file, DuckDB file
            _run(instrumented, full, project)
            times: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            for i in range(args.rounds):
                order = list(variants) if i % 2 == 0 else list(reversed(variants))
                for name in order:
                    command, env = variants[name]
                    wall, cpu_s = _run(command, env, project)
                    times[name].append(wall)
                    cpu[name].append(cpu_s)
                print(f"round {i + 1}/{args.rounds}: " + "  ".join(f"{n}={times[n][-1]:.2f}s" for n in variants))

            spans = len(collector.spans())
            nodes = sum(1 for s in collector.spans() if "dbt.node.unique_id" in s["attributes"])
        finally:
            collector.stop()

    base_wall = statistics.median(times["plain"])
    base_cpu = statistics.median(cpu["plain"])
    print(f"\ndbt build of {args.models} models + {args.models * 2} tests, {args.rounds} interleaved rounds")
    print(f"{'variant':<8} {'wall med s':>14} {'wall min':>11} {'overhead':>9} {'cpu med s':>13} {'overhead':>9}")
    overhead: dict[str, float] = {}
    for name in variants:
        wall_med, cpu_med = statistics.median(times[name]), statistics.median(cpu[name])
        overhead[name] = (wall_med / base_wall - 1) * 100
        cpu_over = (cpu_med / base_cpu - 1) * 100
        print(
            f"{name:<8} {wall_med:>14.3f} {min(times[name]):>11.3f} {overhead[name]:>+8.1f}% "
            f"{cpu_med:>13.3f} {cpu_over:>+8.1f}%"
        )
    print(f"collector received {spans} spans ({nodes} dbt node spans)")
    dbt_only = (statistics.median(cpu["prod"]) - statistics.median(cpu["distro"])) / base_cpu * 100
    print(f"dbt instrumentor alone (prod - distro, CPU): {dbt_only:+.1f}%")
    ok = overhead["prod"] < args.target
    print(f"prod overhead {overhead['prod']:+.1f}% (target < {args.target:g}%): {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
