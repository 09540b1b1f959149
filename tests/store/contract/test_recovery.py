"""Giving claims back: hand_back (a stopping worker), reclaim_owner (a dead one),
reclaim_other_boot (a reboot, on a store that lives on one machine)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S
from gq.config import CRASH_QUARANTINE_DEFAULT
from gq.jobs import Category, JobError

from .conftest import claim, finish, ready_ids, run, spec, state_of, submit


class TestHandBack:
    """A claim that will not run (answered after its worker began to stop) is
    undone: scheduled again, ready at once, with no attempt used."""

    def test_the_job_is_scheduled_again_with_its_attempt_given_back(self, store):
        first, second = submit(store, spec("t", {"n": 1}), spec("t", {"n": 2}))
        (claimed,) = claim(store, first)
        assert claimed.attempts == 1
        assert store.hand_back([(first, 1)], owner="w", now=time.time()) == [first]
        rec = store.get(first)
        assert (rec.state, rec.attempts, rec.lease_owner) == (S.SCHEDULED, 0, "")
        assert store.counts() == {(S.SCHEDULED, "t"): 2}
        # ready again: the next claim takes it, and counts its first attempt
        again = claim(store, first, second)
        assert sorted((r.id, r.attempts) for r in again) == [(first, 1), (second, 1)]

    def test_a_later_attempt_keeps_the_earlier_ones(self, store):
        (job,) = submit(store, spec())
        claim(store, job)
        store.finish(job, attempt=1, owner="w", state=S.SCHEDULED, now=time.time())
        claim(store, job)
        assert store.hand_back([(job, 2)], owner="w", now=time.time()) == [job]
        assert store.get(job).attempts == 1

    def test_jobs_moved_meanwhile_are_left_alone(self, store):
        mine, cancelled, theirs = submit(store, spec(), spec(), spec())
        claim(store, mine, cancelled)
        claim(store, theirs, owner="other")
        store.cancel(cancelled, now=time.time())
        handed = store.hand_back([(mine, 2), (cancelled, 1), (theirs, 1), ("ghost", 1)],
                                 owner="w", now=time.time())
        assert handed == []           # wrong attempt, cancelled, another owner, unknown
        assert [store.get(j).state for j in (mine, cancelled, theirs)] == \
            [S.RUNNING, S.CANCELLED, S.RUNNING]

    def test_async(self, store):
        (job,) = submit(store, spec())
        claim(store, job)

        async def main():
            return await store.ahand_back([(job, 1)], owner="w", now=time.time())
        assert asyncio.run(main()) == [job]
        assert store.get(job).state == S.SCHEDULED


class TestReclaimOwner:
    """The running jobs of a worker known to be dead go back to scheduled; a job
    whose workers keep dying under it is quarantined to dead_letter."""

    def test_only_that_owners_running_jobs_move(self, store):
        dead_a, dead_b = run(store, spec(), spec(), owner="dead")
        (alive,) = run(store, owner="alive")
        (done,) = run(store, owner="dead")
        finish(store, done.id, S.COMPLETED, owner="dead")
        (waiting,) = submit(store, spec())
        reclaimed = store.reclaim_owner("dead", now=time.time())
        assert sorted(reclaimed) == sorted([dead_a.id, dead_b.id])
        for job_id in (dead_a.id, dead_b.id):
            rec = store.get(job_id)
            assert (rec.state, rec.attempts, rec.lease_owner, rec.crashes) == \
                (S.SCHEDULED, 1, "", 1)
        assert sorted(ready_ids(store)) == sorted([dead_a.id, dead_b.id, waiting])
        assert store.states_of([alive.id]) == {alive.id: (S.RUNNING, 1, "alive")}
        assert state_of(store, done.id) == "completed"
        assert store.reclaim_owner("dead", now=time.time()) == []
        assert store.reclaim_owner("nobody", now=time.time()) == []

    def test_the_next_claim_counts_a_new_attempt(self, store):
        (rec,) = run(store, owner="dead")
        store.reclaim_owner("dead", now=time.time())
        (again,) = claim(store, rec.id, owner="heir")
        assert (again.attempts, again.crashes, again.lease_owner) == (2, 1, "heir")

    def test_a_graceful_exit_counts_no_crash(self, store):
        (rec,) = run(store, owner="drained")
        assert store.reclaim_owner("drained", now=time.time(), crashed=False) == [rec.id]
        back = store.get(rec.id)
        assert (back.state, back.crashes, back.lease_owner) == (S.SCHEDULED, 0, "")
        for _ in range(CRASH_QUARANTINE_DEFAULT + 1):   # never quarantined either
            claim(store, rec.id, owner="drained")
            store.reclaim_owner("drained", now=time.time(), crashed=False)
        assert (state_of(store, rec.id), store.get(rec.id).crashes) == ("scheduled", 0)

    @pytest.mark.parametrize("quarantine_after", [1, 2, CRASH_QUARANTINE_DEFAULT])
    def test_quarantined_after_that_many_deaths(self, store, quarantine_after):
        (rec,) = submit(store, spec())
        for death in range(1, quarantine_after + 1):
            claim(store, rec, owner=f"worker-{death}")
            now = time.time()
            kwargs = {} if quarantine_after == CRASH_QUARANTINE_DEFAULT else \
                {"quarantine_after": quarantine_after}
            assert store.reclaim_owner(f"worker-{death}", now=now, **kwargs) == [rec]
            if death < quarantine_after:
                assert (state_of(store, rec), store.get(rec).crashes) == ("scheduled", death)
        dead = store.get(rec)
        assert (dead.state, dead.crashes, dead.lease_owner, dead.finished_at) == \
            (S.DEAD_LETTER, quarantine_after, "", now)
        error = JobError.from_json(dead.error)
        assert error.category == Category.SYSTEM
        assert f"died while running it {quarantine_after} times" in error.message
        assert ready_ids(store) == [] and store.counts() == {(S.DEAD_LETTER, "t"): 1}
        # an operator retry starts the count again
        store.retry(rec, now=time.time())
        assert (state_of(store, rec), store.get(rec).crashes) == ("scheduled", 0)

    def test_a_graceful_exit_does_not_quarantine_a_job_with_crashes(self, store):
        (rec,) = run(store, owner="crashed")
        store.reclaim_owner("crashed", now=time.time(), quarantine_after=2)
        claim(store, rec.id, owner="drained")
        store.reclaim_owner("drained", now=time.time(), crashed=False, quarantine_after=2)
        assert (state_of(store, rec.id), store.get(rec.id).crashes) == ("scheduled", 1)

    def test_a_reclaimed_jobs_dependents_stay_pending(self, store):
        (parent,) = run(store, owner="dead")
        (child,) = submit(store, spec(depends_on=[parent.id]))
        store.reclaim_owner("dead", now=time.time(), quarantine_after=1)
        assert (state_of(store, parent.id), state_of(store, child)) == \
            ("dead_letter", "pending")
        assert store.blocked_count() == 1


class TestReclaimOtherBoot:
    """A store on one machine remembers the boot its workers started under; the
    first worker under a new boot reclaims every running job."""

    @pytest.fixture(autouse=True)
    def _boot_scoped_stores_only(self, store):
        if not store.capabilities.boot_scoped:
            pytest.skip("this store is shared across machines: no one boot")

    def test_the_first_boot_seen_is_only_recorded(self, store):
        (rec,) = run(store)
        assert store.reclaim_other_boot("boot-1", now=time.time()) == []
        assert store.reclaim_other_boot("boot-1", now=time.time()) == []
        assert state_of(store, rec.id) == "running"

    def test_a_new_boot_reclaims_every_running_job(self, store):
        store.reclaim_other_boot("boot-1", now=time.time())
        mine, theirs = run(store, spec(), spec(), owner="w1")
        (other,) = run(store, spec("other"), owner="w2")
        (done,) = run(store)
        finish(store, done.id, S.COMPLETED)
        reclaimed = store.reclaim_other_boot("boot-2", now=time.time())
        assert sorted(reclaimed) == sorted([(mine.id, "w1"), (theirs.id, "w1"),
                                            (other.id, "w2")])
        for job_id in (mine.id, theirs.id, other.id):
            rec = store.get(job_id)
            # the machine went down, not the job's worker: no crash is counted
            assert (rec.state, rec.lease_owner, rec.crashes) == (S.SCHEDULED, "", 0)
        assert store.running_leases() == [] and state_of(store, done.id) == "completed"
        # the workers that start next under the same boot find nothing to do
        assert store.reclaim_other_boot("boot-2", now=time.time()) == []

    def test_the_boot_survives_a_reopen(self, open_store):
        store = open_store()
        store.reclaim_other_boot("boot-1", now=time.time())
        run(store)
        store.close()
        store = open_store()
        assert store.reclaim_other_boot("boot-1", now=time.time()) == []
        assert [s for s, _ in store.counts()] == [S.RUNNING]
