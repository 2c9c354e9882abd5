"""k8s/: every manifest validates against the Kubernetes schemas, and the workloads carry the floe pod contract.

Core kinds are validated with ``kubernetes-validate`` in strict mode (unknown fields are errors) for
Kubernetes 1.33 (the oldest version we support) and 1.37 (the newest schema the package ships).
``kubernetes-validate`` has no schemas for CRDs: it raises ``SchemaNotFoundError`` for them (asserted
below), so the OpenTelemetry Operator's ``Instrumentation`` is validated against ``INSTRUMENTATION_SCHEMA``,
written from the operator's served ``v1alpha1`` type (``apis/v1alpha1/instrumentation_types.go``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
KUBERNETES_VERSIONS = ("1.33", "1.37")
CRD_GROUPS = ("opentelemetry.io/",)
WORKLOAD_KINDS = {"Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet", "Pod"}
INJECT_ANNOTATION = "instrumentation.opentelemetry.io/inject-python"
MODES = {"dev", "staging", "prod"}
BACKENDS = {"console", "otlp", "jaeger", "grafana-cloud"}
# resource attribute -> the Downward API field its $(VAR) must come from
DOWNWARD = {
    "k8s.pod.name": "metadata.name",
    "k8s.namespace.name": "metadata.namespace",
    "k8s.node.name": "spec.nodeName",
    "k8s.pod.uid": "metadata.uid",
}
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

_ENV_VAR = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string", "minLength": 1}, "value": {"type": "string"},
                   "valueFrom": {"type": "object"}},
}
_QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"limits": _QUANTITIES, "requests": _QUANTITIES, "claims": {"type": "array"}},
}
_LANGUAGE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "env": {"type": "array", "items": _ENV_VAR},
        "resourceRequirements": _RESOURCES,
        "volumeLimitSize": {"type": ["string", "integer"]},
        "volumeClaimTemplate": {"type": "object"},
    },
    "not": {"required": ["volumeLimitSize", "volumeClaimTemplate"]},
}
INSTRUMENTATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "opentelemetry.io/v1alpha1"},
        "kind": {"const": "Instrumentation"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": {"type": "object"}, "annotations": {"type": "object"}},
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "exporter": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"endpoint": {"type": "string"}, "tls": {"type": "object"}},
                },
                "propagators": {
                    "type": "array",
                    "items": {"enum": ["tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray",
                                       "ottrace", "none"]},
                },
                "sampler": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["always_on", "always_off", "traceidratio", "parentbased_always_on",
                                          "parentbased_always_off", "parentbased_traceidratio",
                                          "jaeger_remote", "parentbased_jaeger_remote", "xray"]},
                        "argument": {"type": "string"},
                    },
                },
                "resource": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"resourceAttributes": {"type": "object"},
                                   "addK8sUIDAttributes": {"type": "boolean"}},
                },
                "defaults": {"type": "object"},
                "env": {"type": "array", "items": _ENV_VAR},
                "imagePullPolicy": {"enum": ["Always", "Never", "IfNotPresent"]},
                "initContainerSecurityContext": {"type": "object"},
                "python": _LANGUAGE,
                "java": {"type": "object"}, "nodejs": {"type": "object"}, "dotnet": {"type": "object"},
                "go": {"type": "object"}, "apacheHttpd": {"type": "object"}, "nginx": {"type": "object"},
            },
        },
    },
}


def _load() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((str(path.relative_to(REPO)), doc))
    return out


DOCS = _load()
IDS = [f"{path}:{doc['kind']}/{doc['metadata']['name']}" for path, doc in DOCS]


def find(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for _, doc in DOCS:
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and namespace in (None, meta.get("namespace")):
            return doc
    raise LookupError(f"{kind} {namespace}/{name} not in k8s/")


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc if doc["kind"] == "Pod" else doc["spec"]["template"]


def workloads() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every workload in k8s/."""
    return [
        (doc, c) for _, doc in DOCS if doc["kind"] in WORKLOAD_KINDS for c in pod_template(doc)["spec"]["containers"]
    ]


def operator_injected(doc: dict[str, Any]) -> bool:
    return INJECT_ANNOTATION in (pod_template(doc).get("metadata", {}).get("annotations") or {})


FLOE_CONTAINERS = [
    (doc, c) for doc, c in workloads()
    if doc["metadata"].get("namespace") == "floe" and not operator_injected(doc)
]
FLOE_IDS = [f"{doc['kind']}/{doc['metadata']['name']}:{c['name']}" for doc, c in FLOE_CONTAINERS]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("path", "doc"), DOCS, ids=IDS)
def test_manifest_validates_against_kubernetes_schema(path: str, doc: dict[str, Any], version: str) -> None:
    """Each core object validates strictly against the Kubernetes schema of the stated version."""
    if doc["apiVersion"].startswith(CRD_GROUPS):
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, version, strict=True)
        return
    kubernetes_validate.validate(doc, version, strict=True)


def test_crds_are_validated_against_our_schema() -> None:
    """Every CRD object in k8s/ is an Instrumentation and matches INSTRUMENTATION_SCHEMA."""
    crds = [doc for _, doc in DOCS if doc["apiVersion"].startswith(CRD_GROUPS)]
    assert crds
    for doc in crds:
        jsonschema.Draft202012Validator(INSTRUMENTATION_SCHEMA).validate(doc)


def test_instrumentation_schema_rejects_unknown_fields() -> None:
    """The Instrumentation schema is strict, like kubernetes-validate's: a typo'd field fails."""
    doc = find("Instrumentation", "floe")
    bad = {**doc, "spec": {**doc["spec"], "python": {**doc["spec"]["python"], "resources": {}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(INSTRUMENTATION_SCHEMA).validate(bad)


def test_kustomization_lists_every_manifest() -> None:
    """k8s/kustomization.yaml (the single-tier base) names exactly the manifest files under k8s/, except the tiered
    layout's own (k8s/tiered/, a Component listing them; see test_tiered_kustomization_lists_its_manifests)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {
        str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml" and p.relative_to(K8S).parts[0] != "tiered"
    }
    assert listed == on_disk


@pytest.mark.parametrize(("doc", "container"), FLOE_CONTAINERS, ids=FLOE_IDS)
def test_workload_runs_under_opentelemetry_instrument(doc: dict[str, Any], container: dict[str, Any]) -> None:
    """Every floe workload container's command is opentelemetry-instrument followed by the real command."""
    assert container.get("command") == ["opentelemetry-instrument"]
    assert container.get("args"), "opentelemetry-instrument needs the program to run"


@pytest.mark.parametrize(("doc", "container"), FLOE_CONTAINERS, ids=FLOE_IDS)
def test_workload_has_the_distro_env(doc: dict[str, Any], container: dict[str, Any]) -> None:
    """Distro selection, OTLP http/protobuf to the gateway's 4318, and every FLOE_* setting are present and valid."""
    env = env_of(container)
    value = {k: v.get("value") for k, v in env.items()}
    assert value["OTEL_PYTHON_DISTRO"] == "floe"
    assert value["OTEL_PYTHON_CONFIGURATOR"] == "floe"
    assert value["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    endpoint = urlparse(value["OTEL_EXPORTER_OTLP_ENDPOINT"])
    service = find("Service", "otel-collector", "observability")
    assert endpoint.scheme == "http"
    assert endpoint.hostname in {f"otel-collector.observability.svc{d}" for d in ("", ".cluster.local")}
    assert endpoint.port == 4318 and 4318 in {p["port"] for p in service["spec"]["ports"]}
    for name in ("FLOE_NAMESPACE", "FLOE_PRODUCT_NAME", "FLOE_PRODUCT_VERSION"):
        assert value.get(name), name
    assert value["FLOE_MODE"] in MODES
    assert value["FLOE_TELEMETRY_BACKEND"] in BACKENDS
    grace = pod_template(doc)["spec"].get("terminationGracePeriodSeconds", 30)
    assert float(value.get("FLOE_SHUTDOWN_TIMEOUT", "2")) < grace
    assert container["resources"]["limits"], "workloads need resource limits"


@pytest.mark.parametrize(("doc", "container"), FLOE_CONTAINERS, ids=FLOE_IDS)
def test_workload_config_files_are_mounted(doc: dict[str, Any], container: dict[str, Any]) -> None:
    """FLOE_MANIFEST / FLOE_SPEC point at files of ConfigMaps mounted in the container."""
    env = env_of(container)
    volumes = {v["name"]: v for v in pod_template(doc)["spec"].get("volumes", [])}
    for var in ("FLOE_MANIFEST", "FLOE_SPEC"):
        path = Path(env[var]["value"])
        mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent)
        config_map = find("ConfigMap", volumes[mount["name"]]["configMap"]["name"], doc["metadata"]["namespace"])
        assert path.name in config_map["data"], f"{var}: {path.name} not in ConfigMap"
        yaml.safe_load(config_map["data"][path.name])


@pytest.mark.parametrize(("doc", "container"), FLOE_CONTAINERS, ids=FLOE_IDS)
def test_workload_resource_attributes_come_from_the_downward_api(
    doc: dict[str, Any], container: dict[str, Any]
) -> None:
    """OTEL_RESOURCE_ATTRIBUTES maps Downward-API vars declared before it to k8s.* and service.instance.id."""
    entries = container["env"]
    names = [e["name"] for e in entries]
    position = names.index("OTEL_RESOURCE_ATTRIBUTES")
    declared_before = {e["name"]: e for e in entries[:position]}
    text = entries[position]["value"]
    attrs = dict(item.split("=", 1) for item in text.split(","))

    for ref in _VAR_REF.findall(text):
        assert ref in declared_before, f"$({ref}) must be declared before OTEL_RESOURCE_ATTRIBUTES"
    for key, field_path in DOWNWARD.items():
        refs = _VAR_REF.findall(attrs[key])
        assert len(refs) == 1 and attrs[key] == f"$({refs[0]})", f"{key}={attrs[key]}"
        assert declared_before[refs[0]]["valueFrom"]["fieldRef"]["fieldPath"] == field_path
    assert attrs["k8s.container.name"] == container["name"]
    pod, ns = attrs["k8s.pod.name"], attrs["k8s.namespace.name"]
    assert attrs["service.instance.id"] == f"{ns}.{pod}.{container['name']}"
    owner = {"Job": "k8s.job.name", "CronJob": "k8s.cronjob.name", "Deployment": "k8s.deployment.name"}[doc["kind"]]
    assert attrs[owner] == doc["metadata"]["name"]


def test_operator_injected_workloads_use_our_instrumentation() -> None:
    """Annotated workloads name an Instrumentation in k8s/, and are not also wrapped in opentelemetry-instrument."""
    injected = [(doc, c) for doc, c in workloads() if operator_injected(doc)]
    assert injected
    for doc, container in injected:
        name = pod_template(doc)["metadata"]["annotations"][INJECT_ANNOTATION]
        find("Instrumentation", name, doc["metadata"]["namespace"])
        assert "opentelemetry-instrument" not in [*container.get("command", []), *container.get("args", [])]
        assert "PYTHONPATH" not in env_of(container), "the operator skips injection when PYTHONPATH is set"


def test_instrumentation_uses_our_image_and_http_on_4318() -> None:
    """The Instrumentation selects the floe image, the floe distro/configurator and OTLP over HTTP to the gateway."""
    spec = find("Instrumentation", "floe")["spec"]
    assert "floe-otel-autoinstrumentation-python" in spec["python"]["image"]
    env = {e["name"]: e["value"] for e in spec["python"]["env"]}
    assert env["OTEL_PYTHON_DISTRO"] == env["OTEL_PYTHON_CONFIGURATOR"] == "floe"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert urlparse(spec["exporter"]["endpoint"]).port == 4318


def test_services_select_existing_pods() -> None:
    """Every Service's selector matches the pod template labels of a workload in the same namespace."""
    for _, svc in DOCS:
        if svc["kind"] != "Service":
            continue
        selector = svc["spec"]["selector"].items()
        assert any(
            doc["metadata"].get("namespace") == svc["metadata"]["namespace"]
            and selector <= pod_template(doc)["metadata"]["labels"].items()
            for doc, _ in workloads()
        ), svc["metadata"]["name"]


def test_collector_gateway_wiring() -> None:
    """Gateway: config mounted where --config points, probes on the health_check port, limits, pod-IP binding."""
    deployment = find("Deployment", "otel-collector", "observability")
    config_map = find("ConfigMap", "otel-collector-config", "observability")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    config_path = Path(next(a for a in container["args"] if a.startswith("--config=")).split("=", 1)[1])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_path.name in config_map["data"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 13133
    assert container["resources"]["limits"]["memory"] and container["resources"]["limits"]["cpu"]
    env = env_of(container)
    assert env["MY_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"

    config = yaml.safe_load(config_map["data"][config_path.name])
    assert config["extensions"]["health_check"]["endpoint"].endswith(":13133")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].startswith("${env:MY_POD_IP")
    assert protocols["http"]["endpoint"].startswith("${env:MY_POD_IP") and protocols["http"]["endpoint"].endswith(
        ":4318"
    )
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        assert pipeline["processors"][0] == "memory_limiter" and pipeline["processors"][-1] == "batch"
    (exporter,) = pipelines["traces"]["exporters"]
    target = config["exporters"][exporter]
    assert exporter.startswith("otlp_grpc/") and target["tls"]["insecure"] is True
    host, port = target["endpoint"].rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    assert int(port) in {p["port"] for p in find("Service", name, namespace)["spec"]["ports"]}


def test_collector_configmap_is_the_generated_config(tmp_path: Path) -> None:
    """The gateway ConfigMap holds exactly what `floe-otel collector-config` generates from the platform manifest."""
    from floe_otel_distro.cli import collector_config
    from floe_otel_distro.plan import Inputs, build_plan

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(find("ConfigMap", "floe-platform-manifest", "floe")["data"]["manifest.yaml"])
    from floe_otel_distro.backends import OWN_DISTRIBUTION, installed_entry_points

    def own(group: str) -> Any:  # the ConfigMap is generated with the distro's built-in backends
        return tuple(ref for ref in installed_entry_points(group) if ref.dist == OWN_DISTRIBUTION)

    env = {"FLOE_MANIFEST": str(manifest), "FLOE_MODE": "prod"}
    generated = collector_config(build_plan(Inputs(env, entry_points=own, compiled_default=None)))
    in_configmap = yaml.safe_load(find("ConfigMap", "otel-collector-config", "observability")["data"]["collector.yaml"])
    assert in_configmap == generated, "regenerate k8s/collector/configmap.yaml (see its header)"


def _stages(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line.startswith("FROM ")]


def test_operator_image_layout() -> None:
    """k8s/image/Dockerfile: glibc and musl trees built by build-tree.sh, final stage with cp, both trees copied."""
    text = (K8S / "image" / "Dockerfile").read_text()
    stages = _stages(text)
    assert len(stages) == 3
    assert "alpine" not in stages[0] and "alpine" in stages[1]
    assert stages[2].startswith("FROM busybox"), "the operator's init container needs cp"
    assert text.count("RUN sh /image/build-tree.sh /autoinstrumentation /src /image\n") == 2
    copied = "COPY k8s/image/requirements.txt k8s/image/requirements-deps.txt k8s/image/sitecustomize.py " \
             "k8s/image/build-tree.sh /image/\n"
    assert text.count(copied) == 2
    assert "musl-dev" in text
    assert "COPY --from=build-glibc /autoinstrumentation /autoinstrumentation\n" in text
    assert "COPY --from=build-musl /autoinstrumentation /autoinstrumentation-musl\n" in text
    assert "chmod -R go+r /autoinstrumentation /autoinstrumentation-musl" in text


def test_build_tree_script_layers() -> None:
    """build-tree.sh: dependencies into floe-deps (resolved), OpenTelemetry and the distro on top (--no-deps)."""
    script = (K8S / "image" / "build-tree.sh").read_text()
    steps = [line for line in script.splitlines() if line.startswith(("$PIP", "cp ", "$PY "))]
    assert steps == [
        '$PIP --target "$TARGET/floe-deps" -r "$HERE/requirements-deps.txt"',
        '$PIP --no-deps --target "$TARGET" -r "$HERE/requirements.txt"',
        '$PIP --no-deps --target "$TARGET" "$SRC"',
        'cp "$HERE/sitecustomize.py" "$TARGET/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py"',
        '$PY -c \'import sys; print("%d.%d" % sys.version_info[:2])\' > "$TARGET/floe-python-version"',
    ]
    site = (K8S / "image" / "sitecustomize.py").read_text()
    assert "from floe_otel_distro._isolation import start" in site


def _pins(name: str) -> dict[str, str]:
    reqs = {}
    for raw in (K8S / "image" / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req, sep, version = line.partition("==")
            assert sep and version, f"not pinned: {line}"
            reqs[re.sub(r"[-_.]+", "-", req).lower()] = version
    return reqs


def test_image_requirements_are_pinned_layered_and_http_only() -> None:
    """Both image requirement files pin exactly; OpenTelemetry on top, the rest in the deps layer; in the distro's
    OpenTelemetry range; every propagator the operator offers; no gRPC."""
    from packaging.requirements import Requirement

    top, deps = _pins("requirements.txt"), _pins("requirements-deps.txt")
    assert all(name.startswith("opentelemetry-") for name in top), "only OpenTelemetry may shadow the app"
    assert not any(name.startswith("opentelemetry-") for name in deps)
    assert not any("grpc" in name and "instrumentation" not in name for name in [*top, *deps])
    for name in ("b3", "jaeger", "aws-xray", "ot-trace"):
        assert f"opentelemetry-propagator-{name}" in top, name
    assert sum(name.startswith("opentelemetry-instrumentation-") for name in top) >= 45
    block = (REPO / "pyproject.toml").read_text().split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    for raw in re.findall(r'^\s*"([^"]+)"', block, flags=re.M):
        req = Requirement(raw)
        name = req.name.lower()
        if "grpc" in name:  # the image is HTTP-only: the distro goes in with --no-deps
            continue
        have = top.get(name) or deps.get(name) or deps.get(re.sub(r"[-_.]+", "-", name))
        assert have and req.specifier.contains(have, prereleases=True), (raw, have)
    assert int(deps["protobuf"].split(".")[0]) < 7, "dbt and dagster need protobuf < 7"


def test_example_app_image_entrypoint_is_opentelemetry_instrument() -> None:
    """k8s/image/app.Dockerfile runs everything under opentelemetry-instrument and ships the files manifests run."""
    text = (K8S / "image" / "app.Dockerfile").read_text()
    assert 'ENTRYPOINT ["opentelemetry-instrument"]' in text
    copies = {"/app/dbt/jaffle": REPO / "tests" / "projects" / "jaffle", "/app": K8S / "image" / "app"}
    assert "COPY k8s/image/app/ /app/\n" in text and "COPY tests/projects/jaffle /app/dbt/jaffle\n" in text
    for _, c in workloads():
        for arg in [*c.get("command", []), *c.get("args", []), c.get("workingDir", "")]:
            if arg.startswith("/app/"):
                prefix = next(p for p in copies if arg == p or arg.startswith(p + "/"))
                assert (copies[prefix] / arg[len(prefix):].lstrip("/")).exists(), arg


def test_instrumentation_samples_prod_at_floes_ratio_and_refers_to_existing_files() -> None:
    """The shipped Instrumentation samples at floe's prod ratio, and every k8s/ file its comments name exists."""
    text = (K8S / "operator" / "instrumentation.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["spec"]["sampler"] == {"type": "parentbased_traceidratio", "argument": "0.1"}
    for ref in re.findall(r"k8s/[\w./-]+\.yaml", text):
        assert (REPO / ref).is_file(), ref


# --- the tiered layout (docs/scale-out.md): the k8s/tiered Component, switched on in k8s/kustomization.yaml ------
TIERED = K8S / "tiered"
SWITCH = "# components:\n#   - tiered\n"  # in k8s/kustomization.yaml; uncommented = the tiered layout


def _merge(base: Any, patch: Any) -> Any:
    """A strategic-merge patch as kustomize applies one made of maps and scalars (lists are not merged here)."""
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merge(base.get(key), value)
    return out


def _ident(doc: dict[str, Any]) -> tuple[str, str | None, str]:
    return doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]


def _patch(docs: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    docs = list(docs)
    for entry in entries:
        assert set(entry) == {"patch"}, "only inline patches are emulated"
        patch = yaml.safe_load(entry["patch"])
        index = [_ident(d) for d in docs].index(_ident(patch))  # ValueError: the patch targets nothing
        if patch.get("$patch") == "delete":
            del docs[index]
        else:
            docs[index] = _merge(docs[index], patch)
    return docs


def kustomize_build(directory: Path, components: list[str] | None = None) -> list[dict[str, Any]]:
    """What ``kustomize build directory`` yields for the features k8s/ uses: resources (files), components
    (their resources, then their inline patches), inline patches (strategic merge of maps, ``$patch: delete``).
    ``components`` overrides the kustomization's own list. Like kustomize: duplicates and patches that target
    nothing are errors. (Checked once against kustomize v5.7.1's output: the same objects.)"""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "components", "patches"}, "not emulated"
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        docs += [d for d in yaml.safe_load_all((directory / resource).read_text()) if d]
    for component in kustomization.get("components", []) if components is None else components:
        spec = yaml.safe_load((directory / component / "kustomization.yaml").read_text())
        assert spec["kind"] == "Component"
        for resource in spec.get("resources", []):
            docs += [d for d in yaml.safe_load_all((directory / component / resource).read_text()) if d]
        docs = _patch(docs, spec.get("patches", []))
    idents = [_ident(d) for d in docs]
    assert len(idents) == len(set(idents)), f"{directory}: duplicate objects"
    return _patch(docs, kustomization.get("patches", []))


SINGLE_TIER = kustomize_build(K8S)
TIERED_BUILD = kustomize_build(K8S, components=["tiered"])


def built(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = "observability") -> dict[str, Any]:
    found = [d for d in docs if _ident(d) == (kind, namespace, name)]
    assert len(found) == 1, f"{kind} {namespace}/{name}"
    return found[0]


def selects(docs: list[dict[str, Any]], service: dict[str, Any]) -> list[dict[str, Any]]:
    """The workloads a Service's selector matches in its namespace."""
    selector = service["spec"]["selector"].items()
    return [
        d for d in docs
        if d["kind"] in WORKLOAD_KINDS and d["metadata"].get("namespace") == service["metadata"]["namespace"]
        and selector <= pod_template(d)["metadata"]["labels"].items()
    ]


def test_tiered_kustomization_lists_its_manifests() -> None:
    """k8s/tiered/kustomization.yaml is a Component naming exactly the files in k8s/tiered/."""
    spec = yaml.safe_load((TIERED / "kustomization.yaml").read_text())
    assert (spec["apiVersion"], spec["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    assert set(spec["resources"]) == {p.name for p in TIERED.glob("*.yaml") if p.name != "kustomization.yaml"}


def test_the_switch_is_one_line_pair_in_the_root_kustomization() -> None:
    """As shipped k8s/ is single tier (the component commented out); uncommenting it builds the tiered layout."""
    text = (K8S / "kustomization.yaml").read_text()
    assert text.count(SWITCH) == 1
    assert "components" not in yaml.safe_load(text)
    switched = yaml.safe_load(text.replace(SWITCH, SWITCH.replace("# ", "").replace("#", "")))
    assert switched["components"] == ["tiered"]
    assert ("Deployment", "observability", "otel-collector") in {_ident(d) for d in SINGLE_TIER}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_tiered_layout_output_validates(version: str) -> None:
    """Every object the tiered layout builds (patched ones included) validates strictly; CRDs as above."""
    for doc in TIERED_BUILD:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            jsonschema.Draft202012Validator(INSTRUMENTATION_SCHEMA).validate(doc)
        else:
            kubernetes_validate.validate(doc, version, strict=True)


def test_tiered_layout_replaces_the_single_tier_gateway() -> None:
    """Tiered: no single-tier gateway; the workloads' endpoint Service now reaches the agent on their own node;
    the agents' resolver watches a headless Service of the gateway Deployment; HPA and PDB target the gateways."""
    idents = {_ident(d) for d in TIERED_BUILD}
    assert ("Deployment", "observability", "otel-collector") not in idents
    assert ("ConfigMap", "observability", "otel-collector-config") not in idents
    entry = built(TIERED_BUILD, "Service", "otel-collector")
    assert entry["spec"]["internalTrafficPolicy"] == "Local"
    (agent,) = selects(TIERED_BUILD, entry)
    assert agent["kind"] == "DaemonSet" and agent["metadata"]["name"] == "otel-agent"
    assert {p["port"] for p in entry["spec"]["ports"]} == {4317, 4318}
    for _, svc in [(None, d) for d in TIERED_BUILD if d["kind"] == "Service"]:
        assert selects(TIERED_BUILD, svc), svc["metadata"]["name"]
    for doc, container in [(d, c) for d in TIERED_BUILD if d["kind"] in WORKLOAD_KINDS
                           for c in pod_template(d)["spec"]["containers"]]:
        endpoint = env_of(container).get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("value")
        if endpoint:  # unchanged by the component: the node-local agent answers the same name
            assert urlparse(endpoint).hostname.startswith("otel-collector.observability.svc"), doc["metadata"]

    agent_config = yaml.safe_load(built(TIERED_BUILD, "ConfigMap", "otel-agent-config")["data"]["collector.yaml"])
    resolver = agent_config["exporters"]["load_balancing"]["resolver"]["k8s"]
    name, namespace = resolver["service"].split(".")
    headless = built(TIERED_BUILD, "Service", name, namespace)
    assert headless["spec"]["clusterIP"] == "None"
    assert {p["port"] for p in headless["spec"]["ports"]} == set(resolver["ports"])
    (gateway,) = selects(TIERED_BUILD, headless)
    assert gateway["kind"] == "Deployment" and gateway["metadata"]["name"] == "otel-gateway"
    hpa = built(TIERED_BUILD, "HorizontalPodAutoscaler", "otel-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "otel-gateway"}
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    pdb = built(TIERED_BUILD, "PodDisruptionBudget", "otel-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_template(gateway)["metadata"]["labels"].items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_tiered_layout_changes_one_manifest_line() -> None:
    """The platform manifest of the tiered layout is the single-tier one plus `collector_layout: tiered`."""
    def manifest(docs: list[dict[str, Any]]) -> dict[str, Any]:
        text = built(docs, "ConfigMap", "floe-platform-manifest", "floe")["data"]["manifest.yaml"]
        return dict(yaml.safe_load(text))

    base, tiered = manifest(SINGLE_TIER), manifest(TIERED_BUILD)
    config = tiered["plugins"]["telemetry_backend"]["config"]
    assert config.pop("collector_layout") == "tiered"
    assert tiered == base


def test_agent_rbac_covers_k8sattributes_and_the_resolver() -> None:
    """The agents' ServiceAccount may get/watch/list what k8sattributes reads (pods, namespaces, replicasets,
    jobs; cluster-wide) and the gateways' EndpointSlices (k8s resolver; in the gateways' namespace)."""
    agent = built(TIERED_BUILD, "DaemonSet", "otel-agent")
    account = pod_template(agent)["spec"]["serviceAccountName"]
    built(TIERED_BUILD, "ServiceAccount", account)

    def granted(role_kind: str, binding_kind: str, namespace: str | None) -> set[tuple[str, str]]:
        rules: set[tuple[str, str]] = set()
        for binding in [d for d in TIERED_BUILD if d["kind"] == binding_kind]:
            if {"kind": "ServiceAccount", "name": account, "namespace": "observability"} not in binding["subjects"]:
                continue
            assert binding["roleRef"]["kind"] == role_kind
            role = built(TIERED_BUILD, role_kind, binding["roleRef"]["name"], namespace)
            for rule in role["rules"]:
                if {"get", "watch", "list"} <= set(rule["verbs"]):
                    rules |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
        return rules

    cluster = granted("ClusterRole", "ClusterRoleBinding", None)
    assert {("", "pods"), ("", "namespaces"), ("apps", "replicasets"), ("batch", "jobs")} <= cluster
    assert ("discovery.k8s.io", "endpointslices") in granted("Role", "RoleBinding", "observability") | cluster


def test_agent_daemonset_wiring() -> None:
    """Agent: config mounted where --config points, KUBE_NODE_NAME from spec.nodeName as k8sattributes filters on,
    MY_POD_IP, probes on the health_check port, limits."""
    agent = built(TIERED_BUILD, "DaemonSet", "otel-agent")
    spec = pod_template(agent)["spec"]
    (container,) = spec["containers"]
    config_path = Path(next(a for a in container["args"] if a.startswith("--config=")).split("=", 1)[1])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    config_map = built(TIERED_BUILD, "ConfigMap", volume["configMap"]["name"])
    config = yaml.safe_load(config_map["data"][config_path.name])
    env = env_of(container)
    node_var = config["processors"]["k8sattributes"]["filter"]["node_from_env_var"]
    assert env[node_var]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["MY_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 13133
    assert container["resources"]["limits"]["memory"] and container["resources"]["limits"]["cpu"]
    assert config["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "k8sattributes", "batch"]


@pytest.mark.parametrize("tier", ["agent", "gateway"])
def test_tiered_configmaps_are_the_generated_configs(tmp_path: Path, tier: str) -> None:
    """k8s/tiered/<tier>-configmap.yaml holds exactly `floe-otel collector-config --tier <tier>` of the manifest."""
    from floe_otel_distro.backends import OWN_DISTRIBUTION, installed_entry_points
    from floe_otel_distro.cli import tiered_config
    from floe_otel_distro.plan import Inputs, build_plan

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(find("ConfigMap", "floe-platform-manifest", "floe")["data"]["manifest.yaml"])

    def own(group: str) -> Any:
        return tuple(ref for ref in installed_entry_points(group) if ref.dist == OWN_DISTRIBUTION)

    plan = build_plan(Inputs({"FLOE_MANIFEST": str(manifest), "FLOE_MODE": "prod"}, entry_points=own,
                             compiled_default=None))
    shipped = yaml.safe_load(built(TIERED_BUILD, "ConfigMap", f"otel-{tier}-config")["data"]["collector.yaml"])
    assert shipped == tiered_config(plan, tier), f"regenerate k8s/tiered/{tier}-configmap.yaml (see its header)"
    if tier == "gateway":
        (exporter,) = shipped["service"]["pipelines"]["traces"]["exporters"]
        assert exporter.startswith("otlp_grpc/") and shipped["exporters"][exporter]["sending_queue"]["enabled"]
        assert shipped["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "tail_sampling", "batch"]
