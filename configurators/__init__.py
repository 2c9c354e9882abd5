"""floe's telemetry backend plugins, registered in the ``floe.telemetry_backends`` entry-point group."""
