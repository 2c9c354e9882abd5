"""Overhead of the floe distro on a real `dbt build`: plain dbt vs `opentelemetry-instrument dbt build`.

Builds the generated bench project (benchmarks/make_dbt_project.py: ≥ 20 models + tests, all green,
threads: 4) with dbt-duckdb, exporting OTLP/http to a real collector (tests/support/collector.py). Runs are
interleaved round by round (plain, distro, prod, full, …) so machine noise hits all variants alike:

* ``plain``  - ``dbt build`` with no OTel at all (the baseline);
* ``distro`` - ``opentelemetry-instrument dbt build``, FLOE_MODE=prod, but the dbt instrumentor disabled
  (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_dbt): the distro's fixed start-up/shutdown cost alone;
* ``prod``   - ``opentelemetry-instrument dbt build`` with FLOE_MODE=prod (10 % trace sampling, metrics on);
* ``full``   - the same at 100 % sampling (OTEL_TRACES_SAMPLER=parentbased_always_on);
* ``fullscan`` - ``full`` with dbt's own per-line ``os.environ`` scan kept (floe_dbt_secrets off): the
  other variants have dbt's secret lookup answered from a cache while the environment is unchanged, which
  saves dbt ~1 µs per variable per log line; this one shows the distro's cost without that saving.

Full visibility is on in ``prod`` and ``full``: node spans (with DAG links), metrics (incl.
``floe.pipeline.node.duration``) and dbt's events as log records (FLOE_LOG_LEVEL=INFO).

Prints median wall and CPU (user+sys) time of each, the overhead over plain both as ratio of medians and
as the *pairwise* median (median over rounds of variant/plain in the same round, robust to drift), and
the dbt instrumentor's CPU cost per node ((full - distro) CPU / nodes), with a 90 % bootstrap interval of
each pairwise median (resampled rounds, fixed seed). Exits 1 if the pairwise prod ratio is over --target-prod
or the full one over --target-full; the verdict says "within noise" where the interval straddles a target.

Every build runs on one CPU (``--cpus``, default the last one), the collector on the others: a pod with a
1-CPU limit and its collector elsewhere. On this 2-vCPU machine that cut the spread of identical plain builds
from 7.9 % to 3.4 % (dbt's threads hand the GIL across vCPUs otherwise) and leaves the distro's batch threads
no idle CPU to hide on: the conservative case. ``--cpus all`` leaves scheduling alone.
``--operator`` starts the instrumented variants as the OTel Operator does (``PYTHONPATH`` to upstream's
``sitecustomize``) instead of through the ``opentelemetry-instrument`` launcher, whose own start (an extra
interpreter importing the instrumentation package, ~0.1 s here) the Operator path does not pay.

    .venv/bin/python benchmarks/dbt_overhead.py [--rounds 7] [--models 24 | --demo] [--target-prod 1.02]
                                                [--cpus all | 0,1] [--operator]

``--instructions`` counts the instructions of one build per variant under valgrind's callgrind (plain, and
the distro on the Operator path, ``PYTHONPATH`` to upstream's sitecustomize, no launcher): a figure the
machine's load does not move, ~50x slower than a build.
``--demo`` builds floe's demo project (tests/projects/jaffle: one failing test, so dbt exits 1 there).
``--hooks`` measures, in-process and deterministically enough for a loaded machine, the CPU the dbt
instrumentor's own code spends on dbt's threads (node span start/end, event callback, invocation span),
with thread CPU clocks, per node: sampled (100 %) and unsampled, with the logs and metrics SDKs on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_dbt_project import make_project  # noqa: E402

from floe_otel_distro.plan import DEFAULT_DETECTORS  # noqa: E402
from tests.support.collector import Collector  # noqa: E402
from tests.support.run import BIN, instrumented_env  # noqa: E402


def _interval(ratios: list[float], level: float = 0.9, resamples: int = 4000) -> tuple[float, float]:
    """A ``level`` bootstrap interval of the median of ``ratios`` (rounds resampled with replacement, fixed seed)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return medians[int(resamples * (1 - level) / 2)], medians[int(resamples * (1 + level) / 2) - 1]


def _verdict(point: float, low: float, high: float, target: float) -> str:
    """OK when the whole interval is under ``target``, OVER when all of it is above, else what the point says."""
    if high <= target:
        return "OK"
    if low > target:
        return "OVER"
    return f"{'OK' if point <= target else 'OVER'} (within noise: the interval straddles the target)"


def _cpu_sets(spec: str) -> tuple[set[int] | None, set[int] | None]:
    """(the builds' CPUs, the collector's CPUs) for ``--cpus``; (None, None) for ``all`` (no pinning)."""
    if spec == "all":
        return None, None
    available = sorted(os.sched_getaffinity(0))
    builds = {available[-1]} if spec == "last" else {int(c) for c in spec.split(",")}
    rest = set(available) - builds
    return builds, rest or None


_VARIANTS = ("distro", "prod", "full", "fullscan")  # beside plain, which always runs


def _variant_names(value: str) -> list[str]:
    """``--variants``: a comma-separated subset of _VARIANTS (an unknown name is an error, never a silent pass)."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(_VARIANTS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{unknown or value!r}: choose from {', '.join(_VARIANTS)}")
    return names


def _auto_dir() -> Path:
    """Upstream's ``auto_instrumentation`` folder (its ``sitecustomize``): what the OTel Operator puts on PYTHONPATH."""
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"]) / "opentelemetry" / "instrumentation" / "auto_instrumentation"


def _plain_env(base: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in base.items() if not k.startswith(("OTEL_", "FLOE_"))}


def _run(cmd: list[str], env: dict[str, str], cwd: Path, ok_codes: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of the dbt process and its children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{out.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def _links(collector: Collector) -> int:
    """Span links the collector received (its span view has none: read its OTLP JSON file)."""
    count = 0
    for line in (collector.workdir / "traces.jsonl").read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", []) if line.strip() else []:
            for ss in rs.get("scopeSpans", []):
                count += sum(len(sp.get("links") or []) for sp in ss.get("spans", []))
    return count


def _hook_cost(project: Path, env_var: str, duckdb: Path, sampled: bool, rounds: int) -> tuple[float, int, int]:
    """(median CPU seconds spent in the instrumentor's hooks per build, nodes, log records), in-process."""
    import threading

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    from floe_otel_distro.instrumentation import dbt as dbt_instr

    spent = [0.0]
    lock = threading.Lock()

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.thread_time() - start
                with lock:
                    spent[0] += elapsed

        return wrapper

    originals = {n: getattr(dbt_instr, n) for n in ("_node_begin", "_node_end", "_begin_invocation", "_end_invocation")}
    original_callback = dbt_instr._event_callback
    for name, fn in originals.items():
        setattr(dbt_instr, name, timed(fn))
    dbt_instr._event_callback = lambda installed, invocation: timed(original_callback(installed, invocation))
    os.environ[env_var] = str(duckdb)
    costs: list[float] = []
    nodes = logs = 0
    try:
        from dbt.cli.main import dbtRunner

        for _ in range(rounds):
            spans, records = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
            tracer_provider = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
            tracer_provider.add_span_processor(BatchSpanProcessor(spans))
            logger_provider = LoggerProvider()
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(records))
            meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            instrumentor = dbt_instr.DbtInstrumentor()
            instrumentor.instrument(
                tracer_provider=tracer_provider, meter_provider=meter_provider, logger_provider=logger_provider
            )
            spent[0] = 0.0
            try:
                result = dbtRunner().invoke(
                    ["build", "-q", "--project-dir", str(project), "--profiles-dir", str(project)]
                )
            finally:
                instrumentor.uninstrument()
            costs.append(spent[0])
            nodes = len(getattr(result.result, "results", []) or [])
            logger_provider.force_flush()
            logs = len(records.get_finished_logs())
            tracer_provider.shutdown()
            logger_provider.shutdown()
    finally:
        for name, fn in originals.items():
            setattr(dbt_instr, name, fn)
        dbt_instr._event_callback = original_callback
    return statistics.median(costs), nodes, logs


def _project(args: argparse.Namespace, work: Path) -> tuple[Path, str, tuple[int, ...], str]:
    """(project dir, label, dbt's accepted exit codes, its DuckDB path variable): the demo or a generated one."""
    if args.demo:  # floe's demo has one failing test: dbt exits 1
        project = work / "jaffle"
        shutil.copytree(REPO / "tests" / "projects" / "jaffle", project, ignore=shutil.ignore_patterns("target"))
        return project, "floe demo project (tests/projects/jaffle)", (0, 1), "JAFFLE_DUCKDB_PATH"
    project = make_project(work / "bench", models=args.models)
    return project, f"generated project, {args.models} models + {args.models * 2} tests", (0,), "BENCH_DUCKDB_PATH"


def _hooks_main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="floe-dbt-hooks-") as tmp:
        work = Path(tmp)
        project, label, _, env_var = _project(args, work)
        print(f"in-process hook CPU on dbt's threads, {label}, median of {args.rounds} builds")
        for sampled in (True, False):
            cost, nodes, logs = _hook_cost(project, env_var, work / "hooks.duckdb", sampled, args.rounds)
            print(
                f"{'sampled  ' if sampled else 'unsampled'}: {cost * 1000:8.1f} ms per build, {nodes} nodes, "
                f"{cost / max(nodes, 1) * 1e6:7.0f} us per node, {logs} log records"
            )
    return 0


def _callgrind(command: list[str], env: dict[str, str], cwd: Path, out: Path, ok_codes: tuple[int, ...]) -> int:
    """Instructions ``command`` and the processes it starts execute under callgrind (every thread), from its files.

    Children count: dbt starts multiprocessing's resource tracker (a Python process living as long as the
    build), which an instrumented environment used to instrument too (~180 ms of CPU per build, invisible
    to a count of the dbt process alone).
    """
    out.mkdir(parents=True)
    _run(["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}/cg.%p", *command],
         env, cwd, ok_codes)
    total = 0
    for f in out.glob("cg.*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("summary:"):
                total += int(line.split()[1])
                break
    return total


def _base_env(collector: Collector, work: Path) -> dict[str, str]:
    """The instrumented env of every variant: prod mode, OTLP to ``collector``, full visibility, DuckDB in ``work``."""
    base = instrumented_env(collector.http_endpoint, FLOE_MODE="prod", FLOE_TELEMETRY_BACKEND="otlp")
    base["BENCH_DUCKDB_PATH"] = str(work / "bench.duckdb")
    base["JAFFLE_DUCKDB_PATH"] = str(work / "jaffle.duckdb")
    base["FLOE_LOG_LEVEL"] = "INFO"
    return base


# ~50x slower under valgrind: the exit flush gets a larger budget. The SDK's timers are left alone: scaled
# by 50 (batch export every 250 s instead of 5 s) a 50-model build counted the same within 0.1 %.
_UNDER_VALGRIND = {"FLOE_SHUTDOWN_TIMEOUT": "60"}
# full, but dbt's own secret scan of os.environ at every log line kept (floe_dbt_secrets off): what the distro
# would cost without making that scan O(1), i.e. the distro's own work with the environment's cost left in
_FULL_SCAN = {
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "floe_dbt_secrets",
}


def _instructions_main(args: argparse.Namespace) -> int:
    """Deterministic overhead: instructions of one build, bare vs the distro on the Operator path (no launcher)."""
    with tempfile.TemporaryDirectory(prefix="floe-dbt-instr-") as tmp:
        work = Path(tmp)
        project, label, ok_codes, _ = _project(args, work)
        (work / "collector").mkdir()
        collector = Collector(work / "collector")
        try:
            base = _base_env(collector, work) | _UNDER_VALGRIND
            auto = _auto_dir()
            operator = {**base, "PYTHONPATH": str(auto)}  # what the OTel Operator injects
            # one dbt thread: with 4, dbt's template cache (keyed by macro text, no lock) compiles a macro again
            # whenever two threads miss it at once, 10-40 extra compiles (~6 M instructions each) that move with
            # the threads' interleaving, i.e. with any change of timing; the per-node work is the same either way
            dbt = [str(BIN / "dbt"), "build", "--threads", "1", "--profiles-dir", str(project)]
            # the same variables, the distro not loaded: dbt scans os.environ at every event (its secret
            # scrubbing), so each variable costs instructions whoever reads it; the detectors' variable is
            # the one the installer adds at start-up
            no_distro = {
                **operator,
                "PYTHONPATH": "/nonexistent/" + "x" * max(len(str(auto)) - 13, 0),
                "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": ",".join(DEFAULT_DETECTORS),
            }
            variants = {
                "plain": _plain_env(base),
                "env": no_distro,
                "distro": {**operator, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "floe_dbt"},
                "prod": operator,
                "full": {**operator, "OTEL_TRACES_SAMPLER": "parentbased_always_on"},
                "fullscan": {**operator, **_FULL_SCAN},
            }
            from concurrent.futures import ThreadPoolExecutor

            def count(name: str) -> int:  # each variant its own copy (two builds run at once: DuckDB locks)
                copy, db = work / f"{name}-project", str(work / f"{name}.duckdb")
                shutil.copytree(project, copy)
                env = {**variants[name], "BENCH_DUCKDB_PATH": db, "JAFFLE_DUCKDB_PATH": db}
                command = [*dbt[:-1], str(copy)]
                _run(command, _plain_env(env), copy, ok_codes)  # warm-up: partial parse, the DuckDB file
                return _callgrind(command, env, copy, work / name, ok_codes)

            with ThreadPoolExecutor(max_workers=2) as pool:  # counts do not depend on the load: two at a time
                jobs = {name: pool.submit(count, name) for name in variants}
                counts = {name: job.result() for name, job in jobs.items()}
        finally:
            collector.stop()
    print(f"instructions of one `dbt build` of the {label} (callgrind, all threads; distro on the Operator path)")
    print(f"{'variant':<8} {'instr':>10} {'x plain':>8} {'x env':>7}")
    for name, count in counts.items():
        print(f"{name:<8} {count / 1e9:8.3f} G {count / counts['plain']:8.4f} {count / counts['env']:7.4f}")
    print(
        f"env - plain: {(counts['env'] - counts['plain']) / 1e6:.0f} M instructions for "
        f"{len(variants['env']) - len(variants['plain'])} more variables (dbt's per-event os.environ scan)"
    )
    return 0


def _byte_compile_distro() -> None:
    """Byte-compile the distro's sources, as ``pip install`` does for the wheel users run.

    The benchmark runs the checkout's editable install; with ``PYTHONDONTWRITEBYTECODE`` set (as on this
    machine) every instrumented process would compile the distro's ~36 modules from source again, ~0.14 s of
    CPU (~0.4 G instructions) that no installed distro pays. ``.pyc`` files are read even then.
    """
    import compileall

    for folder in ("floe_otel_distro", "configurators"):
        compileall.compile_dir(str(REPO / folder), quiet=1)


def main() -> int:
    _byte_compile_distro()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--demo", action="store_true", help="build tests/projects/jaffle instead")
    parser.add_argument("--target-prod", type=float, default=1.02, help="max pairwise wall ratio, prod sampling")
    parser.add_argument("--target-full", type=float, default=1.05, help="max pairwise wall ratio, 100 %% sampling")
    parser.add_argument("--hooks", action="store_true", help="in-process CPU of the instrumentor's hooks only")
    parser.add_argument("--instructions", action="store_true", help="callgrind instruction counts, one build each")
    parser.add_argument("--cpus", default="last", help="CPUs of every build: 'last' (default), '1', '0,1' or 'all'")
    parser.add_argument("--operator", action="store_true", help="instrumented variants on the Operator path")
    parser.add_argument(
        "--variants",
        type=_variant_names,
        default=list(_VARIANTS),
        help="the instrumented variants to run beside plain (default distro,prod,full,fullscan)",
    )
    args = parser.parse_args()
    if args.hooks:
        return _hooks_main(args)
    if args.instructions:
        return _instructions_main(args)

    with tempfile.TemporaryDirectory(prefix="floe-dbt-bench-") as tmp:
        work = Path(tmp)
        project, label, ok_codes, _ = _project(args, work)
        (work / "collector").mkdir()
        build_cpus, collector_cpus = _cpu_sets(args.cpus)
        if collector_cpus:  # the collector's threads inherit this process's CPUs; the builds then get theirs
            os.sched_setaffinity(0, collector_cpus)
        collector = Collector(work / "collector")
        if build_cpus:
            os.sched_setaffinity(0, build_cpus)
        try:
            base = _base_env(collector, work)
            plain = _plain_env(base)
            dbt = [str(BIN / "dbt"), "build", "--profiles-dir", str(project)]
            if args.operator:  # what the OTel Operator injects: upstream's sitecustomize on PYTHONPATH
                base = {**base, "PYTHONPATH": str(_auto_dir())}
                instrumented = dbt
            else:
                instrumented = [str(BIN / "opentelemetry-instrument"), *dbt]
            full = {**base, "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
            distro = {**base, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "floe_dbt"}
            variants = {
                "plain": (dbt, plain),
                "distro": (instrumented, distro),
                "prod": (instrumented, base),
                "full": (instrumented, full),
                "fullscan": (instrumented, {**base, **_FULL_SCAN}),
            }
            variants = {name: v for name, v in variants.items() if name == "plain" or name in args.variants}

            _run(dbt, plain, project, ok_codes)  # warm-up: OS caches, partial-parse file, DuckDB file
            _run(instrumented, full, project, ok_codes)
            times: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            for i in range(args.rounds):
                order = list(variants) if i % 2 == 0 else list(reversed(variants))
                for name in order:
                    command, env = variants[name]
                    wall, cpu_s = _run(command, env, project, ok_codes)
                    times[name].append(wall)
                    cpu[name].append(cpu_s)
                print(f"round {i + 1}/{args.rounds}: " + "  ".join(f"{n}={times[n][-1]:.2f}s" for n in variants))

            spans = collector.spans()
            node_spans = [s for s in spans if "dbt.node.unique_id" in s["attributes"]]
            builds = sum(1 for s in spans if s["name"] == "dbt build")
            links = _links(collector)
            logs = len(collector.logs())
        finally:
            collector.stop()

    nodes = len(node_spans) // max(builds, 1)
    base_wall = statistics.median(times["plain"])
    base_cpu = statistics.median(cpu["plain"])
    start = "Operator path (PYTHONPATH)" if args.operator else "launcher opentelemetry-instrument"
    pinning = "unpinned" if build_cpus is None else f"builds on CPU {sorted(build_cpus)}, collector on the rest"
    print(f"\ndbt build of the {label}: {nodes} nodes, {args.rounds} interleaved rounds; {start}; {pinning}")
    print(
        f"{'variant':<8} {'wall med s':>11} {'wall min':>9} {'med/med':>8} {'pairwise':>9} {'90 % interval':>15} "
        f"{'cpu med s':>10} {'cpu pairwise':>13}"
    )
    pairwise: dict[str, float] = {}
    interval: dict[str, tuple[float, float]] = {}
    for name in variants:
        wall_med, cpu_med = statistics.median(times[name]), statistics.median(cpu[name])
        ratios = [t / p for t, p in zip(times[name], times["plain"], strict=True)]
        pairwise[name], interval[name] = statistics.median(ratios), _interval(ratios)
        cpu_pair = statistics.median(c / p for c, p in zip(cpu[name], cpu["plain"], strict=True))
        low, high = interval[name]
        print(
            f"{name:<8} {wall_med:>11.3f} {min(times[name]):>9.3f} {wall_med / base_wall:>7.3f}x "
            f"{pairwise[name]:>8.3f}x {f'{low:.3f}-{high:.3f}':>15} {cpu_med:>10.3f} {cpu_pair:>12.3f}x"
        )
    print(
        f"collector received {len(spans)} spans ({len(node_spans)} dbt node spans, {links} links) "
        f"and {logs} log records from {builds} sampled builds"
    )
    for name in ("prod", "full"):
        if name in cpu and "distro" in cpu:
            per_node = (statistics.median(cpu[name]) - statistics.median(cpu["distro"])) / max(nodes, 1) * 1000
            print(f"dbt instrumentor CPU per node ({name} - distro medians): {per_node:+.2f} ms")
    print(f"plain dbt CPU per node: {base_cpu / max(nodes, 1) * 1000:.2f} ms")
    targets = [(n, t) for n, t in (("prod", args.target_prod), ("full", args.target_full)) if n in pairwise]
    for name, target in targets:
        verdict = _verdict(pairwise[name], *interval[name], target)
        print(f"{name} {pairwise[name]:.3f}x (target <= {target:g}x): {verdict}")
    if not targets:
        print("no target checked: neither prod nor full was run")
    return 0 if all(pairwise[n] <= t for n, t in targets) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
