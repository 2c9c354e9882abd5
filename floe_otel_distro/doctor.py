"""``floe-otel doctor``: prints the plan the run would apply, and optionally what each endpoint answers.

The text and ``--json`` outputs are the same plan the distro makes at start-up (``plan.build_plan`` over
the same environment); nothing here decides anything of its own. Exit status: 1 when the run would
install nothing, drop a signal the inputs asked for, or (with ``--check-endpoint``) a signal's endpoint
refuses a real, empty OTLP export; else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from floe_otel_distro.plan import Plan
from floe_otel_distro.redaction import redact_url


def check_endpoints(plan: Plan) -> dict[str, dict[str, Any]]:
    """Per signal, the answer to a real, empty OTLP export with the plan's protocol and headers; plus, for a
    floe-core backend plugin, its own ``validate_connection()`` (key ``backend``)."""
    from floe_otel_distro.backends import validate_connection
    from floe_otel_distro.probe import probe

    out: dict[str, dict[str, Any]] = {}
    answer = validate_connection(plan.backend)
    if answer is not None:
        ok, detail = answer
        out["backend"] = {"ok": ok, "status": "validate_connection", "detail": detail}
    for name, signal in plan.signals.items():
        for exporter in signal.exporters:
            if exporter.kind != "otlp" or not exporter.endpoint:
                continue
            result = probe(
                name,
                exporter.protocol or "http/protobuf",
                exporter.endpoint,
                exporter.headers,
                timeout_s=min(exporter.timeout_s, 5.0),
                insecure=exporter.insecure,
            )
            out[name] = {"ok": result.ok, "status": result.status, "detail": result.detail}
    return out


def exit_status(plan: Plan, checks: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """1 when the run installs nothing, drops a requested signal, or a checked endpoint refuses; else 0."""
    if not plan.active or plan.dropped or plan.fatal_in_strict:
        return 1
    if checks and any(not c["ok"] for c in checks.values()):
        return 1
    return 0


def report(plan: Plan, checks: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON form: the plan's own serialisation, plus the endpoint checks and the verdict."""
    data = plan.to_dict()
    if checks is not None:
        data["endpoint_checks"] = dict(checks)
    data["exit_status"] = exit_status(plan, checks)
    return data


def render(plan: Plan, checks: Mapping[str, Mapping[str, Any]] | None = None) -> str:  # noqa: PLR0912, PLR0915 - a flat report
    """The plan as text for a person."""
    lines = ["floe-otel doctor: the plan this environment gives"]
    if not plan.active:
        lines.append(f"  telemetry OFF: {plan.off_reason}")
    else:
        lines.append(f"  telemetry on, mode {plan.mode}" + (", strict" if plan.strict else ""))
    if plan.backend is not None:
        b = plan.backend
        where = f"{b.dist} {b.dist_version}" if b.dist else "?"
        lines.append(f"  backend   {b.name}  {where} (plugin {b.plugin_version}, floe API {b.floe_api_version})")
        lines.append(f"            selected by {b.source}")
        for shadow in b.shadows:
            builtin = " (the built-in)" if shadow.startswith("floe-otel-distro") else ""
            lines.append(f"            shadows {shadow}{builtin}")
    lines.append("")
    lines.append("signals")
    for name, signal in plan.signals.items():
        if not signal.on:
            lost = "  LOST (asked for)" if signal.requested else ""
            lines.append(f"  {name:8} off: {signal.off_reason}{lost}")
            continue
        for exporter in signal.exporters:
            if exporter.kind == "otlp":
                headers = f" headers: {', '.join(sorted(exporter.headers))}" if exporter.headers else ""
                client = f" via {exporter.http_client}" if exporter.http_client else ""
                lines.append(
                    f"  {name:8} otlp {exporter.protocol} -> {redact_url(exporter.endpoint or '')}"
                    f"  <- {exporter.endpoint_source}{headers}{client}"
                )
            else:
                lines.append(f"  {name:8} {exporter.kind}")
        if checks and name in checks:
            c = checks[name]
            lines.append(f"  {'':8} check: {'OK' if c['ok'] else 'FAILED'} {c['status']}: {c['detail']}")
    if plan.active:
        lines.append("")
        ratio = f" ratio {plan.sampler_ratio}" if plan.sampler_ratio is not None else ""
        lines.append(f"sampler      {plan.sampler}{ratio}")
        lines.append(f"propagators  {','.join(plan.propagators) or 'none'}")
        lines.append(f"detectors    {','.join(plan.resource_detectors)} (+ service_instance, otel)")
        lines.append(f"log level    {plan.log_level}")
        lines.append(f"log records  exported by {plan.log_export}")
        lines.append(
            f"lifecycle    exit budget {plan.shutdown_timeout_s} s, batch {plan.bsp_max_export_batch_size}/"
            f"{plan.bsp_max_queue_size} every {plan.bsp_schedule_delay_ms} ms, metrics every "
            f"{plan.metric_export_interval_ms} ms"
        )
        lines.append("")
        lines.append("resource (floe's part; OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME override it)")
        lines.extend(f"  {key:28} {value}" for key, value in plan.resource.items())
        lines.append("")
        lines.append("instrumentors")
        lines.extend(f"  {name:28} {'on' if on else 'disabled'}" for name, on in plan.instrumentors.items())
    if plan.sources:
        lines.append("")
        lines.append("where values came from")
        lines.extend(f"  {key:28} <- {source}" for key, source in plan.sources.items())
    if checks and "backend" in checks:
        c = checks["backend"]
        lines.append(f"  {'backend':8} check: {'OK' if c['ok'] else 'FAILED'} {c['detail']}")
    lines.append("")
    if plan.problems:
        lines.append("problems")
        lines.extend(f"  {p.severity.upper():8} {p.line().removeprefix('floe-otel: ')}" for p in plan.problems)
    else:
        lines.append("problems: none")
    status = exit_status(plan, checks)
    verdict = "OK: the run exports what the inputs ask for" if status == 0 else "NOT OK: see above"
    lines.append(f"\n{verdict}")
    return "\n".join(lines)
