"""Backend plugins: entry-point discovery, API-version and version-pin checks, the four shipped backends."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, ClassVar

import pytest

from configurators.console import ConsoleBackend, ConsoleTreeExporter
from configurators.grafana_cloud import GrafanaCloudBackend
from configurators.jaeger import JaegerBackend
from configurators.otlp import OtlpBackend
from floe_otel_distro import backends
from floe_otel_distro.backends import (
    FLOE_API_VERSION,
    PluginMetadata,
    TelemetryBackendPlugin,
    installed_backends,
    load_backend,
)
from floe_otel_distro.errors import ConfigError
from floe_otel_distro.exporters import LazyLogExporter, LazyMetricExporter, LazySpanExporter
from floe_otel_distro.settings import FloeSettings, load_settings
from tests.unit.conftest import Examples, write_yaml

SHIPPED = ["console", "grafana-cloud", "jaeger", "otlp"]
GRAFANA_ENDPOINT = "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp"


def settings_for(tmp_path: Path, backend: dict[str, Any], **env: str) -> FloeSettings:
    """Settings whose manifest declares ``plugins.telemetry_backend``."""
    manifest = write_yaml(tmp_path / "manifest.yaml", {"plugins": {"telemetry_backend": backend}})
    return load_settings({"FLOE_MANIFEST": str(manifest), **env}).settings


class _FakeEntryPoint:
    def __init__(self, target: object) -> None:
        self.target = target

    def load(self) -> object:
        return self.target


def _fake_plugin(api: str, version: str = "2.3.0") -> type[TelemetryBackendPlugin]:
    class FakeBackend(TelemetryBackendPlugin):
        metadata: ClassVar[PluginMetadata] = PluginMetadata("fake", version, api, "a test plugin")

        def get_otlp_exporter_config(self) -> dict[str, Any]:
            return {"debug": {}}

    return FakeBackend


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Add entry points to the discovered set (``backends._entry_points`` is patched)."""
    real = backends._entry_points()

    def add(**extra: object) -> None:
        eps = {**real, **{name: _FakeEntryPoint(target) for name, target in extra.items()}}
        monkeypatch.setattr(backends, "_entry_points", lambda: eps)

    return add


def test_shipped_backends_are_installed() -> None:
    """The four shipped plugins are registered in the floe.telemetry_backends group."""
    assert set(SHIPPED) <= set(installed_backends())
    assert installed_backends() == sorted(installed_backends())


@pytest.mark.parametrize(
    ("backend", "cls"),
    [
        ({"type": "console"}, ConsoleBackend),
        ({"type": "otlp"}, OtlpBackend),
        ({"type": "jaeger", "version": "1.0.0"}, JaegerBackend),
        (
            {"type": "grafana-cloud", "config": {"endpoint": GRAFANA_ENDPOINT}, "connection_secret_ref": "grafana"},
            GrafanaCloudBackend,
        ),
    ],
)
def test_load_each_shipped_backend(tmp_path: Path, backend: dict[str, Any], cls: type) -> None:
    """load_backend finds, checks and instantiates each shipped plugin from the manifest."""
    plugin = load_backend(settings_for(tmp_path, backend))
    assert type(plugin) is cls
    assert plugin.metadata.name == backend["type"]
    assert plugin.metadata.floe_api_version == FLOE_API_VERSION


def test_example_jaeger_manifest_loads_the_jaeger_plugin(examples: Examples) -> None:
    """manifest-jaeger.yaml (with its version pin) selects the jaeger plugin."""
    plugin = load_backend(load_settings({"FLOE_MANIFEST": str(examples.manifest_jaeger)}).settings)
    assert isinstance(plugin, JaegerBackend)
    assert plugin.config["endpoint"] == "jaeger-collector.observability.svc:4317"


@pytest.mark.parametrize("name", ["datadog", "Honeycomb", "otlp-http"])
def test_unknown_backend_lists_installed_ones(name: str) -> None:
    """An unknown backend names the variable and lists every installed plugin."""
    settings = load_settings({"FLOE_TELEMETRY_BACKEND": name}).settings
    with pytest.raises(ConfigError) as info:
        load_backend(settings)
    line = info.value.line()
    assert line == (
        f"floe-otel: FLOE_TELEMETRY_BACKEND='{name.lower()}': unknown telemetry backend; "
        f"installed: {', '.join(installed_backends())}"
    )
    for shipped in SHIPPED:
        assert shipped in line


def test_unknown_backend_from_the_manifest_names_the_field(tmp_path: Path) -> None:
    """When the manifest chose the backend, the error names plugins.telemetry_backend.type."""
    settings = settings_for(tmp_path, {"type": "datadog"})
    with pytest.raises(ConfigError) as info:
        load_backend(settings, "plugins.telemetry_backend.type")
    assert info.value.line().startswith("floe-otel: plugins.telemetry_backend.type='datadog': unknown telemetry")


@pytest.mark.parametrize("api", ["2.0", "0.9", "3", "10.1"])
def test_plugin_api_version_mismatch_is_refused(register: Any, api: str) -> None:
    """A plugin built for another major floe API version is refused with the fix."""
    register(fake=_fake_plugin(api))
    settings = load_settings({"FLOE_TELEMETRY_BACKEND": "fake"}).settings
    with pytest.raises(ConfigError) as info:
        load_backend(settings)
    assert info.value.line() == (
        f"floe-otel: backend plugin 'fake'='{api}': floe_api_version is incompatible with this distro's "
        f"{FLOE_API_VERSION}; install a plugin release built for it"
    )


@pytest.mark.parametrize("api", ["1.0", "1.9"])
def test_plugin_with_same_major_api_version_loads(register: Any, api: str) -> None:
    """Minor API differences are accepted."""
    register(fake=_fake_plugin(api))
    plugin = load_backend(load_settings({"FLOE_TELEMETRY_BACKEND": "fake"}).settings)
    assert plugin.metadata.name == "fake"


@pytest.mark.parametrize("pin", ["1.0.0", "2.3", "v2.3.0"])
def test_plugin_version_pin_mismatch(tmp_path: Path, register: Any, pin: str) -> None:
    """A manifest version pin that differs from the installed plugin names the field and both versions."""
    register(fake=_fake_plugin(FLOE_API_VERSION, version="2.3.0"))
    settings = settings_for(tmp_path, {"type": "fake", "version": pin})
    with pytest.raises(ConfigError) as info:
        load_backend(settings)
    assert info.value.line() == (
        f"floe-otel: plugins.telemetry_backend.version='{pin}': installed 'fake' plugin is 2.3.0; "
        f"pin that version or install {pin}"
    )


def test_plugin_version_pin_match(tmp_path: Path, register: Any) -> None:
    """A matching pin loads."""
    register(fake=_fake_plugin(FLOE_API_VERSION, version="2.3.0"))
    assert load_backend(settings_for(tmp_path, {"type": "fake", "version": "2.3.0"})).metadata.version == "2.3.0"


@pytest.mark.parametrize("target", [object(), dict, lambda: None])
def test_entry_point_that_is_not_a_plugin(register: Any, target: object) -> None:
    """An entry point that does not load a TelemetryBackendPlugin subclass is refused."""
    register(broken=target)
    with pytest.raises(ConfigError) as info:
        load_backend(load_settings({"FLOE_TELEMETRY_BACKEND": "broken"}).settings)
    assert "entry point is not a TelemetryBackendPlugin; fix the plugin package" in info.value.line()


# --- grafana-cloud credentials ------------------------------------------------------------------------
def test_grafana_cloud_without_endpoint(tmp_path: Path) -> None:
    """grafana-cloud needs config.endpoint; the error names the field and gives an example."""
    with pytest.raises(ConfigError) as info:
        load_backend(settings_for(tmp_path, {"type": "grafana-cloud", "connection_secret_ref": "grafana"}))
    line = info.value.line()
    assert line.startswith("floe-otel: plugins.telemetry_backend.config.endpoint: missing; set it to")
    assert "https://otlp-gateway-" in line


@pytest.mark.parametrize("headers", [None, "x-scope-orgid=1"])
def test_grafana_cloud_without_credentials(tmp_path: Path, headers: str | None) -> None:
    """grafana-cloud without a secret ref or authorization header names connection_secret_ref and the fix."""
    env = {"OTEL_EXPORTER_OTLP_HEADERS": headers} if headers else {}
    settings = settings_for(tmp_path, {"type": "grafana-cloud", "config": {"endpoint": GRAFANA_ENDPOINT}}, **env)
    with pytest.raises(ConfigError) as info:
        load_backend(settings)
    line = info.value.line()
    assert line.startswith("floe-otel: plugins.telemetry_backend.connection_secret_ref: missing credentials;")
    assert "GRAFANA_CLOUD_OTLP_AUTH" in line
    assert "FLOE_OTLP_HEADERS_FILE" in line


def test_grafana_cloud_with_a_mounted_headers_file(tmp_path: Path) -> None:
    """An authorization header from the mounted file is enough; its value never reaches the collector config."""
    secret = "Basic aW5zdGFuY2U6dG9rZW4tc2VjcmV0"
    headers = tmp_path / "headers"
    headers.write_text(f"authorization={secret}\n")
    settings = settings_for(
        tmp_path,
        {"type": "grafana-cloud", "config": {"endpoint": GRAFANA_ENDPOINT}},
        FLOE_OTLP_HEADERS_FILE=str(headers),
    )
    plugin = load_backend(settings)
    assert secret not in str(plugin.get_otlp_exporter_config())
    assert secret not in str(plugin.get_helm_values())


# --- collector-side configuration ----------------------------------------------------------------------
def test_console_backend_collector_and_sdk_side() -> None:
    """console: debug exporter in the collector; SDK side prints trees, exports no metrics or logs."""
    plugin = ConsoleBackend(load_settings({}).settings)
    assert plugin.get_otlp_exporter_config() == {"debug": {"verbosity": "detailed"}}
    assert plugin.get_pipeline_config() == {"traces": ["debug"], "metrics": ["debug"], "logs": ["debug"]}
    assert isinstance(plugin.span_exporter(), ConsoleTreeExporter)
    assert plugin.metric_exporter() is None
    assert plugin.log_exporter() is None


def test_otlp_backend_exports_lazily_to_the_platform_collector() -> None:
    """otlp: the SDK exporters are lazy OTLP exporters aimed at the configured endpoint."""
    plugin = OtlpBackend(load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).settings)
    assert isinstance(plugin.span_exporter(), LazySpanExporter)
    assert isinstance(plugin.metric_exporter(), LazyMetricExporter)
    assert isinstance(plugin.log_exporter(), LazyLogExporter)
    assert plugin.span_exporter()._endpoint == "http://collector:4318/v1/traces"


@pytest.mark.parametrize(
    ("config", "secret_ref", "expected"),
    [
        ({}, None, {"debug": {"verbosity": "basic"}}),
        (
            {"endpoint": "http://tempo:4318"},
            None,
            {"otlp_http/backend": {"endpoint": "http://tempo:4318", "tls": {"insecure": True}}},
        ),
        (
            {"endpoint": "https://otlp.vendor.example"},
            "vendor-creds",
            {
                "otlp_http/backend": {
                    "endpoint": "https://otlp.vendor.example",
                    "headers": {"authorization": "${env:OTLP_BACKEND_AUTHORIZATION}"},
                }
            },
        ),
    ],
)
def test_otlp_backend_collector_exporters(
    tmp_path: Path, config: dict[str, Any], secret_ref: str | None, expected: dict[str, Any]
) -> None:
    """otlp: forwards to config.endpoint (insecure for http://, auth from the Secret's env) or debug."""
    backend: dict[str, Any] = {"type": "otlp", "config": config}
    if secret_ref:
        backend["connection_secret_ref"] = secret_ref
    plugin = load_backend(settings_for(tmp_path, backend))
    assert plugin.get_otlp_exporter_config() == expected


def test_jaeger_backend_collector_config(examples: Examples) -> None:
    """jaeger: traces to Jaeger's OTLP gRPC, metrics/logs to debug; the Secret is mounted via Helm values."""
    plugin = load_backend(load_settings({"FLOE_MANIFEST": str(examples.manifest_jaeger)}).settings)
    exporters = plugin.get_otlp_exporter_config()
    assert exporters["otlp_grpc/jaeger"] == {
        "endpoint": "jaeger-collector.observability.svc:4317",
        "tls": {"insecure": True},
    }
    assert plugin.get_pipeline_config() == {
        "traces": ["otlp_grpc/jaeger"],
        "metrics": ["debug/jaeger"],
        "logs": ["debug/jaeger"],
    }
    helm = plugin.get_helm_values()
    assert helm["extraEnvsFrom"] == [{"secretRef": {"name": "jaeger-credentials"}}]
    assert helm["config"]["exporters"] == exporters


def test_grafana_cloud_collector_config_uses_the_secret_env(tmp_path: Path) -> None:
    """grafana-cloud: Basic auth header is a ${env:...} reference, never a literal credential."""
    plugin = load_backend(
        settings_for(
            tmp_path,
            {"type": "grafana-cloud", "config": {"endpoint": GRAFANA_ENDPOINT}, "connection_secret_ref": "grafana"},
        )
    )
    assert plugin.get_otlp_exporter_config() == {
        "otlp_http/grafana_cloud": {
            "endpoint": GRAFANA_ENDPOINT,
            "headers": {"authorization": "Basic ${env:GRAFANA_CLOUD_OTLP_AUTH}"},
        }
    }


# --- validate_connection ------------------------------------------------------------------------------
def test_validate_connection_reports_a_listening_endpoint() -> None:
    """A TCP listener at the endpoint is reported as reachable."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        plugin = OtlpBackend(load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}).settings)
        status = plugin.validate_connection(timeout=1.0)
    assert status.ok
    assert status.detail == f"127.0.0.1:{port} accepts connections"


def test_validate_connection_reports_an_unreachable_endpoint() -> None:
    """A closed port is reported as unreachable, without credentials in the detail."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        plugin = OtlpBackend(
            load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:hunter2@127.0.0.1:{port}"}).settings
        )
        status = plugin.validate_connection(timeout=1.0)
    assert not status.ok
    assert status.detail.startswith(f"127.0.0.1:{port} unreachable")
    assert "hunter2" not in status.detail
