"""The dbt overhead benchmark's statistics: the bootstrap interval, the verdict, the CPU pinning spec."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import dbt_overhead


def test_the_interval_holds_the_median_and_narrows_with_more_rounds() -> None:
    few = [1.00, 1.10, 0.95, 1.05, 1.02, 0.98, 1.20]
    low, high = dbt_overhead._interval(few)
    assert low <= sorted(few)[3] <= high
    assert low >= min(few) and high <= max(few)
    many_low, many_high = dbt_overhead._interval(few * 8)
    assert many_high - many_low < high - low


def test_the_interval_is_the_same_on_every_run() -> None:
    ratios = [1.01, 0.97, 1.04, 1.12, 0.99, 1.03]
    assert dbt_overhead._interval(ratios) == dbt_overhead._interval(list(ratios))


def test_identical_ratios_have_no_spread() -> None:
    assert dbt_overhead._interval([1.03] * 9) == (1.03, 1.03)


@pytest.mark.parametrize(
    ("point", "low", "high", "verdict"),
    [
        (1.01, 0.99, 1.019, "OK"),
        (1.03, 1.021, 1.04, "OVER"),
        (1.01, 0.98, 1.05, "OK (within noise: the interval straddles the target)"),
        (1.03, 0.98, 1.05, "OVER (within noise: the interval straddles the target)"),
    ],
)
def test_the_verdict_says_when_the_noise_decides(point: float, low: float, high: float, verdict: str) -> None:
    assert dbt_overhead._verdict(point, low, high, 1.02) == verdict


def test_cpu_specs() -> None:
    available = sorted(os.sched_getaffinity(0))
    assert dbt_overhead._cpu_sets("all") == (None, None)
    builds, rest = dbt_overhead._cpu_sets("last")
    assert builds == {available[-1]}
    assert rest == (set(available[:-1]) or None)
    assert dbt_overhead._cpu_sets(",".join(map(str, available))) == (set(available), None)


def test_an_unknown_variant_is_refused_rather_than_skipped() -> None:
    assert dbt_overhead._variant_names("prod, full") == ["prod", "full"]
    for bad in ("prd", "prod,fulll", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            dbt_overhead._variant_names(bad)
