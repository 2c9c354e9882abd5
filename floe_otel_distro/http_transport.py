"""The OTLP/HTTP transport: upstream's exporters and retry logic, sending through the standard library.

Since opentelemetry-exporter-otlp-proto-http 1.45 the OTLP/HTTP exporters send through a transport object
(``opentelemetry.exporter.http.transport``: ``BaseHTTPTransport``, passed as ``_transport=``); the
retries, back-off, ``Retry-After``, compression and headers stay in upstream's ``_OTLPHTTPClient``.
Upstream's default transport is ``requests``, whose import (requests + urllib3 + charset_normalizer + idna,
~50-100 ms, ~5 MiB) is most of what a short job pays for its first export. ``StdlibTransport`` does the same
job with ``http.client``: one kept-alive connection per exporter, TLS from ``ssl``.

It behaves like upstream's requests transport where that is observable:

- CA certificates: the exporter's certificate file if given, else ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``,
  else certifi's bundle (what requests uses), else the system store; client certificate and key for mTLS;
- ``user:password@`` in the URL becomes HTTP basic auth (as requests does), unless an Authorization header
  is set; redirects are not followed;
- every request and its outcome is told to ``delivery`` (status, Retry-After, exception), as the
  recording ``requests.Session`` does, so loss lines name the real cause.

Where it would behave differently the plan picks upstream's requests transport instead
(``_planning.http_client_choice``: a proxy variable, honoured by requests with ``NO_PROXY``; a
credential-provider session, which upstream builds on requests; ``FLOE_OTEL_HTTP_CLIENT=requests``; an
exporter without ``_transport``, before 1.45).
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

from floe_otel_distro import delivery


class ConnectTimeoutError(TimeoutError):
    """The TCP/TLS connection was not established in time (``delivery`` names it apart from a read timeout)."""


@dataclass(frozen=True, slots=True)
class StdlibResult(BaseHTTPResult):
    """A response (status, reason, headers, body) or the exception that prevented one."""

    body: bytes = field(default=b"", repr=False, compare=False)
    response_headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return self.response_headers  # http.client's HTTPMessage: get() is case-insensitive


def accepts_transport(exporter_class: type) -> bool:
    """The installed upstream exporter takes ``_transport=`` (opentelemetry-exporter-otlp-proto-http ≥ 1.45)."""
    import inspect

    try:
        return "_transport" in inspect.signature(exporter_class).parameters
    except (TypeError, ValueError):
        return False


class StdlibTransport(BaseHTTPTransport):
    """``http.client`` under upstream's OTLP HTTP client: one kept-alive connection, reopened after an error."""

    def __init__(self, *, verify: bool | str = True, cert: str | tuple[str, str] | None = None) -> None:
        self._verify = verify
        self._cert = cert
        self._conn: Any = None
        self._conn_key: tuple[str, str, int] | None = None
        self._context: Any = None
        self._closed_at: float | None = None
        self._lock = threading.Lock()

    # ---- upstream's interface -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        outcome = delivery.current()
        started = time.monotonic()
        if outcome is not None:
            outcome.request_since = started
        try:
            with self._lock:
                result = self._request(method, url, dict(headers or {}), timeout, data)
        except Exception as exc:
            closed_at = self._closed_at
            if closed_at is not None and closed_at >= started and outcome is not None:
                # close() cut this request short: an abort (the exit budget ran out), not the peer's doing
                outcome.cause = (
                    "timeout: the collector accepted the connection but did not answer within "
                    f"{closed_at - started:.1f} s (the exit budget, FLOE_SHUTDOWN_TIMEOUT, ran out)"
                )
            else:
                delivery.note_exception(exc, timeout)
            return StdlibResult(error=exc)
        finally:
            if outcome is not None:
                outcome.request_since = None
        delivery.note_response(result.status_code or 0, result.headers().get("retry-after"))
        return result

    def close(self) -> None:
        """Shut the connection now, also under a request blocked in a read (an abort must not wait for it)."""
        self._closed_at = time.monotonic()
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked on another thread
        with contextlib.suppress(Exception):
            if conn is not None:
                conn.close()

    def is_connection_error(self, exception: Exception | None) -> bool:
        import http.client

        return isinstance(exception, OSError | http.client.HTTPException)

    # ---- the work -------------------------------------------------------------------------------------
    def _request(
        self, method: str, url: str, headers: dict[str, str], timeout: float | None, data: bytes | None
    ) -> StdlibResult:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            msg = f"unsupported URL scheme {parts.scheme!r} (http or https)"
            raise ValueError(msg)
        port = parts.port or (443 if scheme == "https" else 80)
        if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("latin-1")
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(scheme, parts.hostname, port, timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            self._drop()  # a half-used connection is never reused
            raise
        if response.will_close:
            self._drop()
        return StdlibResult(response.status, response.reason, None, body, response.msg)

    def _connection(self, scheme: str, host: str, port: int, timeout: float | None) -> Any:
        import http.client

        key = (scheme, host, port)
        if self._conn is not None and self._conn_key != key:
            self._drop()
        if self._conn is None:
            if scheme == "https":
                self._conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls())
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._conn_key = key
        conn = self._conn
        conn.timeout = timeout
        if conn.sock is None:
            try:
                conn.connect()
            except TimeoutError as exc:
                self._drop()
                msg = f"connecting to {host}:{port} timed out"
                raise ConnectTimeoutError(msg) from exc
            except BaseException:
                self._drop()
                raise
        else:
            conn.sock.settimeout(timeout)
        return conn

    def _tls(self) -> Any:
        if self._context is None:
            import ssl

            verify = self._verify
            cafile = capath = None
            if isinstance(verify, str):
                cafile, capath = (None, verify) if os.path.isdir(verify) else (verify, None)
            else:
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                if bundle:
                    cafile, capath = (None, bundle) if os.path.isdir(bundle) else (bundle, None)
                else:
                    try:
                        import certifi

                        cafile = certifi.where()
                    except ImportError:  # no certifi: the system store
                        pass
            context = ssl.create_default_context(cafile=cafile, capath=capath)
            if self._cert is not None:
                certfile, keyfile = (self._cert, None) if isinstance(self._cert, str) else self._cert
                context.load_cert_chain(certfile, keyfile)
            self._context = context
        return self._context

    def _drop(self) -> None:
        conn, self._conn, self._conn_key = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken socket must not raise into the export
                conn.close()


def transport_for(
    signal: str,
    certificate_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> StdlibTransport:
    """The transport for ``signal``'s exporter, certificates resolved from the env as upstream resolves them."""
    env = os.environ if environ is None else environ
    prefix = f"OTEL_EXPORTER_OTLP_{signal.upper()}_"
    verify: bool | str = (
        certificate_file or env.get(prefix + "CERTIFICATE") or env.get("OTEL_EXPORTER_OTLP_CERTIFICATE") or True
    )
    key = env.get(prefix + "CLIENT_KEY") or env.get("OTEL_EXPORTER_OTLP_CLIENT_KEY")
    certificate = env.get(prefix + "CLIENT_CERTIFICATE") or env.get("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    cert: str | tuple[str, str] | None = (certificate, key) if certificate and key else certificate
    return StdlibTransport(verify=verify, cert=cert)
