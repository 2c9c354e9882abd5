"""Environment-variable carriers (TRACEPARENT/TRACESTATE/BAGGAGE) and floe baggage."""

from __future__ import annotations

import logging
import os

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider

from floe_otel_distro import propagation

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def tracer() -> trace.Tracer:
    return trace.get_tracer("test", tracer_provider=TracerProvider())


def _debug_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "floe_otel_distro.propagation"]


def test_valid_carriers_are_extracted(caplog: pytest.LogCaptureFixture) -> None:
    """A valid TRACEPARENT/TRACESTATE/BAGGAGE yields the remote span context and the baggage, silently."""
    caplog.set_level(logging.DEBUG)
    ctx = propagation.extract_from_environ(
        {"TRACEPARENT": TRACEPARENT, "TRACESTATE": "vendor=abc", "BAGGAGE": "team=data,floe.namespace=sales"}
    )
    sc = trace.get_current_span(ctx).get_span_context()
    assert (format(sc.trace_id, "032x"), format(sc.span_id, "016x")) == (TRACE_ID, SPAN_ID)
    assert sc.is_remote and sc.trace_flags.sampled
    assert sc.trace_state.get("vendor") == "abc"
    assert baggage.get_all(ctx) == {"team": "data", "floe.namespace": "sales"}
    assert caplog.records == []


def test_missing_carriers_give_an_empty_context(caplog: pytest.LogCaptureFixture) -> None:
    """Without carrier variables the context is empty and nothing is logged."""
    caplog.set_level(logging.DEBUG)
    ctx = propagation.extract_from_environ({"PATH": "/bin"})
    assert ctx == context.Context()
    assert not propagation.has_valid_span(ctx)
    assert caplog.records == []


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
        f"ff-{TRACE_ID}-{SPAN_ID}-01",
        "00-" + "x" * 600,
    ],
)
def test_malformed_traceparent_logs_one_debug_line_and_starts_a_new_root(
    caplog: pytest.LogCaptureFixture, tracer: trace.Tracer, value: str
) -> None:
    """A malformed TRACEPARENT is ignored with one debug line (no warnings); the next span is a root."""
    caplog.set_level(logging.DEBUG)
    ctx = propagation.extract_from_environ({"TRACEPARENT": value, "TRACESTATE": "a=b"})
    assert not propagation.has_valid_span(ctx)
    lines = _debug_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert "TRACEPARENT" in lines[0].getMessage() and "new trace" in lines[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    span = tracer.start_span("first", context=ctx)
    assert span.parent is None  # type: ignore[attr-defined]
    span.end()


def test_malformed_baggage_is_one_debug_line_and_keeps_the_trace(caplog: pytest.LogCaptureFixture) -> None:
    """Bad BAGGAGE members are dropped with one debug line; valid members and the trace survive."""
    caplog.set_level(logging.DEBUG)
    ctx = propagation.extract_from_environ({"TRACEPARENT": TRACEPARENT, "BAGGAGE": "good=1,bad member,=x"})
    assert propagation.has_valid_span(ctx)
    assert baggage.get_all(ctx) == {"good": "1"}
    lines = _debug_lines(caplog)
    assert len(lines) == 1 and "BAGGAGE" in lines[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_malformed_tracestate_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    """A bad TRACESTATE is dropped with one debug line while the trace is continued."""
    caplog.set_level(logging.DEBUG)
    ctx = propagation.extract_from_environ({"TRACEPARENT": TRACEPARENT, "TRACESTATE": "not a tracestate!"})
    sc = trace.get_current_span(ctx).get_span_context()
    assert sc.is_valid and not sc.trace_state
    lines = _debug_lines(caplog)
    assert len(lines) == 1 and "TRACESTATE" in lines[0].getMessage()


def test_extraction_never_raises(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A propagator that raises is contained: empty context and one debug line."""
    caplog.set_level(logging.DEBUG)

    def boom(*args: object, **kwargs: object) -> context.Context:
        raise RuntimeError("broken propagator")

    monkeypatch.setattr(propagation.propagate, "extract", boom)
    assert propagation.extract_from_environ({"TRACEPARENT": TRACEPARENT}) == context.Context()
    assert len(_debug_lines(caplog)) == 1


def test_inject_into_copy_carries_the_current_span_and_leaves_the_original(tracer: trace.Tracer) -> None:
    """inject_into_env writes the current span into the given copy only; os.environ is untouched."""
    before = dict(os.environ)
    original = {"PATH": "/bin", "TRACEPARENT": TRACEPARENT, "BAGGAGE": "old=1"}
    with tracer.start_as_current_span("parent") as span:
        env = propagation.inject_into_env(dict(original))
    sc = span.get_span_context()
    assert env["TRACEPARENT"] == f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
    assert "BAGGAGE" not in env  # stale baggage removed, nothing current to carry
    assert env["PATH"] == "/bin"
    assert original["TRACEPARENT"] == TRACEPARENT
    assert dict(os.environ) == before


def test_stale_carriers_are_removed_without_a_current_span() -> None:
    """With no current context, injecting removes outdated carrier variables."""
    stale = {"TRACEPARENT": TRACEPARENT, "TRACESTATE": "a=b", "BAGGAGE": "x=1", "K": "v"}
    env = propagation.inject_into_env(stale)
    assert env == {"K": "v"}


def test_current_carrier_contains_baggage_and_span(tracer: trace.Tracer) -> None:
    """current_carrier gives the env-style W3C carrier, baggage included."""
    ctx = baggage.set_baggage("floe.namespace", "sales")
    token = context.attach(ctx)
    try:
        with tracer.start_as_current_span("s") as span:
            carrier = propagation.current_carrier()
    finally:
        context.detach(token)
    assert carrier["TRACEPARENT"].split("-")[2] == f"{span.get_span_context().span_id:016x}"
    assert carrier["BAGGAGE"] == "floe.namespace=sales"
    assert set(propagation.carrier_keys()) >= {"TRACEPARENT", "TRACESTATE", "BAGGAGE"}


def test_floe_baggage_is_added_and_incoming_entries_are_preserved() -> None:
    """floe.namespace is added next to incoming baggage; an incoming floe.namespace wins."""
    incoming = propagation.extract_from_environ({"BAGGAGE": "team=data"})
    ctx = propagation.with_floe_baggage("sales", incoming)
    assert baggage.get_all(ctx) == {"team": "data", "floe.namespace": "sales"}
    incoming_ns = propagation.extract_from_environ({"BAGGAGE": "floe.namespace=ops"})
    ctx = propagation.with_floe_baggage("sales", incoming_ns)
    assert baggage.get_baggage("floe.namespace", ctx) == "ops"
    assert propagation.with_floe_baggage(None, incoming) is incoming


FLOE_BAGGAGE = {
    "floe.namespace": "sales",
    "floe.product.name": "orders",
    "floe.product.version": "2.1.0",
    "floe.mode": "prod",
}


def test_floe_baggage_carries_floes_four_keys() -> None:
    """The four keys floe-core's set_floe_baggage sets, beside incoming members (which keep their values)."""
    incoming = propagation.extract_from_environ({"BAGGAGE": "team=data,floe.mode=dev"})
    ctx = propagation.with_floe_baggage(FLOE_BAGGAGE, incoming)
    assert baggage.get_all(ctx) == {**FLOE_BAGGAGE, "team": "data", "floe.mode": "dev"}
    carrier = propagation.current_carrier(ctx)
    assert set(baggage.get_all(propagation.extract_from_environ(carrier))) == {*FLOE_BAGGAGE, "team"}


@pytest.mark.parametrize(
    ("incoming_members", "member_size", "expected_added"),
    [
        (179, 5, 1),  # one slot left: only floe.namespace fits, nothing is evicted
        (180, 5, 0),  # full: nothing is added
        (39, 205, 0),  # 8189 of 8192 bytes used: nothing more fits
        (39, 204, 1),  # room for floe.namespace=sales only
        (1, 100, 4),
    ],
)
def test_floe_baggage_stays_within_w3c_limits(incoming_members: int, member_size: int, expected_added: int) -> None:
    """floe's keys never push baggage past 180 members / 8192 bytes and never evict an incoming member."""
    ctx = context.Context()
    value = "v" * member_size
    for i in range(incoming_members):
        ctx = baggage.set_baggage(f"k{i:02}", value, ctx)
    out = propagation.with_floe_baggage(FLOE_BAGGAGE, ctx)
    got = baggage.get_all(out)
    assert all(got[f"k{i:02}"] == value for i in range(incoming_members))
    assert len(got) - incoming_members == expected_added
    assert len(got) <= propagation.MAX_BAGGAGE_MEMBERS
    header = propagation.current_carrier(out).get("BAGGAGE", "")
    assert len(header.encode()) <= propagation.MAX_BAGGAGE_BYTES
    # what was added survives a round trip through the real propagator (nothing silently dropped)
    assert set(baggage.get_all(propagation.extract_from_environ({"BAGGAGE": header}))) == set(got)


def test_attach_startup_context_continues_the_caller_once(
    monkeypatch: pytest.MonkeyPatch, tracer: trace.Tracer
) -> None:
    """The start-up context makes the first span a child of the caller's span; a second call is a no-op."""
    monkeypatch.setattr(propagation, "_startup_token", None)
    before = context.get_current()
    try:
        propagation.attach_startup_context({"TRACEPARENT": TRACEPARENT, "BAGGAGE": "team=data"}, "sales")
        token = propagation._startup_token
        propagation.attach_startup_context({"TRACEPARENT": f"00-{'1' * 32}-{'2' * 16}-01"}, "other")
        assert propagation._startup_token is token
        assert baggage.get_all() == {"team": "data", "floe.namespace": "sales"}
        with tracer.start_as_current_span("root") as span:
            assert format(span.get_span_context().trace_id, "032x") == TRACE_ID
            assert format(span.parent.span_id, "016x") == SPAN_ID  # type: ignore[attr-defined]
    finally:
        context.attach(before)
