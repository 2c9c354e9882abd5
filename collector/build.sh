#!/usr/bin/env bash
# Build the test collector with the official OpenTelemetry Collector Builder (ocb).
# The binary is cached by the manifest's hash, so repeated runs (and CI on the same machine) are instant.
# Prints the path of the binary on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
builder_version="v0.159.0"
cache="${FLOE_COLLECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/floe-otel-distro/collector}"
hash="$(cat "$here/builder-config.yaml" "$0" | sha256sum | cut -c1-16)"
bin="$cache/$hash/otelcol-floe"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache/$hash"
export GOBIN="$cache/bin"
export GOFLAGS="${GOFLAGS:--mod=mod}"
if [[ ! -x "$GOBIN/builder-$builder_version" ]]; then
  echo "building ocb $builder_version" >&2
  go install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2
  mv "$GOBIN/builder" "$GOBIN/builder-$builder_version"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s#output_path: ./_build#output_path: $work/_build#" "$here/builder-config.yaml" > "$work/builder-config.yaml"
echo "building otelcol-floe into $cache/$hash (takes a few minutes the first time)" >&2
"$GOBIN/builder-$builder_version" --config "$work/builder-config.yaml" >&2
cp "$work/_build/otelcol-floe" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
