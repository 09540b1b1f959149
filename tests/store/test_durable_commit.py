"""When a commit is durable, and who hears of it when (docs/storage.md).

The LMDB store opens its environment with metasync off and syncs the meta page
itself after each commit, outside LMDB's writer lock. These tests watch the real
environment (wrapped, every call passed through) and check the order that makes
this as durable as metasync on: commit, then sync, and only then is a caller
released; the doorbell rings in between (a claim's own commit syncs this meta
page before it is durable); a failed sync is a failed commit.
"""

from __future__ import annotations

import asyncio

import lmdb
import pytest

import gq
from gq import metrics
from gq.errors import PersistenceError
from gq.store.lmdb import store as lmdb_store
from lmdb_wrapping import WrappedEnv


class Recorder:
    def __init__(self):
        self.events: list[str] = []
        self.fail_syncs = 0


class RecordingTxn:
    def __init__(self, txn, rec):
        self._txn, self._rec = txn, rec

    def __getattr__(self, name):
        return getattr(self._txn, name)

    def commit(self):
        self._txn.commit()
        self._rec.events.append("commit")


class RecordingEnv(WrappedEnv):
    def __init__(self, env, rec):
        super().__init__(env)
        self._rec = rec

    def wrap_txn(self, txn):
        return RecordingTxn(txn, self._rec)

    def sync(self, force=False):
        if self._rec.fail_syncs > 0:
            self._rec.fail_syncs -= 1
            raise lmdb.Error(f"{self._env.path()}: Input/output error")
        self._env.sync(force)
        self._rec.events.append("sync" if force else "sync(not forced)")


@pytest.fixture
def recorded(monkeypatch, data_dir):
    rec = Recorder()
    real_open = lmdb_store.open_env
    monkeypatch.setattr(lmdb_store, "open_env",
                        lambda path, map_size: RecordingEnv(real_open(path, map_size), rec))
    q = gq.Queue(data_dir)
    yield q, rec
    q.close()


def test_the_meta_page_is_synced_by_the_store_not_by_lmdb(recorded):
    q, rec = recorded
    assert q.store._env.flags()["sync"] is True
    assert q.store._env.flags()["metasync"] is False   # the store's own sync does it
    assert rec.events[-2:] == ["commit", "sync"]       # even the opening transaction


def test_a_submit_returns_only_after_its_commit_is_synced(recorded):
    q, rec = recorded
    for n in range(5):
        rec.events.clear()
        q.submit("t", {"n": n})
        assert rec.events == ["commit", "sync"]


def test_concurrent_submits_are_released_after_the_sync_of_their_commit(recorded):
    q, rec = recorded
    released = []

    async def one(n):
        await q.asubmit("t", {"n": n})
        released.append(list(rec.events))   # what had happened when this caller woke

    async def main():
        await asyncio.gather(*(one(n) for n in range(50)))

    rec.events.clear()
    asyncio.run(main())
    assert len(released) == 50
    for seen in released:
        assert seen and seen[-1] == "sync" and seen.count("commit") == seen.count("sync")


def test_the_doorbell_rings_between_the_commit_and_the_sync(recorded, monkeypatch):
    q, rec = recorded
    monkeypatch.setattr(q.store.doorbell, "ring", lambda: rec.events.append("ring"))
    rec.events.clear()
    q.submit("t")
    assert rec.events == ["commit", "ring", "sync"]


def test_a_failed_sync_is_a_failed_commit(recorded):
    q, rec = recorded
    acked = q.submit("t", {"n": 1})
    errors = metrics.PERSISTENCE_ERRORS._value.get()
    reopens = q.store.reopens
    rec.fail_syncs = 1
    with pytest.raises(PersistenceError, match="Input/output error"):
        q.submit("t", {"n": 2})     # committed, but not known to be on disk: not acked
    assert metrics.PERSISTENCE_ERRORS._value.get() == errors + 1
    assert q.store.reopens == reopens + 1          # not trusted: reopened, not retried
    after = q.submit("t", {"n": 3})
    assert q.get(acked).payload == {"n": 1} and q.get(after).payload == {"n": 3}
