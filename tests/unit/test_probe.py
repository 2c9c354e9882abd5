"""probe(): a real empty OTLP export against real loopback servers (HTTP, raw TCP, TLS, gRPC), and what it reports."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from floe_otel_distro import probe as probe_module
from floe_otel_distro.probe import ProbeResult, _shown_url, probe

SECRET = "s3cr3t-token-0123456789"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_clean(result: ProbeResult, *secrets: str) -> None:
    """No secret anywhere in what the doctor would print."""
    text = repr(result)
    for secret in secrets:
        assert secret not in text, (secret, result)


# ---- a tiny OTLP/HTTP-ish server ----------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    port: int
    code: int = 200
    reply_headers: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str = "/v1/traces", scheme: str = "http", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    state = HttpServer(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.seen.append(Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.code)
            for k, v in state.reply_headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def test_200_is_ok_and_the_export_is_a_real_empty_protobuf_post(http_server: HttpServer) -> None:
    result = probe("traces", "http/protobuf", http_server.url(), {})
    assert result == ProbeResult("traces", True, "HTTP 200", result.detail)
    assert "accepted an empty traces export" in result.detail
    assert http_server.url() in result.detail
    [seen] = http_server.seen
    assert (seen.method, seen.path, seen.body) == ("POST", "/v1/traces", b"")
    assert seen.headers["content-type"] == "application/x-protobuf"
    assert seen.headers["content-length"] == "0"


def test_any_2xx_is_ok(http_server: HttpServer) -> None:
    http_server.code = 204
    result = probe("logs", "http/protobuf", http_server.url("/v1/logs"), {})
    assert (result.ok, result.status, result.signal) == (True, "HTTP 204", "logs")


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (400, "malformed"),
        (401, "OTEL_EXPORTER_OTLP_HEADERS"),
        (403, "allowed to write metrics"),
        (404, "must end in /v1/metrics"),
        (405, "does not accept POST"),
        (413, "body limit"),
        (415, "application/x-protobuf"),
        (429, "rate limiting"),
        (503, "memory_limiter"),
    ],
)
def test_each_refusal_code_gets_its_own_fix(http_server: HttpServer, code: int, fix: str) -> None:
    http_server.code = code
    result = probe("metrics", "http/protobuf", http_server.url("/v1/metrics"), {})
    assert not result.ok
    assert result.status == f"HTTP {code}"
    assert fix in result.detail
    assert f"answered HTTP {code}" in result.detail
    assert "Retry-After" not in result.detail  # the peer sent none


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_reported(http_server: HttpServer, code: int) -> None:
    http_server.code = code
    http_server.reply_headers = {"Retry-After": "7"}
    result = probe("traces", "http/protobuf", http_server.url(), {})
    assert (result.ok, result.status) == (False, f"HTTP {code}")
    assert "(Retry-After: 7)" in result.detail


def test_other_codes_get_a_generic_sentence(http_server: HttpServer) -> None:
    http_server.code = 500
    result = probe("traces", "http/protobuf", http_server.url(), {})
    assert (result.ok, result.status) == (False, "HTTP 500")
    assert "check the collector" in result.detail
    http_server.code = 418
    assert probe("traces", "http/protobuf", http_server.url(), {}).status == "HTTP 418"


def test_redirect_shows_the_target_without_its_secrets(http_server: HttpServer) -> None:
    http_server.code = 308
    http_server.reply_headers = {"Location": "https://u:pw-in-location@otlp.example/v1/traces?key=loc-secret"}
    result = probe("traces", "http/protobuf", http_server.url(), {})
    assert (result.ok, result.status) == (False, "HTTP 308")
    assert "https://***@otlp.example/v1/traces" in result.detail
    _assert_clean(result, "pw-in-location", "loc-secret")


def test_headers_reach_the_peer_and_their_values_never_come_back(http_server: HttpServer) -> None:
    headers = {"Authorization": f"Bearer {SECRET}", "X-Scope-OrgID": "tenant-secret-42"}
    for code in (200, 401, 403):
        http_server.code = code
        result = probe("traces", "http/protobuf", http_server.url(), headers)
        assert result.status == f"HTTP {code}"
        assert http_server.seen[-1].headers["authorization"] == f"Bearer {SECRET}"
        assert http_server.seen[-1].headers["x-scope-orgid"] == "tenant-secret-42"
        _assert_clean(result, SECRET, "tenant-secret-42")
    assert "authorization, x-scope-orgid were sent and refused" in result.detail  # names only


def test_401_without_headers_says_none_were_sent(http_server: HttpServer) -> None:
    http_server.code = 401
    assert "no headers were sent" in probe("traces", "http/protobuf", http_server.url(), {}).detail


def test_userinfo_and_query_reach_the_peer_but_are_never_shown(http_server: HttpServer) -> None:
    http_server.code = 404
    url = http_server.url("/v1/traces?token=x-query-secret&x=1", userinfo="alice:hunter2-password@")
    result = probe("traces", "http/protobuf", url, {})
    assert result.status == "HTTP 404"
    assert f"http://***@127.0.0.1:{http_server.port}/v1/traces answered" in result.detail
    _assert_clean(result, "hunter2-password", "alice", "x-query-secret", "token=", "?")
    seen = http_server.seen[-1]
    assert seen.path == "/v1/traces?token=x-query-secret&x=1"  # sent as the exporter would
    assert seen.headers["authorization"] == "Basic YWxpY2U6aHVudGVyMi1wYXNzd29yZA=="  # alice:hunter2-password
    http_server.code = 401
    refused = probe("traces", "http/protobuf", url, {})
    assert "the authorization header was sent and refused" in refused.detail  # the Basic auth made from userinfo
    _assert_clean(refused, "hunter2-password", "YWxpY2U6aHVudGVyMi1wYXNzd29yZA==", "x-query-secret")


def test_an_explicit_authorization_header_wins_over_userinfo(http_server: HttpServer) -> None:
    probe("traces", "http/protobuf", http_server.url(userinfo="u:p@"), {"authorization": f"Bearer {SECRET}"})
    assert http_server.seen[-1].headers["authorization"] == f"Bearer {SECRET}"


# ---- peers that are not OTLP/HTTP ---------------------------------------------------------------


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """``start(behaviour)``: a TCP server on 127.0.0.1 running ``behaviour(conn)`` per connection; its port."""
    listeners: list[socket.socket] = []
    held: list[socket.socket] = []

    def start(behaviour: Callable[[socket.socket], None]) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                held.append(conn)
                behaviour(conn)

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for s in listeners + held:
        s.close()


def _read_then(reply: bytes) -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            conn.recv(65536)
            conn.sendall(reply)
        except OSError:
            pass
        conn.close()

    return behaviour


HTTP2_SETTINGS_FRAME = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00\x40\x00"  # what a gRPC server sends first


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(_read_then(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), id="http2-client-preface"),
        pytest.param(_read_then(HTTP2_SETTINGS_FRAME), id="http2-settings-frame"),
        pytest.param(_read_then(b"HTTP/2 200\r\ncontent-type: application/grpc\r\n\r\n"), id="http2-status-line"),
        pytest.param(lambda conn: conn.close(), id="closes-at-once"),
        pytest.param(_read_then(b""), id="reads-then-closes"),
    ],
)
def test_a_peer_that_does_not_speak_http1_is_not_otlp_http(
    raw_server: Callable[[Callable[[socket.socket], None]], int], behaviour: Callable[[socket.socket], None]
) -> None:
    port = raw_server(behaviour)
    result = probe("traces", "http/protobuf", f"http://127.0.0.1:{port}/v1/traces", {}, timeout_s=3)
    assert (result.ok, result.status) == (False, "not OTLP/HTTP")
    assert "4318" in result.detail
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in result.detail


def test_a_peer_that_accepts_and_never_answers_is_a_timeout(
    raw_server: Callable[[Callable[[socket.socket], None]], int],
) -> None:
    port = raw_server(lambda conn: None)  # accepted, held open, never a byte
    started = time.monotonic()
    result = probe("traces", "http/protobuf", f"http://127.0.0.1:{port}/v1/traces", {}, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert (result.ok, result.status) == (False, "timeout")
    assert "within 0.5 s" in result.detail
    assert "accepted the connection but never answered" in result.detail
    assert 0.4 <= elapsed < 2.0


def test_a_closed_port_is_refused() -> None:
    port = _free_port()
    result = probe("traces", "http/protobuf", f"http://127.0.0.1:{port}/v1/traces", {})
    assert (result.ok, result.status) == (False, "refused")
    assert f"http://127.0.0.1:{port}/v1/traces" in result.detail
    assert "4318" in result.detail


def test_an_unresolvable_host_is_a_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    result = probe("traces", "http/protobuf", "http://otel-collector.observability:4318/v1/traces", {})
    assert (result.ok, result.status) == (False, "DNS failure")
    assert "'otel-collector.observability'" in result.detail


def test_https_to_a_plain_http_server_is_a_tls_error(http_server: HttpServer) -> None:
    result = probe("traces", "http/protobuf", http_server.url(scheme="https"), {"authorization": SECRET})
    assert (result.ok, result.status) == (False, "TLS error")
    assert "use http://" in result.detail
    assert http_server.seen == []  # the request never left
    _assert_clean(result, SECRET)


def test_an_untrusted_certificate_is_a_tls_error(
    tmp_path: Path, raw_server: Callable[[Callable[[socket.socket], None]], int]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def tls(conn: socket.socket) -> None:
        try:
            context.wrap_socket(conn, server_side=True).close()
        except OSError:
            conn.close()

    port = raw_server(tls)
    result = probe("traces", "http/protobuf", f"https://127.0.0.1:{port}/v1/traces", {})
    assert (result.ok, result.status) == (False, "TLS error")
    assert "certificate" in result.detail
    assert "self-signed" in result.detail or "self signed" in result.detail


# ---- bad inputs, and never raising --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://127.0.0.1:4318/v1/traces", "not an http:// or https:// URL"),
        ("127.0.0.1:4318/v1/traces", "not an http:// or https:// URL"),
        ("http://127.0.0.1:notaport/v1/traces", "check the port"),
        ("http://[::1/v1/traces", "not a valid URL"),
    ],
)
def test_a_bad_url_is_reported_not_raised(url: str, why: str) -> None:
    result = probe("traces", "http/protobuf", url, {})
    assert (result.ok, result.status) == (False, "bad URL")
    assert why in result.detail


def test_bad_header_values_are_named_not_shown() -> None:
    result = probe("traces", "http/protobuf", "http://127.0.0.1:1/v1/traces", {"authorization": f"{SECRET}\r\nX: y"})
    assert (result.ok, result.status) == (False, "bad header")
    assert "'authorization'" in result.detail
    _assert_clean(result, SECRET)
    assert probe("traces", "grpc", "http://127.0.0.1:1", {"bad name": "v"}).status == "bad header"


def test_unknown_protocol_and_signal_are_reported() -> None:
    result = probe("traces", "http/json", "http://127.0.0.1:1/v1/traces", {})
    assert (result.ok, result.status) == (False, "unsupported protocol")
    assert "http/protobuf or grpc" in result.detail
    assert probe("profiles", "grpc", "http://127.0.0.1:1", {}).status == "bad signal"


def test_an_unexpected_exception_becomes_a_result(monkeypatch: pytest.MonkeyPatch, http_server: HttpServer) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"library bug that mentions {SECRET}")

    monkeypatch.setattr(probe_module.http.client.HTTPConnection, "request", boom)
    result = probe("traces", "http/protobuf", http_server.url(), {"authorization": SECRET})
    assert (result.ok, result.status) == (False, "error")
    assert "RuntimeError" in result.detail
    _assert_clean(result, SECRET)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@host:4318/v1/traces?token=x#frag", "http://***@host:4318/v1/traces"),
        ("https://token@host/v1/logs", "https://***@host/v1/logs"),
        ("http://host:4318/v1/traces", "http://host:4318/v1/traces"),
        ("user:pw@host:4317", "***@host:4317"),
        ("host:4317?k=v", "host:4317"),
        ("http://a@b@host:1/p?q", "http://***@host:1/p"),
        ("http://u:p/w@y@host:4318/v1/traces", "http://***@host:4318/v1/traces"),  # '/' and '@' in the password
    ],
)
def test_shown_url_drops_userinfo_and_query(url: str, shown: str) -> None:
    assert _shown_url(url) == shown


# ---- grpc ---------------------------------------------------------------------------------------


@dataclass
class GrpcServer:
    port: int
    delay_s: float = 0.0
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def grpc_server() -> Iterator[GrpcServer]:
    """A real grpc.server with only the OTLP trace Export method; it wants ``authorization: Bearer SECRET``."""
    state = GrpcServer(port=0)

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        state.requests.append((request, metadata))
        time.sleep(state.delay_s)
        token = metadata.get("authorization")
        if token == "Bearer read-only-token":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token may not write traces")
        if token != f"Bearer {SECRET}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"bad token {token}")  # echoes the value back
        return b""

    handler = grpc.method_handlers_generic_handler(
        TRACE_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    state.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield state
    server.stop(grace=None)


GOOD = {"Authorization": f"Bearer {SECRET}"}


def test_grpc_ok_sends_an_empty_request_with_the_headers_as_lower_case_metadata(grpc_server: GrpcServer) -> None:
    result = probe("traces", "grpc", f"http://127.0.0.1:{grpc_server.port}", GOOD)
    assert result == ProbeResult("traces", True, "gRPC OK", result.detail)
    assert "accepted an empty traces export" in result.detail
    [(request, metadata)] = grpc_server.requests
    assert request == b""
    assert metadata["authorization"] == f"Bearer {SECRET}"
    _assert_clean(result, SECRET)


def test_grpc_wrong_or_missing_token_is_unauthenticated_and_never_echoed(grpc_server: GrpcServer) -> None:
    url = f"http://127.0.0.1:{grpc_server.port}"
    wrong = probe("traces", "grpc", url, {"authorization": "Bearer wrong-token-abcdef"})
    assert (wrong.ok, wrong.status) == (False, "gRPC UNAUTHENTICATED")
    assert "OTEL_EXPORTER_OTLP_HEADERS" in wrong.detail
    assert "the authorization metadata key was sent and refused" in wrong.detail
    _assert_clean(wrong, "wrong-token-abcdef")  # the server echoed it in its details; scrubbed
    missing = probe("traces", "grpc", url, {})
    assert (missing.ok, missing.status) == (False, "gRPC UNAUTHENTICATED")
    assert "no headers were sent" in missing.detail


def test_grpc_permission_denied(grpc_server: GrpcServer) -> None:
    result = probe(
        "traces", "grpc", f"http://127.0.0.1:{grpc_server.port}", {"authorization": "Bearer read-only-token"}
    )
    assert (result.ok, result.status) == (False, "gRPC PERMISSION_DENIED")
    assert "allowed to write traces" in result.detail


def test_grpc_unknown_service_is_unimplemented(grpc_server: GrpcServer) -> None:
    result = probe("metrics", "grpc", f"http://127.0.0.1:{grpc_server.port}", GOOD)
    assert (result.ok, result.status) == (False, "gRPC UNIMPLEMENTED")
    assert "not an OTLP collector" in result.detail
    assert grpc_server.requests == []


def test_grpc_slow_peer_is_deadline_exceeded_within_the_timeout(grpc_server: GrpcServer) -> None:
    grpc_server.delay_s = 2.0
    started = time.monotonic()
    result = probe("traces", "grpc", f"http://127.0.0.1:{grpc_server.port}", GOOD, timeout_s=0.3)
    assert (result.ok, result.status) == (False, "gRPC DEADLINE_EXCEEDED")
    assert "within 0.3 s" in result.detail
    assert time.monotonic() - started < 1.5


def test_grpc_scheme_less_endpoint_uses_tls_unless_insecure(grpc_server: GrpcServer) -> None:
    target = f"127.0.0.1:{grpc_server.port}"
    assert probe("traces", "grpc", target, GOOD, insecure=True).status == "gRPC OK"
    tls = probe("traces", "grpc", target, GOOD)  # the exporter's default: TLS, and this server is plain text
    assert (tls.ok, tls.status) == (False, "gRPC UNAVAILABLE")
    assert "TLS handshake failed" in tls.detail
    assert probe("traces", "grpc", f"https://{target}", GOOD, insecure=True).status == "gRPC UNAVAILABLE"


def test_grpc_userinfo_is_not_part_of_the_target_nor_shown(grpc_server: GrpcServer) -> None:
    result = probe("traces", "grpc", f"http://bob:grpc-pw-secret@127.0.0.1:{grpc_server.port}/?k=q-secret", GOOD)
    assert result.status == "gRPC OK"
    assert f"http://***@127.0.0.1:{grpc_server.port}/" in result.detail
    _assert_clean(result, "grpc-pw-secret", "bob", "q-secret")


def test_grpc_refused() -> None:
    result = probe("traces", "grpc", f"http://127.0.0.1:{_free_port()}", {}, timeout_s=2)
    assert (result.ok, result.status) == (False, "gRPC UNAVAILABLE")
    assert "connection refused" in result.detail


def test_grpc_to_an_http1_server_is_unavailable_and_says_so(http_server: HttpServer) -> None:
    result = probe("traces", "grpc", f"http://127.0.0.1:{http_server.port}", GOOD, timeout_s=2)
    assert (result.ok, result.status) == (False, "gRPC UNAVAILABLE")
    assert "OTLP/HTTP port" in result.detail
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in result.detail
    _assert_clean(result, SECRET)


def test_grpc_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)  # makes `import grpc` raise ImportError
    result = probe("traces", "grpc", "http://127.0.0.1:4317", {})
    assert (result.ok, result.status) == (False, "grpc not installed")
    assert "pip install floe-otel-distro[grpc]" in result.detail


def test_importing_the_probe_does_not_import_grpc() -> None:
    code = "import sys, floe_otel_distro.probe; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
