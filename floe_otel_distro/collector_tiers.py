"""Collector configs for the tiered (scale-out) layout: node agents → load balancing by trace id → gateways.

``floe-otel collector-config --tier agent|gateway`` prints these; ``--tier single`` (the default) is the one
gateway of ``cli.collector_config``. See ``docs/scale-out.md`` for the topology, sizing and failure modes.

- **agent** (a DaemonSet, one per node): OTLP receivers bound to the pod IP, ``memory_limiter`` →
  ``k8sattributes`` (pod metadata, filtered to its own node) → ``batch`` → the ``load_balancing`` exporter,
  which routes every span of a trace to the same gateway (``routing_key: traceID``). Gateways are found
  through the headless Service (k8s resolver, the default; DNS or a static list are the alternatives).
  Metrics and logs are not tail-sampled: the agent sends them to the gateway Service over plain OTLP.
- **gateway** (a Deployment behind the headless Service): OTLP receiver → ``memory_limiter`` →
  ``tail_sampling`` (keep every trace with an error, every trace rooted in a pipeline run, every trace slower
  than the latency threshold, and a probabilistic share of the rest: the mode's head-sampling ratio) →
  ``batch`` → the backend plugin's exporter(s), each with a sending queue and retries sized below.

Every address and port is an ``${env:NAME:-default}`` placeholder, so the same generated file runs in a pod
(``MY_POD_IP`` from the Downward API) and on loopback ports in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from floe_otel_distro.plan import MODE_SAMPLING

TIERS = ("single", "agent", "gateway")
RESOLVERS = ("k8s", "dns", "static")

#: span attributes the distro sets on a pipeline run's root span (dbt invocation, Dagster run):
#: ``floe.pipeline.id`` (dbt: the invocation id; Dagster: the run id) and ``dbt.command`` (dbt only)
PIPELINE_ATTRIBUTES = ("floe.pipeline.id", "dbt.command")

_HOST = "${env:MY_POD_IP:-0.0.0.0}"

# --- sizing (docs/scale-out.md "Sizing") ---------------------------------------------------------------------
#: the agent's sending queue, in spans: ~200 MB at ~1 KB a span, inside the agent's 400 MiB GOMEMLIMIT; at 20k
#: spans/s per node it rides out ~10 s of the gateways not taking data (a dead gateway still in the ring) before
#: refusing the SDKs (which retry)
AGENT_QUEUE_SPANS = 200_000
#: the gateway's exporter queue, in spans: ~200 MB; at a sampled output of ~2k spans/s per gateway that is ~100 s
#: of the backend being down (retries give up after 5 min; data then counts in otelcol_exporter_send_failed_spans)
GATEWAY_QUEUE_SPANS = 200_000
#: how long the gateway waits after a trace's first span before deciding (longest expected span gap)
DECISION_WAIT = "10s"
#: traces held in memory awaiting a decision: >= spans/s / spans-per-trace * decision_wait, with headroom
NUM_TRACES = 100_000
LATENCY_THRESHOLD_MS = 5_000
#: decided trace ids remembered per outcome (8 bytes each, ~1 MB)
DECISION_CACHE = 100_000


@dataclass(frozen=True)
class TierOptions:
    """How the tiered configs are generated (the CLI's flags)."""

    #: how the agent finds the gateways: k8s (EndpointSlices of the headless Service), dns, static
    resolver: str = "k8s"
    #: the gateways' headless Service (``name.namespace``)
    gateway_service: str = "otel-gateway-headless.observability"
    #: the plain (non-headless) gateway Service, for metrics and logs from the agent
    gateway_endpoint: str = "${env:FLOE_GATEWAY_OTLP_ENDPOINT:-otel-gateway.observability.svc.cluster.local:4317}"
    #: with ``resolver="static"``: ``host:port`` entries, or one ``${env:...}`` placeholder holding a YAML list
    static_gateways: tuple[str, ...] = ("${env:FLOE_GATEWAY_ENDPOINTS}",)
    #: run k8sattributes in the agent (off only where no Kubernetes API is reachable, e.g. the local proof)
    k8sattributes: bool = True
    #: the gateway's share of traces that are not errors / pipeline runs / slow (default: the mode's ratio)
    sampling_ratio: float | None = None
    decision_wait: str = "${env:FLOE_TAIL_DECISION_WAIT:-" + DECISION_WAIT + "}"
    latency_threshold_ms: int = LATENCY_THRESHOLD_MS


def _receivers() -> dict[str, Any]:
    return {
        "otlp": {
            "protocols": {
                "grpc": {"endpoint": f"{_HOST}:${{env:FLOE_OTLP_GRPC_PORT:-4317}}"},
                "http": {"endpoint": f"{_HOST}:${{env:FLOE_OTLP_HTTP_PORT:-4318}}"},
            }
        }
    }


def _base(role: str) -> dict[str, Any]:
    return {
        "extensions": {"health_check": {"endpoint": f"{_HOST}:${{env:FLOE_HEALTH_PORT:-13133}}"}},
        "receivers": _receivers(),
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 25},
            "batch": {"send_batch_size": 8192, "send_batch_max_size": 8192, "timeout": "200ms"},
        },
        "service": {
            "extensions": ["health_check"],
            # the collector's own metrics (accepted / refused / sent / send_failed / queue size) for Prometheus;
            # the scale-out proof reads exactly these to account for every span
            "telemetry": {
                "resource": {"floe.collector.tier": role},
                "metrics": {
                    "level": "detailed",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": "${env:MY_POD_IP:-0.0.0.0}",
                                        "port": "${env:FLOE_METRICS_PORT:-8888}",
                                        "without_scope_info": True,
                                        "without_type_suffix": False,
                                        "without_units": True,
                                    }
                                }
                            }
                        }
                    ],
                },
            },
        },
    }


def _ordered(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("extensions", "receivers", "processors", "exporters", "service")
    return {k: config[k] for k in keys if k in config}


def _retry(max_elapsed: str) -> dict[str, Any]:
    return {"enabled": True, "initial_interval": "1s", "max_interval": "10s", "max_elapsed_time": max_elapsed}


def agent_config(options: TierOptions | None = None) -> dict[str, Any]:
    """The node agent's config (independent of the backend: the gateways export)."""
    opts = options or TierOptions()
    config = _base("agent")
    processors = config["processors"]
    if opts.k8sattributes:
        processors["k8sattributes"] = {
            # only this node's pods: the DaemonSet sets KUBE_NODE_NAME from spec.nodeName
            "filter": {"node_from_env_var": "KUBE_NODE_NAME"},
            "pod_association": [
                {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
                {"sources": [{"from": "resource_attribute", "name": "k8s.pod.ip"}]},
                {"sources": [{"from": "connection"}]},
            ],
            "extract": {
                "metadata": [
                    "k8s.namespace.name",
                    "k8s.pod.name",
                    "k8s.pod.uid",
                    "k8s.node.name",
                    "k8s.deployment.name",
                    "k8s.job.name",
                    "k8s.cronjob.name",
                ],
                "otel_annotations": True,
            },
        }
    if opts.resolver == "k8s":
        resolver: dict[str, Any] = {"k8s": {"service": opts.gateway_service, "ports": [4317], "timeout": "10s"}}
    elif opts.resolver == "dns":
        host = opts.gateway_service
        if "." in host and not host.endswith(".svc.cluster.local"):
            host = f"{host}.svc.cluster.local"
        resolver = {"dns": {"hostname": host, "port": "4317", "interval": "5s", "timeout": "1s"}}
    elif opts.resolver == "static":
        hostnames: Any = list(opts.static_gateways)
        if len(hostnames) == 1 and hostnames[0].startswith("${"):
            hostnames = hostnames[0]  # one placeholder (${env:..} / ${file:..}) holding a YAML list
        resolver = {"static": {"hostnames": hostnames}}
    else:
        msg = f"unknown resolver {opts.resolver!r} (one of {', '.join(RESOLVERS)})"
        raise ValueError(msg)
    config["exporters"] = {
        "load_balancing": {
            "routing_key": "traceID",
            # resiliency level 1 (instrumented: otelcol_exporter_{sent,send_failed,enqueue_failed}_spans):
            # a failed batch is retried here and routed again over the *current* ring, so once a gateway has
            # left the EndpointSlice its traces go to the others; consumers > 1 so one dead gateway's retries
            # do not block the live ones' batches
            "retry_on_failure": _retry("60s"),
            "sending_queue": {"enabled": True, "num_consumers": 16, "queue_size": AGENT_QUEUE_SPANS,
                              "sizer": "items"},
            "timeout": "10s",
            "protocol": {
                "otlp": {
                    "tls": {"insecure": True},
                    "timeout": "5s",
                    "compression": "gzip",
                    # resiliency level 2 (per gateway) OFF, on purpose: the per-gateway exporters run with a no-op
                    # meter (loadbalancingexporter factory.go), so a batch they queue and later drop is counted
                    # nowhere, and level 1 would count it "sent" once queued. Without them an error returns at
                    # once to level 1 above, which retries over the current ring and counts what it gives up.
                    "retry_on_failure": {"enabled": False},
                    "sending_queue": {"enabled": False},
                }
            },
            "resolver": resolver,
        },
        "otlp_grpc/gateway": {
            "endpoint": opts.gateway_endpoint,
            "tls": {"insecure": True},
            "compression": "gzip",
            "retry_on_failure": _retry("60s"),
            "sending_queue": {"enabled": True, "num_consumers": 4, "queue_size": AGENT_QUEUE_SPANS,
                              "sizer": "items"},
        },
    }
    chain = ["memory_limiter", *(["k8sattributes"] if opts.k8sattributes else []), "batch"]
    config["service"]["pipelines"] = {
        "traces": {"receivers": ["otlp"], "processors": chain, "exporters": ["load_balancing"]},
        "metrics": {"receivers": ["otlp"], "processors": chain, "exporters": ["otlp_grpc/gateway"]},
        "logs": {"receivers": ["otlp"], "processors": chain, "exporters": ["otlp_grpc/gateway"]},
    }
    return _ordered(config)


def tail_sampling_policies(ratio: float, latency_threshold_ms: int) -> list[dict[str, Any]]:
    """The gateway's policies: a trace is kept when any one of them says so."""
    return [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        *(
            {
                "name": f"pipeline-runs-{key}",
                "type": "string_attribute",
                "string_attribute": {"key": key, "values": [".+"], "enabled_regex_matching": True},
            }
            for key in PIPELINE_ATTRIBUTES
        ),
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": latency_threshold_ms}},
        {"name": "share-of-the-rest", "type": "probabilistic",
         "probabilistic": {"sampling_percentage": round(ratio * 100, 6)}},
    ]


def gateway_config(
    exporters: dict[str, Any], pipelines: dict[str, list[str]], mode: str, options: TierOptions | None = None
) -> dict[str, Any]:
    """The gateway's config: tail sampling, then the backend plugin's ``exporters`` per signal."""
    opts = options or TierOptions()
    ratio = MODE_SAMPLING[mode] if opts.sampling_ratio is None else opts.sampling_ratio
    config = _base("gateway")
    config["processors"]["tail_sampling"] = {
        "decision_wait": opts.decision_wait,
        "num_traces": NUM_TRACES,
        "expected_new_traces_per_sec": 1000,
        # spans arriving after their trace left memory (a dbt run's root span ends minutes after its first node
        # span was decided) follow the trace's decision instead of being decided again on their own
        "decision_cache": {"sampled_cache_size": DECISION_CACHE, "non_sampled_cache_size": DECISION_CACHE},
        "policies": tail_sampling_policies(ratio, opts.latency_threshold_ms),
    }
    sized: dict[str, Any] = {}
    for name, exporter in exporters.items():
        entry = dict(exporter or {})
        if name.split("/", 1)[0] not in ("debug", "file", "nop"):
            entry.setdefault("retry_on_failure", _retry("300s"))
            entry.setdefault(
                "sending_queue",
                {"enabled": True, "num_consumers": 4, "queue_size": GATEWAY_QUEUE_SPANS, "sizer": "items"},
            )
        sized[name] = entry
    config["exporters"] = sized
    config["service"]["pipelines"] = {
        signal: {
            "receivers": ["otlp"],
            "processors": ["memory_limiter", *(["tail_sampling"] if signal == "traces" else []), "batch"],
            "exporters": list(names),
        }
        for signal, names in pipelines.items()
        if names
    }
    return _ordered(config)
