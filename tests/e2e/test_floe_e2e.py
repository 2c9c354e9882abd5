"""End to end with floe as floe ships: floe-core, floe-telemetry-jaeger (real packages), floe's CLI and files.

(a) dev default with floe's plugins installed prints the trace tree;
(b) ``FLOE_TELEMETRY_BACKEND=jaeger`` resolves to floe-telemetry-jaeger (it shadows the built-in) and exports
    through the real collector's gRPC receiver;
(c) floe-core's registry lists and loads this distro's backends;
(d) ``floe platform compile`` on a small product → ``target/compiled_artifacts.json`` → ``opentelemetry-instrument
    dbt build`` reads it and exports over gRPC with the compiled attributes;
(e) ``opentelemetry-instrument floe …`` prints no "Overriding" line and floe-core's ``compile.*`` spans arrive;
(g) floe's demo manifest as it ships (gRPC on a :4317 port, no protocol key) delivers.
((f), every documented example validated by floe-core's schema, is ``tests/unit/test_floe_schema.py``.)
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.collector import Collector
from tests.support.run import BIN, instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e

APPS = Path(__file__).parent / "apps"
APP = APPS / "doctor_app.py"
APP_SPANS = {"doctor_app.job", "doctor_app.load", "doctor_app.save"}
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
JAFFLE = Path(__file__).resolve().parents[1] / "projects" / "jaffle"
FAST = {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "500"}


def _doctor(env: dict[str, str], cwd: Path | None = None) -> dict[str, object]:
    out = subprocess.run(
        [str(BIN / "floe-otel"), "doctor", "--json"], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    return json.loads(out.stdout)


def _names(collector: Collector) -> set[str]:
    return {s["name"] for s in collector.spans()}


# --- (a) ------------------------------------------------------------------------------------------------------
def test_a_dev_default_with_floes_plugins_prints_the_tree(tmp_path: Path) -> None:
    """floe-telemetry-jaeger installed beside us changes nothing for the dev default: the console tree."""
    proc = run_instrumented([sys.executable, str(APP)], instrumented_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DOCTOR-APP-MARKER ok" in proc.stdout
    assert "not a TelemetryBackendPlugin" not in proc.stderr
    assert "floe-otel:" not in proc.stderr, proc.stderr
    tree = [line for line in proc.stderr.splitlines() if "doctor_app." in line or line.startswith("trace ")]
    assert tree[0].startswith("trace ") and "mode=dev" in tree[0], proc.stderr
    assert any("└─ doctor_app.job" in line for line in tree), proc.stderr
    assert sum("doctor_app.load" in line or "doctor_app.save" in line for line in tree) == 2


# --- (b) ------------------------------------------------------------------------------------------------------
def test_b_floe_jaeger_plugin_resolves_and_exports_over_grpc(collector: Collector, tmp_path: Path) -> None:
    """The external jaeger wins over the built-in (doctor says so); its gRPC answer reaches the gRPC receiver."""
    env = instrumented_env(
        endpoint=collector.grpc_endpoint, FLOE_TELEMETRY_BACKEND="jaeger", OTEL_TRACES_SAMPLER="always_on", **FAST
    )
    plan = _doctor(env)
    backend = plan["backend"]
    assert isinstance(backend, dict)
    assert (backend["name"], backend["dist"], backend["api"], backend["protocol"]) == (
        "jaeger",
        "floe-telemetry-jaeger",
        "floe-core",
        "grpc",
    )
    assert [s.split()[0] for s in backend["shadows"]] == ["floe-otel-distro"]
    signals = plan["signals"]
    assert isinstance(signals, dict)
    assert signals["traces"]["exporters"][0]["protocol"] == "grpc"
    text = subprocess.run([str(BIN / "floe-otel"), "doctor"], env=env, capture_output=True, text=True, check=False)
    assert "floe-telemetry-jaeger 0.1.0a1" in text.stdout and "shadows floe-otel-distro" in text.stdout, text.stdout

    proc = run_instrumented([sys.executable, str(APP)], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert collector.wait_for(lambda c: _names(c) >= APP_SPANS), proc.stderr
    (job,) = [s for s in collector.spans() if s["name"] == "doctor_app.job"]
    assert job["resource"]["floe.mode"] == "prod"


# --- (c) ------------------------------------------------------------------------------------------------------
REGISTRY_SCRIPT = """
import json, logging, structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
from floe_core.plugin_registry import get_registry
from floe_core.plugin_types import PluginType
from floe_core.plugins.loader import PluginLoader
from floe_core.plugins.discovery import PluginDiscovery
registry = get_registry()
names = registry.list_all()[PluginType.TELEMETRY_BACKEND]
listed = [p.name for p in registry.list(PluginType.TELEMETRY_BACKEND)]
discovery = PluginDiscovery()
discovery.discover_all()
loader = PluginLoader(discovery)
loaded = {}
for name in ("console", "otlp", "grafana-cloud"):
    plugin = loader.get(PluginType.TELEMETRY_BACKEND, name)
    loaded[name] = [plugin.name, plugin.version, plugin.floe_api_version, plugin.validate_connection(),
                    type(plugin.get_helm_values()).__name__, plugin.health_check().state.value]
print(json.dumps({"names": names, "listed": listed, "loaded": loaded}))
"""


def test_c_floe_core_registry_lists_and_loads_our_backends(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", REGISTRY_SCRIPT], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(got["names"]) >= {"console", "otlp", "jaeger", "grafana-cloud"}
    assert sorted(got["listed"]) == sorted(got["names"])  # every one loads: none failed construction
    for name, row in got["loaded"].items():
        assert row == [name, "1.0.0", "1.0", True, "dict", "healthy"], (name, row)
    assert "TypeError" not in out.stderr


# --- (d) ------------------------------------------------------------------------------------------------------
def _product(directory: Path, endpoint: str | None) -> None:
    """A small floe product: manifest + floe.yaml that floe's own schema validates."""
    tracing = f"    endpoint: {endpoint}\n" if endpoint else ""
    (directory / "manifest.yaml").write_text(
        "apiVersion: floe.dev/v1\nkind: Manifest\nmetadata:\n  name: test-platform\n  version: 1.0.0\n"
        "  owner: platform@example.com\nplugins:\n  compute:\n    type: duckdb\n  orchestrator:\n    type: dagster\n"
        f"observability:\n  tracing:\n    enabled: true\n    exporter: otlp\n{tracing}"
        "  logging:\n    level: INFO\n    format: json\n"
    )
    (directory / "floe.yaml").write_text(
        "apiVersion: floe.dev/v1\nkind: FloeSpec\nmetadata:\n  name: orders\n  version: 2.1.0\n"
        "  labels:\n    domain: sales\nplatform:\n  manifest: ./manifest.yaml\ntransforms:\n  - name: stg_orders\n"
    )


def _compile(directory: Path, env: dict[str, str], instrumented: bool = False) -> subprocess.CompletedProcess[str]:
    args = [
        str(BIN / "floe"),
        "platform",
        "compile",
        "--spec",
        "floe.yaml",
        "--manifest",
        "manifest.yaml",
        "--skip-contracts",
        "--no-lineage-emission",
    ]
    if instrumented:
        return run_instrumented(args, env, cwd=directory, timeout=240)
    return subprocess.run(args, env=env, cwd=directory, capture_output=True, text=True, timeout=240, check=False)


def _mapped(collector: Collector) -> str:
    # floe's manifest schema refuses loopback endpoints ("cannot target private/internal networks"); the
    # IPv4-mapped IPv6 form of 127.0.0.1 passes it and still reaches the test collector
    return f"http://[::ffff:127.0.0.1]:{collector.grpc_port}"


def test_d_compiled_artifacts_drive_dbt_over_grpc(collector: Collector, tmp_path: Path) -> None:
    project = tmp_path / "jaffle"
    shutil.copytree(JAFFLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    _product(project, _mapped(collector))
    compiled = _compile(project, instrumented_env(OTEL_SDK_DISABLED="true"))
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    artifacts = json.loads((project / "target" / "compiled_artifacts.json").read_text())
    telemetry = artifacts["observability"]["telemetry"]
    assert (telemetry["otlp_protocol"], telemetry["otlp_endpoint"]) == ("grpc", _mapped(collector))

    # no OTEL_*/FLOE_* destination at all: only floe's compiled artifacts (the default location)
    env = instrumented_env(JAFFLE_DUCKDB_PATH=str(project / "jaffle.duckdb"), **FAST)
    plan = _doctor(env, cwd=project)
    signals = plan["signals"]
    assert isinstance(signals, dict)
    assert signals["traces"]["exporters"][0]["protocol"] == "grpc"
    assert plan["sources"]["endpoint"].startswith("compiled:")  # type: ignore[index]
    proc = run_instrumented(["dbt", "build", "--profiles-dir", str(project)], env, cwd=project, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # jaffle has exactly one failing data test
    assert collector.wait_for(lambda c: "dbt build" in _names(c)), proc.stderr
    (inv,) = [s for s in collector.spans() if s["name"] == "dbt build"]
    resource = inv["resource"]
    assert resource["service.name"] == "orders"
    assert (resource["floe.product.name"], resource["floe.product.version"]) == ("orders", "2.1.0")
    assert (resource["floe.namespace"], resource["deployment.environment"], resource["floe.mode"]) == (
        "default",
        "dev",
        "dev",
    )
    assert inv["attributes"]["floe.pipeline.id"] == inv["attributes"]["dbt.invocation_id"]
    models = [s for s in collector.spans() if s["name"].startswith("dbt.node.model ")]
    assert models and all(s["attributes"]["floe.dbt.model"] == s["name"].split()[1] for s in models)


# --- (e) ------------------------------------------------------------------------------------------------------
def test_e_floe_cli_under_the_distro(collector: Collector, tmp_path: Path) -> None:
    """floe's CLI calls ensure_telemetry_initialized(): no Overriding line, its compile.* spans arrive here."""
    _product(tmp_path, None)
    env = instrumented_env(
        endpoint=collector.grpc_endpoint, FLOE_NAMESPACE="sales", OTEL_TRACES_SAMPLER="always_on", **FAST
    )
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    proc = _compile(tmp_path, env, instrumented=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Overriding" not in proc.stdout + proc.stderr
    assert collector.wait_for(lambda c: {"compile.pipeline", "compile.load", "compile.generate"} <= _names(c))
    (root,) = [s for s in collector.spans() if s["name"] == "compile.pipeline"]
    assert root["attributes"]["floe.namespace"] == "sales"
    assert root["attributes"]["floe.mode"] == "prod"
    assert root["resource"]["deployment.environment"] == "prod"


# --- (g) ------------------------------------------------------------------------------------------------------
class _Collector4317(Collector):
    """The real collector with its gRPC receiver on ``host:4317`` (the port floe's demo manifest names)."""

    def __init__(self, workdir: Path, host: str) -> None:
        self.host = host
        super().__init__(workdir)

    def _config(self, extra: str) -> str:
        return super()._config(extra).replace(f"127.0.0.1:{self.grpc_port}", f"{self.host}:4317")

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{self.host}:4317"


def _free_loopback_4317() -> str:
    for last in range(2, 250):
        host = f"127.0.{last % 7}.{last}"
        with socket.socket() as s:
            try:
                s.bind((host, 4317))
            except OSError:
                continue
            return host
    raise RuntimeError("no loopback address has port 4317 free")


def test_g_floes_demo_manifest_delivers(tmp_path: Path) -> None:
    """floe's demo manifest, only its collector host changed to a local one: gRPC by the port, spans arrive."""
    workdir = tmp_path / "collector"
    workdir.mkdir()
    host = _free_loopback_4317()
    collector = _Collector4317(workdir, host)
    try:
        manifest = tmp_path / "manifest.yaml"
        demo = (EXAMPLES / "manifest.yaml").read_text()
        assert "endpoint: http://floe-platform-otel:4317" in demo and "protocol" not in demo
        manifest.write_text(demo.replace("floe-platform-otel", host))
        env = instrumented_env(FLOE_MANIFEST=str(manifest), FLOE_MODE="prod", OTEL_TRACES_SAMPLER="always_on", **FAST)
        plan = _doctor(env)
        assert plan["signals"]["traces"]["exporters"][0]["protocol"] == "grpc"  # type: ignore[index]
        proc = run_instrumented([sys.executable, str(APP)], env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert collector.wait_for(lambda c: _names(c) >= APP_SPANS), proc.stderr
        assert collector.wait_for(lambda c: bool(c.metrics()))
    finally:
        collector.stop()


def test_e_floe_runtime_reuses_the_distro(collector: Collector, tmp_path: Path) -> None:
    """ensure_telemetry_initialized + TelemetryProvider under the distro: one provider, nothing lost, no Overriding,
    and floe's endpoint rewrite is undone (one line) so children export where this process does."""
    env = instrumented_env(endpoint=collector.grpc_endpoint, OTEL_TRACES_SAMPLER="always_on", **FAST)
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    proc = run_instrumented([sys.executable, str(APPS / "floe_runtime_app.py")], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Overriding" not in proc.stdout + proc.stderr
    for marker in ("SAME-PROVIDER True", "ENDPOINT-RESTORED True", "STILL-SAME True", "FLOE-RUNTIME-APP ok"):
        assert marker in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.count("was changed by floe's runtime") == 1, proc.stderr
    wanted = {"floe_runtime_app.inside_provider", "floe_runtime_app.after_shutdown"}
    assert collector.wait_for(lambda c: wanted <= _names(c)), proc.stderr
    (span,) = [s for s in collector.spans() if s["name"] == "floe_runtime_app.inside_provider"]
    assert span["attributes"]["floe.mode"] == "prod"
