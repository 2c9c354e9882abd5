"""The process Resource: service.*, deployment, floe.*, process/host, operator vars and their precedence."""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.resources import Resource

from floe_otel_distro.resource import (
    DISTRO_NAME,
    build_resource,
    parse_resource_attributes,
    process_attributes,
    resource_attributes,
)
from floe_otel_distro.settings import load_settings
from tests.unit.conftest import Examples


def attrs_for(env: dict[str, str]) -> dict[str, str | int]:
    """Resource attributes for settings loaded from ``env`` (and the same env for operator vars)."""
    return resource_attributes(load_settings(env).settings, env)


def test_example_spec_resource(examples: Examples) -> None:
    """The example product gives service.*, deployment.environment.name, the four floe.* and process.pid."""
    attrs = attrs_for({"FLOE_SPEC": str(examples.spec)})
    assert attrs["service.name"] == "iot-telemetry"
    assert attrs["service.version"] == "1.0.0"
    assert attrs["service.namespace"] == "manufacturing"
    assert attrs["deployment.environment.name"] == "dev"
    assert {k: attrs[k] for k in ("floe.namespace", "floe.product.name", "floe.product.version", "floe.mode")} == {
        "floe.namespace": "manufacturing",
        "floe.product.name": "iot-telemetry",
        "floe.product.version": "1.0.0",
        "floe.mode": "dev",
    }
    assert attrs["process.pid"] == os.getpid()
    assert attrs["telemetry.distro.name"] == DISTRO_NAME
    assert attrs["telemetry.sdk.language"] == "python"
    assert attrs["service.instance.id"]


def test_resource_without_a_spec_uses_defaults() -> None:
    """No product: unknown_service, default namespace, unknown version, no service.version/namespace."""
    attrs = attrs_for({})
    assert attrs["service.name"] == "unknown_service"
    assert attrs["floe.namespace"] == "default"
    assert attrs["floe.product.version"] == "unknown"
    assert "service.version" not in attrs
    assert "service.namespace" not in attrs


@pytest.mark.parametrize("mode", ["dev", "staging", "prod"])
def test_mode_is_the_deployment_environment(mode: str) -> None:
    """FLOE_MODE becomes deployment.environment.name and floe.mode."""
    attrs = attrs_for({"FLOE_MODE": mode})
    assert attrs["deployment.environment.name"] == mode
    assert attrs["floe.mode"] == mode


def test_otel_service_name_wins(examples: Examples) -> None:
    """OTEL_SERVICE_NAME is service.name, over the product name and over OTEL_RESOURCE_ATTRIBUTES."""
    attrs = attrs_for(
        {
            "FLOE_SPEC": str(examples.spec),
            "OTEL_SERVICE_NAME": "sensor-ingest",
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs",
        }
    )
    assert attrs["service.name"] == "sensor-ingest"
    assert attrs["floe.product.name"] == "iot-telemetry"


def test_otel_resource_attributes_win(examples: Examples) -> None:
    """OTEL_RESOURCE_ATTRIBUTES overrides floe, deployment and operator attributes and adds its own."""
    attrs = attrs_for(
        {
            "FLOE_SPEC": str(examples.spec),
            "OTEL_RESOURCE_ATTRIBUTES": (
                "deployment.environment.name=qa-cluster,floe.namespace=override,team=data%20eng,k8s.pod.name=p2"
            ),
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": "p1",
        }
    )
    assert attrs["deployment.environment.name"] == "qa-cluster"
    assert attrs["floe.namespace"] == "override"
    assert attrs["team"] == "data eng"
    assert attrs["k8s.pod.name"] == "p2"
    assert attrs["service.name"] == "iot-telemetry"


def test_operator_downward_api_variables() -> None:
    """The OTel Operator's Downward-API variables become k8s.* attributes."""
    attrs = attrs_for(
        {
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": "ingest-7d9f-abc",
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME": "node-3",
            "OTEL_RESOURCE_ATTRIBUTES_POD_UID": "0b5f-uid",
        }
    )
    assert (attrs["k8s.pod.name"], attrs["k8s.node.name"], attrs["k8s.pod.uid"]) == (
        "ingest-7d9f-abc",
        "node-3",
        "0b5f-uid",
    )
    assert not any(k.startswith("k8s.") for k in attrs_for({}))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (None, {}),
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1,b=x%2Cy", {"a": "1", "b": "x,y"}),
        (" a = 1 , =nokey, novalue, c=3", {"a": "1", "c": "3"}),
        ("a=1=2", {"a": "1=2"}),
    ],
)
def test_parse_resource_attributes(text: str | None, parsed: dict[str, str]) -> None:
    """k=v pairs, percent-decoded values; malformed items are skipped."""
    assert parse_resource_attributes(text) == parsed


def test_process_attributes_leave_out_the_command_line() -> None:
    """Process facts include the pid but never the command line (it may hold secrets)."""
    attrs = process_attributes()
    assert attrs["process.pid"] == os.getpid()
    assert not any("command" in k or "args" in k for k in attrs)


def test_build_resource(examples: Examples) -> None:
    """build_resource returns an SDK Resource with the same attributes."""
    env = {"FLOE_SPEC": str(examples.spec), "FLOE_MODE": "prod"}
    resource = build_resource(load_settings(env).settings, env)
    assert isinstance(resource, Resource)
    assert resource.attributes["service.name"] == "iot-telemetry"
    assert resource.attributes["floe.mode"] == "prod"
    assert resource.attributes["process.pid"] == os.getpid()
