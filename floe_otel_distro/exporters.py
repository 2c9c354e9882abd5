"""Exporter wrapping: lazy OTLP import, loss accounting with the real cause, and abort on a shutdown deadline.

The OTLP stack (protobuf, requests/grpc) costs ~120 ms to import, so the real exporter is built on
the first export (over OTLP/HTTP through ``http_transport``'s standard-library transport where it
behaves like upstream's requests one: ~50-100 ms less to import), which runs on the batch processor's
worker thread, never on the app's main thread.
A process that never exports (a no-op job) never pays for it. ``abort_all()`` makes every in-flight
retry give up, so exit is bounded when the collector is unreachable (see ``lifecycle``);
``abort_unreachable()`` probes the collector at exit (one TCP connect) so a job whose collector is down
does not spend its exit budget on retries. ``reset_after_fork()`` drops the parent's connections in a
forked child (a socket shared by two processes corrupts both streams).

Every failed export is counted (items per batch) with what actually happened (HTTP status, gRPC
status, refused, timeout, ...) in ``delivery``'s ledger: one throttled line while the program runs,
one count line per collector at exit. ``settle_pending()`` adds what the exit budget cut off.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from floe_otel_distro import delivery

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from floe_otel_distro.plan import ExporterPlan

_live: weakref.WeakSet[_Lazy] = weakref.WeakSet()
_HTTP_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP"  # upstream's ..._CREDENTIAL_PROVIDER variables


class _Lazy:
    """Holds the factory and the real exporter once built; counts what failed exports lose (``delivery``)."""

    def __init__(
        self,
        signal: str,
        endpoint: str,
        factory: Callable[[], Any],
        target: str = "",
        secrets: Sequence[str] = (),
    ) -> None:
        self._signal = signal
        self._endpoint = endpoint  # redacted, for messages
        self._target = target  # the real URL, for the reachability probe
        self._factory = factory
        self._inner: Any = None
        self._lock = threading.Lock()
        self._aborted = False
        self._abort_cause: str | None = None
        self._outcome = delivery.Outcome(secrets=tuple(s for s in secrets if len(s) >= 4), give_up=self._give_up)
        self._pending = 0  # items handed to the running export call, not yet settled
        self._pending_lock = threading.Lock()
        self._last_cause: str | None = None
        self.healthy: bool | None = None  # last export succeeded (None: nothing exported yet)
        _live.add(self)
        delivery.watch_queues()

    @property
    def _url(self) -> str:
        return self._target or self._endpoint

    def _get(self) -> Any:
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    self._inner = self._factory()
        return self._inner

    def _send(self, send: Callable[[Any], Any], success: Any, failure: Any, count: int) -> Any:
        """Build the real exporter if needed, call ``send(inner)``; a failure is counted with its cause."""
        if self._aborted:
            self._lost(count, self._abort_cause or "export aborted: the exit budget ran out")
            return failure
        inner = self._get()
        if self._aborted:
            self._lost(count, self._abort_cause or "export aborted: the exit budget ran out")
            return failure
        outcome = self._outcome
        outcome.reset()
        with self._pending_lock:
            self._pending = count
        try:
            with delivery.exporting(outcome):
                result = send(inner)
        except Exception as exc:  # the SDK would log and drop the batch: count it with the exception
            outcome.cause = outcome.cause or f"{type(exc).__name__} in the exporter (please report this)"
            result = failure
        with self._pending_lock:
            count, self._pending = self._pending, 0  # 0 if report_at_exit already counted this batch
        if result is success:
            self.healthy = True
            return result
        self.healthy = False
        cause = outcome.cause or self._abort_cause or "the exporter reported a failure without a cause"
        self._last_cause = cause
        if count:
            delivery.record_loss(self._signal, self._url, count, cause)
            delivery.warn_failure(self._signal, self._url, cause)
        return result

    def _lost(self, count: int, cause: str) -> None:
        self.healthy = False
        delivery.record_loss(self._signal, self._url, count, cause)

    def _settle(self, queued: int) -> None:
        """At exit, after the final flush: count the batch still in flight and the items still queued."""
        with self._pending_lock:
            in_flight, self._pending = self._pending, 0
        outcome = self._outcome
        if in_flight:
            cause = outcome.cause
            if cause is None and outcome.request_since is not None:
                waited = time.monotonic() - outcome.request_since
                cause = (f"timeout: the collector accepted the connection but did not answer within {waited:.1f} s "
                         "(the exit budget, FLOE_SHUTDOWN_TIMEOUT, ran out)")
            cause = cause or self._abort_cause or "the exit budget (FLOE_SHUTDOWN_TIMEOUT) ran out during the export"
            delivery.record_loss(self._signal, self._url, in_flight, cause)
            self._last_cause = cause
        if queued:
            cause = self._last_cause or self._abort_cause or (
                "still queued when the exit budget (FLOE_SHUTDOWN_TIMEOUT) ran out")
            delivery.record_loss(self._signal, self._url, queued, cause)

    def _give_up(self) -> None:
        """The collector asked for a wait longer than the exit budget has left: stop now (``delivery``)."""
        self.abort(self._outcome.cause)

    def _after_fork_in_child(self) -> None:
        # The parent's exporter (and its pooled sockets / gRPC channel) stays the parent's: build anew.
        self._inner = None
        self._lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending = 0
        self._aborted = False
        self._abort_cause = None
        self._last_cause = None
        self.healthy = None

    def abort(self, cause: str | None = None) -> None:
        """Stop retrying now: later exports fail fast (and are counted with ``cause``)."""
        if cause and not self._abort_cause:
            self._abort_cause = cause
        self._aborted = True
        inner = self._inner
        if inner is not None:
            with contextlib.suppress(Exception):
                inner.shutdown()

    def _shutdown(self) -> None:
        if self._inner is not None and not self._aborted:
            self._inner.shutdown()


class LazySpanExporter(_Lazy, SpanExporter):
    """A span exporter that builds the real one on first export."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result: SpanExportResult = self._send(
            lambda inner: inner.export(spans), SpanExportResult.SUCCESS, SpanExportResult.FAILURE, len(spans)
        )
        return result

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _http_client(signal: str, spec: ExporterPlan, exporter_class: type, session: Callable[[], Any]) -> dict[str, Any]:
    """The OTLP/HTTP exporter's transport keyword: the plan's choice (``ExporterPlan.http_client``).

    ``stdlib``: the standard-library transport under upstream's exporter (``http_transport``); else upstream's
    requests transport with our recording session. A spec made without a plan gets the plan's rule.
    """
    import os

    try:
        from floe_otel_distro import http_transport
    except ImportError:  # no opentelemetry-exporter-http-transport: the exporter predates 1.45
        http_transport = None  # type: ignore[assignment]
    choice = spec.http_client
    if choice is None:
        from floe_otel_distro._planning import http_client_choice

        asked = os.environ.get("FLOE_OTEL_HTTP_CLIENT", "").strip().lower() or "stdlib"
        choice = http_client_choice(os.environ, signal, asked, http_transport is not None)
    if choice == "stdlib" and http_transport is not None and http_transport.accepts_transport(exporter_class):
        import http.client  # noqa: F401 - on the batch thread, under the build lock (fork safety, see below)

        return {"_transport": http_transport.transport_for(signal)}
    import netrc  # noqa: F401 - requests reads ~/.netrc lazily

    return {"session": session()}


def otlp_exporter(
    signal: str,
    spec: ExporterPlan,
    temporality_preference: str = "cumulative",
    histogram_aggregation: str = "explicit_bucket_histogram",
) -> _Lazy:
    """A lazy OTLP exporter for ``signal`` as the plan describes it (protocol, endpoint, headers, timeout)."""
    endpoint = spec.endpoint or ""
    headers = dict(spec.headers) or None
    timeout = spec.timeout_s
    grpc = spec.protocol == "grpc"
    insecure = spec.insecure

    def session() -> Any:
        # Our requests.Session records each response / exception for the loss line (``delivery``). A
        # credential-provider session named by upstream's *_CREDENTIAL_PROVIDER variable wins over it.
        import os

        if any(k.startswith(_HTTP_CREDENTIAL_PROVIDER) and k.endswith("CREDENTIAL_PROVIDER") for k in os.environ):
            return None
        return delivery.recording_session()

    def build() -> Any:
        try:
            return _build()
        finally:
            delivery.install_capture()  # the exporter modules (and their loggers) exist now

    def _build() -> Any:
        # Modules requests/urllib3 would otherwise import lazily during the first export: an import in
        # flight on the batch thread when the process forks leaves that module's import lock held in
        # the child forever (its own exports then hang). Importing them here, under the lock that
        # ``before_fork`` waits for, closes that window.
        import encodings.idna  # noqa: F401
        if grpc:
            if signal == "traces":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as G

                return G(endpoint=endpoint, headers=headers, timeout=timeout, insecure=insecure)
            if signal == "metrics":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GM

                return GM(endpoint=endpoint, headers=headers, timeout=timeout, insecure=insecure,
                          preferred_temporality=temporality_of(temporality_preference))
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GL

            return GL(endpoint=endpoint, headers=headers, timeout=timeout, insecure=insecure)
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as H

            return H(endpoint=endpoint, headers=headers, timeout=timeout, **_http_client(signal, spec, H, session))
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HM

            return HM(endpoint=endpoint, headers=headers, timeout=timeout, **_http_client(signal, spec, HM, session),
                      preferred_temporality=temporality_of(temporality_preference))
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HL

        return HL(endpoint=endpoint, headers=headers, timeout=timeout, **_http_client(signal, spec, HL, session))


    from floe_otel_distro.redaction import redact_url

    shown = redact_url(endpoint)
    # header values, and their credential part ("Bearer <token>"), are scrubbed from any peer text we print
    secrets = tuple(v for value in (headers or {}).values() for v in (value, *value.split(None, 1)[1:]))
    lazy: _Lazy
    if signal == "traces":
        lazy = LazySpanExporter(signal, shown, build, endpoint, secrets)
    elif signal == "metrics":
        from floe_otel_distro._lazy_metrics import LazyMetricExporter, histogram_aggregation_of

        lazy = LazyMetricExporter(
            signal,
            shown,
            build,
            temporality_of(temporality_preference),
            target=endpoint,
            secrets=secrets,
            aggregation=histogram_aggregation_of(histogram_aggregation),
        )
    else:
        from floe_otel_distro._lazy_logs import LazyLogExporter

        lazy = LazyLogExporter(signal, shown, build, endpoint, secrets)
    return lazy


def temporality_of(preference: str) -> dict[type, Any]:
    """The SDK temporality mapping for a preference (imports the metrics SDK: metrics only)."""
    from floe_otel_distro._lazy_metrics import metric_temporality

    return metric_temporality(preference)


def abort_all() -> None:
    """Make every live exporter give up its retries (used when the exit budget runs out)."""
    for exporter in list(_live):
        exporter.abort()


def _address(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def unreachable_cause(url: str, timeout_s: float) -> str | None:
    """Why a TCP connection to ``url``'s host:port does not open within ``timeout_s`` (None: it opens)."""
    address = _address(url)
    if address is None:
        return None
    host, port = address
    # an ASCII host as bytes: getaddrinfo then needs no idna codec (~1-2 ms to import at every exit)
    target: tuple[str | bytes, int] = (host.encode("ascii") if host.isascii() else host, port)
    try:
        with socket.create_connection(target, timeout=max(timeout_s, 0.01)):  # type: ignore[arg-type]
            return None
    except ConnectionRefusedError:
        return delivery.REFUSED
    except TimeoutError:
        return f"timeout: the connection was not accepted within {timeout_s:g} s (collector unreachable)"
    except socket.gaierror:
        return "DNS failure: the collector's host name could not be resolved"
    except OSError as exc:
        return f"collector unreachable ({errno.errorcode.get(exc.errno or 0, type(exc).__name__)})"


def reachable(url: str, timeout_s: float) -> bool:
    """Whether a TCP connection to ``url``'s host:port opens within ``timeout_s`` (unparsable: assume yes)."""
    return unreachable_cause(url, timeout_s) is None


def abort_unreachable(timeout_s: float) -> int:
    """At exit: abort the exporters whose collector does not accept a connection; returns how many.

    Each distinct host:port is probed once (one TCP connect, ~0.1 ms on a local network). Nothing is
    printed here: what the aborted exporters then fail to send is counted with the probe's cause and
    reported by ``delivery.report_at_exit`` (a process that had nothing to send prints nothing).
    """
    verdict: dict[tuple[str, int] | None, str | None] = {}
    aborted = 0
    for exporter in list(_live):
        if exporter._aborted or not exporter._target:
            continue
        address = _address(exporter._target)
        if address not in verdict:
            verdict[address] = unreachable_cause(exporter._target, timeout_s)
        cause = verdict[address]
        if cause is not None:
            exporter.abort(cause)
            aborted += 1
    return aborted


def queue_full_drop(signal: str) -> None:
    """The SDK dropped one ``signal`` item on a full batch queue: count it for the exporter whose queue is full."""
    from floe_otel_distro import lifecycle

    candidates = [e for e in list(_live) if e._signal == signal]
    for exporter in candidates:
        for queue in delivery.queues(exporter, list(lifecycle._providers)):
            if queue.maxlen is not None and len(queue) >= queue.maxlen:
                exporter._lost(1, delivery.QUEUE_FULL.format(size=queue.maxlen))
                return
    if candidates:  # the queue could not be found (upstream changed): still count it, for one of them
        candidates[0]._lost(1, delivery.QUEUE_FULL.format(size="?"))


def give_up_waits_beyond(deadline: float) -> int:
    """At the start of the exit flush: exports already waiting past ``deadline`` (a long Retry-After or
    back-off started while the program ran) stop now instead of holding the budget; returns how many."""
    stopped = 0
    for exporter in list(_live):
        retry_at = exporter._outcome.retry_at
        if exporter._pending and retry_at is not None and retry_at > deadline:
            exporter._give_up()
            stopped += 1
    return stopped


def settle_pending() -> None:
    """At exit, after the final flush: count every exporter's batch in flight and its still-queued items."""
    from floe_otel_distro import lifecycle

    providers = list(lifecycle._providers)
    for exporter in list(_live):
        with contextlib.suppress(Exception):
            exporter._settle(delivery.queued(exporter, providers))


_held_across_fork: list[threading.Lock] = []


def before_fork() -> None:
    """``os.register_at_fork(before=...)``: wait until no exporter is being built (bounded, 5 s).

    Building imports the OTLP stack on a batch thread; a fork in the middle of that import would leave
    the child with a module import lock owned by a thread that does not exist there, and the child's
    own first export would wait for it forever (seen with gunicorn recycling workers).
    """
    for exporter in list(_live):
        lock = exporter._lock
        if lock.acquire(timeout=5):
            _held_across_fork.append(lock)


def after_fork_in_parent() -> None:
    """``os.register_at_fork(after_in_parent=...)``: release what ``before_fork`` took."""
    while _held_across_fork:
        _held_across_fork.pop().release()


def reset_after_fork() -> None:
    """In a forked child: forget the parent's exporter connections and locks (see ``lifecycle``)."""
    delivery.reset()  # the parent reports its own losses
    _held_across_fork.clear()  # the child's exporters get new locks below
    for exporter in list(_live):
        exporter._after_fork_in_child()
