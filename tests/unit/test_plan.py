"""The start-up plan, table-driven: each case's whole plan (backend, every signal, problems) is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from floe_otel_distro.configurators.console import ConsoleBackend
from floe_otel_distro.configurators.grafana_cloud import GrafanaCloudBackend
from floe_otel_distro.configurators.jaeger import JaegerBackend
from floe_otel_distro.configurators.otlp import OtlpBackend

from floe_otel_distro.backends import EntryPointRef
from floe_otel_distro.plan import Inputs, Plan, SignalPlan, build_plan
from floe_otel_distro.plugin import TelemetryBackendPlugin

OWN = "floe-otel-distro"


def _ref(group: str, name: str, obj: Any, dist: str = OWN) -> EntryPointRef:
    return EntryPointRef(group, name, f"x:{name}", dist, "1.0", lambda: obj)


class _ExternalJaeger(JaegerBackend):
    version = "0.1.0a1"


class _BrokenImport:
    """Stands for an entry point whose module raises on import."""


def _fail() -> Any:
    raise ImportError("no module named floe_broken")


BACKENDS = (
    _ref("floe.telemetry_backends", "console", ConsoleBackend),
    _ref("floe.telemetry_backends", "otlp", OtlpBackend),
    _ref("floe.telemetry_backends", "jaeger", JaegerBackend),
    _ref("floe.telemetry_backends", "grafana-cloud", GrafanaCloudBackend),
)
EXTRA: dict[str, tuple[EntryPointRef, ...]] = {
    "opentelemetry_propagator": (_ref("opentelemetry_propagator", "b3", object, "opentelemetry-propagator-b3"),),
    "opentelemetry_traces_exporter": (_ref("opentelemetry_traces_exporter", "zipkin", object, "zipkin"),),
    "opentelemetry_instrumentor": (
        _ref("opentelemetry_instrumentor", "floe_dbt", object),
        _ref("opentelemetry_instrumentor", "requests", object, "opentelemetry-instrumentation-requests"),
    ),
}


def fake_entry_points(*extra_backends: EntryPointRef) -> Any:
    def lookup(group: str) -> tuple[EntryPointRef, ...]:
        if group == "floe.telemetry_backends":
            return BACKENDS + extra_backends
        return EXTRA.get(group, ())

    return lookup


def plan_for(
    env: dict[str, str], *extra_backends: EntryPointRef, grpc: bool = True, version_pin: str | None = None
) -> Plan:
    if version_pin is not None:  # plugins.telemetry_backend.version from a manifest
        yaml_doc = {"plugins": {"telemetry_backend": {"type": "jaeger", "version": version_pin}}}
        env = {**env, "FLOE_MANIFEST": "manifest.yaml"}
        return build_plan(
            Inputs(
                env,
                entry_points=fake_entry_points(*extra_backends),
                grpc_available=lambda: grpc,
                compiled_default=None,
                load_yaml=lambda path, where: yaml_doc,
            )
        )
    return build_plan(
        Inputs(env, entry_points=fake_entry_points(*extra_backends), grpc_available=lambda: grpc, compiled_default=None)
    )


def sig(s: SignalPlan) -> Any:
    if s.on:
        return [" ".join(x for x in (e.kind, e.protocol or "", e.endpoint or "") if x) for e in s.exporters]
    return f"{'LOST' if s.requested else 'off'}: {s.off_reason}"


def summary(plan: Plan) -> dict[str, Any]:
    return {
        "active": plan.active,
        "backend": plan.backend.name if plan.backend else None,
        "traces": sig(plan.signals["traces"]),
        "metrics": sig(plan.signals["metrics"]),
        "logs": sig(plan.signals["logs"]),
        "problems": sorted((p.severity, p.where) for p in plan.problems),
    }


H = "http://c:4318"
G = "http://c:4317"
ALL_HTTP = {s: [f"otlp http/protobuf {H}/v1/{s}"] for s in ("traces", "metrics", "logs")}
ALL_GRPC = {s: [f"otlp grpc {G}"] for s in ("traces", "metrics", "logs")}
LOCAL_HTTP = {s: [f"otlp http/protobuf http://localhost:4318/v1/{s}"] for s in ("traces", "metrics", "logs")}
CONSOLE = {
    "traces": ["console"],
    "metrics": "off: the console backend exports no metrics",
    "logs": "off: the console backend exports no logs",
}
OFF_ALL = dict.fromkeys(("traces", "metrics", "logs"))


def expect(active: bool, backend: str | None, signals: dict[str, Any], *problems: tuple[str, str]) -> dict[str, Any]:
    return {"active": active, "backend": backend, **signals, "problems": sorted(problems)}


def off(reason: str, *problems: tuple[str, str]) -> dict[str, Any]:
    return expect(False, None, {s: f"off: {reason}" for s in ("traces", "metrics", "logs")}, *problems)


PROD = {"FLOE_MODE": "prod"}
NO_GRPC = "TEST_NO_GRPC_EXPORTER"  # not a variable the distro reads: the case runs with grpc "not installed"
E = "OTEL_EXPORTER_OTLP_ENDPOINT"

CASES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    # --- defaults per mode ------------------------------------------------------------------------------
    ("dev default: console tree", {}, expect(True, "console", CONSOLE)),
    ("dev explicit", {"FLOE_MODE": "dev"}, expect(True, "console", CONSOLE)),
    ("staging default: otlp to localhost", {"FLOE_MODE": "staging"}, expect(True, "otlp", LOCAL_HTTP)),
    ("prod default: otlp to localhost", PROD, expect(True, "otlp", LOCAL_HTTP)),
    ("mode is case-insensitive", {"FLOE_MODE": " PROD "}, expect(True, "otlp", LOCAL_HTTP)),
    (
        "bad mode falls back to dev",
        {"FLOE_MODE": "production"},
        expect(True, "console", CONSOLE, ("degraded", "FLOE_MODE")),
    ),
    # --- explicit destinations win in every mode ---------------------------------------------------------
    (
        "dev + endpoint: otlp and the console tree",
        {E: H},
        expect(True, "otlp", {**ALL_HTTP, "traces": [f"otlp http/protobuf {H}/v1/traces", "console"]}),
    ),
    (
        "operator pod without FLOE_MODE",
        {
            E: H,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
        },
        expect(True, "otlp", ALL_HTTP),
    ),
    (
        "dev + OTEL_TRACES_EXPORTER=otlp only",
        {"OTEL_TRACES_EXPORTER": "otlp"},
        expect(True, "otlp", {**LOCAL_HTTP, "traces": ["otlp http/protobuf http://localhost:4318/v1/traces"]}),
    ),
    (
        "dev + per-signal endpoint",
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"},
        expect(True, "otlp", {**LOCAL_HTTP, "traces": ["otlp http/protobuf http://t:4318/v1/traces", "console"]}),
    ),
    (
        "explicit console backend + endpoint: both",
        {"FLOE_TELEMETRY_BACKEND": "console", E: H},
        expect(True, "console", {**ALL_HTTP, "traces": [f"otlp http/protobuf {H}/v1/traces", "console"]}),
    ),
    ("FLOE_OTLP_ENDPOINT", {**PROD, "FLOE_OTLP_ENDPOINT": H}, expect(True, "otlp", ALL_HTTP)),
    (
        "OTEL beats FLOE endpoint",
        {**PROD, E: H, "FLOE_OTLP_ENDPOINT": "http://other:4318"},
        expect(True, "otlp", ALL_HTTP),
    ),
    # --- protocol -----------------------------------------------------------------------------------------
    ("port 4317 means grpc", {**PROD, E: G}, expect(True, "otlp", ALL_GRPC)),
    ("port 4318 means http", {**PROD, E: H}, expect(True, "otlp", ALL_HTTP)),
    (
        "explicit grpc",
        {**PROD, E: "http://c:9000", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        expect(True, "otlp", {s: ["otlp grpc http://c:9000"] for s in ("traces", "metrics", "logs")}),
    ),
    (
        "other port: http default",
        {**PROD, E: "http://c:9000"},
        expect(True, "otlp", {s: [f"otlp http/protobuf http://c:9000/v1/{s}"] for s in ("traces", "metrics", "logs")}),
    ),
    (
        "explicit http on the grpc port is flagged",
        {**PROD, E: G, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        expect(
            True,
            "otlp",
            {s: [f"otlp http/protobuf {G}/v1/{s}"] for s in ("traces", "metrics", "logs")},
            ("warning", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    ),
    (
        "explicit grpc on the http port is flagged",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        expect(
            True,
            "otlp",
            {s: [f"otlp grpc {H}"] for s in ("traces", "metrics", "logs")},
            ("warning", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    ),
    (
        "per-signal protocol beats the generic one",
        {
            **PROD,
            E: "http://c:9000",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        },
        expect(
            True,
            "otlp",
            {
                "traces": ["otlp grpc http://c:9000"],
                "metrics": ["otlp grpc http://c:9000"],
                "logs": ["otlp http/protobuf http://c:9000/v1/logs"],
            },
        ),
    ),
    (
        "bad protocol: degraded to the port rule",
        {**PROD, E: G, "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
        expect(True, "otlp", ALL_GRPC, ("degraded", "OTEL_EXPORTER_OTLP_PROTOCOL")),
    ),
    (
        "grpc without the grpc exporter: every signal lost",
        {**PROD, E: G, NO_GRPC: "1"},
        expect(
            False,
            "otlp",
            {s: "LOST: the OTLP/gRPC exporter is not installed" for s in ("traces", "metrics", "logs")},
            ("degraded", "OTEL_EXPORTER_OTLP_ENDPOINT (port 4317)"),
        ),
    ),
    (
        "scheme-less grpc endpoint",
        {**PROD, E: "c:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
        expect(True, "otlp", {s: ["otlp grpc http://c:4317"] for s in ("traces", "metrics", "logs")}),
    ),
    # --- endpoints -----------------------------------------------------------------------------------------
    (
        "per-signal endpoint used as is",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4318/custom"},
        expect(True, "otlp", {**ALL_HTTP, "metrics": ["otlp http/protobuf http://m:4318/custom"]}),
    ),
    ("trailing slash", {**PROD, E: H + "/"}, expect(True, "otlp", ALL_HTTP)),
    (
        "endpoint with a query string: lost",
        {**PROD, E: "http://c:4318?token=abc"},
        expect(
            False, "otlp", {s: f"LOST: {E}: unusable endpoint" for s in ("traces", "metrics", "logs")}, ("degraded", E)
        ),
    ),
    (
        "port 0: lost",
        {**PROD, E: "http://c:0"},
        expect(
            False, "otlp", {s: f"LOST: {E}: unusable endpoint" for s in ("traces", "metrics", "logs")}, ("degraded", E)
        ),
    ),
    (
        "port out of range: lost",
        {**PROD, E: "http://c:99999"},
        expect(
            False, "otlp", {s: f"LOST: {E}: unusable endpoint" for s in ("traces", "metrics", "logs")}, ("degraded", E)
        ),
    ),
    (
        "not a URL: lost",
        {**PROD, E: "ftp://c:21"},
        expect(
            False, "otlp", {s: f"LOST: {E}: unusable endpoint" for s in ("traces", "metrics", "logs")}, ("degraded", E)
        ),
    ),
    (
        "one bad per-signal endpoint loses only that signal",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "nope"},
        expect(
            True,
            "otlp",
            {**ALL_HTTP, "logs": "LOST: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: unusable endpoint"},
            ("degraded", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
        ),
    ),
    # --- exporters per signal -------------------------------------------------------------------------------
    (
        "traces none",
        {**PROD, E: H, "OTEL_TRACES_EXPORTER": "none"},
        expect(True, "otlp", {**ALL_HTTP, "traces": "off: OTEL_TRACES_EXPORTER=none"}),
    ),
    (
        "logs bogus: logs lost, the rest exported",
        {**PROD, E: H, "OTEL_LOGS_EXPORTER": "bogus"},
        expect(
            True,
            "otlp",
            {**ALL_HTTP, "logs": "LOST: OTEL_LOGS_EXPORTER: no exporter 'bogus' is installed"},
            ("degraded", "OTEL_LOGS_EXPORTER"),
        ),
    ),
    (
        "otlp,console on traces",
        {**PROD, E: H, "OTEL_TRACES_EXPORTER": "otlp,console"},
        expect(True, "otlp", {**ALL_HTTP, "traces": [f"otlp http/protobuf {H}/v1/traces", "console"]}),
    ),
    (
        "installed third-party exporter",
        {**PROD, E: H, "OTEL_TRACES_EXPORTER": "zipkin"},
        expect(True, "otlp", {**ALL_HTTP, "traces": ["zipkin"]}),
    ),
    (
        "none mixed with otlp: none ignored",
        {**PROD, E: H, "OTEL_METRICS_EXPORTER": "otlp,none"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_METRICS_EXPORTER")),
    ),
    (
        "every signal none: nothing installed",
        {**PROD, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"},
        expect(False, "otlp", {s: f"off: OTEL_{s.upper()}_EXPORTER=none" for s in ("traces", "metrics", "logs")}),
    ),
    (
        "FLOE_METRICS_ENABLED=false",
        {**PROD, E: H, "FLOE_METRICS_ENABLED": "false"},
        expect(True, "otlp", {**ALL_HTTP, "metrics": "off: disabled by FLOE_METRICS_ENABLED"}),
    ),
    (
        "bad FLOE_LOGS_ENABLED: default on",
        {**PROD, E: H, "FLOE_LOGS_ENABLED": "maybe"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "FLOE_LOGS_ENABLED")),
    ),
    (
        "console metrics and logs in dev",
        {"OTEL_METRICS_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "console"},
        expect(True, "console", {"traces": ["console"], "metrics": ["console"], "logs": ["console"]}),
    ),
    (
        "endpoint set but no signal exports otlp",
        {
            **PROD,
            E: H,
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
        expect(
            True,
            "otlp",
            {
                "traces": ["console"],
                "metrics": "off: OTEL_METRICS_EXPORTER=none",
                "logs": "off: OTEL_LOGS_EXPORTER=none",
            },
            ("warning", E),
        ),
    ),
    # --- switches -----------------------------------------------------------------------------------------------
    ("OTEL_SDK_DISABLED", {"OTEL_SDK_DISABLED": "true", E: H}, off("OTEL_SDK_DISABLED=true")),
    ("OTEL_SDK_DISABLED=false is on", {**PROD, "OTEL_SDK_DISABLED": "false", E: H}, expect(True, "otlp", ALL_HTTP)),
    ("FLOE_OTEL_ENABLED=false", {"FLOE_OTEL_ENABLED": "false"}, off("disabled by FLOE_OTEL_ENABLED")),
    (
        "bad OTEL_SDK_DISABLED: default (on)",
        {**PROD, "OTEL_SDK_DISABLED": "yess", E: H},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_SDK_DISABLED")),
    ),
    # --- backends ---------------------------------------------------------------------------------------------
    ("jaeger backend", {**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger", E: H}, expect(True, "jaeger", ALL_HTTP)),
    (
        "backend name is case-insensitive",
        {**PROD, "FLOE_TELEMETRY_BACKEND": "JAEGER", E: H},
        expect(True, "jaeger", ALL_HTTP),
    ),
    (
        "unknown backend: fatal",
        {**PROD, "FLOE_TELEMETRY_BACKEND": "datadog"},
        off("no usable telemetry backend", ("fatal", "FLOE_TELEMETRY_BACKEND")),
    ),
    (
        "grafana-cloud without config: fatal",
        {**PROD, "FLOE_TELEMETRY_BACKEND": "grafana-cloud"},
        off("no usable telemetry backend", ("fatal", "plugins.telemetry_backend.config.endpoint")),
    ),
    ("backend console in prod", {**PROD, "FLOE_TELEMETRY_BACKEND": "console"}, expect(True, "console", CONSOLE)),
    # --- sampler ------------------------------------------------------------------------------------------------
    (
        "bad sampler: default",
        {**PROD, E: H, "OTEL_TRACES_SAMPLER": "sometimes"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_TRACES_SAMPLER")),
    ),
    (
        "bad sampler arg: ratio default",
        {**PROD, E: H, "OTEL_TRACES_SAMPLER_ARG": "1.5"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_TRACES_SAMPLER_ARG")),
    ),
    (
        "bad FLOE ratio",
        {**PROD, E: H, "FLOE_SAMPLING_RATIO": "half"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "FLOE_SAMPLING_RATIO")),
    ),
    # --- tunables degrade one setting, never a signal --------------------------------------------------------------
    (
        "bad queue size",
        {**PROD, E: H, "OTEL_BSP_MAX_QUEUE_SIZE": "-1"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_BSP_MAX_QUEUE_SIZE")),
    ),
    (
        "batch larger than queue",
        {**PROD, E: H, "OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")),
    ),
    (
        "infinite shutdown timeout",
        {**PROD, E: H, "FLOE_SHUTDOWN_TIMEOUT": "inf"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "FLOE_SHUTDOWN_TIMEOUT")),
    ),
    (
        "nan export timeout",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_TIMEOUT": "nan"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_EXPORTER_OTLP_TIMEOUT")),
    ),
    (
        "bad metric interval",
        {**PROD, E: H, "OTEL_METRIC_EXPORT_INTERVAL": "soon"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_METRIC_EXPORT_INTERVAL")),
    ),
    (
        "bad log level",
        {**PROD, E: H, "FLOE_LOG_LEVEL": "loud"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "FLOE_LOG_LEVEL")),
    ),
    (
        "bad temporality",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sideways"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")),
    ),
    # --- headers ------------------------------------------------------------------------------------------------
    (
        "good headers",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20x,x-tenant=a"},
        expect(True, "otlp", ALL_HTTP),
    ),
    (
        "bad header entry: dropped, one problem",
        {**PROD, E: H, "OTEL_EXPORTER_OTLP_HEADERS": "authorization=a,broken"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_EXPORTER_OTLP_HEADERS")),
    ),
    (
        "headers file missing",
        {**PROD, E: H, "FLOE_OTLP_HEADERS_FILE": "/nonexistent/headers"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "FLOE_OTLP_HEADERS_FILE")),
    ),
    # --- propagators -----------------------------------------------------------------------------------------------
    ("installed b3 propagator", {**PROD, E: H, "OTEL_PROPAGATORS": "tracecontext,b3"}, expect(True, "otlp", ALL_HTTP)),
    (
        "missing propagator: dropped",
        {**PROD, E: H, "OTEL_PROPAGATORS": "tracecontext,xray"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_PROPAGATORS")),
    ),
    (
        "missing resource detector: dropped",
        {**PROD, E: H, "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "gcp,host"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")),
    ),
    # --- strict ------------------------------------------------------------------------------------------------------
    ("strict and clean", {**PROD, E: H, "FLOE_OTEL_STRICT": "true"}, expect(True, "otlp", ALL_HTTP)),
    (
        "strict with a degraded tunable",
        {**PROD, E: H, "FLOE_OTEL_STRICT": "true", "OTEL_BSP_SCHEDULE_DELAY": "0"},
        expect(True, "otlp", ALL_HTTP, ("degraded", "OTEL_BSP_SCHEDULE_DELAY")),
    ),
]


@pytest.mark.parametrize(("env", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_plan_table(env: dict[str, str], expected: dict[str, Any]) -> None:
    """The whole plan for each input combination: backend, each signal's destination or reason, problems."""
    assert summary(plan_for(env, grpc=NO_GRPC not in env)) == expected


def test_table_is_large_enough() -> None:
    """The issue asks for at least 60 combinations."""
    assert len(CASES) >= 60


def test_strict_problem_is_fatal_in_strict() -> None:
    """Strict mode turns any problem into an exit (``fatal_in_strict``); a clean strict plan runs."""
    assert plan_for({**PROD, E: H, "FLOE_OTEL_STRICT": "true", "OTEL_BSP_SCHEDULE_DELAY": "0"}).fatal_in_strict
    assert not plan_for({**PROD, E: H, "FLOE_OTEL_STRICT": "true"}).fatal_in_strict
    assert not plan_for({**PROD, E: H, "OTEL_BSP_SCHEDULE_DELAY": "0"}).fatal_in_strict


def test_degraded_values_fall_back_to_defaults() -> None:
    """A bad tunable yields its default, not a disabled signal."""
    plan = plan_for(
        {**PROD, E: H, "FLOE_SHUTDOWN_TIMEOUT": "inf", "OTEL_BSP_MAX_QUEUE_SIZE": "x", "OTEL_TRACES_SAMPLER_ARG": "2"}
    )
    assert (plan.shutdown_timeout_s, plan.bsp_max_queue_size, plan.sampler_ratio) == (2.0, 2048, 0.1)


def test_sampling_per_mode_and_overrides() -> None:
    """Mode ratios, FLOE ratio, OTEL arg wins; non-ratio samplers carry no ratio."""
    assert [plan_for({"FLOE_MODE": m}).sampler_ratio for m in ("dev", "staging", "prod")] == [1.0, 0.5, 0.1]
    assert plan_for({**PROD, "FLOE_SAMPLING_RATIO": "0.3"}).sampler_ratio == 0.3
    assert plan_for({**PROD, "FLOE_SAMPLING_RATIO": "0.3", "OTEL_TRACES_SAMPLER_ARG": "0.7"}).sampler_ratio == 0.7
    always = plan_for({**PROD, "OTEL_TRACES_SAMPLER": "always_on"})
    assert (always.sampler, always.sampler_ratio) == ("always_on", None)
    assert not [p for p in always.problems if "SAMPLER" in p.where or "RATIO" in p.where]


def test_a_ratio_given_to_a_sampler_that_takes_none_is_one_warning_each_and_fatal_only_in_strict() -> None:
    """The SDK drops OTEL_TRACES_SAMPLER_ARG without a word when the sampler is not ratio-based (an Operator
    CR with ``type: parentbased_always_on, argument: "0.25"``): the plan says so, once per ignored value."""
    env = {**PROD, "OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    plan = plan_for({**env, "FLOE_SAMPLING_RATIO": "0.5"})
    assert (plan.sampler, plan.sampler_ratio, plan.active) == ("parentbased_always_on", None, True)
    found = {(p.severity, p.where, p.value) for p in plan.problems}
    assert found == {
        ("warning", "OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("warning", "FLOE_SAMPLING_RATIO", "0.5"),
    }
    assert all("parentbased_traceidratio" in p.message for p in plan.problems)
    assert not plan.fatal_in_strict
    assert plan_for({**env, "FLOE_OTEL_STRICT": "true"}).fatal_in_strict


def test_headers_per_signal_replace_generic_and_values_stay_out_of_json(tmp_path: Path) -> None:
    """Per-signal headers replace the generic ones (as the exporters do); the JSON has names only."""
    headers_file = tmp_path / "headers"
    headers_file.write_text("authorization=Bearer file-secret\n")
    plan = plan_for(
        {
            **PROD,
            E: H,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-logs=1",
            "FLOE_OTLP_HEADERS_FILE": str(headers_file),
        }
    )
    traces = plan.signals["traces"].exporters[0]
    logs = plan.signals["logs"].exporters[0]
    assert dict(traces.headers) == {"authorization": "Bearer file-secret", "x-tenant": "acme"}
    assert dict(logs.headers) == {"x-logs": "1"}
    text = json.dumps(plan.to_dict())
    assert "file-secret" not in text
    assert "acme" not in text
    assert '"header_names": ["authorization", "x-tenant"]' in text


def test_secret_bearing_endpoint_is_redacted_in_json() -> None:
    """Credentials in an endpoint never reach the plan's JSON."""
    plan = plan_for({**PROD, E: "https://user:p%40ss@c:4318"})
    text = json.dumps(plan.to_dict())
    assert "p%40ss" not in text
    assert "user" not in text
    assert plan.signals["traces"].exporters[0].endpoint == "https://user:p%40ss@c:4318/v1/traces"


def test_manifest_and_spec_layers(tmp_path: Path) -> None:
    """Env beats the spec, the spec beats the manifest; the sources say where each value came from."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        f"plugins:\n  telemetry_backend:\n    type: jaeger\nobservability:\n  tracing:\n    endpoint: {H}\n"
    )
    spec = tmp_path / "floe.yaml"
    spec.write_text("metadata:\n  name: orders\n  version: 2.1.0\nplatform:\n  manifest: manifest.yaml\n")
    plan = plan_for({"FLOE_SPEC": str(spec), "FLOE_MODE": "prod", "FLOE_SAMPLING_RATIO": "0.25"})
    assert (plan.mode, plan.backend and plan.backend.name, plan.sampler_ratio) == ("prod", "jaeger", 0.25)
    assert not plan.problems
    assert plan.floe_attributes["floe.product.name"] == "orders"
    assert plan.signals["traces"].exporters[0].endpoint == f"{H}/v1/traces"
    assert plan.sources["backend"] == f"manifest:{manifest} plugins.telemetry_backend.type"
    assert plan.sources["mode"] == "env:FLOE_MODE"
    assert plan.sources["product_name"] == f"spec:{spec} metadata.name"


def test_unreadable_manifest_is_skipped_not_fatal(tmp_path: Path) -> None:
    """A manifest that cannot be used is ignored with one degraded problem; export goes on."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)
        )
    )
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    for path in (bomb, fifo, tmp_path / "missing.yaml", tmp_path):
        plan = plan_for({**PROD, E: H, "FLOE_MANIFEST": str(path)})
        assert summary(plan) == expect(True, "otlp", ALL_HTTP, ("degraded", "FLOE_MANIFEST")), path


def test_oci_manifest_reference_is_not_a_path(tmp_path: Path) -> None:
    """floe's documented ``platform.manifest: oci://…`` never disables telemetry."""
    spec = tmp_path / "floe.yaml"
    spec.write_text("metadata:\n  name: orders\nplatform:\n  manifest: oci://registry/floe/platform:1.0\n")
    plan = plan_for({"FLOE_SPEC": str(spec), **PROD, E: H})
    assert summary(plan)["traces"] == ALL_HTTP["traces"]
    assert [p.severity for p in plan.problems] == ["warning"]


def test_collector_bypass_in_prod_is_a_warning(tmp_path: Path) -> None:
    """An env endpoint elsewhere than the manifest's collector is flagged in prod, allowed in dev."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("observability:\n  tracing:\n    endpoint: http://otel-collector.platform.svc:4317\n")
    env = {"FLOE_MANIFEST": str(manifest), E: "https://vendor.example.com:443"}
    prod = plan_for({**env, **PROD})
    assert [(p.severity, p.where) for p in prod.problems] == [("warning", E)]
    assert not plan_for({**env, "FLOE_MODE": "dev"}).problems
    same = plan_for({"FLOE_MANIFEST": str(manifest), **PROD, E: "http://otel-collector.platform.svc:4318"})
    assert not same.problems


def test_external_plugin_shadows_the_builtin() -> None:
    """A plugin from another distribution wins over the built-in of the same name, whatever the order."""
    external = _ref("floe.telemetry_backends", "jaeger", _ExternalJaeger, "floe-telemetry-jaeger")
    plan = plan_for({**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger", E: H}, external)
    assert plan.backend is not None
    assert (plan.backend.dist, plan.backend.plugin_version) == ("floe-telemetry-jaeger", "0.1.0a1")
    assert plan.backend.shadows == ("floe-otel-distro 1.0",)
    assert [(p.severity, p.where) for p in plan.problems] == [("warning", "backend 'jaeger'")]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (EntryPointRef("floe.telemetry_backends", "x", "m:X", "d", "1", _fail), "failed to import"),
        (_ref("floe.telemetry_backends", "x", _BrokenImport, "d"), "is neither a floe_otel_distro.plugin nor"),
    ],
)
def test_broken_plugins_are_fatal_with_a_reason(ref: EntryPointRef, message: str) -> None:
    """A plugin that cannot be used turns telemetry off with one fatal problem naming why."""
    plan = plan_for({**PROD, "FLOE_TELEMETRY_BACKEND": "x"}, ref)
    assert not plan.active
    assert len(plan.problems) == 1
    assert plan.problems[0].severity == "fatal"
    assert message in plan.problems[0].message


def test_plugin_for_another_api_major_is_refused() -> None:
    """floe_api_version 2.x is refused."""

    class Future(OtlpBackend):
        floe_api_version = "2.0"

    plan = plan_for({**PROD, "FLOE_TELEMETRY_BACKEND": "future"}, _ref("floe.telemetry_backends", "future", Future))
    assert not plan.active
    assert "floe API 2.0" in plan.problems[0].message


def test_instrumentors_and_disabled_ones() -> None:
    """Instrumentors are listed; OTEL_PYTHON_DISABLED_INSTRUMENTATIONS turns ours and theirs off."""
    plan = plan_for({**PROD, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests"})
    assert dict(plan.instrumentors) == {"floe_dbt": True, "requests": False}
    assert dict(plan_for({**PROD, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"}).instrumentors) == {
        "floe_dbt": False,
        "requests": False,
    }


def test_env_overrides_only_what_the_sdk_reads() -> None:
    """Propagators are rewritten only when one is missing; detectors always name floe's."""
    assert dict(plan_for(PROD).env_overrides) == {"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "floe,floe_process,host,os"}
    fixed = plan_for({**PROD, "OTEL_PROPAGATORS": "tracecontext,xray,b3"})
    assert fixed.propagators == ("tracecontext", "b3")
    assert fixed.env_overrides["OTEL_PROPAGATORS"] == "tracecontext,b3"
    assert plan_for({**PROD, "OTEL_PROPAGATORS": "none"}).propagators == ()


def test_build_plan_never_raises_on_garbage() -> None:
    """Arbitrary junk in every variable the distro reads still gives a plan."""
    from floe_otel_distro import env as env_names

    names = [
        v for k, v in vars(env_names).items() if k.isupper() and isinstance(v, str) and v.startswith(("OTEL", "FLOE"))
    ]
    for junk in ("", " ", "\x00", "=,=,", "%zz", "-1e309", "☃" * 50, "a" * 10000, "http://[::1", "[::1]:x"):
        plan = plan_for(dict.fromkeys(names, junk))
        assert isinstance(plan, Plan)


def test_plugin_is_a_plugin() -> None:
    """The built-ins pass the public plugin checker."""
    from floe_otel_distro.plugin import verify_plugin

    for cls in (ConsoleBackend, OtlpBackend, JaegerBackend):
        assert verify_plugin(cls) == []
    assert verify_plugin(GrafanaCloudBackend, {"endpoint": "https://x"}) == []
    assert verify_plugin(TelemetryBackendPlugin) != []


# --- floe's files as floe ships them: compiled artifacts, manifest, floe.yaml ----------------------------------
def _compiled(**telemetry: Any) -> str:
    base: dict[str, Any] = {
        "enabled": True,
        "otlp_endpoint": "http://floe-platform-otel:4317",
        "otlp_protocol": "grpc",
        "resource_attributes": {
            "service_name": "orders",
            "service_version": "2.1.0",
            "deployment_environment": "dev",
            "floe_namespace": "default",
            "floe_product_name": "orders",
            "floe_product_version": "2.1.0",
            "floe_mode": "dev",
        },
        "backend": "console",
    }
    base.update(telemetry)
    return json.dumps({"version": "0.5.0", "observability": {"telemetry": base, "lineage": True}})


FG = "http://floe-platform-otel:4317"
FLOE_GRPC = {s: [f"otlp grpc {FG}"] for s in ("traces", "metrics", "logs")}
FLOE_GRPC_TREE = {**FLOE_GRPC, "traces": [f"otlp grpc {FG}", "console"]}
DEMO_MANIFEST = f"observability:\n  tracing:\n    enabled: true\n    exporter: otlp\n    endpoint: {FG}\n"
C, M, S = "compiled_artifacts.json", "manifest.yaml", "floe.yaml"

FILE_CASES: list[tuple[str, dict[str, str], dict[str, str], dict[str, Any]]] = [
    ("compiled: gRPC to floe's collector, tree in dev", {C: _compiled()}, {}, expect(True, "otlp", FLOE_GRPC_TREE)),
    (
        "compiled http protocol",
        {C: _compiled(otlp_endpoint="http://c:4318", otlp_protocol="http")},
        PROD,
        expect(True, "otlp", ALL_HTTP),
    ),
    (
        "compiled protocol contradicting the port is flagged",
        {C: _compiled(otlp_endpoint="http://c:4318", otlp_protocol="grpc")},
        PROD,
        expect(
            True,
            "otlp",
            {s: ["otlp grpc http://c:4318"] for s in ("traces", "metrics", "logs")},
            ("warning", f"compiled:{{d}}/{C} observability.telemetry.otlp_protocol"),
        ),
    ),
    (
        "env endpoint keeps the port rule, not the compiled protocol",
        {C: _compiled(otlp_protocol="grpc")},
        {**PROD, E: H},
        expect(True, "otlp", ALL_HTTP),
    ),
    (
        "OTEL_* protocol beats compiled",
        {C: _compiled()},
        {**PROD, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        expect(True, "otlp", FLOE_GRPC),
    ),
    (
        "compiled enabled false",
        {C: _compiled(enabled=False)},
        {},
        off(f"disabled by compiled:{{d}}/{C} observability.telemetry.enabled"),
    ),
    (
        "FLOE_OTEL_ENABLED beats compiled",
        {C: _compiled(enabled=False)},
        {"FLOE_OTEL_ENABLED": "true", **PROD},
        expect(True, "otlp", FLOE_GRPC),
    ),
    (
        "a bad compiled field is ignored alone",
        {C: _compiled(otlp_protocol="carrier-pigeon")},
        PROD,
        expect(True, "otlp", FLOE_GRPC, ("degraded", f"{{d}}/{C}: observability.telemetry.otlp_protocol")),
    ),
    (
        "FLOE_COMPILED_ARTIFACTS=none skips it",
        {C: _compiled()},
        {**PROD, "FLOE_COMPILED_ARTIFACTS": "none"},
        expect(True, "otlp", LOCAL_HTTP),
    ),
    (
        "compiled not JSON",
        {C: "{nope"},
        PROD,
        expect(True, "otlp", LOCAL_HTTP, ("degraded", "FLOE_COMPILED_ARTIFACTS")),
    ),
    # --- the demo manifest as floe ships it: gRPC on :4317, no protocol key
    ("demo manifest: gRPC by the port", {M: DEMO_MANIFEST}, PROD, expect(True, "otlp", FLOE_GRPC)),
    ("demo manifest in dev: tree too", {M: DEMO_MANIFEST}, {}, expect(True, "otlp", FLOE_GRPC_TREE)),
    (
        "demo manifest, no grpc exporter",
        {M: DEMO_MANIFEST},
        PROD,
        expect(
            False,
            "otlp",
            {s: "LOST: the OTLP/gRPC exporter is not installed" for s in ("traces", "metrics", "logs")},
            ("degraded", f"manifest:{{d}}/{M} observability.tracing.endpoint (port 4317)"),
        ),
    ),
    # --- observability.tracing.exporter
    (
        "tracing.exporter none",
        {M: DEMO_MANIFEST.replace("otlp\n", "none\n", 1)},
        PROD,
        expect(True, "otlp", {**FLOE_GRPC, "traces": f"off: manifest:{{d}}/{M} observability.tracing.exporter=none"}),
    ),
    (
        "tracing.exporter console",
        {M: "observability:\n  tracing:\n    exporter: console\n"},
        PROD,
        expect(True, "otlp", {**LOCAL_HTTP, "traces": ["console"]}),
    ),
    (
        "OTEL_TRACES_EXPORTER beats tracing.exporter",
        {M: "observability:\n  tracing:\n    exporter: none\n"},
        {**PROD, "OTEL_TRACES_EXPORTER": "otlp"},
        expect(True, "otlp", LOCAL_HTTP),
    ),
    # --- keys floe's schema rejects are not read
    (
        "rejected manifest keys: one warning each, not read",
        {
            M: "observability:\n  mode: prod\n  namespace: x\n  tracing:\n    protocol: grpc\n    sampling_ratio: 0.2\n"
            "  metrics:\n    enabled: false\n  logging:\n    enabled: false\n"
        },
        {},
        expect(
            True,
            "console",
            CONSOLE,
            *[
                ("warning", f"{{d}}/{M}: observability.{k}")
                for k in (
                    "mode",
                    "namespace",
                    "tracing.protocol",
                    "tracing.sampling_ratio",
                    "metrics.enabled",
                    "logging.enabled",
                )
            ],
        ),
    ),
    (
        "rejected spec keys",
        {S: "metadata:\n  name: orders\n  namespace: sales\nobservability:\n  mode: prod\n"},
        {},
        expect(
            True,
            "console",
            CONSOLE,
            ("warning", f"{{d}}/{S}: metadata.namespace"),
            ("warning", f"{{d}}/{S}: observability"),
        ),
    ),
    (
        "a value floe rejects is ignored alone",
        {
            M: "plugins:\n  telemetry_backend:\n    type: jaeger\n    version: latest\n"
            "observability:\n  logging:\n    level: info\n"
        },
        PROD,
        expect(
            True,
            "jaeger",
            LOCAL_HTTP,
            ("degraded", f"{{d}}/{M}: plugins.telemetry_backend.version"),
            ("degraded", f"{{d}}/{M}: observability.logging.level"),
        ),
    ),
    (
        "scalar telemetry_backend (floe's quickstart form) works, with a note",
        {M: "plugins:\n  telemetry_backend: jaeger\n"},
        PROD,
        expect(True, "jaeger", LOCAL_HTTP, ("warning", f"{{d}}/{M}: plugins.telemetry_backend")),
    ),
    (
        "oci:// manifest with compiled artifacts: compiled are used, one line",
        {S: "metadata:\n  name: orders\nplatform:\n  manifest: oci://registry/floe/platform:1.0\n", C: _compiled()},
        PROD,
        expect(True, "otlp", FLOE_GRPC, ("warning", f"{{d}}/{S}: platform.manifest")),
    ),
]


def _write_files(tmp_path: Path, files: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    variables = {C: "FLOE_COMPILED_ARTIFACTS", M: "FLOE_MANIFEST", S: "FLOE_SPEC"}
    for name, variable in variables.items():
        if name in files:
            env.setdefault(variable, str(tmp_path / name))
    return env


@pytest.mark.parametrize(("files", "env", "expected"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_floe_files_table(tmp_path: Path, files: dict[str, str], env: dict[str, str], expected: dict[str, Any]) -> None:
    """floe's own files, each alone and together: the whole plan, problems named by file and key."""
    env = _write_files(tmp_path, files, env)
    grpc = "no grpc exporter" not in str(expected) and "not installed" not in str(expected)
    got = summary(plan_for(env, grpc=grpc))
    want = json.loads(json.dumps(expected).replace("{d}", str(tmp_path)))
    want["problems"] = sorted(tuple(p) for p in want["problems"])
    assert got == want


def test_compiled_artifacts_feed_identity_sampling_batch_logging_auth(tmp_path: Path) -> None:
    """Every key of observability.telemetry the distro reads lands in the plan; OTEL_* still win."""
    text = _compiled(
        sampling={"dev": 1.0, "staging": 0.5, "prod": 0.2},
        resource_attributes={
            "service_name": "orders-svc",
            "service_version": "2.1.0",
            "deployment_environment": "prod",
            "floe_namespace": "sales",
            "floe_product_name": "orders",
            "floe_product_version": "2.1.0",
            "floe_mode": "prod",
        },
        batch_processor={"max_queue_size": 4096, "max_export_batch_size": 256, "schedule_delay_millis": 1000},
        logging={"log_level": "WARNING", "json_output": True},
        authentication={"auth_type": "bearer", "bearer_token": "tok-123", "header_name": "Authorization"},
    )
    env = _write_files(tmp_path, {C: text}, {})
    plan = plan_for(env)
    assert (plan.mode, plan.sampler_ratio, plan.log_level) == ("prod", 0.2, "WARNING")
    assert plan.resource["service.name"] == "orders-svc"
    assert plan.resource["deployment.environment"] == "prod"
    assert dict(plan.floe_attributes) == {
        "floe.namespace": "sales",
        "floe.product.name": "orders",
        "floe.product.version": "2.1.0",
        "floe.mode": "prod",
    }
    assert (plan.bsp_max_queue_size, plan.bsp_max_export_batch_size, plan.bsp_schedule_delay_ms) == (4096, 256, 1000)
    exporter = plan.signals["traces"].exporters[0]
    assert (exporter.protocol, exporter.endpoint, dict(exporter.headers)) == (
        "grpc",
        FG,
        {"authorization": "Bearer tok-123"},
    )
    assert "tok-123" not in json.dumps(plan.to_dict())
    assert plan.sources["sampling_ratio"].endswith("observability.telemetry.sampling.prod")
    over = plan_for(
        {
            **env,
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "50",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=env",
            "FLOE_MODE": "staging",
        }
    )
    assert (over.bsp_max_queue_size, over.mode, over.sampler_ratio) == (100, "staging", 0.5)
    assert dict(over.signals["traces"].exporters[0].headers) == {"authorization": "env"}


def test_masked_compiled_credential_is_one_problem(tmp_path: Path) -> None:
    """floe writes SecretStr as ********** into the JSON: exported without it, said once."""
    text = _compiled(authentication={"auth_type": "api_key", "api_key": "**********", "header_name": "DD-API-KEY"})
    plan = plan_for(_write_files(tmp_path, {C: text}, PROD))
    assert [(p.severity, p.where) for p in plan.problems] == [
        ("degraded", f"compiled:{tmp_path}/{C} observability.telemetry.authentication")
    ]
    assert all(not e.headers for s in plan.signals.values() for e in s.exporters)


def test_compiled_default_location(tmp_path: Path) -> None:
    """Without the variable, floe's default output (target/compiled_artifacts.json) is read if it exists."""
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / C).write_text(_compiled())
    inputs = Inputs(
        PROD,
        entry_points=fake_entry_points(),
        grpc_available=lambda: True,
        compiled_default=str(tmp_path / "target" / C),
    )
    assert summary(build_plan(inputs)) == expect(True, "otlp", FLOE_GRPC)
    missing = Inputs(PROD, entry_points=fake_entry_points(), compiled_default=str(tmp_path / "nope.json"))
    assert summary(build_plan(missing)) == expect(True, "otlp", LOCAL_HTTP)


def test_env_only_plan_never_imports_pydantic() -> None:
    """The start-up path without files must not pay for pydantic (measured in benchmarks/)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from floe_otel_distro.plan import Inputs, build_plan\n"
        "plan = build_plan(Inputs({'FLOE_MODE': 'prod', 'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://c:4317'}))\n"
        "assert plan.active\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False", out.stderr


def test_start_up_reads_the_environments_entry_points_once() -> None:
    """The launcher scans every distribution's entry points; the plan and installer reuse that scan (~25 ms)."""
    import os
    import subprocess
    import sys

    code = (
        "import importlib.metadata as m\n"
        "scans = []\n"
        "discover = m.Distribution.discover.__func__\n"
        "def counting(cls, **kwargs):\n"
        "    if not kwargs.get('name'):\n"  # a full scan; from_name() looks up one distribution
        "        scans.append(1)\n"
        "    return discover(cls, **kwargs)\n"
        "m.Distribution.discover = classmethod(counting)\n"
        "from opentelemetry.instrumentation.auto_instrumentation import initialize\n"
        "initialize()\n"
        "from floe_otel_distro import _state\n"
        "assert _state.STATE.active, 'the distro did not install'\n"
        "print(len(scans))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))},
        "OTEL_PYTHON_DISTRO": "floe",
        "OTEL_PYTHON_CONFIGURATOR": "floe",
        "FLOE_MODE": "prod",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1", out.stdout + out.stderr


# --- floe-core plugins (floe_core.plugins.telemetry.TelemetryBackendPlugin), adapted -------------------------
_FloeBase = type("TelemetryBackendPlugin", (), {"__module__": "floe_core.plugins.telemetry"})


def _floe_plugin(config: Any, api: str = "1.0") -> type:
    def get_otlp_exporter_config(self: Any) -> Any:
        return config

    return type(
        "FloePlugin",
        (_FloeBase,),
        {
            "name": property(lambda self: "jaeger"),
            "version": property(lambda self: "0.1.0"),
            "floe_api_version": property(lambda self: api),
            "get_otlp_exporter_config": get_otlp_exporter_config,
        },
    )


JAEGER_RELEASED = {"exporter_type": "otlp", "endpoint": "jaeger-collector:4317", "insecure": True, "protocol": "grpc"}
JG = "http://jaeger-collector:4317"
FLOE_PLUGIN_CASES: list[tuple[str, Any, dict[str, str], dict[str, Any]]] = [
    (
        "released otlp form: gRPC to its endpoint",
        JAEGER_RELEASED,
        PROD,
        expect(
            True,
            "jaeger",
            {s: [f"otlp grpc {JG}"] for s in ("traces", "metrics", "logs")},
            ("warning", "backend 'jaeger'"),
        ),
    ),
    (
        "OTEL_* endpoint beats the plugin's",
        JAEGER_RELEASED,
        {**PROD, E: H},
        expect(True, "jaeger", ALL_HTTP, ("warning", "backend 'jaeger'")),
    ),
    (
        "released console form: the tree",
        {"exporter_type": "console"},
        PROD,
        expect(
            True,
            "jaeger",
            {
                **CONSOLE,
                "metrics": "off: the jaeger backend exports no metrics",
                "logs": "off: the jaeger backend exports no logs",
            },
            ("warning", "backend 'jaeger'"),
        ),
    ),
    (
        "collector form (floe's spec)",
        {"otlp/jaeger": {"endpoint": "jaeger-collector:4317", "tls": {"insecure": True}}},
        PROD,
        expect(
            True,
            "jaeger",
            {s: [f"otlp grpc {JG}"] for s in ("traces", "metrics", "logs")},
            ("warning", "backend 'jaeger'"),
        ),
    ),
    (
        "collector otlphttp form",
        {"otlphttp/x": {"endpoint": "https://x.example:443"}},
        PROD,
        expect(
            True,
            "jaeger",
            {s: [f"otlp http/protobuf https://x.example:443/v1/{s}"] for s in ("traces", "metrics", "logs")},
            ("warning", "backend 'jaeger'"),
        ),
    ),
    (
        "unusable exporter config is fatal with the reason",
        {"exporter_type": "carrier-pigeon"},
        PROD,
        off("no usable telemetry backend", ("fatal", "FLOE_TELEMETRY_BACKEND")),
    ),
]


@pytest.mark.parametrize(
    ("config", "env", "expected"), [c[1:] for c in FLOE_PLUGIN_CASES], ids=[c[0] for c in FLOE_PLUGIN_CASES]
)
def test_floe_core_plugin_table(config: Any, env: dict[str, str], expected: dict[str, Any]) -> None:
    """A floe-core plugin selected by name drives export through its get_otlp_exporter_config()."""
    ref = _ref("floe.telemetry_backends", "jaeger", _floe_plugin(config), "floe-telemetry-jaeger")
    plan = plan_for({**env, "FLOE_TELEMETRY_BACKEND": "jaeger"}, ref)
    assert summary(plan) == expected
    if plan.backend is not None:
        assert (plan.backend.api, plan.backend.dist, plan.backend.shadows) == (
            "floe-core",
            "floe-telemetry-jaeger",
            ("floe-otel-distro 1.0",),
        )


def test_floe_core_plugin_protocol_applies_to_an_endpoint_without_a_well_known_port() -> None:
    """floe-telemetry-jaeger says gRPC for the endpoint it is given; ports 4317/4318 and OTEL_* still decide first."""
    ref = _ref("floe.telemetry_backends", "jaeger", _floe_plugin(JAEGER_RELEASED), "floe-telemetry-jaeger")
    env = {**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger"}

    def first(extra: dict[str, str]) -> str:
        exporter = plan_for({**env, **extra}, ref).signals["traces"].exporters[0]
        return f"{exporter.protocol} {exporter.endpoint}"

    assert first({E: "http://c:14317"}) == "grpc http://c:14317"
    assert first({E: H}) == f"http/protobuf {H}/v1/traces"
    assert first({E: "http://c:14317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == (
        "http/protobuf http://c:14317/v1/traces"
    )


def test_floe_core_plugin_for_another_api_major_is_refused() -> None:
    ref = _ref("floe.telemetry_backends", "jaeger", _floe_plugin(JAEGER_RELEASED, api="2.0"), "floe-telemetry-jaeger")
    plan = plan_for({**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger"}, ref)
    assert not plan.active
    assert "floe API 2.0" in plan.problems[-1].message


def test_the_released_jaeger_plugin_is_adapted() -> None:
    """floe-telemetry-jaeger 0.1.0a1 itself (installed by the tests), through the real entry points."""
    from floe_otel_distro.backends import installed_entry_points

    plan = build_plan(Inputs({**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger"}, compiled_default=None))
    assert plan.backend is not None
    assert (plan.backend.api, plan.backend.dist, plan.backend.protocol) == (
        "floe-core",
        "floe-telemetry-jaeger",
        "grpc",
    )
    assert plan.backend.shadows[0].startswith("floe-otel-distro")
    assert plan.signals["traces"].exporters[0].endpoint == "http://jaeger-collector:4317"
    assert any(r.dist == "floe-telemetry-jaeger" for r in installed_entry_points("floe.telemetry_backends"))


def test_the_start_up_guard_drops_uninstalled_propagators_and_the_plan_reports_them() -> None:
    """``_guard.repair`` fixes OTEL_PROPAGATORS before the API reads it; the plan names the original value."""
    from floe_otel_distro import _guard

    environ = {"OTEL_PROPAGATORS": "tracecontext,xray,b3"}
    _guard.repair(environ)  # the real entry points: no xray, no b3 in this environment
    assert environ["OTEL_PROPAGATORS"] == "tracecontext"
    assert environ[_guard.REQUESTED] == "tracecontext,xray,b3"
    # what the guard leaves where b3 is installed (the fake entry points of these tests provide it)
    guarded = {"OTEL_PROPAGATORS": "tracecontext,b3", _guard.REQUESTED: "tracecontext,xray,b3"}
    plan = plan_for({**PROD, **guarded})
    assert [(p.where, p.value) for p in plan.problems] == [("OTEL_PROPAGATORS", "tracecontext,xray,b3")]
    assert plan.propagators == ("tracecontext", "b3")
    untouched = {"OTEL_PROPAGATORS": "tracecontext,baggage"}
    _guard.repair(untouched)
    assert untouched == {"OTEL_PROPAGATORS": "tracecontext,baggage"}
    stale = plan_for({**PROD, "OTEL_PROPAGATORS": "baggage", _guard.REQUESTED: "tracecontext,xray"})
    assert stale.problems == ()  # the user changed the variable since: the old request is not reported


def test_validate_connection_of_a_floe_core_plugin() -> None:
    """doctor --check-endpoint asks a floe-core plugin's validate_connection(); ours are left to the OTLP probe."""
    from floe_otel_distro.backends import validate_connection

    def plugin(answer: Any) -> type:
        cls = _floe_plugin(JAEGER_RELEASED)

        def check(self: Any) -> bool:
            if isinstance(answer, Exception):
                raise answer
            return bool(answer)

        cls.validate_connection = check  # type: ignore[attr-defined]
        return cls

    for answer, expected in ((True, True), (False, False), (OSError("refused"), False)):
        ref = _ref("floe.telemetry_backends", "jaeger", plugin(answer), "floe-telemetry-jaeger")
        result = validate_connection(plan_for({**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger"}, ref).backend)
        assert result is not None and result[0] is expected, result
    assert validate_connection(plan_for(PROD).backend) is None


def test_a_version_pin_picks_among_same_named_plugins() -> None:
    """plugins.telemetry_backend.version selects the plugin of that version; without a pin the external wins."""
    ref = _ref("floe.telemetry_backends", "jaeger", _floe_plugin(JAEGER_RELEASED), "floe-telemetry-jaeger")
    env = {**PROD, "FLOE_TELEMETRY_BACKEND": "jaeger", E: H}
    for pin, dist in (("1.0.0", OWN), ("0.1.0", "floe-telemetry-jaeger")):
        plan = plan_for(env, ref, version_pin=pin)
        assert plan.backend is not None and plan.backend.dist == dist, (pin, plan.problems)
        assert plan.active
    unpinned = plan_for(env, ref)
    assert unpinned.backend is not None and unpinned.backend.dist == "floe-telemetry-jaeger"
    wrong = plan_for(env, ref, version_pin="9.9.9")
    assert not wrong.active and "pin that version" in wrong.problems[-1].message


def test_malformed_context_carriers_are_one_degraded_problem_each() -> None:
    """TRACEPARENT/TRACESTATE/BAGGAGE checked with the W3C propagators; valid ones are silent."""
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    cases = {
        "garbage": ({"TRACEPARENT": "garbage"}, ["TRACEPARENT"]),
        "valid": ({"TRACEPARENT": good, "TRACESTATE": "vendor=abc", "BAGGAGE": "a=1,b=2"}, []),
        "tracestate": ({"TRACEPARENT": good, "TRACESTATE": "not a tracestate!"}, ["TRACESTATE"]),
        "baggage": ({"TRACEPARENT": good, "BAGGAGE": "good=1,bad member,=x"}, ["BAGGAGE"]),
    }
    for name, (env, wheres) in cases.items():
        problems = plan_for({**PROD, **env}).problems
        assert [(p.severity, p.where) for p in problems] == [("degraded", w) for w in wheres], name


@pytest.mark.parametrize(
    ("extra", "available", "traces", "logs", "problem"),
    [
        ({}, True, "stdlib", "stdlib", None),
        ({"FLOE_OTEL_HTTP_CLIENT": "requests"}, True, "requests (FLOE_OTEL_HTTP_CLIENT=requests)", None, None),
        ({"FLOE_OTEL_HTTP_CLIENT": "Stdlib"}, True, "stdlib", "stdlib", None),
        ({"FLOE_OTEL_HTTP_CLIENT": "curl"}, True, "stdlib", "stdlib", ("degraded", "FLOE_OTEL_HTTP_CLIENT")),
        ({"https_proxy": "http://proxy:3128"}, True, "requests (https_proxy is set", None, None),
        ({"HTTPS_PROXY": " "}, True, "stdlib", "stdlib", None),
        ({"ALL_PROXY": "socks5://p:1080"}, True, "requests (ALL_PROXY is set", None, None),
        (
            {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "gcp"},
            True,
            "requests (OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
            "stdlib",
            None,
        ),
        ({}, False, "requests (the installed OTLP/HTTP exporter predates", None, None),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, True, None, None, None),
    ],
)
def test_the_http_client_each_otlp_http_exporter_sends_through(
    extra: dict[str, str], available: bool, traces: str | None, logs: str | None, problem: tuple[str, str] | None
) -> None:
    """stdlib where it behaves like requests; requests (with the reason) for proxies, credential providers,
    the explicit choice and exporters before 1.45; gRPC has no HTTP client; a bad value is one degraded line."""
    env = {"FLOE_MODE": "prod", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **extra}
    plan = build_plan(
        Inputs(env, entry_points=fake_entry_points(), grpc_available=lambda: True, compiled_default=None,
               http_transport_available=lambda: available)
    )  # fmt: skip
    got = {name: plan.signals[name].exporters[0].http_client for name in ("traces", "logs")}
    if traces is None:
        assert got["traces"] is None
    else:
        assert (got["traces"] or "").startswith(traces)
        assert plan.signals["traces"].exporters[0].to_dict()["http_client"] == got["traces"]
    if logs is not None:
        assert got["logs"] == logs
    elif traces is not None:
        assert got["logs"] == got["traces"] or (got["logs"] or "").startswith("requests")
    found = [(p.severity, p.where) for p in plan.problems if p.where == "FLOE_OTEL_HTTP_CLIENT"]
    assert found == ([problem] if problem else [])
