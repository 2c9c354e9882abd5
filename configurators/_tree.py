"""The console backend's picture of one trace: a tree with a waterfall, at most ``width`` columns.

Each span is one row: the tree and its name, a duration rounded for humans, its status, a bar on one time
axis shared by the whole trace (so parallel nodes and the chain that made the build slow are visible), and
a few facts a data engineer looks for (rows, failures). The critical path — from the root, the child that
ended last, then backwards the sibling that ended latest before it started (the chain with no slack) — is
drawn solid (``█``) and marked ``*``; other bars are shaded (``░▒``). A failed
span's error text follows it, one indented row per line. Colour (red errors, yellow warnings, dim skips)
only when asked for; the exporter asks when its stream is a terminal and ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

WIDTH = 120
NAME_W = 46
DUR_W = 7
STATUS_W = 5
BAR_W = 36
MAX_ERROR_LINES = 4
_COLORS = {"ERROR": "\x1b[31m", "WARN": "\x1b[33m", "SKIP": "\x1b[2m", "OK": "\x1b[32m"}
_RESET = "\x1b[0m"
_SHOWN = (("dbt.node.rows_affected", "rows"), ("dbt.node.failures", "failures"), ("dagster.asset", "asset"))


def human_duration(ns: int) -> str:
    """``412µs``, ``12ms``, ``1.3s``, ``42s``, ``3m05s``: two or three significant figures."""
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f}µs"
    if ns < 1_000_000_000:
        ms = ns / 1e6
        return f"{ms:.1f}ms" if ms < 10 else f"{ms:.0f}ms"
    s = ns / 1e9
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    minutes, seconds = divmod(round(s), 60)
    return f"{minutes}m{seconds:02d}s"


def status_of(span: ReadableSpan) -> str:
    """ERROR, WARN, SKIP, OK or ``-`` (unset)."""
    attributes = span.attributes or {}
    if span.status.status_code is StatusCode.ERROR:
        return "ERROR"
    node_status = attributes.get("dbt.node.status") or attributes.get("dagster.status")
    if node_status in ("warn", "warning"):
        return "WARN"
    if node_status == "skipped" or any(k.endswith(".skipped") and v is True for k, v in attributes.items()):
        return "SKIP"
    if span.status.status_code is StatusCode.OK or node_status in ("success", "pass"):
        return "OK"
    return "-"


def service_name(spans: Sequence[ReadableSpan]) -> str:
    """The resource's service name, or something meaningful instead of ``unknown_service``."""
    first = spans[0]
    res: Mapping[str, Any] = first.resource.attributes if first.resource else {}
    name = str(res.get("service.name") or "")
    if name and not name.startswith("unknown_service"):
        return name
    product = str(res.get("floe.product.name") or "")
    if product and not product.startswith("unknown_service"):
        return product
    for span in spans:
        project = (span.attributes or {}).get("dbt.project.name")
        if project:
            return str(project)
    return os.path.basename(sys.argv[0] or "") or "python"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _critical(roots: Sequence[ReadableSpan], children: Mapping[int | None, list[ReadableSpan]]) -> set[int]:
    """The spans on the critical path: under each span, the child that ended last, then backwards the
    sibling that ended latest before it started, and so on (the chain that left no slack); recursively."""
    marked: set[int] = set()

    def chain(span: ReadableSpan) -> None:
        if span.context is None:
            return
        marked.add(span.context.span_id)
        kids = children.get(span.context.span_id, [])
        if not kids:
            return
        current: ReadableSpan | None = max(kids, key=lambda s: s.end_time or 0)
        while current is not None:
            chain(current)
            start = current.start_time or 0
            before = [
                k
                for k in kids
                if (k.end_time or 0) <= start and k.context is not None and k.context.span_id not in marked
            ]
            current = max(before, key=lambda s: s.end_time or 0) if before else None

    for root in roots:
        chain(root)
    return marked


def _bar(span: ReadableSpan, t0: int, total: int, critical: bool) -> str:
    start = (span.start_time or t0) - t0
    end = (span.end_time or span.start_time or t0) - t0
    first = min(int(start / total * BAR_W), BAR_W - 1)
    last = max(first + 1, min(math.ceil(end / total * BAR_W), BAR_W))
    fill = "█" if critical else ("▒" if last - first > 1 else "░")
    return " " * first + fill * (last - first) + " " * (BAR_W - last)


def _facts(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    shown = [(label, attributes[key]) for key, label in _SHOWN if key in attributes]
    return " ".join(f"{label}={value!s}" for label, value in shown if not (label == "failures" and value == 0))


def display_name(span: ReadableSpan) -> str:
    """The span's name without the ``dbt.node.`` prefix every node span carries (the tree already says it)."""
    return span.name.removeprefix("dbt.node.")


def render(spans: Sequence[ReadableSpan], *, width: int = WIDTH, color: bool = False) -> str:
    """One trace as the picture described in the module docstring."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in by_id else None, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_time or 0, s.name))
    roots = children.get(None, [])
    t0 = min((s.start_time or 0) for s in spans)
    t1 = max((s.end_time or s.start_time or 0) for s in spans)
    total = max(t1 - t0, 1)
    critical = _critical(roots, children)
    statuses = [status_of(s) for s in spans]
    first = spans[0]
    trace_id = f"{first.context.trace_id:032x}" if first.context else "?"
    mode = (first.resource.attributes if first.resource else {}).get("floe.mode", "?")
    summary = [f"{len(spans)} span{'s' if len(spans) != 1 else ''}"]
    summary += [
        f"{statuses.count(k)} {w}"
        for k, w in (("ERROR", "failed"), ("WARN", "warned"), ("SKIP", "skipped"))
        if statuses.count(k)
    ]
    lines = [
        _fit(
            f"trace {trace_id}  service={service_name(spans)}  mode={mode}  {human_duration(t1 - t0)}  "
            + ", ".join(summary),
            width,
        )
    ]

    def paint(text: str, status: str) -> str:
        return f"{_COLORS[status]}{text}{_RESET}" if color and status in _COLORS else text

    def walk(span: ReadableSpan, prefix: str, last: bool) -> None:
        on_path = span.context is not None and span.context.span_id in critical
        branch = "└─ " if last else "├─ "
        name = _fit(f"{'*' if on_path else ' '}{prefix}{branch}{display_name(span)}", NAME_W).ljust(NAME_W)
        status = status_of(span)
        dur = human_duration((span.end_time or 0) - (span.start_time or 0)).rjust(DUR_W)
        row = f"{name} {dur} {paint(status.ljust(STATUS_W), status)} {_bar(span, t0, total, on_path)}"
        facts = _facts(span)
        room = width - (NAME_W + DUR_W + STATUS_W + BAR_W + 3)
        if facts and room > 2:
            row += " " + _fit(facts, room - 1)
        lines.append(row.rstrip())
        kids = children.get(span.context.span_id if span.context else None, [])
        below = prefix + ("   " if last else "│  ")
        if status == "ERROR" and span.status.description:
            text = span.status.description.strip().splitlines()
            shown = text[:MAX_ERROR_LINES] + (["…"] if len(text) > MAX_ERROR_LINES else [])
            for line in shown:
                lines.append(paint(_fit(f" {below}{'│' if kids else ' '}  ! {line.strip()}", width), "ERROR"))
        for i, kid in enumerate(kids):
            walk(kid, below, i == len(kids) - 1)

    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    if len(spans) > 1:
        lines.append(_fit("* critical path (█): the chain of spans that decided the trace's duration", width))
    return "\n".join(lines)
