"""Helper processes that run no program code (``_uninstrumented``): recognised from the real command lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from floe_otel_distro import _uninstrumented

TRACKER = "from multiprocessing.resource_tracker import main;main(7)"  # multiprocessing.resource_tracker's own


@pytest.mark.parametrize(
    ("argv", "helper"),
    [
        (["/venv/bin/python", "-B", "-c", TRACKER], True),
        (["/venv/bin/python", "-X", "dev", "-B", "-c", TRACKER, "extra"], True),
        (["python", "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7)",
          "--multiprocessing-fork"], False),  # a spawned worker runs program code
        (["python", "-c", "from multiprocessing.forkserver import main; main(3, 4, ['__main__'])"], False),
        (["python", "-c", "print('from multiprocessing.resource_tracker import main')"], False),
        (["python", "job.py", "-c", TRACKER], False),  # the program's own argument, not the interpreter's -c
        (["python", "-c"], False),
        ([], False),
    ],
)
def test_is_helper(argv: list[str], helper: bool) -> None:
    assert _uninstrumented.is_helper(argv) is helper


def test_apply_takes_only_upstreams_sitecustomize_dir_off_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    auto = "/venv/lib/python3.11/site-packages/opentelemetry/instrumentation/auto_instrumentation"
    path = [auto, "/app", "/venv/lib/python3.11/site-packages"]
    monkeypatch.setattr(sys, "orig_argv", ["python", "-B", "-c", TRACKER], raising=False)
    assert _uninstrumented.apply(path) is True
    assert path == ["/app", "/venv/lib/python3.11/site-packages"]
    monkeypatch.setattr(sys, "orig_argv", ["python", "job.py"], raising=False)
    path = [auto, "/app"]
    assert _uninstrumented.apply(path) is False and path == [auto, "/app"]


def test_a_real_resource_tracker_started_by_multiprocessing_gets_no_opentelemetry() -> None:
    """The tracker multiprocessing really starts (its exact command line), under upstream's sitecustomize."""
    import os
    from pathlib import Path

    import opentelemetry.instrumentation.auto_instrumentation as auto

    program = (
        "import multiprocessing.resource_tracker as rt, multiprocessing.util as u, os, sys\n"
        "argv = []\n"
        "real = u.spawnv_passfds\n"
        "u.spawnv_passfds = lambda path, args, fds: (argv.extend(args), real(path, args, fds))[1]\n"
        "rt.ensure_running()\n"
        "print(argv[-1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(auto.__file__).parent), "OTEL_TRACES_EXPORTER": "none",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(_uninstrumented.HELPER_PROGRAMS)  # multiprocessing's command line today
    check = subprocess.run(
        [sys.executable, "-B", "-c", proc.stdout.strip().replace("main(", "print(sorted(m for m in sys.modules if "
                                                                "m.startswith('opentelemetry'))) or (", 1)
         .replace("import main;", "import main;import sys;", 1)],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "[]", check.stdout  # upstream's sitecustomize never ran in it
