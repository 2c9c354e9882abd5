"""Reversible monkey-patching for instrumentors: wrap an attribute once, remember how to undo it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

AnyCallable = Callable[..., Any]
Patch = tuple[object, str, AnyCallable, AnyCallable]  # owner, attribute, original, wrapper


def patch(owner: object, attr: str, factory: Callable[[AnyCallable], AnyCallable], undo: list[Patch]) -> None:
    """Replace ``owner.attr`` by ``factory(original)`` unless already wrapped; record it in ``undo``."""
    current = getattr(owner, attr, None)
    if current is None or getattr(current, "__floe_original__", None) is not None:
        return
    wrapper = factory(current)
    wrapper.__floe_original__ = current  # type: ignore[attr-defined]
    setattr(owner, attr, wrapper)
    undo.append((owner, attr, current, wrapper))


def unpatch_all(undo: list[Patch]) -> None:
    """Restore every recorded attribute (latest first) whose wrapper is still in place."""
    for owner, attr, original, wrapper in reversed(undo):
        if getattr(owner, attr, None) is wrapper:
            setattr(owner, attr, original)
    undo.clear()
