"""Time: promote_due / apromote_due and next_due (delayed jobs), expire_lifetimes
and next_expiry (lifetimes), submit_occurrence (periodic schedules)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S
from gq.errors import LeaseLost, QueueFull
from gq.jobs import Category, JobError

from .conftest import claim, finish, ready_ids, run, spec, state_of, submit


class TestPromoteDue:
    def test_due_jobs_become_ready_in_due_order(self, store):
        t = time.time()
        # submitted in another order than they fall due
        late, early, middle = submit(store, spec(run_at=t + 30), spec(run_at=t + 10),
                                     spec(run_at=t + 20))
        (now,) = submit(store, spec())
        assert store.next_due() == pytest.approx(t + 10)
        assert store.promote_due(now=t + 5) == 0 and ready_ids(store) == [now]
        assert store.promote_due(now=t + 25) == 2
        assert ready_ids(store) == [now, early, middle]
        assert store.next_due() == pytest.approx(t + 30)
        assert state_of(store, late) == "scheduled"
        assert store.promote_due(now=t + 25) == 0
        assert store.promote_due(now=t + 30) == 1
        assert ready_ids(store) == [now, early, middle, late] and store.next_due() is None

    def test_a_promoted_job_is_claimed_like_any_ready_job(self, store):
        t = time.time()
        (job,) = submit(store, spec(run_at=t + 10))
        assert store.get(job).ready_seq == 0 and ready_ids(store) == []
        store.promote_due(now=t + 10)
        assert store.get(job).ready_seq > 0
        (rec,) = claim(store, job)
        assert (rec.state, rec.attempts) == (S.RUNNING, 1)

    def test_limit(self, store):
        t = time.time()
        ids = submit(store, *(spec(run_at=t + 10 + i) for i in range(5)))
        assert [store.promote_due(now=t + 100, limit=2) for _ in range(4)] == [2, 2, 1, 0]
        assert ready_ids(store) == ids

    def test_retries_waiting_for_their_run_at_are_promoted_too(self, store):
        t = time.time()
        first, second = run(store, spec(), spec())
        finish(store, second.id, S.SCHEDULED, run_at=t + 10)
        finish(store, first.id, S.SCHEDULED, run_at=t + 20)
        assert store.next_due() == pytest.approx(t + 10)
        assert store.promote_due(now=t + 30) == 2
        assert ready_ids(store) == [second.id, first.id]

    def test_cancelled_delayed_jobs_are_not_due(self, store):
        t = time.time()
        kept, cancelled = submit(store, spec(run_at=t + 10), spec(run_at=t + 5))
        store.cancel(cancelled, now=t)
        assert store.next_due() == pytest.approx(t + 10)
        assert store.promote_due(now=t + 60) == 1 and ready_ids(store) == [kept]

    def test_apromote_due(self, store):
        t = time.time()
        (job,) = submit(store, spec(run_at=t + 10))

        async def main():
            return await store.apromote_due(now=t + 11)
        assert asyncio.run(main()) == 1 and ready_ids(store) == [job]

    def test_nothing_delayed(self, store):
        submit(store, spec())
        assert store.next_due() is None
        assert store.promote_due(now=time.time() + 3600) == 0


class TestLifetimes:
    def test_jobs_past_their_lifetime_are_dead_lettered(self, store):
        t = time.time()
        short, long_ = submit(store, spec(lifetime=30), spec(lifetime=60), now=t)
        (plain,) = submit(store, spec(), now=t)
        assert store.next_expiry() == pytest.approx(store.get(short).created_at + 30)
        assert store.expire_lifetimes(now=t + 10) == []
        assert store.expire_lifetimes(now=t + 31) == [(short, "t", S.SCHEDULED)]
        dead = store.get(short)
        assert (dead.state, dead.finished_at) == (S.DEAD_LETTER, t + 31)
        error = JobError.from_json(dead.error)
        assert error.category == Category.TIMEOUT and "lifetime of 30s" in error.message
        assert store.next_expiry() == pytest.approx(store.get(long_).created_at + 60)
        assert ready_ids(store) == [long_, plain]
        assert store.counts() == {(S.DEAD_LETTER, "t"): 1, (S.SCHEDULED, "t"): 2}

    def test_every_unfinished_state_expires(self, store):
        t = time.time()
        (parent,) = submit(store, spec())
        due, delayed, pending = submit(store, spec(lifetime=10), spec(lifetime=10, delay=3600),
                                       spec(lifetime=10, depends_on=[parent]), now=t)
        (running,) = run(store, spec(lifetime=10))
        expired = store.expire_lifetimes(now=t + 3600)
        assert sorted(expired) == sorted([(due, "t", S.SCHEDULED), (delayed, "t", S.SCHEDULED),
                                          (pending, "t", S.PENDING),
                                          (running.id, "t", S.RUNNING)])
        assert {state_of(store, j) for j in (due, delayed, pending, running.id)} == \
            {"dead_letter"}
        assert store.next_due() is None and store.running_leases() == []
        # the running job's worker has lost it: its heartbeat says so, its outcome is refused
        assert store.extend([(running.id, 1)], owner="w",
                            lease_deadline=time.monotonic() + 60) == [running.id]
        with pytest.raises(LeaseLost):
            finish(store, running.id, S.COMPLETED)
        assert store.next_expiry() is None

    def test_finished_jobs_do_not_expire(self, store):
        (done,) = run(store, spec(lifetime=10))
        finish(store, done.id, S.COMPLETED)
        assert store.expire_lifetimes(now=time.time() + 3600) == []
        assert state_of(store, done.id) == "completed"

    def test_limit(self, store):
        t = time.time()
        submit(store, *(spec(lifetime=10) for _ in range(3)), now=t)
        assert [len(store.expire_lifetimes(now=t + 60, limit=2)) for _ in range(3)] == \
            [2, 1, 0]

    def test_no_lifetime_no_expiry(self, store):
        submit(store, spec())
        assert store.next_expiry() is None
        assert store.expire_lifetimes(now=time.time() + 10 ** 6) == []


class TestOccurrences:
    """Each occurrence of a periodic schedule is submitted once, whoever asks."""

    def occur(self, store, name, at, job_type="tick", **kw):
        """As the periodic scheduler asks: the occurrence's job carries its key."""
        kw.setdefault("key", f"periodic:{name}:{at}")
        return store.submit_occurrence(name, at, [spec(job_type, {"at": at}, **kw)],
                                       max_depth=None, now=time.time())

    def jobs(self, store):
        return [(rec.key, rec.state) for rec in store.list(type="tick")]

    def test_the_first_call_only_records_the_start(self, store):
        assert self.occur(store, "hourly", 1000.0) is None
        assert store.counts() == {}
        self.occur(store, "hourly", 2000.0)
        (rec,) = store.list(type="tick")
        assert (rec.payload, rec.state, rec.key) == \
            (b'{"at":2000.0}', S.SCHEDULED, "periodic:hourly:2000.0")
        assert ready_ids(store) == [rec.id]

    def test_the_new_jobs_id_is_returned(self, store):
        self.occur(store, "hourly", 1000.0)
        job = self.occur(store, "hourly", 2000.0)
        assert job is not None and [rec.id for rec in store.list(type="tick")] == [job]

    def test_an_occurrence_is_submitted_once(self, store):
        self.occur(store, "hourly", 1000.0)
        self.occur(store, "hourly", 2000.0)
        assert self.occur(store, "hourly", 2000.0) is None      # again
        assert self.occur(store, "hourly", 1500.0) is None      # an earlier one
        self.occur(store, "hourly", 3000.0)
        assert sorted(self.jobs(store)) == [("periodic:hourly:2000.0", S.SCHEDULED),
                                            ("periodic:hourly:3000.0", S.SCHEDULED)]

    def test_schedules_are_independent(self, store):
        self.occur(store, "a", 1000.0)
        self.occur(store, "b", 5000.0)
        self.occur(store, "a", 2000.0)
        assert self.occur(store, "b", 2000.0) is None
        assert self.jobs(store) == [("periodic:a:2000.0", S.SCHEDULED)]

    def test_a_depth_limit_is_applied(self, store):
        self.occur(store, "hourly", 1000.0)
        submit(store, spec())
        with pytest.raises(QueueFull):
            store.submit_occurrence("hourly", 2000.0, [spec("tick", key="k")], max_depth=1,
                                    now=time.time())
        assert self.jobs(store) == []
        # refused as a whole: the occurrence is still to be submitted
        self.occur(store, "hourly", 2000.0)
        assert self.jobs(store) == [("periodic:hourly:2000.0", S.SCHEDULED)]

    def test_the_cursor_survives_a_reopen(self, open_store):
        store = open_store()
        self.occur(store, "hourly", 1000.0)
        self.occur(store, "hourly", 2000.0)
        store.close()
        store = open_store()
        assert self.occur(store, "hourly", 2000.0) is None
        self.occur(store, "hourly", 3000.0)
        assert len(self.jobs(store)) == 2

    def test_a_job_without_a_key(self, store):
        assert self.occur(store, "plain", 1000.0, key=None) is None
        job = self.occur(store, "plain", 2000.0, key=None)
        assert job is not None and store.get(job).payload == b'{"at":2000.0}'
