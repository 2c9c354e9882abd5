"""The ``floe-otel`` command: ``doctor`` (the start-up plan, see ``doctor``) and ``collector-config``.

Secrets are always redacted: OTLP headers show their names only, URLs lose their user info.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from floe_otel_distro import env as E
from floe_otel_distro.plan import Inputs, Plan, build_plan
from floe_otel_distro.redaction import redact


def collector_config(plan: Plan) -> dict[str, Any]:
    """A complete collector config for the plan's backend (see ``docs/kubernetes.md``)."""
    from floe_otel_distro.backends import collector_side

    if plan.backend is None or plan.backend.load is None:
        msg = plan.off_reason or "no backend"
        raise LookupError(msg)
    exporters, pipelines = collector_side(plan.backend, plan.mode)
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


def tiered_config(plan: Plan, tier: str, options: Any = None) -> dict[str, Any]:
    """The agent's or the gateway's config of the tiered layout for the plan's backend (docs/scale-out.md)."""
    from floe_otel_distro import collector_tiers
    from floe_otel_distro.backends import collector_side

    if tier == "agent":
        return collector_tiers.agent_config(options)
    if plan.backend is None or plan.backend.load is None:
        msg = plan.off_reason or "no backend"
        raise LookupError(msg)
    exporters, pipelines = collector_side(plan.backend, plan.mode)
    return collector_tiers.gateway_config(exporters, pipelines, plan.mode, options)


def _tier_options(args: argparse.Namespace, plan: Plan) -> Any:
    from floe_otel_distro.collector_tiers import TierOptions

    options = TierOptions(
        resolver=args.resolver,
        gateway_service=args.gateway_service,
        k8sattributes=not args.no_k8sattributes,
        sampling_ratio=args.sampling_ratio if args.sampling_ratio is not None else plan.sampler_ratio,
    )
    if args.gateways:
        from dataclasses import replace

        options = replace(options, static_gateways=tuple(g.strip() for g in args.gateways.split(",") if g.strip()))
    return options


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
    cc.add_argument(
        "--tier",
        choices=("single", "agent", "gateway"),
        default="single",
        help="single: one gateway tier (default); agent / gateway: the tiered layout (docs/scale-out.md)",
    )
    cc.add_argument(
        "--resolver",
        choices=("k8s", "dns", "static"),
        default="k8s",
        help="agent: how it finds the gateways (static: FLOE_GATEWAY_ENDPOINTS or --gateways)",
    )
    cc.add_argument("--gateway-service", default="otel-gateway-headless.observability",
                    help="agent: the gateways' headless Service (name.namespace)")
    cc.add_argument("--gateways", help="agent with --resolver static: host:port,host:port (default: ${env:...})")
    cc.add_argument("--no-k8sattributes", action="store_true",
                    help="agent: leave k8sattributes out (no Kubernetes API reachable, e.g. a local test)")
    cc.add_argument("--sampling-ratio", type=float,
                    help="gateway: the kept share of ordinary traces (default: the configured head-sampling ratio)")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.command == "doctor":
        from floe_otel_distro import doctor

        plan = build_plan(Inputs(environ))
        checks = doctor.check_endpoints(plan) if args.check_endpoint else None
        if args.json:
            json.dump(doctor.report(plan, checks), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(doctor.render(plan, checks) + "\n")
        return doctor.exit_status(plan, checks)
    if args.manifest:
        environ["FLOE_MANIFEST"] = args.manifest
    if args.backend:
        environ["FLOE_TELEMETRY_BACKEND"] = args.backend
    environ.setdefault("FLOE_MODE", "prod")
    if args.tier == "gateway":  # the configured head ratio (mode, manifest, FLOE_SAMPLING_RATIO) is the gateways'
        environ[E.FLOE_COLLECTOR_LAYOUT] = "single"  # share, not the SDK's 100 % under the tiered layout
    plan = build_plan(Inputs(environ))
    fatal = [p for p in plan.problems if p.severity == "fatal"]
    if fatal or plan.backend is None:
        for problem in fatal:
            sys.stderr.write(problem.line() + "\n")
        return 1
    tier: str = args.tier
    config = collector_config(plan) if tier == "single" else tiered_config(plan, tier, _tier_options(args, plan))
    import yaml

    sys.stdout.write("# Generated by `floe-otel collector-config`; do not edit by hand.\n")
    sys.stdout.write(yaml.safe_dump(redact_env_refs(config), sort_keys=False))
    return 0


def redact_env_refs(config: dict[str, Any]) -> dict[str, Any]:
    """The config with literal secrets redacted; ``${env:NAME}`` references (how secrets belong there) stay."""
    def keep(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: keep(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [keep(v) for v in value]
        if isinstance(value, str) and "${env:" in value:
            return value
        return redact(value, key=key) if key else redact(value)

    result: dict[str, Any] = keep(config)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
