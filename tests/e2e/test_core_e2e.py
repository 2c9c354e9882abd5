"""End to end: a plain job under `opentelemetry-instrument` exports all three signals to the real collector."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.support.collector import Collector
from tests.support.run import instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
APP = str(Path(__file__).parent / "apps" / "signals_app.py")
FLOE = {"FLOE_PRODUCT_NAME": "orders", "FLOE_PRODUCT_VERSION": "2.1.0", "FLOE_NAMESPACE": "sales"}
FLOE_ATTRS = {
    "floe.namespace": "sales",
    "floe.product.name": "orders",
    "floe.product.version": "2.1.0",
    "floe.mode": "prod",
}


def _app_output(stdout: str) -> dict[str, object]:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_all_three_signals_reach_the_collector(collector: Collector, protocol: str) -> None:
    """Spans, metrics and logs arrive over both protocols, tagged with floe attributes; logs carry the trace."""
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    env = instrumented_env(
        endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        FLOE_MODE="prod",
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        **FLOE,
    )
    proc = run_instrumented([sys.executable, APP], env)
    assert proc.returncode == 0, proc.stderr
    out = _app_output(proc.stdout)
    assert out["provider"] == "TracerProvider"
    assert collector.wait_for(lambda c: len(c.spans()) >= 2 and c.metrics() and c.logs())
    spans = {s["name"]: s for s in collector.spans()}
    assert spans["load"]["parent_span_id"] == spans["job"]["span_id"]
    for span in spans.values():
        assert FLOE_ATTRS.items() <= span["attributes"].items()  # on every span
        assert FLOE_ATTRS.items() <= span["resource"].items()
        assert span["resource"]["service.name"] == "orders"
        assert span["resource"]["service.version"] == "2.1.0"
        assert span["resource"]["deployment.environment.name"] == "prod"
    rows = [m for m in collector.metrics() if m["name"] == "signals_app.rows"]
    assert rows and rows[0]["points"][0]["attributes"] == {"table": "orders"}
    assert rows[0]["resource"]["floe.product.name"] == "orders"
    logs = [r for r in collector.logs() if r["body"] == "loaded 3 rows"]
    assert logs and logs[0]["trace_id"] == out["trace_id"]
    assert logs[0]["span_id"] == spans["load"]["span_id"]


def test_bearer_token_right_is_accepted_wrong_is_rejected_without_harm(tmp_path: Path) -> None:
    """With the collector's bearer-token authenticator, the right token delivers; a wrong one drops quietly."""
    workdir = tmp_path / "auth"
    workdir.mkdir()
    collector = Collector(workdir, auth_token="s3cr3t-token")
    try:
        bad = instrumented_env(
            collector.http_endpoint,
            OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer wrong-token",
            OTEL_TRACES_SAMPLER="always_on",
            **FLOE,
        )
        started = time.monotonic()
        proc = run_instrumented([sys.executable, APP], bad)
        elapsed = time.monotonic() - started
        assert proc.returncode == 0 and _app_output(proc.stdout)["provider"] == "TracerProvider"
        assert "wrong-token" not in proc.stderr
        assert proc.stderr.count("floe-otel:") <= 1  # one throttled warning, not a retry flood
        assert elapsed < 10
        time.sleep(0.5)
        assert collector.spans() == []

        secrets = tmp_path / "otlp-headers"  # a mounted Kubernetes Secret
        secrets.write_text("authorization=Bearer s3cr3t-token\n")
        good = instrumented_env(
            collector.http_endpoint, FLOE_OTLP_HEADERS_FILE=str(secrets), OTEL_TRACES_SAMPLER="always_on", **FLOE
        )
        proc = run_instrumented([sys.executable, APP], good)
        assert proc.returncode == 0, proc.stderr
        assert collector.wait_for(lambda c: len(c.spans()) >= 2)
    finally:
        collector.stop()


@pytest.mark.parametrize(
    ("variable", "value", "provider"),
    [
        ("FLOE_MODE", "qa", "TracerProvider"),  # falls back to dev; the explicit endpoint still wins
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "ProxyTracerProvider"),  # export impossible
        ("FLOE_SAMPLING_RATIO", "1.5", "TracerProvider"),  # falls back to the mode's ratio
        ("FLOE_TELEMETRY_BACKEND", "nope", "ProxyTracerProvider"),  # no usable backend
        ("FLOE_MANIFEST", "/does/not/exist.yaml", "TracerProvider"),  # the manifest is skipped
    ],
)
def test_bad_config_is_one_line(collector: Collector, variable: str, value: str, provider: str) -> None:
    """Bad input: one `floe-otel:` line naming the variable; a bad tunable degrades, only an impossible export
    turns telemetry off; the program keeps its own status either way."""
    env = instrumented_env(collector.http_endpoint, **FLOE)
    env[variable] = value
    proc = run_instrumented([sys.executable, APP, "3"], env)
    assert proc.returncode == 3
    assert _app_output(proc.stdout)["provider"] == provider
    lines = [line for line in proc.stderr.splitlines() if line.startswith("floe-otel:")]
    assert len(lines) == 1 and variable in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_strict_mode_stops_the_program_before_it_starts(collector: Collector) -> None:
    """FLOE_OTEL_STRICT=true turns the same error into a non-zero exit before the program runs."""
    env = instrumented_env(collector.http_endpoint, FLOE_OTEL_STRICT="true", FLOE_MODE="qa", **FLOE)
    proc = run_instrumented([sys.executable, APP], env)
    assert proc.returncode == 78
    assert proc.stdout == ""
    assert proc.stderr.startswith("floe-otel: FLOE_MODE='qa'")


@pytest.mark.parametrize("switch", ["sdk", "manifest"])
def test_disabled_installs_nothing(collector: Collector, tmp_path: Path, switch: str) -> None:
    """OTEL_SDK_DISABLED=true or tracing disabled in the manifest: no provider, nothing exported."""
    env = instrumented_env(collector.http_endpoint, **FLOE)
    if switch == "sdk":
        env["OTEL_SDK_DISABLED"] = "true"
    else:
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text("apiVersion: floe.dev/v1\nkind: Manifest\nobservability:\n  tracing:\n    enabled: false\n")
        env["FLOE_MANIFEST"] = str(manifest)
    proc = run_instrumented([sys.executable, APP], env)
    assert proc.returncode == 0
    assert "floe-otel" not in proc.stderr and "Traceback" not in proc.stderr
    assert _app_output(proc.stdout)["provider"] == "ProxyTracerProvider"
    time.sleep(0.5)
    assert collector.spans() == [] and collector.metrics() == [] and collector.logs() == []


def test_namespace_travels_in_baggage_and_incoming_baggage_is_kept(collector: Collector) -> None:
    """floe's four baggage keys are put into W3C baggage; baggage handed in by the caller is preserved."""
    env = instrumented_env(collector.http_endpoint, BAGGAGE="tenant=acme,floe.mode=dev", **FLOE)
    proc = run_instrumented([sys.executable, APP], env)
    assert proc.returncode == 0, proc.stderr
    assert _app_output(proc.stdout)["baggage"] == {**FLOE_ATTRS, "floe.mode": "dev", "tenant": "acme"}
