"""The operator image layout, tested without Docker: build its glibc tree with pip, run a pod the operator's way.

``k8s/image/Dockerfile`` builds ``/autoinstrumentation`` with
``pip install --target /autoinstrumentation -r requirements.txt`` then ``pip install --no-deps --target
/autoinstrumentation /src``. This test runs the same commands
(on the sources the Dockerfile copies into ``/src``) into a cache directory keyed by the hash of those
inputs and the Python version, then runs the example Job of k8s/operator/example-job.yaml exactly as
the OpenTelemetry Operator would after injecting Instrumentation ``floe`` (k8s/operator/instrumentation.yaml):
a bare interpreter with no site-packages of ours (``python -m venv --without-pip``), ``PYTHONPATH`` set
to ``<tree>/opentelemetry/instrumentation/auto_instrumentation:<tree>``, and the operator's env (container
env > spec.python.env > spec.env > operator defaults, Downward-API variables, OTEL_RESOURCE_ATTRIBUTES
last with its ``$(VAR)`` references resolved). The only override: ``OTEL_EXPORTER_OTLP_ENDPOINT`` points
at the test collector instead of the gateway's cluster DNS name. The musl tree needs an Alpine build
host and is not exercised here.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_k8s_pods_e2e import NODE_NAME, POD_IP, SimulatedPod, expand, find, pod_template, simulate
from tests.support.collector import Collector

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "k8s" / "image"
MOUNT = "/otel-auto-instrumentation-python"  # where the operator's init container copies the tree
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "floe-otel-distro" / "autoinstrumentation"


IMAGE_INPUTS = ("build-tree.sh", "requirements.txt", "requirements-deps.txt", "sitecustomize.py")


def dockerfile_sources() -> dict[Path, str]:
    """What the glibc stage of the Dockerfile copies into /src: repository path -> path under /src."""
    out = {}
    first_stage = IMAGE.joinpath("Dockerfile").read_text().split("\nFROM ")[1]
    for line in first_stage.splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and parts[2].startswith("./"):
            out[REPO / parts[1]] = parts[2].removeprefix("./") or parts[1]
    return out


def _inputs_hash(sources: dict[Path, str]) -> str:
    h = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    files = [IMAGE / name for name in IMAGE_INPUTS]
    for src in sources:
        files.extend(sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
                     if src.is_dir() else [src])
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def autoinstrumentation_tree() -> Path:
    """The glibc /autoinstrumentation tree, built by the Dockerfile's own script (cached by its inputs)."""
    sources = dockerfile_sources()
    key = _inputs_hash(sources)
    tree = CACHE / key / "autoinstrumentation"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tree.is_dir():
            return tree
        work = CACHE / f"{key}.build"
        shutil.rmtree(work, ignore_errors=True)
        src = work / "src"
        for path, dst in sources.items():
            if path.is_dir():
                shutil.copytree(path, src / dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (src / dst).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, src / dst)
        # the Dockerfile's RUN: sh /image/build-tree.sh /autoinstrumentation /src /image
        result = subprocess.run(
            ["sh", str(IMAGE / "build-tree.sh"), str(work / "autoinstrumentation"), str(src), str(IMAGE)],
            env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900, check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        tree.parent.mkdir(parents=True, exist_ok=True)
        (work / "autoinstrumentation").rename(tree)
        shutil.rmtree(work, ignore_errors=True)
    return tree


def bare_python(root: Path) -> Path:
    """A fresh interpreter of the same Python version with nothing installed (the application image's python)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root / "bare")], check=True, timeout=120)
    return root / "bare" / "bin" / "python"


def _owner_attribute(doc: dict[str, Any]) -> str:
    return {"Job": "k8s.job.name", "CronJob": "k8s.cronjob.name", "Deployment": "k8s.deployment.name"}[doc["kind"]]


def inject(instrumentation: dict[str, Any], workload: dict[str, Any], pod: SimulatedPod, tree: Path) -> None:
    """Apply what the operator's webhook injects into ``pod`` (env only set when absent), tree mounted at MOUNT."""
    spec = instrumentation["spec"]
    env = pod.env
    annotations = pod_template(workload)["metadata"].get("annotations", {})
    container = next(c for c in pod_template(workload)["spec"]["containers"] if c["name"] == pod.container)
    pod.paths[MOUNT] = tree

    for item in [*spec["python"].get("env", []), *spec.get("env", [])]:
        env.setdefault(item["name"], expand(item["value"], env))
    # python.go
    existing = env.get("PYTHONPATH")
    entries = [f"{MOUNT}/opentelemetry/instrumentation/auto_instrumentation", *([existing] if existing else []), MOUNT]
    env["PYTHONPATH"] = os.pathsep.join(pod.local(e) for e in entries)
    for name, value in (("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), ("OTEL_TRACES_EXPORTER", "otlp"),
                        ("OTEL_METRICS_EXPORTER", "otlp"), ("OTEL_LOGS_EXPORTER", "otlp")):
        env.setdefault(name, value)
    # sdk.go
    env.setdefault(
        "OTEL_SERVICE_NAME", annotations.get("resource.opentelemetry.io/service.name", workload["metadata"]["name"])
    )
    env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", spec["exporter"]["endpoint"])
    env.setdefault("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", pod.name)
    env.setdefault("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", NODE_NAME)
    if spec.get("resource", {}).get("addK8sUIDAttributes"):
        env.setdefault("OTEL_RESOURCE_ATTRIBUTES_POD_UID", pod.uid)
    env.setdefault("OTEL_POD_IP", POD_IP)
    env.setdefault("OTEL_NODE_IP", POD_IP)
    if spec.get("propagators"):
        env.setdefault("OTEL_PROPAGATORS", ",".join(spec["propagators"]))
    if spec.get("sampler"):
        env.setdefault("OTEL_TRACES_SAMPLER", spec["sampler"]["type"])
        if spec["sampler"].get("argument"):
            env.setdefault("OTEL_TRACES_SAMPLER_ARG", spec["sampler"]["argument"])
    image_tag = container["image"].rsplit(":", 1)[-1]
    attrs = {
        "k8s.container.name": pod.container,
        _owner_attribute(workload): workload["metadata"]["name"],
        "k8s.namespace.name": pod.namespace,
        "k8s.node.name": "$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)",
        "k8s.pod.name": "$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)",
        "service.instance.id": f"{pod.namespace}.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).{pod.container}",
        # the Kubernetes namespace unless the pod annotates another (not floe's FLOE_NAMESPACE)
        "service.namespace": annotations.get("resource.opentelemetry.io/service.namespace", pod.namespace),
        "service.version": annotations.get("resource.opentelemetry.io/service.version", image_tag),
        **spec.get("resource", {}).get("resourceAttributes", {}),
    }
    if "OTEL_RESOURCE_ATTRIBUTES_POD_UID" in env:
        attrs["k8s.pod.uid"] = "$(OTEL_RESOURCE_ATTRIBUTES_POD_UID)"
    # Declared last by the operator so the references resolve.
    env["OTEL_RESOURCE_ATTRIBUTES"] = expand(",".join(f"{k}={v}" for k, v in attrs.items()), env)


def _requirements_met(dirs: list[Path]) -> list[str]:
    """Every Requires-Dist (markers evaluated, no extras) of every distribution in ``dirs`` that nothing there meets."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = {}
    for d in dirs:
        for info in d.glob("*.dist-info"):
            name, version = info.name.removesuffix(".dist-info").split("-")[:2]
            dists[canonicalize_name(name)] = (version, info)
    unmet = []
    for owner, (_, info) in dists.items():
        for line in (info / "METADATA").read_text().splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = dists.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have[0], prereleases=True):
                unmet.append(f"{owner}: {req} (have {have[0] if have else 'nothing'})")
    return unmet


@pytest.mark.e2e
def test_operator_tree_has_the_operator_layout() -> None:
    """Our sitecustomize, the distro's entry points, every propagator, the deps layer apart, all requirements met."""
    tree = autoinstrumentation_tree()
    deps = tree / "floe-deps"
    site = tree / "opentelemetry" / "instrumentation" / "auto_instrumentation" / "sitecustomize.py"
    assert site.read_text() == (IMAGE / "sitecustomize.py").read_text()
    assert (tree / "floe-python-version").read_text().strip() == "{}.{}".format(*sys.version_info[:2])
    (dist,) = tree.glob("floe_otel_distro-*.dist-info")
    entry_points = (dist / "entry_points.txt").read_text()
    assert "[opentelemetry_distro]\nfloe = " in entry_points
    assert "[opentelemetry_configurator]\nfloe = " in entry_points
    assert (tree / "opentelemetry" / "exporter" / "otlp" / "proto" / "http").is_dir()
    assert not list(tree.rglob("grpcio*")), "the tree must stay pure-HTTP (no grpcio native extension)"
    # the top (before the app's site-packages) holds only OpenTelemetry and floe; the rest is in floe-deps
    top = {p.name for p in tree.iterdir()} - {"floe-deps", "floe-python-version"}
    assert {n for n in top if not n.startswith(("opentelemetry", "floe_otel_distro"))} == set(), top
    for name in ("pydantic", "yaml", "requests", "urllib3", "google", "wrapt", "packaging"):
        assert (deps / name).is_dir(), name
    (protobuf,) = deps.glob("protobuf-*.dist-info")
    assert int(protobuf.name.split("-")[1].split(".")[0]) < 7
    propagators = "".join(p.read_text() for p in tree.glob("opentelemetry_propagator*/entry_points.txt"))
    for name in ("b3", "b3multi", "jaeger", "xray", "ottrace"):
        assert f"\n{name} = " in propagators, name
    instrumentors = {p.parent.name for p in tree.glob("opentelemetry_instrumentation_*/entry_points.txt")}
    assert len(instrumentors) >= 40, sorted(instrumentors)
    unmet = [u for u in _requirements_met([tree, deps]) if not u.startswith("floe-otel-distro: opentelemetry-exp")]
    assert unmet == [], unmet  # (the distro's gRPC exporter is left out on purpose: HTTP-only tree)


@pytest.mark.e2e
def test_operator_injected_pod_sends_spans(collector: Collector, tmp_path: Path) -> None:
    """The example Job, injected the operator's way with our tree, sends spans with k8s.* and floe.* attributes."""
    tree = autoinstrumentation_tree()
    python = bare_python(tmp_path)
    bare = subprocess.run([str(python), "-c", "import opentelemetry"], capture_output=True, check=False)
    assert bare.returncode != 0, "the bare interpreter must not see the dev environment's packages"

    job = find("Job", "iot-telemetry-refresh-once")
    instrumentation = find("Instrumentation", "floe")
    pod = simulate(job, "refresh", tmp_path, "iot-telemetry-refresh-once-h4n8w")
    inject(instrumentation, job, pod, tree)
    pod.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.http_endpoint
    pod.env["OTEL_TRACES_SAMPLER_ARG"] = "1.0"  # the CR samples at floe's prod 10 %: this test needs every span
    pod.env["PATH"] = f"{python.parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    assert pod.argv[0] == "python" and "opentelemetry-instrument" not in pod.argv

    result = subprocess.run(pod.argv, env=pod.env, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert collector.wait_for(lambda c: len(c.spans()) >= 3), result.stderr[-3000:]
    spans = collector.spans()
    assert sorted(s["name"] for s in spans) == ["refresh_batch", "refresh_batch", "refresh_readings"]
    want = {
        "k8s.namespace.name": "floe",
        "k8s.pod.name": pod.name,
        "k8s.pod.uid": pod.uid,
        "k8s.node.name": NODE_NAME,
        "k8s.container.name": "refresh",
        "k8s.job.name": "iot-telemetry-refresh-once",
        "service.instance.id": f"floe.{pod.name}.refresh",
        "service.name": "iot-telemetry-refresh-once",
        "service.version": "1.0.0",
        "floe.namespace": "manufacturing",
        "service.namespace": "manufacturing",  # the pod's resource.opentelemetry.io/service.namespace annotation
        "floe.product.name": "iot-telemetry",
        "floe.product.version": "1.0.0",
        "floe.mode": "prod",
        "deployment.environment.name": "prod",
        "telemetry.distro.name": "floe-otel-distro",
    }
    for span in spans:
        assert {k: span["resource"].get(k) for k in want} == want, span["name"]
