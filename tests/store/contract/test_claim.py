"""claim / aclaim: scheduled -> running, for named candidates (id, ready_seq)
on every store, and for a ClaimQuota where the store picks the jobs."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S
from gq._core.heap import ReadyHeap
from gq.runtime.claims import ClaimQuota

from .conftest import LEASE, OWNER, candidates, claim, finish, ready_ids, spec, submit


def claim_best(store, n, types=("t",), owner=OWNER):
    """The `n` best ready jobs, the way a worker asks this store for them: a quota
    where the store picks, else candidates popped from a ReadyHeap filled from
    the ready feed. Returns the claimed ids, best first."""
    deadline, now = time.monotonic() + LEASE, time.time()
    if store.capabilities.claims_by_quota:
        got = []
        for _ in range(n):     # one at a time: the order is the store's choice
            claimed = store.claim(ClaimQuota(1, dict.fromkeys(types)), owner=owner,
                                  lease_deadline=deadline, now=now)
            got += [rec.id for rec in claimed]
        return got
    assert store.capabilities.ready_feed
    heap = ReadyHeap()
    store.push_ready_after(heap, 0, 1000, frozenset(types))
    named = [(job_id, seq) for job_id, _, _, seq in heap.pop_many(n)]
    claimed = {rec.id for rec in store.claim(named, owner=owner, lease_deadline=deadline,
                                             now=now)}
    return [job_id for job_id, _ in named if job_id in claimed]


class TestNamedCandidates:
    def test_candidates_from_the_ready_rows_are_claimed(self, store):
        ids = submit(store, spec(payload=1), spec(payload=2), spec(payload=3))
        now, deadline = time.time(), time.monotonic() + LEASE
        claimed = store.claim(candidates(store), owner="w1", lease_deadline=deadline, now=now)
        assert sorted(rec.id for rec in claimed) == sorted(ids)
        for rec in claimed:
            assert (rec.state, rec.attempts, rec.lease_owner) == (S.RUNNING, 1, "w1")
            assert rec.started_at == now
        for job_id in ids:
            stored = store.get(job_id)
            assert (stored.state, stored.attempts, stored.lease_owner, stored.ready_seq) == \
                (S.RUNNING, 1, "w1", 0)
        assert ready_ids(store) == []
        assert store.counts() == {(S.RUNNING, "t"): 3}
        assert store.states_of(ids) == {job_id: (S.RUNNING, 1, "w1") for job_id in ids}

    def test_the_lease_is_held_until_the_deadline_given(self, store):
        (job,) = submit(store, spec())
        deadline = time.monotonic() + 123.0
        claim(store, job, owner="w1", lease_deadline=deadline)
        ((job_id, owner, held_until),) = store.running_leases()
        assert (job_id, owner) == (job, "w1")
        # on the caller's monotonic clock again (PostgreSQL keeps database time)
        assert held_until == pytest.approx(deadline, abs=5)

    def test_only_the_named_jobs_are_claimed(self, store):
        ids = submit(store, spec(), spec(), spec())
        assert [rec.id for rec in claim(store, ids[1])] == [ids[1]]
        assert [store.get(j).state for j in ids] == [S.SCHEDULED, S.RUNNING, S.SCHEDULED]
        assert ready_ids(store) == [ids[0], ids[2]]

    def test_each_claim_counts_one_more_attempt(self, store):
        (job,) = submit(store, spec())
        for attempt in (1, 2, 3):
            (rec,) = claim(store, job)
            assert rec.attempts == attempt
            finish(store, job, S.SCHEDULED)   # retry at once
        assert store.get(job).attempts == 3

    def test_stale_candidates_are_skipped(self, store):
        """Claimed elsewhere, cancelled, re-queued since (ready again under a new
        ready seq), put back to wait for a later run_at, unknown: none is
        claimed, none is changed, and the one still as seen is claimed."""
        taken, cancelled, requeued, delayed, fresh = submit(store, *(spec() for _ in range(5)))
        seen = dict(candidates(store))            # what a dispatcher read
        claim(store, taken, owner="other")
        store.cancel(cancelled, now=time.time())
        for job_id, run_at in ((requeued, 0.0), (delayed, time.time() + 3600)):
            claim(store, job_id, owner="other")
            finish(store, job_id, S.SCHEDULED, owner="other", run_at=run_at)
        assert store.get(requeued).ready_seq not in (0, seen[requeued])
        assert store.get(delayed).ready_seq == 0
        claimed = store.claim(list(seen.items()) + [("ghost", max(seen.values()))],
                              owner="w", lease_deadline=time.monotonic() + LEASE,
                              now=time.time())
        assert [rec.id for rec in claimed] == [fresh]
        assert {j: state[:2] for j, state in store.states_of(
            [taken, cancelled, requeued, delayed]).items()} == {
            taken: (S.RUNNING, 1), cancelled: (S.CANCELLED, 0), requeued: (S.SCHEDULED, 1),
            delayed: (S.SCHEDULED, 1)}
        assert store.get(taken).lease_owner == "other"
        assert ready_ids(store) == [requeued]

    def test_a_job_is_claimed_once_whoever_names_it(self, store):
        (job,) = submit(store, spec())
        named = candidates(store, job)
        first = store.claim(named, owner="a", lease_deadline=time.monotonic() + LEASE,
                            now=time.time())
        second = store.claim(named, owner="b", lease_deadline=time.monotonic() + LEASE,
                             now=time.time())
        assert ([r.id for r in first], second) == ([job], [])
        assert store.get(job).lease_owner == "a"

    def test_paused_types_are_not_claimed(self, store):
        mail, sms = submit(store, spec("email"), spec("sms"))
        named = candidates(store)
        store.set_paused("email", True)
        assert [rec.id for rec in claim(store, mail, sms)] == [sms]
        assert store.get(mail).state == S.SCHEDULED and ready_ids(store) == [mail]
        store.set_paused("email", False)
        assert [rec.id for rec in store.claim(
            [c for c in named if c[0] == mail], owner="w",
            lease_deadline=time.monotonic() + LEASE, now=time.time())] == [mail]

    def test_nothing_named_claims_nothing(self, store):
        submit(store, spec())
        assert store.claim([], owner="w", lease_deadline=time.monotonic() + LEASE,
                           now=time.time()) == []
        assert store.counts() == {(S.SCHEDULED, "t"): 1}

    def test_aclaim(self, store):
        ids = submit(store, spec(), spec())

        async def main():
            return await store.aclaim(candidates(store), owner="w",
                                      lease_deadline=time.monotonic() + LEASE,
                                      now=time.time())
        assert sorted(rec.id for rec in asyncio.run(main())) == sorted(ids)
        assert store.counts() == {(S.RUNNING, "t"): 2}


class TestOrder:
    def test_best_priority_first_then_ready_order(self, store):
        ids = submit(store, *(spec(payload=i, priority=p) for i, p in enumerate([0, 5, 0, 9, 5])))
        assert claim_best(store, 5) == [ids[3], ids[1], ids[4], ids[0], ids[2]]

    def test_a_job_ready_again_queues_behind_its_priority_peers(self, store):
        first, second, low = submit(store, spec(priority=1), spec(priority=1), spec())
        claim(store, first)
        finish(store, first, S.SCHEDULED)          # a retry: ready again, a fresh seq
        assert claim_best(store, 3) == [second, first, low]


class TestQuota:
    """Where the store picks (claims_by_quota): up to n of the best ready jobs,
    no more of a type than its cap."""

    @pytest.fixture(autouse=True)
    def _quota_stores_only(self, store):
        if not store.capabilities.claims_by_quota:
            pytest.skip("this store is claimed by named candidates only")

    def quota(self, store, n, caps, owner="w"):
        return store.claim(ClaimQuota(n, caps), owner=owner,
                           lease_deadline=time.monotonic() + LEASE, now=time.time())

    def test_up_to_n_best_jobs(self, store):
        ids = submit(store, *(spec(payload=i, priority=p) for i, p in enumerate([0, 5, 0, 9])))
        claimed = self.quota(store, 2, {"t": None})
        assert sorted(rec.id for rec in claimed) == sorted([ids[3], ids[1]])
        assert all((r.state, r.attempts, r.lease_owner) == (S.RUNNING, 1, "w") for r in claimed)
        assert sorted(rec.id for rec in self.quota(store, 5, {"t": None})) == \
            sorted([ids[0], ids[2]])
        assert self.quota(store, 5, {"t": None}) == []

    def test_caps_per_type_and_types_not_asked_for(self, store):
        submit(store, *[spec("a", i) for i in range(3)], *[spec("b", i, priority=1)
                                                         for i in range(3)],
               *[spec("c", i, priority=2) for i in range(3)])
        claimed = self.quota(store, 4, {"a": None, "b": 1})
        assert sorted(rec.type for rec in claimed) == ["a", "a", "a", "b"]

    def test_paused_types_are_skipped(self, store):
        submit(store, spec("a"), spec("b", priority=5))
        store.set_paused("b", True)
        assert [rec.type for rec in self.quota(store, 2, {"a": None, "b": None})] == ["a"]

    def test_delayed_pending_and_running_jobs_are_not_ready(self, store):
        (parent,) = submit(store, spec())
        submit(store, spec(delay=3600), spec(depends_on=[parent]))
        assert [rec.id for rec in self.quota(store, 5, {"t": None})] == [parent]
        assert self.quota(store, 5, {"t": None}) == []

    def test_an_empty_quota_claims_nothing(self, store):
        submit(store, spec())
        assert self.quota(store, 0, {"t": None}) == []
        assert self.quota(store, 3, {}) == []
        assert store.counts() == {(S.SCHEDULED, "t"): 1}
