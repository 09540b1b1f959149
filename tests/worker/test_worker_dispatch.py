"""What a worker chooses to run: per-type concurrency limits, priority order (FIFO
within a priority), and paused types.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import gq
from worker_harness import wait_all, wait_state, wait_until


class Gauge:
    """Counts handlers running at once (thread-safe: sync handlers use it too)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.now = 0
        self.max = 0

    def __enter__(self):
        with self._lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def __exit__(self, *exc):
        with self._lock:
            self.now -= 1


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_per_type_concurrency_limit(make_queue, start_worker, kind):
    q = make_queue()
    limited, free = Gauge(), Gauge()

    if kind == "async":
        @q.handler("limited", concurrency=2)
        async def limited_handler(job):
            with limited:
                await asyncio.sleep(0.2)
            return job.payload
    else:
        @q.handler("limited", concurrency=2)
        def limited_handler(job):
            with limited:
                time.sleep(0.2)
            return job.payload

    @q.handler("free")
    async def free_handler(job):
        with free:
            await asyncio.sleep(0.2)
        return job.payload

    start_worker(q, concurrency=64)
    t0 = time.monotonic()
    lim = q.submit_many([{"type": "limited", "payload": i} for i in range(10)])
    unl = q.submit_many([{"type": "free", "payload": i} for i in range(10)])
    done_free = wait_all(q, unl, "completed", timeout=10)
    t_free = time.monotonic() - t0
    done_lim = wait_all(q, lim, "completed", timeout=10)
    t_lim = time.monotonic() - t0
    print(f"free type done in {t_free:.2f}s (max {free.max} at once), limited type in "
          f"{t_lim:.2f}s (max {limited.max} at once)")
    assert limited.max == 2
    assert free.max > 2, "the other type was held back by the limit"
    assert t_lim >= 0.2 * 10 / 2 * 0.9            # five rounds of two
    assert t_free < t_lim
    assert sorted(j.result for j in done_lim) == list(range(10))
    assert sorted(j.result for j in done_free) == list(range(10))


def test_worker_concurrency_bounds_all_types(make_queue, start_worker):
    q = make_queue()
    gauge = Gauge()

    @q.handler("a")
    async def a(job):
        with gauge:
            await asyncio.sleep(0.05)

    @q.handler("b")
    def b(job):
        with gauge:
            time.sleep(0.05)

    start_worker(q, concurrency=3)
    ids = q.submit_many([{"type": "ab"[i % 2]} for i in range(30)])
    wait_all(q, ids, "completed", timeout=15)
    assert gauge.max == 3


def priority_jobs():
    """(priority, tag) in submission order; expected run order: by priority
    descending, then submission order."""
    prios = [0, 5, -3, 5, 0, 10, 5, -3, 2**31 - 1, -(2**31), 0, 10]
    return [(p, f"p{p}#{n}") for n, p in enumerate(prios)]


def expected_order(jobs):
    return [tag for _, tag in sorted(jobs, key=lambda j: -j[0])]   # stable: FIFO


def test_priority_order_of_jobs_submitted_before_start(make_queue, start_worker):
    q = make_queue()
    ran = []

    @q.handler("t")
    async def t(job):
        ran.append(job.payload)

    jobs = priority_jobs()
    ids = [q.submit("t", tag, priority=p) for p, tag in jobs]
    start_worker(q, concurrency=1)
    wait_all(q, ids, "completed")
    assert ran == expected_order(jobs)


@pytest.mark.lmdb_only("waits on the worker's ready heap; a PostgreSQL worker keeps "
                       "none (the database picks): test_worker_postgres_dispatch.py")
def test_priority_order_after_resume(make_queue, start_worker):
    q = make_queue()
    ran = []

    @q.handler("t")
    def t(job):
        ran.append(job.payload)

    q.pause("t")
    w = start_worker(q, concurrency=1)
    jobs = priority_jobs()
    ids = [q.submit("t", tag, priority=p) for p, tag in jobs[:6]]
    ids += q.submit_many([{"type": "t", "payload": tag, "priority": p}
                          for p, tag in jobs[6:]])
    wait_until(lambda: len(w.worker.dispatcher.heap) == len(jobs), 5, what="the worker to see all")
    assert ran == []
    q.resume("t")
    wait_all(q, ids, "completed")
    assert ran == expected_order(jobs)


@pytest.mark.lmdb_only("waits on the worker's ready heap; a PostgreSQL worker keeps "
                       "none (the database picks): test_worker_postgres_dispatch.py")
def test_higher_priority_submitted_later_overtakes_waiting_jobs(make_queue, start_worker):
    """Every job here is committed (submit returned) before the running one
    finishes, so the freed slot must go to the highest priority among them —
    here an urgent follow-up the running handler submits just before returning.
    Ten rounds: the order must hold every time, not most of the time."""
    q = make_queue()
    ran = []
    later = []

    @q.handler("t")
    def t(job):
        ran.append(job.payload)
        if job.payload.startswith("first"):
            r = job.payload[len("first"):]
            later.extend(q.submit("t", f"low{i}{r}") for i in range(3))
            wait_until(lambda: len(w.worker.dispatcher.heap) == 3, 5, what="the worker to see them")
            later.append(q.submit("t", f"high{r}", priority=1))

    w = start_worker(q, concurrency=1)
    wrong = []
    for r in range(10):
        ran.clear()
        later.clear()
        wait_state(q, q.submit("t", f"first{r}"), "completed")
        wait_all(q, list(later), "completed")
        expected = [f"first{r}", f"high{r}", f"low0{r}", f"low1{r}", f"low2{r}"]
        if ran != expected:
            wrong.append(ran[:])
    assert wrong == [], f"{len(wrong)} of 10 rounds ran out of priority order, e.g. {wrong[0]}"


def test_paused_type_is_not_started_while_others_run(make_queue, start_worker):
    q = make_queue()
    ran = []

    @q.handler("t")
    async def t(job):
        ran.append(("t", job.payload))

    @q.handler("u")
    async def u(job):
        ran.append(("u", job.payload))

    start_worker(q, concurrency=4)
    q.pause("t")
    t_ids = [q.submit("t", i) for i in range(5)]      # ready before the u jobs
    u_ids = [q.submit("u", i) for i in range(5)]
    wait_all(q, u_ids, "completed")
    # the worker has dispatched after every t job was ready, and skipped them all
    more_u = q.submit("u", 5)
    wait_state(q, more_u, "completed")
    assert all(q.get(j).state is gq.State.SCHEDULED for j in t_ids)
    assert [r for r in ran if r[0] == "t"] == []

    t0 = time.monotonic()
    q.resume("t")
    wait_all(q, t_ids, "completed", timeout=5)
    print(f"resume -> all paused jobs completed in {time.monotonic() - t0:.2f}s")
    assert sorted(p for k, p in ran if k == "t") == list(range(5))
    assert q.paused() == frozenset()


def test_pause_is_persisted_for_a_worker_started_later(make_queue, start_worker):
    q = make_queue()
    ran = []

    @q.handler("t")
    async def t(job):
        ran.append(job.payload)

    @q.handler("u")
    async def u(job):
        ran.append(job.payload)

    q.pause("t")
    tid = q.submit("t", "t")
    start_worker(q)
    wait_state(q, q.submit("u", "u"), "completed")
    assert q.get(tid).state is gq.State.SCHEDULED
    q.resume("t")
    wait_state(q, tid, "completed", timeout=5)
    assert sorted(ran) == ["t", "u"]


@pytest.mark.parametrize("concurrency", [1, 8])
def test_no_job_of_a_type_starts_after_pause_returns(make_queue, start_worker, concurrency):
    """pause() is an operator's stop: once it has returned, a running worker starts
    no further job of that type (jobs already running finish)."""
    q = make_queue()
    starts = []

    @q.handler("t")
    async def t(job):
        starts.append(job.payload)
        await asyncio.sleep(0.02)

    @q.handler("u")
    async def u(job):
        return "u"

    ids = q.submit_many([{"type": "t", "payload": i} for i in range(60)])
    w = start_worker(q, concurrency=concurrency)
    wait_until(lambda: len(starts) >= 3 * concurrency, 10, what="a busy worker")
    q.pause("t")
    paused_at = time.time()
    running_then = sum(q.get(j).state is gq.State.RUNNING for j in ids)
    # every job running at the pause finishes; the worker keeps dispatching others
    wait_until(lambda: not w.worker._running, 5, what="the running jobs to finish")
    probe = q.submit("t", "probe", priority=100)
    wait_state(q, q.submit("u"), "completed")
    assert q.get(probe).state is gq.State.SCHEDULED
    # claimed after pause() returned: the claim's own timestamp (taken before its
    # commit) is later than the pause's return
    late = sorted(j.payload for j in (q.get(i) for i in ids)
                  if j.started_at is not None and j.started_at > paused_at)
    assert late == [], (f"{len(late)} jobs of the paused type were claimed after "
                        f"pause() returned: {late} (running just after: {running_then})")
    # and nothing was lost on the way: after resume every job runs, exactly once
    q.resume("t")
    wait_all(q, ids + [probe], "completed", timeout=10)
    assert sorted(starts, key=str) == sorted(list(range(60)) + ["probe"], key=str)
