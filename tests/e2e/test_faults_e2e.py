"""End to end: a job ending 100 spans against peers that fail on purpose; every loss is one line naming its cause.

Each case runs ``fault_job.py`` under ``opentelemetry-instrument`` (prod mode, always_on sampler, 200 ms
batch delay) against a fake OTLP peer (tests/support/fake_otlp.py), the real collector's gRPC port, or a
closed port. The cases run in parallel once per module (``runs``); each test asserts on one of them:

- the program's own exit status (3) and stdout ("job done") are unchanged;
- the exit (from the job's last output line to the process end) stays within the budget + 1 s;
- what can be delivered is delivered (503 + Retry-After: 1 then OK; 2 s per request with a 5 s budget);
- otherwise at most one throttled cause line while running (exactly one when the failure is final
  while the job runs) and exactly one count line at exit naming the cause and the right count.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import Collector, free_port
from tests.support.fake_otlp import FakeOtlpGrpc, FakeOtlpHttp
from tests.support.run import BIN, instrumented_env

pytestmark = pytest.mark.e2e
JOB = str(Path(__file__).parent / "apps" / "fault_job.py")
BASE = {"FLOE_MODE": "prod", "OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


@dataclass
class Case:
    """One fault: where the job exports, how long it runs after its spans, what must be seen."""

    name: str
    peer: str  # http:<mode> | grpc:<code> | down | collector-grpc
    sleep_s: float = 0.5  # a failure that is final right away is seen while the job sleeps 1.5 s
    spans: int = 100
    budget_s: float = 2.0
    delivered: int = 0
    cause: str | None = None  # text in the count line (None: no floe-otel line at all)
    running_line: bool = False  # a throttled cause line while the job runs
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("ok", "http:ok", delivered=100),
    Case("accepts, never answers", "http:hang", cause="timeout: the collector accepted the connection"),
    Case("HTTP 400", "http:400", cause="HTTP 400", running_line=True, sleep_s=1.5),
    Case("HTTP 401", "http:401", cause="HTTP 401", running_line=True, sleep_s=1.5),
    Case("HTTP 413", "http:413", cause="HTTP 413", running_line=True, sleep_s=1.5),
    Case("HTTP 429", "http:429", cause="HTTP 429"),
    Case("503 + Retry-After: 1, then OK (at exit)", "http:503-then-ok", sleep_s=0, delivered=100),
    Case("503 + Retry-After: 30", "http:503-long", cause="Retry-After: 30", running_line=True, sleep_s=1.5),
    Case("2 s per request, 5 s budget", "http:slow-then-ok", sleep_s=0, budget_s=5, delivered=100),
    Case("gRPC UNAVAILABLE", "grpc:UNAVAILABLE", cause="gRPC UNAVAILABLE"),
    Case("gRPC UNAUTHENTICATED", "grpc:UNAUTHENTICATED", cause="gRPC UNAUTHENTICATED", running_line=True, sleep_s=1.5),
    Case("collector down", "down", cause="connection refused"),
    Case("collector down, nothing to send", "down", spans=0),
    Case("http/protobuf to the gRPC port", "collector-grpc", cause="not OTLP/HTTP"),
]


@dataclass
class Run:
    """What one case's job did."""

    case: Case
    returncode: int
    stdout: str
    stderr: str
    exit_s: float  # from the job's last output line to the end of the process
    delivered: int

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("floe-otel:")]


def _env(endpoint: str, case: Case) -> dict[str, str]:
    protocol = "grpc" if case.peer.startswith("grpc:") else "http/protobuf"
    return instrumented_env(endpoint, **BASE, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                            FLOE_SHUTDOWN_TIMEOUT=f"{case.budget_s:g}", **case.env)


def run_job(env: dict[str, str], args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the job; returns the completed process and its exit time (last stdout line → process end)."""
    proc = subprocess.Popen([str(BIN / "opentelemetry-instrument"), sys.executable, JOB, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out: list[str] = []
    last = time.monotonic()
    for line in proc.stdout:
        out.append(line)
        last = time.monotonic()
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out), err), time.monotonic() - last


def _run_case(case: Case, collector: Collector) -> Run:
    fake: Any = None
    if case.peer.startswith("http:"):
        fake = FakeOtlpHttp(case.peer.split(":", 1)[1])
        endpoint = fake.endpoint
    elif case.peer.startswith("grpc:"):
        fake = FakeOtlpGrpc(case.peer.split(":", 1)[1])
        endpoint = fake.endpoint
    elif case.peer == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"
    else:
        endpoint = collector.grpc_endpoint
    try:
        proc, exit_s = run_job(_env(endpoint, case), [str(case.spans), f"{case.sleep_s:g}"])
        delivered = 0
        if isinstance(fake, FakeOtlpHttp):
            deadline = time.monotonic() + 3  # a 2 s request may still be finishing on the server side
            while fake.spans_received < case.delivered and time.monotonic() < deadline:
                time.sleep(0.05)
            delivered = fake.spans_received
        return Run(case, proc.returncode, proc.stdout, proc.stderr, exit_s, delivered)
    finally:
        if fake is not None:
            fake.stop()


@pytest.fixture(scope="module")
def fault_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = Collector(tmp_path_factory.mktemp("collector"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def runs(fault_collector: Collector) -> dict[str, Run]:
    """Every case, 4 at a time (the machine has 2 CPUs; exit times are measured after the job's own work)."""
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda c: _run_case(c, fault_collector), CASES))
    table = ["", f"{'case':42} {'delivered':>9} {'exit s':>7}  floe-otel lines"]
    for run in done:
        shown = " | ".join(line[len("floe-otel: "):][:110] for line in run.lines) or "-"
        table.append(f"{run.case.name:42} {run.delivered:>4}/{run.case.spans:<4} {run.exit_s:7.2f}  {shown}")
    sys.stderr.write("\n".join(table) + "\n")
    return {run.case.name: run for run in done}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case: Case, runs: dict[str, Run]) -> None:
    """The program's exit/output unchanged, a bounded exit, delivery when possible, else one line with the cause."""
    run = runs[case.name]
    assert run.returncode == 3 and run.stdout.splitlines()[-1] == "job done", run.stderr
    assert run.exit_s <= case.budget_s + 1.0, (run.exit_s, run.stderr)
    if case.peer.startswith("http:"):
        assert run.delivered == case.delivered, run.stderr
    if case.cause is None:
        assert run.lines == [], run.stderr
        return
    *running, final = run.lines
    assert len(running) == (1 if case.running_line else 0), run.stderr
    assert final.startswith(f"floe-otel: {case.spans} spans not delivered to "), final
    assert case.cause in final, final
    if running:
        assert running[0].startswith("floe-otel: exporting traces to ") and case.cause in running[0], running


def test_collector_killed_mid_run_and_restarted(collector: Collector, tmp_path: Path) -> None:
    """SIGKILL the collector, end 10 spans, restart it: later spans arrive; the one count line counts the 10 lost."""
    env = instrumented_env(collector.http_endpoint, **BASE, FLOE_EXPORT_TIMEOUT="1")
    proc = subprocess.Popen([str(BIN / "opentelemetry-instrument"), sys.executable, JOB, "10", "2", str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None

    def until(prefix: str) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                return
        raise AssertionError(f"no {prefix!r} line")

    until("phase-2")
    assert collector.wait_for(lambda c: len([s for s in c.spans() if s["name"] == "work-1"]) >= 10)
    assert collector.proc is not None
    collector.proc.kill()
    collector.proc.wait()
    (tmp_path / "go-2").touch()
    until("phase-3")  # phase 2's export failed meanwhile (1 s export timeout; the job sleeps 2 s)
    collector.start()
    (tmp_path / "go-3").touch()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    named: Callable[[Collector], int] = lambda c: len([s for s in c.spans() if s["name"] == "work-3"])  # noqa: E731
    assert collector.wait_for(lambda c: named(c) >= 10) and named(collector) == 10
    lines = [line for line in err.splitlines() if line.startswith("floe-otel:")]
    sys.stderr.write("\ncollector killed and restarted: " + " | ".join(lines) + "\n")
    assert len(lines) == 2, err
    assert lines[0].startswith("floe-otel: exporting traces to ") and "refused" in lines[0]
    assert lines[1] == f"floe-otel: 10 spans not delivered to {collector.http_endpoint}: " + lines[1].split(": ", 2)[2]
    assert "refused" in lines[1]

