"""The pipeline metrics every floe instrumentor emits: names, units and attributes live here only.

- ``floe.pipeline.run.duration`` (histogram, ``s``): floe.pipeline.name, floe.pipeline.component,
  floe.pipeline.status
- ``floe.pipeline.materializations`` (counter, ``{materialization}``): floe.asset.key,
  floe.pipeline.component, floe.materialization.status
- ``floe.pipeline.errors`` (counter, ``{error}``): floe.pipeline.component, error.type
- ``floe.pipeline.node.duration`` (histogram, ``s``): floe.pipeline.component, floe.pipeline.name,
  floe.node.type, floe.node.status (a dbt node, a Dagster step; no per-node id: low cardinality)
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from opentelemetry import metrics

COMPONENT = "floe.pipeline.component"
PIPELINE_NAME = "floe.pipeline.name"
PIPELINE_STATUS = "floe.pipeline.status"
ASSET_KEY = "floe.asset.key"
MATERIALIZATION_STATUS = "floe.materialization.status"
ERROR_TYPE = "error.type"
NODE_TYPE = "floe.node.type"
NODE_STATUS = "floe.node.status"


class PipelineMetrics:
    """The three pipeline instruments, from the global meter provider (or ``meter_provider``, in tests).

    The instruments are created on the first record, not at ``instrument()`` time: a process that never
    runs a pipeline never builds the metrics SDK (see ``floe_otel_distro.providers``).
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        self._meter_provider = meter_provider
        self._created: tuple[Any, Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def _instruments(self) -> tuple[Any, Any, Any, Any]:
        created = self._created
        if created is None:
            with self._lock:
                if self._created is None:
                    meter = metrics.get_meter("floe_otel_distro", meter_provider=self._meter_provider)
                    self._created = (
                        meter.create_histogram(
                            "floe.pipeline.run.duration",
                            unit="s",
                            description="Duration of a pipeline run (dbt invocation, Dagster run).",
                        ),
                        meter.create_counter(
                            "floe.pipeline.materializations",
                            unit="{materialization}",
                            description="Assets or dbt nodes materialized, by status.",
                        ),
                        meter.create_counter(
                            "floe.pipeline.errors", unit="{error}", description="Errors raised by pipeline components."
                        ),
                        meter.create_histogram(
                            "floe.pipeline.node.duration",
                            unit="s",
                            description="Duration of one pipeline node (dbt node, Dagster step).",
                        ),
                    )
                created = self._created
        return created

    def record_run(self, component: str, name: str, status: str, seconds: float) -> None:
        """Record one finished pipeline run."""
        self._instruments()[0].record(seconds, {COMPONENT: component, PIPELINE_NAME: name, PIPELINE_STATUS: status})

    def record_materialization(self, component: str, asset_key: str, status: str) -> None:
        """Count one asset/model materialization."""
        self._instruments()[1].add(1, {COMPONENT: component, ASSET_KEY: asset_key, MATERIALIZATION_STATUS: status})

    def record_error(self, component: str, error_type: str) -> None:
        """Count one error."""
        self._instruments()[2].add(1, {COMPONENT: component, ERROR_TYPE: error_type})

    def record_node(self, component: str, pipeline: str, node_type: str, status: str, seconds: float) -> None:
        """Record one finished node (dbt node, Dagster step): low-cardinality attributes only."""
        self._instruments()[3].record(
            seconds, {COMPONENT: component, PIPELINE_NAME: pipeline, NODE_TYPE: node_type, NODE_STATUS: status}
        )


@lru_cache(maxsize=1)
def _global_pipeline_metrics() -> PipelineMetrics:
    return PipelineMetrics()


def pipeline_metrics(meter_provider: metrics.MeterProvider | None = None) -> PipelineMetrics:
    """The process-wide instruments (created lazily, after the meter provider is installed), or new ones
    bound to ``meter_provider`` (an instrumentor's ``instrument(meter_provider=…)``)."""
    return _global_pipeline_metrics() if meter_provider is None else PipelineMetrics(meter_provider)
