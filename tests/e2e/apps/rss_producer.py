"""A long-running producer: ends spans (1 KiB attribute each) as fast as it can for SECONDS, printing its RSS.

Usage: rss_producer.py SECONDS   → one JSON line per half second: {"t": .., "rss_kib": .., "spans": ..}
"""

import json
import sys
import time

from opentelemetry import trace

tracer = trace.get_tracer("rss_producer")
payload = "x" * 1024


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


seconds = float(sys.argv[1])
start = time.monotonic()
next_report = start + 0.5
ended = 0
while (now := time.monotonic()) - start < seconds:
    with tracer.start_as_current_span("produce", attributes={"payload": payload, "i": ended}):
        pass
    ended += 1
    if now >= next_report:
        print(json.dumps({"t": round(now - start, 2), "rss_kib": rss_kib(), "spans": ended}), flush=True)
        next_report += 0.5
