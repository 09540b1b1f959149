"""Queues and handlers the worker benchmarks run (imported by worker processes)."""

import os
import time

import gq

queue = gq.Queue(os.environ.get("GQ_DATA", "./gq-bench-data"))
CPU_SECONDS = 0.005


@queue.handler("bench.noop")
async def noop(job):
    return None


@queue.handler("bench.cpu")
def cpu(job):
    """~5 ms of pure Python: holds the GIL the whole time."""
    end = time.perf_counter() + CPU_SECONDS
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n
