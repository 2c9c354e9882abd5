"""Head sampling per floe mode: parent-based trace-id ratio (dev 100 %, staging 50 %, prod 10 %).

``OTEL_TRACES_SAMPLER`` (+ ``_ARG``) wins; then ``FLOE_SAMPLING_RATIO`` / the manifest's
``observability.tracing.sampling_ratio``; then the mode default (decided by the plan).
"""

from __future__ import annotations

from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)


def build_sampler(name: str, ratio: float | None) -> Sampler:
    """The sampler the plan names (``ratio`` for the ratio-based ones)."""
    ratio = 1.0 if ratio is None else ratio
    if name == "always_on":
        return ALWAYS_ON
    if name == "always_off":
        return ALWAYS_OFF
    if name == "traceidratio":
        return TraceIdRatioBased(ratio)
    if name == "parentbased_always_on":
        return ParentBased(ALWAYS_ON)
    if name == "parentbased_always_off":
        return ParentBased(ALWAYS_OFF)
    return ParentBased(TraceIdRatioBased(ratio))
