"""Fake OTLP peers on 127.0.0.1 that fail on purpose: an HTTP server with one fault mode, a gRPC server.

``FakeOtlpHttp(mode)`` (a threaded ``http.server``) answers every ``POST /v1/<signal>`` according to
``mode``:

- ``ok``: 200 (an empty ``Export*ServiceResponse`` is zero bytes);
- ``hang``: accepts the connection, reads the request, never answers (until ``stop()``);
- ``400`` / ``401`` / ``403`` / ``404`` / ``413`` / ``429``: that status, every time;
- ``503-then-ok``: 503 with ``Retry-After: 1`` for the first request, then 200;
- ``503-long``: 503 with ``Retry-After: 30`` every time (longer than any exit budget);
- ``slow-then-ok``: each request is answered 200 after 2 s.

It counts the requests and the spans received (the protobuf is decoded with ``opentelemetry-proto``).
``FakeOtlpGrpc(code)`` is a real ``grpc.server`` whose trace/metrics/logs ``Export`` aborts with ``code``
(``"UNAVAILABLE"``, ``"UNAUTHENTICATED"``) or succeeds (``"OK"``).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("ok", "hang", "400", "401", "403", "404", "413", "429", "503-then-ok", "503-long", "slow-then-ok")


def _span_count(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


class FakeOtlpHttp:
    """A threaded HTTP server on a free loopback port answering OTLP exports per ``mode``."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode = mode
        self.requests = 0
        self.spans_received = 0  # spans in the requests answered 2xx
        self._released = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    fake.requests += 1
                    nth = fake.requests
                status, headers = fake._answer(nth)
                if status is None:  # hang: never answer
                    fake._released.wait(120)
                    return
                if 200 <= status < 300 and self.path.endswith("/v1/traces"):
                    with fake._lock:
                        fake.spans_received += _span_count(body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-otlp-http", daemon=True)
        self._thread.start()

    def _answer(self, nth: int) -> tuple[int | None, dict[str, str]]:
        mode = self.mode
        if mode == "hang":
            return None, {}
        if mode == "503-then-ok":
            return (503, {"Retry-After": "1"}) if nth == 1 else (200, {})
        if mode == "503-long":
            return 503, {"Retry-After": "30"}
        if mode == "slow-then-ok":
            time.sleep(2)
            return 200, {}
        if mode == "ok":
            return 200, {}
        return int(mode), {}

    @property
    def endpoint(self) -> str:
        """The base endpoint (the exporter appends ``/v1/<signal>``)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


class FakeOtlpGrpc:
    """A real gRPC server whose OTLP ``Export`` methods answer ``code`` (a ``grpc.StatusCode`` name or OK)."""

    def __init__(self, code: str) -> None:
        from concurrent import futures

        import grpc

        self.code = code
        self.requests = 0
        fake = self

        def export(request: bytes, context: Any) -> bytes:
            fake.requests += 1
            if fake.code != "OK":
                context.abort(getattr(grpc.StatusCode, fake.code), f"fake collector says {fake.code}")
            return b""

        handlers = [
            grpc.method_handlers_generic_handler(
                f"opentelemetry.proto.collector.{service}",
                {"Export": grpc.unary_unary_rpc_method_handler(
                    export, request_deserializer=lambda b: b, response_serializer=lambda b: b)},
            )
            for service in ("trace.v1.TraceService", "metrics.v1.MetricsService", "logs.v1.LogsService")
        ]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=handlers)
        self.port = int(self._server.add_insecure_port("127.0.0.1:0"))
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(0)
