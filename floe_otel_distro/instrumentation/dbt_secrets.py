"""dbt's secret values (``DBT_ENV_SECRET*``), read once per change of the environment, for dbt and for us.

dbt masks the values of ``DBT_ENV_SECRET*`` variables as ``*****`` in every line it logs. To do so, every
dbt logger calls ``dbt_common.exceptions.env_secrets()`` for every line it writes (``logs/dbt.log``'s debug
lines included, ~60 per node), and that function walks all of ``os.environ``: ≈ 1 µs per variable per
line, so each variable in the process's environment costs dbt ≈ 0.2 % of a build — a pod's service-link
variables, the OTel Operator's ``OTEL_*`` injections and ours alike.

This module owns the one answer to "which values are secret now":

* :class:`EnvSecrets` — a scan redone only when ``os.environ`` changed: its data is compared (in C, ≈ 1 µs
  for the whole environment) with the copy the values were taken from, so the answer is never stale.
* :class:`DbtSecretsInstrumentor` (``floe_dbt_secrets``) — wraps the name ``env_secrets`` where dbt looks
  it up on a hot path (wrapt post-import hooks, undone by ``uninstrument``): in
  ``dbt_common.events.functions`` (the per-line scrubber) and in ``dbt_common.exceptions.base`` (every
  ``DbtRuntimeError``/``DbtInternalError`` constructor masks its message: dbt builds ~12
  ``PackageNotFoundForMacroError`` per node while it resolves macros, each one another full scan). The
  wrapper returns what dbt's own function returned for the same environment — the original is called
  again whenever the environment changed — as a new list each time. dbt logs and raises exactly what it
  did before, the scans are gone. Turn it off with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_dbt_secrets``.
* the dbt instrumentor masks what it exports (records, status texts, exception events) with the same
  values, longest first (:meth:`EnvSecrets.scrub`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from floe_otel_distro.instrumentation._hooks import ImportHooks

#: dbt masks the values of these variables in everything it logs (dbt_common's ``SECRET_ENV_PREFIX``)
SECRET_ENV_PREFIX = "DBT_ENV_SECRET"
SECRET_MASK = "*****"  # what dbt writes instead
#: the module whose ``env_secrets`` dbt's per-line scrubber (``env_scrubber``) looks up at every call
SCRUBBER_MODULE = "dbt_common.events.functions"
#: the module that defines ``env_secrets`` and whose exception constructors look it up (the package
#: ``dbt_common.exceptions`` star-imports it from there after the hook ran: the wrapped name)
EXCEPTIONS_MODULE = "dbt_common.exceptions.base"


def scan_environment() -> list[str]:
    """The secret values in ``os.environ``, in its order (dbt's rule: the prefix, a non-blank value)."""
    return [v for k, v in os.environ.items() if k.startswith(SECRET_ENV_PREFIX) and v.strip()]


class EnvSecrets:
    """The values ``scan()`` returns for the current ``os.environ``, scanned again only when it changed.

    Thread-safe. Outside CPython's ``os._Environ`` (no ``_data`` dict to compare) every call scans.
    """

    def __init__(self, scan: Callable[[], list[str]] = scan_environment) -> None:
        self._scan = scan
        self._lock = threading.Lock()
        self._snapshot: dict[Any, Any] | None = None
        self._listed: tuple[str, ...] = ()
        self._longest_first: tuple[str, ...] = ()

    def _refresh(self) -> None:
        data = getattr(os.environ, "_data", None)
        if not isinstance(data, dict):
            self._snapshot = None
            self._set(self._scan())
        elif self._snapshot != data:  # exact: every key and value of the environment
            snapshot = dict(data)
            self._set(self._scan())
            self._snapshot = snapshot

    def _set(self, values: list[str]) -> None:
        self._listed = tuple(values)
        self._longest_first = tuple(sorted(set(values), key=len, reverse=True))  # no partial leftovers

    def listed(self) -> tuple[str, ...]:
        """The values in the scan's order (the scan runs only when the environment changed)."""
        with self._lock:
            self._refresh()
            return self._listed

    def values(self) -> tuple[str, ...]:
        """The distinct values, longest first (so a secret containing another is masked whole)."""
        with self._lock:
            self._refresh()
            return self._longest_first

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by ``*****``, as dbt writes it."""
        for value in self.values():
            if value in text:
                text = text.replace(value, SECRET_MASK)
        return text


#: what the dbt instrumentor masks its exports with
secrets = EnvSecrets()

# dbt's answers, one cache per original function (the modules usually share one), each from dbt's own
# function so a future dbt's rule is followed, not ours: set by _patch
_dbt_answers: dict[Callable[..., list[str]], EnvSecrets] = {}
_hooks = ImportHooks()
_patched: list[ModuleType] = []  # a name another module imported from a wrapped one keeps the wrapper:
# with _dbt_answers cleared (uninstrument) it passes through


def _cached_env_secrets(
    wrapped: Callable[..., list[str]], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[str]:
    """wrapt wrapper of dbt's ``env_secrets()``: its last answer while the environment is unchanged."""
    answers = None if args or kwargs else _dbt_answers.get(wrapped)
    if answers is None:  # uninstrumented, or not the signature we know: dbt's own function, untouched
        return wrapped(*args, **kwargs)
    return list(answers.listed())


def _patch(module: ModuleType) -> None:
    original = getattr(module, "env_secrets", None)
    if callable(original) and not isinstance(original, wrapt.ObjectProxy):
        if original not in _dbt_answers:
            _dbt_answers[original] = EnvSecrets(original)
        wrapt.wrap_function_wrapper(module, "env_secrets", _cached_env_secrets)
        _patched.append(module)


class DbtSecretsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Makes dbt's secret lookups O(1) while the environment is unchanged; dbt's output is the same."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("dbt-core >= 1.8",)

    def _instrument(self, **kwargs: Any) -> None:
        _hooks.activate()
        _hooks.when_imported(EXCEPTIONS_MODULE, _patch)
        _hooks.when_imported(SCRUBBER_MODULE, _patch)

    def _uninstrument(self, **kwargs: Any) -> None:
        _hooks.deactivate()
        while _patched:
            unwrap(_patched.pop(), "env_secrets")
        _dbt_answers.clear()
