"""A catalogue of bad and hostile inputs, each run as a real program under ``opentelemetry-instrument``.

For every case: the program's own output and exit status are unchanged, exactly one ``floe-otel:`` line
names the variable or file, nothing hangs (10 s limit); under ``FLOE_OTEL_STRICT=true`` the same case exits
78 before the program runs. The figures per category are printed (``pytest -s``) and asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.collector import Collector
from tests.support.run import BIN, instrumented_env

pytestmark = pytest.mark.e2e
APP = str(Path(__file__).parent / "apps" / "signals_app.py")
LIMIT_S = 10.0


@dataclass(frozen=True)
class Case:
    category: str
    env: dict[str, str]
    names: str  # what the one floe-otel: line must mention

    @property
    def id(self) -> str:
        shown = ",".join(f"{k}={v[:24]!r}" for k, v in self.env.items())
        return f"{self.category}:{shown}"


def _files(tmp: Path) -> dict[str, str]:
    """Hostile files: missing, a directory, a FIFO, a device, a YAML bomb, oversized, binary, not YAML, a list."""
    tmp.mkdir(parents=True, exist_ok=True)
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    bomb = tmp / "bomb.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(8):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb.write_text("\n".join(lines) + "\n")
    huge = tmp / "huge.yaml"
    huge.write_text("k: " + "x" * (300 * 1024) + "\n")
    binary = tmp / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    bad = tmp / "bad.yaml"
    bad.write_text("observability: [unclosed\n  tracing: {\n")
    listing = tmp / "list.yaml"
    listing.write_text("- a\n- b\n")
    return {
        "missing": str(tmp / "missing.yaml"),
        "directory": str(tmp),
        "fifo": str(fifo),
        "device": "/dev/zero",
        "bomb": str(bomb),
        "oversized": str(huge),
        "binary": str(binary),
        "invalid": str(bad),
        "list": str(listing),
    }


def catalogue(tmp: Path) -> list[Case]:
    cases: list[Case] = []
    numbers = (
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "FLOE_SHUTDOWN_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "FLOE_SAMPLING_RATIO",
        "OTEL_TRACES_SAMPLER_ARG",
    )
    for var in numbers:
        for value in ("-1", "abc", "inf", "nan", "1e309", "9" * 40):
            cases.append(Case("numbers", {var: value}, var))
    for var in (
        "FLOE_OTEL_ENABLED",
        "OTEL_SDK_DISABLED",
        "FLOE_TRACES_ENABLED",
        "FLOE_METRICS_ENABLED",
        "FLOE_LOGS_ENABLED",
        "OTEL_EXPORTER_OTLP_INSECURE",
    ):
        for value in ("maybe", "2", "tru"):
            cases.append(Case("booleans", {var: value}, var))
    for var in (
        "FLOE_MODE",
        "OTEL_TRACES_SAMPLER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "FLOE_LOG_LEVEL",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    ):
        for value in ("bogus", "\u2603", "x" * 500):
            cases.append(Case("choices", {var: value}, var))
    for value in (
        "ftp://c:21",
        "http://",
        "http://c:0",
        "http://c:99999",
        "http://c:4318?token=x",
        "http://c:4318#frag",
        "not a url",
        "http://[::1",
        "\u2603://x",
    ):
        cases.append(Case("endpoints", {"OTEL_EXPORTER_OTLP_ENDPOINT": value}, "OTEL_EXPORTER_OTLP_ENDPOINT"))
    for signal in ("TRACES", "METRICS", "LOGS"):
        var = f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
        for value in ("ftp://c", "http://c:70000", "http://c/v1?x=1"):
            cases.append(Case("endpoints", {var: value}, var))
    for signal in ("TRACES", "METRICS", "LOGS"):
        for value in ("bogus", "otlp,bogus"):
            cases.append(Case("exporters", {f"OTEL_{signal}_EXPORTER": value}, f"OTEL_{signal}_EXPORTER"))
    for value in ("nope", "../../etc/passwd", "x" * 300):
        cases.append(Case("backend", {"FLOE_TELEMETRY_BACKEND": value}, "FLOE_TELEMETRY_BACKEND"))
    for value in ("nonesuch", "tracecontext,xray"):
        cases.append(Case("propagators", {"OTEL_PROPAGATORS": value}, "OTEL_PROPAGATORS"))
    for value in ("gcp", "nonesuch,host"):
        cases.append(
            Case("propagators", {"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": value}, "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")
        )
    for value in (
        "novalue",
        "a=b,broken",
        "k=v\r\nInjected: x",
        "a;b=c",
        '"quoted"=x',
        "\u043a\u043b\u044e\u0447=v",
        "=v",
    ):
        cases.append(Case("headers", {"OTEL_EXPORTER_OTLP_HEADERS": value}, "OTEL_EXPORTER_OTLP_HEADERS"))
    for value in ("novalue", "x=1,=2"):
        cases.append(Case("headers", {"FLOE_OTLP_HEADERS": value}, "FLOE_OTLP_HEADERS"))
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    for value in ("garbage", f"00-{'0' * 32}-{span_id}-01", f"ff-{trace_id}-{span_id}-01", "00-" + "x" * 600):
        cases.append(Case("carriers", {"TRACEPARENT": value}, "TRACEPARENT"))
    good = f"00-{trace_id}-{span_id}-01"
    cases.append(Case("carriers", {"TRACEPARENT": good, "TRACESTATE": "not a tracestate!"}, "TRACESTATE"))
    cases.append(Case("carriers", {"TRACEPARENT": good, "BAGGAGE": "good=1,bad member,=x"}, "BAGGAGE"))
    files = _files(tmp)
    for path in files.values():
        cases.append(Case("files", {"FLOE_MANIFEST": path}, "FLOE_MANIFEST"))
        cases.append(Case("files", {"FLOE_SPEC": path}, "FLOE_SPEC"))
    for kind in ("missing", "directory", "fifo", "device", "oversized", "binary"):
        cases.append(Case("files", {"FLOE_OTLP_HEADERS_FILE": files[kind]}, "FLOE_OTLP_HEADERS_FILE"))
    garbage = tmp / "headers-garbage"
    garbage.write_text("authorization Bearer x\n\x01\x02=\n")
    cases.append(Case("files", {"FLOE_OTLP_HEADERS_FILE": str(garbage)}, "FLOE_OTLP_HEADERS_FILE"))
    return cases


@pytest.fixture(scope="module")
def module_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    workdir = tmp_path_factory.mktemp("collector")
    collector = Collector(workdir)
    yield collector
    collector.stop()


@dataclass(frozen=True)
class Outcome:
    case: Case
    strict: bool
    returncode: int | None
    stdout: str
    lines: tuple[str, ...]
    seconds: float


def _run(case: Case, base: dict[str, str], strict: bool, cwd: Path) -> Outcome:
    env = {**base, **case.env}
    if strict:
        env["FLOE_OTEL_STRICT"] = "true"
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, APP, "7"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(case, strict, None, "", (), LIMIT_S)
    lines = tuple(line for line in proc.stderr.splitlines() if line.startswith("floe-otel:"))
    return Outcome(case, strict, proc.returncode, proc.stdout, lines, time.monotonic() - start)


@pytest.fixture(scope="module")
def outcomes(module_collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    tmp = tmp_path_factory.mktemp("hostile")
    base = instrumented_env(
        module_collector.http_endpoint,
        FLOE_MODE="prod",
        FLOE_PRODUCT_NAME="orders",
    )
    reference = subprocess.run([sys.executable, APP, "7"], capture_output=True, text=True, check=False)
    assert reference.returncode == 7
    cases = catalogue(tmp)
    jobs = [(c, s) for c in cases for s in (False, True)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda job: _run(job[0], base, job[1], tmp), jobs))


def _right(outcome: Outcome) -> str | None:
    """Why an outcome is wrong (None: right)."""
    if outcome.returncode is None:
        return "hung past the 10 s limit"
    if outcome.strict:
        if outcome.returncode != 78 or outcome.stdout:
            return f"strict: exit {outcome.returncode}, stdout {outcome.stdout[:60]!r}"
    elif outcome.returncode != 7 or '"provider"' not in outcome.stdout:
        return f"program changed: exit {outcome.returncode}, stdout {outcome.stdout[:80]!r}"
    named = [line for line in outcome.lines if outcome.case.names in line]
    if len(outcome.lines) != 1 or len(named) != 1:
        return f"{len(outcome.lines)} floe-otel lines: {list(outcome.lines)[:3]}"
    return None


def test_catalogue_is_large_enough(tmp_path: Path) -> None:
    """The issue asks for at least 150 bad or hostile inputs."""
    assert len(catalogue(tmp_path)) >= 150


def test_every_hostile_input_is_one_line_and_the_program_runs(outcomes: list[Outcome]) -> None:
    """Per category: tried / right, lenient and strict; every case right."""
    tried: Counter[str] = Counter()
    right: Counter[str] = Counter()
    wrong: list[str] = []
    for outcome in outcomes:
        key = f"{outcome.case.category}{' (strict)' if outcome.strict else ''}"
        tried[key] += 1
        why = _right(outcome)
        if why is None:
            right[key] += 1
        else:
            wrong.append(f"{outcome.case.id}{' strict' if outcome.strict else ''}: {why}")
    print("\ncategory                 tried  right")
    for key in sorted(tried):
        print(f"{key:24} {tried[key]:5}  {right[key]:5}")
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(f"slowest: {slowest.case.id} {slowest.seconds:.2f} s")
    assert wrong == [], "\n".join(wrong)
