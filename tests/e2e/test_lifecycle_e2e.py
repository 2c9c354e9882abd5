"""End to end: signals, forked workers (gunicorn, multiprocessing), an unreachable collector, the bypass guard."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import Collector, free_port
from tests.support.run import BIN, instrumented_env, run_instrumented

pytestmark = pytest.mark.e2e
APPS = Path(__file__).parent / "apps"
JOB = str(APPS / "lifecycle_job.py")
ALWAYS = {"OTEL_TRACES_SAMPLER": "always_on", "FLOE_PRODUCT_NAME": "lifecycle"}


def _start(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "opentelemetry-instrument"), *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    """Read stdout lines until one starts with ``prefix`` (bounded by ``timeout``)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line; stderr: {proc.stderr.read() if proc.stderr else ''}")


def _named(collector: Collector, name: str) -> list[dict[str, Any]]:
    return [s for s in collector.spans() if s["name"] == name]


def _unused_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


# --- SIGTERM / SIGINT -------------------------------------------------------------------------------
def test_sigterm_mid_run_delivers_every_ended_span_and_dies_of_the_signal(collector: Collector) -> None:
    """A job killed with SIGTERM after ending 34 spans delivers all 34 and still exits as killed by SIGTERM."""
    proc = _start([sys.executable, JOB, "34", "sleep"], instrumented_env(collector.http_endpoint, **ALWAYS))
    _read_until(proc, "ready")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == -signal.SIGTERM, err
    assert time.monotonic() - started < 3  # bounded by FLOE_SHUTDOWN_TIMEOUT (2 s)
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 34)
    assert len(_named(collector, "work-1")) == 34


def test_sigterm_from_a_shell_reports_status_143(collector: Collector, tmp_path: Path) -> None:
    """Under a shell, the killed job's status is 128+15, exactly as without the distro."""
    env = instrumented_env(collector.http_endpoint, **ALWAYS)
    script = (f'"{BIN}/opentelemetry-instrument" "{sys.executable}" "{JOB}" 5 sleep & pid=$!; '
              f'sleep 1.5; kill -TERM $pid; wait $pid; echo "status=$?"')
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert "status=143" in proc.stdout, proc.stdout + proc.stderr
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 5)


def test_program_handler_installed_after_the_distro_is_still_called(collector: Collector, tmp_path: Path) -> None:
    """A SIGTERM handler the program installs after start-up runs (after our flush); getsignal returns it."""
    proc = _start([sys.executable, JOB, "34", "handler", str(tmp_path)],
                  instrumented_env(collector.http_endpoint, **ALWAYS))
    info = json.loads(_read_until(proc, "{"))
    assert info["getsignal_is_ours"] is True  # signal.getsignal shows the program its own handler
    _read_until(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err  # the program's handler decided: sys.exit(0)
    assert (tmp_path / "handled").read_text() == str(int(signal.SIGTERM))
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 34)


def test_sigint_raises_keyboard_interrupt_after_the_flush(collector: Collector) -> None:
    """SIGINT keeps Python's default (KeyboardInterrupt; uncaught, the process dies of SIGINT) and spans arrive."""
    proc = _start([sys.executable, JOB, "7", "sleep"], instrumented_env(collector.http_endpoint, **ALWAYS))
    _read_until(proc, "ready")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 7)


# --- collector down / restarted ---------------------------------------------------------------------
def test_collector_stopped_mid_run_and_restarted(collector: Collector, tmp_path: Path) -> None:
    """Spans ended before the outage and after the restart arrive; the job exits normally."""
    env = instrumented_env(collector.http_endpoint, FLOE_BSP_SCHEDULE_DELAY="100", **ALWAYS)
    proc = _start([sys.executable, JOB, "10", "phases", str(tmp_path)], env)
    _read_until(proc, "phase-2")
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 10)
    collector.stop()
    (tmp_path / "go-2").touch()
    _read_until(proc, "phase-3")
    collector.start()
    (tmp_path / "go-3").touch()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # (the restarted collector starts a new output file: phase 1 was checked above)
    assert collector.wait_for(lambda c: len(_named(c, "work-3")) >= 10)
    assert len(_named(collector, "work-3")) == 10
    assert err.count("floe-otel:") <= 1


def _timed_job(endpoint: str, spans: int = 100) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = instrumented_env(endpoint, **ALWAYS)
    started = time.monotonic()
    proc = run_instrumented([sys.executable, JOB, str(spans), "exit"], env, timeout=60)
    return time.monotonic() - started, proc


def test_collector_down_exit_time_within_one_second_of_up(collector: Collector) -> None:
    """A 100-span job exits within +1 s of the collector-up time when the collector is down, with one warning."""
    up_s, up = min((_timed_job(collector.http_endpoint) for _ in range(2)), key=lambda r: r[0])
    assert up.returncode == 0 and "floe-otel:" not in up.stderr, up.stderr
    down_s, down = max((_timed_job(_unused_endpoint()) for _ in range(2)), key=lambda r: r[0])
    assert down.returncode == 0
    assert down_s <= up_s + 1.0, (up_s, down_s)
    warnings = [line for line in down.stderr.splitlines() if line.startswith("floe-otel:")]
    assert len(warnings) == 1 and "unreachable" in warnings[0], down.stderr


def test_memory_stays_bounded_while_the_collector_is_down() -> None:
    """A producer ending spans for 6 s with the collector down keeps a flat RSS (bounded queue), one warning."""
    env = instrumented_env(_unused_endpoint(), FLOE_BSP_SCHEDULE_DELAY="100", **ALWAYS)
    proc = run_instrumented([sys.executable, str(APPS / "rss_producer.py"), "6"], env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    samples = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert samples[-1]["spans"] > 20_000  # far more than the 2048-span queue
    settled = next(s for s in samples if s["t"] >= 2.0)
    growth_kib = samples[-1]["rss_kib"] - settled["rss_kib"]
    assert growth_kib < 8 * 1024, samples  # unbounded, 1 KiB per span would be tens of MiB
    assert proc.stderr.count("floe-otel:") == 1, proc.stderr


# --- forked workers ---------------------------------------------------------------------------------
def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


@pytest.mark.parametrize("options", [[], ["--preload"], ["--max-requests", "5"]],
                         ids=["fork", "preload", "max-requests"])
def test_gunicorn_workers_export_their_own_spans(collector: Collector, options: list[str]) -> None:
    """gunicorn -w 4 (plain, --preload, recycled): all 40 request spans arrive once, each with its worker's pid."""
    port = free_port()
    env = instrumented_env(collector.http_endpoint, **ALWAYS)
    proc = _start([str(BIN / "gunicorn"), "-w", "4", "-b", f"127.0.0.1:{port}", *options, "wsgi_app:app"],
                  env, cwd=APPS)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _get(f"http://127.0.0.1:{port}/warmup")
                break
            except OSError:
                time.sleep(0.1)
        with ThreadPoolExecutor(8) as pool:
            served_by = list(pool.map(lambda i: _get(f"http://127.0.0.1:{port}/r{i}?slow"), range(40)))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    got = lambda c: len(_named(c, "request"))  # noqa: E731
    assert collector.wait_for(lambda c: got(c) >= 41), (
        got(collector), Counter(served_by), Counter(s["resource"]["process.pid"] for s in _named(collector, "request")),
        err[-3000:])
    spans = [s for s in _named(collector, "request") if s["attributes"]["http.target"] != "/warmup"]
    assert len(spans) == 40
    assert len({s["span_id"] for s in _named(collector, "request")}) == 41  # nothing exported twice
    pids = Counter(int(s["resource"]["process.pid"]) for s in spans)
    assert pids == Counter(int(p) for p in served_by)  # each span carries the pid of the worker that served it
    assert len(pids) >= 2  # 8 concurrent 50 ms requests keep several sync workers busy
    master = {s["resource"]["process.parent_pid"] for s in spans}
    assert master == {proc.pid} or len(master) == 1  # children of the one master


@pytest.mark.parametrize("how", ["close", "terminate"])
def test_multiprocessing_fork_pool_children_export_with_their_own_pid(collector: Collector, how: str) -> None:
    """A fork Pool (close+join, or the `with` block's terminate): every task span arrives once, from its worker."""
    proc = run_instrumented([sys.executable, str(APPS / "mp_pool_job.py"), "20", how],
                            instrumented_env(collector.http_endpoint, **ALWAYS))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert collector.wait_for(lambda c: len(_named(c, "task")) >= 20 and _named(c, "parent-before-fork"))
    tasks = _named(collector, "task")
    assert len(tasks) == 20 and len({s["span_id"] for s in tasks}) == 20
    assert {int(s["resource"]["process.pid"]) for s in tasks} == set(out["pids"])
    assert out["parent"] not in out["pids"]
    before = _named(collector, "parent-before-fork")
    assert len(before) == 1 and before[0]["resource"]["process.pid"] == out["parent"]  # not re-exported by children


# --- collector-bypass guard -------------------------------------------------------------------------
def _manifest(tmp_path: Path, endpoint: str) -> str:
    path = tmp_path / "manifest.yaml"
    # the mode is not a manifest key (floe's schema rejects observability.mode): FLOE_MODE=prod in the env
    path.write_text(f"apiVersion: floe.dev/v1\nkind: Manifest\nobservability:\n  tracing:\n    endpoint: {endpoint}\n")
    return str(path)


def test_collector_bypass_warns_once_and_strict_exits_78(collector: Collector, tmp_path: Path) -> None:
    """Prod export to somewhere other than the manifest's collector: one floe-otel: warning; strict: exit 78."""
    manifest = _manifest(tmp_path, "http://otel-collector.floe-platform.svc:4317")
    env = instrumented_env(collector.http_endpoint, FLOE_MANIFEST=manifest, **ALWAYS)
    proc = run_instrumented([sys.executable, JOB, "3", "exit"], env)
    assert proc.returncode == 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("floe-otel:")]
    assert len(lines) == 1, proc.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in lines[0] and "otel-collector.floe-platform.svc" in lines[0]
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 3)  # a warning: export continues

    strict = run_instrumented([sys.executable, JOB, "3", "exit"], {**env, "FLOE_OTEL_STRICT": "true"})
    assert strict.returncode == 78
    assert strict.stderr.count("floe-otel:") == 1 and "platform collector" in strict.stderr


def test_exporting_to_the_manifest_collector_is_quiet(collector: Collector, tmp_path: Path) -> None:
    """The manifest's own collector (its endpoint, no override): no warning, spans arrive."""
    env = instrumented_env(None, FLOE_MANIFEST=_manifest(tmp_path, collector.http_endpoint),
                           FLOE_OTEL_STRICT="true", FLOE_MODE="prod", **ALWAYS)
    proc = run_instrumented([sys.executable, JOB, "3", "exit"], env)
    assert proc.returncode == 0 and "floe-otel:" not in proc.stderr, proc.stderr
    assert collector.wait_for(lambda c: len(_named(c, "work-1")) >= 3)
