"""Unit tests for lifecycle (bounded flush, exit flush, fork re-init) and the exporters' exit helpers.

The signal handlers (the ``floe_signals`` instrumentor) are tested in ``test_signals.py``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from floe_otel_distro import delivery, exporters, lifecycle
from floe_otel_distro._lazy_logs import LazyLogExporter
from tests.support.providers import batching_provider, end_spans


@pytest.fixture(autouse=True)
def _clean_lifecycle() -> Iterator[None]:
    lifecycle.reset()
    yield
    lifecycle.reset()


_provider = batching_provider
_end = end_spans


class _Stuck:
    """A provider whose flush never returns by itself (a collector that swallows packets)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.shut_down = False

    def force_flush(self, timeout_millis: int = 0) -> bool:
        self.entered.set()
        self.release.wait(30)
        return True

    def shutdown(self) -> None:
        self.shut_down = True


def test_flush_and_shutdown_exports_everything_once() -> None:
    """The exit flush exports every ended span and runs only once."""
    provider, exporter = _provider()
    lifecycle.install([provider], 2.0)
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


def test_finish_exit_flush_runs_the_exit_flush_once() -> None:
    """finish_exit_flush (a signal handler about to die) runs the exit flush if it has not run, else nothing."""
    provider, exporter = _provider()
    lifecycle.install([provider], 2.0)
    _end(provider, 3)
    lifecycle.finish_exit_flush()
    assert len(exporter.get_finished_spans()) == 3
    lifecycle.finish_exit_flush()
    lifecycle.flush_and_shutdown()
    assert len(exporter.get_finished_spans()) == 3


def test_finish_exit_flush_waits_for_the_exit_flush_under_way() -> None:
    """A signal landing while the exit flush runs waits for it (within its budget) instead of cutting it short."""
    stuck = _Stuck()
    lifecycle.install([stuck], 5.0)
    exiting = threading.Thread(target=lifecycle.flush_and_shutdown)
    exiting.start()
    assert stuck.entered.wait(5)
    threading.Timer(0.3, stuck.release.set).start()
    started = time.monotonic()
    lifecycle.finish_exit_flush()
    assert 0.2 < time.monotonic() - started < 3
    assert stuck.shut_down  # the exit flush ran to its end before the "signal handler" returned
    exiting.join(5)


def test_flush_without_providers_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a process where nothing was installed the flush returns at once, without probing the collector."""
    probed: list[float] = []
    monkeypatch.setattr(exporters, "abort_unreachable", probed.append)
    assert lifecycle.flush() is True
    lifecycle.flush_and_shutdown()
    assert probed == []


def test_forked_child_gets_its_own_pid_and_an_empty_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """After fork the child's spans carry its pid; spans buffered in the parent are not exported by the child."""
    # The SDK re-runs the process-dependent detectors in the child (the plan configures floe_process;
    # the SDK's own process detector is re-run the same way); lifecycle's hooks must not get in its way.
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "process")
    provider, exporter = _provider()
    lifecycle.install([provider], 2.0)
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
    """The exit probe aborts exporters aimed at a closed port (no line by itself) and keeps the reachable ones."""
    server, up_port = _listening()
    down_sock, down_port = _listening()
    down_sock.close()
    try:
        up = exporters.LazySpanExporter("traces", "up", lambda: None, f"http://127.0.0.1:{up_port}/v1/traces")
        down = exporters.LazySpanExporter("traces", "down", lambda: None, f"http://127.0.0.1:{down_port}/v1/traces")
        down_logs = LazyLogExporter("logs", "down", lambda: None, f"http://127.0.0.1:{down_port}/v1/logs")
        assert exporters.abort_unreachable(0.5) >= 2
        assert down._aborted and down_logs._aborted and not up._aborted
        assert "floe-otel:" not in capsys.readouterr().err  # nothing was pending: nothing to report
        assert down._abort_cause is not None and "refused" in down._abort_cause
    finally:
        server.close()


def test_collector_down_at_exit_reports_one_count_line_with_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    """Spans still queued at exit with the collector down: one line with the count and "connection refused"."""
    down_sock, down_port = _listening()
    down_sock.close()
    url = f"http://127.0.0.1:{down_port}/v1/traces"
    lazy = exporters.LazySpanExporter("traces", url, lambda: pytest.fail("never built: aborted first"), url)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(lazy, schedule_delay_millis=60_000))
    lifecycle.install([provider], 2.0)
    _end(provider, 7)
    started = time.monotonic()
    lifecycle.flush_and_shutdown()
    assert time.monotonic() - started < 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("floe-otel:")]
    assert lines == [f"floe-otel: 7 spans not delivered to http://127.0.0.1:{down_port}: {delivery.REFUSED}"]


def test_no_line_at_exit_when_nothing_was_sent(capsys: pytest.CaptureFixture[str]) -> None:
    """A no-op process (nothing ended) with the collector down prints nothing at exit."""
    down_sock, down_port = _listening()
    down_sock.close()
    url = f"http://127.0.0.1:{down_port}/v1/traces"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporters.LazySpanExporter("traces", url, lambda: None, url)))
    lifecycle.install([provider], 2.0)
    lifecycle.flush_and_shutdown()
    assert capsys.readouterr().err == ""


def test_items_cut_off_by_the_budget_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    """A stuck export at exit: the batch in flight and what is still queued are counted in the one line."""
    server, port = _listening()  # accepts connections, never answers
    url = f"http://127.0.0.1:{port}/v1/traces"
    release = threading.Event()

    class _Hanging:
        def export(self, spans: object) -> object:
            release.wait(10)
            from opentelemetry.sdk.trace.export import SpanExportResult

            return SpanExportResult.FAILURE

        def shutdown(self) -> None:
            release.set()

    lazy = exporters.LazySpanExporter("traces", url, _Hanging, url)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(lazy, schedule_delay_millis=60_000, max_export_batch_size=4))
    try:
        lifecycle.install([provider], 0.5)
        _end(provider, 10)
        lifecycle.flush_and_shutdown()
        err = capsys.readouterr().err
        assert err.count("floe-otel:") == 1
        assert f"floe-otel: 10 spans not delivered to http://127.0.0.1:{port}: " in err
    finally:
        release.set()
        server.close()


class _Shutdowns:
    """Providers with the shutdown signatures seen in the SDK (with and without timeout) and one that raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def force_flush(self, timeout_millis: int = 0) -> bool:
        raise RuntimeError("flush failed")  # must not stop the others


class _WithTimeout(_Shutdowns):
    def shutdown(self, timeout_millis: float = 0) -> None:
        self.calls.append(f"shutdown {timeout_millis > 0}")


class _WithoutTimeout(_Shutdowns):
    def shutdown(self) -> None:
        self.calls.append("shutdown")


class _Raising(_Shutdowns):
    def shutdown(self) -> None:
        raise RuntimeError("shutdown failed")


def test_shutdown_reaches_every_provider_whatever_its_signature() -> None:
    """A provider that raises in flush or shutdown does not stop the others; timeouts are passed where taken."""
    a, b, c = _WithTimeout(), _Raising(), _WithoutTimeout()
    lifecycle.install([a, b, c], 2.0)
    assert lifecycle.flush(shutdown=True)
    assert (a.calls, c.calls) == (["shutdown True"], ["shutdown"])


def test_flush_runs_inline_when_no_thread_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """At interpreter shutdown new threads are refused: the flush runs on the caller's thread."""
    provider, exporter = _provider()
    lifecycle.install([provider], 2.0)
    _end(provider, 2)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert lifecycle.flush()
    assert len(exporter.get_finished_spans()) == 2


def test_debug_lifecycle_dumps_threads_when_the_budget_runs_out(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """FLOE_DEBUG_LIFECYCLE: a flush over budget says so and dumps every thread's stack."""
    stuck = _Stuck()
    monkeypatch.setenv("FLOE_DEBUG_LIFECYCLE", "1")
    lifecycle.install([stuck], 0.2)
    try:
        assert not lifecycle.flush()
    finally:
        stuck.release.set()
    err = capfd.readouterr().err
    assert "floe-otel debug: flush budget exceeded" in err
    assert "Thread" in err


def test_after_fork_in_child_resets_the_exit_state() -> None:
    """In a forked child the parent's exit flush state is forgotten: the child flushes at its own exit."""
    provider, _ = _provider()
    lifecycle.install([provider], 2.0)
    lifecycle.flush_and_shutdown()
    lifecycle._after_fork_in_child()
    assert lifecycle._done is False and lifecycle._final_finished is False and lifecycle._inflight is None


def test_multiprocessing_child_registers_its_own_exit_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked multiprocessing child (no atexit) gets a Finalize that flushes; the parent gets none."""
    import multiprocessing.util as mp_util

    before = dict(mp_util._finalizer_registry)
    lifecycle._mp_child_started(object())  # same pid as install: the parent
    assert dict(mp_util._finalizer_registry) == before
    monkeypatch.setattr(lifecycle, "_install_pid", -1)
    lifecycle._mp_child_started(object())
    added = [f for k, f in mp_util._finalizer_registry.items() if k not in before]
    assert [f._callback for f in added] == [lifecycle.flush_and_shutdown]
    for f in added:
        f.cancel()
