"""A job fanning out over a multiprocessing fork Pool: one span per task in the workers, one in the parent.

Usage: mp_pool_job.py TASKS [close|terminate]  (close: pool.close()+join(); terminate: the `with` block)
"""

import json
import multiprocessing
import os
import sys

from opentelemetry import trace

tracer = trace.get_tracer("mp_pool_job")


def task(i: int) -> int:
    with tracer.start_as_current_span("task", attributes={"i": i}):
        return os.getpid()


if __name__ == "__main__":
    tasks, how = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "close"
    ctx = multiprocessing.get_context("fork")
    with tracer.start_as_current_span("parent-before-fork"):
        pass  # ended before the fork: buffered in the parent's queue, must be exported once
    if how == "terminate":
        with ctx.Pool(4) as pool:
            pids = pool.map(task, range(tasks), chunksize=1)
    else:
        pool = ctx.Pool(4)
        pids = pool.map(task, range(tasks), chunksize=1)
        pool.close()
        pool.join()
    print(json.dumps({"parent": os.getpid(), "pids": sorted(set(pids))}))
