"""Leases: extend / aextend (the heartbeat) and reclaim_expired (a lease that
ran out). Deadlines are time.monotonic() values, passed by the caller."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S

from .conftest import LEASE, claim, finish, ready_ids, run, spec, state_of


def leases(store) -> dict[str, tuple[str, float]]:
    return {job_id: (owner, deadline) for job_id, owner, deadline in store.running_leases()}


class TestExtend:
    def test_held_leases_are_pushed_and_none_is_lost(self, store):
        a, b = run(store, spec(), spec())
        later = time.monotonic() + 600
        assert store.extend([(a.id, 1), (b.id, 1)], owner="w", lease_deadline=later) == []
        assert {job_id: owner for job_id, (owner, _) in leases(store).items()} == \
            {a.id: "w", b.id: "w"}
        for _, deadline in leases(store).values():
            assert deadline == pytest.approx(later, abs=5)
        assert [state_of(store, j) for j in (a.id, b.id)] == ["running", "running"]

    def test_an_extension_only_moves_the_deadline(self, store):
        (rec,) = run(store)
        before = store.get(rec.id)
        store.extend([(rec.id, 1)], owner="w", lease_deadline=time.monotonic() + 600)
        after = store.get(rec.id)
        assert (after.state, after.attempts, after.lease_owner, after.started_at) == \
            (before.state, before.attempts, before.lease_owner, before.started_at)
        assert after.lease_deadline > before.lease_deadline
        assert store.counts() == {(S.RUNNING, "t"): 1}

    def test_the_ids_whose_lease_is_gone_are_returned(self, store):
        kept, cancelled, reclaimed, finished, stolen = run(store, *(spec() for _ in range(5)))
        store.cancel(cancelled.id, now=time.time())
        finish(store, finished.id, S.COMPLETED)
        for job_id in (reclaimed.id, stolen.id):   # their worker was found dead...
            store.reclaim_expired(job_id, owner="w", now=time.time(),
                                  now_mono=time.monotonic() + 2 * LEASE)
        claim(store, stolen.id, owner="other")     # ... and another took one of them
        held = [(j.id, 1) for j in (kept, cancelled, reclaimed, finished, stolen)]
        lost = store.extend(held + [("ghost", 1)], owner="w",
                            lease_deadline=time.monotonic() + 600)
        assert sorted(lost) == sorted([cancelled.id, reclaimed.id, finished.id, stolen.id,
                                       "ghost"])
        assert leases(store)[stolen.id][0] == "other"
        assert state_of(store, cancelled.id) == "cancelled"

    def test_another_attempt_or_owner_does_not_hold_the_lease(self, store):
        (rec,) = run(store)
        deadline = leases(store)[rec.id][1]
        lost = [store.extend([(rec.id, 2)], owner="w", lease_deadline=time.monotonic() + 600),
                store.extend([(rec.id, 1)], owner="x", lease_deadline=time.monotonic() + 600)]
        assert lost == [[rec.id], [rec.id]]
        assert leases(store)[rec.id] == ("w", pytest.approx(deadline, abs=5))

    def test_aextend(self, store):
        held, gone = run(store, spec(), spec())
        store.cancel(gone.id, now=time.time())

        async def main():
            return await store.aextend([(held.id, 1), (gone.id, 1)], owner="w",
                                       lease_deadline=time.monotonic() + 600)
        assert asyncio.run(main()) == [gone.id]
        assert leases(store)[held.id][1] == pytest.approx(time.monotonic() + 600, abs=5)


class TestReclaimExpired:
    def expire(self, store, job_id, owner="w", after=2 * LEASE):
        """reclaim_expired as the recovery pass calls it, `after` seconds from now
        on the monotonic clock."""
        return store.reclaim_expired(job_id, owner=owner, now=time.time(),
                                     now_mono=time.monotonic() + after)

    def test_a_lease_that_ran_out_goes_back_to_scheduled(self, store):
        (rec,) = run(store)
        assert self.expire(store, rec.id) is True
        back = store.get(rec.id)
        assert (back.state, back.attempts, back.lease_owner, back.crashes) == \
            (S.SCHEDULED, 1, "", 0)
        assert ready_ids(store) == [rec.id] and store.running_leases() == []
        assert store.counts() == {(S.SCHEDULED, "t"): 1}
        (again,) = claim(store, rec.id)
        assert again.attempts == 2

    def test_a_lease_not_yet_run_out_is_kept(self, store):
        (rec,) = run(store)
        assert self.expire(store, rec.id, after=LEASE / 2) is False
        assert state_of(store, rec.id) == "running" and ready_ids(store) == []

    def test_a_lease_already_run_out_at_the_claim(self, store):
        (rec,) = run(store, lease_deadline=time.monotonic() - 1)
        assert self.expire(store, rec.id, after=0) is True
        assert state_of(store, rec.id) == "scheduled"

    def test_an_extended_lease_is_kept(self, store):
        (rec,) = run(store)
        store.extend([(rec.id, 1)], owner="w", lease_deadline=time.monotonic() + 10 * LEASE)
        assert self.expire(store, rec.id) is False
        assert state_of(store, rec.id) == "running"

    def test_only_if_still_leased_to_that_owner(self, store):
        mine, done, cancelled = run(store, spec(), spec(), spec())
        finish(store, done.id, S.COMPLETED)
        store.cancel(cancelled.id, now=time.time())
        assert self.expire(store, mine.id, owner="someone else") is False
        assert [self.expire(store, j.id) for j in (done, cancelled)] == [False, False]
        assert self.expire(store, "ghost") is False
        assert [state_of(store, j.id) for j in (mine, done, cancelled)] == \
            ["running", "completed", "cancelled"]

    def test_a_job_reclaimed_and_claimed_again_is_not_reclaimed_twice(self, store):
        (rec,) = run(store)
        assert self.expire(store, rec.id) is True
        claim(store, rec.id, owner="other")
        assert self.expire(store, rec.id, after=LEASE / 2, owner="w") is False
        assert store.states_of([rec.id]) == {rec.id: (S.RUNNING, 2, "other")}

    def test_a_job_without_a_deadline_never_expires(self, store):
        (rec,) = run(store, lease_deadline=0.0)
        assert self.expire(store, rec.id, after=10 ** 6) is False
        assert state_of(store, rec.id) == "running"
