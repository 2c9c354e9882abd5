"""Interpreter helper processes that run no program code: never instrumented, and they pay nothing for it.

``opentelemetry-instrument`` (and the Operator's ``PYTHONPATH``) reach every Python process the program
starts, also ``multiprocessing``'s resource tracker (``python -c 'from multiprocessing.resource_tracker
import main;main(fd)'``), which dbt starts in every build and which only waits for the program to end.
Instrumented, it imported OpenTelemetry (~0.2 s of CPU, 0.57 G instructions, while dbt runs) and flushed
at exit after the program had exited, keeping the program's stdout open 35-50 ms longer
(benchmarks/RESULTS.md, session 20). It can never produce telemetry, so there is
nothing to lose: no ``floe-otel:`` line.

``floe_otel_distro-guard.pth`` calls :func:`apply` at interpreter start-up, before ``sitecustomize``, for
``-c`` processes only; the Operator image's start-up (``_isolation.start``) asks :func:`is_helper` before
upstream's ``initialize()``. Standard library only; never raises.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import MutableSequence, Sequence

#: ``python -c`` programs of the standard library that run no program code (their source starts so).
HELPER_PROGRAMS = ("from multiprocessing.resource_tracker import main",)
_OPTIONS_WITH_A_VALUE = frozenset({"-X", "-W", "--check-hash-based-pycs"})
AUTO_INSTRUMENTATION_DIR = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")


def is_helper(argv: Sequence[str] | None = None) -> bool:
    """True for a helper's command line (``sys.orig_argv``: ``python [options] -c <source>``)."""
    args = list(getattr(sys, "orig_argv", ()) if argv is None else argv)
    i = 1  # the interpreter's own options, up to -c (anything after its source is the program's sys.argv)
    while i < len(args):
        arg = args[i]
        if arg == "-c":
            return i + 1 < len(args) and args[i + 1].lstrip().startswith(HELPER_PROGRAMS)
        if arg in _OPTIONS_WITH_A_VALUE:
            i += 2
            continue
        if not arg.startswith("-") or arg == "-" or arg.startswith("-m"):  # a script, stdin or a module
            return False
        i += 1
    return False


def apply(path: MutableSequence[str] | None = None) -> bool:
    """In a helper: take upstream's ``sitecustomize`` directory off ``path``, so it is never imported."""
    with contextlib.suppress(Exception):
        if is_helper():
            target = sys.path if path is None else path
            target[:] = [p for p in target if not os.path.normpath(p or ".").endswith(AUTO_INSTRUMENTATION_DIR)]
            return True
    return False
