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
from gq.store.lmdb import LMDBStore
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
            from gq.store.postgres import PostgresStore
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
        with pytest.raises(InvalidTransition, match="'cancelled' to 'cancelled'"):
            store.cancel(job, now=time.time())

    def test_cancel_unknown(self, store):
        with pytest.raises(JobNotFound):
            store.cancel("nope", now=time.time())

    def test_retry_only_from_dead_letter(self, store):
        (job,) = submit(store, spec())
        with pytest.raises(InvalidTransition, match="'scheduled' to 'scheduled'"):
            store.retry(job, now=time.time())

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
