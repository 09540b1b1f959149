"""Playbook 4 (stuck job): a handler that hangs — an async one awaiting forever, a
sync one blocked in time.sleep — is timed out (category `timeout`) while other
jobs keep completing, its slot is freed, and the worker still stops promptly.
"""

from __future__ import annotations

import asyncio
import threading
import time

import gq
from worker_harness import wait_all, wait_state, wait_until

HANG_TIMEOUT = 2.0


def test_hung_handlers_time_out_while_others_complete(make_queue, start_worker):
    q = make_queue()
    async_exit = {}
    gate = threading.Event()
    sync_thread = {}

    @q.handler("hang.async", timeout=HANG_TIMEOUT, max_attempts=1)
    async def hang_async(job):
        try:
            await asyncio.Event().wait()       # nothing ever sets it
        except asyncio.CancelledError:
            async_exit["cancelled_at"] = time.monotonic()
            raise

    @q.handler("hang.sync", timeout=HANG_TIMEOUT, max_attempts=1)
    def hang_sync(job):
        sync_thread["thread"] = threading.current_thread()
        time.sleep(1000)                       # cannot be interrupted

    @q.handler("quick")
    async def quick(job):
        await asyncio.sleep(0.001)
        return job.payload * 2

    @q.handler("block")
    async def block(job):
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return "released"

    w = start_worker(q, concurrency=3)
    # the hung jobs first (higher priority), then a stream of quick ones
    hung_async = q.submit("hang.async", priority=10)
    hung_sync = q.submit("hang.sync", priority=10)
    wait_state(q, hung_async, "running")
    wait_state(q, hung_sync, "running")
    t0 = time.monotonic()
    quick_ids = q.submit_many([{"type": "quick", "payload": i} for i in range(50)])
    done = wait_all(q, quick_ids, "completed", timeout=HANG_TIMEOUT * 0.9)
    assert [j.result for j in done] == [2 * i for i in range(50)]
    # all 50 ran on the one free slot while both hung handlers held theirs
    assert time.monotonic() - t0 < HANG_TIMEOUT
    assert q.get(hung_async).state is gq.State.RUNNING
    assert q.get(hung_sync).state is gq.State.RUNNING

    for jid in (hung_async, hung_sync):
        job = wait_state(q, jid, "dead_letter", timeout=HANG_TIMEOUT + 5)
        assert job.attempts == 1
        assert job.error.category is gq.Category.TIMEOUT
        assert job.error.message == f"execution timeout after {HANG_TIMEOUT:g}s; handler cancelled"
        assert HANG_TIMEOUT <= job.finished_at - job.started_at < HANG_TIMEOUT + 2
    assert "cancelled_at" in async_exit          # the async handler saw the cancellation
    assert sync_thread["thread"].is_alive()      # the sync one is still asleep...

    # ...yet all three slots are free again: three blocking jobs run at once
    blockers = q.submit_many([{"type": "block"} for _ in range(3)])
    wait_until(lambda: all(q.get(j).state is gq.State.RUNNING for j in blockers), 5,
               what="three jobs running at once after the timeouts")
    gate.set()
    wait_all(q, blockers, "completed", timeout=5)

    # and the worker stops promptly although a handler thread is still sleeping
    took = w.stop(timeout=10)
    assert took < 3, f"stop() took {took:.1f}s"
    assert sync_thread["thread"].is_alive()


def test_timed_out_sync_handler_finishing_later_changes_nothing(make_queue, start_worker):
    """The abandoned thread of a timed-out sync handler returns later: its value is
    dropped, the recorded timeout stands."""
    q = make_queue()
    release = threading.Event()
    returned = threading.Event()

    @q.handler("late", timeout=0.3, max_attempts=1)
    def late(job):
        release.wait(30)
        returned.set()
        return "too late"

    @q.handler("quick")
    def quick(job):
        return "ok"

    start_worker(q, concurrency=2)
    jid = q.submit("late")
    job = wait_state(q, jid, "dead_letter")
    assert job.error.category is gq.Category.TIMEOUT
    release.set()
    assert returned.wait(5)
    after = q.submit("quick")
    wait_state(q, after, "completed")     # the loop has run well past the late return
    job = q.get(jid)
    assert job.state is gq.State.DEAD_LETTER and job.result is None
    assert job.error.category is gq.Category.TIMEOUT
