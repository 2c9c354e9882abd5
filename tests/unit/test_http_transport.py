"""The standard-library OTLP/HTTP transport under upstream's exporter, against real local HTTP(S) servers."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from floe_otel_distro import delivery, http_transport
from floe_otel_distro.http_transport import StdlibTransport

SECRET = "s3cr3t-token-value"


class _Server:
    """HTTP/1.1 server (keep-alive) answering each POST from a script of (status, headers) replies."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.replies: list[tuple[int, dict[str, str]]] = []
        self.seen: list[dict[str, Any]] = []
        self.connections: set[tuple[str, int]] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.connections.add(self.client_address)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.seen.append({"path": self.path, "headers": headers, "body": body})
                status, reply = outer.replies.pop(0) if outer.replies else (200, {})
                self.send_response(status)
                for k, v in reply.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme: str = "http", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}/v1/traces"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def _spans(n: int = 2) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("t")
    spans = []
    for i in range(n):
        span = tracer.start_span(f"s{i}")
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]


def _exporter(url: str, transport: StdlibTransport | None = None, **kwargs: Any) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=url, _transport=transport or StdlibTransport(), **kwargs)  # type: ignore[call-overload]


def _outcome_of(fn: Callable[[], Any]) -> tuple[Any, delivery.Outcome]:
    outcome = delivery.Outcome(secrets=(SECRET,), give_up=lambda: None)
    with delivery.exporting(outcome):
        return fn(), outcome


def test_exports_reuse_one_kept_alive_connection(server: _Server) -> None:
    exporter = _exporter(server.url(), headers={"authorization": f"Bearer {SECRET}"})
    for _ in range(3):
        assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    assert len(server.seen) == 3 and len(server.connections) == 1
    first = server.seen[0]
    assert first["path"] == "/v1/traces"
    assert first["headers"]["content-type"] == "application/x-protobuf"
    assert first["headers"]["authorization"] == f"Bearer {SECRET}"
    assert first["headers"]["user-agent"].startswith("OTel-OTLP-Exporter-Python")
    assert len(first["body"]) > 20  # an ExportTraceServiceRequest with 2 spans
    exporter.shutdown()


def test_a_refused_status_is_told_to_delivery_and_not_retried(server: _Server) -> None:
    server.replies = [(401, {})]
    result, outcome = _outcome_of(lambda: _exporter(server.url()).export(_spans()))
    assert result is SpanExportResult.FAILURE
    assert len(server.seen) == 1
    assert outcome.cause is not None and outcome.cause.startswith("HTTP 401")


def test_retry_after_is_upstreams_retry_then_success(server: _Server) -> None:
    server.replies = [(503, {"Retry-After": "0"}), (200, {})]
    result, _ = _outcome_of(lambda: _exporter(server.url()).export(_spans()))
    assert result is SpanExportResult.SUCCESS
    assert len(server.seen) == 2


def test_a_server_closing_the_connection_is_reconnected(server: _Server) -> None:
    server.replies = [(200, {"Connection": "close"}), (200, {})]
    exporter = _exporter(server.url())
    assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    assert len(server.connections) == 2


def test_refused_connection_names_the_cause() -> None:
    port = _free_port()
    result, outcome = _outcome_of(lambda: _exporter(f"http://127.0.0.1:{port}/v1/traces", timeout=0.5).export(_spans()))
    assert result is SpanExportResult.FAILURE
    assert outcome.cause == delivery.REFUSED


def test_read_timeout_and_connect_timeout_are_told_apart() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (backlog) but never answers
    port = listener.getsockname()[1]
    try:
        transport = StdlibTransport()
        result, outcome = _outcome_of(
            lambda: transport.request("POST", f"http://127.0.0.1:{port}/v1/traces", timeout=0.3, data=b"x")
        )
        assert isinstance(result.error, TimeoutError)
        assert outcome.cause is not None and "accepted the connection but did not answer" in outcome.cause
    finally:
        listener.close()
    # a full accept queue drops the SYN: the connect itself times out
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    waiting = socket.create_connection(("127.0.0.1", port))  # fills the queue
    try:
        result, outcome = _outcome_of(
            lambda: StdlibTransport().request("POST", f"http://127.0.0.1:{port}/v1/traces", timeout=0.3, data=b"x")
        )
        assert isinstance(result.error, http_transport.ConnectTimeoutError)
        assert StdlibTransport().is_connection_error(result.error)
        assert outcome.cause is not None and "connection was not accepted within 0.3 s" in outcome.cause
    finally:
        waiting.close()
        full.close()


def test_close_from_another_thread_ends_a_request_blocked_in_a_read() -> None:
    """An abort (exit budget) shuts the transport while the batch thread waits for an answer: it returns now."""
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts, never answers
    port = listener.getsockname()[1]
    transport = StdlibTransport()
    results: list[Any] = []
    outcome = delivery.Outcome()

    def send() -> None:
        with delivery.exporting(outcome):
            results.append(transport.request("POST", f"http://127.0.0.1:{port}/v1/traces", timeout=30, data=b"x"))

    worker = threading.Thread(target=send)
    try:
        worker.start()
        time.sleep(0.3)
        started = time.monotonic()
        transport.close()
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - started < 2
        assert results[0].error is not None and transport.is_connection_error(results[0].error)
        assert outcome.cause is not None and outcome.cause.startswith("timeout: the collector accepted the connection")
        assert "the exit budget" in outcome.cause
    finally:
        listener.close()


def test_http_to_a_grpc_like_port_is_not_otlp_http() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def h2_only() -> None:  # what a gRPC port does with HTTP/1.1: an HTTP/2 frame, then close
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64")
            conn.close()

    threading.Thread(target=h2_only, daemon=True).start()
    try:
        result, outcome = _outcome_of(
            lambda: StdlibTransport().request("POST", f"http://127.0.0.1:{port}/v1/traces", timeout=2, data=b"x")
        )
        assert result.error is not None
        assert outcome.cause is not None and outcome.cause.startswith("not OTLP/HTTP")
    finally:
        listener.close()


def test_userinfo_becomes_basic_auth_and_header_values_are_never_in_the_cause(server: _Server) -> None:
    exporter = _exporter(server.url(userinfo=f"floe:{SECRET}@"))
    assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    expected = "Basic " + base64.b64encode(f"floe:{SECRET}".encode()).decode()
    assert server.seen[0]["headers"]["authorization"] == expected
    bad, outcome = _outcome_of(
        lambda: StdlibTransport().request("POST", server.url(), headers={"authorization": f"{SECRET}\r\nX: y"})
    )
    assert bad.error is not None
    assert outcome.cause is not None and outcome.cause.startswith("bad header") and SECRET not in outcome.cause


def test_gzip_compression_is_upstreams(server: _Server) -> None:
    import gzip

    from opentelemetry.exporter.otlp.proto.http import Compression

    assert _exporter(server.url(), compression=Compression.Gzip).export(_spans()) is SpanExportResult.SUCCESS
    seen = server.seen[0]
    assert seen["headers"]["content-encoding"] == "gzip"
    assert len(gzip.decompress(seen["body"])) > 20


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_with_the_configured_ca_and_an_untrusted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls_server = _Server(tls=context)
    try:
        # untrusted (certifi's bundle does not hold a self-signed certificate)
        result, outcome = _outcome_of(lambda: _exporter(tls_server.url("https"), timeout=2).export(_spans()))
        assert result is SpanExportResult.FAILURE
        assert outcome.cause is not None and outcome.cause.startswith("TLS error")
        # OTEL_EXPORTER_OTLP_CERTIFICATE, resolved as upstream resolves it
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(cert))
        exporter = _exporter(tls_server.url("https"), http_transport.transport_for("traces"))
        assert exporter.export(_spans()) is SpanExportResult.SUCCESS
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_CERTIFICATE")
        # REQUESTS_CA_BUNDLE, as requests honours it
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert _exporter(tls_server.url("https")).export(_spans()) is SpanExportResult.SUCCESS
    finally:
        tls_server.close()


def test_client_certificate_pair_is_resolved_from_the_signal_variables() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "/c.pem",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem",
        "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": "/ca.pem",
    }
    traces = http_transport.transport_for("traces", environ=env)
    assert (traces._verify, traces._cert) == (True, ("/c.pem", "/k.pem"))
    logs = http_transport.transport_for("logs", environ=env)
    assert (logs._verify, logs._cert) == ("/ca.pem", None)


def test_an_exporter_without_a_transport_parameter_is_detected() -> None:
    class Old:
        def __init__(self, endpoint: str | None = None, session: Any = None) -> None: ...

    assert http_transport.accepts_transport(Old) is False
    assert http_transport.accepts_transport(OTLPSpanExporter) is True


def test_the_distro_exports_without_importing_requests(server: _Server, tmp_path: Path) -> None:
    """The lazy exporter's real exporter: built with the stdlib transport, and requests never imported."""
    code = (
        "import sys\n"
        "from floe_otel_distro import exporters\n"
        "from floe_otel_distro.plan import ExporterPlan\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        f"spec = ExporterPlan(kind='otlp', protocol='http/protobuf', endpoint={server.url()!r})\n"
        "lazy = exporters.otlp_exporter('traces', spec)\n"
        "span = TracerProvider().get_tracer('t').start_span('s'); span.end()\n"
        "print(lazy.export([span]).name, type(lazy._get()._client._transport).__name__, 'requests' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SUCCESS", "StdlibTransport", "False"]
    assert len(server.seen) == 1
    proxied = subprocess.run(
        [sys.executable, "-c", code], env=env | {"HTTP_PROXY": "http://127.0.0.1:1", "NO_PROXY": "127.0.0.1"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert proxied.stdout.split() == ["SUCCESS", "RequestsHTTPTransport", "True"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
