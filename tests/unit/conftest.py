"""Unit-test fixtures: a fresh distro state per test, the real example inputs, and small helpers."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from floe_otel_distro import _state
from floe_otel_distro.plan import _http_transport_installed

# The standard-library OTLP/HTTP transport plugs into upstream's transport interface, which exists from
# opentelemetry-exporter-otlp-proto-http 1.45 on; with 1.44 (tox env test-otel144) the distro uses the requests
# transport, and test_exporters.py asserts exactly that in both families.
collect_ignore = [] if _http_transport_installed() else ["test_http_transport.py"]

# The real-format floe inputs (floe.yaml, manifest.yaml, manifest-jaeger.yaml); see their README.md.
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "data" / "examples"  # copies of ../shared/examples


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Every test starts (and leaves) with an empty ``_state.STATE``."""
    _state.reset()
    yield
    _state.reset()


@dataclass(frozen=True)
class Examples:
    """Copies of the example inputs laid out as floe expects: ``product/floe.yaml`` + ``manifest.yaml``."""

    root: Path
    spec: Path
    manifest: Path
    manifest_jaeger: Path


@pytest.fixture
def examples(tmp_path: Path) -> Examples:
    """The example spec and manifests copied into ``tmp_path`` (floe.yaml's platform.manifest is ../manifest.yaml)."""
    product = tmp_path / "product"
    product.mkdir()
    spec = product / "floe.yaml"
    shutil.copyfile(EXAMPLES_DIR / "floe.yaml", spec)
    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(EXAMPLES_DIR / "manifest.yaml", manifest)
    jaeger = tmp_path / "manifest-jaeger.yaml"
    shutil.copyfile(EXAMPLES_DIR / "manifest-jaeger.yaml", jaeger)
    return Examples(tmp_path, spec, manifest, jaeger)


def write_yaml(path: Path, doc: object) -> Path:
    """Write ``doc`` as YAML to ``path`` and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def clean_environ(**extra: str) -> dict[str, str]:
    """A copy of this process's env without any OTEL_*/FLOE_* variable, plus ``extra`` (for subprocesses)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))}
    env.update(extra)
    return env


PYTHON = sys.executable
