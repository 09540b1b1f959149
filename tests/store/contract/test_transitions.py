"""Operator transitions: cancel, retry, set_paused."""

from __future__ import annotations

import time

import pytest

from gq._core import states as S
from gq.errors import DuplicateJobId, InvalidTransition, JobNotFound, NotRetriable, \
    ValidationError

from .conftest import in_every_state, spec, submit


class TestTransitions:
    def test_cancel_scheduled_and_pending(self, store):
        parent, child = submit(store, spec(id="p"), spec(id="c", depends_on=["p"]))
        for job_id in (child, parent):
            rec = store.cancel(job_id, now=time.time())
            assert rec.state == S.CANCELLED and rec.finished_at > 0
        assert store.ready_after(0, 10) == []
        assert store.counts() == {(S.CANCELLED, "t"): 2}

    def test_cancel_twice_is_invalid(self, store):
        (job,) = submit(store, spec())
        store.cancel(job, now=time.time())
        with pytest.raises(InvalidTransition, match="cannot be cancelled: it is already "
                           "cancelled"):
            store.cancel(job, now=time.time())

    def test_cancel_unknown(self, store):
        with pytest.raises(JobNotFound):
            store.cancel("nope", now=time.time())

    def test_retry_refusals_say_what_the_job_is_doing(self, store):
        """Only dead_letter jobs can be retried; every other state is refused
        with what the job is doing and what to do instead, and nothing changes."""
        jobs = in_every_state(store)
        refusals = {
            "due": "it is scheduled and waits for a free worker; nothing to do "
                   "(`gq cancel` stops it)",
            "later": "it is scheduled to run at 2099-01-01T00:00:00Z; nothing to do "
                     "(`gq cancel` stops it)",
            "pending": "it is pending: it runs once its dependencies complete "
                       f"(`gq inspect {jobs['pending']}` lists what it waits on)",
            "running": "it is running now (attempt 1); if its worker dies it is "
                       "rescheduled on its own",
            "completed": "it completed; to run it again, submit a new job",
            "cancelled": "it was cancelled; to run it, submit a new job",
        }
        before = {name: store.get(job_id) for name, job_id in jobs.items()}
        for name, because in refusals.items():
            with pytest.raises(InvalidTransition) as info:
                store.retry(jobs[name], now=time.time())
            assert str(info.value) == (f"job {jobs[name]!r} cannot be retried: only "
                                       f"dead_letter jobs can be, and {because}")
        with pytest.raises(NotRetriable, match="fix its payload and submit a new job"):
            store.retry(jobs["failed"], now=time.time())
        for name, job_id in jobs.items():
            assert store.get(job_id).state == before[name].state
        assert store.retry(jobs["dead_letter"], now=time.time()).state == S.SCHEDULED

    def test_cancel_refusals_say_how_the_job_ended(self, store):
        jobs = in_every_state(store)
        ended = {"completed": "it already completed", "failed": "it already failed",
                 "cancelled": "it is already cancelled",
                 "dead_letter": "it is dead-lettered (`gq retry "
                                f"{jobs['dead_letter']}` sends it back to scheduled)"}
        for name, how in ended.items():
            with pytest.raises(InvalidTransition) as info:
                store.cancel(jobs[name], now=time.time())
            assert str(info.value) == f"job {jobs[name]!r} cannot be cancelled: {how}"
            assert store.get(jobs[name]).state == S.STATE_NAMES.index(name)
        for name in ("due", "later", "pending", "running"):
            assert store.cancel(jobs[name], now=time.time()).state == S.CANCELLED

    def test_pause_is_persisted(self, open_store):
        store = open_store()
        store.set_paused("email", True)
        store.set_paused("sms", True)
        store.set_paused("sms", False)
        store.close()
        assert open_store().paused_types() == frozenset({"email"})


def test_not_retriable_is_an_invalid_transition():
    assert issubclass(NotRetriable, InvalidTransition)
    assert issubclass(DuplicateJobId, ValidationError)
