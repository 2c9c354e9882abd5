"""The floe_signals instrumentor: flush on SIGTERM/SIGINT/SIGHUP, then the program's own disposition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
import wrapt

from floe_otel_distro import lifecycle
from floe_otel_distro.instrumentation import signals
from floe_otel_distro.instrumentation.signals import HANDLED_SIGNALS, SignalsInstrumentor
from tests.support.providers import batching_provider, end_spans


@pytest.fixture(autouse=True)
def _restore_dispositions() -> Iterator[None]:
    """Every test leaves the dispositions as it found them (a SIG_IGN left here would reach e2e children)."""
    lifecycle.reset()
    saved = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    yield
    lifecycle.reset()
    for signum, handler in saved.items():
        if handler is not None:
            signal.signal(signum, handler)


@pytest.fixture
def instrumented() -> Iterator[SignalsInstrumentor]:
    inst = SignalsInstrumentor()
    inst.instrument()
    yield inst
    inst.uninstrument()


_provider = batching_provider
_end = end_spans


def _raw(signum: int) -> Any:
    """The disposition really installed (what signal.getsignal returns without our wrapper)."""
    return signal.getsignal.__wrapped__(signum)  # type: ignore[attr-defined]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_program_handler_installed_later_runs_after_our_flush(instrumented: Any, signum: signal.Signals) -> None:
    """A handler installed after us is recorded, reported by getsignal, and called after our flush."""
    provider, exporter = _provider()
    lifecycle.install([provider], 2.0)
    calls: list[int] = []

    def mine(signum: int, frame: Any) -> None:
        calls.append(len(exporter.get_finished_spans()))

    assert signal.signal(signum, mine) is not signals._on_signal  # the program's previous handler
    assert signal.getsignal(signum) is mine
    assert _raw(signum) is signals._on_signal
    _end(provider, 3)
    os.kill(os.getpid(), signum)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [3]  # the spans were flushed before the program's handler ran


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_ignored_signal_stays_ignored(instrumented: Any, signum: signal.Signals) -> None:
    """SIG_IGN set by the program is really installed (we step aside); bad handlers still raise TypeError."""
    signal.signal(signum, signal.SIG_IGN)
    assert _raw(signum) == signal.SIG_IGN
    assert signal.getsignal(signum) == signal.SIG_IGN
    with pytest.raises(TypeError):
        signal.signal(signum, "not a handler")


def test_uninstrument_restores_the_program_handlers() -> None:
    """uninstrument puts the program's handlers back and unwraps signal.signal / signal.getsignal."""
    originals = (signal.signal, signal.getsignal)
    inst = SignalsInstrumentor()
    inst.instrument()
    assert isinstance(signal.signal, wrapt.BaseObjectProxy) and isinstance(signal.getsignal, wrapt.BaseObjectProxy)

    def mine(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGINT, mine)
    signal.signal(signal.SIGHUP, mine)
    inst.uninstrument()
    assert (signal.signal, signal.getsignal) == originals
    assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGHUP) is mine
    assert all(signal.getsignal(s) is not signals._on_signal for s in HANDLED_SIGNALS)


def test_not_installed_outside_the_main_thread() -> None:
    """instrument() from another thread leaves signal.signal and the dispositions alone."""
    inst = SignalsInstrumentor()
    before = {s: signal.getsignal(s) for s in HANDLED_SIGNALS}
    worker = threading.Thread(target=inst.instrument)
    worker.start()
    worker.join()
    try:
        assert not isinstance(signal.signal, wrapt.BaseObjectProxy)
        assert {s: signal.getsignal(s) for s in HANDLED_SIGNALS} == before
    finally:
        inst.uninstrument()


def test_entry_point_name_is_floe_signals() -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=floe_signals names this instrumentor's entry point."""
    (entry_point,) = entry_points(group="opentelemetry_instrumentor", name="floe_signals")
    assert entry_point.load() is SignalsInstrumentor


# A program that records 3 spans, then gets a signal; the exporter writes unbuffered to a file, so what
# was exported before the process died is on disk whatever the way it ended.
_CHILD = """
import os, signal, sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from floe_otel_distro import lifecycle
from floe_otel_distro.instrumentation.signals import SignalsInstrumentor

class FileExporter(SpanExporter):
    def export(self, spans):
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, b"x" * len(spans))
        os.close(fd)
        return SpanExportResult.SUCCESS

signum = getattr(signal, sys.argv[2])
if sys.argv[3] == "ignored":
    signal.signal(signum, signal.SIG_IGN)  # e.g. SIGHUP under nohup
else:  # the default disposition, whatever this test run inherited (a suite started under nohup ignores SIGHUP)
    signal.signal(signum, signal.SIG_DFL)
provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(BatchSpanProcessor(FileExporter(), schedule_delay_millis=60_000))
lifecycle.install([provider], 2.0)
SignalsInstrumentor().instrument()
for i in range(3):
    provider.get_tracer("t").start_span(f"s{i}").end()
os.kill(os.getpid(), signum)
time.sleep(0.2)
print("alive", signal.getsignal(signum) == signal.SIG_IGN)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_default_disposition_flushes_then_dies_of_the_signal(tmp_path: Any, name: str) -> None:
    """With the default disposition the process flushes everything, then dies of the signal as without us."""
    out = tmp_path / "exported"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), name, "default"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == -getattr(signal, name), proc.stderr
    assert out.read_text() == "xxx"
    assert "alive" not in proc.stdout


def test_ignored_sighup_keeps_the_process_alive(tmp_path: Any) -> None:
    """A SIGHUP the program ignores (nohup) is still ignored: no flush, no death."""
    out = tmp_path / "exported"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), "SIGHUP", "ignored"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["alive", "True"]


# A parent that forks while an exporter thread holds a lock and a span is queued; in the child SIGTERM lands
# while the fork hooks still run (multiprocessing's Pool.terminate() reaching a worker still starting up:
# the SDK's resource re-detection is slow under load). The hook registered first plays that slow hook.
_FORKED_WHILE_STARTING = """
import json, os, signal, sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from floe_otel_distro import delivery, exporters, lifecycle
from floe_otel_distro.instrumentation.signals import SignalsInstrumentor

class FileExporter(SpanExporter):
    def export(self, spans):
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()} {len(spans)}\\n".encode())
        os.close(fd)
        return SpanExportResult.SUCCESS

def slow_hook_hit_by_sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)  # the handler runs here, before the SDK's and our after-fork hooks

os.register_at_fork(after_in_child=slow_hook_hit_by_sigterm)
provider = TracerProvider(shutdown_on_exit=False)
exporter = exporters.LazySpanExporter("traces", "http://127.0.0.1:4318", FileExporter)
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
lifecycle.install([provider], 2.0)
SignalsInstrumentor().instrument()
provider.get_tracer("t").start_span("parent").end()  # queued in the parent at fork time
held, release = threading.Event(), threading.Event()
def exporting():  # a thread in the middle of a delivery update when the main thread forks
    with delivery._lock:
        held.set()
        release.wait()
threading.Thread(target=exporting, daemon=True).start()
held.wait()
started = time.monotonic()
pid = os.fork()
if pid == 0:
    os._exit(0)  # not reached when the child dies of the signal
release.set()
status = None
while time.monotonic() - started < 10:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.02)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
elapsed = time.monotonic() - started
provider.force_flush()
print(json.dumps({"child": pid, "parent": os.getpid(), "signalled": os.WIFSIGNALED(status) and os.WTERMSIG(status),
                  "elapsed": elapsed}))
"""


def test_sigterm_in_a_child_still_in_its_fork_hooks_dies_at_once_without_exporting(tmp_path: Any) -> None:
    """SIGTERM before the child's fork hooks finished: no flush of the parent's queue, no wait on inherited locks.

    Found in CI: ``with Pool(4)`` (terminate) hung for ever when a worker was still in the SDK's after-fork
    hook: our handler flushed there, on locks held in the parent at fork time.
    """
    out = tmp_path / "exported"
    proc = subprocess.run([sys.executable, "-c", _FORKED_WHILE_STARTING, str(out)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["signalled"] == signal.SIGTERM, got  # died of the signal, as without us (not killed by the parent)
    assert got["elapsed"] < 1.5, got  # not the 2 s exit budget, and no hang
    assert out.read_text().splitlines() == [f"{got['parent']} 1"]  # the parent's span, once, from the parent


_SIGNALLED_BEFORE_THE_CHILD_RAN = """
import json, os, signal, sys, time
from opentelemetry.sdk.trace import TracerProvider
from floe_otel_distro import lifecycle
from floe_otel_distro.instrumentation.signals import SignalsInstrumentor

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one CPU: the parent runs on, the child waits its turn
provider = TracerProvider(shutdown_on_exit=False)
lifecycle.install([provider], 2.0)
SignalsInstrumentor().instrument()
codes = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        time.sleep(2)
        os._exit(0)  # only if the signal was lost
    os.kill(pid, signal.SIGTERM)  # before the child ran a single instruction of its own
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


def test_sigterm_that_reaches_a_child_before_it_ran_kills_it_as_without_us() -> None:
    """CPython drops the signals a child caught before its after-fork code ran; blocked across fork, none is lost.

    Found in CI: ``with Pool(4)`` hung (7 of 100 runs under load) when ``terminate()`` signalled a worker that had
    not run yet: with our handler installed the SIGTERM was lost, and the worker waited for a task for ever.
    """
    proc = subprocess.run([sys.executable, "-c", _SIGNALLED_BEFORE_THE_CHILD_RAN, "20"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [-signal.SIGTERM] * 20  # each died of the signal, none slept on


_CAUGHT_WHILE_THE_MAIN_THREAD_BLOCKS = """
import json, os, signal, sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
from floe_otel_distro import lifecycle
from floe_otel_distro.instrumentation.signals import SignalsInstrumentor

if sys.argv[1] == "program-wakeup-fd":  # the program's own wakeup fd: ours is not installed, the program's stays
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
lifecycle.install([TracerProvider(shutdown_on_exit=False)], 2.0)
SignalsInstrumentor().instrument()
if sys.argv[1] == "program-wakeup-fd":
    print(json.dumps({"kept": signal.set_wakeup_fd(w) == w,
                      "watchers": [t.name for t in threading.enumerate() if t.name == "floe-otel-signals"]}))
    sys.exit(0)

def caught_here():  # CPython's C handler runs on this thread: the main thread's wait is not interrupted
    time.sleep(0.2)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    time.sleep(30)

threading.Thread(target=caught_here, daemon=True).start()
lock = threading.Lock()
lock.acquire()
lock.acquire()  # for ever, unless the main thread is interrupted
"""


def test_default_sigterm_caught_while_the_main_thread_blocks_in_c_still_ends_the_process() -> None:
    """Our handler must run on the main thread; the watcher nudges it there, so SIGTERM kills as without us.

    The state CI reached (``Pool.terminate()``, 8 of 100 runs under load): the signal caught by CPython, its
    Python handler pending, the main thread blocked in a lock's wait that nothing interrupts.
    """
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CAUGHT_WHILE_THE_MAIN_THREAD_BLOCKS, "blocked"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == -signal.SIGTERM, proc.stderr  # died of the signal (before: waited for ever)
    assert time.monotonic() - started < 10


def test_a_program_wakeup_fd_is_left_alone_and_then_no_watcher_runs() -> None:
    proc = subprocess.run([sys.executable, "-c", _CAUGHT_WHILE_THE_MAIN_THREAD_BLOCKS, "program-wakeup-fd"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"kept": True, "watchers": []}


def test_ignored_signal_stays_ignored_and_our_handler_is_a_no_op_for_it(instrumented: Any) -> None:
    """signal.signal(SIGHUP, SIG_IGN) after us: the real disposition is SIG_IGN; getsignal reports it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    assert _raw(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    # our handler, reached for an ignored signal (a race with the program), does nothing
    signals._state.program_handlers[signal.SIGHUP] = signal.SIG_IGN
    signals._on_signal(signal.SIGHUP, None)


def test_bad_arguments_raise_as_signal_signal_does(instrumented: Any) -> None:
    """Wrong arguments reach the real function (its own TypeError); a bad handler raises the stdlib's error."""
    with pytest.raises(TypeError):
        signal.signal(signal.SIGTERM)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="signal handler must be"):
        signal.signal(signal.SIGTERM, 42)  # type: ignore[arg-type]


def test_unhandled_signals_and_other_threads_pass_straight_through(instrumented: Any) -> None:
    """SIGUSR1 is not ours; from a non-main thread nothing is recorded (signal.signal raises there)."""

    def usr1(signum: int, frame: Any) -> None:
        return None

    previous = signal.signal(signal.SIGUSR1, usr1)
    try:
        assert _raw(signal.SIGUSR1) is usr1
    finally:
        signal.signal(signal.SIGUSR1, previous)
    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError as exc:  # the stdlib's own "only in main thread" error
            errors.append(exc)

    worker = threading.Thread(target=from_thread)
    worker.start()
    worker.join()
    assert len(errors) == 1
    assert _raw(signal.SIGTERM) is signals._on_signal


def test_instrument_off_the_main_thread_installs_nothing() -> None:
    """Signal handlers can only be set from the main thread: instrumenting elsewhere is a no-op."""
    inst = SignalsInstrumentor()
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(inst.instrument()))
    worker.start()
    worker.join()
    assert signal.signal.__class__.__name__ != "FunctionWrapper"
    inst.uninstrument()


def test_nested_signal_does_not_flush_twice(instrumented: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal arriving while our handler runs (same pid) skips the flush and goes straight on."""
    flushes: list[str] = []
    monkeypatch.setattr(lifecycle, "flush", lambda *a, **k: flushes.append("flush") or True)
    calls: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: calls.append(s))
    signals._state.handling_pid = os.getpid()
    try:
        signals._on_signal(signal.SIGTERM, None)
    finally:
        signals._state.handling_pid = None
    assert (flushes, calls) == ([], [signal.SIGTERM])


def test_default_disposition_finishes_the_exit_flush_then_dies_of_the_signal(
    instrumented: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No program handler: the exit flush completes, the default disposition is restored, the signal re-sent."""
    provider, exporter = _provider()
    lifecycle.install([provider], 2.0)
    _end(provider, 3)
    sent: list[tuple[int, int]] = []
    restored: list[tuple[int, Any]] = []
    monkeypatch.setattr(signals.os, "kill", lambda pid, signum: sent.append((pid, signum)))
    monkeypatch.setattr(signals, "_set_disposition", lambda signum, handler: restored.append((signum, handler)))
    signals._state.program_handlers[signal.SIGTERM] = signal.SIG_DFL
    signals._on_signal(signal.SIGTERM, None)
    assert len(exporter.get_finished_spans()) == 3
    assert restored == [(signal.SIGTERM, signal.SIG_DFL)]
    assert sent == [(os.getpid(), signal.SIGTERM)]


def test_take_over_keeps_ignored_signals_and_is_idempotent() -> None:
    """A signal ignored before we load stays ignored; instrumenting again changes nothing."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    inst = SignalsInstrumentor()
    try:
        inst.instrument()
        assert _raw(signal.SIGHUP) is signal.SIG_IGN
        assert _raw(signal.SIGTERM) is signals._on_signal
        signals._take_over()  # already ours: left alone
        assert _raw(signal.SIGTERM) is signals._on_signal
    finally:
        inst.uninstrument()
        signal.signal(signal.SIGHUP, previous)
