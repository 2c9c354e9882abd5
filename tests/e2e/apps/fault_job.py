"""A job for the export-fault tests: ends N spans, sleeps, prints its own output and exits with status 3.

Usage: fault_job.py N SLEEP_S [DIR]
  with DIR: three phases of N spans ("work-1", "work-2", "work-3"); before phases 2 and 3 it prints
  "phase-2"/"phase-3" and waits for DIR/go-2 / DIR/go-3 (the test kills / restarts the collector), and
  sleeps SLEEP_S after each phase.
The exit status (3) and the stdout line "job done" are the program's own: the distro must not change them.
"""

import sys
import time
from pathlib import Path

from opentelemetry import trace

tracer = trace.get_tracer("fault_job")
n, sleep_s = int(sys.argv[1]), float(sys.argv[2])
workdir = Path(sys.argv[3]) if len(sys.argv) > 3 else None


def end_spans(name: str) -> None:
    for i in range(n):
        with tracer.start_as_current_span(name, attributes={"i": i}):
            pass


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


if workdir is None:
    end_spans("work")
    time.sleep(sleep_s)
else:
    for phase in (1, 2, 3):
        if phase > 1:
            print(f"phase-{phase}", flush=True)
            wait_for(workdir / f"go-{phase}")
        end_spans(f"work-{phase}")
        time.sleep(sleep_s)
print("job done", flush=True)
sys.exit(3)
