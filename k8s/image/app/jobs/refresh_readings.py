"""Example floe batch job (the CronJob in k8s/workloads/cronjob.yaml): refresh sensor readings.

Plain Python with no telemetry set-up: under ``opentelemetry-instrument`` the floe distro configures
export, and the OpenTelemetry *API* calls below (no-ops without the distro) record one span per batch.
"""

from __future__ import annotations

import argparse
import logging
import random
import time

from opentelemetry import trace

log = logging.getLogger("floe.jobs.refresh_readings")
tracer = trace.get_tracer("floe.jobs.refresh_readings")


def refresh_batch(batch: int) -> int:
    """Pretend to load one batch of readings; returns the number of rows."""
    with tracer.start_as_current_span("refresh_batch") as span:
        rows = random.randint(100, 1000)
        time.sleep(0.01)
        span.set_attribute("floe.job.batch", batch)
        span.set_attribute("floe.job.rows", rows)
        log.info("refreshed batch %d (%d rows)", batch, rows)
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with tracer.start_as_current_span("refresh_readings"):
        total = sum(refresh_batch(i) for i in range(args.batches))
    log.info("refresh complete: %d rows in %d batches", total, args.batches)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
