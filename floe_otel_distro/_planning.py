"""The steps of ``plan.build_plan``: files, identity, backend, exporters per signal, sampler, the rest, checks.

Each step reads the layered inputs and returns its part of the plan; problems go into one list. The
order matters only where a later step uses an earlier answer (the backend decides the default exports).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from floe_otel_distro import env as E
from floe_otel_distro.backends import ENTRY_POINT_GROUP, candidates
from floe_otel_distro.files import MAX_HEADERS_BYTES, FileProblem
from floe_otel_distro.plan import (
    _COMPILED_KEYS,
    _MANIFEST_KEYS,
    _RATIO_SAMPLERS,
    _REJECTED_MANIFEST_KEYS,
    _REJECTED_SPEC_KEYS,
    _SPEC_KEYS,
    _TELEMETRY,
    API_PROPAGATORS,
    DEFAULT_DETECTORS,
    DEFAULT_PROPAGATORS,
    DEGRADED,
    FATAL,
    HISTOGRAM_AGGREGATIONS,
    LOG_LEVELS,
    MODE_BACKEND,
    MODE_SAMPLING,
    MODES,
    PROTOCOLS,
    SAMPLERS,
    SDK_DETECTORS,
    TEMPORALITIES,
    WARNING,
    WELL_KNOWN_PORTS,
    BackendPlan,
    ExporterPlan,
    Inputs,
    Plan,
    Problem,
    SignalPlan,
    _dig,
    _Layers,
    _off,
)
from floe_otel_distro.redaction import redact_url


class _Ctx:
    """The state one build shares between its steps."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.env = E.Env(inputs.environ)
        self.layers = _Layers(self.env)
        self.problems: list[Problem] = []
        self.env_overrides: dict[str, str] = {}
        self.manifest_endpoint: tuple[str, str] | None = None  # (url, where)
        self.dev_console = False  # dev mode chose OTLP for an explicit destination: print the tree as well
        self.reported: set[str] = set()  # header variables already reported (parsed once per signal)
        self.otlp_wanted = False  # some signal asked for OTLP (even if it could not get it)

    def problem(self, severity: str, where: str, value: object, message: str) -> None:
        self.problems.append(Problem(severity, where, str(value) if value is not None else "", message))

    def collect(self) -> list[Problem]:
        found = [Problem(f.severity, f.where, f.value, f.message) for f in self.env.findings]
        self.env.findings.clear()
        self.problems.extend(found)
        # one line per cause: a variable shared by the three signals is reported once
        self.problems[:] = list(dict.fromkeys(self.problems))
        return self.problems


def build(inputs: Inputs) -> Plan:
    """See :func:`floe_otel_distro.plan.build_plan`."""
    ctx = _Ctx(inputs)
    env = ctx.env
    strict = env.flag(E.FLOE_OTEL_STRICT, env.raw(E.FLOE_OTEL_STRICT), False)
    if env.flag(E.OTEL_SDK_DISABLED, env.raw(E.OTEL_SDK_DISABLED), False):
        return _off("OTEL_SDK_DISABLED=true", strict, ctx.collect(), {})
    _read_files(ctx)
    layers = ctx.layers
    value, where = layers.get("enabled")
    if not env.flag(where, value, True):
        return _off(f"disabled by {where}", strict, ctx.collect(), layers.sources)

    value, where = layers.get("mode")
    mode = env.choice(where, value, MODES, "dev") or "dev"
    namespace = _text(layers.get("namespace")[0])
    product = _text(layers.get("product_name")[0])
    version = _text(layers.get("product_version")[0])
    compiled_service = _text(layers.get("service_name")[0])
    service = env.raw(E.OTEL_SERVICE_NAME) or product or compiled_service or "unknown_service"
    floe_attrs = {
        "floe.namespace": namespace or "default",
        "floe.product.name": product or service,
        "floe.product.version": version or "unknown",
        "floe.mode": mode,
    }
    resource: dict[str, str] = {
        "service.name": compiled_service or product or "unknown_service",
        "deployment.environment.name": mode,
        "deployment.environment": mode,
        **floe_attrs,
    }
    if version:
        resource["service.version"] = version

    explicit = _explicit_destination(ctx)
    backend = _backend(ctx, mode, explicit)
    if backend is None:
        return _off("no usable telemetry backend", strict, ctx.collect(), layers.sources)
    signals = {signal: _signal(ctx, signal, backend, explicit) for signal in E.SIGNALS}
    sampler, ratio = _sampler(ctx, mode)
    _checks(ctx, mode, backend, signals)

    value, where = layers.get("log_level")
    level = (env.choice(where, value, LOG_LEVELS, "info") or "info").upper()
    level = "WARNING" if level == "WARN" else level
    temporality = env.choice(
        E.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
        env.raw(E.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE),
        TEMPORALITIES,
        "cumulative",
    )
    histogram = _histogram_and_config_file(env)
    value, where = layers.get("bsp_max_queue_size")
    queue = env.number(where, value, 2048, int, 1, 1_000_000)
    value, batch_where = layers.get("bsp_max_export_batch_size")
    batch = env.number(batch_where, value, 512, int, 1, 1_000_000)
    if batch > queue:
        env.degrade(batch_where, batch, f"larger than the queue; using {min(512, queue)}")
        batch = min(512, queue)
    value, where = layers.get("bsp_schedule_delay_ms")
    delay = env.number(where, value, 5000, int, 1, 3_600_000, " ms")
    interval = env.number(
        E.OTEL_METRIC_EXPORT_INTERVAL, env.raw(E.OTEL_METRIC_EXPORT_INTERVAL), 60000, int, 100, 86_400_000, " ms"
    )
    shutdown = env.number(E.FLOE_SHUTDOWN_TIMEOUT, env.raw(E.FLOE_SHUTDOWN_TIMEOUT), 2.0, float, 0.1, 60, " s")

    propagators = _propagators(ctx)
    _carriers(ctx)
    detectors = _detectors(ctx)
    instrumentors = _instrumentors(ctx)
    log_export = _log_export(ctx, signals["logs"].on, instrumentors)
    problems = ctx.collect()
    any_on = any(s.on for s in signals.values())
    return Plan(
        active=any_on,
        off_reason=None if any_on else "every signal is off",
        strict=strict,
        mode=mode,
        backend=backend,
        signals=MappingProxyType(signals),
        sampler=sampler,
        sampler_ratio=ratio,
        floe_attributes=MappingProxyType(floe_attrs),
        resource=MappingProxyType(resource),
        resource_detectors=detectors,
        propagators=propagators,
        baggage=MappingProxyType(dict(floe_attrs)),
        instrumentors=MappingProxyType(instrumentors),
        log_level=level,
        metrics_temporality=temporality or "cumulative",
        bsp_max_queue_size=queue,
        bsp_max_export_batch_size=batch,
        bsp_schedule_delay_ms=delay,
        metric_export_interval_ms=interval,
        shutdown_timeout_s=shutdown,
        env_overrides=MappingProxyType(dict(ctx.env_overrides)),
        sources=MappingProxyType(dict(layers.sources)),
        problems=tuple(problems),
        log_export=log_export,
        metrics_histogram_aggregation=histogram,
    )


def _histogram_and_config_file(env: E.Env) -> str:
    """The default histogram aggregation (as the OTLP metric exporters read it); ``OTEL_CONFIG_FILE`` refused."""
    config_file = env.raw(E.OTEL_CONFIG_FILE)
    if config_file is not None:
        env.degrade(
            E.OTEL_CONFIG_FILE,
            config_file,
            "declarative configuration is not supported by floe-otel-distro; the file is not read (the OTEL_* "
            "and FLOE_* settings apply): unset it, or run upstream's configurator (OTEL_PYTHON_CONFIGURATOR="
            "configurator with opentelemetry-configuration) to use the file",
        )
    histogram = env.choice(
        E.OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
        env.raw(E.OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION),
        HISTOGRAM_AGGREGATIONS,
        "explicit_bucket_histogram",
    )
    return histogram or "explicit_bucket_histogram"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# --- files -----------------------------------------------------------------------------------------------------
def _validated(ctx: _Ctx, kind: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` checked against floe's schema (``schema.py``): each rejected field is one problem, and ignored."""
    try:
        from floe_otel_distro import schema
    except ImportError:  # pydantic v1 (or none) on the path: an application's own pins win over ours
        ctx.problem(
            DEGRADED,
            path,
            "",
            "reading floe's files needs pydantic >= 2.7, which this environment lacks (an application pinned to "
            "pydantic v1?); the file is ignored: use the environment variables instead",
        )
        return {}

    models: dict[str, type[schema.BaseModel]] = {
        "spec": schema.Spec,
        "manifest": schema.Manifest,
        "compiled": schema.Compiled,
    }
    model = models[kind]
    rejected = {"spec": _REJECTED_SPEC_KEYS, "manifest": _REJECTED_MANIFEST_KEYS}.get(kind, ())
    for key, variable in rejected:
        if _dig(doc, key) is not None:
            ctx.problem(
                WARNING,
                f"{path}: {'.'.join(key)}",
                "",
                f"floe's schema rejects this key (extra inputs are not permitted); not read: use {variable}",
            )
    backend = _dig(doc, ("plugins", "telemetry_backend"))
    if kind == "manifest" and isinstance(backend, str):
        ctx.problem(
            WARNING,
            f"{path}: plugins.telemetry_backend",
            backend,
            "a bare name is floe's quickstart form, not its schema's: write {type: " + backend + "}",
        )
    data, dropped = schema.validated(model, doc)
    for field, reason in dropped:
        ctx.problem(DEGRADED, f"{path}: {field}", "", f"{reason}; this key is ignored")
    return data


def _compiled_path(ctx: _Ctx) -> tuple[str | None, str]:
    """The compiled artifacts to read, if any: the variable, else floe's default output if it exists."""
    import os.path

    named = ctx.env.raw(E.FLOE_COMPILED_ARTIFACTS)
    if named is not None:
        return (None if named.lower() == "none" else named), E.FLOE_COMPILED_ARTIFACTS
    default = ctx.inputs.compiled_default
    if default and os.path.isfile(default):
        return default, f"{default} (floe platform compile's default output)"
    return None, "default"


def _read_files(ctx: _Ctx) -> None:  # noqa: PLR0912 - one branch per file and per way it can fail
    """Compiled artifacts, spec and manifest as layers; a file that cannot be used is skipped with one problem."""
    from floe_otel_distro import files

    load = ctx.inputs.load_yaml or files.load_yaml
    spec_path = ctx.env.raw(E.FLOE_SPEC)
    manifest_path = ctx.env.raw(E.FLOE_MANIFEST)
    manifest_where = E.FLOE_MANIFEST
    compiled_path, compiled_where = _compiled_path(ctx)
    compiled_doc: dict[str, Any] | None = None
    if compiled_path:
        try:
            compiled_doc = _validated(ctx, "compiled", compiled_path, files.load_json(compiled_path, compiled_where))
        except FileProblem as exc:
            ctx.problem(DEGRADED, exc.where, exc.path, f"{exc.message}; the compiled artifacts are ignored")
    spec_doc: dict[str, Any] | None = None
    if spec_path:
        try:
            spec_doc = _validated(ctx, "spec", spec_path, load(spec_path, E.FLOE_SPEC))
        except FileProblem as exc:
            ctx.problem(DEGRADED, exc.where, exc.path, f"{exc.message}; the spec is ignored")
    if spec_doc is not None and spec_path:
        ref = _dig(spec_doc, ("platform", "manifest"))
        if manifest_path is None and isinstance(ref, str) and ref.strip():
            manifest_where = f"{spec_path}: platform.manifest"
            if "://" in ref:
                ctx.problem(
                    WARNING,
                    manifest_where,
                    ref,
                    "a registry reference, not a file: the manifest is not read "
                    "(floe's compiled artifacts carry its telemetry; or set FLOE_MANIFEST to a local copy)",
                )
            else:
                import os.path

                manifest_path = os.path.normpath(os.path.join(os.path.dirname(spec_path), ref))
                ctx.layers.sources["manifest_path"] = f"spec:{spec_path} platform.manifest"
    manifest_doc: dict[str, Any] | None = None
    if manifest_path:
        try:
            manifest_doc = _validated(ctx, "manifest", manifest_path, load(manifest_path, manifest_where))
        except FileProblem as exc:
            ctx.problem(DEGRADED, exc.where, exc.path, f"{exc.message}; the manifest is ignored")
    # compiled artifacts (floe's resolved contract) > the spec (the product's own file) > the platform manifest
    if compiled_doc is not None and compiled_path:
        if _dig(compiled_doc, (*_TELEMETRY, "otlp_protocol")) == "http":
            compiled_doc["observability"]["telemetry"]["otlp_protocol"] = "http/protobuf"
        ctx.layers.add_file(compiled_doc, _COMPILED_KEYS, f"compiled:{compiled_path}")
        ctx.layers.sources["compiled_path"] = compiled_where
    if spec_doc is not None:
        ctx.layers.add_file(spec_doc, _SPEC_KEYS, f"spec:{spec_path}")
    if manifest_doc is not None:
        ctx.layers.add_file(manifest_doc, _MANIFEST_KEYS, f"manifest:{manifest_path}")
        endpoint = _dig(manifest_doc, ("observability", "tracing", "endpoint"))
        if isinstance(endpoint, str) and endpoint.strip():
            ctx.manifest_endpoint = (endpoint.strip(), f"manifest:{manifest_path} observability.tracing.endpoint")


# --- backend -----------------------------------------------------------------------------------------------------
def _explicit_destination(ctx: _Ctx) -> bool:
    """Whether the inputs name an OTLP destination (then OTLP is exported in every mode)."""
    env = ctx.env
    if env.first(E.OTEL_EXPORTER_OTLP_ENDPOINT, E.FLOE_OTLP_ENDPOINT)[1] or ctx.manifest_endpoint:
        return True
    if _text(ctx.layers.get("endpoint")[0]):  # the compiled artifacts' otlp_endpoint
        return True
    for signal in E.SIGNALS:
        if env.raw(E.signal_var("OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT", signal)):
            return True
        if "otlp" in (E.names(env.raw(f"OTEL_{signal.upper()}_EXPORTER")) or ()):
            return True
    return False


def _backend(ctx: _Ctx, mode: str, explicit: bool) -> BackendPlan | None:  # noqa: PLR0911, PLR0912, PLR0915 - one exit per refusal reason
    """The selected plugin, checked; None (with a fatal problem) when no usable backend exists."""
    from floe_otel_distro.plugin import FLOE_API_VERSION, TelemetryBackendPlugin

    value, where = ctx.layers.get("backend")
    if value is None:
        # floe's compiler writes its schema default "console" whatever the manifest selects: not a choice
        compiled, compiled_where = ctx.layers.get("compiled_backend")
        if isinstance(compiled, str) and compiled.strip().lower() not in ("", "console"):
            value, where = compiled, compiled_where
    if value is not None and not isinstance(value, str):
        ctx.problem(FATAL, where, type(value).__name__, "must be a backend name such as otlp, jaeger, console")
        return None
    name = (value or "").strip().lower() or MODE_BACKEND[mode]
    source = where if value else f"default for mode {mode}"
    if not value and name == "console" and explicit:
        name, source = "otlp", "an OTLP destination is set (the console tree is printed as well)"
        ctx.dev_console = True
    refs = ctx.inputs.entry_points(ENTRY_POINT_GROUP)
    found = candidates(refs, name)
    if not found:
        names = ", ".join(sorted({r.name for r in refs})) or "none"
        ctx.problem(
            FATAL, where if value else E.FLOE_TELEMETRY_BACKEND, name, f"unknown telemetry backend; installed: {names}"
        )
        return None
    pin = ctx.layers.get("backend_version")[0]
    if pin is not None and len(found) > 1:  # a version pin picks among same-named plugins
        pinned = [ref for ref in found if str(pin).strip() in (ref.dist_version, _plugin_version(ref))]
        found = pinned[:1] + [ref for ref in found if ref not in pinned[:1]]
    winner = found[0]
    shadows = tuple(f"{r.dist or '?'} {r.dist_version or ''}".strip() for r in found[1:])
    try:
        cls = winner.load()
    except Exception as exc:
        ctx.problem(FATAL, where, name, f"the plugin from {winner.dist} failed to import ({type(exc).__name__}: {exc})")
        return None
    if _is_floe_core_plugin(cls):
        return _floe_core_backend(ctx, cls, name, source, where, winner, shadows)
    if not (isinstance(cls, type) and issubclass(cls, TelemetryBackendPlugin)):
        ctx.problem(
            FATAL,
            where,
            name,
            f"{winner.value} is neither a floe_otel_distro.plugin nor a floe_core.plugins.telemetry "
            "TelemetryBackendPlugin",
        )
        return None
    if str(cls.floe_api_version).split(".")[0] != FLOE_API_VERSION.split(".")[0]:
        ctx.problem(
            FATAL, where, name, f"built for floe API {cls.floe_api_version}, this distro speaks {FLOE_API_VERSION}"
        )
        return None
    want, want_where = ctx.layers.get("backend_version")
    if want is not None and str(want).strip() != cls.version:
        ctx.problem(
            FATAL, want_where, want, f"installed {name!r} plugin is {cls.version}; pin that version or install it"
        )
        return None
    config_value, config_where = ctx.layers.get("backend_config")
    config: dict[str, Any] = {}
    if isinstance(config_value, dict):
        config = config_value
    elif config_value is not None:
        ctx.problem(DEGRADED, config_where, type(config_value).__name__, "must be a mapping; ignored")
    secret_ref = _text(ctx.layers.get("backend_secret_ref")[0])
    backend = BackendPlan(
        name=name,
        source=source,
        dist=winner.dist,
        dist_version=winner.dist_version,
        plugin_version=str(cls.version),
        floe_api_version=str(cls.floe_api_version),
        sdk_exporters=MappingProxyType(dict(cls.sdk_exporters)),
        shadows=shadows,
        config=MappingProxyType(config),
        secret_ref=secret_ref,
        load=winner.load,
    )
    if shadows:
        ctx.problem(WARNING, f"backend {name!r}", winner.dist or "", f"shadows {', '.join(shadows)} of the same name")
    from floe_otel_distro.plugin import PluginContext

    try:
        plugin = cls()
        plugin.configure(PluginContext(config=MappingProxyType(config), secret_ref=secret_ref, mode=mode))
        for found_problem in plugin.validate():
            severity = FATAL if found_problem.fatal else WARNING
            ctx.problem(severity, found_problem.where, "", found_problem.message)
            if found_problem.fatal:
                return None
    except Exception as exc:
        ctx.problem(FATAL, where, name, f"the plugin failed its checks ({type(exc).__name__}: {exc})")
        return None
    return backend


def _plugin_version(ref: Any) -> str | None:
    """A candidate plugin's own version (a class attribute, or floe-core's property); None if unreadable."""
    try:
        cls = ref.load()
        version = cls.version
        if isinstance(version, property):
            version = cls().version
        return str(version)
    except Exception:
        return None


def _is_floe_core_plugin(cls: Any) -> bool:
    """Whether ``cls`` subclasses floe-core's ``TelemetryBackendPlugin`` (checked without importing floe_core)."""
    return isinstance(cls, type) and any(
        base.__name__ == "TelemetryBackendPlugin" and base.__module__ == "floe_core.plugins.telemetry"
        for base in cls.__mro__
    )


_COLLECTOR_OTLP_TYPES = {"otlp": "grpc", "otlp_grpc": "grpc", "otlphttp": "http/protobuf", "otlp_http": "http/protobuf"}
_FLOE_PROTOCOLS = {"grpc": "grpc", "http": "http/protobuf", "http/protobuf": "http/protobuf"}


def floe_core_exports(config: Any) -> tuple[dict[str, str], str | None, str | None, bool | None]:
    """A floe-core plugin's ``get_otlp_exporter_config()`` as (sdk exports per signal, endpoint, protocol, insecure).

    Two forms: the one floe's released plugins return (``{"exporter_type": "otlp", "endpoint": ...,
    "protocol": "grpc", "insecure": true}`` or ``{"exporter_type": "console"}``) and the collector
    ``exporters:`` fragment floe's spec documents (``{"otlp/jaeger": {"endpoint": ..., "tls": {...}}}``).
    Raises ValueError for anything else.
    """
    if not isinstance(config, dict):
        msg = f"get_otlp_exporter_config() returned {type(config).__name__}, not a dict"
        raise ValueError(msg)
    otlp = dict.fromkeys(E.SIGNALS, "otlp")
    kind = config.get("exporter_type")
    if isinstance(kind, str):
        kind = kind.strip().lower()
        if kind == "console":
            return {"traces": "console", "metrics": "none", "logs": "none"}, None, None, None
        if kind == "none":
            return dict.fromkeys(E.SIGNALS, "none"), None, None, None
        if kind != "otlp":
            msg = f"exporter_type {kind!r} is not otlp, console or none"
            raise ValueError(msg)
        proto = _FLOE_PROTOCOLS.get(str(config.get("protocol", "")).strip().lower())
        insecure = config.get("insecure")
        endpoint = _text(config.get("endpoint"))
        return otlp, endpoint, proto, insecure if isinstance(insecure, bool) else None
    for key, entry in config.items():
        proto = _COLLECTOR_OTLP_TYPES.get(str(key).split("/", 1)[0])
        if proto and isinstance(entry, dict):
            tls = entry.get("tls")
            insecure = tls.get("insecure") if isinstance(tls, dict) else None
            return otlp, _text(entry.get("endpoint")), proto, insecure if isinstance(insecure, bool) else None
    if config and all(str(key).split("/", 1)[0] in ("debug", "logging") for key in config):
        return {"traces": "console", "metrics": "none", "logs": "none"}, None, None, None
    msg = "get_otlp_exporter_config() has neither exporter_type nor an otlp/otlphttp collector exporter"
    raise ValueError(msg)


def _floe_core_backend(  # noqa: PLR0917 - the pieces _backend already resolved
    ctx: _Ctx, cls: Any, name: str, source: str, where: str, winner: Any, shadows: tuple[str, ...]
) -> BackendPlan | None:
    """A floe-core plugin (e.g. floe-telemetry-jaeger), adapted: its exporter config decides the SDK's exports."""
    from floe_otel_distro.plugin import FLOE_API_VERSION

    try:
        plugin = cls()
        version, api = str(plugin.version), str(plugin.floe_api_version)
        exports, endpoint, protocol, insecure = floe_core_exports(plugin.get_otlp_exporter_config())
    except Exception as exc:
        ctx.problem(FATAL, where, name, f"the floe-core plugin failed ({type(exc).__name__}: {exc})")
        return None
    if api.split(".", maxsplit=1)[0] != FLOE_API_VERSION.split(".")[0]:
        ctx.problem(FATAL, where, name, f"built for floe API {api}, this distro speaks {FLOE_API_VERSION}")
        return None
    want, want_where = ctx.layers.get("backend_version")
    if want is not None and str(want).strip() not in (version, winner.dist_version):
        ctx.problem(FATAL, want_where, want, f"installed {name!r} plugin is {version}; pin that version or install it")
        return None
    if endpoint and "://" not in endpoint:
        endpoint = f"{'https' if insecure is False else 'http'}://{endpoint}"
    config_value = ctx.layers.get("backend_config")[0]
    if shadows:
        ctx.problem(WARNING, f"backend {name!r}", winner.dist or "", f"shadows {', '.join(shadows)} of the same name")
    return BackendPlan(
        name=name,
        source=source,
        dist=winner.dist,
        dist_version=winner.dist_version,
        plugin_version=version,
        floe_api_version=api,
        sdk_exporters=MappingProxyType(exports),
        shadows=shadows,
        api="floe-core",
        endpoint=endpoint,
        protocol=protocol,
        insecure=insecure,
        config=MappingProxyType(config_value if isinstance(config_value, dict) else {}),
        secret_ref=_text(ctx.layers.get("backend_secret_ref")[0]),
        load=winner.load,
    )


# --- exporters ----------------------------------------------------------------------------------------------------
def _signal(ctx: _Ctx, signal: str, backend: BackendPlan, explicit: bool) -> SignalPlan:  # noqa: PLR0912 - the spec's rules, in order
    env = ctx.env
    value, where = ctx.layers.get(f"{signal}_enabled")
    if not env.flag(where, value, True):
        return SignalPlan(signal, (), f"disabled by {where}", False)
    var = f"OTEL_{signal.upper()}_EXPORTER"
    asked = E.names(env.raw(var))
    if asked is not None:
        if asked == ("none",) or not asked:
            return SignalPlan(signal, (), f"{var}=none", False)
        kinds, requested = [k for k in asked if k != "none"], True
        if "none" in asked:
            env.degrade(var, env.raw(var), "'none' cannot be combined with exporters; ignored")
    else:
        default = backend.sdk_exporters.get(signal, "otlp")
        if signal == "traces":  # the manifest's observability.tracing.exporter (floe's otlp | console | none)
            chosen, chosen_where = ctx.layers.get("traces_exporter")
            if chosen == "none":
                return SignalPlan(signal, (), f"{chosen_where}=none", False)
            if chosen == "console" and not explicit:
                default = "console"
        kinds = [] if default == "none" else [default]
        if explicit and "otlp" not in kinds:
            kinds.insert(0, "otlp")
        if ctx.dev_console and signal == "traces":
            kinds.append("console")
        requested = bool(kinds)
        if not kinds:
            return SignalPlan(signal, (), f"the {backend.name} backend exports no {signal}", False)
    exporters: list[ExporterPlan] = []
    reasons: list[str] = []
    for kind in kinds:
        if kind == "otlp":
            ctx.otlp_wanted = True
            exporter, reason = _otlp(ctx, signal, backend)
        elif kind == "console":
            exporter, reason = ExporterPlan("console"), None
        else:
            exporter, reason = _named_exporter(ctx, signal, var, kind)
        if exporter is not None:
            exporters.append(exporter)
        elif reason:
            reasons.append(reason)
    if not exporters:
        reason = "; ".join(reasons) or "no exporter"
        return SignalPlan(signal, (), reason, requested)
    return SignalPlan(signal, tuple(exporters), None, requested)


def _named_exporter(ctx: _Ctx, signal: str, var: str, name: str) -> tuple[ExporterPlan | None, str | None]:
    group = f"opentelemetry_{signal}_exporter"
    if any(ref.name == name for ref in ctx.inputs.entry_points(group)):
        return ExporterPlan(name), None
    reason = f"{var}: no exporter {name!r} is installed"
    ctx.problem(DEGRADED, var, name, "no such exporter installed; use otlp, console or none (it is left out)")
    return None, reason


def _otlp(ctx: _Ctx, signal: str, backend: BackendPlan) -> tuple[ExporterPlan | None, str | None]:  # noqa: PLR0912 - the spec's rules, in order
    env = ctx.env
    per_signal = E.signal_var("OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT", signal)
    url, where = env.raw(per_signal), per_signal
    full = url is not None
    if url is None:
        value, where = ctx.layers.get("endpoint")
        url = _text(value)
    from_plugin = False
    if url is None and backend.endpoint:  # a floe-core plugin's own endpoint: weaker than every input
        url, where, from_plugin = backend.endpoint, f"backend {backend.name} get_otlp_exporter_config()", True
    from_file = not from_plugin and where not in (per_signal, E.OTEL_EXPORTER_OTLP_ENDPOINT, E.FLOE_OTLP_ENDPOINT)
    proto_var = E.signal_var("OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL", signal)
    proto, proto_where = env.first(proto_var, E.OTEL_EXPORTER_OTLP_PROTOCOL, E.FLOE_OTLP_PROTOCOL)
    if proto is None and url is not None and from_plugin:
        proto, proto_where = backend.protocol, where
    elif proto is None and (url is None or from_file):
        # a file's protocol belongs to that file's endpoint: an endpoint from the environment keeps the port rule
        value, proto_where = ctx.layers.get("protocol")
        proto = _text(value)
    protocol = env.choice(proto_where or "protocol", proto, PROTOCOLS, None) if proto else None
    port = _port_of(url) if url else None
    if protocol is None and port not in WELL_KNOWN_PORTS and backend.protocol and url is not None:
        # a floe-core plugin names its protocol for the endpoint it is given (floe-telemetry-jaeger: gRPC to
        # OTEL_EXPORTER_OTLP_ENDPOINT); a well-known port still decides first
        protocol, proto_where = backend.protocol, f"backend {backend.name} get_otlp_exporter_config() protocol"
    if protocol is None:
        protocol = WELL_KNOWN_PORTS.get(port or 0, "http/protobuf")
        proto_where = f"{where} (port {port})" if port in WELL_KNOWN_PORTS else "the default protocol"
    elif port in WELL_KNOWN_PORTS and WELL_KNOWN_PORTS[port] != protocol:
        ctx.problem(
            WARNING,
            proto_where or "protocol",
            protocol,
            f"port {port} is the collector's {WELL_KNOWN_PORTS[port]} port: nothing will arrive unless the "
            f"collector speaks {protocol} there (use port {4317 if protocol == 'grpc' else 4318})",
        )
    insecure_var = E.signal_var("OTEL_EXPORTER_OTLP_{SIGNAL}_INSECURE", signal)
    insecure_raw, insecure_where = env.first(insecure_var, E.OTEL_EXPORTER_OTLP_INSECURE)
    insecure = env.flag(insecure_where or E.OTEL_EXPORTER_OTLP_INSECURE, insecure_raw, False)
    if insecure_raw is None and from_plugin and backend.insecure:
        insecure = True
    if url is None:
        url, where = ("http://localhost:4317" if protocol == "grpc" else "http://localhost:4318"), "default"
    checked = _check_endpoint(ctx, url, where, protocol)
    if checked is None:
        return None, f"{where}: unusable endpoint"
    url = checked
    if protocol == "grpc":
        if not ctx.inputs.grpc_available():
            ctx.problem(
                DEGRADED,
                proto_where or "protocol",
                "grpc",
                "the OTLP/gRPC exporter is not installed; pip install 'floe-otel-distro[grpc]' "
                "or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf with the collector's 4318 port",
            )
            return None, "the OTLP/gRPC exporter is not installed"
        insecure = insecure or url.startswith("http://")
    elif not full:
        url = url.rstrip("/") + f"/v1/{signal}"
    timeout_var = E.signal_var("OTEL_EXPORTER_OTLP_{SIGNAL}_TIMEOUT", signal)
    timeout_raw, timeout_where = env.first(timeout_var, E.OTEL_EXPORTER_OTLP_TIMEOUT, E.FLOE_EXPORT_TIMEOUT)
    timeout = env.number(timeout_where or timeout_var, timeout_raw, 10.0, float, 0.001, 120, " s")
    headers = _headers(ctx, signal)
    client = _http_client(ctx, signal) if protocol == "http/protobuf" else None
    return (
        ExporterPlan("otlp", protocol, url, where, insecure, timeout, MappingProxyType(headers), client),
        None,
    )


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _http_client(ctx: _Ctx, signal: str) -> str:
    """The OTLP/HTTP exporter's transport for ``signal`` (``http_client_choice``), a bad value degraded."""
    env = ctx.env
    asked = env.choice(E.FLOE_OTEL_HTTP_CLIENT, env.raw(E.FLOE_OTEL_HTTP_CLIENT), ("stdlib", "requests"), "stdlib")
    return http_client_choice(ctx.inputs.environ, signal, asked or "stdlib", ctx.inputs.http_transport_available())


def http_client_choice(environ: Mapping[str, str], signal: str, asked: str, transport_available: bool) -> str:
    """``stdlib`` where the standard-library transport behaves like requests (``http_transport``), else
    ``requests (<why>)``: asked for, a proxy variable (requests applies it with NO_PROXY), a credential-provider
    session (upstream builds it on requests), or an exporter without the transport interface (before 1.45)."""
    if asked == "requests":
        return f"requests ({E.FLOE_OTEL_HTTP_CLIENT}=requests)"
    for name, value in environ.items():
        if name.lower() in _PROXY_VARIABLES and value.strip():
            return f"requests ({name} is set: requests applies it and NO_PROXY)"
    for name in (f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal.upper()}_CREDENTIAL_PROVIDER",
                 "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"):  # fmt: skip
        if (environ.get(name) or "").strip():
            return f"requests ({name}: a credential-provider session)"
    if not transport_available:
        return "requests (the installed OTLP/HTTP exporter predates 1.45's transport interface)"
    return "stdlib"


def _port_of(url: str) -> int | None:
    try:
        return urlsplit(url if "://" in url else f"//{url}").port
    except ValueError:
        return None


def _check_endpoint(ctx: _Ctx, url: str, where: str, protocol: str) -> str | None:
    """The endpoint, if usable; else one degraded problem and None (the signal cannot export)."""
    shown = redact_url(url)
    candidate = url if "://" in url else (f"http://{url}" if protocol == "grpc" else url)
    try:
        parts = urlsplit(candidate)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        ctx.problem(DEGRADED, where, shown, "not a valid URL; this signal is not exported")
        return None
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "not an http(s) URL; use e.g. http://otel-collector:4318"
    elif not parts.hostname:
        problem = "has no host; use e.g. http://otel-collector:4318"
    elif parts.query or parts.fragment:
        problem = "must not carry a query string or fragment (the signal path is appended to it)"
    else:
        try:
            port = parts.port
        except ValueError:
            port = -1
        if port is not None and not 1 <= port <= 65535:
            problem = "has an invalid port; use 1-65535"
    if problem:
        ctx.problem(DEGRADED, where, shown, f"{problem}; this signal is not exported")
        return None
    return candidate


def _headers(ctx: _Ctx, signal: str) -> dict[str, str]:
    """OTLP headers as the exporters parse them: the per-signal variable replaces the generic one."""
    env = ctx.env
    per_signal = E.signal_var("OTEL_EXPORTER_OTLP_{SIGNAL}_HEADERS", signal)
    text, where = env.first(per_signal, E.OTEL_EXPORTER_OTLP_HEADERS, E.FLOE_OTLP_HEADERS)
    out: dict[str, str] = {}
    if where != per_signal:
        out.update(_compiled_auth(ctx))
    path = env.raw(E.FLOE_OTLP_HEADERS_FILE)
    if path and where != per_signal:
        from floe_otel_distro import files

        read = ctx.inputs.read_text or files.read_text
        try:
            out.update(
                _parse_headers(ctx, read(path, E.FLOE_OTLP_HEADERS_FILE, MAX_HEADERS_BYTES), E.FLOE_OTLP_HEADERS_FILE)
            )
        except FileProblem as exc:
            ctx.problem(DEGRADED, exc.where, exc.path, f"{exc.message}; exporting without these headers")
    if text and where:
        out.update(_parse_headers(ctx, text, where))
    return out


MASKED = "**********"  # how pydantic writes a SecretStr into floe's compiled_artifacts.json


def _compiled_auth(ctx: _Ctx) -> dict[str, str]:
    """The compiled artifacts' ``authentication`` (floe's TelemetryAuth) as one OTLP header."""
    auth, where = ctx.layers.get("authentication")
    if not isinstance(auth, dict):
        return {}
    kind = auth.get("auth_type")
    secret = auth.get("api_key") if kind == "api_key" else auth.get("bearer_token")
    name = str(auth.get("header_name") or "Authorization").strip().lower()
    if not secret or secret == MASKED or not _token(name):
        if where not in ctx.reported:
            ctx.reported.add(where)
            ctx.problem(
                DEGRADED,
                where,
                "<redacted>",
                "the credential is missing or masked (floe writes secrets as **********); exporting without it: "
                "set OTEL_EXPORTER_OTLP_HEADERS or FLOE_OTLP_HEADERS_FILE",
            )
        return {}
    return {name: f"Bearer {secret}" if kind == "bearer" else str(secret)}


def _parse_headers(ctx: _Ctx, text: str, where: str) -> dict[str, str]:
    """``name=value`` pairs parsed exactly as the OTLP exporters parse them (``parse_env_headers``, liberal).

    Entries the exporters would reject are left out and never echoed (upstream's own warning, which shows
    the entry, is swallowed while we parse). An ``OTEL_*`` variable with such entries is rewritten for the
    exporters (``env_overrides``) to the entries that are kept, so they never re-parse and echo it either.
    The headers file (ours) may also separate entries by newlines.
    """
    import re

    from opentelemetry.util.re import parse_env_headers

    chunks = text.splitlines() if where == E.FLOE_OTLP_HEADERS_FILE else [text]
    entries = [entry for chunk in chunks for entry in re.split(r"[ \t]*,[ \t]*", chunk) if entry.strip()]
    out: dict[str, str] = {}
    bad = 0
    with _swallowed("opentelemetry.util.re"):
        for entry in entries:
            parsed = dict(parse_env_headers(entry, liberal=True))
            if not parsed or any(not _token(k) or any(c in v for c in "\r\n\x00") for k, v in parsed.items()):
                bad += 1
                continue
            out.update(parsed)
    if bad and where.startswith("OTEL_"):
        from urllib.parse import quote

        ctx.env_overrides[where] = ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in out.items())
    if bad and where not in ctx.reported:
        ctx.reported.add(where)
        ctx.problem(
            DEGRADED,
            where,
            "<redacted>",
            f"{bad} entr{'y' if bad == 1 else 'ies'} not of the form name=value with URL-encoded values "
            "(values not shown); left out",
        )
    return out


class _Swallow:
    """A logging filter dropping the records of the thread that installed it."""

    def __init__(self) -> None:
        import threading

        self.thread = threading.get_ident()

    def filter(self, record: object) -> bool:
        return getattr(record, "thread", None) != self.thread


class _swallowed:
    """Drop what ``logger`` logs from this thread inside the block (upstream warnings that echo secrets)."""

    def __init__(self, logger: str) -> None:
        import logging

        self.logger = logging.getLogger(logger)
        self.filter = _Swallow()

    def __enter__(self) -> None:
        self.logger.addFilter(self.filter)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeFilter(self.filter)


def _token(name: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)


# --- sampler, propagators, detectors, instrumentors ---------------------------------------------------------
def _sampler(ctx: _Ctx, mode: str) -> tuple[str, float | None]:
    env = ctx.env
    name = env.choice(E.OTEL_TRACES_SAMPLER, env.raw(E.OTEL_TRACES_SAMPLER), SAMPLERS, "parentbased_traceidratio")
    name = name or "parentbased_traceidratio"
    if name not in _RATIO_SAMPLERS:
        for ignored in (E.OTEL_TRACES_SAMPLER_ARG, E.FLOE_SAMPLING_RATIO):
            if (raw := env.raw(ignored)) is not None:
                env.warn(
                    ignored,
                    raw,
                    f"ignored: OTEL_TRACES_SAMPLER={name} takes no ratio; "
                    "set OTEL_TRACES_SAMPLER=parentbased_traceidratio to sample by ratio, or unset this",
                )
        return name, None
    value, where = ctx.layers.get("sampling_ratio")
    if value is None:  # floe's sampling map (compiled artifacts): the ratio for this mode
        table, table_where = ctx.layers.get("sampling_map")
        if isinstance(table, dict) and table.get(mode) is not None:
            value, where = table[mode], f"{table_where}.{mode}"
            ctx.layers.sources["sampling_ratio"] = where
    ratio = env.number(where, value, MODE_SAMPLING[mode], float, 0.0, 1.0)
    arg = env.raw(E.OTEL_TRACES_SAMPLER_ARG)
    if arg is not None:
        ratio = env.number(E.OTEL_TRACES_SAMPLER_ARG, arg, ratio, float, 0.0, 1.0)
        ctx.layers.sources["sampling_ratio"] = f"env:{E.OTEL_TRACES_SAMPLER_ARG}"
    elif (layout := _tiered_layout(ctx)) is not None:
        # docs/scale-out.md: the gateways' tail sampling decides (errors, pipeline runs, slow traces, the mode's
        # share of the rest), so head sampling keeps every span; only OTEL_TRACES_SAMPLER_ARG still wins
        ratio = 1.0
        ctx.layers.sources["sampling_ratio"] = layout
    return name, ratio


def _tiered_layout(ctx: _Ctx) -> str | None:
    """Where the tiered collector layout is selected (``FLOE_COLLECTOR_LAYOUT=tiered``, else the manifest's
    ``plugins.telemetry_backend.config.collector_layout: tiered``); None when it is not."""
    raw = ctx.env.raw(E.FLOE_COLLECTOR_LAYOUT)
    if raw is not None:
        return f"env:{E.FLOE_COLLECTOR_LAYOUT}" if raw.strip().lower() == "tiered" else None
    config, where = ctx.layers.get("backend_config")
    if isinstance(config, dict) and str(config.get("collector_layout", "")).strip().lower() == "tiered":
        return f"{where}.collector_layout"
    return None


def _propagators(ctx: _Ctx) -> tuple[str, ...]:
    requested = _requested_propagators(ctx) or ctx.env.raw(E.OTEL_PROPAGATORS)
    asked = E.names(requested)
    if asked is None:  # the API's own default (no entry-point scan)
        return DEFAULT_PROPAGATORS
    if asked == ("none",):
        return ()
    unknown = [n for n in asked if n not in API_PROPAGATORS]
    if unknown:
        installed = {ref.name for ref in ctx.inputs.entry_points("opentelemetry_propagator")}
        missing = [n for n in unknown if n not in installed]
        if missing:
            kept = tuple(n for n in asked if n not in missing and n != "none")
            ctx.env.degrade(
                E.OTEL_PROPAGATORS,
                requested,
                f"{', '.join(missing)} not installed (pip install opentelemetry-propagator-<name>); "
                f"using {','.join(kept) or 'none'}",
            )
            ctx.env_overrides[E.OTEL_PROPAGATORS] = ",".join(kept) or "none"
            return kept
    return tuple(n for n in asked if n != "none")


def _carriers(ctx: _Ctx) -> None:
    """Malformed context carriers (``TRACEPARENT``/``TRACESTATE``/``BAGGAGE``): one degraded problem each.

    Checked with the W3C propagators themselves (their per-entry warnings swallowed); only when a carrier is
    set. A malformed ``TRACEPARENT`` means this process starts a new trace: its caller's trace loses it.
    """
    env = ctx.env
    present = {name: env.raw(name) for name in ("TRACEPARENT", "TRACESTATE", "BAGGAGE") if env.raw(name)}
    if not present:
        return
    from opentelemetry import trace as api_trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {k.lower(): v for k, v in present.items() if v is not None}
    with (
        _swallowed("opentelemetry.trace.propagation.tracecontext"),
        _swallowed("opentelemetry.baggage.propagation"),
        _swallowed("opentelemetry.trace.span"),
        _swallowed("opentelemetry.baggage"),
    ):
        span_context = api_trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
        bag = W3CBaggagePropagator().extract(carrier) if "BAGGAGE" in present else None
    if "TRACEPARENT" in present and not span_context.is_valid:
        ctx.problem(
            DEGRADED,
            "TRACEPARENT",
            (present["TRACEPARENT"] or "")[:80],
            "malformed context carrier, ignored; this process starts a new trace",
        )
    if "TRACESTATE" in present and span_context.is_valid and not span_context.trace_state:
        ctx.problem(DEGRADED, "TRACESTATE", "", "malformed context carrier, ignored; the trace continues without it")
    if bag is not None:
        from opentelemetry import baggage as api_baggage

        members = [m for m in (present["BAGGAGE"] or "").split(",") if m.strip()]
        if len(api_baggage.get_all(bag)) < len(members):
            ctx.problem(DEGRADED, "BAGGAGE", "", "malformed members ignored (values not shown); the rest is kept")


def _requested_propagators(ctx: _Ctx) -> str | None:
    """What the user asked for, when the start-up guard (``_guard``) already dropped uninstalled names."""
    from floe_otel_distro._guard import REQUESTED, repaired

    original = ctx.env.raw(REQUESTED)
    if original is None:
        return None
    installed = frozenset(ref.name for ref in ctx.inputs.entry_points("opentelemetry_propagator"))
    return original if repaired(original, installed) == ctx.env.raw(E.OTEL_PROPAGATORS) else None


def _detectors(ctx: _Ctx) -> tuple[str, ...]:
    asked = E.names(ctx.env.raw(E.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS))
    if asked is None or asked == DEFAULT_DETECTORS:
        ctx.env_overrides[E.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS] = ",".join(DEFAULT_DETECTORS)
        return DEFAULT_DETECTORS
    ours = {"floe", "floe_process"}
    unknown = [n for n in asked if n not in SDK_DETECTORS and n not in ours]
    if unknown:
        installed = {ref.name for ref in ctx.inputs.entry_points("opentelemetry_resource_detector")}
        missing = [n for n in unknown if n not in installed]
        if missing:
            kept = tuple(n for n in asked if n not in missing)
            ctx.env.degrade(
                E.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
                ctx.env.raw(E.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS),
                f"no resource detector {', '.join(missing)} is installed; using {','.join(kept) or 'the defaults'}",
            )
            asked = kept
    if "floe" not in asked:
        asked = ("floe", *asked)  # floe's attributes are what this distro is for
    ctx.env_overrides[E.OTEL_EXPERIMENTAL_RESOURCE_DETECTORS] = ",".join(asked)
    return asked


def _instrumentors(ctx: _Ctx) -> dict[str, bool]:
    disabled = set(E.names(ctx.env.raw(E.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)) or ())
    refs = ctx.inputs.entry_points("opentelemetry_instrumentor")
    return {ref.name: ("*" not in disabled and ref.name not in disabled) for ref in refs}


LOGGING_INSTRUMENTATION = "opentelemetry-instrumentation-logging"


def _log_export(ctx: _Ctx, logs_on: bool, instrumentors: Mapping[str, bool]) -> str:
    """Who exports stdlib log records, so each is exported once: floe's handler, the logging instrumentation's, none.

    Upstream: the SDK's handler only with ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true`` (then the
    logging instrumentation skips its own); else the instrumentation's handler, if it is installed and
    ``OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION`` is not false. floe's handler stands for the SDK's and is on
    by default (floe exports logs out of the box); ``...ENABLED=false`` turns it off as upstream does.
    With the instrumentation active and neither variable set, floe's handler exports (it keeps the
    distro's guarantees: no self-export, the exit flush) and the instrumentation is told to add none.
    """
    if not logs_on:
        return "none"
    env = ctx.env
    sdk_raw = env.raw(E.OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED)
    sdk_handler = env.flag(E.OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED, sdk_raw, True)
    theirs_raw = env.raw(E.OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION)
    theirs_on = instrumentors.get("logging", False) and (theirs_raw is None or theirs_raw.lower() == "true")
    if sdk_raw is not None and sdk_handler:
        if theirs_on and sdk_raw.lower() != "true":  # the instrumentation skips its handler for "true" only
            ctx.env_overrides[E.OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION] = "false"
        return "floe"
    if not sdk_handler or (theirs_on and theirs_raw is not None):
        return LOGGING_INSTRUMENTATION if theirs_on else "none"
    if theirs_on:
        ctx.env_overrides[E.OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION] = "false"
    return "floe"


# --- cross checks -----------------------------------------------------------------------------------------------
def _host_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        port = parts.port
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port


def _checks(ctx: _Ctx, mode: str, backend: BackendPlan, signals: Mapping[str, SignalPlan]) -> None:
    """Collector bypass in prod, and an endpoint that no signal uses."""
    otlp = [(s, e) for s, p in signals.items() for e in p.exporters if e.kind == "otlp"]
    endpoint_set = ctx.env.first(E.OTEL_EXPORTER_OTLP_ENDPOINT, E.FLOE_OTLP_ENDPOINT)
    if endpoint_set[1] and not ctx.otlp_wanted:
        ctx.problem(
            WARNING, endpoint_set[1], redact_url(endpoint_set[0] or ""), "no signal exports OTLP, so this is unused"
        )
    if mode != "prod" or ctx.manifest_endpoint is None or backend.name == "console":
        return
    declared, declared_where = ctx.manifest_endpoint
    want_host, want_port = _host_port(declared)
    for signal, exporter in otlp:
        host, port = _host_port(exporter.endpoint or "")
        same_port = port == want_port or port is None or want_port is None or {port, want_port} <= {4317, 4318}
        if host == want_host and same_port:
            continue
        ctx.problem(
            WARNING,
            exporter.endpoint_source or "OTLP endpoint",
            redact_url(exporter.endpoint or ""),
            f"{signal} bypass the platform collector {redact_url(declared)} ({declared_where}) in prod; "
            "exporting there anyway (unset it to use the platform collector)",
        )
        return
