"""When a commit is durable, and who hears of it when (docs/storage.md).

The LMDB store opens its environment with sync and metasync on: LMDB's commit
syncs the data pages, then writes the meta page synchronously under its writer
lock, and publishes the transaction only after that (gq.store.lmdb.env says why
the meta page's sync must not move out of the lock: tests/powerloss caught it).
These tests watch the real environment (wrapped, every call passed through):
a caller is released only after its commit returned, the doorbell rings after
the commit, and a failed commit is reported, never retried in place.
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
        self.fail_commits = 0


class RecordingTxn:
    def __init__(self, txn, rec):
        self._txn, self._rec = txn, rec

    def __getattr__(self, name):
        return getattr(self._txn, name)

    def commit(self):
        if self._rec.fail_commits > 0:
            self._rec.fail_commits -= 1
            self._txn.abort()      # as LMDB does when its sync fails
            raise lmdb.Error("mdb_txn_commit: Input/output error")
        self._txn.commit()
        self._rec.events.append("commit")


class RecordingEnv(WrappedEnv):
    def __init__(self, env, rec):
        super().__init__(env)
        self._rec = rec

    def wrap_txn(self, txn):
        return RecordingTxn(txn, self._rec)

    def sync(self, force=False):
        self._env.sync(force)
        self._rec.events.append("sync")


@pytest.fixture
def recorded(monkeypatch, data_dir):
    rec = Recorder()
    real_open = lmdb_store.open_env
    monkeypatch.setattr(lmdb_store, "open_env",
                        lambda path, map_size: RecordingEnv(real_open(path, map_size), rec))
    q = gq.Queue(data_dir)
    yield q, rec
    q.close()


def test_lmdb_syncs_the_meta_page_inside_its_commit(recorded):
    q, rec = recorded
    assert q.store._env.flags()["sync"] is True
    assert q.store._env.flags()["metasync"] is True    # inside the writer lock
    assert rec.events[-1:] == ["commit"]               # even the opening transaction


def test_a_submit_returns_only_after_its_commit(recorded):
    q, rec = recorded
    for n in range(5):
        rec.events.clear()
        q.submit("t", {"n": n})
        assert rec.events == ["commit"]     # and no second flush outside the lock


def test_concurrent_submits_are_released_after_their_commit(recorded):
    q, rec = recorded
    released = []

    async def one(n):
        job_id = await q.asubmit("t", {"n": n})
        released.append((job_id, list(rec.events)))   # what had happened when it woke

    async def main():
        await asyncio.gather(*(one(n) for n in range(50)))

    rec.events.clear()
    asyncio.run(main())
    assert len(released) == 50
    for _, seen in released:
        assert seen and seen[-1] == "commit" and "sync" not in seen
    assert len(rec.events) < 50          # group commit: fewer commits than callers


def test_the_doorbell_rings_after_the_commit(recorded, monkeypatch):
    q, rec = recorded
    monkeypatch.setattr(q.store.doorbell, "ring", lambda: rec.events.append("ring"))
    rec.events.clear()
    q.submit("t")
    assert rec.events == ["commit", "ring"]


def test_a_failed_commit_is_reported_and_the_store_reopened(recorded):
    q, rec = recorded
    acked = q.submit("t", {"n": 1})
    errors = metrics.PERSISTENCE_ERRORS._value.get()
    reopens = q.store.reopens
    rec.fail_commits = 1
    with pytest.raises(PersistenceError, match="Input/output error"):
        q.submit("t", {"n": 2})     # its sync failed: not acked
    assert metrics.PERSISTENCE_ERRORS._value.get() == errors + 1
    assert q.store.reopens == reopens + 1          # not trusted: reopened, not retried
    after = q.submit("t", {"n": 3})
    assert q.get(acked).payload == {"n": 1} and q.get(after).payload == {"n": 3}
    assert [j.payload for j in q.list()] == [{"n": 1}, {"n": 3}]
