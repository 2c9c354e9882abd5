"""floe-otel-distro: zero-code OpenTelemetry for floe (dbt, Dagster, any Python job).

Nothing here runs at import; the distro is activated by ``opentelemetry-instrument`` through the
``opentelemetry_distro`` / ``opentelemetry_configurator`` entry points named ``floe``.
"""

__version__ = "0.1.0"
