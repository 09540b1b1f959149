"""Giving claims back: hand_back (a stopping worker), reclaim_owner (a dead one),
reclaim_other_boot (a reboot, on a store that lives on one machine)."""

from __future__ import annotations

import asyncio
import time

from gq._core import states as S

from .conftest import claim, spec, submit


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
