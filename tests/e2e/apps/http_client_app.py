"""An HTTP client job: urllib, urllib3 and requests against a local http.server, one log line per call.

Argument: the server's base URL. The server runs in another process (the launcher instruments clients only
here). Everything happens inside one application span so the log records carry its trace id.
"""

from __future__ import annotations

import logging
import sys
import urllib.request

import requests
import urllib3
from opentelemetry import trace

log = logging.getLogger("http_client_app")


def main(base: str) -> None:
    with trace.get_tracer("http_client_app").start_as_current_span("client-job"):
        with urllib.request.urlopen(f"{base}/urllib", timeout=5) as response:
            log.warning("urllib status %s", response.status)
        pool = urllib3.PoolManager()
        log.warning("urllib3 status %s", pool.request("GET", f"{base}/urllib3", timeout=5).status)
        log.warning("requests status %s", requests.get(f"{base}/requests", timeout=5).status_code)


if __name__ == "__main__":
    main(sys.argv[1])
