"""End to end: doctor = run. What ``floe-otel doctor --json`` says a process will export is what it exports.

Per configuration, with exactly the environment (and working directory) the program gets:
1. ``floe-otel doctor --json`` (``--check-endpoint`` where the case needs it) is run and its JSON parsed;
2. the real program (``opentelemetry-instrument python doctor_app.py``: three spans, a counter, one WARNING,
   a marker line) is run against a real collector of its own;
3. the signals that arrive are exactly those doctor shows on with an OTLP exporter to that collector (and,
   with ``--check-endpoint``, whose check is ok) — and exactly the case's expectation; the others send
   nothing at all. Doctor's exit status is the case's, and the program's exit status and stdout are those of
   the same program run without instrumentation. The run's ``floe-otel:`` lines are the plan's problems.

The programs of all cases run concurrently (each with its own collector) in one module fixture; each case's
test asserts on its own outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.collector import Collector
from tests.support.run import BIN, instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e

APP = Path(__file__).parent / "apps" / "doctor_app.py"
MARKER = "DOCTOR-APP-MARKER ok"
SIGNALS = ("traces", "metrics", "logs")
ALL = frozenset(SIGNALS)
NOTHING: frozenset[str] = frozenset()
APP_SPANS = frozenset({"doctor_app.job", "doctor_app.load", "doctor_app.save"})
RIGHT_TOKEN = "e2e-doctor-right-6c1f0b"
WRONG_TOKEN = "e2e-doctor-wrong-93ad7e"
FAST = {"OTEL_METRIC_EXPORT_INTERVAL": "500", "OTEL_BSP_SCHEDULE_DELAY": "200"}
PROD = {"FLOE_MODE": "prod", "OTEL_TRACES_SAMPLER": "always_on", **FAST}
DEV = {"FLOE_MODE": "dev", **FAST}
ARRIVE_TIMEOUT_S = 5.0  # poll this long after the program exited for the data doctor promised
QUIET_AFTER_EXIT_S = 1.5  # and at least this long, so data that must not arrive would have
WORKERS = max(4, min(8, (os.cpu_count() or 2) * 3))
LOOPBACK = ("127.0.0.1", "localhost")


# --- one case ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One configuration: the env it adds to ``instrumented_env``, what must arrive, doctor's exit status."""

    id: str
    env: Callable[[Collector, Path], dict[str, str]]
    arrive: frozenset[str]
    doctor_exit: int
    check: bool = False  # run doctor with --check-endpoint
    auth_token: str | None = None  # the collector wants this bearer token
    extra: Callable[[Outcome], None] | None = None  # the case's own assertions


@dataclass(frozen=True)
class Outcome:
    """What doctor said and what the run did for one case."""

    case: Case
    http_port: int
    grpc_port: int
    workdir: Path
    env: Mapping[str, str]
    doctor: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    program: subprocess.CompletedProcess[str]
    baseline: subprocess.CompletedProcess[str]
    arrived: frozenset[str]  # signals whose data from the app reached the collector
    seen: Mapping[str, int]  # records of any kind the collector received, per signal

    def explain(self) -> str:
        signals = {
            name: {k: s[k] for k in ("on", "requested", "off_reason")}
            | {"exporters": [(e["kind"], e["protocol"], e["endpoint"]) for e in s["exporters"]]}
            for name, s in self.report.get("signals", {}).items()
        }
        return (
            f"\ncase {self.case.id}: doctor exit {self.doctor.returncode}, active={self.report.get('active')} "
            f"dropped={self.report.get('dropped')}\n signals={json.dumps(signals)}\n"
            f" checks={json.dumps(self.report.get('endpoint_checks'))}\n problems={self.report.get('problems')}\n"
            f" predicted={sorted(predicted(self.report, self.http_port, self.grpc_port))} "
            f"arrived={sorted(self.arrived)} seen={dict(self.seen)}\n"
            f" program rc={self.program.returncode} stdout={self.program.stdout!r}\n"
            f" program stderr:\n{self.program.stderr[-3000:]}\n doctor stderr:\n{self.doctor.stderr[-2000:]}"
        )


def run_doctor(env: Mapping[str, str], cwd: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    """``floe-otel doctor --json [--check-endpoint]`` as a subprocess with exactly ``env``."""
    args = [str(BIN / "floe-otel"), "doctor", "--json", *(["--check-endpoint"] if check else [])]
    return subprocess.run(args, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


def predicted(report: Mapping[str, Any], http_port: int, grpc_port: int) -> frozenset[str]:
    """The signals doctor says are on with an OTLP exporter to this collector (and whose check is ok)."""
    if not report.get("active"):
        return NOTHING
    checks = report.get("endpoint_checks")
    out = set()
    for name, signal in report["signals"].items():
        to_us = [
            e
            for e in signal["exporters"]
            if e["kind"] == "otlp"
            and e["endpoint"]
            and _host_port(e["endpoint"])[0] in LOOPBACK
            and _host_port(e["endpoint"])[1] in (http_port, grpc_port)
        ]
        if not (signal["on"] and to_us):
            continue
        if checks is not None and not checks.get(name, {}).get("ok", False):
            continue
        out.add(name)
    return frozenset(out)


def _app_data(collector: Collector) -> frozenset[str]:
    out = set()
    if {s["name"] for s in collector.spans()} >= APP_SPANS:
        out.add("traces")
    if any(m["name"] == "doctor_app.rows" for m in collector.metrics()):
        out.add("metrics")
    if any("doctor-app warning: 3 rows" in str(r["body"]) for r in collector.logs()):
        out.add("logs")
    return frozenset(out)


def play(case: Case, workdir: Path, baseline: subprocess.CompletedProcess[str]) -> Outcome:
    """Doctor, then the program, against a collector of the case's own; what arrived."""
    (workdir / "collector").mkdir(parents=True)
    cwd = workdir / "cwd"
    cwd.mkdir()
    collector = Collector(workdir / "collector", auth_token=case.auth_token)
    try:
        env = instrumented_env(**case.env(collector, workdir))
        doctor = run_doctor(env, cwd, check=case.check)
        report = json.loads(doctor.stdout) if doctor.stdout.strip().startswith("{") else {}
        program = run_instrumented([sys.executable, str(APP)], env, cwd=cwd, timeout=60)
        exited = time.monotonic()
        want = predicted(report, collector.http_port, collector.grpc_port) | case.arrive
        while time.monotonic() < exited + ARRIVE_TIMEOUT_S and not want <= _app_data(collector):
            time.sleep(0.1)
        time.sleep(max(0.0, exited + QUIET_AFTER_EXIT_S - time.monotonic()))
    finally:
        collector.stop()  # flushes the file exporters
    return Outcome(
        case=case,
        http_port=collector.http_port,
        grpc_port=collector.grpc_port,
        workdir=workdir,
        env=env,
        doctor=doctor,
        report=report,
        program=program,
        baseline=baseline,
        arrived=_app_data(collector),
        seen={"traces": len(collector.spans()), "metrics": len(collector.metrics()), "logs": len(collector.logs())},
    )


# --- the cases' own assertions ----------------------------------------------------------------------------------
def _exporters(o: Outcome, signal: str) -> list[dict[str, Any]]:
    return o.report["signals"][signal]["exporters"]


def _checks_are(status: str, ok: bool) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        checks = o.report["endpoint_checks"]
        assert set(checks) == ALL, o.explain()
        for signal, c in checks.items():
            assert (c["ok"], c["status"]) == (ok, status), f"{signal}: {c}{o.explain()}"

    return check


def _tree_on_stderr(o: Outcome) -> None:
    err = o.program.stderr
    assert "trace " in err, o.explain()
    lines = [line for line in err.splitlines() if "doctor_app." in line]
    for name in APP_SPANS:
        assert any(f"─ {name}  " in line for line in lines), f"{name} not in the console tree{o.explain()}"


def _extra_http(o: Outcome) -> None:
    _checks_are("HTTP 200", True)(o)
    for signal in SIGNALS:
        (e,) = _exporters(o, signal)
        assert (e["kind"], e["protocol"]) == ("otlp", "http/protobuf"), o.explain()
        assert e["endpoint"] == f"http://127.0.0.1:{o.http_port}/v1/{signal}", o.explain()
        assert e["endpoint_source"] == "OTEL_EXPORTER_OTLP_ENDPOINT"


def _extra_grpc(o: Outcome) -> None:
    _checks_are("gRPC OK", True)(o)
    for signal in SIGNALS:
        (e,) = _exporters(o, signal)
        assert (e["kind"], e["protocol"]) == ("otlp", "grpc"), o.explain()
        assert e["endpoint"] == f"http://127.0.0.1:{o.grpc_port}", o.explain()


def _extra_bogus_logs(o: Outcome) -> None:
    assert o.report["dropped"] == ["logs"], o.explain()
    logs = o.report["signals"]["logs"]
    assert (logs["on"], logs["requested"]) == (False, True)
    assert "bogus" in logs["off_reason"]
    assert any(p["where"] == "OTEL_LOGS_EXPORTER" for p in o.report["problems"]), o.explain()


def _extra_http_to_grpc_port(o: Outcome) -> None:
    _checks_are("not OTLP/HTTP", False)(o)
    for signal in SIGNALS:  # the plan cannot know; the check does
        (e,) = _exporters(o, signal)
        assert (e["protocol"], _host_port(e["endpoint"])[1]) == ("http/protobuf", o.grpc_port), o.explain()


def _extra_dev_with_endpoint(o: Outcome) -> None:
    assert o.report["mode"] == "dev"
    assert o.report["backend"]["name"] == "otlp", o.explain()
    assert [e["kind"] for e in _exporters(o, "traces")] == ["otlp", "console"], o.explain()
    assert [e["kind"] for e in _exporters(o, "metrics")] == ["otlp"], o.explain()
    assert [e["kind"] for e in _exporters(o, "logs")] == ["otlp"], o.explain()
    _tree_on_stderr(o)


def _extra_sdk_disabled(o: Outcome) -> None:
    assert (o.report["active"], o.report["off_reason"]) == (False, "OTEL_SDK_DISABLED=true"), o.explain()
    assert all(not s["on"] for s in o.report["signals"].values())


def _extra_traces_none(o: Outcome) -> None:
    traces = o.report["signals"]["traces"]
    assert (traces["on"], traces["requested"], traces["off_reason"]) == (False, False, "OTEL_TRACES_EXPORTER=none")
    assert o.report["dropped"] == []


def _extra_jaeger(o: Outcome) -> None:
    assert o.report["backend"]["name"] == "jaeger", o.explain()
    assert o.report["backend"]["source"] == "FLOE_TELEMETRY_BACKEND"
    for signal in SIGNALS:
        assert [e["kind"] for e in _exporters(o, signal)] == ["otlp"], o.explain()


def _extra_manifest(o: Outcome) -> None:
    manifest = o.workdir / "manifest.yaml"
    assert o.report["backend"]["name"] == "otlp", o.explain()
    assert o.report["backend"]["source"] == f"manifest:{manifest} plugins.telemetry_backend.type"
    for signal in SIGNALS:
        (e,) = _exporters(o, signal)
        assert e["endpoint_source"] == f"manifest:{manifest} observability.tracing.endpoint", o.explain()
        assert e["endpoint"] == f"http://127.0.0.1:{o.http_port}/v1/{signal}"


def _extra_grafana_missing(o: Outcome) -> None:
    assert o.report["active"] is False, o.explain()
    assert o.report["backend"] is None
    assert [p["severity"] for p in o.report["problems"]] == ["fatal"], o.explain()
    lines = [line for line in o.program.stderr.splitlines() if line.startswith("floe-otel:")]
    assert len(lines) == 1, o.explain()
    assert "plugins.telemetry_backend" in lines[0]


def _extra_wrong_token(o: Outcome) -> None:
    _checks_are("HTTP 401", False)(o)
    for signal in SIGNALS:
        assert _exporters(o, signal)[0]["header_names"] == ["authorization"], o.explain()
    assert WRONG_TOKEN not in o.doctor.stdout  # header values are never printed


def _extra_right_token(o: Outcome) -> None:
    _checks_are("HTTP 200", True)(o)
    assert RIGHT_TOKEN not in o.doctor.stdout


def _extra_traces_endpoint_only(o: Outcome) -> None:
    (e,) = _exporters(o, "traces")
    assert e["endpoint"] == f"http://127.0.0.1:{o.http_port}/v1/traces", o.explain()
    assert e["endpoint_source"] == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    for signal in ("metrics", "logs"):
        s = o.report["signals"][signal]
        assert (s["on"], s["requested"]) == (False, False), o.explain()


def _extra_invalid_endpoint(o: Outcome) -> None:
    assert o.report["active"] is False, o.explain()
    assert sorted(o.report["dropped"]) == sorted(SIGNALS)
    assert all(p["severity"] == "degraded" for p in o.report["problems"]), o.explain()


def _extra_console(o: Outcome) -> None:
    assert o.report["backend"]["name"] == "console", o.explain()
    assert [e["kind"] for e in _exporters(o, "traces")] == ["console"]
    for signal in ("metrics", "logs"):
        s = o.report["signals"][signal]
        assert (s["on"], s["requested"]) == (False, False), o.explain()
    _tree_on_stderr(o)


def _manifest_env(c: Collector, workdir: Path) -> dict[str, str]:
    manifest = workdir / "manifest.yaml"
    manifest.write_text(
        f"plugins:\n  telemetry_backend:\n    type: otlp\nobservability:\n  tracing:\n    endpoint: {c.http_endpoint}\n"
    )
    return {**PROD, "FLOE_MANIFEST": str(manifest)}


def _headers(token: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{token}"}


CASES = [
    Case(
        "a-http-to-http-port",
        lambda c, _: {
            **PROD,
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
        ALL,
        0,
        check=True,
        extra=_extra_http,
    ),
    Case(
        "b-grpc-to-grpc-port",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        ALL,
        0,
        check=True,
        extra=_extra_grpc,
    ),
    Case(
        "d-bogus-logs-exporter",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint, "OTEL_LOGS_EXPORTER": "bogus"},
        frozenset({"traces", "metrics"}),
        1,
        extra=_extra_bogus_logs,
    ),
    Case(
        "e-http-protocol-to-grpc-port",
        lambda c, _: {
            **PROD,
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
        NOTHING,
        1,
        check=True,
        extra=_extra_http_to_grpc_port,
    ),
    Case(
        "f-dev-with-endpoint",
        lambda c, _: {**DEV, "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint},
        ALL,
        0,
        extra=_extra_dev_with_endpoint,
    ),
    Case(
        "g-sdk-disabled",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint, "OTEL_SDK_DISABLED": "true"},
        NOTHING,
        1,
        extra=_extra_sdk_disabled,
    ),
    Case(
        "h-traces-exporter-none",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint, "OTEL_TRACES_EXPORTER": "none"},
        frozenset({"metrics", "logs"}),
        0,
        extra=_extra_traces_none,
    ),
    Case(
        "i-jaeger-backend",
        # floe-telemetry-jaeger (installed by the tests) shadows the built-in and asks for gRPC
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.grpc_endpoint, "FLOE_TELEMETRY_BACKEND": "jaeger"},
        ALL,
        0,
        extra=_extra_jaeger,
    ),
    Case("j-otlp-backend-from-manifest", _manifest_env, ALL, 0, extra=_extra_manifest),
    Case(
        "k-grafana-cloud-unconfigured",
        lambda c, _: {
            **PROD,
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint,
            "FLOE_TELEMETRY_BACKEND": "grafana-cloud",
        },
        NOTHING,
        1,
        extra=_extra_grafana_missing,
    ),
    Case(
        "l-wrong-bearer-token",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint, **_headers(WRONG_TOKEN)},
        NOTHING,
        1,
        check=True,
        auth_token=RIGHT_TOKEN,
        extra=_extra_wrong_token,
    ),
    Case(
        "m-right-bearer-token",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": c.http_endpoint, **_headers(RIGHT_TOKEN)},
        ALL,
        0,
        check=True,
        auth_token=RIGHT_TOKEN,
        extra=_extra_right_token,
    ),
    Case(
        "n-traces-endpoint-only",
        lambda c, _: {
            **PROD,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{c.http_endpoint}/v1/traces",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
        frozenset({"traces"}),
        0,
        extra=_extra_traces_endpoint_only,
    ),
    Case(
        "o-invalid-endpoint-port",
        lambda c, _: {**PROD, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:99999"},
        NOTHING,
        1,
        extra=_extra_invalid_endpoint,
    ),
    Case("p-dev-console-backend", lambda c, _: dict(DEV), NOTHING, 0, extra=_extra_console),
]


# --- running them ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome | Exception]:
    """Every case played once, concurrently (each against its own collector)."""
    root = tmp_path_factory.mktemp("doctor-run")
    plain = {k: v for k, v in instrumented_env().items() if not k.startswith("OTEL_")}
    baseline = subprocess.run(
        [sys.executable, str(APP)], env=plain, cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    results: dict[str, Outcome | Exception] = {}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {case.id: pool.submit(play, case, root / case.id, baseline) for case in CASES}
        for case_id, future in futures.items():
            try:
                results[case_id] = future.result()
            except Exception as exc:  # reported by that case's test alone
                results[case_id] = exc
    return results


def _problem_line(problem: Mapping[str, str]) -> str:
    shown = f"={problem['value']!r}" if problem["value"] else ""
    return f"floe-otel: {problem['where']}{shown}: {problem['message']}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_doctor_equals_run(outcomes: dict[str, Outcome | Exception], case: Case) -> None:
    o = outcomes[case.id]
    if isinstance(o, Exception):
        raise o
    assert o.report, f"doctor printed no JSON{o.explain()}"
    # doctor's verdict
    assert o.doctor.returncode == o.report["exit_status"] == case.doctor_exit, o.explain()
    # the program itself is unchanged
    assert (o.baseline.returncode, o.baseline.stdout) == (0, MARKER + "\n"), o.baseline
    assert (o.program.returncode, o.program.stdout) == (o.baseline.returncode, o.baseline.stdout), o.explain()
    # what doctor said is what arrived, and what the case expects
    promised = predicted(o.report, o.http_port, o.grpc_port)
    assert o.arrived == promised, f"doctor promised {sorted(promised)}, arrived {sorted(o.arrived)}{o.explain()}"
    assert o.arrived == case.arrive, o.explain()
    for signal in set(SIGNALS) - o.arrived:
        assert o.seen[signal] == 0, f"{signal} must not arrive{o.explain()}"
    # the run reports exactly the plan's problems (plus, only where doctor saw a refusing endpoint, export warnings)
    lines = [line for line in o.program.stderr.splitlines() if line.startswith("floe-otel:")]
    planned = Counter(_problem_line(p) for p in o.report["problems"])
    for want, times in planned.items():
        got = sum(line.startswith(want) for line in lines)
        assert got == times, f"{want!r} reported {got} times, planned {times}{o.explain()}"
    rest = [line for line in lines if not any(line.startswith(want) for want in planned)]
    refusing = any(not c["ok"] for c in (o.report.get("endpoint_checks") or {}).values())
    for line in rest:
        assert refusing and _is_loss_line(line), f"unexpected {line!r}{o.explain()}"
    if case.extra is not None:
        case.extra(o)


def _is_loss_line(line: str) -> bool:
    """A delivery line (floe_otel_distro.delivery): the throttled cause line or the count line at exit."""
    return line.startswith("floe-otel: exporting ") or " not delivered to " in line


# --- doctor only: the 4317/4318 port rule (the test collector listens on random ports) --------------------------
@pytest.mark.parametrize(("port", "protocol"), [(4317, "grpc"), (4318, "http/protobuf")])
def test_c_port_rule_picks_the_protocol(tmp_path: Path, port: int, protocol: str) -> None:
    env = instrumented_env(f"http://127.0.0.1:{port}", **PROD)
    doctor = run_doctor(env, tmp_path)
    report = json.loads(doctor.stdout)
    assert (doctor.returncode, report["exit_status"], report["active"]) == (0, 0, True), doctor.stdout
    for signal in SIGNALS:
        (e,) = report["signals"][signal]["exporters"]
        assert (e["kind"], e["protocol"]) == ("otlp", protocol), e
        want = f"http://127.0.0.1:{port}" + ("" if protocol == "grpc" else f"/v1/{signal}")
        assert e["endpoint"] == want, e
    assert report["problems"] == []
