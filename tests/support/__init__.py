"""Test support: the real OpenTelemetry Collector and helpers to run programs under the distro."""
