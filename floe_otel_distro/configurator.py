"""The ``opentelemetry_configurator`` entry point ``floe``: hands the plan to the installer.

Deliberately not a subclass of the SDK's ``_BaseConfigurator``: importing ``opentelemetry.sdk._configuration``
pulls in every exporter hook of the SDK's own auto-configuration (~50 ms at start-up) that floe does not use.
"""

from __future__ import annotations

from typing import Any

from floe_otel_distro import _state


class FloeConfigurator:
    """floe's configurator (thin: the installer does the work, the plan decided it)."""

    def configure(self, **kwargs: Any) -> None:
        """Install the plan (called once by ``opentelemetry-instrument``)."""
        from floe_otel_distro.distro import make_plan
        from floe_otel_distro.installer import install

        state = _state.STATE
        if state.attempted:
            return
        plan = make_plan()
        state.attempted = True
        state.installed = install(plan)
