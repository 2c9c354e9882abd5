"""Context propagation owned by floe: environment-variable carriers and floe baggage.

- ``extract_from_environ`` / ``attach_startup_context``: at start-up, continue the trace named by the
  ``TRACEPARENT`` / ``TRACESTATE`` / ``BAGGAGE`` variables (OTel spec "environment variables as
  context carriers"). Malformed values are ignored with one debug line.
- ``inject_into_env``: write the current context into a *copy* of an environment for a child process.
- ``with_floe_baggage``: put ``floe.namespace`` into W3C baggage, preserving incoming entries.

Private upstream names used here (``_envcarrier``) are pinned by ``opentelemetry-api==1.45.2``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping

from opentelemetry import baggage, context, propagate
from opentelemetry.propagators._envcarrier import EnvironmentGetter, EnvironmentSetter

_log = logging.getLogger(__name__)
_getter = EnvironmentGetter()
_setter = EnvironmentSetter()

CARRIER_VARIABLES = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
NAMESPACE_BAGGAGE_KEY = "floe.namespace"

_startup_token: object | None = None


def extract_from_environ(environ: Mapping[str, str]) -> context.Context:
    """The context carried by ``environ`` (an empty context when nothing valid is there)."""
    if not any(name in environ for name in CARRIER_VARIABLES):
        return context.Context()
    ctx = propagate.extract(environ, getter=_getter, context=context.Context())
    from opentelemetry import trace

    if "TRACEPARENT" in environ and not trace.get_current_span(ctx).get_span_context().is_valid:
        _log.debug("floe-otel: ignoring malformed TRACEPARENT=%r; starting a new trace", environ["TRACEPARENT"])
    return ctx


def inject_into_env(env: MutableMapping[str, str], ctx: context.Context | None = None) -> MutableMapping[str, str]:
    """Write the current (or given) context into ``env`` and return it.

    Stale carrier variables are removed first, so a child never continues an outdated trace.
    """
    for name in CARRIER_VARIABLES:
        env.pop(name, None)
    propagate.inject(env, context=ctx, setter=_setter)
    return env


def with_floe_baggage(namespace: str | None, ctx: context.Context | None = None) -> context.Context:
    """``ctx`` with ``floe.namespace`` in baggage unless an incoming value is already there."""
    ctx = ctx if ctx is not None else context.get_current()
    if namespace and baggage.get_baggage(NAMESPACE_BAGGAGE_KEY, ctx) is None:
        ctx = baggage.set_baggage(NAMESPACE_BAGGAGE_KEY, namespace, ctx)
    return ctx


def attach_startup_context(environ: Mapping[str, str], namespace: str | None) -> None:
    """Attach the caller's context (from env carriers) plus floe baggage as this process's root context."""
    global _startup_token
    ctx = with_floe_baggage(namespace, extract_from_environ(environ))
    if _startup_token is None:
        _startup_token = context.attach(ctx)
