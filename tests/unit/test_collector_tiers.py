"""The tiered layout's configs (``collector_tiers``), the CLI's ``--tier``, and the SDK's sampling rule under it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from floe_otel_distro import collector_tiers as tiers
from floe_otel_distro.backends import OWN_DISTRIBUTION, installed_entry_points
from floe_otel_distro.cli import main
from floe_otel_distro.plan import Inputs, Plan, build_plan
from floe_otel_distro.sampling import build_sampler


def own(group: str) -> Any:
    return tuple(ref for ref in installed_entry_points(group) if ref.dist == OWN_DISTRIBUTION)


def plan(env: dict[str, str], tmp_path: Path, layout: str | None = None) -> Plan:
    if layout is not None:
        manifest = tmp_path / "manifest.yaml"
        config = {"endpoint": "jaeger:4317", "collector_layout": layout}
        manifest.write_text(yaml.safe_dump({"plugins": {"telemetry_backend": {"type": "jaeger", "config": config}}}))
        env = {**env, "FLOE_MANIFEST": str(manifest)}
    return build_plan(Inputs({"FLOE_MODE": "prod", **env}, entry_points=own, compiled_default=None))


def test_tiered_layout_makes_the_sdk_keep_every_span(tmp_path: Path) -> None:
    """Selected by env or by one manifest line, the tiered layout samples 100 % in the SDK (the gateways decide);
    OTEL_TRACES_SAMPLER_ARG still wins; FLOE_COLLECTOR_LAYOUT beats the manifest; otherwise prod stays at 10 %."""
    assert plan({}, tmp_path).sampler_ratio == 0.1
    by_env = plan({"FLOE_COLLECTOR_LAYOUT": "tiered"}, tmp_path)
    assert (by_env.sampler, by_env.sampler_ratio) == ("parentbased_traceidratio", 1.0)
    assert by_env.sources["sampling_ratio"] == "env:FLOE_COLLECTOR_LAYOUT"
    by_manifest = plan({}, tmp_path, layout="tiered")
    assert by_manifest.sampler_ratio == 1.0
    assert by_manifest.sources["sampling_ratio"].endswith("plugins.telemetry_backend.config.collector_layout")
    assert not [p for p in by_manifest.problems if p.severity == "fatal"]
    assert plan({"FLOE_SAMPLING_RATIO": "0.3"}, tmp_path, layout="tiered").sampler_ratio == 1.0
    assert plan({"OTEL_TRACES_SAMPLER_ARG": "0.2"}, tmp_path, layout="tiered").sampler_ratio == 0.2
    assert plan({"FLOE_COLLECTOR_LAYOUT": "single"}, tmp_path, layout="tiered").sampler_ratio == 0.1
    assert plan({}, tmp_path, layout="single").sampler_ratio == 0.1
    always = plan({"FLOE_COLLECTOR_LAYOUT": "tiered", "OTEL_TRACES_SAMPLER": "always_off"}, tmp_path)
    assert (always.sampler, always.sampler_ratio) == ("always_off", None)
    sampler = build_sampler(by_env.sampler, by_env.sampler_ratio)
    decisions = {sampler.should_sample(None, trace_id, "x").decision.is_sampled() for trace_id in range(1, 2000)}
    assert decisions == {True}


def test_gateway_tail_sampling_policies() -> None:
    """Errors, pipeline-rooted traces (floe.pipeline.id / dbt.command), slow traces, and the mode's share."""
    config = tiers.gateway_config({"otlp_grpc/x": {"endpoint": "x:4317"}, "debug/x": {}},
                                  {"traces": ["otlp_grpc/x"], "metrics": ["debug/x"], "logs": []}, "prod")
    policies = {p["name"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["errors"]["status_code"] == {"status_codes": ["ERROR"]}
    keys = {p["string_attribute"]["key"] for p in policies.values() if p["type"] == "string_attribute"}
    assert keys == {"floe.pipeline.id", "dbt.command"}
    assert all(p["string_attribute"]["values"] == [".+"] for p in policies.values() if p["type"] == "string_attribute")
    assert policies["slow"]["latency"]["threshold_ms"] == tiers.LATENCY_THRESHOLD_MS
    assert policies["share-of-the-rest"]["probabilistic"]["sampling_percentage"] == 10.0
    assert config["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "tail_sampling", "batch"]
    assert config["service"]["pipelines"]["metrics"]["processors"] == ["memory_limiter", "batch"]
    assert "logs" not in config["service"]["pipelines"]
    queue = config["exporters"]["otlp_grpc/x"]["sending_queue"]
    assert queue == {"enabled": True, "num_consumers": 4, "queue_size": tiers.GATEWAY_QUEUE_SPANS, "sizer": "items"}
    assert config["exporters"]["otlp_grpc/x"]["retry_on_failure"]["enabled"] is True
    assert config["exporters"]["debug/x"] == {}
    staged = tiers.gateway_config({"debug": {}}, {"traces": ["debug"]}, "staging",
                                  tiers.TierOptions(sampling_ratio=0.25))
    share = staged["processors"]["tail_sampling"]["policies"][-1]["probabilistic"]["sampling_percentage"]
    assert share == 25.0


def test_agent_resolvers_and_k8sattributes() -> None:
    """k8s resolver by default; dns and static on request; k8sattributes can be left out; bad resolver: error.
    The per-gateway exporters have no queue/retry of their own (uncounted losses): level 1 has them."""
    default = tiers.agent_config()
    lb = default["exporters"]["load_balancing"]
    assert lb["routing_key"] == "traceID"
    assert lb["resolver"] == {"k8s": {"service": "otel-gateway-headless.observability", "ports": [4317],
                                      "timeout": "10s"}}
    assert lb["sending_queue"]["enabled"] and lb["retry_on_failure"]["enabled"]
    assert lb["protocol"]["otlp"]["sending_queue"] == {"enabled": False}
    assert lb["protocol"]["otlp"]["retry_on_failure"] == {"enabled": False}
    assert default["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "k8sattributes", "batch"]
    dns = tiers.agent_config(tiers.TierOptions(resolver="dns"))["exporters"]["load_balancing"]["resolver"]["dns"]
    assert dns["hostname"] == "otel-gateway-headless.observability.svc.cluster.local" and dns["port"] == "4317"
    static = tiers.agent_config(tiers.TierOptions(resolver="static", static_gateways=("a:1", "b:2"),
                                                  k8sattributes=False))
    assert static["exporters"]["load_balancing"]["resolver"] == {"static": {"hostnames": ["a:1", "b:2"]}}
    assert "k8sattributes" not in static["processors"]
    assert static["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "batch"]
    placeholder = tiers.agent_config(tiers.TierOptions(resolver="static"))["exporters"]["load_balancing"]
    assert placeholder["resolver"]["static"]["hostnames"] == "${env:FLOE_GATEWAY_ENDPOINTS}"
    with pytest.raises(ValueError, match="unknown resolver"):
        tiers.agent_config(tiers.TierOptions(resolver="consul"))


def test_cli_tier_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`collector-config --tier agent|gateway` prints those configs; `single` (the default) stays as it was."""
    for name in [k for k in os.environ if k.startswith(("FLOE_", "OTEL_"))]:
        monkeypatch.delenv(name)
    assert main(["collector-config", "--backend", "jaeger", "--tier", "agent", "--resolver", "static",
                 "--gateways", "127.0.0.1:1, 127.0.0.1:2", "--no-k8sattributes"]) == 0
    agent = yaml.safe_load(capsys.readouterr().out)
    assert agent["exporters"]["load_balancing"]["resolver"]["static"]["hostnames"] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert "k8sattributes" not in agent["processors"]
    assert main(["collector-config", "--backend", "jaeger", "--tier", "gateway", "--sampling-ratio", "0.05"]) == 0
    gateway = yaml.safe_load(capsys.readouterr().out)
    assert gateway["processors"]["tail_sampling"]["policies"][-1]["probabilistic"]["sampling_percentage"] == 5.0
    monkeypatch.setenv("FLOE_SAMPLING_RATIO", "0.25")  # the configured head ratio becomes the gateways' share
    monkeypatch.setenv("FLOE_COLLECTOR_LAYOUT", "tiered")
    assert main(["collector-config", "--backend", "jaeger", "--tier", "gateway"]) == 0
    gateway = yaml.safe_load(capsys.readouterr().out)
    assert gateway["processors"]["tail_sampling"]["policies"][-1]["probabilistic"]["sampling_percentage"] == 25.0
    assert main(["collector-config", "--backend", "jaeger"]) == 0
    single = yaml.safe_load(capsys.readouterr().out)
    assert single["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "batch"]
