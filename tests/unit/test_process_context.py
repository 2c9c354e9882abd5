"""Child processes (subprocess, exec/spawn, posix_spawn, multiprocessing) carry the current trace context."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.spawn
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from floe_otel_distro.instrumentation import process_context
from floe_otel_distro.instrumentation.process_context import PREPARATION_DATA_KEY, ProcessContextInstrumentor

STALE = "00-11111111111111111111111111111111-2222222222222222-01"
PRINT_TP = "import os; print(os.environ.get('TRACEPARENT', '-'))"
WRITE_TP = "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('TRACEPARENT', '-'))"


@pytest.fixture
def tracer() -> trace.Tracer:
    return trace.get_tracer("test", tracer_provider=TracerProvider())


@pytest.fixture
def instrumented() -> Iterator[ProcessContextInstrumentor]:
    inst = ProcessContextInstrumentor()
    inst.instrument()
    yield inst
    inst.uninstrument()


def _tp(span: trace.Span) -> str:
    sc = span.get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"


def _current_tp() -> str:
    sc = trace.get_current_span().get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}" if sc.is_valid else "-"


def _report_current(queue: Any) -> None:
    """multiprocessing target: report the trace context current in the child."""
    queue.put(_current_tp())


def _run_print(**kwargs: Any) -> str:
    return subprocess.run([sys.executable, "-c", PRINT_TP], capture_output=True, text=True, check=True,
                          **kwargs).stdout.strip()


# ---- subprocess -------------------------------------------------------------------------------------
def test_subprocess_child_continues_the_current_span(instrumented: Any, tracer: trace.Tracer) -> None:
    """subprocess.run with env=None gives the child TRACEPARENT = the parent's current span; os.environ untouched."""
    before = dict(os.environ)
    with tracer.start_as_current_span("parent") as span:
        assert _run_print() == _tp(span)
    assert dict(os.environ) == before and "TRACEPARENT" not in os.environ


def test_explicit_env_is_copied_and_stale_carrier_replaced(instrumented: Any, tracer: trace.Tracer) -> None:
    """A given env (keyword, positional or bytes keys) is copied, its stale TRACEPARENT replaced, the rest kept."""
    env = {**os.environ, "TRACEPARENT": STALE, "MARK": "kept"}
    code = "import os; print(os.environ['TRACEPARENT'], os.environ['MARK'])"
    with tracer.start_as_current_span("parent") as span:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        positional = subprocess.Popen([sys.executable, "-c", code], -1, None, None, subprocess.PIPE, None, None,
                                      True, False, None, env)
        pos_out = positional.communicate()[0].decode()
        benv = {k.encode(): v.encode() for k, v in env.items()}
        bytes_run = subprocess.run([sys.executable, "-c", code], env=benv, capture_output=True, check=True)
        bytes_out = bytes_run.stdout.decode()
    assert out.split() == pos_out.split() == bytes_out.split() == [_tp(span), "kept"]
    assert env["TRACEPARENT"] == STALE
    assert benv[b"TRACEPARENT"] == STALE.encode()


def test_without_a_span_the_environment_passes_through(instrumented: Any) -> None:
    """No valid current span: nothing is injected and the caller's carriers travel on unchanged."""
    assert _run_print() == "-"
    assert _run_print(env={**os.environ, "TRACEPARENT": STALE}) == STALE


# ---- os.spawn* / posix_spawn* -----------------------------------------------------------------------
def _wait_and_read(pid: int, out: Path) -> str:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out.read_text()


@pytest.mark.parametrize("variant", ["posix_spawn", "posix_spawnp"])
def test_posix_spawn_child_continues_the_current_span(
    instrumented: Any, tracer: trace.Tracer, tmp_path: Path, variant: str
) -> None:
    """os.posix_spawn/posix_spawnp replace a stale TRACEPARENT in a copy of the given env."""
    out = tmp_path / "tp"
    env = {**os.environ, "TRACEPARENT": STALE}
    with tracer.start_as_current_span("parent") as span:
        pid = getattr(os, variant)(sys.executable, [sys.executable, "-c", WRITE_TP, str(out)], env)
    assert _wait_and_read(pid, out) == _tp(span)
    assert env["TRACEPARENT"] == STALE


@pytest.mark.parametrize("variant", ["spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp"])
def test_os_spawn_family_child_continues_the_current_span(
    instrumented: Any, tracer: trace.Tracer, tmp_path: Path, variant: str
) -> None:
    """Every os.spawn* variant (P_WAIT) starts the child with the current span in its environment."""
    out = tmp_path / "tp"
    argv = [sys.executable, "-c", WRITE_TP, str(out)]
    env = {**os.environ, "TRACEPARENT": STALE}
    with tracer.start_as_current_span("parent") as span:
        func = getattr(os, variant)
        if variant in ("spawnv", "spawnvp"):
            code = func(os.P_WAIT, sys.executable, argv)
        elif variant in ("spawnve", "spawnvpe"):
            code = func(os.P_WAIT, sys.executable, argv, env)
        elif variant == "spawnle":
            code = func(os.P_WAIT, sys.executable, *argv, env)
        else:
            code = func(os.P_WAIT, sys.executable, *argv)
    assert code == 0
    assert out.read_text() == _tp(span)


@pytest.mark.parametrize("variant", ["execv", "execve", "execl", "execle", "execlp", "execvp", "execvpe", "execlpe"])
def test_os_exec_family_child_continues_the_current_span(
    instrumented: Any, tracer: trace.Tracer, tmp_path: Path, variant: str
) -> None:
    """Every os.exec* variant (run in a forked child) replaces the process with the current span in its env."""
    out = tmp_path / "tp"
    argv = [sys.executable, "-c", WRITE_TP, str(out)]
    env = {**os.environ, "TRACEPARENT": STALE}
    with tracer.start_as_current_span("parent") as span:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            try:
                func = getattr(os, variant)
                if variant in ("execv", "execvp"):
                    func(sys.executable, argv)
                elif variant in ("execve", "execvpe"):
                    func(sys.executable, argv, env)
                elif variant in ("execle", "execlpe"):
                    func(sys.executable, *argv, env)
                else:
                    func(sys.executable, *argv)
            finally:
                os._exit(99)
    assert _wait_and_read(pid, out) == _tp(span)


# ---- multiprocessing --------------------------------------------------------------------------------
def test_preparation_data_carries_the_context_current_at_start(instrumented: Any, tracer: trace.Tracer) -> None:
    """The spawn/forkserver preparation data holds the current span's carrier, and nothing without a span."""
    assert PREPARATION_DATA_KEY not in multiprocessing.spawn.get_preparation_data("p")
    with tracer.start_as_current_span("parent") as span:
        data = multiprocessing.spawn.get_preparation_data("p")
    assert data[PREPARATION_DATA_KEY]["TRACEPARENT"] == _tp(span)


def test_prepare_attaches_the_carried_context(instrumented: Any, tracer: trace.Tracer) -> None:
    """attach_from_preparation_data makes the carried span current (what an instrumented child does in prepare)."""
    from opentelemetry import context

    with tracer.start_as_current_span("parent") as span:
        data = multiprocessing.spawn.get_preparation_data("p")
    before = context.get_current()
    try:
        assert _current_tp() == "-"
        assert process_context.attach_from_preparation_data(data)
        assert _current_tp() == _tp(span)
        assert not process_context.attach_from_preparation_data({})
    finally:
        context.attach(before)


@pytest.fixture
def instrumented_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """multiprocessing children instrument themselves through a test sitecustomize on PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from floe_otel_distro.instrumentation.process_context import ProcessContextInstrumentor\n"
        "ProcessContextInstrumentor().instrument()\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *sys.path]))
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    yield
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_instrumented_multiprocessing_child_runs_in_the_parents_context(
    instrumented: Any, instrumented_children: None, tracer: trace.Tracer, method: str
) -> None:
    """A spawn/forkserver child sees, before its target runs, the span current at Process.start() in the parent."""
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    with tracer.start_as_current_span("parent") as span:
        proc = ctx.Process(target=_report_current, args=(queue,))
        proc.start()
    seen = queue.get(timeout=60)
    proc.join(60)
    assert proc.exitcode == 0
    assert seen == _tp(span)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_uninstrumented_multiprocessing_child_ignores_the_carrier(
    instrumented: Any, tracer: trace.Tracer, method: str
) -> None:
    """A child without the distro ignores the carried data and runs normally (no context, exit 0)."""
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    with tracer.start_as_current_span("parent"):
        proc = ctx.Process(target=_report_current, args=(queue,))
        proc.start()
    assert queue.get(timeout=60) == "-"
    proc.join(60)
    assert proc.exitcode == 0


def test_pool_workers_do_not_inherit_the_starters_context(
    instrumented: Any, instrumented_children: None, tracer: trace.Tracer
) -> None:
    """Pool workers outlive the span that started them, so they are not given its context."""
    ctx = multiprocessing.get_context("spawn")
    with tracer.start_as_current_span("parent"), ctx.Pool(1) as pool:
        assert pool.apply(_current_tp) == "-"


# ---- uninstrument -----------------------------------------------------------------------------------
def test_uninstrument_restores_every_original(tracer: trace.Tracer) -> None:
    """uninstrument puts back the original callables, and children no longer get the span."""
    names = ["execv", "execve", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp"]
    before = {name: getattr(os, name) for name in names}
    targets = [
        (subprocess.Popen, "__init__"),
        (multiprocessing.spawn, "get_preparation_data"),
        (multiprocessing.spawn, "prepare"),
        (multiprocessing.process.BaseProcess, "start"),
    ]
    before_targets = [getattr(owner, attr) for owner, attr in targets]
    inst = ProcessContextInstrumentor()
    inst.instrument()
    assert all(getattr(os, name) is not before[name] for name in names)
    assert all(getattr(o, a) is not b for (o, a), b in zip(targets, before_targets, strict=True))
    inst.uninstrument()
    assert all(getattr(os, name) is before[name] for name in names)
    assert all(getattr(o, a) is b for (o, a), b in zip(targets, before_targets, strict=True))
    with tracer.start_as_current_span("parent"):
        assert _run_print() == "-"
        assert PREPARATION_DATA_KEY not in multiprocessing.spawn.get_preparation_data("p")
