"""Loss accounting for exports: why each failed export failed, what it lost, one line per collector at exit.

Every loss is one ``floe-otel:`` line naming its cause (issue 9). How the cause is learnt, through public
extension points only:

- OTLP/HTTP: the exporter gets our :func:`recording_session` (the exporter's ``session=`` parameter), a
  ``requests.Session`` that notes each response's status and ``Retry-After`` and each exception
  (refused, timeout, TLS, a peer that closes without an HTTP answer, a bad header) for the export
  running on its thread;
- both protocols: :class:`CaptureFilter`, a ``logging.Filter`` on the OTLP exporters' own loggers, reads
  the records they emit *during our export call on this thread* (gRPC status and details, "request too
  large", encoding errors) and keeps them off the handlers: the same facts reach stderr in our lines,
  throttled. Records outside our export calls pass untouched, and a logger the user sets to DEBUG gets
  every record (style.md anti-pattern 10: never mute upstream loggers wholesale).

What is lost is counted per failed batch (spans, metric data points, log records) in a ledger keyed by
the collector (endpoint without its ``/v1/<signal>`` path). While the program runs, the first failure
prints one line with the cause, then at most one a minute. At exit (:func:`report_at_exit`, called by
``lifecycle`` after the final flush) the batches still in flight and the items still queued in the SDK's
batch processors are added, and exactly one line per collector with losses is printed::

    floe-otel: 100 spans, 3 metric points, 2 log records not delivered to http://c:4318: HTTP 401 (...)

A process that had nothing to send prints nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import field
from typing import Any

from floe_otel_distro._records import dataclass
from floe_otel_distro.redaction import redact_text, redact_url

ITEMS = {
    "traces": ("span", "spans"),
    "metrics": ("metric point", "metric points"),
    "logs": ("log record", "log records"),
}
WARN_EVERY_S = 60.0
_CAUSE_MAX = 300
_HEADERS_HINT = "OTEL_EXPORTER_OTLP_HEADERS or the FLOE_OTLP_HEADERS_FILE secret"


# --- causes --------------------------------------------------------------------------------------------
_HTTP_CAUSE = {
    400: "the collector rejected the data as malformed: is this an OTLP/HTTP receiver?",
    401: f"credentials missing or wrong: check {_HEADERS_HINT}",
    403: "these credentials are not allowed to write this signal",
    404: "no OTLP receiver at this path: it must end in /v1/<signal>, or the collector has no pipeline for it",
    405: "POST not allowed here: not an OTLP/HTTP receiver",
    413: "the request is too large for the collector or a proxy in front of it: lower "
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE or raise its body limit",
    415: "not an OTLP/HTTP protobuf receiver",
    429: "rate limited{retry}: lower the export rate or raise the backend's quota",
    502: "a proxy in front of the collector failed{retry}",
    503: "the collector is not taking data{retry}: starting, overloaded or its memory_limiter is refusing",
    504: "a proxy in front of the collector timed out{retry}",
}
_GRPC_CAUSE = {
    "UNAVAILABLE": "the collector is unreachable or does not speak gRPC",
    "UNAUTHENTICATED": f"credentials missing or wrong: check {_HEADERS_HINT}",
    "PERMISSION_DENIED": "these credentials are not allowed to write this signal",
    "UNIMPLEMENTED": "the peer has no OTLP service for this signal: not an OTLP collector?",
    "DEADLINE_EXCEEDED": "no answer within the export timeout",
    "RESOURCE_EXHAUSTED": "rate limited or out of memory: lower the export rate or raise the backend's quota",
    "INVALID_ARGUMENT": "the peer rejected the data as malformed",
}
REFUSED = "connection refused (collector unreachable: not running, or the wrong port)"


def _retry_text(retry_after: str | None) -> str:
    return f", Retry-After: {retry_after}" if retry_after else ""


def http_status_cause(code: int, retry_after: str | None = None) -> str:
    """``HTTP 401 (credentials missing ...)``: the status and what it means for the exporter."""
    text = _HTTP_CAUSE.get(code)
    if text is None:
        if 300 <= code < 400:
            text = "a redirect: exporters do not follow redirects, set the endpoint to the final URL"
        elif code >= 500:
            text = "the collector (or a proxy in front of it) failed{retry}"
        else:
            text = "the collector refused the export"
    return f"HTTP {code} ({text.format(retry=_retry_text(retry_after))})"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (``__cause__``/``__context__``, urllib3's ``reason``, args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args):
            if isinstance(nested, BaseException):
                todo.append(nested)


def exception_cause(exc: BaseException, timeout_s: float | None = None) -> str:  # noqa: PLR0911 - one per kind
    """What a request exception means: refused, timeout, TLS error, not OTLP/HTTP, bad header, DNS..."""
    import http.client  # here, not at import: the distro's start-up imports this module
    import ssl

    chain = list(_chain(exc))
    names = {type(e).__name__ for e in chain}
    within = f" within {timeout_s:g} s" if timeout_s else ""
    if "InvalidHeader" in names or "InvalidHeaderValue" in names or any(
        "header" in str(e).lower() and isinstance(e, ValueError) for e in chain
    ):
        # the message quotes the header's value: never shown
        return f"bad header: a header value contains a line break or an invalid character; fix it in {_HEADERS_HINT}"
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS error: the collector's certificate was not accepted ({e.verify_message or 'verify failed'})"
        if isinstance(e, ssl.SSLError):
            return f"TLS error: the handshake failed ({e.reason or type(e).__name__}; plain http:// endpoint?)"
    if "SSLError" in names:
        return "TLS error: the handshake failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return REFUSED
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        return "DNS failure: the collector's host name could not be resolved"
    if "ConnectTimeout" in names or "ConnectTimeoutError" in names:
        return f"timeout: the connection was not accepted{within} (a firewall dropping packets, or the wrong host)"
    if "ReadTimeout" in names or "ReadTimeoutError" in names or any(isinstance(e, TimeoutError) for e in chain):
        return f"timeout: the collector accepted the connection but did not answer{within}"
    closed = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError, BrokenPipeError)
    if any(isinstance(e, closed) for e in chain) or "ProtocolError" in names:
        return (
            "not OTLP/HTTP: the peer closed the connection without an HTTP answer (a gRPC port such as 4317 speaks "
            "HTTP/2 only: use 4318, or OTEL_EXPORTER_OTLP_PROTOCOL=grpc; or the collector went down)"
        )
    if "ConnectionError" in names:
        return "connection failed (collector unreachable)"
    return f"{type(exc).__name__} while exporting"


def grpc_cause(code_name: str, details: str) -> str:
    """``gRPC UNAUTHENTICATED (credentials missing ...: <details>)``."""
    text = _GRPC_CAUSE.get(code_name, "the export failed")
    lowered = details.lower()
    if code_name == "UNAVAILABLE":
        if "refused" in lowered:
            text = "connection refused (collector unreachable: not running, or the wrong port)"
        elif "http/2" in lowered or "http1" in lowered or "http/1" in lowered:
            text = "the peer answered HTTP/1.1, not gRPC: an OTLP/HTTP port such as 4318?"
        elif any(w in lowered for w in ("ssl", "tls", "handshake", "certificate")):
            text = "TLS error: a plain-text gRPC collector? use an http:// endpoint"
    shown = f": {details}" if details else ""
    return f"gRPC {code_name} ({text}{shown})"


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Peer / library text made safe to print: secrets replaced, URLs redacted, one short line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in redact_text(text)).split())
    return text if len(text) <= _CAUSE_MAX else text[: _CAUSE_MAX - 3] + "..."


# --- what the running export saw --------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one exporter's current export call has seen so far (reset at the start of each call)."""

    cause: str | None = None
    from_session: bool = False
    request_since: float | None = None  # a request is in flight (started at this monotonic time)
    retry_at: float | None = None  # the exporter is waiting (back-off / Retry-After) until this monotonic time
    secrets: tuple[str, ...] = ()
    give_up: Any = None  # called when the exporter should stop retrying now (a wait beyond the exit budget)

    def give_up_now(self) -> None:
        """Make the exporter stop retrying (its next back-off wait returns at once)."""
        if self.give_up is not None:
            with contextlib.suppress(Exception):
                self.give_up()

    def reset(self) -> None:
        self.cause, self.from_session, self.request_since, self.retry_at = None, False, None, None


_local = threading.local()  # .outcome: the Outcome of the export running on this thread (or None)


@contextlib.contextmanager
def exporting(outcome: Outcome) -> Iterator[None]:
    """Mark the calling thread as running an export whose facts go to ``outcome``."""
    previous = getattr(_local, "outcome", None)
    _local.outcome = outcome
    try:
        yield
    finally:
        _local.outcome = previous


def current() -> Outcome | None:
    """The Outcome of the export running on this thread, if any."""
    outcome: Outcome | None = getattr(_local, "outcome", None)
    return outcome


def note_response(status: int, retry_after: str | None) -> None:
    """The session saw a response (2xx/3xx included): remember failures; give up on a too-long Retry-After."""
    outcome = current()
    if outcome is None or 200 <= status < 300:
        return
    shown = scrub(retry_after, outcome.secrets) if retry_after else None
    cause = http_status_cause(status, shown)
    seconds = _seconds(retry_after)
    left = exit_time_left()
    if seconds is not None and left is not None and seconds > left:
        cause = cause[:-1] + f"; longer than the {max(left, 0):.1f} s left of the exit budget)"
        outcome.cause, outcome.from_session = cause, True
        outcome.give_up_now()
        return
    outcome.cause, outcome.from_session = cause, True


def note_exception(exc: BaseException, timeout_s: float | None) -> None:
    """The session's request raised (refused, timeout, TLS, bad header, ...)."""
    outcome = current()
    if outcome is not None:
        outcome.cause, outcome.from_session = exception_cause(exc, timeout_s), True


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


_session_class: type | None = None


def recording_session() -> Any:
    """A ``requests.Session`` that tells the running export what each request got (imports requests)."""
    global _session_class
    if _session_class is None:
        import requests

        class RecordingSession(requests.Session):
            """Notes each response's status / Retry-After and each exception for the export on this thread."""

            def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
                outcome = current()
                if outcome is not None:
                    outcome.request_since = time.monotonic()
                try:
                    response = super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
                except Exception as exc:
                    timeout = kwargs.get("timeout")
                    note_exception(exc, float(timeout) if isinstance(timeout, (int, float)) else None)
                    raise
                finally:
                    if outcome is not None:
                        outcome.request_since = None
                note_response(response.status_code, response.headers.get("retry-after"))
                return response

        _session_class = RecordingSession
    return _session_class()


class CaptureFilter(logging.Filter):
    """On the OTLP exporters' loggers: records emitted during our export call become its cause (see module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        outcome = current()
        if outcome is None:
            return True  # not one of our export calls: upstream's record goes where the user's logging says
        with contextlib.suppress(Exception):
            _note_record(outcome, record)
        return logging.getLogger(record.name).getEffectiveLevel() <= logging.DEBUG


def _note_record(outcome: Outcome, record: logging.LogRecord) -> None:
    args = record.args if isinstance(record.args, tuple) else ()
    message = str(record.msg)
    if "Shutdown in progress" in message or "already shutdown" in message.lower():
        outcome.cause = outcome.cause or "the exporter was shut down"
        return
    if message.startswith("Transient error"):  # "... retrying in %.2fs": not within the exit budget? stop now
        backoff = next((a for a in args if isinstance(a, float)), None)
        if backoff is not None:
            outcome.retry_at = time.monotonic() + backoff
        left = exit_time_left()
        if backoff is not None and left is not None and backoff > left:
            outcome.give_up_now()
    code = next((a for a in args if type(a).__name__ == "StatusCode"), None)
    if code is not None:  # gRPC: "Transient error %s ..." / "Failed to export %s to %s, error code: %s, ..."
        name = str(getattr(code, "name", code))
        details = str(args[-1]) if args and args[-1] is not code else ""
        outcome.cause = grpc_cause(name, scrub(details, outcome.secrets))
        return
    if "max_request_size" in message and len(args) >= 2:
        outcome.cause = (
            f"request too large: {args[0]} bytes, over the exporter's {args[1]}-byte limit "
            "(a very large span/log record, or lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE); not sent"
        )
        return
    if message.startswith("Failed to encode"):
        outcome.cause = f"encoding failed ({type(args[0]).__name__ if args else 'error'}); not sent"
        return
    if outcome.from_session:
        return  # the HTTP client's own summary of what the session already saw
    if record.levelno >= logging.WARNING:
        outcome.cause = scrub(record.getMessage(), outcome.secrets)


def install_capture() -> None:
    """Put :class:`CaptureFilter` on every OTLP exporter logger that exists (idempotent; after their import)."""
    base = logging.getLogger("opentelemetry.exporter.otlp")
    if base.level == logging.NOTSET:
        # records must exist for us to read them: WARNING is what upstream logs at (it is also the default)
        base.setLevel(logging.WARNING)
    with _install_lock:  # two batch threads may build their exporters at once
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("opentelemetry.exporter.otlp"):
                logger = logging.getLogger(name)
                if not any(isinstance(f, CaptureFilter) for f in logger.filters):
                    logger.filters.insert(0, _FILTER)


_FILTER = CaptureFilter()
_install_lock = threading.Lock()


# --- counting --------------------------------------------------------------------------------------------
def count_items(signal: str, data: Any) -> int:
    """Spans / log records in a batch, data points in ``MetricsData``."""
    if signal != "metrics":
        return len(data)
    total = 0
    with contextlib.suppress(Exception):
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    total += len(getattr(metric.data, "data_points", ()) or ())
    return total


def collector_of(url: str) -> str:
    """The collector a signal URL belongs to, fit to print: redacted, without its ``/v1/<signal>`` path."""
    shown = redact_url(url)
    return re.sub(r"/v1/(traces|metrics|logs)/?$", "", shown) or shown


@dataclass
class _Loss:
    counts: dict[str, int] = field(default_factory=dict)
    causes: list[str] = field(default_factory=list)


_lock = threading.Lock()
_ledger: dict[str, _Loss] = {}
_last_warning = 0.0
_suppressed = 0
_exit_deadline: float | None = None
_reported = False


def record_loss(signal: str, url: str, count: int, cause: str) -> None:
    """Count ``count`` items of ``signal`` lost on the way to ``url`` because of ``cause``."""
    if count <= 0:
        return
    with _lock:
        loss = _ledger.setdefault(collector_of(url), _Loss())
        loss.counts[signal] = loss.counts.get(signal, 0) + count
        if cause in loss.causes:
            loss.causes.remove(cause)
        loss.causes.append(cause)  # the latest cause last


def warn_failure(signal: str, url: str, cause: str) -> None:
    """While the program runs: the first failure, then at most one line a minute (none during the exit flush)."""
    global _last_warning, _suppressed
    with _lock:
        if _exit_deadline is not None or _reported:
            return  # the exit line says it
        now = time.monotonic()
        if _last_warning and now - _last_warning < WARN_EVERY_S:
            _suppressed += 1
            return
        extra = f" ({_suppressed} more failed exports since the last line)" if _suppressed else ""
        _last_warning, _suppressed = now, 0
    write(
        f"floe-otel: exporting {signal} to {redact_url(url)} failed: {cause}; {ITEMS[signal][1]} are dropped "
        f"until it recovers{extra} (at most one such line a minute; a count follows at exit)"
    )


def begin_exit(deadline: float) -> None:
    """The final flush started; it ends at ``deadline`` (monotonic)."""
    global _exit_deadline
    _exit_deadline = deadline


def exit_time_left() -> float | None:
    """Seconds left of the exit budget (None while the program runs)."""
    deadline = _exit_deadline
    return None if deadline is None else deadline - time.monotonic()


def summary_lines() -> list[str]:
    """One line per collector with losses: counts per signal and the cause(s)."""
    with _lock:
        items = [(collector, loss) for collector, loss in _ledger.items() if any(loss.counts.values())]
    lines = []
    for collector, loss in items:
        counts = ", ".join(
            f"{n} {ITEMS[s][0] if n == 1 else ITEMS[s][1]}"
            for s in ("traces", "metrics", "logs")
            if (n := loss.counts.get(s, 0))
        )
        latest_first = list(reversed(loss.causes))
        causes = [c for c in latest_first if not c.startswith("dropped because the batch queue")]
        causes += [c for c in latest_first if c not in causes]  # the queue overflow is a consequence: last
        cause = causes[0] + (f"; also: {'; '.join(causes[1:3])}" if len(causes) > 1 else "")
        lines.append(f"floe-otel: {counts} not delivered to {collector}: {cause}")
    return lines


def report_at_exit() -> None:
    """Once per process, after the final flush: add what is still in flight or queued, print the lines."""
    global _reported
    with _lock:
        if _reported:
            return
        _reported = True
    with contextlib.suppress(Exception):
        from floe_otel_distro.exporters import settle_pending

        settle_pending()
    for line in summary_lines():
        write(line)


def write(line: str) -> None:
    """One line to stderr; never raises (stderr may be closed)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:
        return


def queues(exporter: object, providers: Sequence[Any]) -> list[Any]:
    """The queues (deques) of the SDK batch processors that feed ``exporter`` (empty if it cannot be known).

    Private SDK names (1.44 and 1.45: ``BatchSpanProcessor._batch_processor._queue``/``._exporter``, the tracer
    provider's ``_active_span_processor._span_processors``, the logger provider's
    ``_multi_log_record_processor._log_record_processors``): there is no public queue length. Isolated
    here, read only, and any change upstream makes this return nothing (the loss is then undercounted,
    never a crash). Candidate for ``floe_otel_distro/_upstream.py``.
    """
    found: list[Any] = []
    for provider in providers:
        with contextlib.suppress(Exception):
            real = getattr(provider, "_real", None) or provider  # providers.Deferred*: the SDK provider
            multi = getattr(real, "_active_span_processor", None) or getattr(real, "_multi_log_record_processor", None)
            processors = getattr(multi, "_span_processors", None) or getattr(multi, "_log_record_processors", None)
            for processor in processors or ():
                batch = getattr(processor, "_batch_processor", None)
                if batch is not None and getattr(batch, "_exporter", None) is exporter:
                    found.append(batch._queue)
    return found


def queued(exporter: object, providers: Sequence[Any]) -> int:
    """Items still waiting in the SDK batch processors that feed ``exporter``."""
    return sum(len(q) for q in queues(exporter, providers))


QUEUE_FULL = "dropped because the batch queue was full (max {size}: exports failing, or slower than the program)"
_QUEUE_FULL_MSG = "Queue full, dropping %s."
_QUEUE_SIGNAL = {"Span": "traces", "Log": "logs"}


class QueueFullFilter(logging.Filter):
    """On the SDK batch processor's logger: each "Queue full, dropping Span." is one lost item, counted.

    The record itself is then dropped (our lines count and explain it; upstream only de-duplicates it
    per 20 s), unless the user set that logger to DEBUG. Every other record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _QUEUE_FULL_MSG:
            return True
        with contextlib.suppress(Exception):
            args = record.args if isinstance(record.args, tuple) else ()
            signal = _QUEUE_SIGNAL.get(str(args[0]) if args else "")
            if signal is not None:
                from floe_otel_distro.exporters import queue_full_drop

                queue_full_drop(signal)
        return logging.getLogger(record.name).getEffectiveLevel() <= logging.DEBUG


_QUEUE_FILTER = QueueFullFilter()


def watch_queues() -> None:
    """Count items the SDK's batch processors drop on a full queue (idempotent; no SDK import)."""
    logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    if _QUEUE_FILTER not in logger.filters:
        logger.filters.insert(0, _QUEUE_FILTER)  # before upstream's DuplicateFilter: see every drop


def reset() -> None:
    """Forget the ledger and the exit state (tests; a forked child starts its own account)."""
    global _lock, _last_warning, _suppressed, _exit_deadline, _reported
    _lock = threading.Lock()
    _ledger.clear()
    _last_warning, _suppressed, _exit_deadline, _reported = 0.0, 0, None, False
