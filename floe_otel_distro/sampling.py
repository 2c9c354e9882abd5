"""Head sampling per floe mode: parent-based trace-id ratio (dev 100 %, staging 50 %, prod 10 %).

``OTEL_TRACES_SAMPLER`` (+ ``_ARG``) wins; then ``FLOE_SAMPLING_RATIO`` / the manifest's
``observability.tracing.sampling_ratio``; then the mode default (see ``SettingsView``).
"""

from __future__ import annotations

from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from floe_otel_distro._settings_core import SettingsView


def build_sampler(settings: SettingsView) -> Sampler:
    """The sampler these settings ask for."""
    name = settings.sampler or "parentbased_traceidratio"
    ratio = settings.effective_sampling_ratio
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
