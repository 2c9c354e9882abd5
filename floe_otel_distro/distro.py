"""The ``opentelemetry_distro`` entry point ``floe``: makes the plan once, reports it, gates instrumentors.

``_configure`` is three verbs: make the plan from ``os.environ``, report its problems (one ``floe-otel:``
line each; strict mode exits 78 on any), and nothing else — the configurator installs it. It never
raises into the host program.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from floe_otel_distro import _state
from floe_otel_distro.installer import STRICT_EXIT_STATUS, write_line
from floe_otel_distro.plan import FATAL, Inputs, Plan, build_plan


def report(plan: Plan) -> None:
    """One stderr line per problem, saying what happens next; strict mode: exit 78 on any problem."""
    for problem in plan.problems:
        if plan.strict:
            write_line(problem.line() + " (FLOE_OTEL_STRICT=true: exiting)")
        elif problem.severity == FATAL:
            write_line(problem.line() + " (telemetry is off; the program runs without it)")
        else:
            write_line(problem.line())
    if plan.fatal_in_strict:
        os._exit(STRICT_EXIT_STATUS)


def make_plan() -> Plan:
    """The process's plan, made and reported once (the configurator calls this too, in case we did not run)."""
    state = _state.STATE
    if state.plan is None:
        try:
            state.plan = build_plan(Inputs(os.environ))
        except Exception as exc:  # a bug of ours must never stop the host program
            from floe_otel_distro.plan import Problem, _off

            problem = Problem(
                FATAL, "floe-otel-distro", "", f"internal error {type(exc).__name__}: {exc}; please report it"
            )
            state.plan = _off("internal error", os.environ.get("FLOE_OTEL_STRICT", "").lower() == "true", [problem], {})
        report(state.plan)
    return state.plan


class FloeDistro(BaseDistro):  # type: ignore[misc]
    """floe's distro: the plan is made here; ``FloeConfigurator`` installs it."""

    def _configure(self, **kwargs: Any) -> None:
        make_plan()

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Instrument only when telemetry is on (disabled, misconfigured or a failed install: nothing)."""
        if not _state.STATE.active:
            return
        super().load_instrumentor(entry_point, **kwargs)
