"""Completions are fenced by (owner, attempt): a worker that lost its lease — the
job was cancelled, recovered, or re-run by another worker — cannot record an
outcome afterwards. Store-level sequences on a real store of each backend, no worker loop.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import gq
from gq._core import states as S
from gq.errors import LeaseLost

A, B = "worker-A", "worker-B"


@pytest.fixture
def q(location):
    queue = gq.Queue(location)
    yield queue
    queue.close()


def claim(store, job_id, owner):
    rec = store.get(job_id)
    claimed = store.claim([(job_id, rec.ready_seq)], owner=owner,
                          lease_deadline=time.monotonic() + 60, now=time.time())
    assert [r.id for r in claimed] == [job_id]
    return claimed[0]


def finish(store, job_id, owner, attempt, state=S.COMPLETED, **kw):
    return store.finish(job_id, attempt=attempt, owner=owner, state=state, now=time.time(),
                        **kw)


def assert_refused(store, job_id, owner, attempt, state=S.COMPLETED, **kw):
    before = store.get(job_id).encode()
    with pytest.raises(LeaseLost) as info:
        finish(store, job_id, owner, attempt, state, result=b'"stale"', **kw)
    assert store.get(job_id).encode() == before, "a refused completion changed the record"
    assert info.value.job_id == job_id
    return str(info.value)


def test_claim_takes_the_lease(q):
    store = q.store
    jid = q.submit("t")
    ready_seq = store.get(jid).ready_seq
    assert ready_seq > 0
    rec = claim(store, jid, A)
    assert (rec.state, rec.attempts, rec.lease_owner) == (S.RUNNING, 1, A)
    job = q.get(jid)
    assert job.state is gq.State.RUNNING and job.attempts == 1
    # a second claim of the same ready entry is stale: nothing claimed
    assert store.claim([(jid, ready_seq)], owner=B, lease_deadline=0.0,
                       now=time.time()) == []
    assert store.get(jid).lease_owner == A


def test_completion_after_cancel_is_refused(q):
    store = q.store
    jid = q.submit("t")
    claim(store, jid, A)
    q.cancel(jid)
    message = assert_refused(store, jid, A, 1)
    assert message == (f"completion of job {jid!r} attempt 1 refused: the lease is no "
                       "longer held (the job is now cancelled, attempt 1)")
    for state in (S.SCHEDULED, S.FAILED, S.DEAD_LETTER):
        assert_refused(store, jid, A, 1, state)
    job = q.get(jid)
    assert job.state is gq.State.CANCELLED and job.attempts == 1 and job.result is None
    assert store.extend([(jid, 1)], owner=A, lease_deadline=time.monotonic() + 60) == [jid]


def test_completion_of_a_superseded_attempt_is_refused(q):
    """A's attempt 1 goes back to scheduled (as a retry or recovery would put it),
    B claims attempt 2; A's late completion, and every mismatched fence, is refused."""
    store = q.store
    jid = q.submit("t", {"n": 1})
    claim(store, jid, A)
    finish(store, jid, A, 1, S.SCHEDULED, error=b"", run_at=0.0)
    rec = claim(store, jid, B)
    assert (rec.attempts, rec.lease_owner) == (2, B)

    assert "now running, attempt 2" in assert_refused(store, jid, A, 1)
    assert_refused(store, jid, A, 2)          # right attempt, wrong owner
    assert_refused(store, jid, B, 1)          # right owner, wrong attempt
    assert_refused(store, jid, B, 3)
    assert store.extend([(jid, 1)], owner=A, lease_deadline=time.monotonic() + 60) == [jid]
    assert store.extend([(jid, 2)], owner=B, lease_deadline=time.monotonic() + 60) == []
    job = q.get(jid)
    assert job.state is gq.State.RUNNING and job.attempts == 2

    finish(store, jid, B, 2, result=b'"fresh"')
    job = q.get(jid)
    assert job.state is gq.State.COMPLETED and job.result == "fresh" and job.attempts == 2
    assert_refused(store, jid, B, 2)          # and nobody completes it twice
    assert_refused(store, jid, A, 1)


def test_completion_after_recovery_of_a_dead_owner_is_refused(q):
    """Recovery (`reclaim_owner`: A's worker is presumed dead) puts A's job back;
    B runs it; A, which was only frozen, comes back and must not complete it."""
    store = q.store
    jid = q.submit("t")
    claim(store, jid, A)
    assert store.reclaim_owner(A, now=time.time()) == [jid]
    assert q.get(jid).state is gq.State.SCHEDULED
    assert_refused(store, jid, A, 1)
    claim(store, jid, B)
    assert_refused(store, jid, A, 1)
    finish(store, jid, B, 2, result=b"1")
    assert q.get(jid).result == 1


def test_batched_finishes_refuse_only_the_stale_one_and_still_claim(q):
    """The worker records the outcomes of several ended jobs, and claims jobs for
    the freed slots, in one transaction: a stale finish in the batch is refused
    alone; the others and the claim go ahead."""
    store = q.store
    stale, fresh, other = q.submit("t"), q.submit("t"), q.submit("t")
    claim(store, stale, A)
    claim(store, fresh, A)
    q.cancel(stale)
    candidate = store.get(other)

    async def go():
        return await store.afinish_many_and_claim(
            [(stale, 1, S.COMPLETED, b"1", b"", 0.0),
             (fresh, 1, S.COMPLETED, b"2", b"", 0.0),
             ("no-such-job", 1, S.COMPLETED, b"3", b"", 0.0)],
            owner=A, now=time.time(), candidates=[(other, candidate.ready_seq)],
            lease_deadline=time.monotonic() + 60)
    refused, claimed = asyncio.run(go())
    assert set(refused) == {stale, "no-such-job"}
    assert isinstance(refused[stale], LeaseLost)
    assert isinstance(refused["no-such-job"], gq.JobNotFound)
    assert [r.id for r in claimed] == [other]
    assert q.get(stale).state is gq.State.CANCELLED and q.get(stale).result is None
    assert q.get(fresh).state is gq.State.COMPLETED and q.get(fresh).result == 2
    assert q.get(other).state is gq.State.RUNNING and q.get(other).attempts == 1


def test_unknown_job_is_not_found(q):
    with pytest.raises(gq.JobNotFound):
        finish(q.store, "no-such-job", A, 1)
