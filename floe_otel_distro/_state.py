"""Process-wide distro state: the plan made once at start-up and what the installer put in place.

One object, one public ``reset()`` (tests call it through an autouse fixture).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from floe_otel_distro._records import dataclass

if TYPE_CHECKING:
    from floe_otel_distro.installer import Installed
    from floe_otel_distro.plan import Plan


@dataclass
class DistroState:
    """What the distro decided at start-up."""

    plan: Plan | None = None
    installed: Installed | None = None
    attempted: bool = False  # the installer ran (successfully or not)

    @property
    def active(self) -> bool:
        """Telemetry is (to be) installed: a plan says so and installing did not fail."""
        if self.plan is None or not self.plan.active:
            return False
        return not self.attempted or self.installed is not None


STATE = DistroState()


def reset() -> None:
    """Forget everything (tests only; the SDK's global providers are not touched)."""
    STATE.__init__()  # type: ignore[misc]
