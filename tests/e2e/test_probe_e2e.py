"""End to end: doctor's endpoint probe against the real OpenTelemetry Collector, on both protocols and both ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from floe_otel_distro.probe import probe
from tests.support.collector import Collector

pytestmark = pytest.mark.e2e
SIGNALS = ("traces", "metrics", "logs")
TOKEN = "e2e-right-token-5f2c9a"
WRONG = "e2e-wrong-token-77b1d0"


@pytest.fixture
def auth_collector(tmp_path: Path) -> Iterator[Collector]:
    """A real collector whose OTLP receivers (gRPC and HTTP) want ``authorization: Bearer TOKEN``."""
    workdir = tmp_path / "auth-collector"
    workdir.mkdir()
    c = Collector(workdir, auth_token=TOKEN)
    yield c
    c.stop()


@pytest.mark.parametrize("signal", SIGNALS)
def test_http_probe_to_the_http_port_is_ok(collector: Collector, signal: str) -> None:
    result = probe(signal, "http/protobuf", f"{collector.http_endpoint}/v1/{signal}", {})
    assert (result.signal, result.ok, result.status) == (signal, True, "HTTP 200"), result


@pytest.mark.parametrize("signal", SIGNALS)
def test_grpc_probe_to_the_grpc_port_is_ok(collector: Collector, signal: str) -> None:
    result = probe(signal, "grpc", collector.grpc_endpoint, {})
    assert (result.signal, result.ok, result.status) == (signal, True, "gRPC OK"), result


def test_http_probe_to_the_grpc_port_is_not_otlp_http(collector: Collector) -> None:
    result = probe("traces", "http/protobuf", f"{collector.grpc_endpoint}/v1/traces", {})
    assert (result.ok, result.status) == (False, "not OTLP/HTTP"), result
    assert "4318" in result.detail
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in result.detail


def test_grpc_probe_to_the_http_port_is_not_ok(collector: Collector) -> None:
    result = probe("traces", "grpc", collector.http_endpoint, {})
    assert not result.ok, result
    assert result.status.startswith("gRPC "), result
    assert result.status != "gRPC OK"
    assert "4317" in result.detail


def test_https_probe_to_the_plain_http_port_is_a_tls_error(collector: Collector) -> None:
    result = probe("traces", "http/protobuf", f"https://127.0.0.1:{collector.http_port}/v1/traces", {})
    assert (result.ok, result.status) == (False, "TLS error"), result


def test_wrong_path_is_404(collector: Collector) -> None:
    result = probe("traces", "http/protobuf", f"{collector.http_endpoint}/v1/nope", {})
    assert (result.ok, result.status) == (False, "HTTP 404"), result
    assert "/v1/traces" in result.detail


def test_closed_collector_is_refused(collector: Collector) -> None:
    collector.stop()
    http = probe("traces", "http/protobuf", f"{collector.http_endpoint}/v1/traces", {})
    assert (http.ok, http.status) == (False, "refused"), http
    grpc = probe("traces", "grpc", collector.grpc_endpoint, {})
    assert (grpc.ok, grpc.status) == (False, "gRPC UNAVAILABLE"), grpc
    assert "connection refused" in grpc.detail


@pytest.mark.parametrize("signal", SIGNALS)
def test_right_token_is_ok_on_both_protocols(auth_collector: Collector, signal: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    http = probe(signal, "http/protobuf", f"{auth_collector.http_endpoint}/v1/{signal}", headers)
    assert (http.ok, http.status) == (True, "HTTP 200"), http
    grpc = probe(signal, "grpc", auth_collector.grpc_endpoint, headers)
    assert (grpc.ok, grpc.status) == (True, "gRPC OK"), grpc
    assert TOKEN not in repr(http) + repr(grpc)


def test_wrong_token_is_401_and_unauthenticated(auth_collector: Collector) -> None:
    headers = {"Authorization": f"Bearer {WRONG}"}
    http = probe("traces", "http/protobuf", f"{auth_collector.http_endpoint}/v1/traces", headers)
    assert (http.ok, http.status) == (False, "HTTP 401"), http
    grpc = probe("traces", "grpc", auth_collector.grpc_endpoint, headers)
    assert (grpc.ok, grpc.status) == (False, "gRPC UNAUTHENTICATED"), grpc
    for result in (http, grpc):
        assert "OTEL_EXPORTER_OTLP_HEADERS" in result.detail
        assert WRONG not in repr(result)
        assert TOKEN not in repr(result)


def test_missing_token_is_401_and_unauthenticated(auth_collector: Collector) -> None:
    http = probe("logs", "http/protobuf", f"{auth_collector.http_endpoint}/v1/logs", {})
    assert (http.ok, http.status) == (False, "HTTP 401"), http
    grpc = probe("logs", "grpc", auth_collector.grpc_endpoint, {})
    assert (grpc.ok, grpc.status) == (False, "gRPC UNAUTHENTICATED"), grpc
    assert "no headers were sent" in http.detail
    assert "no headers were sent" in grpc.detail
