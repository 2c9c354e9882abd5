"""Start-up cache of validated settings, so a repeated start does not import pydantic (~110 ms, ~10 MiB).

The pydantic model stays the single source of truth: what is cached is its validated output
(``model_dump``) and the provenance map, written after a successful ``load_settings``. An entry is used
only when every input is byte-identical: the key hashes the distro version, the Python version, the
working directory and every ``OTEL_*``/``FLOE_*`` variable; the entry records a hash of each file the
model read (spec, manifest, headers file) and is ignored when any of them changed. Secrets are never written: OTLP
header values are re-read from the environment, and settings holding credentials-like values are not
cached at all. Invalid configurations are never cached, so errors are always reported by the model.

Location: ``FLOE_SETTINGS_CACHE_DIR`` or ``$XDG_CACHE_HOME/floe-otel-distro/settings`` (``~/.cache``);
``FLOE_SETTINGS_CACHE=false`` turns it off. Any I/O problem (read-only home in a pod…) just means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floe_otel_distro import __version__
from floe_otel_distro._settings_core import SECRET_FIELDS, ResolvedSettings, SettingsSnapshot
from floe_otel_distro.errors import is_secret_key

MAX_ENTRIES = 64
_HEADER_VARS = ("OTEL_EXPORTER_OTLP_HEADERS", "FLOE_OTLP_HEADERS")  # same order as the model's aliases


def enabled(environ: Mapping[str, str]) -> bool:
    """``FLOE_SETTINGS_CACHE`` (default on)."""
    return environ.get("FLOE_SETTINGS_CACHE", "true").strip().lower() not in ("0", "false", "no", "off")


def cache_dir(environ: Mapping[str, str]) -> Path:
    """Where entries live."""
    explicit = environ.get("FLOE_SETTINGS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "floe-otel-distro" / "settings"


def _key(environ: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(f"{__version__}\0{sys.version}\0{os.getcwd()}\0".encode())  # cwd: relative paths
    for name in sorted(k for k in environ if k.startswith(("OTEL_", "FLOE_"))):
        h.update(f"{name}={environ[name]}\0".encode())
    return h.hexdigest()[:32]


def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def load(environ: Mapping[str, str]) -> ResolvedSettings | None:
    """The cached resolution for exactly these inputs, or None."""
    if not enabled(environ):
        return None
    try:
        entry = json.loads((cache_dir(environ) / f"{_key(environ)}.json").read_text())
        if entry.get("version") != __version__:
            return None
        for path, digest in entry["files"].items():
            if _file_digest(path) != digest:
                return None
        headers = next((environ[v] for v in _HEADER_VARS if environ.get(v)), None)
        return ResolvedSettings(SettingsSnapshot(entry["values"], headers), dict(entry["sources"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cacheable(values: dict[str, Any]) -> bool:
    """No credentials-like content: backend config with secret keys, or URLs carrying a password."""
    if any(is_secret_key(k) for k in (values.get("backend_config") or {})):
        return False
    return not any(
        isinstance(v, str) and "://" in v and "@" in v.split("://", 1)[1].split("/", 1)[0] for v in values.values()
    )


def store(environ: Mapping[str, str], resolved: ResolvedSettings) -> None:
    """Remember a successful resolution (best effort, never raises)."""
    if not enabled(environ):
        return
    try:
        settings: Any = resolved.settings
        values = settings.model_dump(mode="json", exclude=set(SECRET_FIELDS))
        if not _cacheable(values):
            return
        files = [str(p) for p in (settings.spec_path, settings.manifest_path, settings.headers_file) if p]
        entry = {
            "version": __version__,
            "files": {path: _file_digest(path) for path in files},
            "values": values,
            "sources": resolved.sources,
        }
        directory = cache_dir(environ)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = directory / f"{_key(environ)}.json"
        tmp = directory / f".{target.name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(entry, out)
        os.replace(tmp, target)
        _prune(directory)
    except Exception:  # a cache must never hurt the host program
        return


def _prune(directory: Path) -> None:
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-MAX_ENTRIES]:
        old.unlink(missing_ok=True)
