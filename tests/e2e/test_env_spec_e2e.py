"""The OTel environment specification, side by side: the same job under upstream's distro and under floe.

Each case runs ``apps/env_spec_app.py`` twice with the same variables: once under the upstream distro
(``OTEL_PYTHON_DISTRO=distro OTEL_PYTHON_CONFIGURATOR=configurator``, installed in the test venv next to
ours) and once under floe (``floe``/``floe``), each against its own real collector, and compares what
arrives (resource, spans and their limits, batch sizes, metric kinds and temporality, logs, the injected
propagation headers). Where floe deliberately differs the case asserts the documented difference (see
docs/configuration.md, "The environment specification, side by side").

Common to both runs: HTTP/protobuf to the collector (upstream's default protocol is gRPC, floe's follows
the port), ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true`` (upstream exports stdlib logs only
then), ``FLOE_MODE=dev`` (floe's dev ratio is 1.0, like upstream's parent-based always-on). Under upstream
floe's own instrumentors are disabled (they would otherwise load there too).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import Collector, attrs
from tests.support.run import BIN, instrumented_env

pytestmark = pytest.mark.e2e
APP = str(Path(__file__).parent / "apps" / "env_spec_app.py")
FLOE_INSTRUMENTORS = (
    "floe_process_context,floe_log_correlation,floe_dbt,floe_dbt_secrets,floe_dagster,floe_signals,floe_logging,"
    "floe_core"
)
TOKEN = "spec-secret-token"


@dataclass
class Arrived:
    """What one run delivered to its collector, normalised for comparison."""

    stdout: str
    stderr: str
    returncode: int
    resource: dict[str, Any] = field(default_factory=dict)
    spans: dict[str, dict[str, Any]] = field(default_factory=dict)
    spans_per_request: list[int] = field(default_factory=list)
    floe_span_attributes: dict[str, int] = field(default_factory=dict)  # span name -> how many floe.* keys
    metrics: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    metric_requests: int = 0
    logs: list[str] = field(default_factory=list)
    logs_per_request: list[int] = field(default_factory=list)

    @property
    def propagation(self) -> list[str]:
        line = next(line for line in self.stdout.splitlines() if line.startswith("PROPAGATION "))
        return list(json.loads(line.removeprefix("PROPAGATION ")))


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _collect(c: Collector, result: subprocess.CompletedProcess[str]) -> Arrived:
    out = Arrived(result.stdout, result.stderr, result.returncode)
    for req in _lines(c.workdir / "traces.jsonl"):
        count = 0
        for rs in req.get("resourceSpans", []):
            out.resource = attrs(rs.get("resource", {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    count += 1
                    out.floe_span_attributes[sp["name"]] = sum(
                        1 for k in attrs(sp.get("attributes")) if k.startswith("floe.")
                    )
                    out.spans[sp["name"]] = {
                        "attributes": {
                            k: v for k, v in attrs(sp.get("attributes")).items() if not k.startswith("floe.")
                        },
                        "events": len(sp.get("events", [])),
                        "links": len(sp.get("links", [])),
                        "dropped_events": sp.get("droppedEventsCount", 0),
                        "dropped_links": sp.get("droppedLinksCount", 0),
                    }
        out.spans_per_request.append(count)
    for req in _lines(c.workdir / "metrics.jsonl"):
        out.metric_requests += 1
        for rm in req.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if not m["name"].startswith("spec."):
                        continue
                    kind = next(k for k in ("sum", "gauge", "histogram", "exponentialHistogram") if k in m)
                    out.metrics[m["name"]] = (kind, m[kind].get("aggregationTemporality"))
    for req in _lines(c.workdir / "logs.jsonl"):
        count = 0
        for rl in req.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for rec in sl.get("logRecords", []):
                    body = rec.get("body", {}).get("stringValue", "")
                    if body.startswith("spec log"):
                        count += 1
                        out.logs.append(body)
        if count:
            out.logs_per_request.append(count)
    return out


@dataclass
class Pair:
    upstream: Arrived
    floe: Arrived


Env = Callable[[Collector], dict[str, str]]


def _base(c: Collector) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "FLOE_MODE": "dev",
    }


@pytest.fixture
def side_by_side(tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    collectors: list[Collector] = []

    def run(env_of: Env, *, auth: bool = False, sleep_s: float = 0.0, base: bool = True) -> Pair:
        arrived = []
        for name, distro, configurator in (("upstream", "distro", "configurator"), ("floe", "floe", "floe")):
            workdir = tmp_path / name
            workdir.mkdir(exist_ok=True)
            c = Collector(workdir, auth_token=TOKEN if auth else None)
            collectors.append(c)
            env = instrumented_env(**{**(_base(c) if base else {}), **env_of(c)})
            env.update({"OTEL_PYTHON_DISTRO": distro, "OTEL_PYTHON_CONFIGURATOR": configurator})
            if name == "upstream":
                theirs = env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
                env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = ",".join(filter(None, (theirs, FLOE_INSTRUMENTORS)))
            result = subprocess.run(
                [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), APP, str(sleep_s)],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, f"{name}: {result.stderr}"
            assert "Traceback" not in result.stderr or name == "upstream", f"{name}: {result.stderr}"
            c.stop()  # the file exporter flushes on shutdown
            arrived.append(_collect(c, result))
        return Pair(*arrived)

    yield run
    for c in collectors:
        c.stop()


ALL_SPANS = {"parent", "child", "s0", "s1", "s2", "s3", "s4"}


def _same_signals(pair: Pair) -> None:
    """Spans (names, attributes, events, links), metric kinds/temporalities and log records are the same."""
    assert pair.floe.spans == pair.upstream.spans
    assert pair.floe.metrics == pair.upstream.metrics
    assert sorted(pair.floe.logs) == sorted(pair.upstream.logs)


# ---- identity -----------------------------------------------------------------------------------------
def test_service_name_and_resource_attributes(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES reach the resource alike (floe adds its floe.* keys)."""
    pair = side_by_side(
        lambda c: {"OTEL_SERVICE_NAME": "spec-svc", "OTEL_RESOURCE_ATTRIBUTES": "team=data,service.version=9.9"}
    )
    for key in ("service.name", "team", "service.version"):
        assert pair.floe.resource[key] == pair.upstream.resource[key]
    assert pair.floe.resource["service.name"] == "spec-svc" and pair.floe.resource["team"] == "data"
    # documented difference: floe's attributes on the resource (and on every span)
    assert pair.floe.resource["floe.mode"] == "dev" and "floe.mode" not in pair.upstream.resource
    _same_signals(pair)
    assert set(pair.floe.spans) == ALL_SPANS


# ---- sampling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sampler", "arg", "expected"),
    [
        ("always_off", None, set()),
        ("always_on", None, ALL_SPANS),
        ("traceidratio", "0", set()),
        ("parentbased_traceidratio", "1", ALL_SPANS),
        ("parentbased_always_off", None, set()),
    ],
)
def test_samplers(side_by_side: Callable[..., Pair], sampler: str, arg: str | None, expected: set[str]) -> None:
    """OTEL_TRACES_SAMPLER[_ARG]: the same spans are kept."""
    extra = {"OTEL_TRACES_SAMPLER": sampler, **({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {})}
    pair = side_by_side(lambda c: extra)
    assert set(pair.upstream.spans) == set(pair.floe.spans) == expected


# ---- propagation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("propagators", "floe_extra"), [("tracecontext", []), ("none", []), (None, ["baggage"])])
def test_propagators(side_by_side: Callable[..., Pair], propagators: str | None, floe_extra: list[str]) -> None:
    """OTEL_PROPAGATORS: the same headers are injected; by default floe also sends its baggage (documented)."""
    pair = side_by_side(lambda c: {"OTEL_PROPAGATORS": propagators} if propagators else {})
    assert pair.floe.propagation == sorted([*pair.upstream.propagation, *floe_extra])


# ---- endpoints, protocols, headers --------------------------------------------------------------------
def test_per_signal_endpoint_and_protocol(side_by_side: Callable[..., Pair]) -> None:
    """Generic gRPC, traces over HTTP to their own full URL: every signal arrives under both."""
    pair = side_by_side(
        lambda c: {
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{c.http_endpoint}/v1/traces",
        }
    )
    _same_signals(pair)
    assert set(pair.floe.spans) == ALL_SPANS and pair.floe.metrics and len(pair.floe.logs) == 3


def test_scheme_less_grpc_endpoint_with_insecure(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT=host:port, protocol gRPC, OTEL_EXPORTER_OTLP_INSECURE=true: accepted, arrives."""
    pair = side_by_side(
        lambda c: {
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.grpc_endpoint.removeprefix("http://"),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
    )
    _same_signals(pair)
    assert set(pair.floe.spans) == ALL_SPANS
    assert "floe-otel:" not in pair.floe.stderr


def test_per_signal_headers_win_over_the_generic_ones(side_by_side: Callable[..., Pair]) -> None:
    """A collector that wants a token: the right one only in OTEL_EXPORTER_OTLP_TRACES_HEADERS; traces arrive,
    metrics and logs (generic, wrong token) are refused, under both."""
    pair = side_by_side(
        lambda c: {
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20wrong",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"authorization=Bearer%20{TOKEN}",
        },
        auth=True,
    )
    assert set(pair.upstream.spans) == set(pair.floe.spans) == ALL_SPANS
    assert pair.upstream.metrics == pair.floe.metrics == {}
    assert pair.upstream.logs == pair.floe.logs == []


def test_otlp_and_console_exporters(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_TRACES_EXPORTER=otlp,console: OTLP arrives under both; the console part is upstream's JSON on
    stdout, floe's trace tree on stderr (documented difference)."""
    pair = side_by_side(lambda c: {"OTEL_TRACES_EXPORTER": "otlp,console"})
    _same_signals(pair)
    assert set(pair.floe.spans) == ALL_SPANS
    assert '"name": "parent"' in pair.upstream.stdout
    assert "parent" in pair.floe.stderr and '"name": "parent"' not in pair.floe.stdout


# ---- batching, limits ---------------------------------------------------------------------------------
def test_batch_sizes(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2 and OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=1: no request carries more."""
    pair = side_by_side(lambda c: {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "1"})
    _same_signals(pair)
    for arrived in (pair.upstream, pair.floe):
        assert sum(arrived.spans_per_request) == 7 and max(arrived.spans_per_request) <= 2
        assert arrived.logs_per_request == [1, 1, 1]


def test_span_and_attribute_limits(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT, OTEL_SPAN_LINK_COUNT_LIMIT: same cuts."""
    pair = side_by_side(
        lambda c: {
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4",
            "OTEL_SPAN_EVENT_COUNT_LIMIT": "1",
            "OTEL_SPAN_LINK_COUNT_LIMIT": "1",
            # upstream's SDK handler recurses on the truncation warning it logs itself (a RecursionError
            # under upstream; floe's handler never exports the SDK's own records): logs are not compared here
            "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "false",
        }
    )
    _same_signals(pair)
    parent = pair.floe.spans["parent"]
    assert parent["attributes"]["a0"] == "abcd"
    assert (parent["events"], parent["links"], parent["dropped_events"], parent["dropped_links"]) == (1, 1, 2, 2)


@pytest.mark.parametrize("variable", ["OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"])
def test_attribute_count_limit_counts_floe_attributes(side_by_side: Callable[..., Pair], variable: str) -> None:
    """A count limit of 6: the application's attributes are kept alike; floe's four floe.* span attributes
    count toward the limit and, set first, are the first evicted (documented difference)."""
    pair = side_by_side(lambda c: {variable: "6"})
    _same_signals(pair)
    assert pair.floe.spans["parent"]["attributes"] == {f"a{i}": "abcdefgh" for i in range(5)}
    assert pair.floe.floe_span_attributes["parent"] == 1  # 6 slots - 5 of the application's
    assert pair.floe.floe_span_attributes["s0"] == 4


# ---- metrics ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"spec.counter": ("sum", 2), "spec.hist": ("histogram", 2)}),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"},
            {"spec.counter": ("sum", 1), "spec.hist": ("histogram", 1)},
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"},
            {"spec.counter": ("sum", 2), "spec.hist": ("exponentialHistogram", 2)},
        ),
    ],
)
def test_metric_temporality_and_histogram_kind(
    side_by_side: Callable[..., Pair], env: dict[str, str], expected: dict[str, Any]
) -> None:
    """Temporality preference and default histogram aggregation: the same kinds and temporalities arrive."""
    pair = side_by_side(lambda c: env)
    assert pair.upstream.metrics == pair.floe.metrics == expected


def test_metric_export_interval(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_METRIC_EXPORT_INTERVAL=200 with a 1.2 s job: several periodic exports under both."""
    pair = side_by_side(lambda c: {"OTEL_METRIC_EXPORT_INTERVAL": "200"}, sleep_s=1.2)
    assert pair.upstream.metric_requests >= 3 and pair.floe.metric_requests >= 3


# ---- on/off -------------------------------------------------------------------------------------------
def test_sdk_disabled(side_by_side: Callable[..., Pair]) -> None:
    """OTEL_SDK_DISABLED=true: nothing arrives under either."""
    pair = side_by_side(lambda c: {"OTEL_SDK_DISABLED": "true"})
    for arrived in (pair.upstream, pair.floe):
        assert (arrived.spans, arrived.metrics, arrived.logs) == ({}, {}, [])
    assert "floe-otel:" not in pair.floe.stderr


@pytest.mark.parametrize(("value", "upstream_logs", "floe_logs"), [("false", 0, 0), ("true", 3, 3), (None, 0, 3)])
def test_logging_auto_instrumentation_switch(
    side_by_side: Callable[..., Pair], value: str | None, upstream_logs: int, floe_logs: int
) -> None:
    """OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED: false/true alike; unset, floe exports stdlib logs
    (documented difference: upstream exports them only with the variable or opentelemetry-instrumentation-logging)."""

    def env_of(c: Collector) -> dict[str, str]:
        env = _base(c)
        del env["OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"]
        return {**env, **({"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": value} if value else {})}

    pair = side_by_side(env_of, base=False)
    assert (len(pair.upstream.logs), len(pair.floe.logs)) == (upstream_logs, floe_logs)
    assert pair.floe.spans == pair.upstream.spans


def test_otel_config_file(side_by_side: Callable[..., Pair], tmp_path: Path) -> None:
    """OTEL_CONFIG_FILE: upstream (without opentelemetry-configuration) fails to initialise and exports
    nothing; floe refuses the file with one clear line and exports by the variables (documented difference)."""
    config = tmp_path / "sdk.yaml"
    config.write_text("file_format: '1.0'\n")
    pair = side_by_side(lambda c: {"OTEL_CONFIG_FILE": str(config)})
    assert pair.upstream.spans == {} and "opentelemetry-configuration" in pair.upstream.stderr
    lines = [line for line in pair.floe.stderr.splitlines() if line.startswith("floe-otel:")]
    assert len(lines) == 1 and "OTEL_CONFIG_FILE" in lines[0] and "not supported" in lines[0]
    assert set(pair.floe.spans) == ALL_SPANS
