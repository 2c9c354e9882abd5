"""floe's instrumentors: each is a ``BaseInstrumentor`` registered as an ``opentelemetry_instrumentor``.

Instrumentors never import their target library at start-up; they register an import hook
(:mod:`floe_otel_distro.instrumentation._import_hooks`) and patch when the app imports it.
"""
