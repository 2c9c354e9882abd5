"""The built wheel on every supported Python (3.10-3.13): a job exports without a traceback.

Each interpreter gets a venv with the wheel installed from this checkout (cached under ~/.cache by the
wheel's hash). Python 3.12.0-3.12.2 printed an atexit ``RuntimeError`` traceback on every run (the SDK's
log handler starts a thread in ``logging.shutdown``); the interpreters the machine has are listed in
``PYTHONS`` — a missing one fails, it is never skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.collector import Collector
from tests.support.wheel import build_wheel

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
PYTHONS = ("3.10", "3.12.1", "3.13")  # 3.11 is the suite's own; 3.12.1 is an affected 3.12
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "floe-otel-distro" / "pythons"
APP = str(Path(__file__).parent / "apps" / "signals_app.py")


def _interpreter(version: str) -> Path:
    found = sorted(PYENV.glob(f"{version}*/bin/python3"))
    assert found, f"Python {version} is not installed under {PYENV} (the machine image provides it)"
    return found[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _venv(python: Path, wheel: Path) -> Path:
    h = hashlib.sha256(str(python).encode())
    for source in sorted([*(REPO / "floe_otel_distro").rglob("*.py"), *(REPO / "configurators").rglob("*.py")]):
        h.update(source.read_bytes())
    for name in ("pyproject.toml", "setup.py", "floe_otel_distro-guard.pth"):
        h.update((REPO / name).read_bytes())
    digest = h.hexdigest()[:12]  # the sources, not the wheel's bytes (a rebuilt wheel differs in timestamps)
    venv = CACHE / f"{python.parents[1].name}-{digest}"
    if not (venv / "bin" / "opentelemetry-instrument").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    return venv


@pytest.mark.parametrize("version", PYTHONS)
def test_a_job_exports_without_a_traceback(version: str, wheel: Path, collector: Collector, tmp_path: Path) -> None:
    """Spans arrive; stderr has no traceback (3.12.1's atexit one included) and no floe-otel line."""
    venv = _venv(_interpreter(version), wheel)
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "OTEL_PYTHON_DISTRO": "floe",
        "OTEL_PYTHON_CONFIGURATOR": "floe",
        "FLOE_MODE": "prod",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_SERVICE_NAME": f"py{version}",
    }
    proc = subprocess.run(
        [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"), APP],
        env=env,
        cwd=tmp_path,  # not the checkout: the launcher puts the cwd on sys.path
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("floe-otel:")] == []
    assert collector.wait_for(lambda c: {s["resource"].get("service.name") for s in c.spans()} == {f"py{version}"})
