"""The process's Resource: service.*, deployment, the four floe.* attributes, process/host and k8s.

Precedence (weakest first): SDK defaults → floe/settings attributes → process/host → operator
Downward-API variables (``OTEL_RESOURCE_ATTRIBUTES_POD_NAME`` …) → ``OTEL_RESOURCE_ATTRIBUTES`` →
``OTEL_SERVICE_NAME``. Only cheap, local facts are read: no network, no cloud metadata calls.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import uuid
from collections.abc import Mapping
from urllib.parse import unquote

from opentelemetry.sdk.resources import Resource

from floe_otel_distro._settings_core import SettingsView

DISTRO_NAME = "floe-otel-distro"

# The OTel Operator's Downward-API variables (see docs/kubernetes.md).
_OPERATOR_VARS = {
    "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": "k8s.pod.name",
    "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME": "k8s.node.name",
    "OTEL_RESOURCE_ATTRIBUTES_POD_UID": "k8s.pod.uid",
}


def parse_resource_attributes(text: str | None) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, percent-encoded values); bad items are skipped."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def process_attributes() -> dict[str, str | int]:
    """Process and host facts that cost nothing to read. Command-line args are left out: they may hold secrets."""
    return {
        "process.pid": os.getpid(),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        "process.executable.name": os.path.basename(sys.executable),
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
        "os.type": sys.platform,
    }


def resource_attributes(settings: SettingsView, environ: Mapping[str, str]) -> dict[str, str | int]:
    """Every attribute of the resource, precedence applied (see module docstring)."""
    from opentelemetry.sdk.version import __version__ as sdk_version

    from floe_otel_distro import __version__

    attrs: dict[str, str | int] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "telemetry.distro.name": DISTRO_NAME,
        "telemetry.distro.version": __version__,
        "service.name": settings.product_name or "unknown_service",
        "service.instance.id": str(uuid.uuid4()),
        "deployment.environment.name": settings.mode.value,
    }
    if settings.product_version:
        attrs["service.version"] = settings.product_version
    if settings.namespace:
        attrs["service.namespace"] = settings.namespace
    attrs.update(settings.floe_attributes())
    attrs.update(process_attributes())
    for var, key in _OPERATOR_VARS.items():
        if environ.get(var):
            attrs[key] = environ[var]
    attrs.update(parse_resource_attributes(settings.resource_attributes))
    if settings.service_name:
        attrs["service.name"] = settings.service_name
    return attrs


def build_resource(settings: SettingsView, environ: Mapping[str, str]) -> Resource:
    """The SDK Resource for this process."""
    return Resource(resource_attributes(settings, environ))
