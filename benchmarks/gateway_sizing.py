"""Sizing of one tail-sampling gateway: OTLP/HTTP load for a few seconds, spans/s sustained and per CPU-second.

A measurement, not a test (this machine is shared and noisy): it reuses the scale-out proof's helpers
(``tests/e2e/test_scale_out_e2e.py``) and prints the figures recorded in ``docs/scale-out.md``.

    FLOE_TEST_COLLECTOR=$(bash collector/build.sh) python benchmarks/gateway_sizing.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.test_scale_out_e2e import (
    LOAD_SECONDS,
    MARK,
    RATIO,
    Node,
    _cpu_seconds,
    _requests,
    counter,
    generate,
)
from tests.support.collector import Collector


def gateway_sizing(tmp_path: Path) -> None:
    """Sizing: OTLP/HTTP load into one gateway (tail sampling, prod share, queue to a backend) for LOAD_SECONDS.
    Reports spans/s accepted and spans per gateway CPU-second; nothing may be refused at this load."""
    import threading

    (tmp_path / "metrics-sink").mkdir()
    (tmp_path / "backend").mkdir()
    metrics_sink, backend = Collector(tmp_path / "metrics-sink"), Collector(tmp_path / "backend")
    gateway = Node("gw", generate(tmp_path, "gateway"), tmp_path, metrics_sink,
                   PROOF_BACKEND=f"127.0.0.1:{backend.http_port}")
    try:
        bodies = _requests(count=40, traces=50, spans=10)  # 20k spans a round; every round new trace ids
        url = f"http://127.0.0.1:{gateway.http}/v1/traces"
        stop = time.monotonic() + LOAD_SECONDS
        posted = [0, 0]

        def client(offset: int) -> None:
            n = offset
            while time.monotonic() < stop:
                body = bodies[n % len(bodies)].replace(MARK, (n // len(bodies) + 1).to_bytes(4, "big"))
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    posted[r.status == 200] += 500
                n += 2

        cpu_before, started = _cpu_seconds(gateway.proc.pid), time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        status = Path(f"/proc/{gateway.proc.pid}/status").read_text()
        peak_mib = int(next(ln for ln in status.splitlines() if ln.startswith("VmHWM:")).split()[1]) / 1024

        def decisions(_: Collector) -> dict[str, int]:
            return {flag: counter(metrics_sink, "otelcol_processor_tail_sampling_global_count_traces_sampled", "gw",
                                  decision=flag) for flag in ("sampled", "not_sampled")}

        # sustained = until every trace is decided (ingest alone can outrun the decision loop), minus decision_wait
        assert metrics_sink.wait_for(lambda c: sum(decisions(c).values()) >= posted[1] // 10, timeout=60)
        done = time.monotonic() - started - 2.0
        cpu = _cpu_seconds(gateway.proc.pid) - cpu_before  # ingest + every decision + export
        decided = decisions(metrics_sink)
        early = counter(metrics_sink, "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early", "gw")
        accepted = counter(metrics_sink, "otelcol_receiver_accepted_spans", "gw", receiver="otlp")
        refused = counter(metrics_sink, "otelcol_receiver_refused_spans", "gw", receiver="otlp")
        print(f"\none gateway: {accepted} spans in {elapsed:.1f} s = {accepted / elapsed:,.0f} spans/s accepted, "
              f"all decided after {done:.1f} s (+2 s decision_wait) = {accepted / done:,.0f} spans/s sustained, "
              f"refused {refused}, evicted undecided {early}; traces decided {sum(decided.values())} "
              f"(kept {decided['sampled']}); gateway CPU {cpu:.2f} s = "
              f"{accepted / max(cpu, 0.01):,.0f} spans per CPU-second; peak RSS {peak_mib:.0f} MiB")
        assert accepted == posted[1] and posted[0] == 0 and refused == 0 and early == 0
        assert sum(decided.values()) == accepted // 10, "every trace decided"
        assert abs(decided["sampled"] / sum(decided.values()) - RATIO) < 0.02
        assert accepted / done > 2_000, "far below what one gateway should take"
    finally:
        gateway.stop()
        backend.stop()
        metrics_sink.stop()




if __name__ == "__main__":
    gateway_sizing(Path(tempfile.mkdtemp()))
