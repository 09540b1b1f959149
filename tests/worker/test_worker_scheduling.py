"""Scheduling seen from a serving worker: periodic jobs across processes and a
restart, lifetime of a running job, delayed jobs kept off the dispatch path,
priority among due jobs, and a wall clock stepped back an hour.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import gq
from gq.store.lmdb import keys as K
from worker_harness import wait_all, wait_state, wait_until


# -- periodic ------------------------------------------------------------------

def _ticks(q):
    return q.list(type="tick", limit=10_000)


def test_periodic_occurrences_once_with_two_workers_and_a_restart(data_dir, spawn_worker):
    env = {"GQ_TEST_EVERY": "0.5"}
    with gq.Queue(data_dir) as q:
        for phase in range(2):
            workers = [spawn_worker("app_periodic:q", "--concurrency", "4", env=env)
                       for _ in range(2)]
            for w in workers:
                w.wait_started()
            before = len(_ticks(q))
            wait_until(lambda: len([j for j in _ticks(q) if j.state.value == "completed"])
                       >= before + 4, 30, interval=0.05, what=f"4 more ticks in phase {phase}")
            for w in workers:
                assert w.terminate() == 0, w.output
                assert "Traceback" not in w.output
        jobs = _ticks(q)
        keys = [j.key for j in jobs]
        assert len(keys) == len(set(keys)), sorted(keys)      # each occurrence once
        stamps = [k.rsplit(":", 3)[-3:] for k in keys]
        assert stamps == sorted(stamps)                       # in occurrence order
        assert all(j.result == j.key for j in jobs if j.state.value == "completed")


def test_cron_and_interval_occurrences():
    from datetime import datetime, timezone

    from gq.runtime.periodic import Schedule
    at = datetime(2026, 3, 1, 12, 7, 30, tzinfo=timezone.utc).timestamp()
    five = Schedule("*/5 * * * *", type="r")
    assert five.latest(at) == datetime(2026, 3, 1, 12, 5, tzinfo=timezone.utc).timestamp()
    assert five.latest(five.latest(at)) == five.latest(at)   # an occurrence is its own latest
    assert five.following(five.latest(at)) - five.latest(at) == 300
    every = Schedule(every=60, type="r")
    assert every.latest(at) == at - 30 and every.following(at - 30) == at + 30
    with pytest.raises(gq.ValidationError, match="not a valid cron"):
        Schedule("every five minutes", type="r")
    with pytest.raises(gq.ValidationError, match="not both"):
        Schedule("* * * * *", every=5, type="r")


# -- lifetime --------------------------------------------------------------------

def test_running_job_past_its_lifetime_is_dead_lettered_and_stopped(make_queue,
                                                                     start_worker):
    q = make_queue()
    started, stopped = threading.Event(), threading.Event()

    @q.handler("slow")
    async def slow(job):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    job_id = q.submit("slow", lifetime=0.5)
    start_worker(q, heartbeat_interval=0.05)
    assert started.wait(10)
    info = wait_state(q, job_id, "dead_letter", timeout=15)
    assert info.error.category.value == "timeout" and "lifetime" in info.error.message
    assert stopped.wait(10)
    time.sleep(0.2)
    assert q.get(job_id).state.value == "dead_letter"    # no late completion or retry


# -- delayed jobs ------------------------------------------------------------------

def test_due_jobs_start_in_priority_order(make_queue, start_worker):
    q = make_queue()
    order = []

    @q.handler("t")
    def t(job):
        order.append(job.payload)

    run_at = time.time() + 0.3
    ids = [q.submit("t", p, priority=p, run_at=run_at) for p in (1, 5, 3, 9, 7)]
    start_worker(q, concurrency=1)
    wait_all(q, ids, "completed")
    assert order == [9, 7, 5, 3, 1]


class _CountingCursor:
    def __init__(self, cur, seen):
        self._cur, self._seen = cur, seen

    def _note(self, key):
        if key:
            self._seen[bytes(key[:1])] = self._seen.get(bytes(key[:1]), 0) + 1

    def set_range(self, key):
        found = self._cur.set_range(key)
        if found:
            self._note(self._cur.key())
        return found

    def __iter__(self):
        for item in self._cur:
            self._note(item[0])
            yield item

    def iternext(self, *args, **kwargs):
        for item in self._cur.iternext(*args, **kwargs):
            self._note(item[0] if isinstance(item, tuple) else item)
            yield item

    def __enter__(self):
        self._cur.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cur.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._cur, name)


class _CountingTxn:
    def __init__(self, txn, seen):
        self._txn, self._seen = txn, seen

    def cursor(self, *args, **kwargs):
        return _CountingCursor(self._txn.cursor(*args, **kwargs), self._seen)

    def __enter__(self):
        self._txn.__enter__()
        return self

    def __exit__(self, *exc):
        return self._txn.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._txn, name)


class _CountingEnv:
    """The store's LMDB environment, counting every index key a cursor lands on,
    by key prefix."""

    def __init__(self, env):
        self._env, self.seen = env, {}

    def begin(self, *args, **kwargs):
        return _CountingTxn(self._env.begin(*args, **kwargs), self.seen)

    def __getattr__(self, name):
        return getattr(self._env, name)


@pytest.mark.lmdb_only("counts LMDB cursor reads; PostgreSQL reads its gq_jobs_delayed "
                       "index head the same way (next_due: min(run_at))")
@pytest.mark.parametrize("delayed", [0, 20_000])
def test_dispatch_never_scans_delayed_jobs(make_queue, start_worker, delayed):
    """Ready jobs are dispatched from the ready index; the delayed index is only
    asked for its first key (when is the next one due?), however big it is."""
    q = make_queue()

    @q.handler("t")
    def t(job):
        return None

    far = time.time() + 86_400
    for start in range(0, delayed, 5000):
        q.submit_many([{"type": "t", "run_at": far + i} for i in range(start, start + 5000)])
    ids = q.submit_many([{"type": "t", "priority": i % 3} for i in range(300)])
    store = q.store
    counting = store._env = _CountingEnv(store._env)
    calls = {"next_due": 0}
    real_next_due = store.next_due

    def next_due():
        calls["next_due"] += 1
        return real_next_due()
    store.next_due = next_due
    try:
        start_worker(q, concurrency=8)
        wait_all(q, ids, "completed")
    finally:
        store._env = counting._env
        del store.next_due
    delayed_reads = counting.seen.get(K.DELAYED, 0)
    print(f"{delayed} delayed: index keys read by prefix {counting.seen}, "
          f"next_due calls {calls['next_due']}")
    assert delayed_reads <= calls["next_due"]       # one key per "when is the next due?"
    if delayed:
        assert counting.seen.get(K.READY, 0) >= len(ids)


# -- clock safety ------------------------------------------------------------------

def test_wall_clock_stepped_back_an_hour_fires_no_timeout_and_reorders_nothing(
        make_queue, start_worker, monkeypatch):
    real_time = time.time
    offset = {"s": 0.0}
    monkeypatch.setattr(time, "time", lambda: real_time() + offset["s"])
    q = make_queue(visibility_timeout=2)
    order = []

    @q.handler("t", timeout=5)
    async def t(job):
        if not order:
            offset["s"] = -3600.0        # NTP steps the clock back in the first job
        order.append(job.payload)
        await asyncio.sleep(0.05)

    ids = [q.submit("t", i, priority=-i, lifetime=60) for i in range(10)]
    later = q.submit("t", "delayed", run_at=real_time() + 1.0, lifetime=2.0)
    start_worker(q, concurrency=1, heartbeat_interval=0.05)
    infos = wait_all(q, ids, "completed", timeout=30)
    assert order == list(range(10))                          # priority, then seq
    assert all(i.attempts == 1 and i.error is None for i in infos)
    # real time past `later`'s run_at and lifetime; the wall clock an hour before both
    wait_until(lambda: real_time() > q.get(later).created_at + 2.5, 10)
    time.sleep(0.3)   # a few heartbeats (sweeps) at the stepped clock
    assert q.get(later).state.value == "scheduled"           # not run early, not expired
    assert q.stats()["by_state"]["dead_letter"] == 0
