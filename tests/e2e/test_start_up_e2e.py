"""End to end: start-up with other people's inputs — an app's own ``configurators`` package, strict mode and
the collector bypass, and what a no-op job pays (no metrics or logs SDK until used)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.collector import Collector
from tests.support.run import BIN, instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
APP = str(Path(__file__).parent / "apps" / "signals_app.py")


def test_an_apps_own_configurators_package_does_not_shadow_ours(collector: Collector, tmp_path: Path) -> None:
    """The launcher puts the cwd on sys.path; an app with a top-level ``configurators`` package still exports."""
    app = tmp_path / "app"
    (app / "configurators").mkdir(parents=True)
    (app / "configurators" / "__init__.py").write_text("raise ImportError('the app package, not the distro')\n")
    env = instrumented_env(collector.http_endpoint, OTEL_TRACES_SAMPLER="always_on", FLOE_PRODUCT_NAME="orders")
    proc = run_instrumented([sys.executable, APP], env, cwd=app)
    assert proc.returncode == 0, proc.stderr
    assert "floe-otel:" not in proc.stderr
    assert collector.wait_for(lambda c: len(c.spans()) >= 2)
    installed = subprocess.run(
        [str(BIN / "python"), "-c", "import floe_otel_distro.configurators.console as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert installed.endswith("configurators/console.py")


def test_strict_mode_rejects_a_collector_bypass_before_the_program_runs(collector: Collector, tmp_path: Path) -> None:
    """Prod, the manifest names the platform collector, the env points elsewhere: a warning; strict: exit 78,
    and doctor agrees (exit 1) in both cases' strict form."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("observability:\n  tracing:\n    endpoint: http://otel-collector.platform.svc:4317\n")
    env = instrumented_env(collector.http_endpoint, FLOE_MANIFEST=str(manifest), FLOE_MODE="prod")
    lenient = run_instrumented([sys.executable, APP], env)
    assert lenient.returncode == 0
    assert (
        [line for line in lenient.stderr.splitlines() if line.startswith("floe-otel:")]
        == [line for line in lenient.stderr.splitlines() if "bypass the platform collector" in line]
        != []
    )
    strict = run_instrumented([sys.executable, APP], {**env, "FLOE_OTEL_STRICT": "true"})
    assert (strict.returncode, strict.stdout) == (78, "")
    doctor = subprocess.run(
        [str(BIN / "floe-otel"), "doctor", "--json"],
        env={**env, "FLOE_OTEL_STRICT": "true"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert doctor.returncode == 1
    assert json.loads(doctor.stdout)["problems"][0]["severity"] == "warning"


def test_a_no_op_job_never_imports_the_metrics_or_logs_sdk(collector: Collector, tmp_path: Path) -> None:
    """All three signals planned, nothing recorded: the metrics and logs SDK stay unimported (start-up cost)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, sys\n"
        "print(json.dumps(sorted(m for m in ('opentelemetry.sdk.metrics', 'opentelemetry.sdk._logs', "
        "'opentelemetry.sdk.trace', 'pydantic') if m in sys.modules)))\n"
    )
    proc = run_instrumented([sys.executable, str(probe)], instrumented_env(collector.http_endpoint))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["opentelemetry.sdk.trace"]
