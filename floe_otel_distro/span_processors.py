"""Span processors owned by floe: the four floe attributes on every span (FR-007).

Some backends index span attributes only, so ``floe.namespace``, ``floe.product.name``,
``floe.product.version`` and ``floe.mode`` are copied onto each span at start, without user code.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


class FloeAttributesSpanProcessor(SpanProcessor):
    """Sets a fixed attribute set on every span when it starts (cheap: one dict update)."""

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self._attributes = dict(attributes)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attributes(self._attributes)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
