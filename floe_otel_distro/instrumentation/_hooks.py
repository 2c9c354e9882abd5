"""Post-import hooks for floe's instrumentors, on wrapt's mechanism (the one the contrib instrumentations use).

wrapt runs a hook at once when the module is already imported, else right after the module's body has
run, and gives the module its normal loader back (``importlib.resources`` keeps working for it). Two
things wrapt leaves to us:

- a hook that raises would fail the application's own ``import``: ours are logged at debug level instead;
- a registered hook cannot be cancelled: :class:`ImportHooks` runs a hook only while the ``instrument()``
  that registered it is in effect, so an uninstrumented instrumentor's pending hook is a no-op and a
  second ``instrument()`` never patches twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType

import wrapt

Hook = Callable[[ModuleType], None]

_log = logging.getLogger(__name__)


def _run(name: str, hook: Hook, module: ModuleType) -> None:
    try:
        hook(module)
    except Exception:  # never break the application's import
        _log.debug("floe-otel: post-import hook for %s failed", name, exc_info=True)


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported (at once if it already is); failures are logged."""
    wrapt.register_post_import_hook(lambda module: _run(name, hook, module), name)


class ImportHooks:
    """One instrumentor's post-import hooks: they run only while it is instrumented.

    ``activate()`` in ``_instrument`` (before registering), ``deactivate()`` in ``_uninstrument``.
    """

    def __init__(self) -> None:
        self._generation = 0
        self.active = False

    def activate(self) -> None:
        """Start a new instrumentation: hooks registered by earlier ones stay no-ops."""
        self._generation += 1
        self.active = True

    def deactivate(self) -> None:
        """Turn every pending hook of this instrumentor into a no-op."""
        self.active = False

    def when_imported(self, name: str, hook: Hook) -> None:
        """Call ``hook(module)`` once ``name`` is imported, if this instrumentation is still in effect."""
        generation = self._generation

        def fire(module: ModuleType) -> None:
            if self.active and self._generation == generation:
                _run(name, hook, module)

        wrapt.register_post_import_hook(fire, name)
