"""Storage faults on the real store: failed commits are counted, the circuit opens
after N in a row (submissions refused with StoreUnavailable, readiness fails,
gq_circuit_open = 1), the environment is reopened rather than retried in place,
and once the fault is gone a probe closes the circuit again.

The fault is injected where the store meets the storage engine: the real LMDB
environment, wrapped so that its next commits fail with an I/O error (after
aborting the real transaction, as a failed fsync leaves nothing committed).
"""

from __future__ import annotations

import asyncio
import errno
import time

import lmdb
import pytest

import gq
from gq import metrics
from gq.errors import PersistenceError
from gq.store.lmdb import store as lmdb_store
from lmdb_wrapping import WrappedEnv

COOLDOWN = 0.3


class FaultPlan:
    """How many of the next write commits fail, and with what."""

    def __init__(self):
        self.fail_next = 0
        self.error = lambda: lmdb.Error("mdb_txn_commit: Input/output error")
        self.failed = 0
        self.opens = 0
        self.fail_opens = 0


_WRITES = {"put", "putmulti", "replace", "delete", "pop"}


class _Marking:
    """Proxy of a transaction or cursor that notes when something is written."""

    def __init__(self, target, txn):
        self._target, self._owner = target, txn

    def __getattr__(self, name):
        if name in _WRITES:
            self._owner.dirty = True
        return getattr(self._target, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._target.__exit__(*exc)

    def __iter__(self):
        return iter(self._target)


class FaultyTxn:
    """A real write transaction whose commit fails, if it wrote anything (an empty
    commit writes nothing in LMDB, so it cannot fail on the disk)."""

    def __init__(self, txn, plan):
        self._txn, self._plan = txn, plan
        self.dirty = False

    def __getattr__(self, name):
        if name in _WRITES:
            self.dirty = True
        return getattr(self._txn, name)

    def cursor(self, *args, **kw):
        return _Marking(self._txn.cursor(*args, **kw), self)

    def commit(self):
        if self.dirty and self._plan.fail_next > 0:
            self._plan.fail_next -= 1
            self._plan.failed += 1
            self._txn.abort()
            raise self._plan.error()
        return self._txn.commit()


class FaultyEnv(WrappedEnv):
    """A real lmdb.Environment whose write commits fail as `plan` says."""

    def __init__(self, env, plan):
        super().__init__(env)
        self._plan = plan

    def wrap_txn(self, txn):
        return FaultyTxn(txn, self._plan)


@pytest.fixture
def faults(monkeypatch):
    plan = FaultPlan()
    real_open = lmdb_store.open_env

    def open_faulty(path, map_size):
        if plan.fail_opens > 0:
            plan.fail_opens -= 1
            raise gq.DataDirError(f"cannot open data dir {path}: Input/output error")
        plan.opens += 1
        return FaultyEnv(real_open(path, map_size), plan)
    monkeypatch.setattr(lmdb_store, "open_env", open_faulty)
    return plan


def value(metric) -> float:
    return metric._value.get()


def test_circuit_opens_refuses_submissions_and_recovers(data_dir, faults):
    q = gq.Queue(data_dir, circuit_threshold=5, circuit_cooldown=COOLDOWN)
    try:
        acked = {q.submit("t", {"n": n}): n for n in range(20)}
        assert q.readiness() == (True, "ok")
        errors_before = value(metrics.PERSISTENCE_ERRORS)
        opens_before = faults.opens

        faults.fail_next = 1_000                     # the disk starts failing
        for n in range(5):
            with pytest.raises(PersistenceError) as info:
                q.submit("t", {"failed": n})
            assert not isinstance(info.value, gq.StoreUnavailable)
            assert "Input/output error" in str(info.value)
        assert value(metrics.PERSISTENCE_ERRORS) - errors_before == 5
        assert faults.opens - opens_before == 5, "each failed commit reopens the environment"
        assert value(metrics.CIRCUIT_OPEN) == 1

        # open: refused at once, no transaction tried
        failed = faults.failed
        with pytest.raises(gq.StoreUnavailable) as info:
            q.submit("t", {"refused": True})
        assert "circuit open" in str(info.value)
        with pytest.raises(gq.StoreUnavailable):
            asyncio.run(q.asubmit("t", {"refused": True}))
        assert faults.failed == failed
        ready, reason = q.readiness()
        assert not ready and "unavailable" in reason

        # after the cool-down, still failing: the probe fails, the circuit stays open
        time.sleep(COOLDOWN)
        ready, reason = q.readiness()
        assert not ready and "probe" in reason
        assert value(metrics.CIRCUIT_OPEN) == 1

        faults.fail_next = 0                         # the fault is removed
        with pytest.raises(gq.StoreUnavailable):     # until the next cool-down ends
            q.submit("t")
        time.sleep(COOLDOWN)
        assert q.readiness() == (True, "ok")         # the probe closed it
        assert value(metrics.CIRCUIT_OPEN) == 0
        jid = q.submit("t", {"after": True})
        assert q.get(jid).payload == {"after": True}

        # nothing acknowledged was lost, nothing refused was stored
        for job_id, n in acked.items():
            assert q.get(job_id).payload == {"n": n}
        assert q.stats()["total"] == len(acked) + 1
    finally:
        q.close()


def test_a_submission_after_the_cooldown_is_the_probe(data_dir, faults):
    q = gq.Queue(data_dir, circuit_threshold=2, circuit_cooldown=COOLDOWN)
    try:
        faults.fail_next = 2
        faults.error = lambda: OSError(errno.EIO, "Input/output error")
        for _ in range(2):
            with pytest.raises(PersistenceError):
                q.submit("t")
        with pytest.raises(gq.StoreUnavailable):
            q.submit("t")
        time.sleep(COOLDOWN)
        jid = asyncio.run(q.asubmit("t", {"probe": "async"}))   # probe, then the submit
        assert q.get(jid).payload == {"probe": "async"}
        assert q.readiness() == (True, "ok")
    finally:
        q.close()


def test_one_success_resets_the_count(data_dir, faults):
    q = gq.Queue(data_dir, circuit_threshold=3, circuit_cooldown=60)
    try:
        for _ in range(3):
            faults.fail_next = 2
            for _ in range(2):
                with pytest.raises(PersistenceError):
                    q.submit("t")
            q.submit("t")                                # succeeds: count back to 0
        assert q.readiness() == (True, "ok")
        assert q.stats()["total"] == 3
    finally:
        q.close()


def test_a_worker_keeps_running_and_completes_once_the_fault_is_gone(data_dir, faults):
    """While commits fail, the worker's claims and completions fail too: it logs,
    keeps its finished jobs' outcomes and retries them, and completes every job
    once the store is healthy again; its own commits close the circuit."""
    q = gq.Queue(data_dir, circuit_threshold=3, circuit_cooldown=COOLDOWN)
    runs = []

    @q.handler("t")
    async def handle(job):
        runs.append(job.id)
        await asyncio.sleep(0.05)
        return job.payload

    ids = [q.submit("t", {"n": n}) for n in range(40)]
    worker = gq.Worker(q, concurrency=4)

    async def scenario():
        task = asyncio.create_task(worker.serve())
        deadline = time.monotonic() + 30
        while not runs:
            await asyncio.sleep(0.01)
        faults.fail_next = 6                       # the disk fails for six commits
        opened = False
        while faults.fail_next and time.monotonic() < deadline:
            opened = opened or value(metrics.CIRCUIT_OPEN) == 1
            await asyncio.sleep(0.01)
        while time.monotonic() < deadline:
            opened = opened or value(metrics.CIRCUIT_OPEN) == 1
            if all(q.get(j).state is gq.State.COMPLETED for j in ids):
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await task
        return opened
    try:
        assert asyncio.run(scenario()), "the circuit never opened"
        assert faults.failed == 6
        assert [q.get(j).state for j in ids] == [gq.State.COMPLETED] * 40
        assert sorted(runs) == sorted(ids), "a job ran twice (or never)"
        assert value(metrics.CIRCUIT_OPEN) == 0   # the worker's own commits closed it
    finally:
        q.close()


def test_a_failed_reopen_is_retried_by_the_next_write(data_dir, faults):
    """The disk fails the commit and then the reopen: reads say the store is
    unavailable (not a crash), and the next write opens it again."""
    q = gq.Queue(data_dir, circuit_threshold=10, circuit_cooldown=COOLDOWN)
    try:
        jid = q.submit("t", {"kept": True})
        faults.fail_next, faults.fail_opens = 1, 1
        with pytest.raises(PersistenceError):
            q.submit("t")
        assert q.store._env is None
        with pytest.raises(gq.StoreUnavailable):
            q.get(jid)
        ready, reason = q.readiness()
        assert not ready and "reopened" in reason
        after = q.submit("t", {"after": True})          # reopens, then writes
        assert q.get(jid).payload == {"kept": True}
        assert q.get(after).payload == {"after": True}
        assert q.readiness() == (True, "ok")
    finally:
        q.close()


def test_a_failed_opening_commit_is_a_persistence_error(data_dir, faults):
    """The first commit of a new store fails its sync: the caller of Queue() gets
    PersistenceError (not LMDB's own exception), counted and logged."""
    errors = value(metrics.PERSISTENCE_ERRORS)
    faults.fail_next = 1
    with pytest.raises(PersistenceError, match="cannot open the store.*Input/output"):
        gq.Queue(data_dir)
    assert value(metrics.PERSISTENCE_ERRORS) == errors + 1
    with gq.Queue(data_dir) as q:                     # the fault passed: it opens
        assert q.get(q.submit("t", {"n": 1})).payload == {"n": 1}


def test_a_worker_retries_a_failed_start_up_recovery(data_dir, faults):
    """The start-up recovery's commit fails (twice): the worker logs, retries and
    then serves, instead of ending with the exception."""
    q = gq.Queue(data_dir, circuit_threshold=10, circuit_cooldown=COOLDOWN)
    done = []

    @q.handler("t")
    def handle(job):
        done.append(job.id)

    jid = q.submit("t")
    worker = gq.Worker(q, concurrency=2)

    async def scenario():
        faults.fail_next = 2        # the recovery pass records this boot: it writes
        task = asyncio.create_task(worker.serve())
        deadline = time.monotonic() + 20
        while not done and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.02)
        worker.stop()
        await task
    try:
        asyncio.run(scenario())
        assert faults.failed == 2
        assert done == [jid] and q.get(jid).state is gq.State.COMPLETED
    finally:
        q.close()


def test_a_worker_keeps_serving_when_a_promotion_fails(data_dir, faults):
    """The commit that promotes a due delayed job fails: the worker logs it, keeps
    serving, promotes the job on a later pass and runs it once."""
    q = gq.Queue(data_dir, circuit_threshold=10, circuit_cooldown=COOLDOWN)
    done = []

    @q.handler("t")
    def handle(job):
        done.append(job.id)

    worker = gq.Worker(q, concurrency=2)

    async def scenario():
        task = asyncio.create_task(worker.serve())
        await asyncio.sleep(0.3)            # past the start-up recovery's commits
        jid = q.submit("t", delay=0.3)
        faults.fail_next = 1                # the next write: the promotion
        deadline = time.monotonic() + 20
        while not done and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.02)
        worker.stop()
        await task
        return jid
    try:
        jid = asyncio.run(scenario())
        assert faults.failed == 1
        assert done == [jid] and q.get(jid).state is gq.State.COMPLETED
    finally:
        q.close()
