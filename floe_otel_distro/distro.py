"""The ``opentelemetry_distro`` entry point ``floe``: loads settings once, sets env defaults, gates instrumentors.

``_configure`` reads as a list of steps. It never raises into the host program: bad configuration is
reported as one ``floe-otel:`` line and telemetry stays off (strict mode exits instead, see ``errors``).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from floe_otel_distro import _state
from floe_otel_distro.errors import ConfigError, report, strict_from_env

if TYPE_CHECKING:
    from floe_otel_distro._settings_core import ResolvedSettings

# Defaults set with setdefault only: the user's environment always wins.
ENV_DEFAULTS = {
    "OTEL_PROPAGATORS": "tracecontext,baggage",
}


def sdk_disabled(environ: MutableMapping[str, str]) -> bool:
    """``OTEL_SDK_DISABLED=true``: checked before anything is imported, so disabled costs nothing."""
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def set_env_defaults(environ: MutableMapping[str, str]) -> None:
    """Apply ``ENV_DEFAULTS`` without overriding anything the user set."""
    for key, value in ENV_DEFAULTS.items():
        environ.setdefault(key, value)


def resolve_settings(environ: MutableMapping[str, str]) -> ResolvedSettings:
    """The start-up cache's copy of the validated settings when inputs are unchanged, else the model's."""
    from floe_otel_distro import settings_cache

    cached = settings_cache.load(environ)
    if cached is not None:
        return cached
    from floe_otel_distro.settings import load_settings

    resolved = load_settings(environ)
    settings_cache.store(environ, resolved)
    return resolved


def load_state(environ: MutableMapping[str, str]) -> None:
    """Resolve settings and the backend plugin into ``_state.STATE`` (fail-open / strict)."""
    state = _state.STATE
    if state.configured:
        return
    state.configured = True
    if sdk_disabled(environ):
        state.disabled_reason = "OTEL_SDK_DISABLED=true"
        return
    try:
        state.resolved = resolve_settings(environ)
        settings = state.resolved.settings
        if not settings.telemetry_active:
            state.disabled_reason = f"disabled by {state.resolved.source_of('enabled')}"
            return
        from floe_otel_distro.backends import load_backend

        source = state.resolved.source_of("telemetry_backend")
        where = (
            "FLOE_TELEMETRY_BACKEND"
            if source in ("default", "env:FLOE_TELEMETRY_BACKEND")
            else ("plugins.telemetry_backend.type")
        )
        state.plugin = load_backend(settings, where)
    except ConfigError as error:
        state.disabled_reason = "invalid configuration"
        report(error, strict=strict_from_env(environ))


class FloeDistro(BaseDistro):  # type: ignore[misc]
    """floe's distro: configuration happens here; providers are built by ``FloeConfigurator``."""

    def _configure(self, **kwargs: Any) -> None:
        environ = os.environ
        try:
            load_state(environ)
            if _state.STATE.active:
                set_env_defaults(environ)
        except Exception as exc:  # a bug of ours must never stop the host program
            _state.STATE.disabled_reason = "internal error"
            report(
                ConfigError("floe-otel-distro", "", f"internal error {type(exc).__name__}: {exc}; please report it"),
                strict=strict_from_env(environ),
            )

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Instrument only when telemetry is on (disabled or misconfigured = nothing installed)."""
        if not _state.STATE.active:
            return
        super().load_instrumentor(entry_point, **kwargs)
