"""Discovery of backend plugins in the ``floe.telemetry_backends`` group, and the rule for shared names.

Entry points are listed without importing anything; a plugin module is imported only when its name is
selected. Two plugins registering one name: a version pin in the manifest picks the one of that version
(the plan does that); otherwise a plugin from another distribution wins over this distro's built-in of the
same name (a platform team installs a plugin on purpose), so the outcome never depends
on install order; among several external ones the first by distribution name wins. The losers are
reported by the plan (and shown by ``floe-otel doctor``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from floe_otel_distro._records import dataclass

ENTRY_POINT_GROUP = "floe.telemetry_backends"
OWN_DISTRIBUTION = "floe-otel-distro"


@dataclass(frozen=True)
class EntryPointRef:
    """An entry point as the plan sees it: no import happened yet."""

    group: str
    name: str
    value: str
    dist: str | None
    dist_version: str | None
    load: Callable[[], Any]

    @property
    def builtin(self) -> bool:
        """Whether this distro itself registered it."""
        return self.dist == OWN_DISTRIBUTION


_scan: Any = None  # every entry point of this environment, read once per process


def _distribution(dist: Any) -> tuple[str | None, str | None]:
    """A distribution's (normalized name, version) from its ``.dist-info`` folder name — no METADATA read
    (~1 ms each); falls back to the metadata for other layouts."""
    if dist is None:
        return None, None
    folder = getattr(getattr(dist, "_path", None), "name", "")  # PathDistribution's folder (stable 3.10-3.13)
    for suffix in (".dist-info", ".egg-info"):
        if folder.endswith(suffix) and "-" in folder:
            name, _, version = folder.removesuffix(suffix).partition("-")
            return name.replace("_", "-").lower(), version or None
    return str(dist.metadata["Name"]).replace("_", "-").lower(), dist.version


def _all_entry_points() -> Any:
    """Every entry point of the environment: the launcher's own scan when there is one.

    Reading every distribution's ``entry_points.txt`` costs ~25 ms in an environment of ~350 distributions.
    The launcher (``opentelemetry-instrument``, the Operator's ``sitecustomize``) has already done it through
    the API's cached ``opentelemetry.util._importlib_metadata.entry_points``; sharing it makes it one scan per
    process, not two. Any other API: a scan of our own.
    """
    try:
        from opentelemetry.util._importlib_metadata import entry_points as cached
    except Exception:
        from importlib.metadata import entry_points

        return entry_points()
    return cached()


def installed_entry_points(group: str) -> tuple[EntryPointRef, ...]:
    """Every entry point of ``group`` in this environment (one metadata scan per process, nothing imported)."""
    global _scan
    if _scan is None:
        _scan = _all_entry_points()
    out = []
    for ep in _scan.select(group=group):
        name, version = _distribution(getattr(ep, "dist", None))
        out.append(EntryPointRef(group, ep.name, ep.value, name, version, ep.load))
    return tuple(out)


def forget_installed() -> None:
    """Scan again on the next call (after installing packages in this process; tests)."""
    global _scan
    _scan = None
    with contextlib.suppress(Exception):
        from opentelemetry.util import _importlib_metadata

        _importlib_metadata._original_entry_points_cached.cache_clear()


def candidates(refs: Sequence[EntryPointRef], name: str) -> list[EntryPointRef]:
    """Plugins registered as ``name``, the winner first (external before built-in, then by distribution)."""
    found = [ref for ref in refs if ref.name == name]
    return sorted(found, key=lambda ref: (ref.builtin, ref.dist or "", ref.value))


def collector_side(backend: Any, mode: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The collector ``exporters:`` and per-signal pipelines for a plan's backend (``plan.BackendPlan``).

    A plugin of this distro's API answers itself; a floe-core plugin's SDK-style answer
    (``exporter_type``/``endpoint``/``protocol``/``insecure``) becomes one collector exporter, and its
    collector-form answer is used as written.
    """
    from floe_otel_distro.plugin import PluginContext

    if backend.load is None:
        msg = "the backend cannot be loaded"
        raise LookupError(msg)
    plugin = backend.load()()
    if backend.api != "floe-core":
        plugin.configure(PluginContext(config=backend.config, secret_ref=backend.secret_ref, mode=mode))
        return plugin.get_otlp_exporter_config(), plugin.get_pipeline_config()
    config = plugin.get_otlp_exporter_config()
    if "exporter_type" in config:
        name = backend.name
        if backend.sdk_exporters.get("traces") != "otlp" or not backend.endpoint:
            exporters: dict[str, Any] = {f"debug/{name}": {"verbosity": "basic"}}
        else:
            kind = "otlp_grpc" if backend.protocol in (None, "grpc") else "otlp_http"
            endpoint = backend.endpoint.split("://", 1)[1] if kind == "otlp_grpc" else backend.endpoint
            exporters = {f"{kind}/{name}": {"endpoint": endpoint, "tls": {"insecure": bool(backend.insecure)}}}
    else:
        exporters = dict(config)
    names = list(exporters)
    return exporters, {signal: names for signal in ("traces", "metrics", "logs")}


def validate_connection(backend: Any) -> tuple[bool, str] | None:
    """The backend plugin's own ``validate_connection()`` for ``doctor --check-endpoint`` (None: nothing to ask).

    A floe-core plugin checks its backend itself (floe-telemetry-jaeger opens a TCP connection to its
    endpoint); this distro's plugins answer True and leave the check to the real OTLP probe of the collector.
    Never raises: a plugin that fails is reported as not reachable, with the reason.
    """
    if backend is None or backend.load is None or backend.api != "floe-core":
        return None
    try:
        ok = bool(backend.load()().validate_connection())
    except Exception as exc:  # a third-party plugin may raise anything
        return False, f"{backend.name}.validate_connection() raised {type(exc).__name__}: {exc}"
    detail = "reachable" if ok else "not reachable"
    return ok, f"{backend.dist or backend.name} validate_connection(): {detail}"
