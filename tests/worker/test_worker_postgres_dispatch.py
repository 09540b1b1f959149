"""Priority order on a PostgreSQL store, where the database picks the jobs
(twins of test_worker_dispatch's heap-based tests, which wait on the worker's
ready heap: a worker on PostgreSQL keeps none)."""

from __future__ import annotations

import time

import pytest

import gq
from worker_harness import InProcessWorker, wait_all, wait_until


@pytest.mark.parametrize("loop_kind", ["uvloop"])
def test_priority_order_after_resume(postgres_url, loop_kind):
    """The PostgreSQL twin of test_worker_dispatch's: all jobs committed while the
    type is paused; once resumed they run best priority first, FIFO within one."""
    q = gq.Queue(postgres_url)
    ran = []

    @q.handler("t")
    def t(job):
        ran.append(job.payload)

    q.pause("t")
    w = InProcessWorker(q, loop_kind, concurrency=1).start()
    try:
        prios = [0, 3, 3, 9, 0, 5, 9, 1]
        ids = q.submit_many([{"type": "t", "payload": i, "priority": p}
                             for i, p in enumerate(prios)])
        time.sleep(0.3)
        assert ran == []
        q.resume("t")
        wait_all(q, ids, "completed")
        assert ran == sorted(range(len(prios)), key=lambda i: (-prios[i], i))
    finally:
        w.stop(timeout=15)
        q.close()


@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_later_higher_priority_overtakes_waiting_jobs(postgres_url, loop_kind):
    q = gq.Queue(postgres_url)
    ran = []

    @q.handler("t")
    def t(job):
        ran.append(job.payload)
        if job.payload == "first":
            q.submit_many([{"type": "t", "payload": f"low{i}"} for i in range(3)])
            q.submit("t", "high", priority=1)

    w = InProcessWorker(q, loop_kind, concurrency=1).start()
    try:
        for _ in range(5):
            ran.clear()
            first = q.submit("t", "first")
            wait_until(lambda: len(ran) == 5, 10, what="five runs")
            assert ran == ["first", "high", "low0", "low1", "low2"]
            assert q.get(first).state is gq.State.COMPLETED
    finally:
        w.stop(timeout=15)
        q.close()
