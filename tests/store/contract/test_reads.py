"""Reads: counts, list, the ready rows, get."""

from __future__ import annotations

import time

from gq._core import states as S

from .conftest import spec, submit


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
