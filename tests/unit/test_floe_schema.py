"""(f) What the distro documents and reads of floe's files is what floe-core's own schema accepts.

- every manifest / floe.yaml example in ``docs/`` and ``tests/data/examples`` validates with floe-core's
  ``PlatformManifest`` / ``FloeSpec`` (a fragment is merged into a minimal valid document first);
- ``floe_otel_distro.schema`` gives floe-core's verdict, value by value, for every key it reads;
- the keys the distro stopped reading are rejected by floe-core (the field notes, verified).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from floe_core.schemas.compiled_artifacts import ObservabilityConfig
from floe_core.schemas.floe_spec import FloeSpec
from floe_core.schemas.manifest import PlatformManifest
from pydantic import ValidationError

from floe_otel_distro import plan, schema

REPO = Path(__file__).resolve().parents[2]
BASE_MANIFEST: dict[str, Any] = {
    "apiVersion": "floe.dev/v1",
    "kind": "Manifest",
    "metadata": {"name": "p", "version": "1.0.0", "owner": "o@example.com"},
    "plugins": {"compute": {"type": "duckdb"}},
}
BASE_SPEC: dict[str, Any] = {
    "apiVersion": "floe.dev/v1",
    "kind": "FloeSpec",
    "metadata": {"name": "orders", "version": "1.0.0"},
    "transforms": [{"name": "stg_orders"}],
}
BASE_TELEMETRY: dict[str, Any] = {
    "resource_attributes": {
        "service_name": "orders",
        "service_version": "1.0.0",
        "deployment_environment": "dev",
        "floe_namespace": "default",
        "floe_product_name": "orders",
        "floe_product_version": "1.0.0",
        "floe_mode": "dev",
    }
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _documented() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]:
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", path.read_text(), re.S)):
            doc = yaml.safe_load(block)
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            if kind in ("Manifest", "FloeSpec") or {"plugins", "observability"} & set(doc):
                found.append((f"{path.name}#{i}", doc))
    for path in sorted((REPO / "tests" / "data" / "examples").glob("*.yaml")):
        found.append((f"examples/{path.name}", yaml.safe_load(path.read_text())))
    return found


DOCUMENTED = _documented()


def test_the_docs_have_floe_examples() -> None:
    names = [name for name, _ in DOCUMENTED]
    assert any(n.startswith("floe.md") for n in names) and any(n.startswith("configuration.md") for n in names)
    assert len(DOCUMENTED) >= 7


@pytest.mark.parametrize(("name", "doc"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_documented_example_is_valid_for_floe_core(name: str, doc: dict[str, Any]) -> None:
    """floe-core's own models accept every example (fragments inside a minimal document)."""
    if doc.get("kind") == "FloeSpec" or "transforms" in doc:
        FloeSpec.model_validate(_merge(BASE_SPEC, doc))
    else:
        PlatformManifest.model_validate(_merge(BASE_MANIFEST, doc))
    # and the distro reads all of it without a problem
    model = schema.Spec if doc.get("kind") == "FloeSpec" else schema.Manifest
    assert schema.validated(model, doc)[1] == []


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def _floe_accepts(kind: str, doc: dict[str, Any]) -> bool:
    try:
        if kind == "manifest":
            PlatformManifest.model_validate(doc)
        elif kind == "spec":
            FloeSpec.model_validate(doc)
        else:
            ObservabilityConfig.model_validate(doc["observability"])
    except ValidationError:
        return False
    return True


TELEMETRY = ("observability", "telemetry")
PARITY: list[tuple[str, tuple[str, ...], list[Any]]] = [
    ("manifest", ("observability", "tracing", "exporter"), ["otlp", "console", "none", "jaeger"]),
    ("manifest", ("observability", "tracing", "enabled"), [True, False, "maybe"]),
    ("manifest", ("observability", "tracing", "endpoint"), ["http://otel:4317", "https://x:443", "otel:4317"]),
    ("manifest", ("observability", "logging", "level"), ["INFO", "WARNING", "info", "TRACE"]),
    ("manifest", ("observability", "logging", "format"), ["json", "text", "xml"]),
    ("manifest", ("plugins", "telemetry_backend", "type"), ["jaeger", ""]),
    ("manifest", ("plugins", "telemetry_backend", "version"), ["1.0.0", "latest", "1.0"]),
    ("manifest", ("plugins", "telemetry_backend", "config"), [{"endpoint": "x"}, "endpoint=x"]),
    ("spec", ("metadata", "name"), ["orders", "Orders", "9orders"]),
    ("spec", ("metadata", "version"), ["2.1.0", "v2", "2.1.0-rc1"]),
    ("spec", ("metadata", "labels"), [{"domain": "sales"}, {"domain": 3}]),
    ("spec", ("platform", "manifest"), ["./manifest.yaml", "oci://r/p:1", ""]),
    ("compiled", (*TELEMETRY, "otlp_protocol"), ["grpc", "http", "tcp"]),
    ("compiled", (*TELEMETRY, "enabled"), [True, "sometimes"]),
    ("compiled", (*TELEMETRY, "sampling", "prod"), [0.1, 1.0, 2.0, -0.5]),
    ("compiled", (*TELEMETRY, "resource_attributes", "floe_mode"), ["prod", "production"]),
    ("compiled", (*TELEMETRY, "resource_attributes", "service_name"), ["orders", ""]),
    ("compiled", (*TELEMETRY, "batch_processor", "max_queue_size"), [2048, 0]),
    ("compiled", (*TELEMETRY, "logging", "log_level"), ["INFO", "debug", "TRACE"]),
    ("compiled", (*TELEMETRY, "authentication"), [{"auth_type": "bearer", "bearer_token": "t"}, {"auth_type": "x"}]),
]
BASES = {
    "manifest": BASE_MANIFEST,
    "spec": BASE_SPEC,
    "compiled": {"observability": {"telemetry": BASE_TELEMETRY, "lineage_namespace": "orders"}},
}
MODELS = {"manifest": schema.Manifest, "spec": schema.Spec, "compiled": schema.Compiled}


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [(k, p, v) for k, p, values in PARITY for v in values],
    ids=[f"{k}:{'.'.join(p)}={v!r}" for k, p, values in PARITY for v in values],
)
def test_the_distro_schema_agrees_with_floe_core(kind: str, path: tuple[str, ...], value: Any) -> None:
    """A value floe-core rejects is a problem here too (and that key alone is dropped); one it accepts is read."""
    doc = _set(BASES[kind], path, value)
    data, dropped = schema.validated(MODELS[kind], doc)
    assert (not dropped) == _floe_accepts(kind, doc), (dropped, data)
    if dropped:
        assert dropped[0][0].startswith(".".join(path[: len(path) - 1]))


REJECTED = [("manifest", key) for key, _ in plan._REJECTED_MANIFEST_KEYS] + [
    ("spec", key) for key, _ in plan._REJECTED_SPEC_KEYS
]


@pytest.mark.parametrize(("kind", "key"), REJECTED, ids=[f"{k}:{'.'.join(p)}" for k, p in REJECTED])
def test_keys_the_distro_no_longer_reads_are_rejected_by_floe_core(kind: str, key: tuple[str, ...]) -> None:
    doc = _set(BASES[kind], key, {"mode": "prod"} if key == ("observability",) else "x")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        (PlatformManifest if kind == "manifest" else FloeSpec).model_validate(doc)


def test_every_file_key_the_plan_reads_is_in_the_schema() -> None:
    """The plan's key tables name only fields schema.py (i.e. floe's schema) defines."""
    for keys, model in (
        (plan._SPEC_KEYS, schema.Spec),
        (plan._MANIFEST_KEYS, schema.Manifest),
        (plan._COMPILED_KEYS, schema.Compiled),
    ):
        for path, _setting in keys:
            current: Any = model
            for part in path:
                field = current.model_fields[part]
                annotation = field.annotation
                args = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
                current = next((a for a in args if isinstance(a, type) and hasattr(a, "model_fields")), None)
                if current is None:
                    break
