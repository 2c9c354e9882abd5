"""The process's Resource, built by the SDK's resource detectors plus two of floe's (entry points).

``Resource.create()`` runs the detectors named by ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS`` (the plan
defaults it to ``floe,floe_process,host,os``); the SDK adds ``service_instance`` first and ``otel`` last,
so ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` win over everything floe sets.

- ``floe``: the plan's attributes (service.*, deployment.environment, the four floe.* keys);
- ``floe_process``: pid, parent pid, runtime and executable name — not the command line, which may hold
  secrets (the SDK's own ``process`` detector reports it). It is process-dependent, so the SDK re-runs it
  in a forked child and the child's telemetry carries its own ``process.pid``.
Only cheap, local facts: no network, no cloud metadata calls.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry.sdk.resources import Resource, ResourceDetector

DISTRO_NAME = "floe-otel-distro"

_attributes: Mapping[str, str] = MappingProxyType({})


def use(attributes: Mapping[str, str]) -> None:
    """Set what the ``floe`` detector reports (the installer calls this with the plan's resource)."""
    global _attributes
    _attributes = MappingProxyType(dict(attributes))


class FloeResourceDetector(ResourceDetector):
    """The plan's floe attributes, plus the distro's own name and version."""

    def detect(self) -> Resource:
        from floe_otel_distro import __version__

        return Resource({**_attributes, "telemetry.distro.name": DISTRO_NAME, "telemetry.distro.version": __version__})


class FloeProcessResourceDetector(ResourceDetector):
    """Process facts without the command line (see the module docstring)."""

    def is_process_dependent(self) -> bool:
        return True

    def detect(self) -> Resource:
        return Resource(
            {
                "process.pid": os.getpid(),
                "process.parent_pid": os.getppid(),
                "process.runtime.name": sys.implementation.name,
                "process.runtime.version": platform.python_version(),
                "process.executable.name": os.path.basename(sys.executable),
            }
        )


def build_resource(attributes: Mapping[str, str], detectors: tuple[str, ...]) -> Resource:
    """The SDK Resource for this process: the detectors, with ``attributes`` behind the ``floe`` one.

    The default list is built from instances directly (the SDK would scan entry points once per name,
    ~6 ms each); any other list goes through ``Resource.create``, exactly as the SDK handles it.
    """
    use(attributes)
    from floe_otel_distro.plan import DEFAULT_DETECTORS

    if detectors != DEFAULT_DETECTORS:
        return Resource.create()
    from opentelemetry.sdk.resources import (
        OsResourceDetector,
        OTELResourceDetector,
        ServiceInstanceIdResourceDetector,
        _HostResourceDetector,
        get_aggregated_resources,
    )

    return get_aggregated_resources(
        [
            ServiceInstanceIdResourceDetector(),
            FloeResourceDetector(),
            FloeProcessResourceDetector(),
            _HostResourceDetector(),
            OsResourceDetector(),
            OTELResourceDetector(),
        ]
    )
