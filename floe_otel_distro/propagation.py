"""Context propagation owned by floe: environment-variable carriers and floe baggage.

- ``extract_from_environ`` / ``attach_startup_context``: at start-up, continue the trace named by the
  ``TRACEPARENT`` / ``TRACESTATE`` / ``BAGGAGE`` variables (OTel spec "environment variables as
  context carriers"). Malformed values are ignored with exactly one debug line (upstream propagator
  warnings are folded into it) and the process starts a new root; extraction never raises.
- ``current_carrier`` / ``inject_into_env``: write the current context into a carrier dict or a *copy*
  of an environment for a child process; stale carrier variables are always removed first.
- ``with_floe_baggage``: put floe's four keys (``floe.namespace``, ``floe.product.name``,
  ``floe.product.version``, ``floe.mode``: what floe-core's ``set_floe_baggage`` sets) into W3C baggage,
  bounded: an incoming member is never replaced or evicted, and a key is left out rather than pushing the
  baggage past the W3C limits the propagators enforce (180 members, 4096 bytes a member, 8192 bytes).

Only trace identifiers, the W3C trace state and baggage travel in these variables: never put
sensitive data into baggage, since a child's environment is readable by its user (``/proc/<pid>/environ``).

Private upstream names used here (``_envcarrier``) exist alike in every supported API (1.44, 1.45; the
``test-otel144`` tox env runs the suite on the oldest).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from urllib.parse import quote_plus

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators._envcarrier import EnvironmentGetter, EnvironmentSetter, _normalize_key

_log = logging.getLogger(__name__)
_getter = EnvironmentGetter()
_setter = EnvironmentSetter()

CARRIER_VARIABLES = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
NAMESPACE_BAGGAGE_KEY = "floe.namespace"
FLOE_BAGGAGE_KEYS = ("floe.namespace", "floe.product.name", "floe.product.version", "floe.mode")
# the W3C baggage limits the upstream propagator enforces (opentelemetry.baggage.propagation)
MAX_BAGGAGE_MEMBERS = 180
MAX_BAGGAGE_MEMBER_BYTES = 4096
MAX_BAGGAGE_BYTES = 8192

# Upstream propagators warn (per entry) about malformed input; while we extract from the environment
# those warnings are swallowed and summarised in our single debug line instead.
_UPSTREAM_PROPAGATION_LOGGERS = (
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.baggage.propagation",
    "opentelemetry.baggage",
    "opentelemetry.trace.span",
    "opentelemetry.propagate",
)

_startup_token: object | None = None


class _Swallow(logging.Filter):
    """Drops (and counts) records logged by the current thread while installed."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.swallowed: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.swallowed.append(record.name)
        return False


@contextmanager
def _swallow_upstream_warnings() -> Iterator[_Swallow]:
    swallow = _Swallow()
    loggers = [logging.getLogger(name) for name in _UPSTREAM_PROPAGATION_LOGGERS]
    for lg in loggers:
        lg.addFilter(swallow)
    try:
        yield swallow
    finally:
        for lg in loggers:
            lg.removeFilter(swallow)


def has_valid_span(ctx: context.Context | None = None) -> bool:
    """Whether ``ctx`` (default: the current context) holds a valid span context."""
    return trace.get_current_span(ctx).get_span_context().is_valid


def extract_from_environ(environ: Mapping[str, str]) -> context.Context:
    """The context carried by ``environ`` (an empty context when nothing valid is there).

    Never raises. When a carrier variable is present but (partly) malformed, exactly one debug line
    names the ignored variables; a malformed ``TRACEPARENT`` yields a context without a span, so the
    process's first span is a new root.
    """
    present = [name for name in CARRIER_VARIABLES if environ.get(name)]
    if not present:
        return context.Context()
    try:
        with _swallow_upstream_warnings() as swallow:
            ctx = propagate.extract(environ, getter=_getter, context=context.Context())
    except Exception:  # a broken third-party propagator must not break start-up
        _log.debug("floe-otel: ignoring context carriers %s; starting a new trace", present, exc_info=True)
        return context.Context()

    ignored: list[str] = []
    span_ok = has_valid_span(ctx)
    if "TRACEPARENT" in present and not span_ok:
        ignored.append("TRACEPARENT")
    state_ok = bool(trace.get_current_span(ctx).get_span_context().trace_state)
    state_warned = "opentelemetry.trace.span" in swallow.swallowed
    if "TRACESTATE" in present and span_ok and (not state_ok or state_warned):
        ignored.append("TRACESTATE")
    if "BAGGAGE" in present and any(name.startswith("opentelemetry.baggage") for name in swallow.swallowed):
        ignored.append("BAGGAGE")
    if ignored:
        _log.debug(
            "floe-otel: ignoring malformed %s (TRACEPARENT=%r)%s",
            "/".join(ignored),
            environ.get("TRACEPARENT", "")[:80],
            "; starting a new trace" if "TRACEPARENT" in ignored else "",
        )
    return ctx


def carrier_keys() -> frozenset[str]:
    """Every environment variable the configured propagators may write (always includes the W3C three)."""
    try:
        fields = propagate.get_global_textmap().fields
    except Exception:  # a broken third-party propagator must not break child start-up
        fields = set()
    return frozenset(CARRIER_VARIABLES) | {_normalize_key(name) for name in fields}


def current_carrier(ctx: context.Context | None = None) -> dict[str, str]:
    """The env-style carrier (``TRACEPARENT``/``TRACESTATE``/``BAGGAGE``) for ``ctx`` (default: current)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx, setter=_setter)
    return carrier


def inject_into_env(env: MutableMapping[str, str], ctx: context.Context | None = None) -> MutableMapping[str, str]:
    """Write the current (or given) context into ``env`` and return it.

    Stale carrier variables are removed first, so a child never continues an outdated trace.
    Pass a *copy* of ``os.environ``, never ``os.environ`` itself.
    """
    for name in carrier_keys():
        env.pop(name, None)
    propagate.inject(env, context=ctx, setter=_setter)
    return env


def _member(key: str, value: object) -> str:
    return f"{quote_plus(key)}={quote_plus(str(value))}"


def with_floe_baggage(values: str | Mapping[str, str] | None, ctx: context.Context | None = None) -> context.Context:
    """``ctx`` with floe's baggage keys added (a string is the namespace alone), bounded (module docstring).

    Keys are added in floe's order; a key already present (incoming) keeps its value; a key that would
    exceed a limit is left out, and so are the keys after it (the baggage stays within what every
    propagator forwards).
    """
    ctx = ctx if ctx is not None else context.get_current()
    wanted = {NAMESPACE_BAGGAGE_KEY: values} if isinstance(values, str) else dict(values or {})
    current = dict(baggage.get_all(ctx))
    members = len(current)
    size = len(",".join(_member(k, v) for k, v in current.items()).encode())
    for key in FLOE_BAGGAGE_KEYS:
        value = wanted.get(key)
        if not value or key in current:
            continue
        member = _member(key, value)
        added = len(member.encode()) + (1 if members else 0)
        if (
            members + 1 > MAX_BAGGAGE_MEMBERS
            or len(member.encode()) > MAX_BAGGAGE_MEMBER_BYTES
            or size + added > MAX_BAGGAGE_BYTES
        ):
            break
        ctx = baggage.set_baggage(key, value, ctx)
        members, size = members + 1, size + added
    return ctx


def attach_startup_context(environ: Mapping[str, str], namespace: str | Mapping[str, str] | None) -> object:
    """Attach the caller's context (from env carriers) plus floe baggage as this process's root context.

    Idempotent: only the first call attaches (the context stays attached for the process's lifetime).
    Returns the token (``detach_startup_context`` undoes it).
    """
    global _startup_token
    if _startup_token is None:
        ctx = with_floe_baggage(namespace, extract_from_environ(environ))
        _startup_token = context.attach(ctx)
    return _startup_token


def detach_startup_context() -> None:
    """Undo ``attach_startup_context`` (the installer's rollback; tests)."""
    global _startup_token
    token, _startup_token = _startup_token, None
    if token is not None:
        context.detach(token)  # type: ignore[arg-type]
