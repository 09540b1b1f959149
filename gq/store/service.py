"""Every public write of a store, written once, sync and async, for every backend.

A backend supplies two things: its group-commit writer(s) (`_pick_writer`) and
its write ops, a module (`ops`) of functions whose last argument is the
backend's transaction object (an LMDB `Batch`, a PostgreSQL `Tx`): they apply
one operation in the backend's own way (`Batch.move` on LMDB, set-based SQL on
PostgreSQL) after the backend-neutral decisions of gq.store.rules. Everything
around an op is here: the closed check, the circuit breaker's probe before a
submission while the circuit is open, the hand-off to the writer, and the
coroutine twin of each write (`a` + name).

The reads stay with each backend: they are the backend.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from typing import Callable, ClassVar, Generic, TypeVar

from gq.config import CRASH_QUARANTINE_DEFAULT
from gq.errors import GQError, StoreUnavailable
from gq.store.api import Capabilities
from gq.store.breaker import CircuitBreaker
from gq.store.locations import shown
from gq.store.writer import GroupCommitWriter


class WriterStore:
    """The shared half of a store. Subclasses set `ops`, `capabilities`, `path`,
    `breaker` and `_closed`, and implement `_pick_writer` and the reads."""

    ops: ClassVar  # the backend's op module (gq.store.lmdb.ops, gq.store.postgres.ops)
    capabilities: ClassVar[Capabilities]
    path: str
    breaker: CircuitBreaker
    _closed: bool

    def _pick_writer(self) -> GroupCommitWriter:
        """The writer that takes the next op."""
        raise NotImplementedError

    # -- the hand-off -------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise GQError(f"the queue at {shown(self.path)} is closed")

    def _write(self, fn):
        self._check_open()
        return self._pick_writer().call(fn)

    async def _awrite(self, fn):
        self._check_open()
        return await self._pick_writer().acall(fn, asyncio.get_running_loop())

    # -- the circuit breaker's probe (gq.store.breaker) ---------------------------
    def health(self) -> tuple[bool, str]:
        """(ready, reason): False while the circuit is open. Runs the probe
        transaction when the circuit's cool-down is over."""
        try:
            if self.breaker.admit():
                self._probe()
        except GQError as e:
            return False, str(e)
        return True, "ok"

    def _probe(self) -> None:
        try:
            self._write(self.ops.probe)
        except GQError as e:
            raise StoreUnavailable(f"{self.breaker.reason()} (probe: {e})") from None

    async def _aprobe(self) -> None:
        try:
            await self._awrite(self.ops.probe)
        except GQError as e:
            raise StoreUnavailable(f"{self.breaker.reason()} (probe: {e})") from None

    # -- submitting ---------------------------------------------------------------
    def submit(self, specs, *, max_depth=None, now, key_window=0.0) -> list[str]:
        self._check_open()
        if self.breaker.admit():
            self._probe()
        return self._write(self.ops.SubmitOp(specs, max_depth, now, key_window))

    def asubmit(self, specs, *, max_depth=None, now, key_window=0.0):
        """An awaitable: the commit's future itself, no coroutine around it (the
        one awaited per caller on the hot path of concurrent submits)."""
        self._check_open()
        op = self.ops.SubmitOp(specs, max_depth, now, key_window)
        if self.breaker.admit():
            return self._after_probe(op)
        return self._pick_writer().future(op, asyncio.get_running_loop())

    async def _after_probe(self, op):
        await self._aprobe()
        return await self._awrite(op)

    def submit_occurrence(self, name, occurrence, specs, *, max_depth=None, now,
                          key_window=0.0) -> str | None:
        """Submit `specs` (one job) as occurrence `occurrence` (epoch seconds) of
        the periodic schedule `name`, unless that occurrence or a later one was
        already submitted, by any process; the first call for a schedule only
        records where it starts. Returns the new id or None."""
        op = self.ops.SubmitOp(specs, max_depth, now, key_window)
        # the op returns the id list, which is filled in before the commit: read it after
        ids = self._write(functools.partial(self.ops.submit_occurrence, name, occurrence, op))
        return None if ids is None else ids[0]

    def insert_records(self, records, *, now: float) -> None:
        """Store moved-in records as they are (state, attempts, crashes, result...)
        with fresh seqs in the given order; all of them or none (DuplicateJobId).
        A scheduled job that is due becomes ready. See gq.transfer."""
        self._write(functools.partial(self.ops.insert_records, list(records), now))

    # -- an operator's changes ------------------------------------------------------
    def cancel(self, job_id, *, now):
        return self._write(functools.partial(self.ops.cancel, job_id, now))

    def retry(self, job_id, *, now):
        return self._write(functools.partial(self.ops.retry, job_id, now))

    def set_paused(self, job_type, paused) -> None:
        self._write(functools.partial(self.ops.set_paused, job_type, paused))

    # -- the worker's side: each with its coroutine twin -----------------------------
    def claim(self, candidates, *, owner, lease_deadline, now):
        """scheduled -> running. `candidates`: (id, ready_seq) pairs (those still
        ready as named are claimed; stale ones skipped), or, on a store that
        `claims_by_quota`, a ClaimQuota (the best ready jobs). Returns the
        claimed records (attempts + 1, leased to `owner` until `lease_deadline`,
        a time.monotonic() value)."""
        return self._write(functools.partial(self.ops.claim, candidates, owner,
                                             lease_deadline, now))

    async def aclaim(self, candidates, *, owner, lease_deadline, now):
        return await self._awrite(functools.partial(self.ops.claim, candidates, owner,
                                                    lease_deadline, now))

    def hand_back(self, jobs, *, owner, now) -> list[str]:
        """Undo claims that will not run (a claim answered after the worker began
        to stop): each (id, attempt) still running under `owner` at that attempt
        -> scheduled, ready at once, with the attempt given back. Others
        (cancelled or recovered meanwhile) are left alone. Returns the ids."""
        return self._write(functools.partial(self.ops.hand_back, jobs, owner, now))

    async def ahand_back(self, jobs, *, owner, now) -> list[str]:
        return await self._awrite(functools.partial(self.ops.hand_back, jobs, owner, now))

    def finish(self, job_id, *, attempt, owner, state, now, result=b"", error=b"",
               run_at=0.0, max_attempts=0):
        """Record the outcome of attempt `attempt`: running -> completed | scheduled
        (retry or snooze at `run_at`) | failed | dead_letter. Fenced: refused with
        LeaseLost unless the job is still running under this owner and attempt.
        Completing a job releases dependents whose dependencies are now all
        completed. `max_attempts` > 0 becomes the job's own (a snooze)."""
        return self._write(functools.partial(self.ops.finish, job_id, attempt, owner, state,
                                             now, result, error, run_at, max_attempts))

    async def afinish(self, job_id, *, attempt, owner, state, now, result=b"", error=b"",
                      run_at=0.0, max_attempts=0):
        return await self._awrite(functools.partial(self.ops.finish, job_id, attempt, owner,
                                                    state, now, result, error, run_at,
                                                    max_attempts))

    async def afinish_many_and_claim(self, finishes, *, owner, now, candidates=(),
                                     lease_deadline=0.0):
        """Several `finish`es and a `claim` in one transaction: a busy worker
        records the outcomes of the jobs that just ended and refills their slots
        with one commit. `finishes`: Finish tuples (job_id, attempt, state, result,
        error, run_at, max_attempts). Returns ({job_id: refusal} for finishes refused with
        LeaseLost or JobNotFound, claimed records); refused finishes do not stop
        the others, nor the claim."""
        return await self._awrite(functools.partial(
            self.ops.finish_many_and_claim, finishes, owner, now, candidates, lease_deadline))

    def extend(self, leases, *, owner, lease_deadline) -> list[str]:
        """Heartbeat: push the lease deadline of each held (id, attempt). Returns
        the ids whose lease is gone (cancelled, recovered): stop their handlers."""
        return self._write(functools.partial(self.ops.extend, leases, owner, lease_deadline))

    async def aextend(self, leases, *, owner, lease_deadline) -> list[str]:
        return await self._awrite(functools.partial(self.ops.extend, leases, owner,
                                                    lease_deadline))

    def promote_due(self, *, now, limit=1000) -> int:
        """Delayed jobs whose run_at has come -> ready (fresh ready seqs, in due
        order). Returns how many moved."""
        return self._write(functools.partial(self.ops.promote_due, now, limit))

    async def apromote_due(self, *, now, limit=1000) -> int:
        return await self._awrite(functools.partial(self.ops.promote_due, now, limit))

    def expire_lifetimes(self, *, now, limit=1000) -> list[tuple[str, str, int]]:
        """Jobs past their lifetime -> dead_letter (category timeout). Returns
        (id, type, previous state) of each."""
        return self._write(functools.partial(self.ops.expire, now, limit))

    async def aexpire_lifetimes(self, *, now, limit=1000) -> list[tuple[str, str, int]]:
        return await self._awrite(functools.partial(self.ops.expire, now, limit))

    # -- recovery -----------------------------------------------------------------
    def reclaim_owner(self, owner, *, now, crashed=True,
                      quarantine_after=CRASH_QUARANTINE_DEFAULT) -> list[str]:
        """Running jobs leased to `owner` (a worker instance known to be dead) ->
        scheduled, ready at once; their next claim counts a new attempt. When the
        owner `crashed` (rather than exiting after a graceful drain), each job's
        `crashes` goes up by one, and a job whose worker died under it
        `quarantine_after` times goes to dead_letter (category system) instead
        (gq.store.rules.crash_verdict). Returns the reclaimed ids."""
        return self._write(functools.partial(self.ops.reclaim_owner, owner, now, crashed,
                                             quarantine_after))

    async def areclaim_owner(self, owner, *, now, crashed=True,
                             quarantine_after=CRASH_QUARANTINE_DEFAULT) -> list[str]:
        return await self._awrite(functools.partial(self.ops.reclaim_owner, owner, now,
                                                    crashed, quarantine_after))

    def reclaim_expired(self, job_id, *, owner, now, now_mono) -> bool:
        """One running job whose lease (a deadline on this process's monotonic
        clock) has passed `now_mono` -> scheduled, if it is still leased to
        `owner` and still expired."""
        return self._write(functools.partial(self.ops.reclaim_expired, job_id, owner, now,
                                             now_mono))

    def reclaim_other_boot(self, boot_id: str, *, now: float) -> list[tuple[str, str]]:
        """Record `boot_id` (the machine's current boot) as the store's; if it
        replaces another, every running job was leased before a reboot: all go
        back to scheduled, in the same transaction, so of several workers
        starting at once only the first reclaims. Returns (id, old owner) pairs.
        Only for a store on one machine (`capabilities.boot_scoped`)."""
        if not self.capabilities.boot_scoped:
            return []
        return self._write(functools.partial(self.ops.reclaim_other_boot, boot_id, now))

    # -- housekeeping ---------------------------------------------------------------
    def purge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        """Delete up to `limit` finished jobs (completed, failed, cancelled) that
        finished more than `older_than` seconds ago, with every index entry of
        theirs. dead_letter jobs are kept: an operator may still retry them.
        Returns how many were deleted; call again while it returns `limit`."""
        n = self._write(functools.partial(self.ops.purge, now - older_than, limit))
        if n and self.ops.SETTLE_AFTER_PURGE:
            self._write(self.ops.probe)
        return n

    async def apurge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        n = await self._awrite(functools.partial(self.ops.purge, now - older_than, limit))
        if n and self.ops.SETTLE_AFTER_PURGE:
            await self._awrite(self.ops.probe)
        return n


S = TypeVar("S")


class Registry(Generic[S]):
    """One store per (process, location): Queues on one location in one process
    share it (one writer, one environment or pool). LMDB forbids opening one
    environment twice in a process; PostgreSQL pools are worth sharing. A forked
    child opens its own: the parent's handles must never be touched there, not
    even closed (that would end them for the parent too), so the child keeps its
    copies referenced and unused."""

    def __init__(self, open_store: Callable[..., S], key: Callable[[str], str] = str):
        self._open = open_store
        self._key = key
        self._lock = threading.Lock()
        self._stores: dict[str, list] = {}   # key -> [store, refcount]
        self._inherited: list = []
        os.register_at_fork(after_in_child=self._forget_after_fork)

    def acquire(self, location: str, **options) -> S:
        """The store of `location` in this process (opened with `options` if it
        is the first acquire)."""
        key = self._key(location)
        with self._lock:
            entry = self._stores.get(key)
            if entry is None:
                entry = self._stores[key] = [self._open(location, **options), 0]
            entry[1] += 1
            return entry[0]

    def release(self, store) -> None:
        key = self._key(store.path)
        with self._lock:
            entry = self._stores.get(key)
            if entry is None or entry[0] is not store:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self._stores[key]
                store.close()

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._inherited.append(self._stores)
        self._stores = {}
