"""purge / apurge: finished jobs (completed, failed, cancelled) older than the
cutoff go, with every index entry of theirs; dead_letter jobs stay."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S

from .conftest import finish, run, spec, state_of, submit

DAY = 86400.0


def ended(store, state, *, at, job_type="t", **kw):
    """A job that ended in `state` at wall time `at`."""
    if state == S.CANCELLED:
        (job,) = submit(store, spec(job_type, **kw))
        store.cancel(job, now=at)
        return job
    (rec,) = run(store, spec(job_type, **kw))
    finish(store, rec.id, state, now=at)
    return rec.id


class TestPurge:
    def test_old_finished_jobs_go_and_the_rest_stay(self, store):
        t = time.time()
        old = [ended(store, state, at=t - 2 * DAY)
               for state in (S.COMPLETED, S.FAILED, S.CANCELLED)]
        kept_dead = ended(store, S.DEAD_LETTER, at=t - 2 * DAY)
        young = [ended(store, state, at=t - 60)
                 for state in (S.COMPLETED, S.FAILED, S.CANCELLED)]
        (waiting,) = submit(store, spec())
        (running,) = run(store)
        (delayed,) = submit(store, spec(delay=3600))
        assert store.purge(older_than=DAY, now=t) == 3
        assert [store.get(job) for job in old] == [None, None, None]
        assert [state_of(store, j) for j in young] == ["completed", "failed", "cancelled"]
        assert [state_of(store, j) for j in (kept_dead, waiting, running.id, delayed)] == \
            ["dead_letter", "scheduled", "running", "scheduled"]
        assert store.counts() == {(S.COMPLETED, "t"): 1, (S.FAILED, "t"): 1,
                                  (S.CANCELLED, "t"): 1, (S.DEAD_LETTER, "t"): 1,
                                  (S.SCHEDULED, "t"): 2, (S.RUNNING, "t"): 1}
        assert not {rec.id for rec in store.list(limit=1000)} & set(old)
        for state in (S.COMPLETED, S.FAILED, S.CANCELLED):
            assert len(store.list(state=state)) == 1
        report = store.check()
        assert report.ok, report
        assert report.records == 7
        assert store.purge(older_than=DAY, now=t) == 0

    def test_the_cutoff_is_now_minus_older_than(self, store):
        t = time.time()
        job = ended(store, S.COMPLETED, at=t - 100)
        assert store.purge(older_than=101, now=t) == 0
        assert store.purge(older_than=100, now=t) == 1
        assert store.get(job) is None

    def test_older_than_zero_purges_every_finished_job(self, store):
        t = time.time()
        for state in (S.COMPLETED, S.FAILED, S.CANCELLED, S.DEAD_LETTER):
            ended(store, state, at=t)
        assert store.purge(older_than=0, now=t) == 3
        assert store.counts() == {(S.DEAD_LETTER, "t"): 1}

    def test_limit(self, store):
        t = time.time()
        jobs = [ended(store, S.COMPLETED, at=t - DAY) for _ in range(5)]
        assert [store.purge(older_than=60, now=t, limit=2) for _ in range(4)] == [2, 2, 1, 0]
        assert [store.get(job) for job in jobs] == [None] * 5
        assert store.counts() == {}
        assert store.check().ok

    def test_a_limit_reached_by_younger_jobs_still_purges_the_old(self, store):
        t = time.time()
        young = [ended(store, S.COMPLETED, at=t) for _ in range(3)]
        old = [ended(store, S.COMPLETED, at=t - 2 * DAY), ended(store, S.FAILED, at=t - 2 * DAY,
                                                               job_type="u")]
        assert store.purge(older_than=DAY, now=t, limit=2) == 2
        assert [store.get(job) for job in old] == [None, None]
        assert [state_of(store, job) for job in young] == ["completed"] * 3

    def test_a_purged_keys_job_is_not_found_by_its_key(self, store):
        t = time.time()
        job = ended(store, S.COMPLETED, at=t - DAY, key="order:7")
        store.purge(older_than=60, now=t)
        (again,) = submit(store, spec(key="order:7"), now=t)
        assert again != job and state_of(store, again) == "scheduled"
        assert store.check().ok

    def test_a_dependency_completed_and_purged_before_its_dependent_was_submitted(self, store):
        t = time.time()
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id]))
        finish(store, parent.id, S.COMPLETED, now=t - DAY)
        assert store.purge(older_than=60, now=t) == 1
        assert state_of(store, child) == "scheduled"
        (rec,) = run(store)
        finish(store, rec.id, S.COMPLETED)
        assert store.check().ok

    def test_a_cancelled_dependent_goes_with_its_edges(self, store):
        t = time.time()
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id]))
        store.cancel(child, now=t - DAY)
        assert store.purge(older_than=60, now=t) == 1 and store.get(child) is None
        finish(store, parent.id, S.COMPLETED, now=t)   # nothing left to release
        assert store.counts() == {(S.COMPLETED, "t"): 1}
        assert store.check().ok

    def test_a_dependent_of_a_purged_failed_job_stays_blocked(self, store):
        t = time.time()
        (parent,) = run(store)
        (child,) = submit(store, spec(depends_on=[parent.id]))
        finish(store, parent.id, S.FAILED, now=t - DAY)
        assert store.blocked_count() == 1
        assert store.purge(older_than=60, now=t) == 1
        assert store.waiting_on(child)[0] == [(parent.id, "purged")]
        assert state_of(store, child) == "pending"
        assert store.blocked_count() == 1
        assert store.waiting_on(child)[1] == [[parent.id, child]]

    def test_apurge(self, store):
        t = time.time()
        job = ended(store, S.FAILED, at=t - DAY)

        async def main():
            return await store.apurge(older_than=60, now=t)
        assert asyncio.run(main()) == 1 and store.get(job) is None
        assert store.check().ok

    @pytest.mark.parametrize("state", [S.COMPLETED, S.FAILED, S.CANCELLED])
    def test_a_purge_frees_room_for_submissions(self, store, state):
        t = time.time()
        ended(store, state, at=t - DAY)
        store.purge(older_than=60, now=t)
        submit(store, spec(), spec(), max_depth=2)
        assert store.counts() == {(S.SCHEDULED, "t"): 2}
