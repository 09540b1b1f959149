"""gq.Snooze: a handler puts its job back to `scheduled` for a while without
using an attempt up (its max_attempts grows by one per snooze, as River's
JobSnooze), keeping its last error; counted by gq_jobs_snoozed_total."""

from __future__ import annotations

import time

import pytest

import gq
from gq import metrics as M
from worker_harness import wait_state


def snoozed_count(job_type: str) -> float:
    return M.JOBS_SNOOZED.labels(job_type)._value.get()


def test_a_snooze_uses_no_attempt(make_queue, start_worker):
    q = make_queue()
    starts = []

    @q.handler("poll", max_attempts=1)
    def poll(job):                       # a sync handler: Snooze crosses the thread
        starts.append(time.time())
        if len(starts) < 3:
            raise gq.Snooze(0.2)
        return {"after": len(starts)}

    before = snoozed_count("poll")
    start_worker(q)
    job = wait_state(q, q.submit("poll"), "completed")
    assert job.result == {"after": 3}
    assert (job.attempts, job.max_attempts) == (3, 3)
    assert snoozed_count("poll") - before == 2
    assert all(b - a >= 0.2 for a, b in zip(starts, starts[1:])), starts


def test_a_snooze_keeps_the_last_error_and_retries_still_count(make_queue, start_worker):
    q = make_queue()
    attempts = []

    @q.handler("flaky", max_attempts=2, backoff_base=0.01)
    async def flaky(job):
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise gq.TemporaryError("upstream busy")
        if job.attempt == 2:
            raise gq.Snooze(0)
        raise gq.TemporaryError("upstream down")

    start_worker(q)
    job = wait_state(q, q.submit("flaky"), "dead_letter")
    # two failed attempts allowed, one snoozed in between: three runs in all
    assert attempts == [1, 2, 3]
    assert (job.attempts, job.max_attempts) == (3, 3)
    assert job.error.message == "TemporaryError: upstream down"


def test_a_snooze_seen_by_a_result_waiter_in_another_process(location, spawn_worker):
    spawn_worker("app_results:q").wait_started()
    with gq.Queue(location) as q:
        job = q.submit("snoozy")
        assert q.result(job, timeout=30) == 3
        assert q.get(job).max_attempts == 3


@pytest.mark.parametrize("seconds", [-1, float("inf"), "5", None, True])
def test_bad_snoozes_are_refused(seconds):
    with pytest.raises(gq.ValidationError, match="Snooze takes a number of seconds"):
        gq.Snooze(seconds)
