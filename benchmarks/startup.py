"""Start-up cost: floe distro vs upstream opentelemetry-distro, side by side in one run (issue targets).

Each distro is a regular (non-editable) install in its own cached venv; the real collector runs once and
every process exports 3 signals over OTLP http/protobuf to it (floe in FLOE_MODE=prod). Jobs: noop.py and
spans.py (100 spans + one WARNING log line). Start paths: "launcher" = opentelemetry-instrument python app.py;
"operator" = python app.py with the PYTHONPATH and env the OTel Operator injects. "cold" = fresh HOME /
XDG_CACHE_HOME and a new pod name per run (a new pod); "warm" = one HOME, identical env (a restart in the
same container). Floors: the launcher with OTEL_SDK_DISABLED=true (per distro) and bare python. All cases are
interleaved round-robin after one warm-up round, from a neutral cwd (the launcher puts cwd on PYTHONPATH).

    python3 benchmarks/startup.py [--runs 15] [--json out.json] [--rebuild] [--profile | --instructions]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _bench_support as bs

UPSTREAM = ["opentelemetry-distro==0.66b2", "opentelemetry-exporter-otlp-proto-http==1.45.2"]
DISTROS = ("upstream", "floe")
WARNING = "bench: 100 spans ended"
APPS = {
    "noop": "pass\n",
    "spans": "import logging\n\nfrom opentelemetry import trace\n\ntracer = trace.get_tracer('bench')\n"
    "for i in range(100):\n    tracer.start_span(f'span-{i}').end()\n"
    f"logging.getLogger('bench').warning({WARNING!r})\n",
}
BROKEN = re.compile(r"Traceback|Failed to auto initialize|floe-otel:|Error|Exception")
PROFILED = ("noop launcher warm", "spans launcher warm")
SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}  # floe's prod default samples 10 %: like with like


@dataclass
class Case:
    distro: str  # upstream | floe | "-" (bare python)
    label: str  # "spans operator cold", "launcher floor", "bare python"
    cmd: list[str]
    env: dict[str, str]
    path: str = "launcher"
    cold: bool = False
    results: list[bs.Result] = field(default_factory=list)
    problem: str = ""  # first sign of a broken start (rc != 0, traceback, floe-otel: line)
    noise: str = ""  # first unexpected stderr

    @property
    def key(self) -> str:
        return f"{self.distro}/{self.label}"

    def median(self, attr: str = "wall_ms") -> float | None:
        return statistics.median(getattr(r, attr) for r in self.results) if self.results and not self.problem else None


def otel_env(distro: str, endpoint: str) -> dict[str, str]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_SERVICE_NAME": "bench",
    }
    if distro == "floe":
        env |= {"OTEL_PYTHON_DISTRO": "floe", "OTEL_PYTHON_CONFIGURATOR": "floe", "FLOE_MODE": "prod"}
    else:
        env["OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"] = "true"
    return env


def build_cases(venvs: dict[str, Path], apps: dict[str, Path], endpoint: str) -> list[Case]:
    cases = [Case("-", "bare python", [str(venvs["upstream"] / "bin" / "python"), str(apps["noop"])], {})]
    for distro, venv in venvs.items():
        py, launcher = str(venv / "bin" / "python"), str(venv / "bin" / "opentelemetry-instrument")
        sp = bs.site_packages(venv)
        operator_path = {"PYTHONPATH": f"{sp}/opentelemetry/instrumentation/auto_instrumentation:{sp}"}
        for job in APPS:
            env = otel_env(distro, endpoint) | (SAMPLER if job == "spans" else {})
            for path in ("launcher", "operator"):
                cmd = [launcher, py, str(apps[job])] if path == "launcher" else [py, str(apps[job])]
                for temp in ("cold", "warm"):
                    extra = operator_path if path == "operator" else {}
                    cases.append(Case(distro, f"{job} {path} {temp}", cmd, env | extra, path, temp == "cold"))
        floor_env = otel_env(distro, endpoint) | {"OTEL_SDK_DISABLED": "true"}
        cases.append(Case(distro, "launcher floor", [launcher, py, str(apps["noop"])], floor_env))
        cases.append(Case(distro, "operator floor", [py, str(apps["noop"])], floor_env | operator_path, "operator"))
    return cases


def run_env(case: Case, base: dict[str, str], homes: Path) -> tuple[dict[str, str], Path | None]:
    """The env of one run; cold runs get a new HOME (returned, to be removed) and a new pod name."""
    home = Path(tempfile.mkdtemp(dir=homes)) if case.cold else homes / f"warm-{case.distro}"
    home.mkdir(exist_ok=True)
    env = {**base, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), **case.env}
    if case.distro == "-" or "OTEL_SDK_DISABLED" in env:
        return env, home if case.cold else None
    run_id = uuid.uuid4().hex[:5] if case.cold else "x7k2p"
    tag = f"bench.distro={case.distro},bench.case={case.label.replace(' ', '_')}"
    if case.path == "operator":  # what the OTel Operator injects (Downward API values per pod)
        pod, node = f"bench-6f9d8c7b5-{run_id}", "node-1"
        ip = f"10.1.{random.randint(0, 255)}.{random.randint(1, 254)}" if case.cold else "10.1.0.7"
        env |= {
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": pod,
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME": node,
            "OTEL_POD_IP": ip,
            "OTEL_NODE_IP": "10.0.0.3",
            "OTEL_RESOURCE_ATTRIBUTES": f"k8s.namespace.name=bench,k8s.container.name=app,k8s.pod.name={pod},"
            f"k8s.node.name={node},k8s.deployment.name=bench,k8s.replicaset.name=bench-6f9d8c7b5,"
            f"service.instance.id=bench.{pod}.app,service.version=1.0.0,{tag}",
        }
    else:
        env["OTEL_RESOURCE_ATTRIBUTES"] = f"{tag},service.instance.id=bench-{run_id}"
    return env, home if case.cold else None


def measure(case: Case, base: dict[str, str], homes: Path, cwd: Path, keep: bool) -> bs.Result | None:
    if case.problem:
        return None
    env, home = run_env(case, base, homes)
    r = bs.run(case.cmd, env, cwd)
    if home:
        shutil.rmtree(home, ignore_errors=True)
    lines = [x for x in r.stderr.splitlines() if x.strip() and WARNING not in x and not x.startswith("import time:")]
    if r.rc != 0 or BROKEN.search("\n".join(lines)):
        case.problem = f"rc={r.rc}; stderr: " + " | ".join(lines[-6:])[:600]
    elif lines and not case.noise:
        case.noise = " | ".join(lines[:3])[:300]
    if keep:
        case.results.append(r)
    return r


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[8] if len(values) > 1 else values[0]


def fmt(case: Case | None) -> str:
    if case is None or not case.results or case.problem:
        return f"{'BROKEN' if case and case.problem else '-':>27}"
    w = [r.wall_ms for r in case.results]
    return f"{case.median():6.0f} {p90(w):6.0f} {case.median('rss_mib'):8.1f} MiB"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def verdict(value: float | None, limit: float) -> str:
    return "INVALID" if value is None else f"{'PASS' if value <= limit else 'FAIL'} {value:.2f}x"


def report(cases: list[Case], args: argparse.Namespace) -> dict[str, object]:
    by = {c.key: c for c in cases}
    print(
        f"\nruns per case: {args.runs}, interleaved round-robin after 1 warm-up round; python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cpus. spans job: OTEL_TRACES_SAMPLER=parentbased_always_on "
        "for both (floe's prod mode samples 10 %; like with like)."
    )
    print(
        f"{'case':22} | {'upstream: median p90 ms, peak RSS':>33} | {'floe: median p90 ms, peak RSS':>30} | "
        "wall f/u | RSS f/u"
    )
    for label in dict.fromkeys(c.label for c in cases):
        up, fl = by.get(f"upstream/{label}"), by.get(f"floe/{label}")
        if label == "bare python":
            up = fl = by["-/bare python"]
        w = ratio(fl and fl.median(), up and up.median())
        m = ratio(fl and fl.median("rss_mib"), up and up.median("rss_mib"))
        print(f"{label:22} | {fmt(up):>33} | {fmt(fl):>30} | {num(w):>8} | {num(m):>7}")
    # One floor per start path, common to both distros: the cheaper of the two OTEL_SDK_DISABLED=true runs.
    # (Upstream's distro does most of its work even when the SDK is disabled, so its own disabled run is
    # no floor: it costs about as much as its full start.)
    floors = {
        path: min(m for d in DISTROS if (m := by[f"{d}/{path} floor"].median())) for path in ("launcher", "operator")
    }
    print(
        f"\nfloor = the start path with OTEL_SDK_DISABLED=true, the cheaper distro's median (launcher "
        f"{floors['launcher']:.0f} ms, operator {floors['operator']:.0f} ms), the same for both distros."
    )
    print(
        f"{'targets':16} | {'T1 spans: wall<=0.8x, RSS<=1x':32} | {'T2 noop wall<=0.8x':20} | "
        "T3 cost over floor <=0.4x: noop / spans (floe ms vs upstream ms)"
    )
    verdicts: dict[str, dict[str, str]] = {}
    for path in ("launcher", "operator"):
        for temp in ("cold", "warm"):
            c = {(d, j): by[f"{d}/{j} {path} {temp}"] for d in DISTROS for j in APPS}
            t1w = ratio(c["floe", "spans"].median(), c["upstream", "spans"].median())
            t1m = ratio(c["floe", "spans"].median("rss_mib"), c["upstream", "spans"].median("rss_mib"))
            t1 = (
                "INVALID"
                if t1w is None or t1m is None
                else (f"{'PASS' if t1w <= 0.8 and t1m <= 1 else 'FAIL'} wall {t1w:.2f}x RSS {t1m:.2f}x")
            )
            t3, t3_text = [], []
            for job in APPS:
                cost = {d: (c[d, job].median() or 0) - floors[path] for d in DISTROS}
                valid = all(c[d, job].median() for d in DISTROS)
                r = ratio(cost["floe"], cost["upstream"]) if valid else None
                t3.append("n/a: upstream <= 0" if valid and r is None else verdict(r, 0.4))
                t3_text.append(f"{t3[-1]} ({cost['floe']:.0f} vs {cost['upstream']:.0f})" if valid else t3[-1])
            t2 = verdict(ratio(c["floe", "noop"].median(), c["upstream", "noop"].median()), 0.8)
            verdicts[f"{path} {temp}"] = {"T1": t1, "T2": t2, "T3 noop": t3[0], "T3 spans": t3[1]}
            print(f"{path + ' ' + temp:16} | {t1:32} | {t2:20} | {' / '.join(t3_text)}")
    return verdicts


def delivered(collector: Any, cases: list[Case], rounds: int) -> tuple[dict[str, str], bool]:
    """Spans/logs with service.name=bench the collector received, per distro and spans case."""
    want = sum(100 * len(c.results) + 100 for c in cases if c.label.startswith("spans") and not c.problem)
    collector.wait_for(lambda col: len(col.spans()) >= want, timeout=20)
    counts: Counter[tuple[str, str, str]] = Counter()
    for kind in ("spans", "logs"):
        for item in getattr(collector, kind)():
            res = item["resource"]
            if res.get("service.name") == "bench":
                counts[kind, res.get("bench.distro", "?"), str(res.get("bench.case", "?")).replace("_", " ")] += 1
    print("\ndelivered to the collector (service.name=bench), incl. the warm-up round:")
    out, ok = {}, True
    for d in DISTROS:
        total = sum(n for (k, dist, _), n in counts.items() if k == "spans" and dist == d)
        ok = ok and total > 0
        parts = []
        for c in (c for c in cases if c.distro == d and c.label.startswith("spans")):
            n, logs = counts["spans", d, c.label], counts["logs", d, c.label]
            ok = ok and n > 0
            parts.append(f"{c.label.removeprefix('spans ')} {n}/{100 * rounds} spans {logs} logs")
            out[c.key] = f"{n} spans, {logs} logs"
        print(f"  {d:8} total {total:6} spans: " + "; ".join(parts))
        if total == 0:
            print(f"  FAIL: {d} delivered 0 spans: nothing was exported, its numbers measure nothing")
    return out, ok


def profile(cases: list[Case], base: dict[str, str], tmp: Path) -> int:
    for case in (c for c in cases if c.distro == "floe" and c.label in PROFILED):
        measure(case, base, tmp / "homes", tmp / "cwd", keep=False)  # seeds the warm HOME
        case.cmd = [*case.cmd[:-1], "-X", "importtime", case.cmd[-1]]
        r = measure(case, base, tmp / "homes", tmp / "cwd", keep=False)
        print(f"\nfloe {case.label}, python -X importtime (the program's side; top 25 cumulative):")
        if case.problem or r is None:
            print(f"  BROKEN: {case.problem}")
        for cum, own, mod in bs.top_imports(r.stderr if r else ""):
            print(f"  {cum / 1000:7.1f} ms cumulative {own / 1000:6.1f} ms self  {mod}")
    return 1 if any(c.problem for c in cases) else 0


# The Operator path only: callgrind loses the instructions of a process image that exec()s (the launcher's
# own part, upstream's code and the same for both distros), so a launcher row would count its program only.
INSTRUCTION_CASES = ("noop operator warm", "spans operator warm", "operator floor")


def instructions(case: Case, base: dict[str, str], tmp: Path) -> int | None:
    """Instructions the case executes (valgrind's callgrind, every thread and the exec'd program summed)."""
    out = tmp / "callgrind" / case.key.replace("/", "_").replace(" ", "_")
    out.mkdir(parents=True, exist_ok=True)
    saved = case.cmd
    case.cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}/cg.%p", *saved]
    case.env = case.env | {"FLOE_SHUTDOWN_TIMEOUT": "60"}  # ~50x slower under valgrind: no exit-budget abort
    try:
        measure(case, base, tmp / "homes", tmp / "cwd", keep=False)
    finally:
        case.cmd = saved
    total = 0
    for f in out.glob("cg.*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    return None if case.problem else total


def count_instructions(cases: list[Case], base: dict[str, str], tmp: Path) -> int:
    """Deterministic companion of the wall-clock table: instruction counts, one run per case (slow: ~1 min each)."""
    counts: dict[str, int | None] = {}
    for case in cases:
        if case.distro != "-" and case.label in INSTRUCTION_CASES:
            counts[case.key] = instructions(case, base, tmp)
            print(f"{case.key}: {counts[case.key]}", file=sys.stderr)
    print("case                 | upstream Minstr | floe Minstr | floe/upstream")
    for label in INSTRUCTION_CASES:
        u, f = counts.get(f"upstream/{label}"), counts.get(f"floe/{label}")
        r = f"{f / u:.2f}" if u and f else "-"
        print(f"{label:20} | {num(u / 1e6 if u else None):>15} | {num(f / 1e6 if f else None):>11} | {r:>13}")
    return 1 if any(v is None for v in counts.values()) else 0


def bench(cases: list[Case], base: dict[str, str], tmp: Path, collector: Any, args: argparse.Namespace) -> int:
    for rnd in range(args.runs + 1):
        for case in cases:
            measure(case, base, tmp / "homes", tmp / "cwd", keep=rnd > 0)
        print(f"round {rnd}/{args.runs} done", file=sys.stderr)
    verdicts = report(cases, args)
    counts, ok = delivered(collector, cases, args.runs + 1)
    problems: dict[str, list[str]] = {}
    for case in cases:
        if case.problem or case.noise:
            problems.setdefault(f"{'BROKEN' if case.problem else 'stderr'}: {case.problem or case.noise}", []).append(
                case.key
            )
    for text, keys in problems.items():
        print(f"{text}\n  in {len(keys)} case(s): {', '.join(keys)}")
    if args.json:
        raw = {
            c.key: {"cmd": c.cmd, "problem": c.problem, "stderr": c.noise, "runs": [r.raw() for r in c.results]}
            for c in cases
        }
        meta = {"runs": args.runs, "python": sys.version, "cpus": os.cpu_count(), "sampler_spans_job": SAMPLER}
        args.json.write_text(json.dumps({**meta, "cases": raw, "verdicts": verdicts, "delivered": counts}, indent=1))
    broken = [c.key for c in cases if c.problem]
    if broken or not ok:
        print(f"\nFAILED: {len(broken)} broken case(s); every spans case delivered spans: {ok}.", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, help="write every raw number here")
    parser.add_argument("--rebuild", action="store_true", help="rebuild both venvs")
    parser.add_argument("--profile", action="store_true", help="floe noop/spans once with -X importtime, then exit")
    parser.add_argument(
        "--instructions", action="store_true", help="Operator-path instructions (callgrind), not wall time"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="floe-bench-"))
    for d in ("src", "apps", "cwd", "homes", "collector"):
        (tmp / d).mkdir()
    venvs = {"upstream": bs.venv("upstream", bs.short_hash(UPSTREAM), UPSTREAM, args.rebuild)}
    venvs["floe"] = bs.venv("floe", bs.stage_floe(tmp / "src"), [str(tmp / "src")], args.rebuild)
    apps = {name: tmp / "apps" / f"{name}.py" for name in APPS}
    for name, path in apps.items():
        path.write_text(APPS[name])
    sys.path.insert(0, str(bs.REPO))
    from tests.support.collector import Collector

    collector = Collector(tmp / "collector")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_", "PYTHON", "VIRTUAL_ENV"))}
    try:
        cases = build_cases(venvs, apps, collector.http_endpoint)
        if args.profile:
            rc = profile(cases, base, tmp)
        elif args.instructions:
            rc = count_instructions(cases, base, tmp)
        else:
            rc = bench(cases, base, tmp, collector, args)
    finally:
        collector.stop()
    if rc:
        print(f"collector config, log and received data kept in {tmp / 'collector'}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
