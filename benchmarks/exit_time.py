"""Exit time, delivery and loss lines: a 100-span job against the collector up/down, failing peers, SIGTERM.

Side by side, ``opentelemetry-instrument python job.py`` under floe (the repo's dev venv) and under the
upstream ``opentelemetry-distro`` (its own venv, cached under ~/.cache/floe-otel-distro/bench, built
like benchmarks/startup.py). The collector is the real one (tests/support/collector.py); "down" is a
port nobody listens on; the failing peers are tests/support/fake_otlp.py (a peer that accepts and never
answers, HTTP 401, 503 + Retry-After: 1 then OK). Prints median exit times, delivered/ended span counts
and stderr lines (for floe: the ``floe-otel:`` loss lines).

    python benchmarks/exit_time.py [--runs 5] [--floe-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.collector import Collector, free_port  # noqa: E402
from tests.support.fake_otlp import FakeOtlpHttp  # noqa: E402

FAULTS = {"never answers": "hang", "HTTP 401": "401", "503 Retry-After 1, OK": "503-then-ok"}

JOB = """
import sys, time
from opentelemetry import trace
tracer = trace.get_tracer("bench")
for i in range(int(sys.argv[1])):
    with tracer.start_as_current_span("work"):
        pass
if sys.argv[2] == "sleep":
    print("ready", flush=True)
    time.sleep(60)
"""


def _upstream_venv() -> Path:
    import _bench_support as bs  # benchmarks/ (this script's directory is on sys.path)

    spec = importlib.util.spec_from_file_location("startup", REPO / "benchmarks" / "startup.py")
    assert spec and spec.loader
    startup = importlib.util.module_from_spec(spec)
    sys.modules["startup"] = startup  # its dataclasses look their module up
    spec.loader.exec_module(startup)
    return Path(bs.venv("upstream", bs.short_hash(startup.UPSTREAM), startup.UPSTREAM, False))


def _env(distro: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "bench", "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none"})
    if distro == "floe":
        env.update({"OTEL_PYTHON_DISTRO": "floe", "OTEL_PYTHON_CONFIGURATOR": "floe", "FLOE_MODE": "prod"})
    return env


def _lines(stderr: str) -> str:
    """``total (floe-otel)``: non-empty stderr lines, and how many of them are floe-otel: lines."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    return f"{len(lines)} ({sum(x.startswith('floe-otel:') for x in lines)})"


def _delivered(collector: Collector, before: int, expect: int) -> int:
    collector.wait_for(lambda c: len(c.spans()) >= before + expect, timeout=3)
    return len(collector.spans()) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--floe-only", action="store_true", help="skip the upstream venv")
    args = parser.parse_args()
    floe_venv = REPO / ".venv" if (REPO / ".venv").exists() else Path(sys.executable).parent.parent
    venvs = {"floe": floe_venv} if args.floe_only else {"upstream": _upstream_venv(), "floe": floe_venv}
    workdir = Path(tempfile.mkdtemp())  # also the cwd: opentelemetry-instrument puts the cwd on PYTHONPATH
    job = workdir / "job.py"
    job.write_text(JOB)
    collector_dir = workdir / "collector"
    collector_dir.mkdir()
    collector = Collector(collector_dir)
    down = f"http://127.0.0.1:{free_port()}"
    rows = []
    try:
        for distro, venv in venvs.items():
            cmd = [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"), str(job)]
            for label, endpoint in (("collector up", collector.http_endpoint), ("collector down", down)):
                times, delivered, warnings = [], [], []
                for _ in range(args.runs):
                    before = len(collector.spans())
                    start = time.monotonic()
                    proc = subprocess.run([*cmd, str(args.spans), "exit"], env=_env(distro, endpoint),
                                          capture_output=True, text=True, timeout=120, check=False, cwd=workdir)
                    times.append(time.monotonic() - start)
                    delivered.append(_delivered(collector, before, args.spans) if label == "collector up" else 0)
                    warnings.append(_lines(proc.stderr))
                rows.append((distro, label, statistics.median(times), max(times), min(delivered), args.spans,
                             max(warnings, key=lambda w: int(w.split()[0]))))
            for label, mode in FAULTS.items():
                times, delivered, warnings = [], [], []
                for _ in range(args.runs):
                    fake = FakeOtlpHttp(mode)
                    try:
                        start = time.monotonic()
                        proc = subprocess.run([*cmd, str(args.spans), "exit"], env=_env(distro, fake.endpoint),
                                              capture_output=True, text=True, timeout=120, check=False, cwd=workdir)
                        times.append(time.monotonic() - start)
                        deadline = time.monotonic() + 3
                        while mode != "hang" and fake.spans_received < args.spans and time.monotonic() < deadline:
                            time.sleep(0.05)
                        delivered.append(fake.spans_received)
                    finally:
                        fake.stop()
                    warnings.append(_lines(proc.stderr))
                rows.append((distro, label, statistics.median(times), max(times), min(delivered), args.spans,
                             max(warnings, key=lambda w: int(w.split()[0]))))
            # SIGTERM mid-run: 34 spans ended, then killed
            before = len(collector.spans())
            proc = subprocess.Popen([*cmd, "34", "sleep"], env=_env(distro, collector.http_endpoint),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir)
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not proc.stdout.readline().startswith("ready"):
                pass
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
            rows.append((distro, f"SIGTERM (rc {proc.returncode})", time.monotonic() - start, 0.0,
                         _delivered(collector, before, 34), 34, "-"))
    finally:
        collector.stop()
    header = f"{'distro':9} {'case':22} {'exit s (median)':>15} {'max':>6} {'delivered/ended':>16}"
    print(f"{header} {'stderr lines (floe-otel)':>25}")
    for distro, label, med, worst, got, ended, warn in rows:
        print(f"{distro:9} {label:22} {med:15.2f} {worst:6.2f} {got:>9}/{ended:<6} {warn:>25}")


if __name__ == "__main__":
    main()
