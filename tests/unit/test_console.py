"""Console backend: the trace tree (indentation, order, durations, status), when it is printed, leftovers."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from configurators.console import ConsoleTreeExporter, _duration, render_tree

T0 = 1_700_000_000_000_000_000  # ns
MS = 1_000_000


@pytest.fixture
def out() -> io.StringIO:
    """Where the exporter writes."""
    return io.StringIO()


@pytest.fixture
def tracer(out: io.StringIO) -> trace.Tracer:
    """A tracer whose spans go straight (SimpleSpanProcessor) to a ConsoleTreeExporter writing to ``out``."""
    provider = TracerProvider(resource=Resource({"service.name": "jaffle", "floe.mode": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter(out)))
    return provider.get_tracer("test")


def child_of(parent: trace.Span) -> Context:
    """A context whose current span is ``parent``."""
    return trace.set_span_in_context(parent)


def test_tree_rendering(tracer: trace.Tracer, out: io.StringIO) -> None:
    """Children are indented under their parent, ordered by start time, with durations and status."""
    root = tracer.start_span("dbt build", start_time=T0, attributes={"dbt.command": "build", "floe.mode": "prod"})
    late = tracer.start_span("model.orders", context=child_of(root), start_time=T0 + 5 * MS)
    early = tracer.start_span("seed.raw", context=child_of(root), start_time=T0 + 1 * MS, attributes={"rows": 3})
    grandchild = tracer.start_span("sql", context=child_of(early), start_time=T0 + 1 * MS + 100_000)
    grandchild.end(end_time=T0 + 1 * MS + 350_000)
    early.set_status(Status(StatusCode.OK))
    early.end(end_time=T0 + 2_500_000)
    late.set_status(Status(StatusCode.ERROR, "relation does not exist"))
    late.end(end_time=T0 + 15 * MS)
    assert out.getvalue() == ""  # nothing until the local root ends
    root.end(end_time=T0 + 2_500 * MS)
    trace_id = f"{root.get_span_context().trace_id:032x}"
    assert out.getvalue().splitlines() == [
        f"trace {trace_id}  service=jaffle mode=prod",
        "└─ dbt build  2.50s  -  dbt.command=build",
        "   ├─ seed.raw  1.5ms  OK  rows=3",
        "   │  └─ sql  250µs  -",
        "   └─ model.orders  10.0ms  ERROR: relation does not exist",
    ]


def test_error_without_description(tracer: trace.Tracer, out: io.StringIO) -> None:
    """An ERROR status without description prints as plain ERROR."""
    span = tracer.start_span("failing", start_time=T0)
    span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=T0 + 2 * MS)
    assert out.getvalue().splitlines()[1] == "└─ failing  2.0ms  ERROR"


def test_key_attributes_are_capped_and_floe_attributes_hidden(tracer: trace.Tracer, out: io.StringIO) -> None:
    """At most four non-floe attributes are shown, the rest counted."""
    attrs = {f"a{i}": i for i in range(6)}
    attrs.update({"floe.namespace": "n", "floe.product.name": "p", "floe.product.version": "v"})
    tracer.start_span("many", start_time=T0, attributes=attrs).end(end_time=T0 + MS)
    assert out.getvalue().splitlines()[1] == "└─ many  1.0ms  -  a0=0 a1=1 a2=2 a3=3 (+2)"


def test_each_trace_is_printed_when_its_local_root_ends(tracer: trace.Tracer, out: io.StringIO) -> None:
    """Interleaved traces are buffered separately and each printed as soon as its own root ends."""
    first = tracer.start_span("first", context=Context(), start_time=T0)
    second = tracer.start_span("second", context=Context(), start_time=T0)
    tracer.start_span("first.child", context=child_of(first), start_time=T0).end(end_time=T0 + MS)
    tracer.start_span("second.child", context=child_of(second), start_time=T0).end(end_time=T0 + MS)
    second.end(end_time=T0 + 2 * MS)
    printed = out.getvalue()
    assert "second" in printed and "second.child" in printed
    assert "first" not in printed
    first.end(end_time=T0 + 3 * MS)
    lines = out.getvalue().splitlines()
    assert [line for line in lines if not line.startswith("trace ")] == [
        "└─ second  2.0ms  -",
        "   └─ second.child  1.0ms  -",
        "└─ first  3.0ms  -",
        "   └─ first.child  1.0ms  -",
    ]
    assert sum(line.startswith("trace ") for line in lines) == 2


def test_span_with_remote_parent_is_a_local_root(tracer: trace.Tracer, out: io.StringIO) -> None:
    """A span continuing a remote trace (e.g. from TRACEPARENT) is printed when it ends."""
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    job = tracer.start_span("job", context=ctx, start_time=T0)
    tracer.start_span("step", context=child_of(job), start_time=T0).end(end_time=T0 + MS)
    assert out.getvalue() == ""
    job.end(end_time=T0 + 4 * MS)
    assert out.getvalue().splitlines() == [
        "trace 4bf92f3577b34da6a3ce929d0e0e4736  service=jaffle mode=prod",
        "└─ job  4.0ms  -",
        "   └─ step  1.0ms  -",
    ]


def test_leftovers_are_printed_at_shutdown(out: io.StringIO) -> None:
    """Spans whose root never ended are printed at shutdown, the orphans as top-level entries."""
    provider = TracerProvider(resource=Resource({"service.name": "jaffle"}))
    exporter = ConsoleTreeExporter(out)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    root = tracer.start_span("never-ends", start_time=T0)
    tracer.start_span("a", context=child_of(root), start_time=T0 + MS).end(end_time=T0 + 2 * MS)
    tracer.start_span("b", context=child_of(root), start_time=T0).end(end_time=T0 + 3 * MS)
    assert out.getvalue() == ""
    provider.shutdown()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"trace {root.get_span_context().trace_id:032x}  service=jaffle")
    assert lines[1:] == ["├─ b  3.0ms  -", "└─ a  1.0ms  -"]
    exporter.shutdown()  # a second shutdown prints nothing more
    assert out.getvalue().splitlines() == lines


def test_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without an explicit stream the tree goes to stderr, never stdout."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter()))
    provider.get_tracer("t").start_span("hello", start_time=T0).end(end_time=T0 + MS)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "└─ hello  1.0ms  -" in captured.err


def test_a_broken_stream_never_raises() -> None:
    """A closed output stream is ignored: telemetry must not break the program."""
    stream = io.StringIO()
    stream.close()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter(stream)))
    provider.get_tracer("t").start_span("x").end()


@pytest.mark.parametrize(
    ("ns", "shown"),
    [
        (0, "0µs"),
        (999, "1µs"),
        (250_000, "250µs"),
        (1_000_000, "1.0ms"),
        (1_500_000, "1.5ms"),
        (999_900_000, "999.9ms"),
        (1_000_000_000, "1.00s"),
        (75_250_000_000, "75.25s"),
    ],
)
def test_duration_format(ns: int, shown: str) -> None:
    """Durations use µs below 1 ms, ms below 1 s, s above."""
    assert _duration(SimpleNamespace(start_time=T0, end_time=T0 + ns)) == shown  # type: ignore[arg-type]


def test_render_tree_of_spans_without_root() -> None:
    """render_tree treats spans whose parent is missing as roots, ordered by start time."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    t = provider.get_tracer("t")
    root = t.start_span("root", start_time=T0)
    t.start_span("z", context=child_of(root), start_time=T0 + 2 * MS).end(end_time=T0 + 3 * MS)
    t.start_span("y", context=child_of(root), start_time=T0 + MS).end(end_time=T0 + 3 * MS)
    text = render_tree(memory.get_finished_spans())
    assert text.splitlines()[1:] == ["├─ y  2.0ms  -", "└─ z  1.0ms  -"]


def test_skipped_nodes_are_marked_in_the_tree() -> None:
    """A span marked skipped by an instrumentor (dbt/Dagster) shows SKIPPED instead of a bare dash."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("dbt build"):
        tracer.start_span("dbt.node.model a", attributes={"dbt.node.skipped": True, "dbt.node.status": "skipped"}).end()
        tracer.start_span("dbt.node.model b", attributes={"dbt.node.status": "success"}).end()
    lines = render_tree(memory.get_finished_spans()).splitlines()
    assert any("dbt.node.model a" in line and "SKIPPED" in line for line in lines)
    assert any("dbt.node.model b" in line and "SKIPPED" not in line for line in lines)
