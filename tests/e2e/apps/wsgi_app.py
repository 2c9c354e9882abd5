"""A tiny WSGI app for gunicorn: one span per request; the response body is the worker's pid."""

import os

from opentelemetry import trace

tracer = trace.get_tracer("wsgi_app")


def app(environ: dict, start_response: object) -> list[bytes]:
    with tracer.start_as_current_span("request", attributes={"http.target": environ.get("PATH_INFO", "")}):
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])  # type: ignore[operator]
    return [body]
