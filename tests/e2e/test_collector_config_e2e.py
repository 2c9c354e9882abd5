"""`floe-otel collector-config` for every shipped backend is accepted by the real collector (`validate`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.collector import collector_binary

pytestmark = pytest.mark.e2e
FLOE_OTEL = str(Path(sys.executable).parent / "floe-otel")

MANIFESTS = {
    "console": {},
    "otlp": {"config": {"endpoint": "https://otlp.vendor.example:4318"}, "connection_secret_ref": "vendor-otlp"},
    "jaeger": {"config": {"endpoint": "jaeger-collector.observability.svc:4317", "insecure": True}},
    "grafana-cloud": {
        "config": {"endpoint": "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp"},
        "connection_secret_ref": "grafana-cloud-credentials",
    },
}


@pytest.mark.parametrize("backend", sorted(MANIFESTS))
def test_generated_collector_config_validates(tmp_path: Path, backend: str) -> None:
    """The generated config (receivers, memory_limiter → batch, health_check, the plugin's exporters) is valid."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "floe.dev/v1",
                "kind": "Manifest",
                "plugins": {"telemetry_backend": {"type": backend, **MANIFESTS[backend]}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))}
    generated = subprocess.run(
        [FLOE_OTEL, "collector-config", "--manifest", str(manifest)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    config = yaml.safe_load(generated.stdout)
    for pipeline in config["service"]["pipelines"].values():
        assert pipeline["processors"] == ["memory_limiter", "batch"]
        assert pipeline["receivers"] == ["otlp"]
    (tmp_path / "collector.yaml").write_text(generated.stdout)
    # what the pod provides: its IP, and the backend Secret's keys as env
    collector_env = {
        **env,
        "MY_POD_IP": "127.0.0.1",
        "GRAFANA_CLOUD_OTLP_AUTH": "aW5zdGFuY2U6dG9rZW4=",
        "OTLP_BACKEND_AUTHORIZATION": "Bearer x",
    }
    validated = subprocess.run(
        [collector_binary(), "validate", "--config", str(tmp_path / "collector.yaml")],
        env=collector_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert validated.returncode == 0, generated.stdout + validated.stdout + validated.stderr


def test_test_collector_takes_new_ports_when_one_was_taken_before_it_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite's collector: a port taken between free_port() and the bind (CI saw it) costs a retry, not a test."""
    import socket

    from tests.support import collector as support

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real, calls = support.free_port, []

    def free_port() -> int:
        calls.append(1)
        return int(taken.getsockname()[1]) if len(calls) == 1 else real()  # the first gRPC port is taken

    monkeypatch.setattr(support, "free_port", free_port)
    with taken:
        c = support.Collector(tmp_path)
        try:
            assert c.grpc_port != taken.getsockname()[1] and len(calls) == 6  # two rounds of three ports
            assert "address already in use" not in c.log_path.read_text()
        finally:
            c.stop()
