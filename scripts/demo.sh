#!/usr/bin/env bash
# The main job on the embedded default: `dbt build` on the shipped demo project under
# opentelemetry-instrument, dev mode, console trace tree on stderr. No collector needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/opentelemetry-instrument ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e . "dbt-core~=1.11.0" "dbt-duckdb~=1.11.0"
fi
work="$(mktemp -d)"
cp -r tests/projects/jaffle/. "$work/"
cd "$work"
export OTEL_PYTHON_DISTRO=floe OTEL_PYTHON_CONFIGURATOR=floe FLOE_MODE=dev
export FLOE_PRODUCT_NAME=jaffle FLOE_PRODUCT_VERSION=1.0.0 FLOE_NAMESPACE=demo
status=0
"$OLDPWD/.venv/bin/opentelemetry-instrument" "$OLDPWD/.venv/bin/dbt" build --profiles-dir . "$@" || status=$?
echo "demo: dbt exited $status (the demo project ships one failing test on purpose: see the ERROR node" \
     "and the skipped model in the trace tree above); project copy in $work" >&2
