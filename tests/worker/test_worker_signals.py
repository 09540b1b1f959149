"""Playbook 7 (restart during execution), with real `gq worker` processes and real
signals: SIGTERM drains running jobs (exit 0, the playbook's log lines), starts
nothing new, and after --shutdown-timeout leaves unfinished jobs `running`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

import pytest

import gq
from worker_harness import marker_path, wait_state, wait_until


@pytest.fixture
def q(location):
    queue = gq.Queue(location)
    yield queue
    queue.close()


def wait_marker(markers, jid, what, timeout=15.0):
    wait_until(lambda: os.path.exists(marker_path(markers, jid, what)), timeout,
               what=f"marker {jid}.{what}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_mid_job_drains_it(q, markers, spawn_worker, signum):
    # the console script once, `python -m gq.cli` everywhere else
    worker = spawn_worker("app_long:q", console_script=signum == signal.SIGTERM)
    worker.wait_started()
    jid = q.submit("sleep", {"seconds": 1.5})
    wait_marker(markers, jid, "started.1")
    t_signal = time.time()
    worker.signal(signum)
    worker.wait_for_log("Graceful shutdown initiated", 5)
    # submitted during the drain: must not be started by this worker
    late = q.submit("quick", "late")
    rc = worker.wait(15)
    t_exit = time.time()
    out = worker.output
    assert rc == 0, out
    assert "Graceful shutdown initiated" in worker.stderr
    assert "Waiting for 1 jobs to complete" in worker.stderr
    job = q.get(jid)
    assert job.state is gq.State.COMPLETED, out
    assert job.result["slept"] == 1.5 and job.attempts == 1
    assert t_signal < job.finished_at <= t_exit
    assert os.path.exists(marker_path(markers, jid, "finished"))
    late_job = q.get(late)
    assert late_job.state is gq.State.SCHEDULED and late_job.attempts == 0
    assert out.index("Graceful shutdown initiated") < out.index("Waiting for 1 jobs")
    assert "Traceback" not in out


def test_sigterm_when_idle_exits_at_once(spawn_worker):
    worker = spawn_worker("app_long:q")
    worker.wait_started()
    t0 = time.monotonic()
    assert worker.terminate(10) == 0
    assert time.monotonic() - t0 < 3
    assert "Graceful shutdown initiated" in worker.output
    assert "Waiting for" not in worker.output     # nothing was running


@pytest.mark.parametrize("job_type", ["sleep", "sleep.sync"])
def test_sigterm_past_shutdown_timeout_leaves_job_running(q, markers, spawn_worker,
                                                          job_type):
    worker = spawn_worker("app_long:q", "--shutdown-timeout", "1")
    worker.wait_started()
    jid = q.submit(job_type, {"seconds": 30})
    done = q.submit("quick", "before the signal")
    wait_state(q, done, "completed")
    wait_marker(markers, jid, "started.1")
    t0 = time.monotonic()
    worker.signal(signal.SIGTERM)
    rc = worker.wait(10)
    took = time.monotonic() - t0
    out = worker.output
    assert rc == 0, out
    assert 1.0 <= took < 5, f"exit took {took:.1f}s\n{out}"
    assert "Graceful shutdown initiated" in worker.stderr
    assert "Waiting for 1 jobs to complete" in worker.stderr
    assert "shutdown timeout (1s) reached" in worker.stderr
    job = q.get(jid)
    assert job.state is gq.State.RUNNING, out     # left for recovery
    assert job.attempts == 1 and job.result is None
    assert not os.path.exists(marker_path(markers, jid, "finished"))
    if job_type == "sleep":                       # an async handler was cancelled
        assert os.path.exists(marker_path(markers, jid, "cancelled"))
    assert q.get(done).state is gq.State.COMPLETED


@pytest.mark.slow
def test_job_interrupted_by_shutdown_timeout_is_rerun_after_restart(q, markers,
                                                                    spawn_worker):
    """Playbook 7 step 6 (and the Worker docstring): jobs a drain had to abandon
    "stay running and are rescheduled when a worker next starts". The restarted
    worker must run the job again (attempt 2) — its previous worker is gone."""
    env = {"GQ_TEST_VISIBILITY": "2"}    # a short lease, should recovery wait for it
    first = spawn_worker("app_long:q", "--shutdown-timeout", "0.5", env=env)
    first.wait_started()
    jid = q.submit("sleep", {"seconds": 2})
    wait_marker(markers, jid, "started.1")
    first.signal(signal.SIGTERM)
    assert first.wait(10) == 0
    assert q.get(jid).state is gq.State.RUNNING

    second = spawn_worker("app_long:q", env=env)
    second.wait_started()
    job = wait_state(q, jid, "completed", timeout=10)
    assert job.attempts == 2
    assert os.path.exists(marker_path(markers, jid, "started.2"))
    assert second.terminate() == 0


def test_a_claim_answered_after_the_stop_hands_its_jobs_back(make_queue, start_worker,
                                                             caplog):
    """A claim sent before the stop still takes jobs when it runs (on PostgreSQL
    the database picks them then). "Graceful shutdown initiated" is logged at
    once all the same: the jobs such a claim returns are handed back, scheduled
    with no attempt used, never started here. The claim is held at a gate (the
    real store's claim, delayed) to make the race certain."""
    q = make_queue()
    started = []

    @q.handler("t")
    async def t(job):
        started.append(job.payload)

    gate, entered = threading.Event(), threading.Event()
    real_claim = q.store.aclaim

    async def gated_claim(*args, **kwargs):
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        return await real_claim(*args, **kwargs)
    q.store.aclaim = gated_claim

    caplog.set_level(logging.INFO, logger="gq")
    w = start_worker(q, concurrency=4)
    first = q.submit("t", "first")
    assert entered.wait(10), "the worker never claimed"
    w.worker.stop()
    wait_until(lambda: "Graceful shutdown initiated" in caplog.text, 5,
               what="the shutdown log line while the claim is in flight")
    late = q.submit("t", "late")
    gate.set()
    w.stop(timeout=15)
    assert started == []
    for job_id in (first, late):
        job = q.get(job_id)
        assert job.state is gq.State.SCHEDULED and job.attempts == 0, job
    assert "handed back" in caplog.text and "Traceback" not in caplog.text
    assert q.stats()["by_state"]["running"] == 0


def _outcome_claim_answered_after_the_stop(q, start_worker, caplog):
    """Two jobs, concurrency 1: the first runs, and the commit of its outcome
    (afinish_many_and_claim) claims the second; that commit is held at a gate
    (the real store's write, delayed) until the stop began. Returns the ids
    (the one that ran, the one the late claim took)."""
    started = []

    @q.handler("t")
    async def t(job):
        started.append(job.id)

    gate, entered = threading.Event(), threading.Event()
    real = q.store.afinish_many_and_claim

    async def gated(*args, **kwargs):
        if kwargs.get("candidates"):     # the commit that also claims
            entered.set()
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        return await real(*args, **kwargs)
    q.store.afinish_many_and_claim = gated

    ids = {q.submit("t", "one"), q.submit("t", "two")}
    caplog.set_level(logging.INFO, logger="gq")
    w = start_worker(q, concurrency=1)
    assert entered.wait(10), "the outcome's commit never claimed"
    w.worker.stop()
    wait_until(lambda: "Graceful shutdown initiated" in caplog.text, 5,
               what="the shutdown log line while the commit is in flight")
    gate.set()
    w.stop(timeout=15)
    q.store.afinish_many_and_claim = real
    assert len(started) == 1, started
    ran = started[0]
    (late,) = ids - {ran}
    return ran, late


def test_a_claim_carried_by_an_outcome_after_the_stop_hands_its_jobs_back(
        make_queue, start_worker, caplog):
    """The second claim path: the commit of an outcome that also claims jobs,
    answered after the stop began. The outcome is recorded; the jobs it claimed
    are handed back, scheduled with no attempt used, never started here."""
    q = make_queue()
    ran, late = _outcome_claim_answered_after_the_stop(q, start_worker, caplog)
    assert q.get(ran).state is gq.State.COMPLETED
    job = q.get(late)
    assert job.state is gq.State.SCHEDULED and job.attempts == 0, job
    assert "handed back" in caplog.text and "Traceback" not in caplog.text
    assert q.stats()["by_state"]["running"] == 0


def test_another_worker_runs_a_handed_back_job(make_queue, start_worker, caplog):
    """A job handed back at a stop runs on the next worker, as its first attempt."""
    q = make_queue()
    ran, late = _outcome_claim_answered_after_the_stop(q, start_worker, caplog)
    start_worker(q, concurrency=1)
    job = wait_state(q, late, gq.State.COMPLETED, timeout=15)
    assert job.attempts == 1, job
    assert q.get(ran).state is gq.State.COMPLETED
