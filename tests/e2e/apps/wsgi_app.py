"""A tiny WSGI app for gunicorn: one span per request; the response body is the worker's pid.

``?slow`` makes a request take 50 ms, so concurrent clients keep several sync workers busy at once.
"""

import os
import time

from opentelemetry import trace

tracer = trace.get_tracer("wsgi_app")


def app(environ: dict, start_response: object) -> list[bytes]:
    with tracer.start_as_current_span("request", attributes={"http.target": environ.get("PATH_INFO", "")}):
        if environ.get("QUERY_STRING") == "slow":
            time.sleep(0.05)
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])  # type: ignore[operator]
    return [body]
