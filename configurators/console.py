"""The ``console`` backend (dev default): a picture of each trace on stderr, no collector needed.

Spans are buffered per trace and printed (a tree with a waterfall, see ``_tree``) when the trace's local
root ends; anything left is printed at shutdown. Quiet when dbt runs with ``-q``/``--quiet``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import IO, Any, ClassVar

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from floe_otel_distro.plugin import TelemetryBackendPlugin

from ._tree import WIDTH, human_duration, render

__all__ = ["ConsoleBackend", "ConsoleTreeExporter", "human_duration", "render_tree"]

def render_tree(spans: Sequence[ReadableSpan], *, width: int = WIDTH, color: bool = False) -> str:
    """The spans of one trace as a tree with a waterfall (see ``_tree``)."""
    text: str = render(spans, width=width, color=color)
    return text


def wants_color(out: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Colour on a terminal unless ``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``."""
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    try:
        return bool(out.isatty())
    except Exception:
        return False


def quiet(spans: Sequence[ReadableSpan]) -> bool:
    """dbt run with ``-q``/``--quiet``: print nothing (dbt's own output is silenced too)."""
    for span in spans:
        args = (span.attributes or {}).get("dbt.args")
        if args is None:
            continue
        words = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).replace("=", " ").split()
        if "-q" in words or "--quiet" in words or "quiet: True" in str(args):
            return True
    return False


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
            self._print(trace_spans)
        return SpanExportResult.SUCCESS

    def _print(self, spans: Sequence[ReadableSpan]) -> None:
        if quiet(spans):
            return
        out = self._out or sys.stderr
        self._write(render_tree(spans, color=wants_color(out)))

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
            self._print(trace_spans)

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
