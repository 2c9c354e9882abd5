#!/usr/bin/env bash
# Run the whole test suite the way CI does: tox (lint + tests). Installs tox into .tox-venv if needed.
# The tests build the real OpenTelemetry Collector with the official builder (needs Go; cached).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .tox-venv/bin/tox ]]; then
  python3 -m venv .tox-venv
  .tox-venv/bin/pip install -q --upgrade pip "tox>=4"
fi
FLOE_TEST_COLLECTOR="$(bash collector/build.sh)"
export FLOE_TEST_COLLECTOR
exec .tox-venv/bin/tox "$@"
