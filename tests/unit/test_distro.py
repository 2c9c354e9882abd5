"""distro.load_state: fail-open (one stderr line, telemetry off), strict (exit 78), OTEL_SDK_DISABLED costs nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from configurators.console import ConsoleBackend
from configurators.jaeger import JaegerBackend
from floe_otel_distro import _state
from floe_otel_distro.distro import ENV_DEFAULTS, FloeDistro, load_state, sdk_disabled, set_env_defaults
from floe_otel_distro.errors import STRICT_EXIT_STATUS
from tests.unit.conftest import PYTHON, Examples, clean_environ, write_yaml

SECRET = "hdr-s3cr3t-value"


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What was written to stderr, as lines."""
    return capsys.readouterr().err.splitlines()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with a clean env plus ``env``."""
    return subprocess.run(
        [PYTHON, "-c", code], env=clean_environ(**env), capture_output=True, text=True, timeout=120, check=False
    )


# --- valid configuration ---------------------------------------------------------------------------------
def test_valid_config_activates_telemetry(capsys: pytest.CaptureFixture[str], examples: Examples) -> None:
    """Valid settings: STATE holds them and the plugin, telemetry is active, nothing is printed."""
    load_state({"FLOE_SPEC": str(examples.spec)})
    state = _state.STATE
    assert state.configured and state.active
    assert state.resolved is not None and state.resolved.settings.product_name == "iot-telemetry"
    assert isinstance(state.plugin, ConsoleBackend)
    assert capsys.readouterr().err == ""


def test_backend_from_the_manifest(examples: Examples) -> None:
    """The manifest's plugins.telemetry_backend.type selects the plugin."""
    load_state({"FLOE_MANIFEST": str(examples.manifest_jaeger)})
    assert isinstance(_state.STATE.plugin, JaegerBackend)


def test_load_state_runs_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A second call (the configurator after the distro) changes nothing."""
    load_state({})
    first = _state.STATE.resolved
    load_state({"FLOE_MODE": "not-a-mode"})
    assert _state.STATE.resolved is first
    assert _state.STATE.active
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"FLOE_OTEL_ENABLED": "false"}, "disabled by env:FLOE_OTEL_ENABLED"),
        ({"OTEL_SDK_DISABLED": "true"}, "OTEL_SDK_DISABLED=true"),
        ({"OTEL_SDK_DISABLED": " TRUE "}, "OTEL_SDK_DISABLED=true"),
        ({"OTEL_SDK_DISABLED": "true", "FLOE_MODE": "broken"}, "OTEL_SDK_DISABLED=true"),
    ],
)
def test_disabled_telemetry_is_silent(capsys: pytest.CaptureFixture[str], env: dict[str, str], reason: str) -> None:
    """Switched-off telemetry installs nothing and prints nothing (even if other config is bad)."""
    load_state(env)
    assert not _state.STATE.active
    assert _state.STATE.disabled_reason == reason
    assert _state.STATE.plugin is None
    assert capsys.readouterr().err == ""


def test_manifest_tracing_disabled_switches_telemetry_off(tmp_path: Path) -> None:
    """observability.tracing.enabled: false in the manifest disables telemetry, naming the source."""
    manifest = write_yaml(tmp_path / "manifest.yaml", {"observability": {"tracing": {"enabled": False}}})
    load_state({"FLOE_MANIFEST": str(manifest)})
    assert not _state.STATE.active
    assert _state.STATE.disabled_reason == f"disabled by manifest:{manifest} observability.tracing.enabled"


# --- fail-open ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        ({"FLOE_MODE": "qa"}, "floe-otel: FLOE_MODE='qa': unknown mode"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "floe-otel: OTEL_EXPORTER_OTLP_ENDPOINT="),
        ({"FLOE_SAMPLING_RATIO": "2"}, "floe-otel: FLOE_SAMPLING_RATIO='2'"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "floe-otel: OTEL_TRACES_SAMPLER='sometimes'"),
        ({"FLOE_TELEMETRY_BACKEND": "datadog"}, "floe-otel: FLOE_TELEMETRY_BACKEND='datadog': unknown telemetry"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": SECRET}, "floe-otel: OTEL_EXPORTER_OTLP_HEADERS='<redacted>'"),
        ({"FLOE_SPEC": "/nonexistent/floe.yaml"}, "floe-otel: FLOE_SPEC='/nonexistent/floe.yaml': cannot read"),
        (
            {"FLOE_TELEMETRY_BACKEND": "grafana-cloud"},
            "floe-otel: plugins.telemetry_backend.config.endpoint: missing",
        ),
    ],
)
def test_fail_open_prints_exactly_one_line(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], prefix: str
) -> None:
    """Bad config: one stderr line starting 'floe-otel:', telemetry off, no exception, no secret."""
    load_state(env)
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith(prefix)
    assert lines[0].endswith("(telemetry disabled; the program runs without it)")
    assert SECRET not in lines[0]
    assert not _state.STATE.active
    assert _state.STATE.disabled_reason == "invalid configuration"


def test_fail_open_unknown_backend_from_the_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """When the manifest chose the backend, the line names plugins.telemetry_backend.type."""
    manifest = write_yaml(tmp_path / "manifest.yaml", {"plugins": {"telemetry_backend": {"type": "datadog"}}})
    load_state({"FLOE_MANIFEST": str(manifest)})
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("floe-otel: plugins.telemetry_backend.type='datadog': unknown telemetry backend;")


def test_fail_open_in_a_real_process() -> None:
    """Without strict mode the program after start-up runs, after one floe-otel line."""
    proc = run_python(
        "import os; from floe_otel_distro.distro import load_state; load_state(os.environ); print('program ran')",
        FLOE_MODE="qa",
    )
    assert proc.returncode == 0
    assert proc.stdout == "program ran\n"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("floe-otel: FLOE_MODE='qa'")


# --- strict ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        ({"FLOE_MODE": "qa"}, "floe-otel: FLOE_MODE='qa': unknown mode; use one of dev, staging, prod"),
        ({"FLOE_TELEMETRY_BACKEND": "datadog"}, "floe-otel: FLOE_TELEMETRY_BACKEND='datadog'"),
    ],
)
def test_strict_mode_exits_78_with_one_line(env: dict[str, str], prefix: str) -> None:
    """FLOE_OTEL_STRICT=true: the same single line, then exit status 78 before the program runs."""
    proc = run_python(
        "import os; from floe_otel_distro.distro import load_state; load_state(os.environ); print('program ran')",
        FLOE_OTEL_STRICT="true",
        **env,
    )
    assert proc.returncode == STRICT_EXIT_STATUS == 78
    assert "program ran" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(prefix)
    assert "telemetry disabled" not in lines[0]


def test_strict_mode_with_valid_config_runs_the_program() -> None:
    """Strict mode changes nothing when the configuration is valid."""
    proc = run_python(
        "import os; from floe_otel_distro.distro import load_state; load_state(os.environ); print('program ran')",
        FLOE_OTEL_STRICT="true",
        FLOE_MODE="prod",
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "program ran\n", "")


# --- OTEL_SDK_DISABLED ---------------------------------------------------------------------------------
def test_sdk_disabled_does_not_import_pydantic() -> None:
    """OTEL_SDK_DISABLED=true: load_state returns before the settings (pydantic, yaml) are imported."""
    code = (
        "import os, sys; from floe_otel_distro.distro import load_state; from floe_otel_distro import _state; "
        "load_state(os.environ); "
        "print('pydantic' in sys.modules, 'yaml' in sys.modules, 'floe_otel_distro.settings' in sys.modules, "
        "_state.STATE.active)"
    )
    proc = run_python(code, OTEL_SDK_DISABLED="true", FLOE_MODE="broken")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "False", "False"]
    assert proc.stderr == ""


@pytest.mark.parametrize(("value", "disabled"), [("true", True), ("True", True), ("false", False), ("", False)])
def test_sdk_disabled(value: str, disabled: bool) -> None:
    """Only 'true' (any case) disables the SDK."""
    assert sdk_disabled({"OTEL_SDK_DISABLED": value}) is disabled


# --- env defaults and instrumentor gating -----------------------------------------------------------------
def test_env_defaults_never_override_the_user() -> None:
    """set_env_defaults only fills in what is unset."""
    env: dict[str, str] = {}
    set_env_defaults(env)
    assert env == ENV_DEFAULTS
    env = {"OTEL_PROPAGATORS": "b3"}
    set_env_defaults(env)
    assert env["OTEL_PROPAGATORS"] == "b3"


class _RecordingEntryPoint:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def load(self) -> Any:
        calls = self.calls

        class Instrumentor:
            def instrument(self, **kwargs: Any) -> None:
                calls.append(kwargs)

        return Instrumentor


def test_instrumentors_are_skipped_when_telemetry_is_off() -> None:
    """Disabled or invalid configuration: no instrumentor is loaded."""
    load_state({"FLOE_OTEL_ENABLED": "false"})
    ep = _RecordingEntryPoint()
    FloeDistro().load_instrumentor(ep)
    assert ep.calls == []


def test_instrumentors_are_loaded_when_telemetry_is_on() -> None:
    """Active telemetry: instrumentors are instrumented as usual."""
    load_state({})
    ep = _RecordingEntryPoint()
    FloeDistro().load_instrumentor(ep, skip_dep_check=True)
    assert len(ep.calls) == 1
