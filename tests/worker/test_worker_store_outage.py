"""A worker whose store fails for a while (a PostgreSQL restart, a network cut)
keeps serving, and a claim that committed though the worker got an error
(its answer lost) does not leave jobs running with nobody running them until
their lease runs out. On both backends; the PostgreSQL postmaster really
killed under load: tests/crash/test_postgres_kill.py."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from gq.errors import PersistenceError
from gq.runtime.maintenance import StateCheck
from worker_harness import wait_state


def fail_while(flag, real):
    def broken(*args, **kwargs):
        if flag.is_set():
            raise PersistenceError("PostgreSQL read failed: the server is away")
        return real(*args, **kwargs)
    return broken


def test_a_worker_keeps_serving_while_its_store_fails(make_queue, start_worker, monkeypatch):
    q = make_queue()
    q.handler("t")(lambda job: job.payload)
    away = threading.Event()
    away.set()
    for name in ("next_due", "states_of", "paused_types"):
        monkeypatch.setattr(q.store, name, fail_while(away, getattr(q.store, name)))
    w = start_worker(q)
    time.sleep(1.5)            # every dispatch fails meanwhile
    assert w.alive, "the worker stopped serving when its store failed"
    away.clear()
    job = wait_state(q, q.submit("t", 7), "completed")
    assert job.result == 7


def test_a_state_check_the_store_fails_waits_for_the_next_one():
    store = SimpleNamespace(states_of=fail_while(SimpleNamespace(is_set=lambda: True), None))
    held = {"j": SimpleNamespace(record=SimpleNamespace(attempts=1))}
    stopped = []
    check = StateCheck(SimpleNamespace(store=store), "me", held,
                       lambda *a: stopped.append(a), 0.0)
    asyncio.run(check.check())      # logged, not raised: the heartbeat task goes on
    assert stopped == []


def test_a_claim_whose_answer_was_lost_is_handed_back(make_queue, start_worker,
                                                      monkeypatch):
    q = make_queue()              # visibility_timeout: 300 s
    q.handler("t")(lambda job: job.attempt)
    real = q.store.aclaim
    lost = []

    async def claim_then_fail(*args, **kwargs):
        claimed = await real(*args, **kwargs)
        if claimed and not lost:
            lost.extend(r.id for r in claimed)
            raise PersistenceError("PostgreSQL write failed: server closed the connection "
                                   "unexpectedly")
        return claimed
    monkeypatch.setattr(q.store, "aclaim", claim_then_fail)
    job_id = q.submit("t")
    start_worker(q)
    job = wait_state(q, job_id, "completed", timeout=10)
    assert lost == [job_id]
    assert job.attempts == 1 and job.result == 1   # the unused attempt was given back
