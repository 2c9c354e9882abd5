"""Console backend: the picture of a trace (golden files), when it is printed, quiet mode, colour, leftovers.

Golden files live in ``tests/data/console/``; regenerate one after a deliberate change with
``FLOE_UPDATE_GOLDEN=1 pytest tests/unit/test_console.py`` and review the diff.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from configurators.console import ConsoleTreeExporter, human_duration, quiet, render_tree, wants_color

T0 = 1_700_000_000_000_000_000  # ns
MS = 1_000_000
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "console"
TRACE_ID = 0x5827DD3B468B3D2A314478A53217077D


def child_of(parent: trace.Span) -> Context:
    return trace.set_span_in_context(parent)


def spans_of(build: Callable[[trace.Tracer], None], resource: dict[str, str] | None = None) -> list[ReadableSpan]:
    """Run ``build`` against a tracer with a fixed trace id; return the finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource(resource or {"service.name": "jaffle", "floe.mode": "dev"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    remote = SpanContext(TRACE_ID, 0x1, True, TraceFlags(1))
    tracer = provider.get_tracer("test")
    with trace.use_span(NonRecordingSpan(remote)):
        build(tracer)
    return list(memory.get_finished_spans())


def dbt_build(tracer: trace.Tracer) -> None:
    """A dbt build: 3 seeds in parallel, models after them, a failing test, a skipped model, a long name."""
    root = tracer.start_span("dbt build", start_time=T0, attributes={"dbt.command": "build"})
    ctx = child_of(root)
    for i, name in enumerate(("raw_customers", "raw_orders", "raw_payments")):
        tracer.start_span(
            f"dbt.node.seed {name}",
            context=ctx,
            start_time=T0 + 100 * MS + i * MS,
            attributes={"dbt.node.status": "success", "dbt.node.rows_affected": 6 + i},
        ).end(end_time=T0 + 400 * MS + i * 10 * MS)
    tracer.start_span(
        "dbt.node.model stg_orders", context=ctx, start_time=T0 + 420 * MS, attributes={"dbt.node.status": "success"}
    ).end(end_time=T0 + 900 * MS)
    slow = tracer.start_span(
        "dbt.node.model orders_enriched_with_customers_and_payments_for_finance",
        context=ctx,
        start_time=T0 + 905 * MS,
        attributes={"dbt.node.status": "success"},
    )
    slow.end(end_time=T0 + 2_400 * MS)
    failing = tracer.start_span(
        "dbt.node.test assert_order_amounts_positive",
        context=ctx,
        start_time=T0 + 910 * MS,
        attributes={"dbt.node.failures": 1},
    )
    failing.set_status(
        Status(
            StatusCode.ERROR,
            "Got 1 result, configured to fail if != 0\n  in test assert_order"
            "_amounts_positive (tests/assert_order_amounts_positive.sql)\n  compiled: target/x.sql",
        )
    )
    failing.end(end_time=T0 + 1_010 * MS)
    tracer.start_span(
        "dbt.node.model customer_revenue",
        context=ctx,
        start_time=T0 + 1_020 * MS,
        attributes={"dbt.node.status": "skipped", "dbt.node.skipped": True},
    ).end(end_time=T0 + 1_021 * MS)
    warned = tracer.start_span(
        "dbt.node.test not_null_orders_amount",
        context=ctx,
        start_time=T0 + 2_401 * MS,
        attributes={"dbt.node.status": "warn", "dbt.node.failures": 2},
    )
    warned.end(end_time=T0 + 2_450 * MS)
    root.set_status(Status(StatusCode.ERROR, "dbt build: 1 node(s) failed"))
    root.end(end_time=T0 + 2_500 * MS)


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("FLOE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_golden_dbt_build() -> None:
    """Parallel seeds, the critical path, a multi-line failure, a skip, a warning, a long name, rows."""
    golden("dbt_build", render_tree(spans_of(dbt_build)))


def test_golden_dbt_build_in_colour() -> None:
    """The same picture with ANSI colours for statuses (and only there)."""
    golden("dbt_build_color", render_tree(spans_of(dbt_build), color=True))


def test_golden_single_span_and_unknown_service() -> None:
    """One span, no product name: the header falls back to the program's name, no legend line."""

    def one(tracer: trace.Tracer) -> None:
        tracer.start_span("job", start_time=T0).end(end_time=T0 + 412_000)

    text = render_tree(spans_of(one, {"service.name": "unknown_service:python", "floe.mode": "prod"}))
    header = text.splitlines()[0]
    assert "service=unknown_service" not in header
    golden("single_span", text.replace(header.split("service=", 1)[1].split("  ", 1)[0], "PROGRAM"))


def test_every_line_fits_120_columns() -> None:
    """No line is wider than the terminal width the picture is made for."""
    text = render_tree(spans_of(dbt_build))
    assert max(len(line) for line in text.splitlines()) <= 120


@pytest.mark.parametrize(
    ("ns", "shown"),
    [
        (0, "0µs"),
        (412_000, "412µs"),
        (1_300_000, "1.3ms"),
        (12_400_000, "12ms"),
        (999_000_000, "999ms"),
        (1_340_000_000, "1.3s"),
        (42_400_000_000, "42s"),
        (185_000_000_000, "3m05s"),
    ],
)
def test_human_durations(ns: int, shown: str) -> None:
    """Two or three significant figures, minutes past 60 s."""
    assert human_duration(ns) == shown


def test_quiet_under_dbt_q() -> None:
    """dbt -q / --quiet: the console prints nothing."""

    def with_args(args: list[str]) -> Callable[[trace.Tracer], None]:
        def build(tracer: trace.Tracer) -> None:
            tracer.start_span("dbt build", attributes={"dbt.args": args}).end()

        return build

    assert quiet(spans_of(with_args(["build", "-q"])))
    assert quiet(spans_of(with_args(["--quiet", "build"])))
    assert not quiet(spans_of(with_args(["build", "--select", "q"])))


def test_colour_only_on_a_terminal_without_no_color() -> None:
    """NO_COLOR and TERM=dumb switch colour off; a plain stream never gets it."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_color(Tty(), {})
    assert not wants_color(Tty(), {"NO_COLOR": ""})
    assert not wants_color(Tty(), {"TERM": "dumb"})
    assert not wants_color(io.StringIO(), {})


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def tracer(out: io.StringIO) -> trace.Tracer:
    provider = TracerProvider(resource=Resource({"service.name": "jaffle", "floe.mode": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter(out)))
    return provider.get_tracer("test")


def _names(text: str) -> list[str]:
    """The span names of a rendered picture, in order (the tree drawing and columns stripped)."""
    rows = [line for line in text.splitlines()[1:] if "─ " in line]
    return [row.split("─ ", 1)[1][:46].split("  ")[0].strip() for row in rows]


def test_each_trace_is_printed_when_its_local_root_ends(tracer: trace.Tracer, out: io.StringIO) -> None:
    """Interleaved traces are buffered separately and each printed as soon as its own root ends."""
    first = tracer.start_span("first", context=Context(), start_time=T0)
    second = tracer.start_span("second", context=Context(), start_time=T0)
    tracer.start_span("first.child", context=child_of(first), start_time=T0).end(end_time=T0 + MS)
    tracer.start_span("second.child", context=child_of(second), start_time=T0).end(end_time=T0 + MS)
    second.end(end_time=T0 + 2 * MS)
    assert _names(out.getvalue()) == ["second", "second.child"]
    first.end(end_time=T0 + 3 * MS)
    assert _names(out.getvalue()) == ["second", "second.child", "first", "first.child"]
    assert sum(line.startswith("trace ") for line in out.getvalue().splitlines()) == 2


def test_span_with_remote_parent_is_a_local_root(tracer: trace.Tracer, out: io.StringIO) -> None:
    """A span continuing a remote trace (e.g. from TRACEPARENT) is printed when it ends."""
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    job = tracer.start_span("job", context=trace.set_span_in_context(NonRecordingSpan(remote)), start_time=T0)
    tracer.start_span("step", context=child_of(job), start_time=T0).end(end_time=T0 + MS)
    assert out.getvalue() == ""
    job.end(end_time=T0 + 4 * MS)
    assert out.getvalue().startswith("trace 4bf92f3577b34da6a3ce929d0e0e4736  service=jaffle  mode=prod  4.0ms")
    assert _names(out.getvalue()) == ["job", "step"]


def test_leftovers_are_printed_at_shutdown(out: io.StringIO) -> None:
    """Spans whose root never ended are printed at shutdown, the orphans as top-level entries, once."""
    provider = TracerProvider(resource=Resource({"service.name": "jaffle"}))
    exporter = ConsoleTreeExporter(out)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    root = tracer.start_span("never-ends", start_time=T0)
    tracer.start_span("a", context=child_of(root), start_time=T0 + MS).end(end_time=T0 + 2 * MS)
    tracer.start_span("b", context=child_of(root), start_time=T0).end(end_time=T0 + 3 * MS)
    assert out.getvalue() == ""
    provider.shutdown()
    assert _names(out.getvalue()) == ["b", "a"]
    printed = out.getvalue()
    exporter.shutdown()
    assert out.getvalue() == printed


def test_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without an explicit stream the picture goes to stderr, never stdout."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter()))
    provider.get_tracer("t").start_span("hello", start_time=T0).end(end_time=T0 + MS)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "└─ hello" in captured.err


def test_a_broken_stream_never_raises() -> None:
    """A closed output stream is ignored: telemetry must not break the program."""
    stream = io.StringIO()
    stream.close()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter(stream)))
    provider.get_tracer("t").start_span("x").end()


def test_zero_length_siblings_at_one_instant_do_not_loop() -> None:
    """Spans that start and end at the same instant still give a finite critical path."""

    def instant(tracer: trace.Tracer) -> None:
        root = tracer.start_span("root", start_time=T0)
        for name in ("a", "b", "c"):
            tracer.start_span(name, context=child_of(root), start_time=T0 + MS).end(end_time=T0 + MS)
        root.end(end_time=T0 + MS)

    assert len(render_tree(spans_of(instant)).splitlines()) == 6
