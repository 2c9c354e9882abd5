"""Start-up of the OpenTelemetry Operator image's tree: Python-minor check, dependency isolation, then upstream.

The operator injects ``PYTHONPATH=<tree>/opentelemetry/instrumentation/auto_instrumentation:…:<tree>``, so the
tree's top comes *before* the application's site-packages. The image (``k8s/image/build-tree.sh``) therefore
keeps only OpenTelemetry and the floe distro at the top and puts every other dependency (protobuf, requests,
urllib3, wrapt, pydantic, PyYAML, …) in ``<tree>/floe-deps``. ``start`` — called by the image's
``sitecustomize`` before anything is instrumented — does, in order:

1. **Python minor:** the tree records the minor it was built for (``<tree>/floe-python-version``); on another
   minor it prints one ``floe-otel:`` line naming both, takes the tree off ``sys.path`` and returns: the program
   runs uninstrumented, exactly as without the operator.
2. **Isolation:** appends ``floe-deps`` to the *end* of ``sys.path`` (site-packages are already there when
   ``sitecustomize`` runs), so the application's own copies win and the image's serve only what it lacks.
3. **Conflicts:** when the application has its own copy of one of those packages and it does not meet an
   OpenTelemetry package's requirement (say protobuf 4 under ``opentelemetry-proto``'s ``protobuf>=5``), one
   line names it and telemetry is off (the tree is taken off ``sys.path``); the application's copy is never
   replaced. The distro's own pydantic/PyYAML requirement is only for settings files and is reported by the
   plan when a file is given, so it never turns telemetry off here.
4. The ``OTEL_PROPAGATORS`` guard (``_guard``: ``.pth`` files are not processed from ``PYTHONPATH``), then
   upstream's ``initialize()``. Under ``python -m floe_otel_distro.cli`` (``floe-otel doctor`` in a pod) steps
   1 to 3 run but nothing is instrumented: the doctor sees the pod's paths and reports the plan.

A helper process that runs no program code (``_uninstrumented``: multiprocessing's resource tracker) is
left as without the operator before step 1: the tree is taken off ``sys.path``, nothing else happens.

Imports only the standard library until step 4 (``packaging`` only when the application has its own copies).
Never raises.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
from collections.abc import Iterator, MutableSequence, Sequence
from pathlib import Path

DEPS_DIR = "floe-deps"
VERSION_FILE = "floe-python-version"
OWN_DISTRIBUTION = "floe-otel-distro"
OFF = "telemetry is off, the program runs without it"
CLI_MODULE = "floe_otel_distro.cli"


def _line(message: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(f"floe-otel: {message}\n")
        sys.stderr.flush()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def running_minor() -> str:
    return "{}.{}".format(*sys.version_info[:2])


def built_minor(tree: str) -> str | None:
    """The Python minor the tree was built for, or None when it does not say."""
    try:
        return Path(tree, VERSION_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def minor_mismatch_line(built: str, running: str) -> str:
    return (
        f"the auto-instrumentation image was built for Python {built} but this program runs Python {running}; "
        f"{OFF} (use the image built with PYTHON_VERSION={running})"
    )


def is_doctor() -> bool:
    """True under ``python -m floe_otel_distro.cli …``: set the paths up, instrument nothing."""
    argv = list(getattr(sys, "orig_argv", ()))
    return any(a == "-m" and b == CLI_MODULE for a, b in itertools.pairwise(argv)) or f"-m{CLI_MODULE}" in argv


def _inside(path: str, tree: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), tree]) == tree
    except ValueError:
        return False


def detach(tree: str, path: MutableSequence[str]) -> None:
    """Take every entry of the tree (its top, sitecustomize's dir, ``floe-deps``) off ``path``."""
    path[:] = [p for p in path if not (p and _inside(p, tree))]


def isolate(tree: str, path: MutableSequence[str]) -> str:
    """Append the tree's dependency layer after everything already on ``path`` (site-packages included)."""
    deps = os.path.join(tree, DEPS_DIR)
    path[:] = [p for p in path if os.path.abspath(p or ".") != deps]
    if os.path.isdir(deps):
        path.append(deps)
    return deps


def _dists(directory: str) -> Iterator[tuple[str, str, Path]]:
    """(normalised name, version, metadata dir) of the distributions installed in ``directory``."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            stem, dot, kind = entry.name.rpartition(".")
            if dot and kind in ("dist-info", "egg-info"):
                name, _, version = stem.partition("-")
                yield _norm(name), version.split("-")[0] or "0", Path(entry.path)


def shadowed(tree: str, deps: str, path: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The application's own copies of dependency-layer packages, other versions than ours: name -> (version, where).

    One directory scan per ``path`` entry outside the tree (the first copy found wins, as for imports).
    """
    ours = {name: version for name, version, _ in _dists(deps)}
    out: dict[str, tuple[str, str]] = {}
    for entry in path:
        if not entry or _inside(entry, tree) or not os.path.isdir(entry):
            continue
        for name, version, _ in _dists(entry):
            if name in ours and name not in out:
                out[name] = (version, entry)
    # the very version the image pins meets every requirement: nothing to check (and no packaging import)
    return {name: found for name, found in out.items() if found[0] != ours[name]}


_REQUIRES = re.compile(r"^Requires-Dist:\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", re.M)


def conflicts(tree: str, theirs: dict[str, tuple[str, str]]) -> list[str]:
    """One message per OpenTelemetry requirement of the tree that the application's copy does not meet."""
    if not theirs:
        return []
    from packaging.requirements import Requirement

    wanted: dict[str, list[str]] = {}  # requirement text -> the tree's distributions that state it
    for owner, _, info in _dists(tree):
        if owner == _norm(OWN_DISTRIBUTION):
            continue
        try:
            metadata = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for match in _REQUIRES.finditer(metadata):
            if _norm(match.group(1)) in theirs:
                wanted.setdefault(match.group(1) + match.group(2).rstrip(), []).append(owner)
    found: list[str] = []
    for text, owners in wanted.items():  # each distinct requirement parsed once
        try:
            req = Requirement(text)
        except Exception:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = theirs[_norm(req.name)][0]
        if not req.specifier.contains(version, prereleases=True):
            found.extend(f"the application's {req.name} {version} does not meet {owner}'s {req}" for owner in owners)
    return sorted(set(found))


def start(tree: str, path: MutableSequence[str] | None = None) -> bool:
    """Steps 1 to 4 of the module docstring; True when upstream's ``initialize()`` ran. Never raises."""
    try:
        return _start(os.path.abspath(tree), sys.path if path is None else path)
    except Exception as exc:  # a start-up shim must never be what breaks the program
        _line(f"the auto-instrumentation start-up failed ({type(exc).__name__}: {exc}); {OFF}")
        return False


def _start(tree: str, path: MutableSequence[str]) -> bool:
    from floe_otel_distro._uninstrumented import is_helper

    if is_helper():  # multiprocessing's resource tracker: runs no program code, exactly as without the operator
        detach(tree, path)
        return False
    doctor = is_doctor()
    built, running = built_minor(tree), running_minor()
    if built is not None and built != running:
        _line(minor_mismatch_line(built, running))
        if not doctor:
            detach(tree, path)
        return False
    deps = isolate(tree, path)
    problems = conflicts(tree, shadowed(tree, deps, path))
    if problems:
        _line(f"{'; '.join(problems)} (the application's copy is kept); {OFF}")
        if not doctor:
            detach(tree, path)
        return False
    import floe_otel_distro._guard  # noqa: F401  (repairs OTEL_PROPAGATORS at import)

    if doctor:
        return False
    from opentelemetry.instrumentation.auto_instrumentation import initialize

    initialize()
    return True
