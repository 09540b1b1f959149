"""Cancelling a running job: from another process (`gq cancel`) the worker
subprocess stops the handler within moments and keeps serving; in process, a
handler that ignores the cancellation cannot complete the job afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import gq
from worker_harness import marker_path, run_cli, wait_state, wait_until


def test_cancel_from_another_process_stops_the_handler(location, markers, spawn_worker):
    q = gq.Queue(location)
    try:
        worker = spawn_worker("app_long:q")
        worker.wait_started()
        jid = q.submit("sleep", {"seconds": 3600})
        wait_until(lambda: os.path.exists(marker_path(markers, jid, "started.1")), 15,
                   what="the handler to start")
        assert q.get(jid).state is gq.State.RUNNING

        t0 = time.monotonic()
        out = run_cli("cancel", jid, "--data", location)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"{jid}: cancelled"
        assert q.get(jid).state is gq.State.CANCELLED     # at once, in the store
        wait_until(lambda: os.path.exists(marker_path(markers, jid, "cancelled")), 3,
                   what="the handler to be cancelled")
        took = time.monotonic() - t0
        print(f"cancel -> handler stopped in {took:.2f}s (including `gq cancel` start-up)")
        worker.wait_for_log(f"job {jid} (sleep) attempt 1 stopped: cancelled", 3)

        job = q.get(jid)
        assert job.state is gq.State.CANCELLED and job.attempts == 1
        assert job.result is None and job.finished_at is not None
        assert not os.path.exists(marker_path(markers, jid, "finished"))

        # the worker keeps serving
        after = [q.submit("quick", i) for i in range(5)]
        for i, a in enumerate(after):
            assert wait_state(q, a, "completed").result["echo"] == i
        assert worker.proc.poll() is None
        assert worker.terminate() == 0
        assert "could not record" not in worker.output
        assert "Traceback" not in worker.output
    finally:
        q.close()


def test_cancel_of_a_running_sync_handler_from_another_process(location, markers,
                                                                spawn_worker):
    """A sync handler cannot be interrupted: the job is cancelled in the store at
    once, the worker abandons the thread, and the handler's later return does not
    resurrect the job."""
    q = gq.Queue(location)
    try:
        worker = spawn_worker("app_long:q", "--concurrency", "1")
        worker.wait_started()
        jid = q.submit("sleep.sync", {"seconds": 1.5})
        wait_until(lambda: os.path.exists(marker_path(markers, jid, "started.1")), 15,
                   what="the handler to start")
        out = run_cli("cancel", jid, "--data", location)
        assert out.returncode == 0, out.stderr
        worker.wait_for_log(f"job {jid} (sleep.sync) attempt 1 stopped: cancelled", 3)
        # its slot is free (concurrency 1) while its thread still sleeps
        nxt = q.submit("quick", "next")
        wait_state(q, nxt, "completed", timeout=5)
        wait_until(lambda: os.path.exists(marker_path(markers, jid, "finished")), 10,
                   what="the abandoned sync handler to return")
        another = q.submit("quick", "after the late return")
        wait_state(q, another, "completed", timeout=5)
        job = q.get(jid)
        assert job.state is gq.State.CANCELLED and job.result is None
        assert worker.terminate() == 0
    finally:
        q.close()


def test_handler_that_swallows_cancellation_cannot_complete(make_queue, start_worker,
                                                            caplog):
    """The stale completion of a cancelled attempt is refused by the store's fence
    (LeaseLost) and the job stays cancelled; the worker carries on."""
    q = make_queue()
    state = {}
    started = threading.Event()

    @q.handler("stubborn")
    async def stubborn(job):
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["swallowed"] = True
            await asyncio.sleep(0.05)         # "finish up", then report success
        return "I finished anyway"

    @q.handler("quick")
    async def quick(job):
        return job.payload

    caplog.set_level(logging.INFO, logger="gq.worker")
    w = start_worker(q, heartbeat_interval=0.1)
    jid = q.submit("stubborn")
    assert started.wait(10)
    q.cancel(jid)
    wait_until(lambda: state.get("swallowed"), 5, what="the handler to be cancelled")
    follow = q.submit("quick", 7)
    assert wait_state(q, follow, "completed").result == 7
    wait_until(lambda: jid not in w.worker._running, 5, what="the worker to let go")
    job = q.get(jid)
    assert job.state is gq.State.CANCELLED
    assert job.result is None and job.attempts == 1
    refused = [r.getMessage() for r in caplog.records if r.name == "gq.worker"
               and "refused" in r.getMessage()]
    assert refused == [f"completion of job {jid!r} attempt 1 refused: the lease is no "
                       "longer held (the job is now cancelled, attempt 1)"], refused
    # only the quick job's outcome was recorded (counted once its commit returned)
    wait_until(lambda: not w.worker._running, 5, what="the worker to let go of both")
    assert w.worker.completed == 1


def test_cancel_of_a_scheduled_job_never_runs_it(make_queue, start_worker):
    q = make_queue()
    ran = []

    @q.handler("t")
    async def t(job):
        ran.append(job.payload)

    q.pause("t")
    w = start_worker(q)
    ids = [q.submit("t", i) for i in range(4)]
    q.cancel(ids[1])
    q.cancel(ids[2])
    q.resume("t")
    wait_state(q, ids[0], "completed")
    wait_state(q, ids[3], "completed")
    assert sorted(ran) == [0, 3]
    wait_until(lambda: not w.worker._running, 5, what="the worker to let go of both")
    assert w.worker.completed == 2
