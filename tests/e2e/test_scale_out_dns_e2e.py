"""A gateway is SIGKILLed and the agent re-routes **on its own**: the loadbalancing exporter's DNS resolver, no reload.

Same cluster as ``test_scale_out_e2e.py`` (1 agent + 3 gateways, real collectors, the generated configs), except:

- the agent is generated with ``--resolver dns --gateway-service floe-gateway-headless.proof --no-k8sattributes``,
  so it resolves ``floe-gateway-headless.proof.svc.cluster.local`` (the headless Service's name) and builds its
  ring from the answer. A third ``--config`` overlay sets the resolver's ``port`` (a free port instead of 4317,
  the machine is shared) and ``interval: 1s`` (generated: 5s, to keep the test short);
- the gateways listen on 127.0.0.2, 127.0.0.3 and 127.0.0.4, all on that one port, as pods behind a headless
  Service do (the DNS resolver dials one port on every address it gets);
- the agent runs in a private mount namespace (``unshare --mount``) whose ``/etc/hosts`` is a bind mount of a
  file the test owns; the real ``/etc/hosts`` is never written. The collector is a static Go binary
  (``CGO_ENABLED=0``): its resolver reads ``/etc/hosts`` first (``hosts: files dns``) and re-reads it when its
  mtime or size changed, at most every 5 s (Go's ``cacheMaxAge``). The file is rewritten in place (one
  ``pwrite`` of a fixed size), because a bind mount pins the inode: a rename would not be seen;
- **the test harness plays Kubernetes**: a small endpoints controller probes each gateway's ``health_check``
  every 0.5 s and rewrites the hosts file with the ready gateways only (2 failed probes in a row = not ready).
  That is the job of the EndpointSlice controller (readiness probe → endpoint ``ready: false``) and CoreDNS
  (the headless Service's A records list ready endpoints only). Nothing here signals or reloads the agent.

- **gw2 pushes its own metrics every 0.1 s** (a third ``--config`` overlay on gw2; the others every 0.5 s): what it
  held when it was killed is read from its last push, and the window its metrics cannot show (what it took
  after that push) is at most that interval plus the push's transit.

The static-resolver test in ``test_scale_out_e2e.py`` stays: it proves the other path, a config reload (SIGHUP)
of the gateway list, and that what a reload cuts short is counted (``send_failed``). This one proves that with
a resolver the agent needs no reload at all, and loses nothing it accepted: what is lost is what gw2 itself had
acknowledged and not yet decided, and the collectors' own counters account for it (the test's docstring).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_scale_out_e2e import RATIO, Node, counter, finish, generate, lines, run_apps
from tests.support.collector import Collector, free_port

pytestmark = pytest.mark.e2e
AGENT_FLAGS = ("--resolver", "dns", "--gateway-service", "floe-gateway-headless.proof", "--no-k8sattributes")
HOSTNAME = "floe-gateway-headless.proof.svc.cluster.local"  # what the generator makes of that --gateway-service
GATEWAY_IPS = {"gw1": "127.0.0.2", "gw2": "127.0.0.3", "gw3": "127.0.0.4"}
PROCESSES, PER_PROCESS, SECONDS = 3, 300, 14.0  # 900 traces, 2700 spans, paced over 14 s
SPANS = 3
GW2_PUSH_MS = 100  # gw2's own metrics, pushed every 0.1 s: its last push before the SIGKILL is at most that old
TS = "otelcol_processor_tail_sampling_"
EP_POLICIES = ("errors", "pipeline-runs-floe.pipeline.id")  # every error / every pipeline trace (both roots carry it)


def shared_port(ips: list[str]) -> int:
    """A port that is free on every one of ``ips`` (the gateways all listen on it)."""
    for _ in range(50):
        port = free_port()
        try:
            for ip in ips:
                with socket.socket() as s:
                    s.bind((ip, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {ips}")


class EndpointsController(threading.Thread):
    """The headless Service, played by the test: probe every gateway's health_check every ``period`` seconds and
    publish the ready ones as A records of HOSTNAME in the agent's hosts file (what the EndpointSlice controller
    and CoreDNS do when a pod fails its readiness probe)."""

    def __init__(self, hosts: Path, gateways: dict[str, Node], period: float = 0.5, failures: int = 2) -> None:
        super().__init__(name="endpoints-controller", daemon=True)
        self.hosts, self.gateways, self.period, self.failure_threshold = hosts, gateways, period, failures
        self.failed = dict.fromkeys(gateways, 0)
        self.ready = frozenset(gateways)
        self.events: list[tuple[int, frozenset[str]]] = []  # (time.time_ns(), ready gateways) at each rewrite
        self.stopping = threading.Event()
        self.width = max(len(f"{n.host} {HOSTNAME}") for n in gateways.values()) + 8
        self.hosts.write_text(self.render(self.ready))
        self.events.append((time.time_ns(), self.ready))

    def render(self, ready: frozenset[str]) -> str:
        """Fixed size whatever is ready: a not-ready slot becomes a comment line of the same length."""
        slots = [
            (f"{node.host} {HOSTNAME}" if name in ready else f"# not ready: {name}").ljust(self.width)
            for name, node in sorted(self.gateways.items())
        ]
        return "127.0.0.1 localhost\n" + "".join(f"{slot}\n" for slot in slots)

    def probe(self, node: Node) -> bool:
        try:
            with urllib.request.urlopen(f"http://{node.host}:{node.health}/", timeout=1) as r:
                status: int = r.status
                return status == 200
        except OSError:
            return False

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            for name, node in self.gateways.items():
                self.failed[name] = 0 if self.probe(node) else self.failed[name] + 1
            ready = frozenset(n for n, count in self.failed.items() if count < self.failure_threshold)
            if ready != self.ready:
                fd = os.open(self.hosts, os.O_WRONLY)  # in place: the bind mount pins this inode
                try:
                    os.pwrite(fd, self.render(ready).encode(), 0)
                finally:
                    os.close(fd)
                self.ready = ready
                self.events.append((time.time_ns(), ready))

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def gauge(sink: Collector, metric: str, node: str, **match: str) -> list[tuple[int, int]]:
    """(timeUnixNano, value) of a collector's own gauge, oldest first."""
    out = []
    for m in sink.metrics():
        if m["name"] == metric and m["resource"].get("proof.node") == node:
            out += [
                (int(p["timeUnixNano"]), int(p.get("asInt", p.get("asDouble", 0))))
                for p in m["points"]
                if all(p["attributes"].get(k) == v for k, v in match.items())
            ]
    return sorted(out)


def incarnations(sink: Collector, metric: str, node: str) -> set[str]:
    """Start times of a cumulative counter: one per process start or config reload."""
    return {
        str(p.get("startTimeUnixNano"))
        for m in sink.metrics()
        if m["name"] == metric and m["resource"].get("proof.node") == node
        for p in m["points"]
    }


def total(sink: Collector, metric: str, node: str, **match: object) -> int:
    """A counter's (or a histogram's count's) latest value, summed over attribute sets and incarnations; unlike
    ``counter`` it matches non-string attributes (``success=True``) and reads histograms."""
    points = (
        p
        for m in sink.metrics()
        if m["name"] == metric and m["resource"].get("proof.node") == node
        for p in m["points"]
    )
    latest: dict[str, int] = defaultdict(int)
    for p in (p for p in points if match.items() <= p["attributes"].items()):
        key = f"{p.get('startTimeUnixNano')} {sorted(p['attributes'].items(), key=str)}"
        latest[key] = max(latest[key], int(p.get("asInt", p.get("asDouble", p.get("count", 0)))))
    return sum(latest.values())


def last_push_ns(sink: Collector, node: str) -> int:
    """Collection time of the last push of a node's own metrics that reached the sink."""
    return max(
        int(p["timeUnixNano"]) for m in sink.metrics() if m["resource"].get("proof.node") == node for p in m["points"]
    )


def spans_by_gateway(sinks: dict[str, Collector]) -> dict[str, dict[str, set[str]]]:
    """gateway → trace id → distinct span ids it exported (a retried batch can deliver a span twice)."""
    out: dict[str, dict[str, set[str]]] = {}
    for name, sink in sinks.items():
        traces: dict[str, set[str]] = defaultdict(set)
        for span in sink.spans():
            traces[span["trace_id"]].add(span["span_id"])
        out[name] = dict(traces)
    return out


@pytest.fixture
def dns_cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is needed to give the agent its own /etc/hosts"
    assert os.geteuid() == 0, "unshare --mount and mount --bind need root"
    (tmp_path / "metrics-sink").mkdir()
    metrics_sink = Collector(tmp_path / "metrics-sink")
    sinks: dict[str, Collector] = {}
    gateways: dict[str, Node] = {}
    nodes: list[Node] = []
    controller: EndpointsController | None = None
    port = shared_port(list(GATEWAY_IPS.values()))
    try:
        gateway_config = generate(tmp_path, "gateway", "--sampling-ratio", str(RATIO))
        fast_push = tmp_path / "gw2-push.yaml"  # replaces the reader list of Node's overlay (lists are not merged)
        otlp = {"protocol": "http/protobuf", "endpoint": f"{metrics_sink.http_endpoint}/v1/metrics"}
        reader = {"periodic": {"interval": GW2_PUSH_MS, "exporter": {"otlp": otlp}}}
        fast_push.write_text(yaml.safe_dump({"service": {"telemetry": {"metrics": {"readers": [reader]}}}}))
        for name, ip in GATEWAY_IPS.items():
            (tmp_path / f"{name}-backend").mkdir()
            sinks[name] = Collector(tmp_path / f"{name}-backend")
            gateways[name] = Node(
                name,
                gateway_config,
                tmp_path,
                metrics_sink,
                host=ip,
                grpc_port=port,
                overlays=[fast_push] if name == "gw2" else [],
                PROOF_BACKEND=f"127.0.0.1:{sinks[name].http_port}",
            )
            nodes.append(gateways[name])
        hosts = tmp_path / "agent-etc-hosts"
        controller = EndpointsController(hosts, gateways)
        agent_config = generate(tmp_path, "agent", *AGENT_FLAGS)
        resolver = yaml.safe_load(agent_config.read_text())["exporters"]["load_balancing"]["resolver"]
        assert resolver["dns"]["hostname"] == HOSTNAME, resolver
        dns_overlay = tmp_path / "agent-dns.yaml"
        dns_overlay.write_text(
            yaml.safe_dump(
                {"exporters": {"load_balancing": {"resolver": {"dns": {"port": str(port), "interval": "1s"}}}}}
            )
        )
        agent = Node(
            "agent",
            agent_config,
            tmp_path,
            metrics_sink,
            overlays=[dns_overlay],
            # a private mount namespace whose /etc/hosts is the controller's file; sh execs the collector
            prefix=[
                unshare,
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(hosts),
            ],
            FLOE_GATEWAY_OTLP_ENDPOINT=gateways["gw1"].grpc_endpoint,
        )
        nodes.append(agent)
        controller.start()
        yield {
            "agent": agent,
            "gateways": gateways,
            "sinks": sinks,
            "metrics": metrics_sink,
            "controller": controller,
            "hosts": hosts,
            "tmp": tmp_path,
        }
    finally:
        if controller is not None and controller.is_alive():
            controller.stop()
        for node in nodes:
            node.stop()
        for sink in (*sinks.values(), metrics_sink):
            sink.stop()


def test_gateway_killed_agent_reroutes_by_dns_without_reload(dns_cluster: dict[str, Any]) -> None:
    """3 processes send 900 traces (2700 spans) over 14 s; gw2 is SIGKILLed when about a sixth are out.

    - re-route: the controller drops gw2 from the A records, the agent's DNS resolver sees 2 addresses and
      rebuilds its ring; nothing started after the kill lands on gw2; every error / pipeline trace started after
      the kill is kept, complete, by gw1 / gw3, and no trace started after the kill (so none after the ring
      change either) is split across gateways;
    - accounting, from the agent's own counters: sent (acknowledged by a gateway) + send_failed +
      enqueue_failed == accepted == 2700, with send_failed == enqueue_failed == 0: the batches that failed
      toward gw2 were retried (level 1) over the new ring, nothing was dropped;
    - the agent was never reloaded: same pid, alive throughout, one "Everything is ready", one start time on
      its cumulative counters.

    - what is lost, from the collectors' own counters (docs/scale-out.md, "A gateway dies"): what gw2 had
      acknowledged and neither exported nor dropped by policy died with it. Its last push (at most ``GW2_PUSH_MS``
      plus the push's transit before the kill) counts ``at_risk`` = new_trace_id_received - not_sampled -
      exported spans / 3 of those traces; what it took after that push, no gw2 metric shows. That remainder is
      ``window`` = accepted spans / 3 - the survivors' decided traces - gw2's new_trace_id_received at its last
      push (every trace id is new at exactly one gateway: the ring moves only gw2's ids, and a retried batch hits
      the trace in memory or in the decision cache); the agent's backend_outcome{gw2, success} - gw2's served
      Export calls count it in requests. Asserted: lost error / pipeline traces ≤ at_risk + window, and exactly
      sent - decided sampled by gw1 / gw3 under the errors and floe.pipeline.id policies (minus what gw2 itself
      kept).
    """
    agent, gateways, sinks = dns_cluster["agent"], dns_cluster["gateways"], dns_cluster["sinks"]
    metrics, controller, tmp = dns_cluster["metrics"], dns_cluster["controller"], dns_cluster["tmp"]
    pid = agent.proc.pid
    real_hosts = Path("/etc/hosts").read_text()

    # the agent really reads the controller's file, in its own mount namespace, and resolved all 3 gateways
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert Path(f"/proc/{pid}/root/etc/hosts").read_text() == dns_cluster["hosts"].read_text()

    def backends(m: Collector) -> list[int]:
        return [v for _, v in gauge(m, "otelcol_loadbalancer_num_backends", "agent")]

    assert metrics.wait_for(lambda m: backends(m)[-1:] == [3], timeout=15), "the agent did not resolve 3 gateways"

    procs = run_apps(tmp, agent, count=PROCESSES, per_app=PER_PROCESS, tag="dns", seconds=SECONDS)
    outs = [out for _, out in procs]
    deadline = time.monotonic() + 60
    while sum(lines(out) for out in outs) < PROCESSES * PER_PROCESS // 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    before_kill = [lines(out) for out in outs]  # trace i of process p started after the kill if i >= before_kill[p]
    gateways["gw2"].proc.kill()
    kill_ns = time.time_ns()
    gateways["gw2"].proc.wait()

    def ring_of_two(m: Collector) -> bool:
        return any(t > kill_ns and v == 2 for t, v in gauge(m, "otelcol_loadbalancer_num_backends", "agent"))

    assert metrics.wait_for(ring_of_two, timeout=20), "the agent's ring never dropped the dead gateway"
    after_ring = [lines(out) + 1 for out in outs]  # started after the ring change was observed
    ring_ns = next(t for t, v in gauge(metrics, "otelcol_loadbalancer_num_backends", "agent") if t > kill_ns and v == 2)
    unready_ns = next(t for t, ready in controller.events if t > kill_ns and "gw2" not in ready)
    sent = finish(procs)
    assert len(sent) == PROCESSES * PER_PROCESS
    assert all(n < PER_PROCESS for n in after_ring), f"the ring changed too late for traces to follow: {after_ring}"

    index: dict[str, int] = defaultdict(int)
    post_kill: dict[str, str] = {}  # trace id → kind, for traces started after the kill
    post_ring: dict[str, str] = {}
    for item in sent:
        i = index[str(item["seed"])]
        index[str(item["seed"])] += 1
        if i >= before_kill[item["seed"]]:
            post_kill[item["trace_id"]] = item["kind"]
        if i >= after_ring[item["seed"]]:
            post_ring[item["trace_id"]] = item["kind"]
    must_keep = {t for t, kind in post_kill.items() if kind != "plain"}

    def kept_complete(_: Collector) -> bool:
        kept = spans_by_gateway({g: sinks[g] for g in ("gw1", "gw3")})
        return all(len(kept["gw1"].get(t, set()) | kept["gw3"].get(t, set())) == SPANS for t in must_keep)

    assert sinks["gw1"].wait_for(kept_complete, timeout=40), "error / pipeline traces started after the kill lost"

    def settled(m: Collector) -> bool:
        accepted = counter(m, "otelcol_receiver_accepted_spans", "agent", receiver="otlp")
        done = sum(
            counter(m, f"otelcol_exporter_{what}_spans", "agent", exporter="load_balancing")
            for what in ("sent", "send_failed", "enqueue_failed")
        )
        return accepted == PROCESSES * PER_PROCESS * SPANS and done == accepted

    assert metrics.wait_for(settled, timeout=40), "the agent's counters do not account for every span accepted"

    def survivors_decided(m: Collector) -> bool:  # the last traces are decided decision_wait after they came
        return all(
            total(m, TS + "global_count_traces_sampled", g) == total(m, TS + "new_trace_id_received", g)
            and [v for _, v in gauge(m, TS + "sampling_traces_on_memory", g)][-1:] == [0]
            for g in ("gw1", "gw3")
        )

    assert metrics.wait_for(survivors_decided, timeout=20), "gw1 / gw3 still hold undecided traces"
    time.sleep(1.0)  # one more push: the queue must stay empty
    accepted = counter(metrics, "otelcol_receiver_accepted_spans", "agent", receiver="otlp")
    refused = counter(metrics, "otelcol_receiver_refused_spans", "agent", receiver="otlp")
    sent_ok = counter(metrics, "otelcol_exporter_sent_spans", "agent", exporter="load_balancing")
    failed = counter(metrics, "otelcol_exporter_send_failed_spans", "agent", exporter="load_balancing")
    enqueue_failed = counter(metrics, "otelcol_exporter_enqueue_failed_spans", "agent", exporter="load_balancing")
    queue = [v for _, v in gauge(metrics, "otelcol_exporter_queue_size", "agent", exporter="load_balancing")]
    updates = counter(metrics, "otelcol_loadbalancer_num_backend_updates", "agent")
    survivors = {g: counter(metrics, "otelcol_receiver_accepted_spans", g, receiver="otlp") for g in ("gw1", "gw3")}
    gw2_acked = counter(metrics, "otelcol_receiver_accepted_spans", "gw2", receiver="otlp")
    gw2_on_memory = [v for _, v in gauge(metrics, TS + "sampling_traces_on_memory", "gw2")]  # at its last tick

    # (d) what gw2 acknowledged and never delivered, from the collectors' own counters (gw2's: as of its last push)
    push_ns = last_push_ns(metrics, "gw2")
    took = total(metrics, TS + "new_trace_id_received", "gw2")
    not_sampled = total(metrics, TS + "global_count_traces_sampled", "gw2", decision="not_sampled")
    sampled = total(metrics, TS + "global_count_traces_sampled", "gw2", decision="sampled")
    exported = total(metrics, "otelcol_exporter_sent_spans", "gw2", exporter="otlp_http/backend")
    held = took - not_sampled - sampled  # undecided, in memory
    at_risk = took - not_sampled - exported // SPANS  # acknowledged, neither dropped by policy nor exported
    decided = {g: total(metrics, TS + "global_count_traces_sampled", g) for g in ("gw1", "gw3")}
    window = accepted // SPANS - sum(decided.values()) - took  # acknowledged by gw2 after its last push
    acked_requests = total(
        metrics, "otelcol_loadbalancer_backend_outcome", "agent", endpoint=gateways["gw2"].grpc_endpoint, success=True
    )
    served = total(metrics, "rpc.server.call.duration", "gw2", **{"rpc.response.status_code": "OK"})
    too_early = {g: total(metrics, TS + "sampling_trace_dropped_too_early", g) for g in gateways}
    ep_sampled = sum(
        total(metrics, TS + "count_traces_sampled", g, policy=policy, decision="sampled")
        for g in ("gw1", "gw3")
        for policy in EP_POLICIES
    )

    kept = spans_by_gateway(sinks)
    owners: dict[str, list[str]] = defaultdict(list)
    for gateway, traces in kept.items():
        for trace_id in traces:
            owners[trace_id].append(gateway)
    on_gw2 = [t for t in post_kill if "gw2" in owners.get(t, [])]
    split_post_ring = {t: owners[t] for t in post_ring if len(owners.get(t, [])) > 1}
    split_post_kill = {t: owners[t] for t in post_kill if len(owners.get(t, [])) > 1}
    kept_post_ring = {g: sum(1 for t in post_ring if t in kept[g]) for g in ("gw1", "gw3")}
    pre_kill = {item["trace_id"] for item in sent if item["kind"] != "plain"} - set(post_kill)
    lost_with_gw2 = sorted(pre_kill - set(owners))  # acknowledged by gw2, not delivered when it died
    ep_sent = {item["trace_id"] for item in sent if item["kind"] != "plain"}
    ep_only_gw2 = [t for t in ep_sent if owners.get(t) == ["gw2"]]  # kept by gw2 itself before it died
    duplicates = sum(
        len(sinks[g].spans()) - sum(len(s) for s in kept[g].values()) for g in ("gw1", "gw3")
    )  # spans exported more than once (a batch is retried whole)
    figures = {
        "agent accepted": accepted,
        "refused": refused,
        "load_balancing sent": sent_ok,
        "send_failed": failed,
        "enqueue_failed": enqueue_failed,
        "counted lost": failed + enqueue_failed,
        "gw1+gw3 accepted": sum(survivors.values()),
        "gw2 last push -> kill (s)": round((kill_ns - push_ns) / 1e9, 3),
        "gw2 at its last push: accepted spans": gw2_acked,
        "new trace ids": took,
        "decided sampled / not sampled": (sampled, not_sampled),
        "exported spans": exported,
        "undecided (held)": held,
        "traces_on_memory (last tick)": gw2_on_memory[-1] if gw2_on_memory else None,
        "at risk (new - not sampled - exported/3)": at_risk,
        "gw2 window after its last push: traces (accepted/3 - gw1+gw3 decided - gw2 new)": window,
        "requests (agent backend_outcome - gw2 served)": (acked_requests - served, acked_requests, served),
        "error/pipeline traces started before the kill and lost with gw2": f"{len(lost_with_gw2)} of {len(pre_kill)}",
        "bound at risk + window": at_risk + window,
        "error/pipeline sent, decided sampled by gw1+gw3": (len(ep_sent), ep_sampled),
        "error/pipeline kept by gw2 itself": len(ep_only_gw2),
        "kill -> gw2 out of the A records (s)": round((unready_ns - kill_ns) / 1e9, 2),
        "kill -> agent ring of 2 (s, first 0.5 s push)": round((ring_ns - kill_ns) / 1e9, 2),
        "ring updates": updates,
        "traces started after the kill": len(post_kill),
        "of them error/pipeline, kept complete on gw1/gw3": len(must_keep),
        "traces started after the ring change": len(post_ring),
        "kept per survivor after the ring change": kept_post_ring,
        "split after the kill / after the ring change": (len(split_post_kill), len(split_post_ring)),
        "duplicate spans exported by gw1+gw3": duplicates,
    }
    print("\nDNS re-route without reload: " + "; ".join(f"{k} {v}" for k, v in figures.items()))
    (tmp / "figures.yaml").write_text(yaml.safe_dump(figures, sort_keys=False))

    # (c) never reloaded: the same process all along, started once, one incarnation of its counters
    assert agent.proc.poll() is None and agent.proc.pid == pid
    assert agent.log.read_text().count("Everything is ready") == 1, "the agent restarted its pipelines"
    assert len(incarnations(metrics, "otelcol_receiver_accepted_spans", "agent")) == 1
    assert updates == 2, "the ring changed exactly twice: 3 gateways at start, 2 after the kill"
    assert Path("/etc/hosts").read_text() == real_hosts
    # (a) after the kill, nothing lands on gw2; after the ring change, no trace split; both survivors used
    assert not on_gw2, on_gw2[:5]
    assert not split_post_ring, list(split_post_ring.items())[:5]
    # stronger, and it holds: the ring change moves only gw2's share of trace ids (consistent hashing), and what
    # was bound for gw2 after the kill was never acknowledged there, so it is re-sent whole to one survivor
    assert not split_post_kill, list(split_post_kill.items())[:5]
    assert all(n > 0 for n in kept_post_ring.values()), kept_post_ring
    # (b) every span the agent accepted was acknowledged by a gateway; none given up, none refused
    assert accepted == PROCESSES * PER_PROCESS * SPANS
    assert refused == 0
    assert sent_ok + failed + enqueue_failed == accepted
    assert failed == 0 and enqueue_failed == 0, "a resolver re-route should leave nothing to give up on"
    assert queue[-1:] == [0], queue[-5:]
    # (d) the loss is what gw2 held: counted by its last push, plus the window after it that only the others count
    assert not any(too_early.values()), f"a gateway evicted traces before their decision: {too_early}"
    assert 0 < kill_ns - push_ns < 500_000_000, "gw2's last push should be at most about GW2_PUSH_MS old"
    assert window >= 0 and acked_requests >= served, (window, acked_requests, served)
    # traces gw2 took after its last push came in requests it served after it, or were still on their way from
    # its receiver to tail_sampling (accepted, not yet a new trace id) when it pushed
    assert window == 0 or acked_requests > served or gw2_acked > SPANS * took, (window, acked_requests, served)
    assert len(lost_with_gw2) <= at_risk + window, (len(lost_with_gw2), at_risk, window)
    assert len(ep_sent) - ep_sampled == len(lost_with_gw2) + len(ep_only_gw2), (len(ep_sent), ep_sampled)
