"""Process-wide distro state: the settings loaded once at start-up and what was installed.

One object, one public ``reset()`` (tests call it through an autouse fixture).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floe_otel_distro.backends import TelemetryBackendPlugin
    from floe_otel_distro.settings import ResolvedSettings


@dataclass
class DistroState:
    """What the distro decided at start-up."""

    resolved: ResolvedSettings | None = None
    plugin: TelemetryBackendPlugin | None = None
    disabled_reason: str | None = None  # set when nothing is (to be) installed
    configured: bool = False  # the distro step ran
    installed: bool = False  # providers are installed
    providers: list[Any] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Telemetry is to be installed."""
        return self.resolved is not None and self.disabled_reason is None


STATE = DistroState()


def reset() -> None:
    """Forget everything (tests only; the SDK's global providers are not touched)."""
    STATE.__init__()  # type: ignore[misc]
