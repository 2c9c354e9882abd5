"""Operator pod simulations for Instrumentation variants, with the image's tree (see test_operator_image_e2e.py).

Each pod is the example Job's container (k8s/operator/example-job.yaml) with its command replaced by
``tests/e2e/apps/operator_http_job.py`` (HTTP GETs against a server in this test, which records the headers it
receives), injected the operator's way from a variant of k8s/operator/instrumentation.yaml:

| variant | CR change | interpreter |
|---|---|---|
| every propagator | all seven the operator offers; ``sampler: {type: always_on}`` (no argument) | bare |
| ratio 0 | ``sampler: {type: traceidratio, argument: "0"}`` | bare |
| pydantic-v1 app | none (the shipped CR, ratio forced to 1) | a venv with pydantic 1.10 and requests 2.28 |
| wrong Python minor | none | a bare interpreter of another minor than the tree's |
| doctor | every propagator | bare, ``python -m floe_otel_distro.cli doctor`` |
| too-old protobuf app | none | a venv with protobuf 4.25 |
| a sampler the Python SDK lacks | ``sampler: {type: xray}`` | bare |
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from floe_otel_distro._isolation import minor_mismatch_line
from tests.e2e.test_k8s_pods_e2e import find, simulate
from tests.e2e.test_operator_image_e2e import autoinstrumentation_tree, bare_python, inject
from tests.support.collector import Collector

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "e2e" / "apps" / "operator_http_job.py"
ALL_PROPAGATORS = ["tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace"]
PYENV = Path.home() / ".pyenv" / "versions"
# the three HTTP client metrics urllib's instrumentation records (upstream's image gives the same)
HTTP_METRICS = {"http.client.duration", "http.client.request.size", "http.client.response.size"}


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP server: (base URL, the headers of every request it received)."""
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def variant(**spec: Any) -> dict[str, Any]:
    """The shipped Instrumentation with ``spec`` keys replaced."""
    doc = copy.deepcopy(find("Instrumentation", "floe"))
    doc["spec"].update(spec)
    return doc


def pod_env(instrumentation: dict[str, Any], tmp_path: Path, python: Path, collector: Collector) -> dict[str, str]:
    """The injected env of the example Job's container (endpoint pointed at the test collector)."""
    job = find("Job", "iot-telemetry-refresh-once")
    pod = simulate(job, "refresh", tmp_path, "iot-telemetry-refresh-once-v4r1x")
    inject(instrumentation, job, pod, autoinstrumentation_tree())
    pod.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.http_endpoint
    pod.env["PATH"] = f"{python.parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return pod.env


def run(python: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *argv], env=env, capture_output=True, text=True, timeout=120, check=False)


def floe_lines(stderr: str) -> list[str]:
    """The ``floe-otel:`` lines, less the prod bypass warning our endpoint override itself causes."""
    return [line for line in stderr.splitlines()
            if line.startswith("floe-otel:") and "bypass the platform collector" not in line]


def _other_minor_python() -> Path:
    """An installed interpreter whose minor differs from the one the tree is built with."""
    ours = "{}.{}".format(*sys.version_info[:2])
    for version in ("3.13.0", "3.12.1", "3.10.13"):
        minor = version.rsplit(".", 1)[0]
        candidate = PYENV / version / "bin" / f"python{minor}"
        if minor != ours and candidate.is_file():
            return candidate
    raise AssertionError(f"no Python other than {ours} under {PYENV} (3.10/3.12/3.13 are part of the test setup)")


@pytest.mark.e2e
def test_every_propagator_and_the_argumentless_sampler(
    collector: Collector, tmp_path: Path, http_server: tuple[str, list[dict[str, str]]]
) -> None:
    """All seven propagators inject their headers, always_on (no argument) samples all; a span and 3 HTTP metrics."""
    url, seen = http_server
    python = bare_python(tmp_path)
    cr = variant(propagators=ALL_PROPAGATORS, sampler={"type": "always_on"})
    env = pod_env(cr, tmp_path, python, collector)
    assert env["OTEL_PROPAGATORS"] == ",".join(ALL_PROPAGATORS) and "OTEL_TRACES_SAMPLER_ARG" not in env

    result = run(python, [str(APP), url], env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Error in sitecustomize" not in result.stderr and floe_lines(result.stderr) == [], result.stderr
    assert collector.wait_for(lambda c: {m["name"] for m in c.metrics()} >= HTTP_METRICS), result.stderr
    client = [s for s in collector.spans() if s["name"] == "GET"]
    assert len(client) == 2, [s["name"] for s in collector.spans()]  # urllib, and requests from floe-deps
    assert {s["resource"]["service.name"] for s in client} == {"iot-telemetry-refresh-once"}
    trace_ids = {s["trace_id"] for s in client}
    for headers in seen:
        assert headers["traceparent"].split("-")[1] in trace_ids
        for header in ("b3", "x-b3-traceid", "uber-trace-id", "x-amzn-trace-id", "ot-tracer-traceid"):
            assert header in headers, (header, sorted(headers))
    assert len(seen) == 2


@pytest.mark.e2e
def test_ratio_sampler_argument_is_honoured(
    collector: Collector, tmp_path: Path, http_server: tuple[str, list[dict[str, str]]]
) -> None:
    """sampler {type: traceidratio, argument: "0"}: no span is exported, the HTTP metrics still are."""
    url, _ = http_server
    python = bare_python(tmp_path)
    env = pod_env(variant(sampler={"type": "traceidratio", "argument": "0"}), tmp_path, python, collector)
    assert env["OTEL_TRACES_SAMPLER"] == "traceidratio" and env["OTEL_TRACES_SAMPLER_ARG"] == "0"

    result = run(python, [str(APP), url], env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert floe_lines(result.stderr) == [], result.stderr
    assert collector.wait_for(lambda c: {m["name"] for m in c.metrics()} >= HTTP_METRICS), result.stderr
    assert collector.spans() == []


@pytest.mark.e2e
def test_pydantic_v1_app_keeps_its_own_dependencies(
    collector: Collector, tmp_path: Path, http_server: tuple[str, list[dict[str, str]]]
) -> None:
    """An app pinned to pydantic 1.10 and requests 2.28 imports its own copies, runs unchanged, and is traced."""
    url, seen = http_server
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp_path / "app")], check=True, timeout=120)
    python = tmp_path / "app" / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "pydantic==1.10.26",
         "requests==2.28.2", "urllib3==1.26.20"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    plain = run(python, [str(APP), url], {"PATH": os.environ["PATH"]})
    assert plain.returncode == 0, plain.stderr
    app_own = json.loads(plain.stdout)
    assert app_own["pydantic"][0].startswith("1.10") and app_own["requests"][0] == "2.28.2"
    seen.clear()

    env = pod_env(find("Instrumentation", "floe"), tmp_path, python, collector)
    env["OTEL_TRACES_SAMPLER_ARG"] = "1.0"  # the CR samples prod at 10 %: this test needs every span
    for name in ("FLOE_MANIFEST",):  # env-only settings: the manifest schema needs pydantic v2 (see docs)
        env.pop(name)
    result = run(python, [str(APP), url], env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == app_own, "the image's pydantic/requests replaced the application's"
    assert floe_lines(result.stderr) == [], result.stderr
    assert collector.wait_for(lambda c: len([s for s in c.spans() if s["name"] == "GET"]) >= 2), result.stderr
    spans = collector.spans()
    assert {s["scope"] for s in spans if s["name"] == "GET"} == {
        "opentelemetry.instrumentation.urllib", "opentelemetry.instrumentation.requests"}
    assert {s["resource"]["floe.product.name"] for s in spans} == {"iot-telemetry"}
    assert all("traceparent" in h for h in seen)


@pytest.mark.e2e
def test_wrong_python_minor_is_one_line_and_runs_uninstrumented(
    collector: Collector, tmp_path: Path, http_server: tuple[str, list[dict[str, str]]]
) -> None:
    """A tree built for this minor, run by another: one floe-otel line naming both, the program runs untouched."""
    url, seen = http_server
    other = _other_minor_python()
    python = tmp_path / "bare" / "bin" / "python"
    subprocess.run([str(other), "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    running = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    env = pod_env(find("Instrumentation", "floe"), tmp_path, python, collector)
    env["OTEL_TRACES_SAMPLER_ARG"] = "1.0"

    result = run(python, [str(APP), url], env)

    built = "{}.{}".format(*sys.version_info[:2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.splitlines() == [f"floe-otel: {minor_mismatch_line(built, running)}"]
    assert f"Python {built}" in result.stderr and f"Python {running}" in result.stderr
    assert json.loads(result.stdout) == {}, "the tree's packages must be off sys.path (the app has none)"
    assert all("traceparent" not in h for h in seen)
    assert not collector.wait_for(lambda c: bool(c.spans() or c.metrics()), timeout=2)


@pytest.mark.e2e
def test_doctor_runs_in_an_injected_pod(collector: Collector, tmp_path: Path) -> None:
    """``python -m floe_otel_distro.cli doctor`` with the pod's env reports the plan and instruments nothing."""
    python = bare_python(tmp_path)
    env = pod_env(variant(propagators=ALL_PROPAGATORS), tmp_path, python, collector)

    result = run(python, ["-m", "floe_otel_distro.cli", "doctor", "--json"], env)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert floe_lines(result.stderr) == [], result.stderr
    report = json.loads(result.stdout)
    text = json.dumps(report)
    for name in ALL_PROPAGATORS:
        assert f'"{name}"' in text, name
    assert collector.http_endpoint.split("//")[1] in text
    assert not collector.wait_for(lambda c: bool(c.spans() or c.metrics()), timeout=2)


@pytest.mark.e2e
def test_app_dependency_too_old_for_opentelemetry_turns_telemetry_off_not_the_app(
    collector: Collector, tmp_path: Path
) -> None:
    """An app with protobuf 4 (opentelemetry-proto needs >= 5): its copy is kept, one line, no telemetry."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp_path / "app")], check=True, timeout=120)
    python = tmp_path / "app" / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "protobuf==4.25.8"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = pod_env(find("Instrumentation", "floe"), tmp_path, python, collector)
    probe = "import sys, google.protobuf as p; print(p.__version__, any('autoinstrumentation' in e for e in sys.path))"

    result = run(python, ["-c", probe], env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.splitlines() == [
        "floe-otel: the application's protobuf 4.25.8 does not meet opentelemetry-proto's protobuf<8.0,>=5.0 "
        "(the application's copy is kept); telemetry is off, the program runs without it"
    ]
    assert result.stdout.split() == ["4.25.8", "False"], "the app's protobuf, and the tree taken off sys.path"
    assert not collector.wait_for(lambda c: bool(c.spans() or c.metrics()), timeout=2)


@pytest.mark.e2e
def test_sampler_the_python_sdk_lacks_is_one_line_and_a_fallback(
    collector: Collector, tmp_path: Path, http_server: tuple[str, list[dict[str, str]]]
) -> None:
    """sampler {type: xray} (valid in the CR, not in the Python SDK): one line naming it, spans still arrive."""
    url, _ = http_server
    python = bare_python(tmp_path)
    env = pod_env(variant(sampler={"type": "xray"}), tmp_path, python, collector)
    env["FLOE_MODE"] = "dev"  # dev's ratio is 1: every span of this run is sampled

    result = run(python, [str(APP), url], env)

    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = floe_lines(result.stderr)
    assert line.startswith("floe-otel: OTEL_TRACES_SAMPLER='xray': use one of always_on"), line
    assert line.endswith("(using parentbased_traceidratio)"), line
    assert collector.wait_for(lambda c: len([s for s in c.spans() if s["name"] == "GET"]) == 2), result.stderr
