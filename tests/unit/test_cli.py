"""floe-otel doctor (sources, redaction, --json, exit status) and collector-config for every backend."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from floe_otel_distro.backends import load_backend
from floe_otel_distro.cli import doctor_report
from floe_otel_distro.settings import load_settings
from tests.unit.conftest import PYTHON, Examples, clean_environ, write_yaml

HEADER_SECRET = "ZmxvZTpzM2NyM3QtdG9rZW4"
PASSWORD = "hunter2-pw"


def floe_otel(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the floe-otel CLI in a fresh process with a clean env plus ``env``."""
    return subprocess.run(
        [PYTHON, "-m", "floe_otel_distro.cli", *args],
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def secret_env(examples: Examples) -> dict[str, str]:
    """The example spec plus a secret header and an endpoint URL with a password."""
    return {
        "FLOE_SPEC": str(examples.spec),
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Basic {HEADER_SECRET}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://ops:{PASSWORD}@collector:4318",
    }


# --- doctor ---------------------------------------------------------------------------------------------
def test_doctor_report_shows_values_and_sources(examples: Examples, secret_env: dict[str, str]) -> None:
    """doctor_report lists every field with its value and source, plus effective values and the backend."""
    report, status = doctor_report(secret_env)
    assert status == 0 and report["valid"] and report["errors"] == []
    settings = report["settings"]
    assert settings["product_name"] == {"value": "iot-telemetry", "source": f"spec:{examples.spec} metadata.name"}
    assert settings["namespace"]["source"] == f"spec:{examples.spec} metadata.labels.domain"
    assert settings["log_level"]["source"] == f"manifest:{examples.manifest.resolve()} observability.logging.level"
    assert settings["mode"] == {"value": "dev", "source": "default"}
    assert settings["endpoint"] == {
        "value": "http://***:***@collector:4318",
        "source": "env:OTEL_EXPORTER_OTLP_ENDPOINT",
    }
    assert settings["headers"] == {"value": "<redacted>", "source": "env:OTEL_EXPORTER_OTLP_HEADERS"}
    assert report["effective"]["export_header_names"] == ["authorization"]
    assert report["effective"]["endpoints"]["traces"] == "http://***:***@collector:4318/v1/traces"
    assert report["effective"]["backend"] == "console"
    assert report["backend"]["name"] == "console"
    assert report["resource"]["service.name"] == "iot-telemetry"
    text = json.dumps(report, default=str)
    assert HEADER_SECRET not in text
    assert PASSWORD not in text
    assert "demo-secret" not in text  # the example manifest's unrelated client secret


def test_doctor_redacts_secret_backend_config(tmp_path: Path) -> None:
    """Plugin config keys that name credentials are shown as <redacted>."""
    manifest = write_yaml(
        tmp_path / "manifest.yaml",
        {"plugins": {"telemetry_backend": {"type": "otlp", "config": {"endpoint": "http://x:4318", "api_key": "k-1"}}}},
    )
    report, status = doctor_report({"FLOE_MANIFEST": str(manifest)})
    assert status == 0
    assert report["settings"]["backend_config"]["value"] == {"endpoint": "http://x:4318", "api_key": "<redacted>"}
    assert "k-1" not in json.dumps(report, default=str)


def test_doctor_text_output(examples: Examples, secret_env: dict[str, str]) -> None:
    """`floe-otel doctor` prints each set value with '<- source', redacts secrets and exits 0."""
    proc = floe_otel("doctor", **secret_env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    spec = re.escape(str(examples.spec))
    assert re.search(rf"^  product_name\s+iot-telemetry\s+<- spec:{spec} metadata\.name$", out, re.M)
    endpoint = re.escape("http://***:***@collector:4318")
    assert re.search(rf"^  endpoint\s+{endpoint}\s+<- env:OTEL_EXPORTER_OTLP_ENDPOINT$", out, re.M)
    assert re.search(r"^  headers\s+<redacted>\s+<- env:OTEL_EXPORTER_OTLP_HEADERS$", out, re.M)
    assert re.search(r"^  mode\s+dev\s+<- default$", out, re.M)
    assert "backend  console 1.0.0 (floe API 1.0)" in out
    assert "installed backends: console, grafana-cloud, jaeger, otlp" in out
    assert out.rstrip().endswith("config valid")
    for secret in (HEADER_SECRET, PASSWORD, "demo-secret"):
        assert secret not in out
        assert secret not in proc.stderr


def test_doctor_json_output(examples: Examples, secret_env: dict[str, str]) -> None:
    """`floe-otel doctor --json` is valid JSON with the same sources and no secrets."""
    proc = floe_otel("doctor", "--json", **secret_env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is True
    assert report["settings"]["spec_path"] == {"value": str(examples.spec), "source": "env:FLOE_SPEC"}
    assert report["settings"]["manifest_path"]["source"] == f"spec:{examples.spec} platform.manifest"
    assert report["settings"]["headers"]["value"] == "<redacted>"
    assert report["settings"]["endpoint"]["source"] == "env:OTEL_EXPORTER_OTLP_ENDPOINT"
    assert report["effective"]["sampling_ratio"] == 1.0
    for secret in (HEADER_SECRET, PASSWORD, "demo-secret"):
        assert secret not in proc.stdout


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"FLOE_MODE": "qa"}, "floe-otel: FLOE_MODE='qa': unknown mode; use one of dev, staging, prod"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"ftp://ops:{PASSWORD}@collector"},
            "floe-otel: OTEL_EXPORTER_OTLP_ENDPOINT='ftp://***:***@collector'",
        ),
        ({"OTEL_EXPORTER_OTLP_HEADERS": HEADER_SECRET}, "floe-otel: OTEL_EXPORTER_OTLP_HEADERS='<redacted>'"),
        ({"FLOE_TELEMETRY_BACKEND": "datadog"}, "floe-otel: FLOE_TELEMETRY_BACKEND='datadog': unknown telemetry"),
    ],
)
def test_doctor_exits_1_on_invalid_config(env: dict[str, str], error: str) -> None:
    """Invalid config: the error line is shown, 'config INVALID', exit status 1, secrets still hidden."""
    proc = floe_otel("doctor", **env)
    assert proc.returncode == 1
    assert f"  ERROR {error}" in proc.stdout
    assert proc.stdout.rstrip().endswith("config INVALID")
    assert HEADER_SECRET not in proc.stdout and PASSWORD not in proc.stdout
    proc = floe_otel("doctor", "--json", **env)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["valid"] is False
    assert len(report["errors"]) == 1 and report["errors"][0].startswith(error)


def test_doctor_names_the_manifest_field_for_an_unknown_backend(tmp_path: Path) -> None:
    """An unknown backend chosen by the manifest is reported as plugins.telemetry_backend.type."""
    manifest = write_yaml(tmp_path / "manifest.yaml", {"plugins": {"telemetry_backend": {"type": "datadog"}}})
    report, status = doctor_report({"FLOE_MANIFEST": str(manifest)})
    assert status == 1
    assert report["errors"][0].startswith("floe-otel: plugins.telemetry_backend.type='datadog': unknown telemetry")
    assert report["settings"]["telemetry_backend"]["source"] == f"manifest:{manifest} plugins.telemetry_backend.type"


def test_doctor_shows_sdk_disabled() -> None:
    """OTEL_SDK_DISABLED=true is reported."""
    report, status = doctor_report({"OTEL_SDK_DISABLED": "true"})
    assert status == 0
    assert report["disabled"] == "OTEL_SDK_DISABLED=true"


def test_doctor_check_endpoint() -> None:
    """--check-endpoint reports whether the traces endpoint accepts connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        report, status = doctor_report(
            {"FLOE_MODE": "prod", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}, check_endpoint=True
        )
    assert status == 0
    assert report["endpoint_check"]["ok"] is False
    assert report["endpoint_check"]["detail"].startswith(f"127.0.0.1:{port} unreachable")


# --- collector-config ----------------------------------------------------------------------------------
def _grafana_manifest(root: Path) -> Path:
    return write_yaml(
        root / "grafana.yaml",
        {
            "plugins": {
                "telemetry_backend": {
                    "type": "grafana-cloud",
                    "config": {"endpoint": "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp"},
                    "connection_secret_ref": "grafana-cloud-otlp",
                }
            }
        },
    )


def _otlp_manifest(root: Path) -> Path:
    return write_yaml(
        root / "otlp.yaml",
        {
            "plugins": {
                "telemetry_backend": {
                    "type": "otlp",
                    "config": {"endpoint": "https://otlp.vendor.example:4318"},
                    "connection_secret_ref": "vendor-otlp",
                }
            }
        },
    )


@pytest.mark.parametrize("backend", ["console", "otlp", "jaeger", "grafana-cloud"])
def test_collector_config_for_each_backend(examples: Examples, backend: str) -> None:
    """The output parses as YAML: otlp receivers, memory_limiter then batch, the plugin's exporters per signal."""
    manifests = {
        "console": examples.manifest,
        "otlp": _otlp_manifest(examples.root),
        "jaeger": examples.manifest_jaeger,
        "grafana-cloud": _grafana_manifest(examples.root),
    }
    args = ["collector-config", "--manifest", str(manifests[backend])]
    if backend == "console":
        args += ["--backend", "console"]
    proc = floe_otel(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Generated by `floe-otel collector-config`")
    config = yaml.safe_load(proc.stdout)

    env = {"FLOE_MANIFEST": str(manifests[backend]), "FLOE_MODE": "prod", "FLOE_TELEMETRY_BACKEND": backend}
    plugin = load_backend(load_settings(env).settings)
    assert config["receivers"] == {
        "otlp": {
            "protocols": {
                "grpc": {"endpoint": "${env:MY_POD_IP:-0.0.0.0}:4317"},
                "http": {"endpoint": "${env:MY_POD_IP:-0.0.0.0}:4318"},
            }
        }
    }
    assert list(config["processors"]) == ["memory_limiter", "batch"]
    assert config["exporters"] == plugin.get_otlp_exporter_config()
    pipelines = config["service"]["pipelines"]
    assert {signal: p["exporters"] for signal, p in pipelines.items()} == plugin.get_pipeline_config()
    for signal, pipeline in pipelines.items():
        assert pipeline["receivers"] == ["otlp"], signal
        assert pipeline["processors"] == ["memory_limiter", "batch"], signal
        assert set(pipeline["exporters"]) <= set(config["exporters"]), signal
    assert set(pipelines) == {"traces", "metrics", "logs"}
    assert "demo-secret" not in proc.stdout


def test_collector_config_defaults_to_prod_otlp() -> None:
    """Without a manifest or backend, collector-config uses the prod default (otlp → debug exporter)."""
    proc = floe_otel("collector-config")
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = yaml.safe_load(proc.stdout)
    assert config["exporters"] == {"debug": {"verbosity": "basic"}}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--backend", "datadog"], "floe-otel: FLOE_TELEMETRY_BACKEND='datadog': unknown telemetry backend; installed"),
        (["--backend", "grafana-cloud"], "floe-otel: plugins.telemetry_backend.config.endpoint: missing;"),
        (["--manifest", "/nonexistent/manifest.yaml"], "floe-otel: FLOE_MANIFEST='/nonexistent/manifest.yaml': cannot"),
    ],
)
def test_collector_config_errors(args: list[str], error: str) -> None:
    """A bad backend or manifest: one stderr line, nothing on stdout, exit status 1."""
    proc = floe_otel("collector-config", *args)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(error)
