"""The lazy OTLP log record exporter (imported only when logs are exported: it needs the logs SDK)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from floe_otel_distro.exporters import _Lazy

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord


class LazyLogExporter(_Lazy, LogRecordExporter):
    """A log record exporter that builds the real one on first export."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result: LogRecordExportResult = self._send(
            lambda inner: inner.export(batch),
            LogRecordExportResult.SUCCESS,
            LogRecordExportResult.FAILURE,
            len(batch),
        )
        return result

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
