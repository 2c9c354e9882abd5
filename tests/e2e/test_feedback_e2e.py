"""End to end: telemetry never feeds on itself (issue 9, "no feedback") and never raises into the app."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.collector import Collector
from tests.support.run import instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
APP = str(Path(__file__).parent / "apps" / "feedback_app.py")


def _run(collector: Collector, mode: str, **extra: str) -> tuple[str, Counter[str], int]:
    env = instrumented_env(
        collector.http_endpoint,
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_BLRP_SCHEDULE_DELAY="100",
        **extra,
    )
    proc = run_instrumented([sys.executable, APP, mode], env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "feedback_app done"
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    time.sleep(1.0)
    return proc.stderr, Counter(s["name"] for s in collector.spans()), len(collector.logs())


def test_an_app_handler_that_opens_spans_does_not_loop(collector: Collector) -> None:
    """One app record → one span; the exporters' own transport records never become spans."""
    _, spans, _ = _run(collector, "loop")
    assert spans == Counter({"log app": 1})


def test_attribute_limit_of_one_with_debug_logging_runs_clean(collector: Collector) -> None:
    """OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=1: the SDK's truncation warnings are not exported (no recursion)."""
    _, spans, logs = _run(collector, "limit", OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="1")
    assert spans == Counter({"work": 20})
    assert logs == 20  # the app's 20 warnings, none of the SDK's


def test_an_idle_debug_process_exports_only_its_own_record(collector: Collector) -> None:
    """DEBUG logging and an idle process: the one app record is exported, no export chatter after it."""
    _, spans, logs = _run(collector, "idle")
    assert logs == 1
    assert spans == Counter()
