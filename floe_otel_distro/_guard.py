"""Interpreter start-up guard: an uninstalled name in ``OTEL_PROPAGATORS`` must not stop the program.

The OpenTelemetry API builds its global propagator when ``opentelemetry.propagate`` is first imported and
raises ``ValueError`` for a name no installed package provides. ``opentelemetry-instrument`` (and the
Operator's ``sitecustomize``) import it before any distro code runs, so a typo, or an ``Instrumentation``
that names ``b3`` in an image without the b3 package, keeps the program from starting at all.

``floe_otel_distro-guard.pth`` imports this module at interpreter start-up only when ``OTEL_PROPAGATORS``
is set (one dict lookup otherwise). Names no installed package provides are dropped from the variable;
the original value is kept in ``FLOE_OTEL_REQUESTED_PROPAGATORS`` so the plan reports it (one
``floe-otel:`` line naming ``OTEL_PROPAGATORS``). Never raises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import MutableMapping

REQUESTED = "FLOE_OTEL_REQUESTED_PROPAGATORS"
BUILTIN = frozenset({"tracecontext", "baggage", "none"})


def repaired(value: str, installed: frozenset[str]) -> str:
    """``value`` without the names neither the API nor an installed package provides (``none`` if empty)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    kept = [name for name in names if name in installed or name.lower() in BUILTIN]
    return ",".join(kept) or "none"


def repair(environ: MutableMapping[str, str]) -> None:
    """Drop uninstalled propagator names from ``environ["OTEL_PROPAGATORS"]`` (see the module docstring)."""
    value = environ.get("OTEL_PROPAGATORS", "")
    if all(name.strip().lower() in BUILTIN for name in value.split(",") if name.strip()):
        return
    from importlib.metadata import entry_points

    installed = frozenset(ep.name for ep in entry_points(group="opentelemetry_propagator"))
    fixed = repaired(value, installed)
    if fixed != ",".join(name.strip() for name in value.split(",") if name.strip()):
        environ[REQUESTED] = value
        environ["OTEL_PROPAGATORS"] = fixed


with contextlib.suppress(Exception):  # a start-up guard must never be the thing that breaks the interpreter
    repair(os.environ)
