"""Settings: precedence of every layer, source_of(), headers, and every bad input as one ConfigError line."""

from __future__ import annotations

from pathlib import Path

import pytest

from floe_otel_distro.errors import ConfigError, redact_url
from floe_otel_distro.settings import FloeSettings, Mode, load_settings, parse_headers
from tests.unit.conftest import Examples, write_yaml

SECRET = "s3cr3t-t0ken-value"

SPEC_DOC = {
    "apiVersion": "floe.dev/v1",
    "kind": "FloeSpec",
    "metadata": {"name": "spec-product", "version": "2.0.0", "namespace": "spec-ns"},
    "observability": {"mode": "staging", "tracing": {"sampling_ratio": 0.2}, "logging": {"level": "DEBUG"}},
    "platform": {"manifest": "../platform/manifest.yaml"},
}
MANIFEST_DOC = {
    "apiVersion": "floe.dev/v1",
    "kind": "Manifest",
    "plugins": {
        "telemetry_backend": {
            "type": "otlp",
            "version": "1.0.0",
            "config": {"endpoint": "https://otlp.vendor.example:4318"},
            "connection_secret_ref": "otlp-credentials",
        }
    },
    "observability": {
        "mode": "prod",
        "namespace": "platform-ns",
        "tracing": {
            "enabled": True,
            "endpoint": "http://manifest-collector:4318",
            "protocol": "grpc",
            "sampling_ratio": 0.3,
        },
        "metrics": {"enabled": False},
        "logging": {"enabled": False, "level": "ERROR"},
    },
}


@pytest.fixture
def layered(tmp_path: Path) -> tuple[Path, Path]:
    """A spec and the manifest it references, each setting every field it can."""
    spec = write_yaml(tmp_path / "product" / "floe.yaml", SPEC_DOC)
    manifest = write_yaml(tmp_path / "platform" / "manifest.yaml", MANIFEST_DOC)
    return spec, manifest


def config_error(env: dict[str, str]) -> ConfigError:
    """The ConfigError load_settings raises for ``env``."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


# ------------------------------------------------------------------------------------------------
# defaults and the real example inputs
# ------------------------------------------------------------------------------------------------
def test_defaults_without_any_input() -> None:
    """With no env and no YAML every field has its default and source_of says 'default'."""
    resolved = load_settings({})
    s = resolved.settings
    assert s.mode is Mode.dev
    assert s.backend_name == "console"
    assert s.effective_sampling_ratio == 1.0
    assert s.effective_service_name == "unknown_service"
    assert s.protocol == "http/protobuf"
    assert s.signal_endpoint("traces") == "http://localhost:4318/v1/traces"
    assert s.export_headers() == {}
    assert (s.export_timeout, s.shutdown_timeout, s.log_level) == (10.0, 2.0, "INFO")
    assert (s.bsp_max_queue_size, s.bsp_max_export_batch_size, s.bsp_schedule_delay_ms) == (2048, 512, 5000)
    assert s.metric_export_interval_ms == 60000
    assert s.telemetry_active and not s.strict
    assert all(s.signal_enabled(sig) for sig in ("traces", "metrics", "logs"))
    assert {resolved.source_of(f) for f in FloeSettings.model_fields} == {"default"}


def test_example_spec_and_manifest(examples: Examples) -> None:
    """The real floe.yaml + manifest.yaml: product identity from the spec, tracing/logging from the manifest."""
    resolved = load_settings({"FLOE_SPEC": str(examples.spec)})
    s = resolved.settings
    manifest = examples.manifest.resolve()
    assert (s.product_name, s.product_version, s.namespace) == ("iot-telemetry", "1.0.0", "manufacturing")
    assert s.manifest_path == manifest
    assert s.endpoint == "http://floe-platform-otel:4317"
    assert s.collector_endpoint == "http://floe-platform-otel:4317"
    assert s.log_level == "INFO"
    assert s.enabled is True
    assert s.mode is Mode.dev
    assert s.backend_name == "console"
    assert resolved.source_of("product_name") == f"spec:{examples.spec} metadata.name"
    assert resolved.source_of("product_version") == f"spec:{examples.spec} metadata.version"
    assert resolved.source_of("namespace") == f"spec:{examples.spec} metadata.labels.domain"
    assert resolved.source_of("manifest_path") == f"spec:{examples.spec} platform.manifest"
    assert resolved.source_of("endpoint") == f"manifest:{manifest} observability.tracing.endpoint"
    assert resolved.source_of("log_level") == f"manifest:{manifest} observability.logging.level"
    assert resolved.source_of("spec_path") == "env:FLOE_SPEC"
    assert resolved.source_of("mode") == "default"


def test_example_jaeger_manifest_selects_the_plugin(examples: Examples) -> None:
    """manifest-jaeger.yaml: backend type, version pin, plugin config and secret ref are read."""
    resolved = load_settings({"FLOE_MANIFEST": str(examples.manifest_jaeger)})
    s = resolved.settings
    assert s.backend_name == "jaeger"
    assert s.backend_version == "1.0.0"
    assert s.backend_config == {"endpoint": "jaeger-collector.observability.svc:4317", "insecure": True}
    assert s.backend_secret_ref == "jaeger-credentials"
    assert s.endpoint == "http://otel-collector.observability.svc:4318"
    assert resolved.source_of("telemetry_backend") == (
        f"manifest:{examples.manifest_jaeger} plugins.telemetry_backend.type"
    )
    assert resolved.source_of("manifest_path") == "env:FLOE_MANIFEST"


def test_floe_manifest_env_beats_the_specs_platform_manifest(examples: Examples) -> None:
    """FLOE_MANIFEST replaces the manifest the spec points at."""
    resolved = load_settings({"FLOE_SPEC": str(examples.spec), "FLOE_MANIFEST": str(examples.manifest_jaeger)})
    assert resolved.settings.manifest_path == examples.manifest_jaeger
    assert resolved.settings.backend_name == "jaeger"
    assert resolved.settings.product_name == "iot-telemetry"


# ------------------------------------------------------------------------------------------------
# precedence: OTEL env → FLOE env → spec → manifest → mode default
# ------------------------------------------------------------------------------------------------
LADDER = [
    # field, env, load the spec?, expected value, expected source
    ("mode", {"FLOE_MODE": "dev"}, True, Mode.dev, "env:FLOE_MODE"),
    ("mode", {}, True, Mode.staging, "{spec} observability.mode"),
    ("mode", {}, False, Mode.prod, "{manifest} observability.mode"),
    ("mode", None, False, Mode.dev, "default"),
    ("namespace", {"FLOE_NAMESPACE": "env-ns"}, True, "env-ns", "env:FLOE_NAMESPACE"),
    ("namespace", {}, True, "spec-ns", "{spec} metadata.namespace"),
    ("namespace", {}, False, "platform-ns", "{manifest} observability.namespace"),
    ("namespace", None, False, None, "default"),
    ("log_level", {"FLOE_LOG_LEVEL": "warn"}, True, "WARNING", "env:FLOE_LOG_LEVEL"),
    ("log_level", {}, True, "DEBUG", "{spec} observability.logging.level"),
    ("log_level", {}, False, "ERROR", "{manifest} observability.logging.level"),
    ("log_level", None, False, "INFO", "default"),
    ("sampling_ratio", {"FLOE_SAMPLING_RATIO": "0.7"}, True, 0.7, "env:FLOE_SAMPLING_RATIO"),
    ("sampling_ratio", {}, True, 0.2, "{spec} observability.tracing.sampling_ratio"),
    ("sampling_ratio", {}, False, 0.3, "{manifest} observability.tracing.sampling_ratio"),
    ("sampling_ratio", None, False, None, "default"),
    (
        "endpoint",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-env:4318", "FLOE_OTLP_ENDPOINT": "http://floe-env:4318"},
        True,
        "http://otel-env:4318",
        "env:OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    ("endpoint", {"FLOE_OTLP_ENDPOINT": "http://f:4318"}, True, "http://f:4318", "env:FLOE_OTLP_ENDPOINT"),
    ("endpoint", {}, True, "http://manifest-collector:4318", "{manifest} observability.tracing.endpoint"),
    ("endpoint", None, False, None, "default"),
    (
        "protocol",
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "FLOE_OTLP_PROTOCOL": "http/protobuf"},
        True,
        "grpc",
        "env:OTEL_EXPORTER_OTLP_PROTOCOL",
    ),
    ("protocol", {"FLOE_OTLP_PROTOCOL": "http/protobuf"}, True, "http/protobuf", "env:FLOE_OTLP_PROTOCOL"),
    ("protocol", {}, True, "grpc", "{manifest} observability.tracing.protocol"),
    ("protocol", None, False, "http/protobuf", "default"),
    (
        "bsp_max_queue_size",
        {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "FLOE_BSP_MAX_QUEUE_SIZE": "200"},
        True,
        100,
        "env:OTEL_BSP_MAX_QUEUE_SIZE",
    ),
    ("bsp_max_queue_size", {"FLOE_BSP_MAX_QUEUE_SIZE": "200"}, True, 200, "env:FLOE_BSP_MAX_QUEUE_SIZE"),
    ("product_name", {}, True, "spec-product", "{spec} metadata.name"),
    ("product_version", {"FLOE_PRODUCT_VERSION": "3.1.4"}, True, "3.1.4", "env:FLOE_PRODUCT_VERSION"),
    ("telemetry_backend", {"FLOE_TELEMETRY_BACKEND": "Jaeger"}, True, "jaeger", "env:FLOE_TELEMETRY_BACKEND"),
    ("telemetry_backend", {}, True, "otlp", "{manifest} plugins.telemetry_backend.type"),
    ("backend_secret_ref", {}, True, "otlp-credentials", "{manifest} plugins.telemetry_backend.connection_secret_ref"),
    ("metrics_enabled", {"FLOE_METRICS_ENABLED": "true"}, True, True, "env:FLOE_METRICS_ENABLED"),
    ("metrics_enabled", {}, True, False, "{manifest} observability.metrics.enabled"),
    ("logs_enabled", {}, True, False, "{manifest} observability.logging.enabled"),
    ("enabled", {"FLOE_OTEL_ENABLED": "false"}, True, False, "env:FLOE_OTEL_ENABLED"),
    ("enabled", {}, True, True, "{manifest} observability.tracing.enabled"),
]


@pytest.mark.parametrize(("field", "env", "with_spec", "expected", "source"), LADDER)
def test_precedence_ladder(
    layered: tuple[Path, Path],
    field: str,
    env: dict[str, str] | None,
    with_spec: bool,
    expected: object,
    source: str,
) -> None:
    """Each layer beats the ones below it, and source_of() names the layer and key that won."""
    spec, manifest = layered
    environ: dict[str, str] = dict(env or {})
    if env is not None:  # None = no YAML at all (the mode default)
        environ["FLOE_SPEC" if with_spec else "FLOE_MANIFEST"] = str(spec if with_spec else manifest)
    resolved = load_settings(environ)
    assert getattr(resolved.settings, field) == expected
    manifest_label = f"manifest:{manifest.resolve() if with_spec else manifest}"
    assert resolved.source_of(field) == source.format(spec=f"spec:{spec}", manifest=manifest_label)


@pytest.mark.parametrize(
    ("env", "ratio"),
    [
        ({"FLOE_MODE": "dev"}, 1.0),
        ({"FLOE_MODE": "staging"}, 0.5),
        ({"FLOE_MODE": "prod"}, 0.1),
        ({"FLOE_MODE": "PROD "}, 0.1),
        ({"FLOE_MODE": "prod", "FLOE_SAMPLING_RATIO": "0.7"}, 0.7),
        ({"FLOE_MODE": "prod", "FLOE_SAMPLING_RATIO": "0.7", "OTEL_TRACES_SAMPLER_ARG": "0.9"}, 0.9),
        ({"FLOE_SAMPLING_RATIO": "0", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, 0.0),
        ({"FLOE_SAMPLING_RATIO": "0.4", "OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "0.9"}, 0.4),
    ],
)
def test_effective_sampling_ratio(env: dict[str, str], ratio: float) -> None:
    """Ratio: OTEL_TRACES_SAMPLER_ARG (ratio samplers only) → FLOE_SAMPLING_RATIO → mode default."""
    assert load_settings(env).settings.effective_sampling_ratio == ratio


def test_mode_picks_the_default_backend() -> None:
    """dev defaults to the console backend, staging and prod to otlp; FLOE_TELEMETRY_BACKEND overrides."""
    assert load_settings({"FLOE_MODE": "dev"}).settings.backend_name == "console"
    assert load_settings({"FLOE_MODE": "staging"}).settings.backend_name == "otlp"
    assert load_settings({"FLOE_MODE": "prod"}).settings.backend_name == "otlp"
    assert load_settings({"FLOE_MODE": "prod", "FLOE_TELEMETRY_BACKEND": "console"}).settings.backend_name == "console"


def test_otel_service_name_wins_over_the_product_name(examples: Examples) -> None:
    """OTEL_SERVICE_NAME is the service name; the product name stays the floe.product.name."""
    resolved = load_settings({"FLOE_SPEC": str(examples.spec), "OTEL_SERVICE_NAME": "ingest-worker"})
    s = resolved.settings
    assert s.effective_service_name == "ingest-worker"
    assert s.floe_attributes()["floe.product.name"] == "iot-telemetry"
    assert resolved.source_of("service_name") == "env:OTEL_SERVICE_NAME"
    assert load_settings({"FLOE_SPEC": str(examples.spec)}).settings.effective_service_name == "iot-telemetry"


def test_floe_attributes_defaults_and_values(examples: Examples) -> None:
    """The four floe attributes come from the spec, with defaults when nothing says otherwise."""
    assert load_settings({}).settings.floe_attributes() == {
        "floe.namespace": "default",
        "floe.product.name": "unknown_service",
        "floe.product.version": "unknown",
        "floe.mode": "dev",
    }
    assert load_settings({"FLOE_SPEC": str(examples.spec), "FLOE_MODE": "prod"}).settings.floe_attributes() == {
        "floe.namespace": "manufacturing",
        "floe.product.name": "iot-telemetry",
        "floe.product.version": "1.0.0",
        "floe.mode": "prod",
    }


def test_empty_env_values_are_ignored(layered: tuple[Path, Path]) -> None:
    """An empty variable (FLOE_MODE=) does not override the YAML layers."""
    spec, _ = layered
    resolved = load_settings({"FLOE_SPEC": str(spec), "FLOE_MODE": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert resolved.settings.mode is Mode.staging
    assert resolved.settings.endpoint == "http://manifest-collector:4318"
    assert resolved.source_of("mode") == f"spec:{spec} observability.mode"


# ------------------------------------------------------------------------------------------------
# endpoints, signals and headers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {},
            {
                "traces": "http://localhost:4318/v1/traces",
                "metrics": "http://localhost:4318/v1/metrics",
                "logs": "http://localhost:4318/v1/logs",
            },
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            {
                "traces": "http://collector:4318/v1/traces",
                "metrics": "http://collector:4318/v1/metrics",
                "logs": "http://collector:4318/v1/logs",
            },
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:443/custom/path",
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs.example:4318/v1/logs",
            },
            {
                "traces": "https://traces.example:443/custom/path",
                "metrics": "http://collector:4318/v1/metrics",
                "logs": "http://logs.example:4318/v1/logs",
            },
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            {"traces": "http://localhost:4317", "metrics": "http://localhost:4317", "logs": "http://localhost:4317"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "GRPC", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4317"},
            {"traces": "http://localhost:4317", "metrics": "http://m:4317", "logs": "http://localhost:4317"},
        ),
    ],
)
def test_signal_endpoints(env: dict[str, str], expected: dict[str, str]) -> None:
    """Per-signal OTEL endpoints are used verbatim; the base endpoint gets /v1/<signal> for HTTP only."""
    s = load_settings(env).settings
    assert {sig: s.signal_endpoint(sig) for sig in expected} == expected


def test_per_signal_endpoint_sources() -> None:
    """source_of() names the per-signal variable."""
    resolved = load_settings({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"})
    assert resolved.source_of("traces_endpoint") == "env:OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    assert resolved.source_of("metrics_endpoint") == "default"


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, {"traces": True, "metrics": True, "logs": True}),
        ({"OTEL_METRICS_EXPORTER": "none"}, {"traces": True, "metrics": False, "logs": True}),
        ({"OTEL_TRACES_EXPORTER": " None "}, {"traces": False, "metrics": True, "logs": True}),
        ({"FLOE_LOGS_ENABLED": "false"}, {"traces": True, "metrics": True, "logs": False}),
        ({"FLOE_TRACES_ENABLED": "0", "OTEL_LOGS_EXPORTER": "otlp"}, {"traces": False, "metrics": True, "logs": True}),
    ],
)
def test_signal_switches(env: dict[str, str], enabled: dict[str, bool]) -> None:
    """FLOE_<SIGNAL>_ENABLED and OTEL_<SIGNAL>_EXPORTER=none switch single signals off."""
    s = load_settings(env).settings
    assert {sig: s.signal_enabled(sig) for sig in enabled} == enabled


@pytest.mark.parametrize(
    ("env", "active"),
    [({}, True), ({"FLOE_OTEL_ENABLED": "false"}, False), ({"OTEL_SDK_DISABLED": "true"}, False)],
)
def test_telemetry_active(env: dict[str, str], active: bool) -> None:
    """OTEL_SDK_DISABLED=true or FLOE_OTEL_ENABLED=false switch everything off."""
    assert load_settings(env).settings.telemetry_active is active


def test_headers_from_otel_env_are_parsed_and_secret() -> None:
    """OTEL_EXPORTER_OTLP_HEADERS is parsed (URL-decoded, lower-case names) and never shown in repr."""
    resolved = load_settings(
        {"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Basic%20{SECRET}, X-Scope-OrgID = tenant-1"}
    )
    s = resolved.settings
    assert s.export_headers() == {"authorization": f"Basic {SECRET}", "x-scope-orgid": "tenant-1"}
    assert resolved.source_of("headers") == "env:OTEL_EXPORTER_OTLP_HEADERS"
    assert SECRET not in repr(s)
    assert SECRET not in str(s.model_dump())


def test_headers_otel_beats_floe() -> None:
    """OTEL_EXPORTER_OTLP_HEADERS wins over FLOE_OTLP_HEADERS."""
    resolved = load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "a=otel", "FLOE_OTLP_HEADERS": "a=floe"})
    assert resolved.settings.export_headers() == {"a": "otel"}
    assert resolved.source_of("headers") == "env:OTEL_EXPORTER_OTLP_HEADERS"
    resolved = load_settings({"FLOE_OTLP_HEADERS": "a=floe"})
    assert resolved.settings.export_headers() == {"a": "floe"}
    assert resolved.source_of("headers") == "env:FLOE_OTLP_HEADERS"


def test_headers_from_the_mounted_secret_file(tmp_path: Path) -> None:
    """FLOE_OTLP_HEADERS_FILE (one per line or comma-separated) is merged; the env variable wins per name."""
    secret_file = tmp_path / "otlp-headers"
    secret_file.write_text(f"authorization=Basic {SECRET}\nx-tenant=from-file\n\n")
    resolved = load_settings({"FLOE_OTLP_HEADERS_FILE": str(secret_file)})
    assert resolved.settings.export_headers() == {"authorization": f"Basic {SECRET}", "x-tenant": "from-file"}
    assert resolved.source_of("headers_file") == "env:FLOE_OTLP_HEADERS_FILE"
    both = load_settings({"FLOE_OTLP_HEADERS_FILE": str(secret_file), "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=env"})
    assert both.settings.export_headers() == {"authorization": f"Basic {SECRET}", "x-tenant": "env"}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("A=1,b=x%3Dy", {"a": "1", "b": "x=y"}),
        (" a = 1 ,, b=2 ", {"a": "1", "b": "2"}),
        ("a=1\nb=2", {"a": "1", "b": "2"}),
        ("a=", {"a": ""}),
    ],
)
def test_parse_headers(text: str, parsed: dict[str, str]) -> None:
    """Header strings parse as k=v pairs separated by commas or newlines."""
    assert parse_headers(text, source="X") == parsed


# ------------------------------------------------------------------------------------------------
# bad inputs: one line naming the variable/field, the value (unless secret) and the fix
# ------------------------------------------------------------------------------------------------
BAD_ENV = [
    # env, the variable named, a fragment of the fix
    ({"FLOE_MODE": "qa"}, "FLOE_MODE='qa'", "unknown mode; use one of dev, staging, prod"),
    ({"FLOE_MODE": "production"}, "FLOE_MODE='production'", "use one of dev, staging, prod"),
    (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "otel-collector:4318"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='otel-collector:4318'",
        "is not an http(s) URL; use e.g. http://otel-collector:4318",
    ),
    ({"FLOE_OTLP_ENDPOINT": "ftp://collector:21"}, "FLOE_OTLP_ENDPOINT=", "is not an http(s) URL"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT=", "is not an http(s) URL"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT=", "invalid port"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:port"}, "OTEL_EXPORTER_OTLP_ENDPOINT=", "invalid port"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "http(s) URL"),
    ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "grpc://m:4317"}, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=", "http(s)"),
    ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "logs:4318"}, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=", "http(s) URL"),
    ({"FLOE_SAMPLING_RATIO": "1.5"}, "FLOE_SAMPLING_RATIO='1.5'", "use a number from 0.0 to 1.0"),
    ({"FLOE_SAMPLING_RATIO": "-0.1"}, "FLOE_SAMPLING_RATIO='-0.1'", "use a number from 0.0 to 1.0"),
    ({"FLOE_SAMPLING_RATIO": "ten percent"}, "FLOE_SAMPLING_RATIO='ten percent'", "use a valid number"),
    ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG='2'", "use a number from 0.0 to 1.0"),
    ({"OTEL_TRACES_SAMPLER_ARG": "-1"}, "OTEL_TRACES_SAMPLER_ARG='-1'", "use a number from 0.0 to 1.0"),
    ({"OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG='half'", "use a number from 0.0 to 1.0"),
    (
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.01"},
        "OTEL_TRACES_SAMPLER_ARG='1.01'",
        "use a number from 0.0 to 1.0",
    ),
    (
        {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
        "OTEL_TRACES_SAMPLER='jaeger_remote'",
        "use one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, "
        "parentbased_traceidratio",
    ),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'", "'grpc' or"),
    ({"FLOE_OTLP_PROTOCOL": "thrift"}, "FLOE_OTLP_PROTOCOL='thrift'", "use 'grpc' or 'http/protobuf'"),
    ({"FLOE_OTEL_ENABLED": "maybe"}, "FLOE_OTEL_ENABLED='maybe'", "use a valid boolean"),
    ({"OTEL_SDK_DISABLED": "sometimes"}, "OTEL_SDK_DISABLED='sometimes'", "use a valid boolean"),
    ({"FLOE_EXPORT_TIMEOUT": "0"}, "FLOE_EXPORT_TIMEOUT='0'", "use a number greater than 0"),
    ({"FLOE_SHUTDOWN_TIMEOUT": "soon"}, "FLOE_SHUTDOWN_TIMEOUT='soon'", "use a valid number"),
    ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "OTEL_BSP_MAX_QUEUE_SIZE='lots'", "use a valid integer"),
    ({"FLOE_BSP_SCHEDULE_DELAY": "-5"}, "FLOE_BSP_SCHEDULE_DELAY='-5'", "use a number greater than 0"),
    ({"FLOE_LOG_LEVEL": "loud"}, "FLOE_LOG_LEVEL='LOUD'", "use 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
    (
        {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"},
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE='sometimes'",
        "use 'cumulative', 'delta' or 'lowmemory'",
    ),
    ({"FLOE_OTLP_HEADERS_FILE": "/nonexistent/otlp-headers"}, "FLOE_OTLP_HEADERS_FILE=", "mount the Secret"),
]


@pytest.mark.parametrize(("env", "where", "fix"), BAD_ENV)
def test_bad_env_value_is_one_line_naming_variable_and_fix(env: dict[str, str], where: str, fix: str) -> None:
    """A bad variable raises ConfigError whose single line names the variable, the value and the fix."""
    line = config_error(env).line()
    assert line.startswith(f"floe-otel: {where}")
    assert fix in line
    assert "\n" not in line


def test_bad_otel_value_is_reported_even_when_floe_value_is_fine() -> None:
    """The OTEL variable wins, so its bad value is the one reported."""
    line = config_error({"OTEL_EXPORTER_OTLP_ENDPOINT": "nope", "FLOE_OTLP_ENDPOINT": "http://ok:4318"}).line()
    assert line.startswith("floe-otel: OTEL_EXPORTER_OTLP_ENDPOINT='nope'")


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OTEL_EXPORTER_OTLP_HEADERS", SECRET),
        ("OTEL_EXPORTER_OTLP_HEADERS", f"={SECRET}"),
        ("OTEL_EXPORTER_OTLP_HEADERS", f"x-ok=1,{SECRET}"),
        ("FLOE_OTLP_HEADERS", f"Bearer {SECRET}"),
    ],
)
def test_bad_headers_never_show_the_value(var: str, value: str) -> None:
    """Malformed headers name the variable and the expected format, never the (secret) value."""
    error = config_error({var: value})
    line = error.line()
    assert line == f"floe-otel: {var}='<redacted>': headers must look like 'name=value,name2=value2'"
    assert SECRET not in str(error)
    assert SECRET not in repr(error.args)


def test_bad_headers_file_never_shows_the_content(tmp_path: Path) -> None:
    """A malformed FLOE_OTLP_HEADERS_FILE is reported by name; its content stays secret."""
    secret_file = tmp_path / "otlp-headers"
    secret_file.write_text(f"Basic {SECRET}\n")
    line = config_error({"FLOE_OTLP_HEADERS_FILE": str(secret_file)}).line()
    assert line.startswith("floe-otel: FLOE_OTLP_HEADERS_FILE='<redacted>': headers must look like")
    assert SECRET not in line


def test_unreadable_headers_file_is_a_config_error(tmp_path: Path) -> None:
    """A headers file that exists but cannot be read is a ConfigError, not a crash."""
    s = load_settings({}).settings.model_copy(update={"headers_file": tmp_path})
    with pytest.raises(ConfigError) as info:
        s.export_headers()
    assert info.value.line().startswith(f"floe-otel: FLOE_OTLP_HEADERS_FILE='{tmp_path}': cannot read the file")


@pytest.mark.parametrize(
    ("env", "password"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://bob:hunter2@:4318"}, "hunter2"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://bob:hunter2@collector:badport"}, "hunter2"),
        ({"FLOE_OTLP_ENDPOINT": "ftp://svc:pa55word@collector"}, "pa55word"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://token-only@:1"}, "token-only"),
    ],
)
def test_urls_with_passwords_are_redacted_in_errors(env: dict[str, str], password: str) -> None:
    """A malformed URL carrying credentials is shown with ***:*** instead of the user info."""
    line = config_error(env).line()
    assert password not in line
    assert "***:***@" in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://bob:hunter2@collector:4318", "http://***:***@collector:4318"),
        ("https://token@collector/v1/traces", "https://***:***@collector/v1/traces"),
        ("http://collector:4318/a@b", "http://collector:4318/a@b"),
        ("http://collector:4318", "http://collector:4318"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    """User info is replaced; '@' in the path is left alone."""
    assert redact_url(url) == shown


# --- YAML inputs ---------------------------------------------------------------------------------
def test_missing_spec_file(tmp_path: Path) -> None:
    """An unreadable FLOE_SPEC names the variable, the path and the fix."""
    path = tmp_path / "nope" / "floe.yaml"
    line = config_error({"FLOE_SPEC": str(path)}).line()
    assert line == f"floe-otel: FLOE_SPEC='{path}': cannot read the file (No such file or directory); fix the path"


def test_spec_path_is_a_directory(tmp_path: Path) -> None:
    """A directory given as FLOE_SPEC cannot be read."""
    line = config_error({"FLOE_SPEC": str(tmp_path)}).line()
    assert line.startswith(f"floe-otel: FLOE_SPEC='{tmp_path}': cannot read the file (")
    assert line.endswith("; fix the path")


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("metadata: [name: x\n", "invalid YAML at line 2; fix the file's syntax"),
        ("metadata:\n  name: x\n\tversion: 1\n", "invalid YAML at line 3; fix the file's syntax"),
        ("- a\n- b\n", "the YAML document must be a mapping"),
        ("just a string\n", "the YAML document must be a mapping"),
        ("", "the YAML document must be a mapping"),
    ],
)
@pytest.mark.parametrize("variable", ["FLOE_SPEC", "FLOE_MANIFEST"])
def test_invalid_yaml(tmp_path: Path, variable: str, text: str, fix: str) -> None:
    """Invalid YAML (spec or manifest) names the variable, the file and what to fix."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = config_error({variable: str(path)}).line()
    assert line == f"floe-otel: {variable}='{path}': {fix}"


def test_missing_manifest_referenced_by_the_spec(tmp_path: Path) -> None:
    """The spec's platform.manifest pointing nowhere names that field and the resolved path."""
    spec = write_yaml(tmp_path / "product" / "floe.yaml", {"platform": {"manifest": "../missing.yaml"}})
    line = config_error({"FLOE_SPEC": str(spec)}).line()
    resolved = (tmp_path / "missing.yaml").resolve()
    assert line.startswith(f"floe-otel: {spec}: platform.manifest='{resolved}': cannot read the file")
    assert line.endswith("fix the path")


def test_invalid_manifest_referenced_by_the_spec(tmp_path: Path) -> None:
    """Invalid YAML in the referenced manifest names the spec's platform.manifest."""
    spec = write_yaml(tmp_path / "product" / "floe.yaml", {"platform": {"manifest": "../manifest.yaml"}})
    (tmp_path / "manifest.yaml").write_text("observability: {tracing: \n")
    line = config_error({"FLOE_SPEC": str(spec)}).line()
    assert f"{spec}: platform.manifest=" in line
    assert "invalid YAML at line" in line
    assert line.endswith("fix the file's syntax")


@pytest.mark.parametrize(
    ("doc", "key", "fix"),
    [
        ({"observability": {"mode": "qa"}}, "observability.mode", "use one of dev, staging, prod"),
        ({"observability": {"tracing": {"sampling_ratio": 3}}}, "observability.tracing.sampling_ratio", "0.0 to 1.0"),
        ({"observability": {"logging": {"level": "chatty"}}}, "observability.logging.level", "use 'DEBUG'"),
    ],
)
def test_bad_value_in_the_spec_names_the_spec_key(tmp_path: Path, doc: dict[str, object], key: str, fix: str) -> None:
    """A bad value from floe.yaml is reported as spec:<path> <key>."""
    spec = write_yaml(tmp_path / "floe.yaml", doc)
    line = config_error({"FLOE_SPEC": str(spec)}).line()
    assert line.startswith(f"floe-otel: spec:{spec} {key}=")
    assert fix in line


@pytest.mark.parametrize(
    ("doc", "key", "fix"),
    [
        ({"observability": {"mode": "qa"}}, "observability.mode", "use one of dev, staging, prod"),
        ({"observability": {"tracing": {"endpoint": "collector:4318"}}}, "observability.tracing.endpoint", "http(s)"),
        ({"observability": {"tracing": {"protocol": "udp"}}}, "observability.tracing.protocol", "'grpc' or"),
        ({"observability": {"tracing": {"enabled": "perhaps"}}}, "observability.tracing.enabled", "valid boolean"),
        ({"observability": {"metrics": {"enabled": "perhaps"}}}, "observability.metrics.enabled", "valid boolean"),
        ({"observability": {"tracing": {"sampling_ratio": "x"}}}, "observability.tracing.sampling_ratio", "number"),
    ],
)
def test_bad_value_in_the_manifest_names_the_manifest_key(
    tmp_path: Path, doc: dict[str, object], key: str, fix: str
) -> None:
    """A bad value from manifest.yaml is reported as manifest:<path> <key>."""
    manifest = write_yaml(tmp_path / "manifest.yaml", doc)
    line = config_error({"FLOE_MANIFEST": str(manifest)}).line()
    assert line.startswith(f"floe-otel: manifest:{manifest} {key}=")
    assert fix in line


def test_manifest_endpoint_password_is_redacted(tmp_path: Path) -> None:
    """A bad manifest endpoint with credentials does not print the password."""
    manifest = write_yaml(
        tmp_path / "manifest.yaml", {"observability": {"tracing": {"endpoint": "http://ops:hunter2@collector:x"}}}
    )
    line = config_error({"FLOE_MANIFEST": str(manifest)}).line()
    assert "hunter2" not in line
    assert "***:***@collector:x" in line


def test_env_value_overrides_a_bad_yaml_value(tmp_path: Path) -> None:
    """A good env value wins over a bad YAML value, so nothing is reported."""
    manifest = write_yaml(tmp_path / "manifest.yaml", {"observability": {"mode": "qa"}})
    assert load_settings({"FLOE_MANIFEST": str(manifest), "FLOE_MODE": "prod"}).settings.mode is Mode.prod


def test_example_manifest_secrets_never_reach_settings(examples: Examples) -> None:
    """Unrelated plugin config in the manifest (a demo client secret) is not read into the settings."""
    s = load_settings({"FLOE_SPEC": str(examples.spec)}).settings
    assert "demo-secret" not in s.model_dump_json()
