"""doctor --check-endpoint: a real, empty OTLP export per signal, and what the peer answered.

``probe(signal, protocol, url, headers)`` sends one export with no data in it (an empty
``Export*ServiceRequest`` serialises to zero bytes) exactly where the exporter would send real data, with
the same headers, and turns the answer into a :class:`ProbeResult`: a short ``status`` ("HTTP 401",
"gRPC UNAVAILABLE", "refused", ...) and one sentence of ``detail`` with the cause and the fix.

- ``http/protobuf``: ``url`` is the full signal URL (``http://host:4318/v1/traces``); one ``POST`` with
  ``Content-Type: application/x-protobuf`` over the stdlib ``http.client`` (https: the default SSL context,
  i.e. the system CA store). A peer that does not answer HTTP/1.1 (e.g. a gRPC port, HTTP/2 only) is
  reported as "not OTLP/HTTP".
- ``grpc``: ``url`` is the base endpoint (``http://host:4317``, ``https://...`` or ``host:port``); the unary
  ``.../<Signal>Service/Export`` method is called with raw bytes, so no protobuf import is needed. ``https``
  means TLS, ``http`` plain text; without a scheme the ``insecure`` flag decides (default: TLS), as in the
  exporter. ``grpc`` is imported lazily; without it the result says how to install it.

Nothing here raises: every failure becomes a ``ProbeResult``. Header values, URL userinfo and query
strings never appear in ``status`` or ``detail``; text that came from the peer is scrubbed of them too.
"""

from __future__ import annotations

import base64
import errno
import http.client
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SIGNALS = ("traces", "metrics", "logs")
PROTOCOLS = ("http/protobuf", "grpc")
_GRPC_SERVICE = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PEER_TEXT_MAX = 200
_HEADERS_HINT = "OTEL_EXPORTER_OTLP_HEADERS (or the FLOE_OTLP_HEADERS_FILE secret)"


@dataclass(frozen=True)
class ProbeResult:
    """What one empty export of ``signal`` got back from the peer."""

    signal: str  # traces | metrics | logs
    ok: bool
    status: str  # short: "HTTP 200", "gRPC UNAUTHENTICATED", "refused", "timeout", "not OTLP/HTTP", ...
    detail: str  # one human sentence with the cause and the fix; never contains a secret


def probe(  # noqa: PLR0917 - the doctor's call shape: probe(signal, protocol, url, headers, timeout_s, insecure)
    signal: str,
    protocol: str,
    url: str,
    headers: Mapping[str, str],
    timeout_s: float = 3.0,
    insecure: bool | None = None,
) -> ProbeResult:
    """Send one empty OTLP export of ``signal`` over ``protocol`` to ``url`` and report the answer."""
    try:
        if signal not in SIGNALS:
            return ProbeResult(signal, False, "bad signal", f"signal {signal!r} is not one of {', '.join(SIGNALS)}.")
        bad = _bad_header(headers)
        if bad:
            return ProbeResult(signal, False, "bad header", bad)
        if protocol == "http/protobuf":
            return _probe_http(signal, url, headers, timeout_s)
        if protocol == "grpc":
            return _probe_grpc(signal, url, headers, timeout_s, insecure)
        return ProbeResult(
            signal,
            False,
            "unsupported protocol",
            f"protocol {protocol!r} cannot be probed; set OTEL_EXPORTER_OTLP_PROTOCOL to http/protobuf or grpc.",
        )
    except Exception as exc:  # never raise: the doctor reports, it does not crash
        return ProbeResult(
            signal,
            False,
            "error",
            f"probing {_shown_url(url)} failed unexpectedly ({type(exc).__name__}); "
            "please report this with the output of `floe-otel doctor`.",
        )


# ---- redaction ----------------------------------------------------------------------------------


def _shown_url(url: str) -> str:
    """``url`` fit to print: the distro's one redaction (``redaction.redact_url``), query and fragment dropped."""
    from floe_otel_distro.redaction import redact_url

    return redact_url(url).split("#", 1)[0].split("?", 1)[0]


def _secrets(url: str, headers: Mapping[str, str]) -> list[str]:
    """Every string that must not be echoed back: header values (and their credential part), userinfo, query."""
    out: list[str] = []
    for value in headers.values():
        out.append(value)
        scheme_and_credential = value.split(None, 1)  # "Bearer <token>", "Basic <b64>"
        if len(scheme_and_credential) == 2:
            out.append(scheme_and_credential[1])
    rest = url.partition("://")[2] or url
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
        out += [userinfo, *userinfo.split(":", 1), unquote(userinfo)]
    if "?" in url:
        query = url.split("?", 1)[1].split("#", 1)[0]
        out.append(query)
        for pair in query.split("&"):
            out += [pair, pair.partition("=")[2], unquote(pair.partition("=")[2])]
    return sorted({s.strip() for s in out if len(s.strip()) >= 4}, key=len, reverse=True)


def _peer_text(text: str, secrets: Sequence[str]) -> str:
    """Text the peer (or a library) produced, made safe to print: secrets scrubbed, one short line."""
    for secret in secrets:
        text = text.replace(secret, "***")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= _PEER_TEXT_MAX else text[: _PEER_TEXT_MAX - 3] + "..."


def _bad_header(headers: Mapping[str, str]) -> str:
    """Why ``headers`` cannot be sent (names the header, never shows its value), or ``""``."""
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            return f"header name {name!r} is not a valid HTTP header name; fix it in {_HEADERS_HINT}."
        if any(ch in value for ch in "\r\n\0"):
            return f"the value of header {name!r} contains a line break; fix it in {_HEADERS_HINT}."
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return f"the value of header {name!r} has non-Latin-1 characters; fix it in {_HEADERS_HINT}."
    return ""


def _sent(headers: Mapping[str, str], what: str) -> str:
    """`` (the authorization header was sent and refused)``: names only, never values."""
    names = sorted({k.lower() for k in headers})
    if not names:
        return " (no headers were sent)"
    if len(names) == 1:
        return f" (the {names[0]} {what} was sent and refused)"
    return f" (the {what}s {', '.join(names)} were sent and refused)"


# ---- http/protobuf ------------------------------------------------------------------------------

_HTTP_FIX = {
    400: "the peer rejected the export as malformed, so this URL is probably not an OTLP/HTTP {signal} receiver; "
    "point the endpoint at the collector's OTLP/HTTP port (4318) with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf.",
    401: "the peer wants credentials{sent}; put the right token in " + _HEADERS_HINT + ", "
    "e.g. 'authorization=Bearer <token>'.",
    403: "the peer knows who we are but refuses {signal} from these credentials{sent}; "
    "use a token (or tenant) that is allowed to write {signal}.",
    404: "no OTLP receiver at this path: it must end in /v1/{signal} (OTEL_EXPORTER_OTLP_ENDPOINT gets /v1/{signal} "
    "appended; OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT is used as-is) or the collector has no {signal} pipeline.",
    405: "the peer does not accept POST here, so it is not an OTLP/HTTP receiver (a UI or health port?); "
    "use the collector's OTLP/HTTP port (4318) and the path /v1/{signal}.",
    413: "the peer (or a proxy in front of it) refuses the request size even for this empty export; raise its body "
    "limit well above the exporter's batch size.",
    415: "the peer does not accept application/x-protobuf here; it is not an OTLP/HTTP protobuf receiver "
    "(use the collector's port 4318, or OTEL_EXPORTER_OTLP_PROTOCOL=grpc for a gRPC endpoint).",
    429: "the peer is rate limiting{retry}; exports will be retried and may be dropped, so lower the export rate "
    "or raise the backend's quota.",
    503: "the peer is up but not taking data{retry} (starting, overloaded or its memory_limiter is refusing); "
    "retry later and check the collector's logs.",
}


@dataclass(frozen=True)
class _HttpTarget:
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent
    headers: dict[str, str]  # as sent (Content-Type, the given headers, Basic auth from userinfo)


def _http_target(signal: str, url: str, shown: str, headers: Mapping[str, str]) -> _HttpTarget | ProbeResult:
    """Where and what to send, or why ``url`` cannot be used."""
    example = f"the OTLP/HTTP endpoint looks like http://collector:4318/v1/{signal}."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or a broken [IPv6] literal
        return ProbeResult(signal, False, "bad URL", f"{shown} is not a valid URL (check the port); {example}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return ProbeResult(signal, False, "bad URL", f"{shown} is not an http:// or https:// URL; {example}")
    send = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    send["Content-Type"] = "application/x-protobuf"
    if (parts.username or parts.password) and not any(k.lower() == "authorization" for k in headers):
        # like the exporter (requests), userinfo in the URL becomes HTTP Basic auth
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        send["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return _HttpTarget(
        scheme=scheme,
        host=parts.hostname,
        port=port or (443 if scheme == "https" else 80),
        target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        headers=send,
    )


def _probe_http(signal: str, url: str, headers: Mapping[str, str], timeout_s: float) -> ProbeResult:  # noqa: PLR0911 - one return per failure kind
    shown = _shown_url(url)
    where = _http_target(signal, url, shown, headers)
    if isinstance(where, ProbeResult):
        return where
    secrets = _secrets(url, where.headers)
    conn: http.client.HTTPConnection
    if where.scheme == "https":
        conn = http.client.HTTPSConnection(
            where.host, where.port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(where.host, where.port, timeout=timeout_s)
    stage = "connect"
    try:
        conn.connect()
        stage = "answer"
        conn.request("POST", where.target, body=b"", headers=where.headers)
        response = conn.getresponse()
        response.read(64 * 1024)
        retry_after = _peer_text(response.getheader("Retry-After") or "", secrets)
        location = _shown_url(_peer_text(response.getheader("Location") or "", secrets))
        sent = {k: v for k, v in where.headers.items() if k != "Content-Type"}
        return _http_result(signal, shown, response.status, sent, retry_after=retry_after, location=location)
    except ssl.SSLError as exc:
        return _tls_result(signal, shown, exc, secrets)
    except (http.client.HTTPException, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        return _not_http(signal, shown, exc)
    except TimeoutError:
        return _timeout(signal, shown, timeout_s, stage)
    except socket.gaierror:
        return _dns(signal, shown, where.host)
    except ConnectionRefusedError:
        return _refused(signal, shown)
    except OSError as exc:
        return _os_error(signal, shown, exc, secrets)
    finally:
        conn.close()


def _http_result(
    signal: str, shown: str, code: int, headers: Mapping[str, str], *, retry_after: str, location: str
) -> ProbeResult:
    status = f"HTTP {code}"
    if 200 <= code < 300:
        return ProbeResult(signal, True, status, f"{shown} accepted an empty {signal} export (HTTP {code}).")
    sent = _sent(headers, "header")
    retry = f" (Retry-After: {retry_after})" if retry_after else ""
    fix = _HTTP_FIX.get(code)
    if fix is not None:
        text = fix.format(signal=signal, SIGNAL=signal.upper(), sent=sent, retry=retry)
        return ProbeResult(signal, False, status, f"{shown} answered HTTP {code}: {text}")
    if 300 <= code < 400:
        where = f" to {location}" if location else ""
        text = f"it redirects{where}; set the endpoint to the final URL, exporters do not follow redirects."
    elif code < 500:
        text = f"the peer refused the export; check that this is the OTLP/HTTP {signal} endpoint and the headers."
    else:
        text = f"the peer failed{retry}; check the collector (or the proxy in front of it) and its logs."
    return ProbeResult(signal, False, status, f"{shown} answered HTTP {code}: {text}")


def _not_http(signal: str, shown: str, exc: BaseException) -> ProbeResult:
    if isinstance(exc, http.client.RemoteDisconnected):
        how = "closed the connection without an answer"
    elif isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        how = "reset the connection"
    else:
        how = "answered with something that is not HTTP/1.1"
    return ProbeResult(
        signal,
        False,
        "not OTLP/HTTP",
        f"{shown} {how}, so it does not speak OTLP/HTTP (a gRPC port such as 4317 speaks HTTP/2 only); "
        "use the collector's OTLP/HTTP port 4318, or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc for a gRPC endpoint.",
    )


def _tls_result(signal: str, shown: str, exc: ssl.SSLError, secrets: Sequence[str]) -> ProbeResult:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = _peer_text(str(exc.verify_message or exc.reason or "verification failed"), secrets)
        return ProbeResult(
            signal,
            False,
            "TLS error",
            f"the certificate of {shown} was not accepted ({why}); use a certificate signed by a CA in the "
            "system store (or SSL_CERT_FILE) whose name matches the host, or use http:// if it serves plain HTTP.",
        )
    why = _peer_text(str(exc.reason or type(exc).__name__), secrets)
    return ProbeResult(
        signal,
        False,
        "TLS error",
        f"the TLS handshake with {shown} failed ({why}); if the endpoint serves plain HTTP use http://, "
        "otherwise check its TLS setup.",
    )


def _timeout(signal: str, shown: str, timeout_s: float, stage: str) -> ProbeResult:
    if stage == "connect":
        why = "the connection was not accepted in time (a firewall dropping packets, or the wrong host)"
    else:
        why = "the peer accepted the connection but never answered (overloaded, or not an HTTP server)"
    return ProbeResult(
        signal,
        False,
        "timeout",
        f"{shown} did not answer within {timeout_s:g} s: {why}; check the host, port and network path.",
    )


def _dns(signal: str, shown: str, host: str) -> ProbeResult:
    return ProbeResult(
        signal,
        False,
        "DNS failure",
        f"the host {host!r} of {shown} could not be resolved; check the spelling, or the Service name and namespace "
        "(collector.<namespace>.svc) in Kubernetes.",
    )


def _refused(signal: str, shown: str) -> ProbeResult:
    return ProbeResult(
        signal,
        False,
        "refused",
        f"nothing is listening at {shown} (connection refused); start the collector or fix the port "
        "(the collector's OTLP/HTTP default is 4318).",
    )


def _os_error(signal: str, shown: str, exc: OSError, secrets: Sequence[str]) -> ProbeResult:
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    why = _peer_text(exc.strerror or type(exc).__name__, secrets)
    return ProbeResult(
        signal,
        False,
        "unreachable",
        f"could not reach {shown} ({name}: {why}); check the host, port and the network path to it.",
    )


# ---- grpc ---------------------------------------------------------------------------------------


def _grpc_target(url: str, insecure: bool | None) -> tuple[str, bool]:
    """The channel target ``host:port`` and whether it is plain text, as the exporter decides."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    scheme = scheme.lower()
    if scheme == "https":
        return authority, False
    if scheme == "http":
        return authority, True
    return authority, bool(insecure)


_GRPC_FIX = {
    "UNAVAILABLE": "the peer is not reachable or does not speak gRPC (an OTLP/HTTP port such as 4318 does not); "
    "use the collector's OTLP/gRPC port 4317, or OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf for an HTTP endpoint.",
    "UNAUTHENTICATED": "the peer wants credentials{sent}; put the right token in " + _HEADERS_HINT + ", "
    "e.g. 'authorization=Bearer <token>'.",
    "PERMISSION_DENIED": "the peer refuses {signal} from these credentials{sent}; use a token (or tenant) that is "
    "allowed to write {signal}.",
    "UNIMPLEMENTED": "the peer speaks gRPC but has no OTLP {signal} service, so it is not an OTLP collector "
    "(or its {signal} pipeline is not enabled); use the collector's OTLP/gRPC port 4317.",
    "DEADLINE_EXCEEDED": "no answer within {timeout} s (overloaded, or a proxy that swallows gRPC); check the "
    "collector and the network path.",
    "RESOURCE_EXHAUSTED": "the peer is rate limiting or out of memory; exports will be retried and may be dropped, "
    "so lower the export rate or raise the backend's quota.",
    "INVALID_ARGUMENT": "the peer rejected the export as malformed, so it is probably not an OTLP {signal} receiver.",
}


def _probe_grpc(
    signal: str, url: str, headers: Mapping[str, str], timeout_s: float, insecure: bool | None
) -> ProbeResult:
    shown = _shown_url(url)
    try:
        import grpc  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return ProbeResult(
            signal,
            False,
            "grpc not installed",
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the grpc exporter: pip install floe-otel-distro[grpc].",
        )
    secrets = _secrets(url, headers)
    target, plaintext = _grpc_target(url, insecure)
    if not target:
        return ProbeResult(
            signal, False, "bad URL", f"{shown} has no host:port; the OTLP/gRPC endpoint looks like http://host:4317."
        )
    channel: Any = (
        grpc.insecure_channel(target) if plaintext else grpc.secure_channel(target, grpc.ssl_channel_credentials())
    )
    try:
        export = channel.unary_unary(
            _GRPC_SERVICE[signal], request_serializer=lambda _: b"", response_deserializer=lambda b: b
        )
        metadata = [(k.lower(), v) for k, v in headers.items()]
        try:
            export(b"", metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            return _grpc_error(signal, shown, exc, headers, timeout_s=timeout_s, plaintext=plaintext, secrets=secrets)
        return ProbeResult(signal, True, "gRPC OK", f"{shown} accepted an empty {signal} export (gRPC OK).")
    finally:
        channel.close()


def _grpc_error(
    signal: str,
    shown: str,
    exc: Any,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    plaintext: bool,
    secrets: Sequence[str],
) -> ProbeResult:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    name = str(getattr(code, "name", "UNKNOWN"))
    details = exc.details() if callable(getattr(exc, "details", None)) else ""
    said = _peer_text(str(details or ""), secrets)
    sent = _sent(headers, "metadata key")
    fix = _GRPC_FIX.get(name)
    if name == "UNAVAILABLE":
        lowered = said.lower()
        if "http/2" in lowered or "http1" in lowered:
            fix = (
                "the peer answered HTTP/1.1, not gRPC, so it looks like an OTLP/HTTP port (such as 4318); use the "
                "collector's OTLP/gRPC port 4317, or OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf with .../v1/{signal}."
            )
        elif "refused" in lowered:
            fix = "nothing is listening there (connection refused); start the collector or fix the port (4317)."
        elif not plaintext and any(w in lowered for w in ("ssl", "tls", "handshake", "certificate")):
            fix = (
                "the TLS handshake failed; if the collector serves plain gRPC use an http:// endpoint, otherwise "
                "check its certificate."
            )
        elif any(w in lowered for w in ("dns", "resolve", "name resolution")):
            fix = "the host could not be resolved; check the spelling, or the Service name in Kubernetes."
    if fix is None:
        fix = "the peer failed the export; check that this is an OTLP/gRPC collector endpoint and its logs."
    text = fix.format(signal=signal, sent=sent, timeout=f"{timeout_s:g}")
    why = f" ({said})" if said else ""
    return ProbeResult(signal, False, f"gRPC {name}", f"the gRPC export to {shown} failed with {name}{why}: {text}")
