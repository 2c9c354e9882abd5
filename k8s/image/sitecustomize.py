"""floe's sitecustomize for the OpenTelemetry Operator image (replaces upstream's ``initialize()`` one).

The operator puts this file's directory first on ``PYTHONPATH`` and the tree's root last. Before anything
is instrumented, ``floe_otel_distro._isolation.start`` checks the tree was built for this Python minor,
appends the tree's dependency layer (``floe-deps``) *after* the application's site-packages, and only then
runs upstream's ``initialize()``. It never raises into the program.
"""

from pathlib import Path

_TREE = Path(__file__).resolve().parents[3]  # <tree>/opentelemetry/instrumentation/auto_instrumentation

try:
    from floe_otel_distro._isolation import start
except Exception as exc:  # a broken tree must not stop the program
    import sys

    sys.stderr.write(f"floe-otel: the auto-instrumentation tree {_TREE} cannot be used ({exc}); "
                     "telemetry is off, the program runs without it\n")
else:
    start(str(_TREE))
