"""The store contract: every Store backend must pass these, on a real store.

Parametrised by backend: LMDB in a temp dir, and PostgreSQL in a fresh schema
of the server named by $GQ_TEST_POSTGRES (skipped outside CI without one).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S
from gq.errors import (DuplicateJobId, InvalidTransition, JobNotFound, NotRetriable,
                       QueueFull, UnknownDependency, ValidationError)
from gq.store.lmdb.store import LMDBStore
from gq.submission import make_spec

MiB = 1 << 20


def spec(job_type="t", payload=None, **kw):
    return make_spec(job_type, payload, max_payload_bytes=MiB, **kw)


@pytest.fixture
def open_store(backend, request, tmp_path):
    opened = []
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None

    def open_store():
        if url is not None:
            from gq.store.postgres.store import PostgresStore
            store = PostgresStore(url)
        else:
            store = LMDBStore(str(tmp_path / "store"), map_size=1 << 30)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def submit(store, *specs, max_depth=None):
    return store.submit(list(specs), max_depth=max_depth, now=time.time())


class TestSubmit:
    def test_ids_are_unique_and_records_round_trip(self, store):
        ids = submit(store, spec("a", {"n": 1}, priority=3), spec("b", [1, 2]), spec("a", None))
        assert len(set(ids)) == 3
        rec = store.get(ids[0])
        assert (rec.id, rec.type, rec.payload, rec.priority, rec.state) == \
            (ids[0], "a", b'{"n":1}', 3, S.SCHEDULED)
        assert all(i.startswith(store.tag + "-") for i in ids)

    def test_seq_strictly_increases_across_reopen(self, open_store, tmp_path):
        store = open_store()
        first = [store.get(i).seq for i in submit(store, spec(), spec())]
        store.close()
        store = open_store()
        later = store.get(submit(store, spec())[0]).seq
        assert first[0] < first[1] < later

    def test_batch_is_all_or_nothing(self, store):
        submit(store, spec(id="taken"))
        before = store.counts()
        with pytest.raises(DuplicateJobId, match="taken"):
            submit(store, spec(id="fresh-1"), spec(id="taken"), spec(id="fresh-2"))
        assert store.get("fresh-1") is None and store.get("fresh-2") is None
        assert store.counts() == before

    def test_unknown_dependency_refused(self, store):
        with pytest.raises(UnknownDependency, match="nope"):
            submit(store, spec(id="child", depends_on=["nope"]))
        assert store.get("child") is None

    def test_dependency_on_unfinished_job_is_pending(self, store):
        (parent,) = submit(store, spec())
        (child,) = submit(store, spec(depends_on=[parent]))
        assert store.get(child).state == S.PENDING
        assert store.get(child).depends_on == (parent,)

    def test_dependency_inside_batch(self, store):
        a, b = submit(store, spec(id="a"), spec(id="b", depends_on=["a"]))
        assert store.get(a).state == S.SCHEDULED and store.get(b).state == S.PENDING

    def test_delayed_job_is_scheduled_but_not_ready(self, store):
        (later,) = submit(store, spec(delay=3600))
        (now,) = submit(store, spec())
        assert store.get(later).state == S.SCHEDULED
        assert [row[3] for row in store.ready_after(0, 100)] == [now]

    def test_idempotency_key_returns_existing_unfinished_job(self, store):
        (first,) = submit(store, spec(key="order:42"))
        assert submit(store, spec(key="order:42"), spec(key="order:42")) == [first, first]
        assert sum(store.counts().values()) == 1
        store.cancel(first, now=time.time())
        (second,) = submit(store, spec(key="order:42"))
        assert second != first

    def test_same_key_twice_in_one_batch_creates_one_job(self, store):
        ids = submit(store, spec(key="k"), spec(key="k"))
        assert ids[0] == ids[1]
        assert sum(store.counts().values()) == 1

    def test_max_depth(self, store):
        submit(store, spec(), spec())
        with pytest.raises(QueueFull, match="max_depth is 3"):
            submit(store, spec(), spec(), max_depth=3)
        assert sum(store.counts().values()) == 2
        submit(store, spec(), max_depth=3)

    def test_asubmit_concurrent_callers(self, store):
        async def main():
            return await asyncio.gather(*(
                store.asubmit([spec(payload=i)], now=time.time()) for i in range(200)))
        ids = [r[0] for r in asyncio.run(main())]
        assert len(set(ids)) == 200
        assert [store.get(i).payload for i in ids] == [str(i).encode() for i in range(200)]


class TestReads:
    def test_counts_by_state_and_type(self, store):
        submit(store, spec("a"), spec("a"), spec("b", delay=60))
        assert store.counts() == {(S.SCHEDULED, "a"): 2, (S.SCHEDULED, "b"): 1}

    def test_list_filters_and_orders(self, store):
        ids = submit(store, spec("a"), spec("b"), spec("a"), spec("b"))
        store.cancel(ids[2], now=time.time())
        assert [r.id for r in store.list(type="a")] == [ids[0], ids[2]]
        assert [r.id for r in store.list(state=S.SCHEDULED)] == [ids[0], ids[1], ids[3]]
        assert [r.id for r in store.list(state=S.CANCELLED, type="a")] == [ids[2]]
        assert len(store.list(limit=2)) == 2

    def test_ready_feed_orders_by_ready_seq(self, store):
        ids = submit(store, spec("a", priority=1), spec("b", priority=9))
        rows = store.ready_after(0, 10)
        assert [(r[1], r[2], r[3]) for r in rows] == [(1, "a", ids[0]), (9, "b", ids[1])]
        assert store.ready_after(rows[0][0], 10) == rows[1:]

    def test_get_missing(self, store):
        assert store.get("missing") is None


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


class TestHandBack:
    """A claim that will not run (answered after its worker began to stop) is
    undone: scheduled again, ready at once, with no attempt used."""

    def claim(self, store, *job_ids, owner="w"):
        ready = [(job_id, store.get(job_id).ready_seq) for job_id in job_ids]
        return store.claim(ready, owner=owner, lease_deadline=time.monotonic() + 60,
                           now=time.time())

    def test_the_job_is_scheduled_again_with_its_attempt_given_back(self, store):
        first, second = submit(store, spec("t", {"n": 1}), spec("t", {"n": 2}))
        (claimed,) = self.claim(store, first)
        assert claimed.attempts == 1
        assert store.hand_back([(first, 1)], owner="w", now=time.time()) == [first]
        rec = store.get(first)
        assert (rec.state, rec.attempts, rec.lease_owner) == (S.SCHEDULED, 0, "")
        assert store.counts() == {(S.SCHEDULED, "t"): 2}
        # ready again: the next claim takes it, and counts its first attempt
        again = self.claim(store, first, second)
        assert sorted((r.id, r.attempts) for r in again) == [(first, 1), (second, 1)]

    def test_a_later_attempt_keeps_the_earlier_ones(self, store):
        (job,) = submit(store, spec())
        self.claim(store, job)
        store.finish(job, attempt=1, owner="w", state=S.SCHEDULED, now=time.time())
        self.claim(store, job)
        assert store.hand_back([(job, 2)], owner="w", now=time.time()) == [job]
        assert store.get(job).attempts == 1

    def test_jobs_moved_meanwhile_are_left_alone(self, store):
        mine, cancelled, theirs = submit(store, spec(), spec(), spec())
        self.claim(store, mine, cancelled)
        self.claim(store, theirs, owner="other")
        store.cancel(cancelled, now=time.time())
        handed = store.hand_back([(mine, 2), (cancelled, 1), (theirs, 1), ("ghost", 1)],
                                 owner="w", now=time.time())
        assert handed == []           # wrong attempt, cancelled, another owner, unknown
        assert [store.get(j).state for j in (mine, cancelled, theirs)] == \
            [S.RUNNING, S.CANCELLED, S.RUNNING]

    def test_async(self, store):
        (job,) = submit(store, spec())
        self.claim(store, job)

        async def main():
            return await store.ahand_back([(job, 1)], owner="w", now=time.time())
        assert asyncio.run(main()) == [job]
        assert store.get(job).state == S.SCHEDULED


def in_every_state(store) -> dict[str, str]:
    """One job in each state (two scheduled: due now, and later), by name."""
    now = time.time()
    ids = dict(zip(["due", "later", "blocker", "running", "completed", "failed",
                    "dead_letter", "cancelled"],
                   submit(store, spec("t", priority=9), spec("t", run_at=4070908800.0),
                          *[spec("t", priority=8 - n) for n in range(6)])))
    ids["pending"] = submit(store, spec("t", depends_on=[ids["blocker"]]))[0]
    ready = {rec.id: rec for rec in (store.get(job_id) for job_id in ids.values())}
    order = ["due", "blocker", "running", "completed", "failed", "dead_letter", "cancelled"]
    claimed = store.claim([(ids[n], ready[ids[n]].ready_seq) for n in order],
                          owner="w", lease_deadline=time.monotonic() + 60, now=now)
    assert {rec.id for rec in claimed} == {ids[n] for n in order}
    for name, state in [("due", S.SCHEDULED), ("blocker", S.SCHEDULED),
                        ("completed", S.COMPLETED), ("failed", S.FAILED),
                        ("dead_letter", S.DEAD_LETTER), ("cancelled", S.SCHEDULED)]:
        store.finish(ids[name], attempt=1, owner="w", state=state, now=now)
    store.cancel(ids["cancelled"], now=now)
    del ids["blocker"]
    states = {name: S.STATE_NAMES[store.get(job_id).state] for name, job_id in ids.items()}
    assert states == {"due": "scheduled", "later": "scheduled", "pending": "pending",
                      "running": "running", "completed": "completed", "failed": "failed",
                      "dead_letter": "dead_letter", "cancelled": "cancelled"}
    return ids


def test_not_retriable_is_an_invalid_transition():
    assert issubclass(NotRetriable, InvalidTransition)
    assert issubclass(DuplicateJobId, ValidationError)
