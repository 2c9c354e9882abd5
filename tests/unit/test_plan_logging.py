"""The plan decides who exports stdlib log records (one export per record), table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from floe_otel_distro import doctor
from floe_otel_distro.backends import EntryPointRef
from floe_otel_distro.plan import Inputs, Plan, build_plan
from tests.unit.test_plan import fake_entry_points

LOGGING = EntryPointRef(
    "opentelemetry_instrumentor", "logging", "x:LoggingInstrumentor", "opentelemetry-instrumentation-logging", "0.66b1",
    lambda: object,
)
OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
THEIRS = "opentelemetry-instrumentation-logging"


def _plan(env: dict[str, str], *, logging_installed: bool) -> Plan:
    backends = fake_entry_points()

    def lookup(group: str) -> tuple[EntryPointRef, ...]:
        found = backends(group)
        if group == "opentelemetry_instrumentor" and logging_installed:
            return (*found, LOGGING)
        return found

    return build_plan(Inputs({**OTLP, **env}, entry_points=lookup, compiled_default=None))


@pytest.mark.parametrize(
    ("env", "installed", "exporter", "override"),
    [
        # floe exports logs out of the box (upstream needs the instrumentation or the SDK flag)
        ({}, False, "floe", None),
        # the logging instrumentation is installed: floe's handler exports, the instrumentation adds none
        ({}, True, "floe", "false"),
        # upstream's SDK switch: false = the SDK's (here floe's) handler is off ...
        ({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "false"}, False, "none", None),
        # ... and the instrumentation's handler exports, as under the upstream distro
        ({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "false"}, True, THEIRS, None),
        # true: the SDK's (floe's) handler; the instrumentation skips its own on "true" (upstream's rule)
        ({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true"}, True, "floe", None),
        # a true value the instrumentation does not read as true: it is told to add no handler
        ({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "1"}, True, "floe", "false"),
        # the user asked for the instrumentation's handler explicitly: floe's steps aside
        ({"OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "true"}, True, THEIRS, None),
        # the user turned the instrumentation's handler off: floe's exports
        ({"OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false"}, True, "floe", None),
        # the instrumentation disabled by name: floe's handler, nothing overridden
        ({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "logging"}, True, "floe", None),
        # logs off: nobody
        ({"OTEL_LOGS_EXPORTER": "none"}, True, "none", None),
    ],
)
def test_one_exporter_per_log_record(env: dict[str, str], installed: bool, exporter: str, override: Any) -> None:
    """Every combination of the two switches and the instrumentation's presence gives exactly one exporter."""
    plan = _plan(env, logging_installed=installed)
    assert plan.log_export == exporter
    assert plan.env_overrides.get("OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION") == override
    assert plan.to_dict()["log_export"] == exporter


def test_a_bad_sdk_switch_is_one_degraded_line_and_keeps_the_default() -> None:
    """OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=maybe: one problem, floe's handler (the default)."""
    plan = _plan({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "maybe"}, logging_installed=False)
    assert plan.log_export == "floe"
    assert [(p.severity, p.where) for p in plan.problems] == [
        ("degraded", "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED")
    ]


def test_doctor_shows_who_exports_log_records() -> None:
    """The doctor's text names the exporter of log records."""
    text = doctor.render(_plan({}, logging_installed=True))
    assert "log records  exported by floe" in text


def test_the_installer_attaches_no_handler_when_another_exports() -> None:
    """log_export != floe: the logger provider is built, floe's root-logger handler is not."""
    from floe_otel_distro.installer import Installed, step_logging

    done = Installed()
    off = _plan({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "false"}, logging_installed=True)
    step_logging(off, done, None)
    assert done.logger_provider is not None and done.handler is None
    done = Installed()
    step_logging(_plan({}, logging_installed=True), done, None)
    assert done.handler is not None
