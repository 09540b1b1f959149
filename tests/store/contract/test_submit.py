"""submit / asubmit: ids, atomic batches, dependencies, delays, keys, depth."""

from __future__ import annotations

import asyncio
import time

import pytest

from gq._core import states as S
from gq.errors import DuplicateJobId, QueueFull, UnknownDependency

from .conftest import spec, submit


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
