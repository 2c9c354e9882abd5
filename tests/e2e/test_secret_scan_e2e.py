"""Secret scan: secrets placed wherever a user might put them never appear in any output, file or payload.

Each configuration carries unique secret tokens; the real program runs under ``opentelemetry-instrument``
against the real collector, then ``floe-otel doctor`` (text, ``--json``, ``--check-endpoint``) and
``floe-otel collector-config`` run with the same environment. Every output (stdout, stderr), every file the
runs left in HOME or the working directory, and every payload the collector received is searched for
every token.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.collector import Collector
from tests.support.run import BIN, instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
APP = str(Path(__file__).parent / "apps" / "signals_app.py")


def _configs(collector: Collector, tmp: Path) -> list[tuple[str, dict[str, str], dict[str, object] | None, list[str]]]:
    """(name, env, manifest document or None, secret tokens placed in it)."""
    host = f"127.0.0.1:{collector.http_port}"
    headers_file = tmp / "otlp-headers"
    headers_file.write_text("authorization=Bearer SECRET04\nSECRET25 without an equals sign\n")
    return [
        (
            "headers",
            {
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20SECRET01,x-tenant=SECRET05;v,broken-SECRET08",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": 'x-api-key=SECRET02,q="SECRET06"',
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x=SECRET07\u00e9,a=SECRET24\r\nb=c",
                "FLOE_OTLP_HEADERS": "api-key=SECRET03",
                "FLOE_OTLP_HEADERS_FILE": str(headers_file),
            },
            None,
            [
                "SECRET01",
                "SECRET02",
                "SECRET03",
                "SECRET04",
                "SECRET05",
                "SECRET06",
                "SECRET07",
                "SECRET08",
                "SECRET24",
                "SECRET25",
            ],
        ),
        (
            "endpoint userinfo",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:SECRET09@{host}"},
            None,
            ["SECRET09"],
        ),
        (
            "scheme-less grpc userinfo",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"user:SECRET10@127.0.0.1:{collector.grpc_port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            },
            None,
            ["SECRET10"],
        ),
        (
            "password with / and @",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://u:SECRET11/x@y@{host}"},
            None,
            ["SECRET11"],
        ),
        (
            "query strings and fragment",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{host}?api_key=SECRET12",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{host}/v1/traces?token=SECRET13",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://{host}/v1/metrics#SECRET26",
            },
            None,
            ["SECRET12", "SECRET13", "SECRET26"],
        ),
        (
            "per-signal and FLOE endpoints",
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://u:SECRET14@{host}/v1/traces",
                "FLOE_OTLP_ENDPOINT": f"http://u:SECRET15@{host}",
            },
            None,
            ["SECRET14", "SECRET15"],
        ),
        (
            "manifest",
            {},
            {
                "plugins": {
                    "telemetry_backend": {
                        "type": "otlp",
                        "config": {
                            "endpoint": "https://u:SECRET19@vendor.example.com",
                            "password": "SECRET17",
                            "token": "SECRET21",
                            "auth": {"client_secret": "SECRET18", "nested": [{"api_key": "SECRET22"}]},
                        },
                    }
                },
                "observability": {"tracing": {"endpoint": f"http://u:SECRET16@{host}"}},
            },
            ["SECRET16", "SECRET17", "SECRET18", "SECRET19", "SECRET21", "SECRET22"],
        ),
        (
            "list-shaped config",
            {},
            {"plugins": {"telemetry_backend": {"type": "otlp", "config": ["SECRET20", {"password": "SECRET23"}]}}},
            ["SECRET20", "SECRET23"],
        ),
    ]


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout + proc.stderr


def test_no_secret_reaches_any_output_file_or_payload(tmp_path: Path) -> None:
    """26 placements over 8 configurations; every output, file and payload searched for every token."""
    workdir = tmp_path / "collector"
    workdir.mkdir()
    collector = Collector(workdir)
    try:
        configs = _configs(collector, tmp_path)
        placements = sum(len(tokens) for *_, tokens in configs)
        assert placements >= 25
        leaks: list[str] = []
        for name, extra, manifest, tokens in configs:
            home = tmp_path / f"home-{name.replace(' ', '-')}"
            cwd = home / "work"
            cwd.mkdir(parents=True)
            env = instrumented_env(
                None,
                FLOE_MODE="prod",
                OTEL_TRACES_SAMPLER="always_on",
                HOME=str(home),
                XDG_CACHE_HOME=str(home / ".cache"),
                **extra,
            )
            env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint)
            if manifest is not None:
                path = home / "manifest.yaml"
                path.write_text(yaml.safe_dump(manifest))
                env["FLOE_MANIFEST"] = str(path)
            proc = run_instrumented([sys.executable, APP], env, cwd=cwd)
            outputs = {
                "run": proc.stdout + proc.stderr,
                "doctor": _run([str(BIN / "floe-otel"), "doctor"], env, cwd),
                "doctor --json": _run([str(BIN / "floe-otel"), "doctor", "--json"], env, cwd),
                "doctor --check-endpoint": _run([str(BIN / "floe-otel"), "doctor", "--check-endpoint"], env, cwd),
                "collector-config": _run([str(BIN / "floe-otel"), "collector-config"], env, cwd),
            }
            written = [p for p in home.rglob("*") if p.is_file() and p.name != "manifest.yaml"]
            outputs.update({f"file {p}": p.read_text(errors="replace") for p in written})
            for where, text in outputs.items():
                leaks.extend(f"{name}: {token} in {where}" for token in tokens if token in text)
        collector.wait_for(lambda c: len(c.spans()) > 0, timeout=5)
        payloads = "".join(p.read_text(errors="replace") for p in workdir.glob("*.jsonl"))
        assert payloads, "the collector received nothing: the scan of payloads would be vacuous"
        all_tokens = [t for *_, tokens in configs for t in tokens]
        leaks.extend(f"{token} in an exported payload" for token in all_tokens if token in payloads)
        print(f"\nsecret scan: {placements} placements, {len(configs)} configurations, {len(leaks)} leaks")
        assert leaks == [], "\n".join(leaks)
    finally:
        collector.stop()
