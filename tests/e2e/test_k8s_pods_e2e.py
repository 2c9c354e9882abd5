"""Pods simulated end to end: each example workload in k8s/ runs as its manifest says, to a real collector.

A simulated pod takes the container's ``command`` + ``args`` and ``env`` from the manifest and resolves
them the way the kubelet does: Downward-API ``fieldRef`` values come from test pod facts, ``$(VAR)``
references expand against earlier env entries (``$$`` escapes), ConfigMap volumes are written out from
the ConfigMaps in k8s/, and emptyDir volumes are fresh directories. Paths inside the pod are mapped to
the local disk: volume mounts to those directories, and the example app image's files
(k8s/image/app.Dockerfile: /app/jobs, /app/dagster, /app/dbt/jaffle) to this checkout (the dbt
project is copied, so dbt never writes into the repository). ``opentelemetry-instrument`` and the
Python tools come from the test interpreter's environment, standing in for the image.

What each test overrides, and only that:
- ``OTEL_EXPORTER_OTLP_ENDPOINT``: the cluster DNS name of the gateway is replaced with the test collector.
- ``OTEL_TRACES_SAMPLER=always_on``: the pods run in ``FLOE_MODE=prod``, whose default sampler keeps a
  ratio of traces; the tests need every trace.
- Dagster: the code server's ``--host``/``--port`` become loopback and a free port; a run of the code
  location's job is then executed in the same pod environment (``dagster job execute``, which is what a
  run worker launched from this code location does), because the server alone runs no ops.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.collector import Collector, collector_binary, free_port
from tests.support.run import BIN

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"

# Files of the example app image (k8s/image/app.Dockerfile) -> this checkout.
IMAGE_FILES = {
    "/app/jobs": K8S / "image" / "app" / "jobs",
    "/app/dagster": K8S / "image" / "app" / "dagster",
    "/app/dbt/jaffle": REPO / "tests" / "projects" / "jaffle",
}
NODE_NAME = "kind-worker-2"
POD_IP = "127.0.0.1"
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object in k8s/ (kustomization files excluded)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def find(kind: str, name: str) -> dict[str, Any]:
    """The object of ``kind`` named ``name`` in k8s/."""
    for doc in manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"{kind}/{name} not in k8s/")


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template (metadata + spec) of a workload object."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if obj["kind"] == "Pod":
        return obj
    return obj["spec"]["template"]


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are replaced, ``$$`` escapes, unknown refs stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


@dataclass
class SimulatedPod:
    """A container of a manifest, resolved to something runnable here."""

    name: str
    namespace: str
    uid: str
    container: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    paths: dict[str, Path] = field(default_factory=dict)

    def local(self, text: str) -> str:
        """Map a path inside the pod to the local disk (unchanged when nothing is mounted there)."""
        for prefix in sorted(self.paths, key=len, reverse=True):
            if text == prefix or text.startswith(prefix + "/"):
                return str(self.paths[prefix]) + text[len(prefix):]
        return text


def simulate(obj: dict[str, Any], container: str, root: Path, pod_name: str) -> SimulatedPod:
    """Resolve ``container`` of workload ``obj`` as the kubelet would, with this machine as the node."""
    namespace = obj["metadata"]["namespace"]
    spec = pod_template(obj)["spec"]
    c = next(x for x in spec["containers"] if x["name"] == container)
    pod_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod:{namespace}/{pod_name}"))
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "metadata.uid": pod_uid,
        "spec.nodeName": NODE_NAME,
        "status.podIP": POD_IP,
        "status.hostIP": POD_IP,
    }
    fs = root / "pod-fs"
    paths: dict[str, Path] = {}
    for prefix, src in IMAGE_FILES.items():
        dst = fs / prefix.lstrip("/")
        if not dst.exists():
            ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "*.duckdb")
            shutil.copytree(src, dst, ignore=ignore)
        paths[prefix] = dst
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in c.get("volumeMounts", []):
        vol = volumes[mount["name"]]
        dst = fs / mount["mountPath"].lstrip("/")
        dst.mkdir(parents=True, exist_ok=True)
        if "configMap" in vol:
            data = find("ConfigMap", vol["configMap"]["name"])["data"]
            items = vol["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (dst / item["path"]).write_text(data[item["key"]])
        else:
            assert "emptyDir" in vol, f"volume kind not simulated: {vol}"
        paths[mount["mountPath"]] = dst

    home = root / "home"
    home.mkdir(exist_ok=True)
    env: dict[str, str] = {
        "PATH": f"{BIN}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HOSTNAME": pod_name,
    }
    pod = SimulatedPod(pod_name, namespace, pod_uid, container, [], env, None, paths)
    for item in c.get("env", []):
        if "value" in item:
            value = expand(item["value"], env)
        else:
            ref = item["valueFrom"]
            if "fieldRef" in ref:
                value = fields[ref["fieldRef"]["fieldPath"]]
            elif "configMapKeyRef" in ref:
                key_ref = ref["configMapKeyRef"]
                value = find("ConfigMap", key_ref["name"])["data"][key_ref["key"]]
            else:
                raise AssertionError(f"env source not simulated: {ref}")
        env[item["name"]] = pod.local(value)
    pod.argv = [pod.local(expand(a, env)) for a in [*c.get("command", []), *c.get("args", [])]]
    pod.cwd = Path(pod.local(c["workingDir"])) if "workingDir" in c else None
    return pod


def point_at(pod: SimulatedPod, endpoint: str) -> None:
    """The two test overrides: export to ``endpoint`` and keep every trace."""
    pod.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    pod.env["OTEL_TRACES_SAMPLER"] = "always_on"


def run_pod(pod: SimulatedPod, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the simulated container's command to completion."""
    return subprocess.run(
        pod.argv, env=pod.env, cwd=pod.cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def expected_resource(pod: SimulatedPod) -> dict[str, str]:
    """The k8s.* and floe.* resource attributes the pod's env promises."""
    env = pod.env
    return {
        "k8s.namespace.name": pod.namespace,
        "k8s.pod.name": pod.name,
        "k8s.pod.uid": pod.uid,
        "k8s.node.name": NODE_NAME,
        "k8s.container.name": pod.container,
        "service.instance.id": f"{pod.namespace}.{pod.name}.{pod.container}",
        "service.name": env.get("OTEL_SERVICE_NAME") or env["FLOE_PRODUCT_NAME"],
        "floe.namespace": env["FLOE_NAMESPACE"],
        "floe.product.name": env["FLOE_PRODUCT_NAME"],
        "floe.product.version": env["FLOE_PRODUCT_VERSION"],
        "floe.mode": env["FLOE_MODE"],
        "deployment.environment.name": env["FLOE_MODE"],
    }


def assert_pod_resource(spans: list[dict[str, Any]], pod: SimulatedPod, **extra: str) -> None:
    """Every span of the pod carries the promised resource attributes."""
    assert spans, "no spans arrived"
    want = {**expected_resource(pod), **extra}
    for span in spans:
        got = {k: span["resource"].get(k) for k in want}
        assert got == want, f"span {span['name']!r}: {got} != {want}"


def spans_of(collector: Collector, pod: SimulatedPod) -> list[dict[str, Any]]:
    """Spans whose resource names this pod."""
    return [s for s in collector.spans() if s["resource"].get("k8s.pod.name") == pod.name]


@pytest.mark.e2e
def test_dbt_job_pod_reaches_the_collector(collector: Collector, tmp_path: Path) -> None:
    """The dbt Job's container (opentelemetry-instrument dbt build) sends spans with k8s.* and floe.* set."""
    job = find("Job", "iot-telemetry-dbt")
    pod = simulate(job, "dbt", tmp_path, "iot-telemetry-dbt-7xk2p")
    assert pod.argv[:3] == ["opentelemetry-instrument", "dbt", "build"]
    point_at(pod, collector.http_endpoint)

    result = run_pod(pod)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert collector.wait_for(lambda c: any(s["name"].startswith("dbt build") for s in spans_of(c, pod)))
    assert_pod_resource(spans_of(collector, pod), pod, **{"k8s.job.name": "iot-telemetry-dbt"})
    names = {s["name"] for s in spans_of(collector, pod)}
    assert any("stg_orders" in n for n in names), sorted(names)


@pytest.mark.e2e
def test_cronjob_pod_reaches_the_collector(collector: Collector, tmp_path: Path) -> None:
    """The CronJob's plain Python job sends its spans with k8s.* and floe.* attributes."""
    cron = find("CronJob", "iot-telemetry-refresh")
    pod = simulate(cron, "refresh", tmp_path, "iot-telemetry-refresh-29390440-q8t5w")
    assert pod.argv[:2] == ["opentelemetry-instrument", "python"]
    point_at(pod, collector.http_endpoint)

    result = run_pod(pod)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert collector.wait_for(lambda c: len(spans_of(c, pod)) == 4)
    assert_pod_resource(spans_of(collector, pod), pod, **{"k8s.cronjob.name": "iot-telemetry-refresh"})
    root = next(s for s in spans_of(collector, pod) if s["name"] == "refresh_readings")
    batches = [s for s in spans_of(collector, pod) if s["name"] == "refresh_batch"]
    assert len(batches) == 3
    assert all(s["parent_span_id"] == root["span_id"] for s in batches)


@pytest.mark.e2e
def test_cronjob_pod_logs_reach_kubectl_logs_and_the_collector(collector: Collector, tmp_path: Path) -> None:
    """The job's own logging.basicConfig output still reaches the pod's stderr, and its records reach the collector."""
    pod = simulate(find("CronJob", "iot-telemetry-refresh"), "refresh", tmp_path, "iot-telemetry-refresh-l0g5")
    point_at(pod, collector.http_endpoint)

    result = run_pod(pod)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "refresh complete" in result.stderr, "the job's console logs (kubectl logs) were swallowed"
    assert collector.wait_for(lambda c: any("refresh complete" in str(r["body"]) for r in c.logs()))
    record = next(r for r in collector.logs() if "refresh complete" in str(r["body"]))
    assert record["resource"]["k8s.pod.name"] == pod.name
    assert record["resource"]["floe.product.name"] == "iot-telemetry"


@pytest.mark.e2e
def test_dagster_deployment_pod_reaches_the_collector(collector: Collector, tmp_path: Path) -> None:
    """The Dagster Deployment's code server serves under the distro; a run in its pod env sends spans."""
    deployment = find("Deployment", "iot-telemetry-dagster")
    pod = simulate(deployment, "dagster", tmp_path, "iot-telemetry-dagster-5d8f7c9b6-m2x4q")
    assert pod.argv[:4] == ["opentelemetry-instrument", "dagster", "api", "grpc"]
    point_at(pod, collector.http_endpoint)
    port = free_port()
    argv = list(pod.argv)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    probe = find_probe(deployment, "dagster", port)

    server_log = tmp_path / "code-server.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(argv, env=pod.env, cwd=pod.cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(probe, env=pod.env, capture_output=True, check=False).returncode != 0:
            assert server.poll() is None, server_log.read_text()[-3000:]
            assert time.monotonic() < deadline, "code server never became ready"
            time.sleep(1)

        run = subprocess.run(
            [
                "opentelemetry-instrument", "dagster", "job", "execute",
                "-f", pod.local("/app/dagster/definitions.py"), "-j", "refresh_readings",
            ],
            env=pod.env, cwd=pod.cwd, capture_output=True, text=True, timeout=180, check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    assert collector.wait_for(lambda c: len(spans_of(c, pod)) >= 3)
    assert_pod_resource(spans_of(collector, pod), pod, **{"k8s.deployment.name": "iot-telemetry-dagster"})
    names = {s["name"] for s in spans_of(collector, pod)}
    assert any("reading_anomalies" in n for n in names), sorted(names)


def healthy(url: str) -> bool:
    """Whether a health endpoint answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def find_probe(obj: dict[str, Any], container: str, port: int) -> list[str]:
    """The container's readiness probe command, pointed at ``port``."""
    c = next(x for x in pod_template(obj)["spec"]["containers"] if x["name"] == container)
    command = list(c["readinessProbe"]["exec"]["command"])
    command[command.index("--port") + 1] = str(port)
    return command


@pytest.mark.e2e
def test_cronjob_pod_through_the_collector_gateway(collector: Collector, tmp_path: Path) -> None:
    """Pod -> gateway running k8s/collector/configmap.yaml -> backend: spans keep their k8s.*/floe.* attrs."""
    config = find("ConfigMap", "otel-collector-config")["data"]["collector.yaml"]
    # The Jaeger stand-in: the test collector's OTLP gRPC receiver (plaintext, like tls.insecure in-cluster).
    backend = collector.grpc_endpoint.removeprefix("http://")
    config = config.replace("jaeger-collector.observability.svc.cluster.local:4317", backend)
    # Free ports instead of the pod's fixed 4317/4318/13133.
    ports = {"4317": free_port(), "4318": free_port(), "13133": free_port()}
    for old, new in ports.items():
        config = config.replace(f"}}:{old}\n", f"}}:{new}\n")
    assert backend in config and all(str(p) in config for p in ports.values())
    (tmp_path / "gateway.yaml").write_text(config)
    gateway_env = {**os.environ, "MY_POD_IP": "127.0.0.1"}
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [collector_binary(), "--config", str(tmp_path / "gateway.yaml")], env=gateway_env, stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not healthy(f"http://127.0.0.1:{ports['13133']}/"):
            assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "gateway never became healthy"
            time.sleep(0.2)

        cron = find("CronJob", "iot-telemetry-refresh")
        pod = simulate(cron, "refresh", tmp_path, "iot-telemetry-refresh-29390450-z9v4k")
        point_at(pod, f"http://127.0.0.1:{ports['4318']}")
        result = run_pod(pod)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert collector.wait_for(lambda c: len(spans_of(c, pod)) >= 4, timeout=20), (
            tmp_path / "gateway.log"
        ).read_text()[-3000:]
    finally:
        gateway.terminate()
        gateway.wait(15)
        log.close()
    assert_pod_resource(spans_of(collector, pod), pod)


@pytest.mark.e2e
def test_gateway_config_is_valid_for_the_real_collector(tmp_path: Path) -> None:
    """The ConfigMap's collector.yaml passes `otelcol validate` of a real build with the same components."""
    config = find("ConfigMap", "otel-collector-config")["data"]["collector.yaml"]
    (tmp_path / "collector.yaml").write_text(config)
    result = subprocess.run(
        [collector_binary(), "validate", "--config", str(tmp_path / "collector.yaml")],
        env={**os.environ, "MY_POD_IP": "127.0.0.1"}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
