"""Example Dagster code location (k8s/workloads/dagster.yaml): a small asset graph and a job over it.

No telemetry code: the floe distro's Dagster instrumentation traces runs and steps when the process
runs under ``opentelemetry-instrument``.
"""

from __future__ import annotations

import dagster as dg


@dg.asset
def raw_readings() -> list[float]:
    """Sensor readings as loaded from the source."""
    return [20.5, 21.0, 19.8, 35.2, 20.1]


@dg.asset
def reading_anomalies(raw_readings: list[float]) -> list[float]:
    """Readings more than 10 degrees away from the mean."""
    mean = sum(raw_readings) / len(raw_readings)
    return [r for r in raw_readings if abs(r - mean) > 10]


refresh_job = dg.define_asset_job("refresh_readings", selection=[raw_readings, reading_anomalies])

defs = dg.Definitions(assets=[raw_readings, reading_anomalies], jobs=[refresh_job])
