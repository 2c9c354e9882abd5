"""Discovery of backend plugins in the ``floe.telemetry_backends`` group, and the rule for shared names.

Entry points are listed without importing anything; a plugin module is imported only when its name is
selected. Two plugins registering one name: a plugin from another distribution wins over this distro's
built-in of the same name (a platform team installs a plugin on purpose), so the outcome never depends
on install order; among several external ones the first by distribution name wins. The losers are
reported by the plan (and shown by ``floe-otel doctor``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


def installed_entry_points(group: str) -> tuple[EntryPointRef, ...]:
    """Every entry point of ``group`` in this environment (one metadata scan, nothing imported)."""
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        name = dist.metadata["Name"] if dist is not None else None
        out.append(
            EntryPointRef(group, ep.name, ep.value, name, dist.version if dist is not None else None, ep.load)
        )
    return tuple(out)


def candidates(refs: Sequence[EntryPointRef], name: str) -> list[EntryPointRef]:
    """Plugins registered as ``name``, the winner first (external before built-in, then by distribution)."""
    found = [ref for ref in refs if ref.name == name]
    return sorted(found, key=lambda ref: (ref.builtin, ref.dist or "", ref.value))
