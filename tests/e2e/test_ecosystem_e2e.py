"""The built wheel beside upstream's instrumentations: it resolves, bootstrap works, and they all export once.

A venv gets the wheel together with the instrumentations that used to fail to resolve against the exact
pins (urllib3, urllib, threading, asyncio, logging, requests); ``pip check`` must be clean, then
``opentelemetry-bootstrap -a requirements`` must list only versions that exist (it names the installed
contrib family) and ``-a install`` must install them. An HTTP client job (urllib, urllib3, requests against
a local ``http.server``) then runs under the launcher: upstream's client spans arrive with floe's attributes,
each log record arrives exactly once (opentelemetry-instrumentation-logging is installed by bootstrap),
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` turns off theirs and ours, and ``OTEL_PYTHON_LOG_CORRELATION``
formats the console as upstream documents. A second venv already holding the previous family (SDK 1.44.0,
contrib 0.65b0) gets the wheel without an upgrade. Venvs are cached under ~/.cache by the sources' hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.collector import Collector, free_port
from tests.support.wheel import build_wheel

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "floe-otel-distro" / "ecosystem"
APP = str(Path(__file__).parent / "apps" / "http_client_app.py")
INSTRUMENTATIONS = [
    "opentelemetry-instrumentation-urllib3",
    "opentelemetry-instrumentation-urllib",
    "opentelemetry-instrumentation-threading",
    "opentelemetry-instrumentation-asyncio",
    "opentelemetry-instrumentation-logging",
    "opentelemetry-instrumentation-requests",
]
# an existing previous-family set as upstream's distro installs it (the exporters included)
PREVIOUS = ["opentelemetry-distro==0.65b0", "opentelemetry-exporter-otlp==1.44.0",
            "opentelemetry-instrumentation-urllib3==0.65b0", "urllib3"]


def _pip(venv: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _installed(venv: Path) -> dict[str, str]:
    listed = json.loads(_pip(venv, "list", "--format", "json").stdout)
    return {p["name"].lower(): p["version"] for p in listed}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _venv(name: str, wheel: Path, before: list[str], with_wheel: list[str]) -> tuple[Path, str]:
    """A cached venv: ``before`` installed first, then the wheel with ``with_wheel``; returns (venv, pip output)."""
    h = hashlib.sha256(f"{sys.version}{before}{with_wheel}".encode())
    for source in sorted([*(REPO / "floe_otel_distro").rglob("*.py"), *(REPO / "configurators").rglob("*.py")]):
        h.update(source.read_bytes())
    for file in ("pyproject.toml", "setup.py", "floe_otel_distro-guard.pth"):
        h.update((REPO / file).read_bytes())
    venv = CACHE / f"{name}-{h.hexdigest()[:12]}"
    log = venv / "install.log"
    if not log.exists():
        for stale in CACHE.glob(f"{name}-*"):  # built from older sources
            shutil.rmtree(stale, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        output = ""
        if before:
            first = _pip(venv, "install", "-q", *before)
            assert first.returncode == 0, first.stderr
        result = _pip(venv, "install", str(wheel), *with_wheel)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"pip could not install the wheel with {with_wheel}:\n{output[-3000:]}"
        log.write_text(output)
    return venv, log.read_text()


@pytest.fixture(scope="module")
def current(wheel: Path) -> Path:
    venv, _ = _venv("current", wheel, [], [*INSTRUMENTATIONS, "requests", "urllib3"])
    return venv


@pytest.fixture(scope="module")
def bootstrapped(current: Path) -> tuple[Path, list[str], str]:
    """The venv after ``opentelemetry-bootstrap -a install`` (run once per cached venv)."""
    bootstrap = str(current / "bin" / "opentelemetry-bootstrap")
    listed = subprocess.run([bootstrap, "-a", "requirements"], capture_output=True, text=True, check=True, timeout=60)
    lines = [line for line in listed.stdout.splitlines() if line.strip()]
    marker = current / "bootstrap.log"
    if not marker.exists():
        done = subprocess.run([bootstrap, "-a", "install"], capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        marker.write_text(done.stdout + done.stderr)
    return current, lines, marker.read_text()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    for name in ("urllib", "urllib3", "requests"):
        (root / name).write_text("ok\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/urllib", timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _run(venv: Path, collector: Collector, base: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "OTEL_PYTHON_DISTRO": "floe",
        "OTEL_PYTHON_CONFIGURATOR": "floe",
        "FLOE_MODE": "prod",
        "FLOE_PRODUCT_NAME": "ecosystem",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    return subprocess.run(
        [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"), APP, base],
        env=env,
        cwd=collector.workdir,  # not the checkout: the launcher puts the working directory on sys.path
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _client_scopes(collector: Collector) -> set[str]:
    return {s["scope"] for s in collector.spans() if s["name"] == "GET"}


def test_the_wheel_resolves_beside_the_instrumentations(current: Path) -> None:
    """pip installs the wheel with every instrumentation of the issue's list; pip check is clean."""
    versions = _installed(current)
    for name in INSTRUMENTATIONS:
        assert name in versions, name
    family = versions["opentelemetry-instrumentation"]
    assert {versions[n] for n in INSTRUMENTATIONS} == {family}  # one contrib family, the SDK's partner
    assert versions["opentelemetry-sdk"].startswith(("1.44.", "1.45."))
    check = _pip(current, "check")
    assert check.returncode == 0, check.stdout


def test_bootstrap_lists_installable_versions_and_installs_them(bootstrapped: tuple[Path, list[str], str]) -> None:
    """Every line bootstrap prints names the installed contrib family, and ``-a install`` installed them all."""
    venv, lines, install_output = bootstrapped
    versions = _installed(venv)
    family = versions["opentelemetry-instrumentation"]
    assert lines, "bootstrap listed nothing"
    for line in lines:
        name, _, version = line.partition("==")
        assert version == family, line
        assert versions.get(name.lower()) == family, f"{line} not installed by bootstrap -a install"
    assert "returned non-zero exit status" not in install_output and "ERROR" not in install_output
    check = _pip(venv, "check")
    assert check.returncode == 0, check.stdout


def test_upstream_instrumentations_export_with_floe_attributes_and_each_log_once(
    bootstrapped: tuple[Path, list[str], str], collector: Collector, server: str
) -> None:
    """urllib, urllib3 and requests client spans carry floe's attributes; three records arrive, once each."""
    venv, _, _ = bootstrapped
    result = _run(venv, collector, server)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "floe-otel:" not in result.stderr, result.stderr
    expected_scopes = {f"opentelemetry.instrumentation.{n}" for n in ("urllib", "urllib3", "requests")}
    assert collector.wait_for(lambda c: expected_scopes <= _client_scopes(c)), _client_scopes(collector)
    job = next(s for s in collector.spans() if s["name"] == "client-job")
    for span in collector.spans():
        if span["name"] == "GET":
            assert span["attributes"]["floe.product.name"] == "ecosystem"
            assert span["attributes"]["floe.mode"] == "prod"
            assert span["resource"]["service.name"] == "ecosystem"
            assert span["trace_id"] == job["trace_id"]
    assert collector.wait_for(lambda c: len([r for r in c.logs() if "status" in str(r["body"])]) >= 3)
    time.sleep(0.5)  # a duplicate would arrive in the same batch; give the file exporter one more flush
    bodies = sorted(str(r["body"]) for r in collector.logs() if "status" in str(r["body"]))
    assert bodies == ["requests status 200", "urllib status 200", "urllib3 status 200"], bodies
    assert all(r["trace_id"] == job["trace_id"] for r in collector.logs() if "status" in str(r["body"]))


def test_disabled_instrumentations_switch_off_theirs_and_ours(
    bootstrapped: tuple[Path, list[str], str], collector: Collector, server: str
) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=urllib3,floe_log_correlation: no urllib3 span; the rest is there."""
    venv, _, _ = bootstrapped
    result = _run(venv, collector, server, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="urllib3,floe_log_correlation")
    assert result.returncode == 0, result.stderr
    wanted = {"opentelemetry.instrumentation.urllib", "opentelemetry.instrumentation.requests"}
    assert collector.wait_for(lambda c: wanted <= _client_scopes(c))
    assert "opentelemetry.instrumentation.urllib3" not in _client_scopes(collector)
    doctor = subprocess.run(
        [str(venv / "bin" / "floe-otel"), "doctor", "--json"],
        env={
            "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "urllib3,floe_log_correlation",
        },
        capture_output=True,
        text=True,
        check=False,
        cwd=venv,
    )
    instrumentors = json.loads(doctor.stdout)["instrumentors"]
    assert instrumentors["urllib3"] is False and instrumentors["floe_log_correlation"] is False
    assert instrumentors["requests"] is True and instrumentors["floe_dbt"] is True


def test_log_correlation_formats_the_console_as_upstream_documents(
    bootstrapped: tuple[Path, list[str], str], collector: Collector, server: str
) -> None:
    """OTEL_PYTHON_LOG_CORRELATION=true + _FORMAT: the instrumentation's basicConfig takes effect beside floe's
    handler (trace ids on the console), and each record is still exported once."""
    venv, _, _ = bootstrapped
    result = _run(
        venv,
        collector,
        server,
        OTEL_PYTHON_LOG_CORRELATION="true",
        OTEL_PYTHON_LOG_FORMAT="CORR %(levelname)s trace=%(otelTraceID)s %(message)s",
        OTEL_PYTHON_LOG_LEVEL="warning",
    )
    assert result.returncode == 0, result.stderr
    console = re.findall(r"CORR WARNING trace=([0-9a-f]{32}) (\S+) status", result.stderr)
    assert [name for _, name in console] == ["urllib", "urllib3", "requests"], result.stderr
    assert collector.wait_for(lambda c: len([r for r in c.logs() if "status" in str(r["body"])]) >= 3)
    time.sleep(0.5)
    records = [r for r in collector.logs() if "status" in str(r["body"])]
    assert len(records) == 3
    assert {r["trace_id"] for r in records} == {console[0][0]}


def test_installing_over_the_previous_family_upgrades_nothing(wheel: Path) -> None:
    """A venv holding SDK 1.44.0 / contrib 0.65b0 gets the wheel without an upgrade; pip check is clean."""
    venv, _ = _venv("previous", wheel, PREVIOUS, [])
    versions = _installed(venv)
    assert versions["opentelemetry-sdk"] == "1.44.0"
    assert versions["opentelemetry-api"] == "1.44.0"
    assert versions["opentelemetry-instrumentation"] == "0.65b0"
    assert versions["opentelemetry-exporter-otlp-proto-http"] == "1.44.0"
    check = _pip(venv, "check")
    assert check.returncode == 0, check.stdout
    listed = subprocess.run(
        [str(venv / "bin" / "opentelemetry-bootstrap"), "-a", "requirements"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    assert listed and all(line.endswith("==0.65b0") for line in listed), listed
