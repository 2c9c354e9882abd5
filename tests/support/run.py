"""Run a program under ``opentelemetry-instrument`` with the floe distro, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


def instrumented_env(endpoint: str | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for an instrumented child: our distro selected, no inherited OTEL_/FLOE_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_", "TRACEPARENT", "BAGGAGE"))}
    env.update(
        {
            "OTEL_PYTHON_DISTRO": "floe",
            "OTEL_PYTHON_CONFIGURATOR": "floe",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        env.setdefault("FLOE_MODE", "prod")
    env.update(extra)
    return env


def run_instrumented(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``opentelemetry-instrument <args>``; returns the completed process (output captured as text)."""
    return subprocess.run(
        [str(BIN / "opentelemetry-instrument"), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
