"""The start-up settings cache: a faithful copy of the model's output, invalidated by any input change, no secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from floe_otel_distro import settings_cache
from floe_otel_distro.settings import FloeSettings, load_settings
from tests.unit.conftest import Examples

DERIVED = ("backend_name", "effective_sampling_ratio", "effective_service_name", "telemetry_active")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"FLOE_SETTINGS_CACHE_DIR": str(tmp_path / "cache"), **extra}


def _roundtrip(env: dict[str, str]) -> tuple[Any, Any]:
    resolved = load_settings(env)
    settings_cache.store(env, resolved)
    cached = settings_cache.load(env)
    assert cached is not None
    return resolved, cached


def _assert_same(model: Any, snapshot: Any) -> None:
    for field in FloeSettings.model_fields:
        if field == "headers":
            continue
        assert getattr(snapshot, field) == getattr(model, field), field
    for name in DERIVED:
        assert getattr(snapshot, name) == getattr(model, name), name
    for signal in ("traces", "metrics", "logs"):
        assert snapshot.signal_endpoint(signal) == model.signal_endpoint(signal)
        assert snapshot.signal_enabled(signal) == model.signal_enabled(signal)
    assert snapshot.floe_attributes() == model.floe_attributes()
    assert snapshot.export_headers() == model.export_headers()


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"FLOE_MODE": "prod", "FLOE_PRODUCT_NAME": "orders", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.3",
        },
        {"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer abc", "OTEL_METRICS_EXPORTER": "none"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces", "FLOE_LOG_LEVEL": "debug"},
    ],
)
def test_snapshot_equals_the_model(tmp_path: Path, extra: dict[str, str]) -> None:
    """Every field and derived value of the cached copy equals the validated model's."""
    resolved, cached = _roundtrip(_env(tmp_path, **extra))
    _assert_same(resolved.settings, cached.settings)
    assert cached.sources == resolved.sources


def test_spec_and_manifest_snapshot_and_file_change_invalidates(tmp_path: Path, examples: Examples) -> None:
    """With floe.yaml + manifest.yaml the copy matches; editing the manifest makes the entry unusable."""
    env = _env(tmp_path, FLOE_SPEC=str(examples.spec))
    resolved, cached = _roundtrip(env)
    _assert_same(resolved.settings, cached.settings)
    assert cached.source_of("product_name") == resolved.source_of("product_name")
    examples.manifest.write_text(examples.manifest.read_text().replace("level: INFO", "level: DEBUG"))
    assert settings_cache.load(env) is None
    assert load_settings(env).settings.log_level == "DEBUG"


def test_any_env_change_is_a_miss(tmp_path: Path) -> None:
    """A different OTEL_/FLOE_ variable set never reuses another's entry."""
    env = _env(tmp_path, FLOE_MODE="prod")
    _roundtrip(env)
    assert settings_cache.load({**env, "FLOE_MODE": "dev"}) is None
    assert settings_cache.load({**env, "OTEL_SERVICE_NAME": "x"}) is None


def test_header_secrets_are_never_written_but_still_used(tmp_path: Path) -> None:
    """Header values stay out of the cache file and are re-read from the environment on a hit."""
    env = _env(tmp_path, OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer top-secret-123")
    _, cached = _roundtrip(env)
    text = "".join(p.read_text() for p in (tmp_path / "cache").glob("*.json"))
    assert "top-secret-123" not in text
    assert cached.settings.export_headers() == {"authorization": "Bearer top-secret-123"}


@pytest.mark.parametrize(
    "extra",
    [{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw@collector:4318"}],
)
def test_credentials_in_values_are_not_cached(tmp_path: Path, extra: dict[str, str]) -> None:
    """A URL with a password makes the settings uncacheable."""
    env = _env(tmp_path, **extra)
    settings_cache.store(env, load_settings(env))
    assert settings_cache.load(env) is None
    assert not list((tmp_path / "cache").glob("*.json"))


def test_secret_backend_config_is_not_cached(tmp_path: Path) -> None:
    """A manifest backend config with a token-like key is never written to disk."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("plugins:\n  telemetry_backend:\n    type: otlp\n    config:\n      api_token: abc\n")
    env = _env(tmp_path, FLOE_MANIFEST=str(manifest))
    settings_cache.store(env, load_settings(env))
    assert settings_cache.load(env) is None


def test_disabled_and_unwritable_cache_are_harmless(tmp_path: Path) -> None:
    """FLOE_SETTINGS_CACHE=false writes nothing; an unwritable directory raises nothing."""
    env = _env(tmp_path, FLOE_SETTINGS_CACHE="false")
    settings_cache.store(env, load_settings(env))
    assert not (tmp_path / "cache").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"FLOE_SETTINGS_CACHE_DIR": str(blocker / "sub")}
    settings_cache.store(env, load_settings(env))
    assert settings_cache.load(env) is None


def test_warm_start_does_not_import_pydantic(tmp_path: Path) -> None:
    """Second start with unchanged inputs resolves settings without importing pydantic."""
    code = (
        "import os, sys, json\n"
        "from floe_otel_distro import distro, _state\n"
        "distro.load_state(os.environ)\n"
        "print(json.dumps({'pydantic': 'pydantic' in sys.modules, 'active': _state.STATE.active,"
        " 'mode': _state.STATE.resolved.settings.mode.value}))\n"
    )
    env = {"PATH": "/usr/bin:/bin", **_env(tmp_path, FLOE_MODE="staging", FLOE_TELEMETRY_BACKEND="otlp")}
    runs = [
        json.loads(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        )
        for _ in range(2)
    ]
    assert runs[0] == {"pydantic": True, "active": True, "mode": "staging"}
    assert runs[1] == {"pydantic": False, "active": True, "mode": "staging"}


def test_invalid_configuration_is_never_cached(tmp_path: Path) -> None:
    """A bad value is reported by the model every time: nothing is stored for it."""
    code = "import os\nfrom floe_otel_distro import distro\ndistro.load_state(os.environ)\n"
    env = {"PATH": "/usr/bin:/bin", **_env(tmp_path, FLOE_MODE="qa")}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert proc.stderr.count("floe-otel: FLOE_MODE='qa'") == 1
    assert not list((tmp_path / "cache").glob("*.json"))
