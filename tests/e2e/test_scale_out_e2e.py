"""The tiered layout on real collectors: 1 agent + 3 gateways on loopback, running `floe-otel collector-config`.

Every collector runs the generated file unchanged, with its ports set through the ``${env:...}`` placeholders;
two local differences, both by flag or overlay, none in the pipelines:

- the agent is generated with ``--resolver static --no-k8sattributes`` (no Kubernetes API here), its gateway
  list read from a file (``--gateways '${file:...}'``) that the test rewrites, followed by SIGHUP (config
  reload). That proves the reload path; the agent re-routing **on its own**, with no reload, is proved with the
  DNS resolver in ``test_scale_out_dns_e2e.py``;
- a second ``--config`` overlay swaps the Prometheus pull reader of the collectors' own metrics for an OTLP push
  reader into a sink collector: a process that reloads or exits flushes its last counts there, so the
  accounting below sums every incarnation's counters.

Backends: each gateway's ``otlp`` backend plugin exports to its own sink collector (file exporter), so the test
sees which gateway kept which trace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.collector import Collector, collector_binary, free_port
from tests.support.run import BIN, instrumented_env

pytestmark = pytest.mark.e2e
LOAD_SECONDS = 5.0  # the sizing run's length (bounded: the machine is shared)
FLOE_OTEL = str(Path(sys.executable).parent / "floe-otel")
APP = Path(__file__).parent / "apps" / "scale_out_app.py"
RATIO = 0.10  # prod: the gateway keeps 10 % of ordinary traces
DECISION_WAIT = "2s"


def generate(tmp: Path, tier: str, *flags: str) -> Path:
    manifest = tmp / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "floe.dev/v1",
                "kind": "Manifest",
                "plugins": {
                    "telemetry_backend": {"type": "otlp", "config": {"endpoint": "http://${env:PROOF_BACKEND}"}}
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))}
    out = subprocess.run(
        [FLOE_OTEL, "collector-config", "--manifest", str(manifest), "--tier", tier, *flags],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    path = tmp / f"{tier}.yaml"
    path.write_text(out.stdout)
    return path


class Node:
    """One collector process running a generated config on free loopback ports."""

    def __init__(
        self,
        name: str,
        config: Path,
        workdir: Path,
        metrics_sink: Collector,
        *,
        host: str = "127.0.0.1",
        grpc_port: int | None = None,
        overlays: Sequence[Path] = (),
        prefix: Sequence[str] = (),
        **env: str,
    ) -> None:
        """``host``: the pod IP (MY_POD_IP) every listener binds; ``grpc_port``: a fixed OTLP/gRPC port (the DNS
        resolver dials one port on every address); ``overlays``: more ``--config`` files; ``prefix``: a command
        the collector runs under (it must ``exec`` it, so ``proc.pid`` stays the collector's)."""
        self.name = name
        self.host = host
        self.grpc, self.http, self.health = grpc_port or free_port(), free_port(), free_port()
        self.overlay = workdir / f"{name}-telemetry.yaml"
        self.overlay.write_text(
            yaml.safe_dump(
                {
                    "service": {
                        "telemetry": {
                            "resource": {"proof.node": name},
                            "metrics": {
                                "readers": [
                                    {
                                        "periodic": {
                                            "interval": 500,
                                            "exporter": {
                                                "otlp": {
                                                    "protocol": "http/protobuf",
                                                    "endpoint": f"{metrics_sink.http_endpoint}/v1/metrics",
                                                }
                                            },
                                        }
                                    }
                                ]
                            },
                        }
                    }
                }
            )
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))},
            "MY_POD_IP": host,
            "FLOE_OTLP_GRPC_PORT": str(self.grpc),
            "FLOE_OTLP_HTTP_PORT": str(self.http),
            "FLOE_HEALTH_PORT": str(self.health),
            "FLOE_METRICS_PORT": str(free_port()),
            "FLOE_TAIL_DECISION_WAIT": DECISION_WAIT,
            **env,
        }
        self.config = config
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [
                *prefix,
                collector_binary(),
                "--config",
                str(config),
                "--config",
                str(self.overlay),
                *(arg for extra in overlays for arg in ("--config", str(extra))),
            ],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.wait_healthy()

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.host}:{self.grpc}"

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n" + self.log.read_text())
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.health}/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not healthy:\n" + self.log.read_text())

    def reload(self) -> None:
        """SIGHUP: the collector re-reads its config (and the ${file:...} it references) and restarts pipelines."""
        before = self.log.read_text().count("Everything is ready")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self.log.read_text().count("Everything is ready") <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.wait_healthy()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_apps(
    tmp: Path, agent: Node, count: int, per_app: int, tag: str, seconds: float = 0.0, gate: Path | None = None
) -> list[tuple[subprocess.Popen[str], Path]]:
    env = instrumented_env(
        f"http://127.0.0.1:{agent.http}",
        FLOE_MODE="prod",
        FLOE_COLLECTOR_LAYOUT="tiered",  # the plan's rule: the SDK keeps every span (prod would keep 10 %)
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME=f"proof-{tag}",
    )
    procs = []
    for i in range(count):
        out = tmp / f"{tag}-{i}.jsonl"
        args = [str(BIN / "opentelemetry-instrument"), sys.executable, str(APP), str(per_app), str(i), str(out)]
        if seconds or gate:
            args.append(str(seconds))
        if gate:
            args.append(str(gate))
        procs.append((subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out))
    return procs


def finish(procs: list[tuple[subprocess.Popen[str], Path]]) -> list[dict[str, Any]]:
    sent = []
    for proc, out in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stdout + stderr
        sent += [json.loads(line) for line in out.read_text().splitlines()]
    return sent


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def traces_by_sink(sinks: dict[str, Collector]) -> dict[str, dict[str, int]]:
    """gateway → trace id → spans it exported."""
    out: dict[str, dict[str, int]] = {}
    for name, sink in sinks.items():
        counts: dict[str, int] = defaultdict(int)
        for span in sink.spans():
            counts[span["trace_id"]] += 1
        out[name] = dict(counts)
    return out


def counter(sink: Collector, metric: str, node: str, **match: str) -> int:
    """A collector's own counter, summed over every incarnation (a reload restarts cumulative counters)."""
    latest: dict[tuple[Any, ...], int] = {}
    for m in sink.metrics():
        if m["name"] != metric or m["resource"].get("proof.node") != node:
            continue
        for p in m["points"]:
            if all(p["attributes"].get(k) == v for k, v in match.items()):
                key = (p.get("startTimeUnixNano"), tuple(sorted(p["attributes"].items())))
                latest[key] = max(latest.get(key, 0), int(p.get("asInt", p.get("asDouble", 0))))
    return sum(latest.values())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    (tmp_path / "metrics-sink").mkdir()
    metrics_sink = Collector(tmp_path / "metrics-sink")
    sinks: dict[str, Collector] = {}
    gateways: dict[str, Node] = {}
    gateway_config = generate(tmp_path, "gateway", "--sampling-ratio", str(RATIO))
    for name in ("gw1", "gw2", "gw3"):
        (tmp_path / f"{name}-backend").mkdir()
        sinks[name] = Collector(tmp_path / f"{name}-backend")
        gateways[name] = Node(
            name, gateway_config, tmp_path, metrics_sink, PROOF_BACKEND=f"127.0.0.1:{sinks[name].http_port}"
        )
    ring = tmp_path / "gateways.yaml"
    ring.write_text(yaml.safe_dump([g.grpc_endpoint for g in gateways.values()]))
    agent_config = generate(
        tmp_path, "agent", "--resolver", "static", "--no-k8sattributes", "--gateways", f"${{file:{ring}}}"
    )
    agent = Node(
        "agent", agent_config, tmp_path, metrics_sink, FLOE_GATEWAY_OTLP_ENDPOINT=gateways["gw1"].grpc_endpoint
    )
    nodes = [agent, *gateways.values()]
    try:
        yield {
            "agent": agent,
            "gateways": gateways,
            "sinks": sinks,
            "metrics": metrics_sink,
            "ring": ring,
            "tmp": tmp_path,
            "agent_config": agent_config,
            "gateway_config": gateway_config,
        }
    finally:
        for node in nodes:
            node.stop()
        for sink in (*sinks.values(), metrics_sink):
            sink.stop()


def test_tiered_layout_keeps_whole_traces_errors_and_pipeline_runs(cluster: dict[str, Any]) -> None:
    """2400 traces from 4 instrumented processes → agent → 3 gateways: no trace split, 100 % of error and
    pipeline-rooted traces kept (complete), the rest kept at 10 % ± 3 points."""
    tmp, agent, sinks = cluster["tmp"], cluster["agent"], cluster["sinks"]
    sent = finish(run_apps(tmp, agent, count=4, per_app=600, tag="steady"))
    assert len(sent) == 2400
    by_kind: dict[str, set[str]] = defaultdict(set)
    for item in sent:
        by_kind[item["kind"]].add(item["trace_id"])
    expected = by_kind["error"] | by_kind["pipeline"]

    def decided(_: Collector) -> bool:
        kept = set().union(*traces_by_sink(sinks).values())
        return expected <= kept

    assert sinks["gw1"].wait_for(decided, timeout=30), "error / pipeline traces missing"
    time.sleep(1.5)  # let the probabilistic decisions of the last traces land too
    kept = traces_by_sink(sinks)

    owners: dict[str, list[str]] = defaultdict(list)
    for gateway, traces in kept.items():
        for trace_id in traces:
            owners[trace_id].append(gateway)
    split = {t: g for t, g in owners.items() if len(g) > 1}
    assert not split, f"traces split across gateways: {list(split.items())[:5]}"
    assert all(len(traces) > 100 for traces in kept.values()), {g: len(t) for g, t in kept.items()}

    all_kept = {t: n for traces in kept.values() for t, n in traces.items()}
    sent_ids = {item["trace_id"] for item in sent}
    assert set(all_kept) <= sent_ids
    for kind in ("error", "pipeline"):
        missing = by_kind[kind] - set(all_kept)
        assert not missing, f"{len(missing)} {kind} traces dropped"
        incomplete = [t for t in by_kind[kind] if all_kept[t] != 3]
        assert not incomplete, f"{kind} traces kept without all their spans: {incomplete[:3]}"
    plain = by_kind["plain"]
    share = len(plain & set(all_kept)) / len(plain)
    print(
        f"\nkept: error {len(by_kind['error'])}/{len(by_kind['error'])}, pipeline "
        f"{len(by_kind['pipeline'])}/{len(by_kind['pipeline'])}, plain {share:.2%} of {len(plain)}; "
        f"per gateway {[len(t) for t in kept.values()]}"
    )
    assert abs(share - RATIO) <= 0.03, share


def test_gateway_killed_mid_run_agent_reroutes_and_accounts_for_every_span(cluster: dict[str, Any]) -> None:
    """gw2 is SIGKILLed while 3 processes send; the ring loses gw2 by a config reload (file + SIGHUP: the static
    resolver never drops a gateway by itself); every error / pipeline trace sent afterwards is kept by gw1/gw3,
    and the agent's own counters account for every span it accepted: sent (acknowledged by a gateway) +
    send_failed (+ enqueue_failed) == accepted, the reload counting as send_failed what it cut short.

    The re-route without a reload (DNS resolver, the harness playing the headless Service) is
    ``test_scale_out_dns_e2e.py``; this test stays for the reload path and its accounting.

    Which counters: the load_balancing exporter's own (level 1). The generated agent config turns the per-gateway
    queue and retry off, because those sub-exporters run with a no-op meter: what they drop is counted nowhere.
    """
    tmp, agent, sinks, gateways = cluster["tmp"], cluster["agent"], cluster["sinks"], cluster["gateways"]
    gate = tmp / "rerouted"
    procs = run_apps(tmp, agent, count=3, per_app=300, tag="kill", seconds=6.0, gate=gate)
    deadline = time.monotonic() + 60
    while sum(lines(out) for _, out in procs) < 3 * 300 // 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    gateways["gw2"].proc.kill()  # mid-run: the processes keep sending
    gateways["gw2"].proc.wait()
    for proc, _ in procs:  # first halves done ("half"); spans of the first half still flow to gw2 → fail
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "half"
    time.sleep(1.0)
    cluster["ring"].write_text(yaml.safe_dump([gateways[g].grpc_endpoint for g in ("gw1", "gw3")]))
    agent.reload()
    gate.touch()
    sent = finish(procs)
    second = {item["trace_id"]: item["kind"] for item in sent if item["half"] == 2}
    must_keep = {t for t, kind in second.items() if kind != "plain"}

    def rerouted(_: Collector) -> bool:
        kept = traces_by_sink({g: sinks[g] for g in ("gw1", "gw3")})
        return must_keep <= set(kept["gw1"]) | set(kept["gw3"])

    assert sinks["gw1"].wait_for(rerouted, timeout=30), "traces sent after the re-route were lost"
    agent.stop()  # flushes its last counters
    time.sleep(1.0)
    metrics = cluster["metrics"]
    accepted = counter(metrics, "otelcol_receiver_accepted_spans", "agent", receiver="otlp")
    refused = counter(metrics, "otelcol_receiver_refused_spans", "agent", receiver="otlp")
    sent_ok = counter(metrics, "otelcol_exporter_sent_spans", "agent", exporter="load_balancing")
    failed = counter(metrics, "otelcol_exporter_send_failed_spans", "agent", exporter="load_balancing")
    enqueue_failed = counter(metrics, "otelcol_exporter_enqueue_failed_spans", "agent", exporter="load_balancing")
    delivered = sum(counter(metrics, "otelcol_receiver_accepted_spans", g, receiver="otlp") for g in ("gw1", "gw3"))
    gw2_acked = counter(metrics, "otelcol_receiver_accepted_spans", "gw2", receiver="otlp")
    print(
        f"\nagent accepted {accepted} (refused {refused}); load_balancing sent {sent_ok}, send_failed {failed}, "
        f"enqueue_failed {enqueue_failed}; gw2 accepted >= {gw2_acked} before the kill; gw1+gw3 accepted "
        f"{delivered} (a batch is retried whole: spans already delivered are sent again)"
    )
    assert accepted == 3 * 300 * 3, "the agent accepted every span the processes sent"
    assert sent_ok + failed + enqueue_failed == accepted


MARK = b"FLOE"  # in both halves of every trace id (the decision cache keys on 8 of its 16 bytes)


def _requests(count: int, traces: int, spans: int) -> list[bytes]:
    """Serialized OTLP trace requests, every trace id unique: ``count`` requests of ``traces`` x ``spans``.
    Trace ids are MARK + 4 random bytes, twice, so ``body.replace(MARK, other)`` makes a fresh set of traces."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    now = time.time_ns()
    out = []
    for _ in range(count):
        scope = ScopeSpans()
        for _ in range(traces):
            trace_id = MARK + os.urandom(4) + MARK + os.urandom(4)
            for i in range(spans):
                scope.spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=(i + 1).to_bytes(8, "big"),
                        parent_span_id=b"" if i == 0 else (1).to_bytes(8, "big"),
                        name=f"step-{i}",
                        start_time_unix_nano=now,
                        end_time_unix_nano=now + 1_000_000,
                        attributes=[KeyValue(key="floe.step", value=AnyValue(int_value=i))],
                    )
                )
        resource = ResourceSpans(scope_spans=[scope])
        resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="load")))
        out.append(ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString())
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BACKENDS: dict[str, dict[str, Any]] = {
    "console": {},
    "otlp": {"config": {"endpoint": "https://otlp.vendor.example:4318"}, "connection_secret_ref": "vendor-otlp"},
    "jaeger": {"config": {"endpoint": "jaeger-collector.observability.svc:4317", "insecure": True}},
    "grafana-cloud": {
        "config": {"endpoint": "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp"},
        "connection_secret_ref": "grafana-cloud-credentials",
    },
}
TIER_FLAGS = {
    "gateway": [],
    "agent-k8s": [],
    "agent-dns": ["--resolver", "dns"],
    "agent-static": ["--resolver", "static", "--no-k8sattributes"],
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("variant", sorted(TIER_FLAGS))
def test_tiered_configs_validate(tmp_path: Path, backend: str, variant: str) -> None:
    """`collector-config --tier agent|gateway` for every shipped backend and resolver passes the real `validate`."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "floe.dev/v1",
                "kind": "Manifest",
                "plugins": {"telemetry_backend": {"type": backend, **BACKENDS[backend]}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOE_"))}
    tier = variant.split("-", 1)[0]
    generated = subprocess.run(
        [FLOE_OTEL, "collector-config", "--manifest", str(manifest), "--tier", tier, *TIER_FLAGS[variant]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    (tmp_path / "collector.yaml").write_text(generated.stdout)
    pod_env = {
        **env,
        "MY_POD_IP": "127.0.0.1",
        "KUBE_NODE_NAME": "node-1",
        "GRAFANA_CLOUD_OTLP_AUTH": "eA==",
        "OTLP_BACKEND_AUTHORIZATION": "Bearer x",
        "FLOE_GATEWAY_ENDPOINTS": "[127.0.0.1:4317]",
    }
    validated = subprocess.run(
        [collector_binary(), "validate", "--config", str(tmp_path / "collector.yaml")],
        env=pod_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert validated.returncode == 0, generated.stdout + validated.stdout + validated.stderr
