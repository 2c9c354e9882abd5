"""Startup cost of `opentelemetry-instrument python noop.py`: floe distro vs upstream opentelemetry-distro.

Each distro gets its own venv (cached under ~/.cache/floe-otel-distro/bench); runs are interleaved
(bare, upstream, floe, bare, …) so machine noise hits all three alike. Prints median wall time, peak
RSS of the instrumented process, the overhead over bare python and the ratio floe/upstream.
Also measures floe with OTEL_SDK_DISABLED=true ("disabled = free").

    python benchmarks/startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "floe-otel-distro" / "bench"
UPSTREAM = ["opentelemetry-distro==0.66b2", "opentelemetry-exporter-otlp-proto-http==1.45.2"]


def _venv(name: str, requirements: list[str]) -> Path:
    key = (
        hashlib.sha256("\n".join(requirements).encode() + _tree_hash()).hexdigest()[:12]
        if name == "floe"
        else (hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12])
    )
    path = CACHE / f"{name}-{key}"
    if not (path / "bin" / "opentelemetry-instrument").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", *requirements], check=True)
    return path


def _tree_hash() -> bytes:
    h = hashlib.sha256()
    for f in sorted((REPO / "floe_otel_distro").rglob("*.py")) + sorted((REPO / "configurators").rglob("*.py")):
        h.update(f.read_bytes())
    h.update((REPO / "pyproject.toml").read_bytes())
    return h.digest()


def _run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the exec'd program (the launcher execs into python).

    Run from a neutral directory: the launcher puts the cwd on PYTHONPATH, and from a checkout of this
    repo the upstream venv would discover floe's own metadata there and measure something else.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} failed: {err}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    upstream = _venv("upstream", UPSTREAM)
    floe = _venv("floe", [str(REPO)])
    noop = Path(tempfile.mkdtemp()) / "noop.py"
    noop.write_text("pass\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))}
    common = {
        **base,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "noop",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
    }
    cases = {
        "bare python": ([str(floe / "bin" / "python"), str(noop)], base),
        "upstream distro": (
            [str(upstream / "bin" / "opentelemetry-instrument"), str(upstream / "bin" / "python"), str(noop)],
            {**common, "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true"},
        ),
        "floe distro": (
            [str(floe / "bin" / "opentelemetry-instrument"), str(floe / "bin" / "python"), str(noop)],
            {**common, "OTEL_PYTHON_DISTRO": "floe", "OTEL_PYTHON_CONFIGURATOR": "floe", "FLOE_MODE": "prod"},
        ),
        "floe, cold (no settings cache)": (
            [str(floe / "bin" / "opentelemetry-instrument"), str(floe / "bin" / "python"), str(noop)],
            {
                **common,
                "OTEL_PYTHON_DISTRO": "floe",
                "OTEL_PYTHON_CONFIGURATOR": "floe",
                "FLOE_MODE": "prod",
                "FLOE_SETTINGS_CACHE": "false",
            },
        ),
        "floe, OTEL_SDK_DISABLED": (
            [str(floe / "bin" / "opentelemetry-instrument"), str(floe / "bin" / "python"), str(noop)],
            {**common, "OTEL_SDK_DISABLED": "true"},
        ),
        "launcher floor (no distro)": (
            [str(floe / "bin" / "opentelemetry-instrument"), str(floe / "bin" / "python"), str(noop)],
            {**common, "OTEL_PYTHON_DISTRO": "none-such", "OTEL_PYTHON_CONFIGURATOR": "none-such"},
        ),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for cmd, env in cases.values():  # warm-up (pyc files, page cache)
        _run(cmd, env, noop.parent)
    for _ in range(args.runs):
        for name, (cmd, env) in cases.items():
            results[name].append(_run(cmd, env, noop.parent))
    wall = {n: statistics.median(w for w, _ in r) for n, r in results.items()}
    rss = {n: statistics.median(m for _, m in r) for n, r in results.items()}
    bare_wall, bare_rss = wall["bare python"], rss["bare python"]
    print(f"runs per case: {args.runs} (interleaved), python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'case':30} {'wall (median)':>14} {'overhead':>10} {'peak RSS':>10} {'RSS over bare':>14}")
    for name in cases:
        print(
            f"{name:30} {wall[name] * 1000:11.0f} ms {(wall[name] - bare_wall) * 1000:7.0f} ms "
            f"{rss[name]:7.1f} MiB {rss[name] - bare_rss:10.1f} MiB"
        )
    up = wall["upstream distro"] - bare_wall
    fl = wall["floe distro"] - bare_wall
    floor = wall["launcher floor (no distro)"] - bare_wall
    print(f"\noverhead ratio floe/upstream: {fl / up:.2f}  (target <= 0.40)")
    print(
        f"distro's own share over the launcher floor: floe {(fl - floor) * 1000:.0f} ms, "
        f"upstream {(up - floor) * 1000:.0f} ms, ratio {(fl - floor) / (up - floor):.2f}"
    )
    print(f"peak RSS floe/upstream: {rss['floe distro'] / rss['upstream distro']:.2f}  (target <= 1.00)")
    cold = wall["floe, cold (no settings cache)"] - bare_wall
    print(
        f"cold start (every input new, e.g. a fresh pod): ratio floe/upstream {cold / up:.2f}, "
        f"peak RSS {rss['floe, cold (no settings cache)'] / rss['upstream distro']:.2f}"
    )
    launcher = wall["floe, OTEL_SDK_DISABLED"] - bare_wall
    print(
        f"over the launcher alone (floe with OTEL_SDK_DISABLED, {launcher * 1000:.0f} ms): floe "
        f"{(fl - launcher) * 1000:.0f} ms, upstream {(up - launcher) * 1000:.0f} ms, "
        f"ratio {(fl - launcher) / (up - launcher):.2f}"
    )
    disabled = wall["floe, OTEL_SDK_DISABLED"] - wall["launcher floor (no distro)"]
    print(f"disabled floe over the launcher floor: {disabled * 1000:.0f} ms")


if __name__ == "__main__":
    main()
