"""The ``floe-otel`` command: ``doctor`` (effective config, where each value came from) and ``collector-config``.

Secrets are always redacted: OTLP headers show their names only, URLs lose their user info.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from floe_otel_distro.errors import ConfigError, is_secret_key, redact_url

_SECRET_FIELDS = frozenset({"headers"})


def _shown(field: str, value: Any) -> Any:  # noqa: PLR0911 - one return per value kind
    if value is None:
        return None
    if field in _SECRET_FIELDS:
        return "<redacted>"
    if field == "backend_config" and isinstance(value, dict):
        return {k: ("<redacted>" if is_secret_key(k) else v) for k, v in value.items()}
    if hasattr(value, "value"):  # enums
        return value.value
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, (int, float, bool, list, dict)):
        return value
    return str(value)


def _instrumentors() -> list[dict[str, Any]]:
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    targets = {"floe_dbt": "dbt", "floe_dagster": "dagster"}
    out = []
    for ep in entry_points(group="opentelemetry_instrumentor"):
        target = targets.get(ep.name)
        active = True if target is None else find_spec(target) is not None
        out.append(
            {"name": ep.name, "module": ep.value, "dist": ep.dist.name if ep.dist else None, "target_installed": active}
        )
    return out


def _backend_where(resolved: Any) -> str:
    """The variable/field that selected the backend, for error lines (as ``distro.load_state`` does)."""
    source = resolved.source_of("telemetry_backend")
    if source in ("default", "env:FLOE_TELEMETRY_BACKEND"):
        return "FLOE_TELEMETRY_BACKEND"
    return "plugins.telemetry_backend.type"


def doctor_report(environ: dict[str, str], check_endpoint: bool = False) -> tuple[dict[str, Any], int]:
    """The doctor's findings as a JSON-able dict, and the exit status (0 ok, 1 invalid config)."""
    from floe_otel_distro.backends import installed_backends, load_backend
    from floe_otel_distro.settings import FloeSettings, load_settings

    report: dict[str, Any] = {"valid": True, "errors": []}
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        report["disabled"] = "OTEL_SDK_DISABLED=true"
    try:
        resolved = load_settings(environ)
    except ConfigError as error:
        report["valid"] = False
        report["errors"].append(error.line())
        return report, 1
    settings = resolved.settings
    report["settings"] = {
        name: {"value": _shown(name, getattr(settings, name)), "source": resolved.source_of(name)}
        for name in FloeSettings.model_fields
    }
    report["effective"] = {
        "backend": settings.backend_name,
        "sampling_ratio": settings.effective_sampling_ratio,
        "service_name": settings.effective_service_name,
        "signals": {s: settings.signal_enabled(s) for s in ("traces", "metrics", "logs")},
        "endpoints": {s: redact_url(settings.signal_endpoint(s)) for s in ("traces", "metrics", "logs")},
        "export_header_names": sorted(settings.export_headers()),
    }
    from floe_otel_distro.resource import resource_attributes

    report["resource"] = resource_attributes(settings, environ)
    report["installed_backends"] = installed_backends()
    try:
        plugin = load_backend(settings, _backend_where(resolved))
        meta = plugin.metadata
        report["backend"] = {
            "name": meta.name,
            "version": meta.version,
            "floe_api_version": meta.floe_api_version,
            "description": meta.description,
        }
        if check_endpoint:
            status = plugin.validate_connection()
            report["endpoint_check"] = {"ok": status.ok, "detail": status.detail}
    except ConfigError as error:
        report["valid"] = False
        report["errors"].append(error.line())
    report["instrumentors"] = _instrumentors()
    return report, 0 if report["valid"] else 1


def _print_doctor(report: dict[str, Any]) -> None:
    w = sys.stdout.write
    w("floe-otel doctor\n")
    if report.get("disabled"):
        w(f"  telemetry disabled: {report['disabled']}\n")
    for err in report["errors"]:
        w(f"  ERROR {err}\n")
    if "settings" in report:
        w("\nsettings (value  <- source)\n")
        for name, item in report["settings"].items():
            if item["value"] in (None, {}, []) and item["source"] == "default":
                continue
            w(f"  {name:28} {item['value']!s:40} <- {item['source']}\n")
        w("\neffective\n")
        for key, value in report["effective"].items():
            w(f"  {key:28} {value}\n")
        w("\nresource\n")
        for key, value in report["resource"].items():
            w(f"  {key:28} {value}\n")
    if "backend" in report:
        b = report["backend"]
        w(f"\nbackend  {b['name']} {b['version']} (floe API {b['floe_api_version']}): {b['description']}\n")
    w(f"installed backends: {', '.join(report.get('installed_backends', []))}\n")
    if "endpoint_check" in report:
        c = report["endpoint_check"]
        w(f"endpoint: {'OK' if c['ok'] else 'UNREACHABLE'} {c['detail']}\n")
    w("\ninstrumentors\n")
    for inst in report.get("instrumentors", []):
        flag = "" if inst["target_installed"] else "  (library not installed: inactive)"
        w(f"  {inst['name']:24} {inst['module']}{flag}\n")
    w(f"\nconfig {'valid' if report['valid'] else 'INVALID'}\n")


def collector_config(environ: dict[str, str]) -> dict[str, Any]:
    """A complete collector config for the selected backend (see ``docs/kubernetes.md``)."""
    from floe_otel_distro.backends import load_backend
    from floe_otel_distro.settings import load_settings

    resolved = load_settings(environ)
    plugin = load_backend(resolved.settings, _backend_where(resolved))
    exporters = plugin.get_otlp_exporter_config()
    pipelines = plugin.get_pipeline_config()
    return {
        "extensions": {"health_check": {"endpoint": "${env:MY_POD_IP:-0.0.0.0}:13133"}},
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "${env:MY_POD_IP:-0.0.0.0}:4317"},
                    "http": {"endpoint": "${env:MY_POD_IP:-0.0.0.0}:4318"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "5s", "limit_percentage": 80, "spike_limit_percentage": 25},
            "batch": {},
        },
        "exporters": exporters,
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                signal: {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"], "exporters": list(names)}
                for signal, names in pipelines.items()
                if names
            },
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``floe-otel`` console script."""
    parser = argparse.ArgumentParser(prog="floe-otel", description="floe OpenTelemetry distro tools")
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="show the effective telemetry configuration and where it came from")
    doc.add_argument("--json", action="store_true", help="machine-readable output")
    doc.add_argument("--check-endpoint", action="store_true", help="also check that the OTLP endpoint answers")
    cc = sub.add_parser("collector-config", help="print an OpenTelemetry Collector config for the selected backend")
    cc.add_argument("--manifest", help="platform manifest.yaml (default: FLOE_MANIFEST)")
    cc.add_argument("--backend", help="override the backend (default: manifest / FLOE_TELEMETRY_BACKEND)")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.command == "doctor":
        report, status = doctor_report(environ, check_endpoint=args.check_endpoint)
        if args.json:
            json.dump(report, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            _print_doctor(report)
        return status
    if args.manifest:
        environ["FLOE_MANIFEST"] = args.manifest
    if args.backend:
        environ["FLOE_TELEMETRY_BACKEND"] = args.backend
    environ.setdefault("FLOE_MODE", "prod")
    try:
        config = collector_config(environ)
    except ConfigError as error:
        sys.stderr.write(error.line() + "\n")
        return 1
    import yaml

    sys.stdout.write("# Generated by `floe-otel collector-config`; do not edit by hand.\n")
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
