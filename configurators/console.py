"""The ``console`` backend (dev default): a readable trace tree on stderr, no collector needed.

Spans are buffered per trace and printed as a tree (parent/child indentation, durations, status and
key attributes) when the trace's local root ends; anything left is printed at shutdown.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import IO, Any, ClassVar

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from floe_otel_distro.plugin import TelemetryBackendPlugin

_FLOE_KEYS = frozenset({"floe.namespace", "floe.product.name", "floe.product.version", "floe.mode"})
_MAX_ATTRS = 4


def _duration(span: ReadableSpan) -> str:
    ns = (span.end_time or 0) - (span.start_time or 0)
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f}s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e3:.0f}µs"


def _status(span: ReadableSpan) -> str:
    code = span.status.status_code
    if code is StatusCode.ERROR:
        return "ERROR" + (f": {span.status.description}" if span.status.description else "")
    attributes = span.attributes or {}
    if any(k.endswith(".skipped") and v is True for k, v in attributes.items()) or "skipped" in (
        attributes.get("dbt.node.status"),
        attributes.get("dagster.status"),
    ):
        return "SKIPPED"
    return "OK" if code is StatusCode.OK else "-"


_NOISY_SUFFIXES = (".name", ".unique_id", ".resource_type", ".args", ".adapter_response", ".version")


def _key_attributes(span: ReadableSpan) -> str:
    """A few short attributes worth a glance (identity already shown by the span name is left out)."""
    items = [
        (k, v)
        for k, v in (span.attributes or {}).items()
        if k not in _FLOE_KEYS and not k.endswith(_NOISY_SUFFIXES) and len(str(v)) <= 40
    ]
    shown = " ".join(f"{k}={v!s}" for k, v in items[:_MAX_ATTRS])
    if len(items) > _MAX_ATTRS:
        shown += f" (+{len(items) - _MAX_ATTRS})"
    return shown


def render_tree(spans: Sequence[ReadableSpan]) -> str:
    """The spans of one trace as an indented tree, children ordered by start time."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        key = parent if parent in by_id else None
        children.setdefault(key, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_time or 0)
    first = spans[0]
    trace_id = f"{first.context.trace_id:032x}" if first.context else "?"
    res = first.resource.attributes if first.resource else {}
    lines = [f"trace {trace_id}  service={res.get('service.name')!s} mode={res.get('floe.mode')!s}"]

    def walk(span: ReadableSpan, prefix: str, last: bool) -> None:
        branch = "└─ " if last else "├─ "
        attrs = _key_attributes(span)
        lines.append(
            f"{prefix}{branch}{span.name}  {_duration(span)}  {_status(span)}" + (f"  {attrs}" if attrs else "")
        )
        kids = children.get(span.context.span_id if span.context else None, [])
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    roots = children.get(None, [])
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


class ConsoleTreeExporter(SpanExporter):
    """Prints each finished trace as a tree to ``out`` (stderr by default)."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out
        self._pending: dict[int, list[ReadableSpan]] = {}
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ready: list[list[ReadableSpan]] = []
        with self._lock:
            for span in spans:
                if span.context is None:
                    continue
                bucket = self._pending.setdefault(span.context.trace_id, [])
                bucket.append(span)
                if span.parent is None or span.parent.is_remote:
                    ready.append(self._pending.pop(span.context.trace_id))
        for trace_spans in ready:
            self._write(render_tree(trace_spans))
        return SpanExportResult.SUCCESS

    def _write(self, text: str) -> None:
        out = self._out or sys.stderr
        try:
            out.write(text + "\n")
            out.flush()
        except Exception:
            pass

    def shutdown(self) -> None:
        with self._lock:
            left = list(self._pending.values())
            self._pending.clear()
        for trace_spans in left:
            self._write(render_tree(trace_spans))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ConsoleBackend(TelemetryBackendPlugin):
    """Development backend: trace tree on stderr; metrics and OTLP logs are not exported."""

    name: ClassVar[str] = "console"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Trace tree on stderr (dev mode, no collector)"
    sdk_exporters: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"traces": "console", "metrics": "none", "logs": "none"}
    )

    def get_otlp_exporter_config(self) -> dict[str, Any]:
        return {"debug": {"verbosity": "detailed"}}

    def console_exporter(self, signal: str) -> Any:
        return ConsoleTreeExporter() if signal == "traces" else None
