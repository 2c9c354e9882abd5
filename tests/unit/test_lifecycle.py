"""Unit tests for lifecycle (bounded flush, signal chaining, fork re-init) and the exporters' exit helpers."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from floe_otel_distro import exporters, lifecycle
from floe_otel_distro.configurator import collector_bypass
from floe_otel_distro.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_lifecycle() -> Iterator[None]:
    saved = {signum: lifecycle._original_getsignal(signum) for signum in lifecycle.HANDLED_SIGNALS}
    lifecycle._reset_for_tests()
    yield
    lifecycle._reset_for_tests()
    for signum, handler in saved.items():  # e.g. a SIG_IGN set here would be inherited by e2e children
        lifecycle._original_signal(signum, handler)


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"process.pid": os.getpid()}), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    return provider, exporter


def _end(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("t")
    for i in range(n):
        tracer.start_span(f"s{i}").end()


class _Stuck:
    """A provider whose flush never returns by itself (a collector that swallows packets)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        self.release.wait(30)
        return True

    def shutdown(self) -> None:
        pass


def test_flush_and_shutdown_exports_everything_once() -> None:
    """The exit flush exports every ended span and runs only once."""
    provider, exporter = _provider()
    lifecycle.install([provider], SimpleNamespace(shutdown_timeout=2.0))  # type: ignore[arg-type]
    _end(provider, 5)
    lifecycle.flush_and_shutdown()
    lifecycle.flush_and_shutdown()
    assert len(exporter.get_finished_spans()) == 5


def test_flush_is_bounded_by_the_budget_and_aborts_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stuck flush returns after the budget (+grace) and aborts the exporters' retries."""
    stuck = _Stuck()
    aborted: list[bool] = []
    monkeypatch.setattr(exporters, "abort_all", lambda: aborted.append(True))
    lifecycle._providers[:] = [stuck]
    started = time.monotonic()
    assert lifecycle.flush(0.3) is False
    assert time.monotonic() - started < 0.3 + lifecycle._GRACE_S + 0.2
    assert aborted == [True]
    stuck.release.set()


def test_signal_wrapper_keeps_our_handler_in_front_and_calls_the_programs() -> None:
    """A handler installed after us is recorded, reported by getsignal, and called after our flush."""
    provider, exporter = _provider()
    lifecycle.install([provider], SimpleNamespace(shutdown_timeout=2.0))  # type: ignore[arg-type]
    calls: list[int] = []

    def mine(signum: int, frame: Any) -> None:
        calls.append(len(exporter.get_finished_spans()))

    assert signal.signal(signal.SIGTERM, mine) is not lifecycle._on_signal  # the program's previous handler
    assert signal.getsignal(signal.SIGTERM) is mine
    assert lifecycle._original_getsignal(signal.SIGTERM) is lifecycle._on_signal
    _end(provider, 3)
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [3]  # the spans were flushed before the program's handler ran


def test_ignored_signal_stays_ignored() -> None:
    """SIG_IGN set by the program is really installed (we step aside)."""
    lifecycle.install([], SimpleNamespace(shutdown_timeout=1.0))  # type: ignore[arg-type]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert lifecycle._original_getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    with pytest.raises(TypeError):
        signal.signal(signal.SIGTERM, "not a handler")


def test_uninstall_restores_the_program_handler() -> None:
    """Uninstalling puts the program's handler back and unwraps signal.signal."""
    lifecycle.install([], SimpleNamespace(shutdown_timeout=1.0))  # type: ignore[arg-type]

    def mine(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGINT, mine)
    lifecycle.uninstall_signal_handlers()
    assert signal.signal is lifecycle._original_signal
    assert signal.getsignal(signal.SIGINT) is mine
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_forked_child_gets_its_own_pid_and_an_empty_queue() -> None:
    """After fork the child's spans carry its pid; spans buffered in the parent are not exported by the child."""
    provider, exporter = _provider()
    lifecycle.install([provider], SimpleNamespace(shutdown_timeout=2.0))  # type: ignore[arg-type]
    _end(provider, 4)  # buffered in the parent's queue at fork time
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            _end(provider, 2)
            provider.force_flush()
            spans = exporter.get_finished_spans()
            out = {"n": len(spans), "pids": sorted({s.resource.attributes["process.pid"] for s in spans}),
                   "parent": spans[0].resource.attributes.get("process.parent_pid") if spans else None}
            os.write(write, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = json.loads(os.read(read, 4096))
    os.close(read)
    assert status == 0
    assert child == {"n": 2, "pids": [pid], "parent": os.getpid()}
    provider.force_flush()
    assert len(exporter.get_finished_spans()) == 4  # the parent still exports its own, once


def _listening() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, server.getsockname()[1]


def test_abort_unreachable_aborts_only_exporters_whose_collector_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    """The exit probe aborts exporters aimed at a closed port (one warning) and keeps the reachable ones."""
    server, up_port = _listening()
    down_sock, down_port = _listening()
    down_sock.close()
    try:
        up = exporters.LazySpanExporter("traces", "up", lambda: None, f"http://127.0.0.1:{up_port}/v1/traces")
        down = exporters.LazySpanExporter("traces", "down", lambda: None, f"http://127.0.0.1:{down_port}/v1/traces")
        down_logs = exporters.LazyLogExporter("logs", "down", lambda: None, f"http://127.0.0.1:{down_port}/v1/logs")
        saved = exporters._last_warning
        exporters._last_warning = 0.0
        assert exporters.abort_unreachable(0.5) >= 2
        assert down._aborted and down_logs._aborted and not up._aborted
        assert capsys.readouterr().err.count("floe-otel:") == 1
        exporters._last_warning = saved
    finally:
        server.close()


def _settings(tmp_path: Path, collector: str, **env: str) -> Any:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"observability:\n  mode: prod\n  tracing:\n    endpoint: {collector}\n")
    return load_settings({"FLOE_MANIFEST": str(manifest), **env})


def test_bypass_guard_flags_another_host_only(tmp_path: Path) -> None:
    """Another host is a bypass (naming the variable); the manifest's own collector, on either OTLP port, is not."""
    collector = "http://otel-collector.platform.svc:4317"
    own = _settings(tmp_path, collector)
    assert collector_bypass(own.settings, own) is None
    http_port = _settings(tmp_path, collector, OTEL_EXPORTER_OTLP_ENDPOINT="http://otel-collector.platform.svc:4318")
    assert collector_bypass(http_port.settings, http_port) is None
    direct = _settings(tmp_path, collector, OTEL_EXPORTER_OTLP_ENDPOINT="https://vendor.example.com:443")
    error = collector_bypass(direct.settings, direct)
    assert error is not None and error.line().startswith("floe-otel: OTEL_EXPORTER_OTLP_ENDPOINT=")
    dev = _settings(tmp_path, collector, FLOE_MODE="dev", OTEL_EXPORTER_OTLP_ENDPOINT="https://vendor.example.com")
    assert collector_bypass(dev.settings, dev) is None
