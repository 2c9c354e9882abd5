"""pydantic models of exactly the floe file keys the distro reads (manifest, floe.yaml, compiled artifacts).

They mirror floe-core 0.1.0a1's own models field by field (``floe_core.schemas.manifest``,
``floe_spec``, ``telemetry``): the same types, literals and patterns, so a value floe rejects is
rejected here too. Unlike floe's models they ignore every other key (floe-core validates the whole
document; the distro only reads its part) and every field is optional (a field that fails validation is
dropped alone, see :func:`validated`).

Imported only when a file is given: the env-only start path never imports pydantic.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["BaseModel", "Compiled", "Manifest", "Spec", "validated"]

SEMVER = r"^\d+\.\d+\.\d+$"  # floe_core.schemas.floe_spec.SEMVER_PATTERN
PRODUCT_NAME = r"^[a-z][a-z0-9-]*$"
PLUGIN_VERSION = r"^\d+\.\d+\.\d+$"  # floe_core.schemas.plugins.PluginSelection.version
MAX_PASSES = 32  # a document with more bad fields than this is ignored as a whole


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- manifest.yaml (floe_core.schemas.manifest / plugins) ---------------------------------------------------
class PluginSelection(_Part):
    """``plugins.telemetry_backend``: floe's object form (a bare name is accepted, see below)."""

    type: str = Field(min_length=1)
    version: str | None = Field(default=None, pattern=PLUGIN_VERSION)
    config: dict[str, Any] | None = None
    connection_secret_ref: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        # floe's quickstart writes ``telemetry_backend: jaeger``; floe's schema wants ``{type: jaeger}``
        return {"type": data} if isinstance(data, str) else data


class ManifestPlugins(_Part):
    telemetry_backend: PluginSelection | None = None


class TracingManifest(_Part):
    enabled: bool | None = None
    exporter: Literal["otlp", "console", "none"] | None = None
    endpoint: str | None = Field(default=None, pattern=r"^https?://")


class LoggingManifest(_Part):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    format: Literal["json", "text"] | None = None


class ObservabilityManifest(_Part):
    tracing: TracingManifest | None = None
    logging: LoggingManifest | None = None


class Manifest(_Part):
    """The manifest keys the distro reads."""

    plugins: ManifestPlugins | None = None
    observability: ObservabilityManifest | None = None


# --- floe.yaml (floe_core.schemas.floe_spec) ------------------------------------------------------------------
class SpecMetadata(_Part):
    name: str | None = Field(default=None, min_length=1, max_length=63, pattern=PRODUCT_NAME)
    version: str | None = Field(default=None, pattern=SEMVER)
    labels: dict[str, str] | None = None


class PlatformRef(_Part):
    manifest: str | None = Field(default=None, min_length=1)


class Spec(_Part):
    """The floe.yaml keys the distro reads."""

    metadata: SpecMetadata | None = None
    platform: PlatformRef | None = None


# --- compiled_artifacts.json (floe_core.schemas.compiled_artifacts / telemetry) -----------------------------
_ENVS = Literal["dev", "staging", "prod"]


class CompiledResource(_Part):
    service_name: str | None = Field(default=None, min_length=1, max_length=128)
    service_version: str | None = None
    deployment_environment: _ENVS | None = None
    floe_namespace: str | None = Field(default=None, min_length=1, max_length=128)
    floe_product_name: str | None = Field(default=None, min_length=1, max_length=128)
    floe_product_version: str | None = None
    floe_mode: _ENVS | None = None


class CompiledSampling(_Part):
    dev: float | None = Field(default=None, ge=0.0, le=1.0)
    staging: float | None = Field(default=None, ge=0.0, le=1.0)
    prod: float | None = Field(default=None, ge=0.0, le=1.0)


class CompiledAuth(_Part):
    auth_type: Literal["api_key", "bearer"]
    api_key: str | None = None
    bearer_token: str | None = None
    header_name: str = "Authorization"


class CompiledBatch(_Part):
    max_queue_size: int | None = Field(default=None, gt=0)
    max_export_batch_size: int | None = Field(default=None, gt=0)
    schedule_delay_millis: int | None = Field(default=None, gt=0)
    export_timeout_millis: int | None = Field(default=None, gt=0)


class CompiledLogging(_Part):
    log_level: str | None = Field(default=None, pattern=r"^(?i)(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    json_output: bool | None = None


class CompiledTelemetry(_Part):
    enabled: bool | None = None
    otlp_endpoint: str | None = None
    otlp_protocol: Literal["grpc", "http"] | None = None
    sampling: CompiledSampling | None = None
    resource_attributes: CompiledResource | None = None
    authentication: CompiledAuth | None = None
    batch_processor: CompiledBatch | None = None
    logging: CompiledLogging | None = None
    backend: str | None = Field(default=None, min_length=1)


class CompiledObservability(_Part):
    telemetry: CompiledTelemetry | None = None


class Compiled(_Part):
    """The ``compiled_artifacts.json`` keys the distro reads (``observability.telemetry``)."""

    observability: CompiledObservability | None = None


# --- validation ------------------------------------------------------------------------------------------------
def _drop(doc: Any, loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """Delete the deepest key of ``loc`` present in ``doc``; return its path (union tags are not keys)."""
    node: Any = doc
    parent: Any = None
    path: list[str] = []
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if (isinstance(node, dict) and part in node) or in_list:
            path.append(str(part))
            parent, node = node, node[part]
        else:
            break
    if not path:
        return ()
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent.pop(int(path[-1]))
    return tuple(path)


def validated(model: type[BaseModel], doc: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``doc`` with every field ``model`` rejects removed, as plain data, and (key, reason) per removed field.

    A field that fails validation is ignored alone; the rest of the document is used.
    """
    data = copy.deepcopy(doc)
    dropped: list[tuple[str, str]] = []
    for _ in range(MAX_PASSES):
        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            removed = False
            for error in exc.errors(include_url=False, include_input=False):
                path = _drop(data, tuple(error["loc"]))
                if path:
                    removed = True
                    dropped.append((".".join(path), str(error["msg"])))
            if not removed:
                return {}, [*dropped, ("(document)", "does not match floe's schema")]
            continue
        return parsed.model_dump(exclude_none=True), list(dict.fromkeys(dropped))
    return {}, [*dropped, ("(document)", "too many invalid fields")]
