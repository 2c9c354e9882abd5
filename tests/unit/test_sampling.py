"""Head sampling: parent-based ratio per mode and every override, checked on real sampling decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from floe_otel_distro.plan import Inputs, build_plan
from floe_otel_distro.sampling import build_sampler

N = 1000
# Trace ids whose low 64 bits (what TraceIdRatioBased compares) are spread evenly over the range.
TRACE_IDS = [(0x5EED << 64) | (i * (2**64 // N)) for i in range(N)]
PARENT_BASED = (
    "ParentBased{{root:{root},remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
    "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}}"
)


def ratio_based(ratio: float) -> str:
    """Description of the parent-based ratio sampler."""
    return PARENT_BASED.format(root=f"TraceIdRatioBased{{{ratio}}}")


def sampler_for(env: dict[str, str]) -> Sampler:
    """The sampler the distro builds for ``env``."""
    plan = build_plan(Inputs(env, compiled_default=None))
    return build_sampler(plan.sampler, plan.sampler_ratio)


def sampled_roots(sampler: Sampler) -> int:
    """How many of TRACE_IDS the sampler keeps as new root spans."""
    return sum(
        sampler.should_sample(None, tid, "root").decision is Decision.RECORD_AND_SAMPLE for tid in TRACE_IDS
    )


def parent(sampled: bool, remote: bool = True) -> Context:
    """A context whose current span is a parent with the given sampled flag."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    ctx = SpanContext(TRACE_IDS[-1], 0xABC, is_remote=remote, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(ctx))


@pytest.mark.parametrize(("mode", "ratio"), [("dev", 1.0), ("staging", 0.5), ("prod", 0.1)])
def test_mode_default_sampler(mode: str, ratio: float) -> None:
    """Each mode gets a parent-based trace-id ratio sampler with its ratio, and samples that share of roots."""
    sampler = sampler_for({"FLOE_MODE": mode})
    assert sampler.get_description() == PARENT_BASED.format(root=f"TraceIdRatioBased{{{ratio}}}")
    assert abs(sampled_roots(sampler) - ratio * N) <= 1


@pytest.mark.parametrize("mode", ["staging", "prod"])
def test_mode_sampler_follows_the_parent(mode: str) -> None:
    """A sampled parent keeps the child, an unsampled parent drops it, whatever the trace id."""
    sampler = sampler_for({"FLOE_MODE": mode})
    for remote in (True, False):
        kept = [sampler.should_sample(parent(True, remote), tid, "child").decision for tid in TRACE_IDS[::50]]
        dropped = [sampler.should_sample(parent(False, remote), tid, "child").decision for tid in TRACE_IDS[::50]]
        assert set(kept) == {Decision.RECORD_AND_SAMPLE}
        assert set(dropped) == {Decision.DROP}


def test_prod_keeps_low_trace_ids_and_drops_high_ones() -> None:
    """The ratio decision is deterministic on the trace id (so every service agrees)."""
    sampler = sampler_for({"FLOE_MODE": "prod"})
    assert sampler.should_sample(None, TRACE_IDS[0], "r").decision is Decision.RECORD_AND_SAMPLE
    assert sampler.should_sample(None, TRACE_IDS[99], "r").decision is Decision.RECORD_AND_SAMPLE
    assert sampler.should_sample(None, TRACE_IDS[101], "r").decision is Decision.DROP
    assert sampler.should_sample(None, TRACE_IDS[-1], "r").decision is Decision.DROP


@pytest.mark.parametrize(
    ("env", "description", "kept"),
    [
        ({"FLOE_MODE": "prod", "OTEL_TRACES_SAMPLER": "always_on"}, "AlwaysOnSampler", N),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, "AlwaysOffSampler", 0),
        ({"OTEL_TRACES_SAMPLER": "ALWAYS_OFF"}, "AlwaysOffSampler", 0),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            "TraceIdRatioBased{0.25}",
            250,
        ),
        ({"FLOE_MODE": "prod", "OTEL_TRACES_SAMPLER": "traceidratio"}, "TraceIdRatioBased{0.1}", 100),
        (
            {"FLOE_MODE": "prod", "OTEL_TRACES_SAMPLER": "parentbased_always_on"},
            PARENT_BASED.format(root="AlwaysOnSampler"),
            N,
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
            PARENT_BASED.format(root="AlwaysOffSampler"),
            0,
        ),
        (
            {"FLOE_MODE": "dev", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.3"},
            PARENT_BASED.format(root="TraceIdRatioBased{0.3}"),
            300,
        ),
        ({"FLOE_MODE": "dev", "OTEL_TRACES_SAMPLER_ARG": "0.2"}, ratio_based(0.2), 200),
        ({"FLOE_MODE": "prod", "FLOE_SAMPLING_RATIO": "0.75"}, ratio_based(0.75), 750),
        (
            {"FLOE_SAMPLING_RATIO": "0.75", "OTEL_TRACES_SAMPLER_ARG": "0.05"},
            PARENT_BASED.format(root="TraceIdRatioBased{0.05}"),
            50,
        ),
        ({"FLOE_SAMPLING_RATIO": "0"}, PARENT_BASED.format(root="TraceIdRatioBased{0.0}"), 0),
    ],
)
def test_sampler_overrides(env: dict[str, str], description: str, kept: int) -> None:
    """OTEL_TRACES_SAMPLER(_ARG) and FLOE_SAMPLING_RATIO override the mode default."""
    sampler = sampler_for(env)
    assert sampler.get_description() == description
    assert abs(sampled_roots(sampler) - kept) <= 1


def test_non_parent_based_ratio_ignores_the_parent() -> None:
    """traceidratio decides on the trace id alone, even under a sampled parent."""
    sampler = sampler_for({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    assert sampler.should_sample(parent(True), TRACE_IDS[-1], "child").decision is Decision.DROP
    assert sampler.should_sample(parent(False), TRACE_IDS[0], "child").decision is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(("with_floe_env", "ratio"), [(False, 0.3), (True, 0.6)])
def test_compiled_sampling_map(tmp_path: Path, with_floe_env: bool, ratio: float) -> None:
    """floe's sampling map (compiled artifacts) gives the mode's ratio; FLOE_SAMPLING_RATIO beats it."""
    compiled = tmp_path / "compiled_artifacts.json"
    telemetry = {"sampling": {"dev": 1.0, "staging": 0.5, "prod": 0.3}, "resource_attributes": {"floe_mode": "prod"}}
    compiled.write_text(json.dumps({"observability": {"telemetry": telemetry}}))
    env = {"FLOE_COMPILED_ARTIFACTS": str(compiled)}
    if with_floe_env:
        env["FLOE_SAMPLING_RATIO"] = "0.6"
    sampler = sampler_for(env)
    assert sampler.get_description() == PARENT_BASED.format(root=f"TraceIdRatioBased{{{ratio}}}")
    assert abs(sampled_roots(sampler) - ratio * N) <= 1


def test_sampler_arg_is_ignored_by_samplers_without_a_ratio() -> None:
    """OTEL_TRACES_SAMPLER_ARG is not read as a ratio (nor validated) for always_on; the plan warns that it is
    ignored (tests/unit/test_plan.py)."""
    sampler = sampler_for({"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "not-a-number"})
    assert sampler.get_description() == "AlwaysOnSampler"
