"""Waiting for results (`Queue.result`, `Queue.aresult`) from another process
than the worker's, on both stores: the waiter is woken by the commit that ends
the job. The safety-net re-read is switched off here (an hour), so a wait that
returns was woken by the store's wake-up, not by polling."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time

import pytest

import gq
from gq import results
from worker_harness import run_cli


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch):
    monkeypatch.setattr(results, "RECHECK_INTERVAL", 3600.0)


@pytest.fixture
def queue_and_worker(location, spawn_worker):
    worker = spawn_worker("app_results:q", "--concurrency", "64")
    worker.wait_started()
    with gq.Queue(location) as q:
        yield q, worker


def test_results_from_another_process(queue_and_worker):
    """One worker process for the endings that return: waited for once, already
    ended, from 32 threads at once, and from coroutines that keep their loop."""
    q, _ = queue_and_worker
    job = q.submit("add", {"a": 2, "b": 3, "sleep": 0.2})
    assert q.result(job, timeout=30) == 5
    assert q.result(job) == 5          # ended already: no wait at all

    jobs = q.submit_many([{"type": "add", "payload": {"a": i, "b": i, "sleep": 0.1}}
                          for i in range(32)])
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda j: q.result(j, timeout=60), jobs))
    assert got == [2 * i for i in range(32)]

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        jobs = [q.submit("add", {"a": i, "b": 1, "sleep": 0.3}) for i in range(5)]
        tick = asyncio.create_task(ticker())
        got = await asyncio.gather(*(q.aresult(j, timeout=30) for j in jobs))
        tick.cancel()
        return got, ticks
    got, ticks = asyncio.run(main())
    assert got == [1, 2, 3, 4, 5]
    assert ticks >= 5, "the loop did not run while the results were awaited"


def test_endings_other_than_completed(queue_and_worker):
    """failed, dead_letter and cancelled raise JobFailed with the job's info; a
    job that does not end in time raises TimeoutError saying what it does."""
    q, _ = queue_and_worker
    job = q.submit("fail", {"x": 1})
    with pytest.raises(gq.JobFailed) as e:
        q.result(job, timeout=30)
    info = e.value.info
    assert info.id == job and info.state is gq.State.FAILED
    assert info.error.category is gq.Category.PERMANENT
    assert str(e.value) == (f"job {job!r} ended failed (permanent: PermanentError: "
                            "cannot do {'x': 1})")

    job = q.submit("flaky")
    with pytest.raises(gq.JobFailed) as e:
        q.result(job, timeout=30)
    assert e.value.info.state is gq.State.DEAD_LETTER
    assert e.value.info.error.category is gq.Category.TEMPORARY

    job = q.submit("wait")
    threading.Timer(0.3, q.cancel, (job,)).start()
    with pytest.raises(gq.JobFailed) as e:
        q.result(job, timeout=30)
    assert e.value.info.state is gq.State.CANCELLED
    assert str(e.value) == f"job {job!r} ended cancelled"

    job = q.submit("add", {"a": 1, "b": 1}, run_at=time.time() + 3600)
    with pytest.raises(TimeoutError) as e:
        q.result(job, timeout=0.2)
    assert str(e.value) == (f"job {job!r} did not end within 0.2s (it is scheduled); "
                            "wait longer, or `gq inspect` it to see why")
    with pytest.raises(TimeoutError):
        asyncio.run(q.aresult(job, timeout=0))


def test_bad_arguments_and_unknown_jobs(make_queue):
    q = make_queue()
    with pytest.raises(gq.JobNotFound):
        q.result("no-such-job", timeout=1)
    with pytest.raises(gq.JobNotFound):
        asyncio.run(q.aresult("no-such-job", timeout=1))
    job = q.submit("t")
    with pytest.raises(gq.ValidationError, match="timeout must be zero or more seconds"):
        q.result(job, timeout=-1)
    with pytest.raises(gq.ValidationError, match="job id must be a string"):
        q.result(42)


def test_gq_result(queue_and_worker, location):
    q, _ = queue_and_worker
    done = q.submit("add", {"a": 20, "b": 22, "sleep": 0.2})
    result = run_cli("result", done, "--data", location, "--timeout", "30s")
    assert (result.returncode, result.stdout, result.stderr) == (0, "42\n", "")
    failed = q.submit("fail", {"x": 2})
    result = run_cli("result", failed, "--data", location)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"gq result: job {failed!r} ended failed (permanent: "
                             "PermanentError: cannot do {'x': 2})\n")
    later = q.submit("add", {"a": 1, "b": 1}, run_at=time.time() + 3600)
    result = run_cli("result", later, "--data", location, "--timeout", "0.1")
    assert result.returncode == 124
    assert "did not end within 0.1s (it is scheduled)" in result.stderr


def test_a_wait_with_more_than_1024_descriptors_open(make_queue, start_worker):
    """A busy server holds many sockets: the waiter's own descriptor may be past
    select()'s 1024 limit, which poll() does not have."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1300), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        q = make_queue()
        q.handler("add")(lambda job: job.payload["a"] + job.payload["b"])
        start_worker(q)
        job = q.submit("add", {"a": 1, "b": 2}, delay=0.2)
        assert q.result(job, timeout=30) == 3
    finally:
        for fd in held:
            os.close(fd)
