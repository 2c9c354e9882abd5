"""Helpers for benchmarks/startup.py: cached non-editable venvs, one timed child process, import-time parsing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "floe-otel-distro" / "bench"
PACKAGE_DIRS = ("floe_otel_distro", "configurators")  # + every top-level file (pyproject.toml, README.md)
TIMEOUT_S = 60.0


def short_hash(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]


def stage_floe(dest: Path) -> str:
    """Copy floe's package sources to ``dest`` (so pip never writes into the shared work tree); their hash.

    The hash covers every *.py under the package dirs plus pyproject.toml, taken from the copy, so the
    venv's key always matches what is installed even while others edit the tree.
    """
    for f in REPO.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for d in PACKAGE_DIRS:
        if (REPO / d).is_dir():
            shutil.copytree(REPO / d, dest / d, ignore=ignore)
    h = hashlib.sha256()
    for f in [*sorted(p for d in PACKAGE_DIRS for p in (dest / d).rglob("*.py")), dest / "pyproject.toml"]:
        h.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def venv(name: str, key: str, requirements: list[str], rebuild: bool) -> Path:
    """A venv under CACHE holding a regular (non-editable) ``pip install`` of ``requirements``."""
    path = CACHE / f"{name}-{key}"
    marker = path / ".bench-complete"
    if rebuild or not marker.exists():
        for old in [path, *CACHE.glob(f"{name}-*")]:  # a new key makes the older venvs of this name stale
            shutil.rmtree(old, ignore_errors=True)
        print(f"building the {name} venv: {path}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *requirements], check=True)
        marker.write_text("\n".join(requirements) + "\n")
    return path


def site_packages(venv_path: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(venv_path / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@dataclass
class Result:
    wall_ms: float  # spawn to exit, os.wait4
    rss_mib: float  # ru_maxrss of the child (the launcher execs into python: same pid, high-water mark kept)
    rc: int
    stderr: str

    def raw(self) -> dict[str, Any]:
        return {"wall_ms": round(self.wall_ms, 2), "rss_mib": round(self.rss_mib, 2), "rc": self.rc}


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> Result:
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child can never block
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        killer = threading.Timer(TIMEOUT_S, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
        err.seek(0)
        text = err.read().decode(errors="replace")
    return Result(wall * 1000, usage.ru_maxrss / 1024, proc.returncode, text)


def top_imports(stderr: str, n: int = 25) -> list[tuple[int, int, str]]:
    """(cumulative µs, self µs, module) of the ``-X importtime`` lines, largest cumulative first."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            parts = line.removeprefix("import time:").split("|")
            if len(parts) == 3 and parts[0].strip().isdigit():
                rows.append((int(parts[1]), int(parts[0]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:n]
