#!/bin/sh
# Builds one /autoinstrumentation tree of the operator image. The Dockerfile runs it in each build stage;
# tests/e2e/test_operator_image_e2e.py runs the very same script (PYTHON=<interpreter>) to build the tree
# it injects into simulated pods, so the image and the test cannot drift apart.
#   build-tree.sh <target> <distro source dir> <dir with the requirements files and sitecustomize.py>
set -eu
TARGET=$1
SRC=$2
HERE=$3
PY=${PYTHON:-python}
PIP="$PY -m pip install --no-cache-dir --disable-pip-version-check"
# 1. the dependency layer: appended after the application's site-packages at start-up (never shadows it)
$PIP --target "$TARGET/floe-deps" -r "$HERE/requirements-deps.txt"
# 2. the OpenTelemetry layer, then the floe distro: the top of the tree, which the operator's PYTHONPATH names
$PIP --no-deps --target "$TARGET" -r "$HERE/requirements.txt"
$PIP --no-deps --target "$TARGET" "$SRC"
# 3. floe's sitecustomize replaces upstream's (which only calls initialize()) in the directory the operator
#    puts first on PYTHONPATH
cp "$HERE/sitecustomize.py" "$TARGET/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py"
# 4. the Python minor this tree's compiled wheels were resolved for (checked at start-up)
$PY -c 'import sys; print("%d.%d" % sys.version_info[:2])' > "$TARGET/floe-python-version"
# console scripts carry the build interpreter's shebang and are not on the pod's PATH: doctor runs as
# `python -m floe_otel_distro.cli doctor` (docs/kubernetes.md)
rm -rf "$TARGET/bin" "$TARGET/floe-deps/bin"
