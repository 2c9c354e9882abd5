"""Exporter wrapping: lazy OTLP import, throttled failure warnings, and abort on a shutdown deadline.

The OTLP stack (protobuf, requests/grpc) costs ~120 ms to import, so the real exporter is built on
the first export, which runs on the batch processor's worker thread, never on the app's main thread.
A process that never exports (a no-op job) never pays for it. ``abort_all()`` makes every in-flight
retry give up, so exit is bounded when the collector is unreachable (see ``lifecycle``);
``abort_unreachable()`` probes the collector at exit (one TCP connect) so a job whose collector is down
does not spend its exit budget on retries. ``reset_after_fork()`` drops the parent's connections in a
forked child (a socket shared by two processes corrupts both streams).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from floe_otel_distro.plan import ExporterPlan

_live: weakref.WeakSet[_Lazy] = weakref.WeakSet()
_WARN_EVERY_S = 60.0
_warn_lock = threading.Lock()
_last_warning = 0.0
_suppressed = 0


def _warn_export_failure(signal: str, endpoint: str) -> None:
    """At most one stderr line a minute while exports fail (instead of a retry flood)."""
    global _last_warning, _suppressed
    with _warn_lock:
        now = time.monotonic()
        if _last_warning and now - _last_warning < _WARN_EVERY_S:
            _suppressed += 1
            return
        extra = f" ({_suppressed} more failures since the last warning)" if _suppressed else ""
        _last_warning, _suppressed = now, 0
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"floe-otel: collector {endpoint} unreachable or refusing {signal}{extra}; telemetry is dropped "
            "meanwhile (check OTEL_EXPORTER_OTLP_ENDPOINT, the collector, and its credentials)\n"
        )


class _Lazy:
    """Holds the factory and the real exporter once built."""

    def __init__(self, signal: str, endpoint: str, factory: Callable[[], Any], target: str = "") -> None:
        self._signal = signal
        self._endpoint = endpoint  # redacted, for messages
        self._target = target  # the real URL, for the reachability probe
        self._factory = factory
        self._inner: Any = None
        self._lock = threading.Lock()
        self._aborted = False
        self.healthy: bool | None = None  # last export succeeded (None: nothing exported yet)
        _live.add(self)

    def _get(self) -> Any:
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    self._inner = self._factory()
        return self._inner

    def _send(self, send: Callable[[Any], Any], success: Any, failure: Any) -> Any:
        """Build the real exporter if needed, call ``send(inner)``, track health; fail fast once aborted."""
        if self._aborted:
            return failure
        inner = self._get()
        if self._aborted:
            return failure
        result = send(inner)
        if result is success:
            self.healthy = True
        elif not self._aborted:
            self._failed()
        return result

    def _failed(self) -> None:
        self.healthy = False
        _warn_export_failure(self._signal, self._endpoint)

    def _after_fork_in_child(self) -> None:
        # The parent's exporter (and its pooled sockets / gRPC channel) stays the parent's: build anew.
        self._inner = None
        self._lock = threading.Lock()
        self._aborted = False
        self.healthy = None

    def abort(self) -> None:
        """Stop retrying now: later exports fail fast."""
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
            lambda inner: inner.export(spans), SpanExportResult.SUCCESS, SpanExportResult.FAILURE
        )
        return result

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _quiet_upstream_retry_logs() -> None:
    # The OTLP exporters log every retry at WARNING; we report failures ourselves, throttled.
    for name in ("opentelemetry.exporter.otlp", "opentelemetry.exporter.otlp.common"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def otlp_exporter(signal: str, spec: ExporterPlan, temporality_preference: str = "cumulative") -> _Lazy:
    """A lazy OTLP exporter for ``signal`` as the plan describes it (protocol, endpoint, headers, timeout)."""
    endpoint = spec.endpoint or ""
    headers = dict(spec.headers) or None
    timeout = spec.timeout_s
    grpc = spec.protocol == "grpc"
    insecure = spec.insecure

    def build() -> Any:
        _quiet_upstream_retry_logs()
        # Modules requests/urllib3 would otherwise import lazily during the first export: an import in
        # flight on the batch thread when the process forks leaves that module's import lock held in
        # the child forever (its own exports then hang). Importing them here, under the lock that
        # ``before_fork`` waits for, closes that window.
        import encodings.idna  # noqa: F401
        import netrc  # noqa: F401
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

            return H(endpoint=endpoint, headers=headers, timeout=timeout)
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HM

            return HM(endpoint=endpoint, headers=headers, timeout=timeout,
                      preferred_temporality=temporality_of(temporality_preference))
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HL

        return HL(endpoint=endpoint, headers=headers, timeout=timeout)

    from floe_otel_distro.redaction import redact_url

    shown = redact_url(endpoint)
    if signal == "traces":
        return LazySpanExporter(signal, shown, build, endpoint)
    if signal == "metrics":
        from floe_otel_distro._lazy_metrics import LazyMetricExporter

        return LazyMetricExporter(signal, shown, build, temporality_of(temporality_preference), endpoint)
    from floe_otel_distro._lazy_logs import LazyLogExporter

    return LazyLogExporter(signal, shown, build, endpoint)


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


def reachable(url: str, timeout_s: float) -> bool:
    """Whether a TCP connection to ``url``'s host:port opens within ``timeout_s`` (unparsable: assume yes)."""
    address = _address(url)
    if address is None:
        return True
    try:
        with socket.create_connection(address, timeout=max(timeout_s, 0.01)):
            return True
    except OSError:
        return False


def abort_unreachable(timeout_s: float) -> int:
    """At exit: abort the exporters whose collector does not accept a connection; returns how many.

    Each distinct host:port is probed once (one TCP connect, ~0.1 ms on a local network).
    """
    verdict: dict[tuple[str, int] | None, bool] = {}
    aborted = 0
    for exporter in list(_live):
        if exporter._aborted or not exporter._target:
            continue
        address = _address(exporter._target)
        if address not in verdict:
            verdict[address] = reachable(exporter._target, timeout_s)
        if not verdict[address]:
            exporter._failed()  # throttled: one line however many exporters share the collector
            exporter.abort()
            aborted += 1
    return aborted


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
    global _warn_lock
    _warn_lock = threading.Lock()
    _held_across_fork.clear()  # the child's exporters get new locks below
    for exporter in list(_live):
        exporter._after_fork_in_child()
