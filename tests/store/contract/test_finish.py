"""finish / afinish / afinish_many_and_claim: the outcome of an attempt, fenced
by (owner, attempt), and what completing a job releases."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S
from gq.errors import JobNotFound, LeaseLost
from gq.store.api import Finish

from .conftest import (LEASE, candidates, claim, finish, ready_ids, run, spec, state_of,
                       submit)


class TestOutcomes:
    def test_completed_keeps_the_result_bytes(self, store):
        (rec,) = run(store)
        now = time.time()
        finish(store, rec.id, S.COMPLETED, now=now, result=b'{"sum":3}\x00\xff')
        done = store.get(rec.id)
        assert (done.state, done.result, done.error, done.attempts) == \
            (S.COMPLETED, b'{"sum":3}\x00\xff', b"", 1)
        assert (done.finished_at, done.lease_owner, done.ready_seq) == (now, "", 0)
        assert store.counts() == {(S.COMPLETED, "t"): 1}
        assert store.running_leases() == [] and ready_ids(store) == []

    def test_a_retry_due_later_waits_for_promote_due(self, store):
        (rec,) = run(store)
        now = time.time()
        finish(store, rec.id, S.SCHEDULED, now=now, run_at=now + 30, error=b'{"e":1}')
        again = store.get(rec.id)
        assert (again.state, again.attempts, again.run_at, again.error, again.lease_owner) == \
            (S.SCHEDULED, 1, now + 30, b'{"e":1}', "")
        assert ready_ids(store) == [] and store.next_due() == pytest.approx(now + 30)
        assert store.promote_due(now=now + 29) == 0 and ready_ids(store) == []
        assert store.promote_due(now=now + 31) == 1
        assert ready_ids(store) == [rec.id]
        (claimed,) = claim(store, rec.id)
        assert claimed.attempts == 2

    def test_a_retry_due_now_is_ready_at_once(self, store):
        (rec,) = run(store)
        first_seq = rec.seq
        finish(store, rec.id, S.SCHEDULED, run_at=0.0)
        again = store.get(rec.id)
        assert again.state == S.SCHEDULED and again.ready_seq > 0 and again.seq == first_seq
        assert ready_ids(store) == [rec.id] and store.next_due() is None

    @pytest.mark.parametrize("state", [S.FAILED, S.DEAD_LETTER])
    def test_failed_and_dead_letter_keep_the_error(self, store, state):
        (rec,) = run(store)
        now = time.time()
        finish(store, rec.id, state, now=now, error=b'{"category":"handler"}')
        ended = store.get(rec.id)
        assert (ended.state, ended.error, ended.finished_at, ended.lease_owner) == \
            (state, b'{"category":"handler"}', now, "")
        assert store.counts() == {(state, "t"): 1}
        assert ready_ids(store) == [] and store.running_leases() == []

    def test_afinish(self, store):
        first, second = run(store, spec(), spec())

        async def main():
            await store.afinish(first.id, attempt=1, owner="w", state=S.COMPLETED,
                                now=time.time(), result=b"1")
            await store.afinish(second.id, attempt=1, owner="w", state=S.SCHEDULED,
                                now=time.time(), run_at=time.time() + 60)
            with pytest.raises(LeaseLost):
                await store.afinish(first.id, attempt=1, owner="w", state=S.COMPLETED,
                                    now=time.time())
        asyncio.run(main())
        assert (state_of(store, first.id), store.get(first.id).result) == ("completed", b"1")
        assert state_of(store, second.id) == "scheduled" and ready_ids(store) == []


class TestFencing:
    """Only the attempt that holds the lease may record an outcome."""

    def assert_refused(self, store, job_id, **how):
        before = store.get(job_id)
        with pytest.raises(LeaseLost, match=f"completion of job {job_id!r}"):
            finish(store, job_id, S.COMPLETED, result=b"late", **how)
        after = store.get(job_id)
        assert (after.state, after.attempts, after.lease_owner, after.result) == \
            (before.state, before.attempts, before.lease_owner, before.result)

    def test_another_owner_is_refused(self, store):
        (rec,) = run(store, owner="holder")
        self.assert_refused(store, rec.id, owner="intruder", attempt=1)
        finish(store, rec.id, S.COMPLETED, owner="holder")

    def test_another_attempt_is_refused(self, store):
        (rec,) = run(store)
        finish(store, rec.id, S.SCHEDULED)
        claim(store, rec.id)                       # attempt 2 holds the lease now
        self.assert_refused(store, rec.id, attempt=1)
        self.assert_refused(store, rec.id, attempt=3)
        finish(store, rec.id, S.COMPLETED, attempt=2)

    def test_a_finished_job_is_refused(self, store):
        (rec,) = run(store)
        finish(store, rec.id, S.COMPLETED, result=b"first")
        self.assert_refused(store, rec.id, attempt=1)
        assert store.get(rec.id).result == b"first"

    def test_a_cancelled_or_reclaimed_job_is_refused(self, store):
        cancelled, reclaimed = run(store, spec(), spec())
        store.cancel(cancelled.id, now=time.time())
        assert store.reclaim_owner("w", now=time.time()) == [reclaimed.id]
        self.assert_refused(store, cancelled.id, attempt=1)
        self.assert_refused(store, reclaimed.id, attempt=1)
        assert state_of(store, cancelled.id) == "cancelled"
        assert state_of(store, reclaimed.id) == "scheduled"

    def test_an_unknown_job(self, store):
        with pytest.raises(JobNotFound):
            store.finish("ghost", attempt=1, owner="w", state=S.COMPLETED, now=time.time())


class TestDependents:
    def test_completing_a_job_releases_its_dependent(self, store):
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id]))
        assert state_of(store, child) == "pending" and ready_ids(store) == []
        finish(store, parent.id, S.COMPLETED)
        assert state_of(store, child) == "scheduled" and ready_ids(store) == [child]
        assert store.waiting_on(child) == ([], [])

    def test_the_last_dependency_to_complete_releases_it(self, store):
        a, b = run(store, spec(), spec())
        (child,) = submit(store, spec(depends_on=[a.id, b.id]))
        finish(store, a.id, S.COMPLETED)
        assert state_of(store, child) == "pending"
        assert store.waiting_on(child)[0] == [(b.id, "running")]
        finish(store, b.id, S.COMPLETED)
        assert state_of(store, child) == "scheduled" and ready_ids(store) == [child]

    def test_a_dependent_due_later_is_released_delayed(self, store):
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id], delay=3600))
        finish(store, parent.id, S.COMPLETED)
        assert state_of(store, child) == "scheduled" and ready_ids(store) == []
        assert store.next_due() == pytest.approx(store.get(child).run_at)

    @pytest.mark.parametrize("state", [S.SCHEDULED, S.FAILED, S.DEAD_LETTER])
    def test_other_outcomes_release_nothing(self, store, state):
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id]))
        finish(store, parent.id, state, run_at=time.time() + 60)
        assert state_of(store, child) == "pending"
        assert store.blocked_count() == (0 if state == S.SCHEDULED else 1)


class TestFinishManyAndClaim:
    """A busy worker's one commit: outcomes of the jobs that ended, and a claim
    for their slots. A refused outcome stops neither the others nor the claim."""

    def call(self, store, finishes, named=(), owner="w"):
        async def main():
            return await store.afinish_many_and_claim(
                finishes, owner=owner, now=time.time(), candidates=list(named),
                lease_deadline=time.monotonic() + LEASE)
        return asyncio.run(main())

    def test_outcomes_and_a_claim_in_one_call(self, store):
        done, retried, failed = run(store, spec(), spec(), spec())
        (waiting,) = submit(store, spec("next"))
        later = time.time() + 60
        refused, claimed = self.call(store, [
            (done.id, 1, S.COMPLETED, b"ok", b"", 0.0),
            (retried.id, 1, S.SCHEDULED, b"", b'{"e":1}', later),
            (failed.id, 1, S.FAILED, b"", b'{"e":2}', 0.0)], candidates(store, waiting))
        assert refused == {}
        assert [(rec.id, rec.state, rec.attempts) for rec in claimed] == \
            [(waiting, S.RUNNING, 1)]
        assert (state_of(store, done.id), store.get(done.id).result) == ("completed", b"ok")
        assert (state_of(store, retried.id), store.get(retried.id).run_at) == \
            ("scheduled", later)
        assert (state_of(store, failed.id), store.get(failed.id).error) == \
            ("failed", b'{"e":2}')

    def test_refused_outcomes_stop_neither_the_others_nor_the_claim(self, store):
        stolen, stale, cancelled = run(store, spec(), spec(), spec())
        store.reclaim_owner("w", now=time.time())       # their first attempts' leases go
        claim(store, stolen.id, owner="other")
        claim(store, stale.id)                          # "w" again, attempt 2
        (good,) = run(store)
        store.cancel(cancelled.id, now=time.time())
        (waiting,) = submit(store, spec("next"))
        refused, claimed = self.call(store, [
            (stolen.id, 1, S.COMPLETED, b"late", b"", 0.0),
            (stale.id, 1, S.COMPLETED, b"late", b"", 0.0),
            ("ghost", 1, S.COMPLETED, b"", b"", 0.0),
            (cancelled.id, 1, S.COMPLETED, b"late", b"", 0.0),
            (good.id, 1, S.COMPLETED, b"ok", b"", 0.0)], candidates(store, waiting))
        assert sorted(refused) == sorted([stolen.id, stale.id, "ghost", cancelled.id])
        for job_id in (stolen.id, stale.id, cancelled.id):
            assert isinstance(refused[job_id], LeaseLost), refused[job_id]
        assert isinstance(refused["ghost"], JobNotFound)
        assert [rec.id for rec in claimed] == [waiting]
        assert (state_of(store, good.id), store.get(good.id).result) == ("completed", b"ok")
        assert store.states_of([stolen.id, stale.id, cancelled.id]) == {
            stolen.id: (S.RUNNING, 2, "other"), stale.id: (S.RUNNING, 2, "w"),
            cancelled.id: (S.CANCELLED, 1, "")}
        assert all(store.get(j).result == b"" for j in (stolen.id, stale.id, cancelled.id))

    def test_no_candidates_claims_nothing(self, store):
        (rec,) = run(store)
        submit(store, spec())
        refused, claimed = self.call(store, [(rec.id, 1, S.COMPLETED, b"", b"", 0.0)])
        assert (refused, claimed) == ({}, [])
        assert state_of(store, rec.id) == "completed"
        assert store.counts() == {(S.COMPLETED, "t"): 1, (S.SCHEDULED, "t"): 1}

    def test_a_completion_releases_its_dependent_in_the_same_commit(self, store):
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id]))
        refused, claimed = self.call(store, [(parent.id, 1, S.COMPLETED, b"", b"", 0.0)])
        assert (refused, claimed) == ({}, [])
        assert state_of(store, child) == "scheduled" and ready_ids(store) == [child]


class TestSnooze:
    """A snoozed attempt: back to scheduled, with max_attempts raised by one so
    it does not use an attempt up (gq.Snooze; the worker computes the number)."""

    def test_finish_sets_the_jobs_max_attempts(self, store):
        (rec,) = run(store)
        now = time.time()
        finish(store, rec.id, S.SCHEDULED, now=now, run_at=now + 30, max_attempts=6)
        again = store.get(rec.id)
        assert (again.state, again.attempts, again.max_attempts, again.run_at) == \
            (S.SCHEDULED, 1, 6, now + 30)

    def test_in_a_batch_beside_bare_outcomes(self, store):
        snoozed, done = run(store, spec(), spec())
        refused, _ = TestFinishManyAndClaim().call(store, [
            Finish(snoozed.id, 1, S.SCHEDULED, b"", b'{"e":1}', 0.0, max_attempts=2),
            (done.id, 1, S.COMPLETED, b"ok", b"", 0.0)])
        assert refused == {}
        assert (store.get(snoozed.id).max_attempts, store.get(snoozed.id).error) == \
            (2, b'{"e":1}')
        assert store.get(done.id).max_attempts == 0     # unchanged: the default applies
        assert ready_ids(store) == [snoozed.id]
