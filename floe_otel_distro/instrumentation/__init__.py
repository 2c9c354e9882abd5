"""floe's instrumentors: each is a ``BaseInstrumentor`` registered as an ``opentelemetry_instrumentor``.

They patch the way the contrib instrumentations do: ``wrapt.wrap_function_wrapper`` to wrap,
``opentelemetry.instrumentation.utils.unwrap`` in ``_uninstrument``. None imports its target library at
start-up; each registers a wrapt post-import hook (:mod:`floe_otel_distro.instrumentation._hooks`) and
wraps when the app imports it. Each can be turned off by its entry-point name in
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``: ``floe_process_context``, ``floe_log_correlation``,
``floe_logging``, ``floe_signals``, ``floe_dbt``, ``floe_dbt_secrets``, ``floe_dagster``.
"""
