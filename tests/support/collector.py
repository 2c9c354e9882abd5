"""Run the real OpenTelemetry Collector (built by collector/build.sh) with file exporters, and read back.

The collector receives OTLP gRPC + HTTP on free loopback ports and writes what it receives as OTLP-JSON
lines; ``spans()``, ``metrics()`` and ``logs()`` flatten those lines into plain dicts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def collector_binary() -> str:
    """Path of the collector binary (building it once if needed)."""
    explicit = os.environ.get("FLOE_TEST_COLLECTOR")
    if explicit:
        return explicit
    out = subprocess.run(["bash", str(REPO / "collector" / "build.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: _value(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])}
    return None


def attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value", {})) for kv in items or []}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                continue
    return out


_PORT_ATTEMPTS = 5


class Collector:
    """A running collector process with file exporters; ``stop()`` ends it."""

    def __init__(self, workdir: Path, auth_token: str | None = None, extra_config: str = "") -> None:
        self.workdir = workdir
        self.auth_token = auth_token
        self.config_path = workdir / "collector.yaml"
        self.log_path = workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # free_port() is only free when asked: until the collector binds it, any process's outgoing
        # connection may take it (the ephemeral range is shared; seen in CI). Then: new ports, once more.
        for attempt in range(_PORT_ATTEMPTS):
            self.grpc_port, self.http_port, self.health_port = free_port(), free_port(), free_port()
            self.config_path.write_text(self._config(extra_config))
            try:
                self.start()
                return
            except RuntimeError as e:
                if "address already in use" not in str(e) or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.log_path.unlink(missing_ok=True)

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def _config(self, extra: str) -> str:
        auth_ext = ""
        auth_ref = ""
        if self.auth_token:
            auth_ext = f"  bearertokenauth:\n    token: {self.auth_token}\n"
            auth_ref = "\n        auth: {authenticator: bearertokenauth}"
        files = "\n".join(
            f"  file/{sig}:\n    path: {self.workdir / (sig + '.jsonl')}\n    flush_interval: 100ms"
            for sig in ("traces", "metrics", "logs")
        )
        exts = "[health_check" + (", bearertokenauth" if self.auth_token else "") + "]"
        return f"""
extensions:
  health_check:
    endpoint: 127.0.0.1:{self.health_port}
{auth_ext}receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{self.grpc_port}{auth_ref}
      http:
        endpoint: 127.0.0.1:{self.http_port}{auth_ref}
exporters:
{files}
service:
  telemetry:
    metrics:
      level: none
  extensions: {exts}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/traces]}}
    metrics: {{receivers: [otlp], exporters: [file/metrics]}}
    logs: {{receivers: [otlp], exporters: [file/logs]}}
{extra}"""

    def start(self) -> None:
        """Start (or restart) the collector on the same ports and wait until healthy."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [collector_binary(), "--config", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("collector exited:\n" + self.log_path.read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("collector did not become healthy:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # ---- reading back -------------------------------------------------------------------------
    def spans(self) -> list[dict[str, Any]]:
        out = []
        for req in _read_lines(self.workdir / "traces.jsonl"):
            for rs in req.get("resourceSpans", []):
                resource = attrs(rs.get("resource", {}).get("attributes"))
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        out.append(
                            {
                                "name": sp["name"],
                                "trace_id": sp.get("traceId", ""),
                                "span_id": sp.get("spanId", ""),
                                "parent_span_id": sp.get("parentSpanId", ""),
                                "attributes": attrs(sp.get("attributes")),
                                "resource": resource,
                                "status": sp.get("status", {}),
                                "events": sp.get("events", []),
                                "scope": ss.get("scope", {}).get("name", ""),
                                "start": int(sp.get("startTimeUnixNano", 0)),
                                "end": int(sp.get("endTimeUnixNano", 0)),
                            }
                        )
        return out

    def metrics(self) -> list[dict[str, Any]]:
        out = []
        for req in _read_lines(self.workdir / "metrics.jsonl"):
            for rm in req.get("resourceMetrics", []):
                resource = attrs(rm.get("resource", {}).get("attributes"))
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        kind = next(k for k in ("sum", "gauge", "histogram", "exponentialHistogram") if k in m)
                        points = [
                            {**p, "attributes": attrs(p.get("attributes"))} for p in m[kind].get("dataPoints", [])
                        ]
                        out.append(
                            {
                                "name": m["name"],
                                "unit": m.get("unit", ""),
                                "kind": kind,
                                "points": points,
                                "resource": resource,
                            }
                        )
        return out

    def latest_points(self, name: str) -> list[dict[str, Any]]:
        """The latest data point per attribute set of metric ``name`` (cumulative metrics repeat)."""
        latest: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
        for m in self.metrics():
            if m["name"] == name:
                for p in m["points"]:
                    latest[tuple(sorted(p["attributes"].items()))] = p
        return list(latest.values())

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for req in _read_lines(self.workdir / "logs.jsonl"):
            for rl in req.get("resourceLogs", []):
                resource = attrs(rl.get("resource", {}).get("attributes"))
                for sl in rl.get("scopeLogs", []):
                    for rec in sl.get("logRecords", []):
                        out.append(
                            {
                                "body": _value(rec.get("body", {})),
                                "severity": rec.get("severityText", ""),
                                "trace_id": rec.get("traceId", ""),
                                "span_id": rec.get("spanId", ""),
                                "attributes": attrs(rec.get("attributes")),
                                "resource": resource,
                            }
                        )
        return out

    def wait_for(self, predicate: Callable[[Collector], bool], timeout: float = 15.0) -> bool:
        """Poll until ``predicate(self)`` is true (file exporter flushes every 100 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return predicate(self)
