"""A batch job for the lifecycle tests: ends N spans, then exits, sleeps, or walks through phases.

Usage: lifecycle_job.py N MODE [DIR]
  exit     end N spans and exit 0
  sleep    end N spans, print "ready", sleep (the test sends SIGTERM)
  handler  install its own SIGTERM handler (after the distro loaded), end N spans, print "ready", sleep;
           the handler writes DIR/handled and exits 0
  phases   N spans per phase, three phases; before phases 2 and 3 it prints "phase-2"/"phase-3" and waits
           for DIR/go-2 / DIR/go-3 (the test stops / restarts the collector in between)
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

from opentelemetry import trace

tracer = trace.get_tracer("lifecycle_job")
n, mode = int(sys.argv[1]), sys.argv[2]
workdir = Path(sys.argv[3]) if len(sys.argv) > 3 else None


def end_spans(phase: int) -> None:
    for i in range(n):
        with tracer.start_as_current_span(f"work-{phase}", attributes={"i": i, "phase": phase}):
            pass


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


if mode == "handler":
    def on_term(signum: int, frame: object) -> None:
        assert workdir is not None
        (workdir / "handled").write_text(str(signum))
        sys.exit(0)

    previous = signal.signal(signal.SIGTERM, on_term)
    print(json.dumps({"previous": str(previous), "getsignal_is_ours": signal.getsignal(signal.SIGTERM) is on_term}))

if mode == "phases":
    assert workdir is not None
    for phase in (1, 2, 3):
        if phase > 1:
            print(f"phase-{phase}", flush=True)
            wait_for(workdir / f"go-{phase}")
        end_spans(phase)
        time.sleep(0.5)
    sys.exit(0)

end_spans(1)
if mode in ("sleep", "handler"):
    print("ready", os.getpid(), flush=True)
    for _ in range(600):
        time.sleep(0.1)
