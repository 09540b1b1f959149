"""The embedded store: one LMDB environment in the data dir.

Two LMDB tables, kept consistent by one transaction per change: `jobs`
(id -> record: gq._core.codec header + CRC32C + JSON) and `index`, which holds
every index under its own key prefix (gq.store.lmdb.keys):

  ready      ready_seq -> priority, type, id     scheduled and due; a change feed
  delayed    run_at µs, seq -> id                 scheduled, due in the future
  listing    type, state, seq -> id               list() and per-type scans
  counts     state, type -> n                     stats() and the depth limit
  dependents dependency id, dependent id -> ""    who waits on a job
  keys       idempotency key -> id
  meta       format, seq (the persisted counter), tag, paused:<type>

The code names the logical tables (`db["ready"]`, ...); they map to `index`.

Every commit is durable before anyone is told it happened: LMDB writes and
syncs the data pages, writes the meta page, then the store syncs the file
(`durable_commit`). The meta page's sync is ours rather than LMDB's
(metasync off) so that it runs after LMDB's writer lock is released: another
process's commit overlaps it instead of queueing behind two flushes. writemap
stays off (it would turn a full disk into SIGBUS).
LMDB must be opened once per process, so stores are shared per (process, path).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import heapq
import logging
import os
import secrets
import threading
import time

import lmdb

from gq._core import states as S
from gq._core.codec import FORMAT_VERSION, JobRecord, decode_record
from gq._core.feed import push_ready_rows
from gq._core.plan import all_plain, plan_rows, with_lifetime
from gq._core.seq import SequenceCounter
from gq.errors import (DataDirError, DuplicateJobId, GQError, JobNotFound, LeaseLost,
                       PersistenceError, QueueFull, RecordCorrupted, StorageFull, StoreUnavailable,
                       UnknownDependency, ValidationError)
from gq.config import (CIRCUIT_COOLDOWN_DEFAULT, CIRCUIT_THRESHOLD_DEFAULT,
                       CRASH_QUARANTINE_DEFAULT)
from gq.jobs import Category, JobError
from gq.store import rules
from gq.store.lmdb import blocking
from gq.store.lmdb import expiry
from gq.store.lmdb import occurrences
from gq.metrics import PERSISTENCE_ERRORS
from gq.store.lmdb import keys as K
from gq.store.lmdb import space
from gq.store.api import Capabilities, CheckReport
from gq.store.breaker import BreakerProbes, CircuitBreaker
from gq.store.lmdb.doorbell import Doorbell
from gq.store.lmdb.gate import EnvGate
from gq.store.lmdb.check import check_records
from gq.store.lmdb.liveness import LockFiles
from gq.store.lmdb.transfer import insert_records
from gq.store.lmdb.scans import due_under, keys_under
from gq.store.writer import GroupCommitWriter, PartialWrite, apply_ops

log = logging.getLogger("gq.store")

TABLES = ("jobs", "index")
LOGICAL_TABLES = ("ready", "delayed", "listing", "dependents", "keys", "expiry", "meta")
MAX_READERS = 1024

_META_FORMAT, _META_SEQ, _META_TAG, _PAUSED = K.META_FORMAT, K.META_SEQ, K.META_TAG, K.PAUSED
_PLANNED_TABLES = ("jobs", "ready", "delayed", "listing", "dependents", "keys", "expiry")


def load_record(raw, job_id: str) -> JobRecord:
    """Decode a stored record (checksum verified) and make sure it is the record
    of `job_id`: LMDB keeps no page checksums, so a damaged B-tree page could
    lead a lookup to another job's record, which must never be handed out."""
    try:
        rec = decode_record(raw, job_id)
    except RecordCorrupted:
        PERSISTENCE_ERRORS.inc()
        raise
    if rec.id != job_id:
        PERSISTENCE_ERRORS.inc()
        raise RecordCorrupted(job_id, f"the stored record belongs to job {rec.id!r} "
                                      "(a damaged index page)")
    return rec


class Batch:
    """One write transaction of the group-commit writer, with the state its ops
    share: the sequence counter and the count deltas (written once per
    transaction, not once per job), and the rows of new jobs.

    New jobs are *planned* by submit ops (checked, numbered, encoded) and written
    together, one putmulti per table, when the batch flushes — or earlier, as
    soon as any other op reads the store, so every op sees what came before it.
    """

    __slots__ = ("txn", "store", "db", "_seq", "_count_deltas", "wrote",
                 "rows", "planned", "planned_keys", "ring", "_has_dependents", "_paused",
                 "_jobs_cur", "_index_cur", "_plain", "_requeued", "after_commit",
                 "doomed_dependency", "room")

    def __init__(self, store: "LMDBStore", txn):
        self.txn = txn
        self.store = store
        self.db = store._db
        self._seq = None
        self._count_deltas: dict[tuple[int, str], int] = {}
        self.wrote = False
        self.rows: dict[str, list] = {name: [] for name in _PLANNED_TABLES}
        self.planned: dict[str, int] = {}       # id -> state of jobs planned, not written
        self.planned_keys: dict[str, str] = {}  # idempotency key -> planned job id
        # Plain submissions (nothing to check against the store) wait here and are
        # planned together, one compiled call per batch: [(specs, ids to fill)].
        self._plain: list[tuple[list, list]] = []
        self.ring = False   # wake workers after commit: work became ready, or a cancel
        self._has_dependents: bool | None = None
        self._paused: frozenset | None = None
        self._requeued = 0    # change of "scheduled jobs that already ran" (see move)
        self.after_commit: list = []   # callables run once the transaction committed
        self.doomed_dependency = False  # a submit named a failed/dead/cancelled job
        self.room: list | None = None    # [free bytes, reserve] once a submit asked
        # Hot paths use cursors and positional arguments: py-lmdb's keyword
        # parsing costs more than the B-tree operation itself.
        self._jobs_cur = txn.cursor(db=store._db["jobs"])
        self._index_cur = txn.cursor(db=store._db["index"])

    # -- reads ----------------------------------------------------------------
    def load(self, job_id: str) -> JobRecord | None:
        if self._plain:
            self.plan_plain()
        if self.planned:
            self.write_planned()
        raw = self._jobs_cur.get(job_id.encode())
        return None if raw is None else load_record(raw, job_id)

    def load_existing(self, job_id: str) -> JobRecord:
        record = self.load(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def requeued(self) -> int:
        """Scheduled jobs that already ran once, including this transaction's changes."""
        raw = self.txn.get(K.META_REQUEUED, db=self.db["meta"])
        return (K.unpack_u64(raw) if raw else 0) + self._requeued

    def count(self, states) -> int:
        """Jobs in any of `states`, including this transaction's changes."""
        if self._plain:
            self.plan_plain()
        total = 0
        for counts in (self.store._read_counts(self.txn), self._count_deltas):
            for (state, _), n in counts.items():
                if state in states:
                    total += n
        return total

    # -- writes (an op calls these only after all its checks passed) -----------
    def take_seq(self, n: int = 1) -> int:
        self.wrote = True
        if self._seq is None:
            raw = self.txn.get(_META_SEQ, db=self.db["meta"])
            self._seq = SequenceCounter.decode(raw) if raw else SequenceCounter(0)
        return self._seq.take(n)

    def add_count(self, state: int, job_type: str, delta: int) -> None:
        key = (state, job_type)
        self._count_deltas[key] = self._count_deltas.get(key, 0) + delta

    def add_indexes(self, rec: JobRecord) -> None:
        """Enter `rec` (as it is now) into every index but jobs itself."""
        self.wrote = True
        txn, db = self.txn, self.db
        txn.put(K.listing_key(rec.type, rec.state, rec.seq), rec.id.encode(), db=db["listing"])
        if rec.state == S.SCHEDULED:
            if rec.ready_seq:
                txn.put(K.ready_key(rec.ready_seq), K.ready_value(rec.priority, rec.type, rec.id),
                        db=db["ready"], append=True)
                self.ring = True
            else:
                txn.put(K.delayed_key(rec.run_at, rec.seq), rec.id.encode(), db=db["delayed"])
        self.add_count(rec.state, rec.type, 1)

    def remove_indexes(self, rec: JobRecord) -> None:
        """Take `rec` (as it was stored) out of every index but jobs itself."""
        self.wrote = True
        txn, db = self.txn, self.db
        txn.delete(K.listing_key(rec.type, rec.state, rec.seq), db=db["listing"])
        if rec.state == S.SCHEDULED:
            if rec.ready_seq:
                txn.delete(K.ready_key(rec.ready_seq), db=db["ready"])
            else:
                txn.delete(K.delayed_key(rec.run_at, rec.seq), db=db["delayed"])
        self.add_count(rec.state, rec.type, -1)

    def put_record(self, rec: JobRecord) -> None:
        self.wrote = True
        self._jobs_cur.put(rec.id.encode(), rec.encode())

    def move(self, rec: JobRecord, new_state: int, now: float, **changes) -> JobRecord:
        """Change a stored job's state: the gate first (raises before any write),
        then `changes` (other fields), then the old state's index entries out and
        the new state's in, and the record itself.

        The hot path of every claim and completion, so written out flat: the same
        work as remove_indexes(old) + add_indexes(rec), without the copy."""
        old_state, old_ready_seq, old_run_at = rec.state, rec.ready_seq, rec.run_at
        old_started = rec.started_at
        rec.move_to(new_state)                 # InvalidTransition: nothing written yet
        if self._plain:
            self.plan_plain()
        if self.planned:                       # keep ready keys appended in seq order
            self.write_planned()
        self.wrote = True
        for name, value in changes.items():
            setattr(rec, name, value)
        txn, index, index_cur = self.txn, self.db["index"], self._index_cur
        job_type, seq, id_bytes = rec.type, rec.seq, rec.id.encode()
        type_prefix = self.store.listing_prefix(job_type)
        seq_bytes = K.pack_u64(seq)
        # out of the old state's indexes
        txn.delete(type_prefix + K.STATE_BYTES[old_state] + seq_bytes, b"", index)
        if old_state == S.SCHEDULED:
            if old_ready_seq:
                txn.delete(K.ready_key(old_ready_seq), b"", index)
            else:
                txn.delete(K.delayed_key(old_run_at, seq), b"", index)
        deltas = self._count_deltas
        key = (old_state, job_type)
        deltas[key] = deltas.get(key, 0) - 1
        # into the new state's
        index_cur.put(type_prefix + K.STATE_BYTES[new_state] + seq_bytes, id_bytes)
        if new_state == S.SCHEDULED:
            if rec.run_at <= now:
                rec.ready_seq = self.take_seq()
                index_cur.put(K.ready_key(rec.ready_seq),           # append: a fresh seq
                              K.pack_priority(rec.priority) + type_prefix[1:] + id_bytes,
                              True, True, True)
                self.ring = True
            else:
                rec.ready_seq = 0
                index_cur.put(K.delayed_key(rec.run_at, seq), id_bytes)
        else:
            rec.ready_seq = 0
        key = (new_state, job_type)
        deltas[key] = deltas.get(key, 0) + 1
        # Scheduled jobs that already ran (retries, reclaims) are kept out of the
        # max_depth count: accepted work never holds back new submissions.
        if old_state == S.SCHEDULED and old_started > 0:
            self._requeued -= 1
        if new_state == S.SCHEDULED and rec.started_at > 0:
            self._requeued += 1
        rec.updated_at = now
        self._jobs_cur.put(id_bytes, rec.encode())
        if (new_state >= S.FAILED or old_state == S.DEAD_LETTER) and self.dependents_exist():
            blocking.after_move(self, rec, old_state)
        return rec

    def reserve_room(self, needed: int) -> None:
        """Take `needed` bytes for new jobs, or raise StorageFull (nothing written)
        if that would eat into the reserve kept for running jobs (gq.store.lmdb.space)."""
        store = self.store
        if self.room is None:
            self.room = list(space.room(store._env, self.txn,
                                        (self.db["jobs"], self.db["index"]), store.path))
        space.refuse_if_short(self.room[0], self.room[1], needed, store.path)
        self.room[0] -= needed

    def paused_types(self) -> frozenset:
        """The paused job types as this transaction sees them (read once)."""
        if self._paused is None:
            self._paused = self.store._read_paused(self.txn)
        return self._paused

    def dependents_exist(self) -> bool:
        """Whether any job waits on another at all (read once per transaction), so
        completions skip the dependents scan in the common case."""
        if self._has_dependents is None:
            with self.txn.cursor(db=self.db["dependents"]) as cur:
                self._has_dependents = bool(cur.set_range(K.DEPENDENTS)) and \
                    bytes(cur.key()).startswith(K.DEPENDENTS)
        return self._has_dependents

    def defer_plain(self, specs) -> list[str]:
        """Take plain submissions (generated ids, no key, no dependencies, no
        depth limit) to plan with the batch's others; returns their id list,
        filled in before the batch commits."""
        ids: list[str] = []
        self._plain.append((specs, ids))
        return ids

    def plan_plain(self) -> None:
        """Number, encode and index every deferred plain submission at once
        (created now: after each caller's call, before any of them returns)."""
        deferred, self._plain = self._plain, []
        specs = [spec for op_specs, _ in deferred for spec in op_specs]
        ids = plan_specs(self, specs, [False] * len(specs), time.time())
        start = 0
        for op_specs, op_ids in deferred:
            op_ids.extend(ids[start:start + len(op_specs)])
            start += len(op_specs)

    def write_planned(self) -> None:
        """Write the planned new jobs: one C-level putmulti per table."""
        txn, db, rows = self.txn, self.db, self.rows
        self.wrote = True
        with txn.cursor(db=db["jobs"]) as cur:
            consumed, added = cur.putmulti(rows["jobs"], overwrite=False)
        if added != consumed:   # a generated id already stored: impossible by design
            raise RuntimeError("a generated job id collided with a stored job")
        if rows["ready"]:       # fresh seqs sort after every stored key: append
            with txn.cursor(db=db["ready"]) as cur:
                cur.putmulti(rows["ready"], append=True)
            self.ring = True
        for name in ("listing", "delayed", "dependents", "keys", "expiry"):
            if rows[name]:
                with txn.cursor(db=db[name]) as cur:
                    cur.putmulti(rows[name])
        for table in rows.values():
            table.clear()
        self.planned.clear()
        self.planned_keys.clear()

    def flush(self) -> None:
        """Write planned jobs, the counter and the count deltas; once, before commit."""
        if self._plain:
            self.plan_plain()
        if self.planned:
            self.write_planned()
        txn, db = self.txn, self.db
        if self._seq is not None:
            txn.put(_META_SEQ, self._seq.encode(), db=db["meta"])
        if self._requeued:
            txn.put(K.META_REQUEUED, K.pack_u64(max(0, self.requeued())), db=db["meta"])
            self._requeued = 0
        for (state, job_type), delta in self._count_deltas.items():
            if not delta:
                continue
            key = K.count_key(state, job_type)
            raw = txn.get(key, db=db["meta"])
            n = (K.unpack_u64(raw) if raw else 0) + delta
            if n > 0:
                txn.put(key, K.pack_u64(n), db=db["meta"])
            else:
                txn.delete(key, db=db["meta"])


def _probe_op(b: Batch) -> None:
    """One small synced write: the circuit breaker's probe, and the commit after
    a purge that lets LMDB reuse the pages the purge freed."""
    b.wrote = True
    b.txn.put(K.META_PROBE, K.pack_u64(int(b.store.reopens)), db=b.db["meta"])


class LMDBStore(BreakerProbes):
    """The embedded store (see the module docstring for its tables)."""

    _probe_op = staticmethod(_probe_op)   # the breaker's probe (gq.store.breaker)
    capabilities = Capabilities(claims_by_quota=False, ready_feed=True, boot_scoped=True)

    def __init__(self, path: str, *, map_size: int,
                 circuit_threshold: int = CIRCUIT_THRESHOLD_DEFAULT,
                 circuit_cooldown: float = CIRCUIT_COOLDOWN_DEFAULT):
        self.path = path
        self.map_size = map_size
        self._env = _open_env(path, map_size)
        self._db = {}
        try:
            self._prepare()
        except BaseException:
            self._env.close()
            raise
        self._listing_prefixes: dict[str, bytes] = {}
        self._gate = EnvGate()
        self.breaker = CircuitBreaker(path, threshold=circuit_threshold,
                                      cooldown=circuit_cooldown)
        self.reopens = 0          # environments reopened after an I/O error
        self.doorbell = Doorbell(path)
        self.liveness = LockFiles(path)
        self._writer = GroupCommitWriter(self._run_batch, name=f"gq-writer:{path}")
        self._closed = False

    # -- opening --------------------------------------------------------------
    def _prepare(self) -> None:
        env = self._env
        env.reader_check()  # free reader slots of killed processes
        txn = env.begin(write=True)
        try:
            self._prepare_in(txn)
        except BaseException:
            txn.abort()   # explicitly: a traceback must not keep the writer lock alive
            raise
        durable_commit(env, txn)

    def _prepare_in(self, txn) -> None:
        env = self._env
        for name in TABLES:
            self._db[name] = env.open_db(name.encode(), txn=txn)
        for name in LOGICAL_TABLES:
            self._db[name] = self._db["index"]
        meta = self._db["meta"]
        stored = txn.get(_META_FORMAT, db=meta)
        if stored is None:
            if txn.stat(self._db["jobs"])["entries"]:
                raise DataDirError(f"data dir {self.path} holds jobs but no format "
                                   "marker; it was not written by gq")
            txn.put(_META_FORMAT, str(FORMAT_VERSION).encode(), db=meta)
            txn.put(_META_TAG, secrets.token_hex(4).encode(), db=meta)
            txn.put(_META_SEQ, SequenceCounter(0).encode(), db=meta)
        elif stored != str(FORMAT_VERSION).encode():
            raise DataDirError(
                f"data dir {self.path} was written in gq storage format "
                f"{bytes(stored).decode(errors='replace')}; this gq reads format "
                f"{FORMAT_VERSION}. Use the gq version that wrote it (or export and "
                "re-import the jobs)"
            )
        self.tag = bytes(txn.get(_META_TAG, db=meta)).decode()
        self._check_counter(txn)

    def _check_counter(self, txn) -> None:
        """The persisted counter must be past every seq in use, or ids and order
        would repeat: refuse to open a store whose metadata disagrees."""
        counter = SequenceCounter.decode(txn.get(_META_SEQ, db=self._db["meta"]))
        with txn.cursor(db=self._db["ready"]) as cur:
            if cur.last() and bytes(cur.key()).startswith(K.READY) and \
                    K.parse_ready_key(cur.key()) > counter.last:
                raise DataDirError(
                    f"data dir {self.path}: sequence counter {counter.last} is behind a "
                    f"stored job ({K.parse_ready_key(cur.key())}); the metadata is damaged, "
                    "run `gq check`"
                )

    def listing_prefix(self, job_type: str) -> bytes:
        """b"L<type>\\0", cached: job types are few and every move needs one."""
        prefix = self._listing_prefixes.get(job_type)
        if prefix is None:
            if len(self._listing_prefixes) > 10_000:
                self._listing_prefixes.clear()
            prefix = self._listing_prefixes[job_type] = K.listing_prefix(job_type)
        return prefix

    # -- the writer's side ----------------------------------------------------
    def _run_batch(self, ops) -> None:
        try:
            self._commit(ops)
            self.breaker.succeeded()
            return
        except PartialWrite:
            pass
        except Exception as e:
            if _is_engine_failure(e):
                # An I/O error: nothing of the batch committed, and the environment
                # is not to be trusted (or used: LMDB may have marked it unusable).
                # Never retried in place: reopen, and let the callers retry.
                error = self._storage_failed(e, "commit")
                for op in ops:
                    op.result, op.error = None, error
                return
            if len(ops) == 1:
                ops[0].result, ops[0].error = None, self._refusal(e)
                return
        # The batch was aborted as a whole: give each op its own transaction so a
        # broken op cannot take the others down with it.
        for op in ops:
            try:
                self._commit([op])
                self.breaker.succeeded()
            except PartialWrite as e:
                op.result, op.error = None, e.__cause__
            except Exception as e:
                op.result, op.error = None, \
                    self._storage_failed(e, "commit") if _is_engine_failure(e) \
                    else self._refusal(e)

    def _refusal(self, e: Exception) -> Exception:
        """A batch's error that is not an I/O failure: a full map, or a bug."""
        if isinstance(e, lmdb.MapFullError):
            PERSISTENCE_ERRORS.inc()
        return self._translate(e)

    def _storage_failed(self, e: Exception, during: str) -> Exception:
        """Count and log a storage-engine failure, feed the circuit breaker (a full
        disk excepted: it has its own answer), reopen the environment; return the
        error for the callers."""
        PERSISTENCE_ERRORS.inc()
        error = self._translate(e)
        log.error("persistence error during %s on %s: %s", during, self.path, e)
        if not isinstance(error, StorageFull):
            self.breaker.failed(e)
        if during == "commit":
            self._reopen()
        return error

    def _reopen(self) -> None:
        """Close the environment and open it again (see gq.store.lmdb.gate). Runs in
        the writer, so no write transaction of this process is open."""
        with self._gate.reopening():
            env, self._env = self._env, None
            if env is not None:
                try:
                    env.close()
                except Exception:  # noqa: BLE001 - it is being replaced either way
                    pass
            try:
                self._env = _open_env(self.path, self.map_size)
                self._prepare()
            except Exception as e:  # noqa: BLE001 - retried by the next write
                if self._env is not None:
                    self._env.close()
                    self._env = None
                PERSISTENCE_ERRORS.inc()
                self.breaker.failed(e)
                log.error("reopening the store at %s failed: %s", self.path, e)
                return
            self.reopens += 1
            log.warning("store at %s closed and reopened after a storage failure",
                        self.path)

    def _live_env(self):
        """The environment for a write; reopened here if an earlier reopen failed."""
        if self._env is None:
            self._reopen()
            if self._env is None:
                raise StoreUnavailable(f"the store at {self.path} could not be reopened "
                                       "after a storage failure; check the disk")
        return self._env

    def _commit(self, ops) -> None:
        env = self._live_env()
        txn = env.begin(write=True)
        try:
            batch = Batch(self, txn)
            apply_ops(batch, ops)
            batch.flush()
        except BaseException:
            txn.abort()
            raise
        # The workers are woken before the meta page's sync, so their claims
        # overlap it: a claim's own commit syncs this meta page before it can be
        # durable, and a worker starts a job only once its claim is durable.
        durable_commit(env, txn, visible=self.doorbell.ring if batch.ring else None)
        for fn in batch.after_commit:
            fn()

    def _translate(self, e: Exception) -> Exception:
        if isinstance(e, GQError):
            return e
        if isinstance(e, lmdb.MapFullError):
            return StorageFull(
                f"the store at {self.path} is full (LMDB map_size {self.map_size:,} bytes); "
                "nothing was written. Purge finished jobs (`gq purge`) or reopen with a "
                "larger map_size"
            )
        if isinstance(e, (lmdb.Error, OSError)) and ("No space left" in str(e) or
                                                     getattr(e, "errno", None) == errno.ENOSPC):
            return StorageFull(f"the disk holding {self.path} is full; nothing was "
                               "written. Free disk space (`gq purge --older-than ...` "
                               "deletes finished jobs), then submit again")
        return PersistenceError(f"store write failed at {self.path}: {e}")

    def _write(self, fn):
        self._check_open()
        return self._writer.call(fn)

    # -- writes ---------------------------------------------------------------
    def submit(self, specs, *, max_depth=None, now, key_window=0.0):
        if self.breaker.admit():
            self._probe()
        return self._write(_SubmitOp(specs, max_depth, now, key_window))

    def asubmit(self, specs, *, max_depth=None, now, key_window=0.0):
        """An awaitable (the commit's future itself, not a coroutine around it:
        the one awaited per caller on the hot path of concurrent submits)."""
        self._check_open()
        op = _SubmitOp(specs, max_depth, now, key_window)
        if self.breaker.admit():
            return self._after_probe(op)
        return self._writer.future(op, asyncio.get_running_loop())

    async def _after_probe(self, op):
        await self._aprobe()
        return await self._writer.acall(op, asyncio.get_running_loop())

    def submit_occurrence(self, name, occurrence, specs, *, max_depth=None, now,
                          key_window=0.0):
        """Submit `specs` (one job) as occurrence `occurrence` (epoch seconds) of
        the periodic schedule `name`, unless that occurrence or a later one was
        already submitted, by any process; the first call for a schedule only
        records where it starts. Returns the new id or None (gq.store.lmdb.occurrences)."""
        op = _SubmitOp(specs, max_depth, now, key_window)
        return self._write(functools.partial(occurrences.submit_occurrence, name,
                                             occurrence, op))

    def expire_lifetimes(self, *, now, limit=1000):
        """Jobs past their lifetime -> dead_letter (see gq.store.lmdb.expiry). Returns
        (id, type, previous state) of each."""
        return self._write(functools.partial(expiry.expire, now, limit))

    async def aexpire_lifetimes(self, *, now, limit=1000):
        return await self._awrite(functools.partial(expiry.expire, now, limit))

    def next_expiry(self):
        """The earliest lifetime deadline (epoch seconds) of any job, or None."""
        with self._read() as txn:
            return expiry.next_expiry(txn, self._db)

    def blocked_count(self) -> int:
        """How many pending jobs are blocked by a dependency that cannot complete."""
        with self._read() as txn:
            return blocking.blocked_count(txn, self._db)

    def waiting_on(self, job_id):
        """([(dependency id, state)] not yet completed, [blocking chains]) of a job."""
        with self._read() as txn:
            raw = txn.get(job_id.encode(), db=self._db["jobs"])
            if raw is None:
                raise JobNotFound(job_id)
            waits = []
            for dep in load_record(raw, job_id).depends_on:
                dep_raw = txn.get(dep.encode(), db=self._db["jobs"])
                state = "purged" if dep_raw is None else \
                    S.STATE_NAMES[load_record(dep_raw, dep).state]
                if state != "completed":
                    waits.append((dep, state))
            return waits, [chain for _, chain in blocking.chains_of(txn, self._db, job_id)]

    def cancel(self, job_id, *, now):
        def op(b: Batch):
            rec = b.load_existing(job_id)
            rules.check_cancel(rec)
            if rec.state == S.RUNNING:
                b.ring = True   # its worker must stop the handler
            return b.move(rec, S.CANCELLED, now, finished_at=now)
        return self._write(op)

    def retry(self, job_id, *, now):
        def op(b: Batch):
            rec = b.load_existing(job_id)
            rules.check_retry(rec, now)
            return b.move(rec, S.SCHEDULED, now, attempts=0, crashes=0, run_at=0.0,
                          finished_at=0.0)
        return self._write(op)

    # -- the worker's side (every method also has an `a`-prefixed coroutine twin) --
    def claim(self, candidates, *, owner, lease_deadline, now):
        """scheduled -> running for each (id, ready_seq) that is still ready as the
        dispatcher saw it; stale candidates (claimed elsewhere, cancelled,
        re-queued since) are skipped. Returns the claimed records (attempts + 1,
        leased to `owner` until `lease_deadline`, a time.monotonic() value)."""
        return self._write(functools.partial(_claim, candidates, owner, lease_deadline, now))

    def finish(self, job_id, *, attempt, owner, state, now, result=b"", error=b"",
               run_at=0.0):
        """Record the outcome of attempt `attempt`: running -> completed | scheduled
        (retry at `run_at`) | failed | dead_letter. Fenced: refused with LeaseLost
        unless the job is still running under this owner and attempt. Completing
        a job releases dependents whose dependencies are now all completed."""
        return self._write(functools.partial(_finish, job_id, attempt, owner, state, now,
                                             result, error, run_at))

    def extend(self, leases, *, owner, lease_deadline):
        """Heartbeat: push the lease deadline of each held (id, attempt). Returns
        the ids whose lease is gone (cancelled, recovered): stop their handlers."""
        return self._write(functools.partial(_extend, leases, owner, lease_deadline))

    def promote_due(self, *, now, limit=1000):
        """Delayed jobs whose run_at has come -> ready (fresh ready seqs, in due
        order). Returns how many moved."""
        return self._write(functools.partial(_promote_due, now, limit))

    async def aclaim(self, candidates, *, owner, lease_deadline, now):
        return await self._awrite(functools.partial(_claim, candidates, owner,
                                                    lease_deadline, now))

    def hand_back(self, jobs, *, owner, now):
        """Undo claims that will not run (a claim answered after the worker began
        to stop): each (id, attempt) still running under `owner` at that attempt
        -> scheduled, ready at once, with the attempt given back. Others (cancelled
        or recovered meanwhile) are left alone. Returns the ids handed back."""
        return self._write(functools.partial(_hand_back, jobs, owner, now))

    async def ahand_back(self, jobs, *, owner, now):
        return await self._awrite(functools.partial(_hand_back, jobs, owner, now))

    async def afinish(self, job_id, *, attempt, owner, state, now, result=b"", error=b"",
                      run_at=0.0):
        return await self._awrite(functools.partial(_finish, job_id, attempt, owner, state,
                                                    now, result, error, run_at))

    async def afinish_many_and_claim(self, finishes, *, owner, now, candidates=(),
                                     lease_deadline=0.0):
        """Several `finish`es and a `claim` in one transaction: a busy worker
        records the outcomes of the jobs that just ended and refills their slots
        with one commit. `finishes`: (job_id, attempt, state, result, error,
        run_at) tuples. Returns ({job_id: refusal} for finishes refused with
        LeaseLost or JobNotFound, claimed records); refused finishes do not stop
        the others, nor the claim."""
        return await self._awrite(functools.partial(
            _finish_many_and_claim, finishes, owner, now, candidates, lease_deadline))

    async def aextend(self, leases, *, owner, lease_deadline):
        return await self._awrite(functools.partial(_extend, leases, owner, lease_deadline))

    async def apromote_due(self, *, now, limit=1000):
        return await self._awrite(functools.partial(_promote_due, now, limit))

    def reclaim_owner(self, owner, *, now, crashed=True,
                      quarantine_after=CRASH_QUARANTINE_DEFAULT):
        """Running jobs leased to `owner` (a worker instance known to be dead) ->
        scheduled, ready at once; their next claim counts a new attempt. When the
        owner `crashed` (rather than exiting after a graceful drain), each job's
        `crashes` goes up by one, and a job whose worker died under it
        `quarantine_after` times goes to dead_letter (category system) instead:
        it must not take down worker after worker. Returns the reclaimed ids."""
        return self._write(functools.partial(_reclaim_owner, owner, now, crashed,
                                             quarantine_after))

    def purge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        """Delete up to `limit` finished jobs (completed, failed, cancelled) that
        finished more than `older_than` seconds ago, with every index entry of
        theirs. dead_letter jobs are kept: an operator may still retry them.
        Returns how many were deleted; call again while it returns `limit`.

        LMDB reuses the pages a transaction frees only after one more commit (the
        previous snapshot must survive a torn meta write), so a purge that freed
        anything is followed by a tiny commit: on a full disk, the next write
        would otherwise find no page to reuse and no room to grow."""
        n = self._write(functools.partial(_purge, now - older_than, limit))
        if n:
            self._write(_probe_op)
        return n

    async def apurge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        n = await self._awrite(functools.partial(_purge, now - older_than, limit))
        if n:
            await self._awrite(_probe_op)
        return n

    def reclaim_expired(self, job_id, *, owner, now, now_mono):
        """One running job whose lease (a monotonic deadline) has passed ->
        scheduled, if it is still leased to `owner` and still expired."""
        def op(b: Batch):
            rec = b.load(job_id)
            if rec is None or rec.state != S.RUNNING or rec.lease_owner != owner \
                    or not (0 < rec.lease_deadline < now_mono):
                return False
            b.move(rec, S.SCHEDULED, now, lease_owner="", lease_deadline=0.0, run_at=0.0)
            return True
        return self._write(op)

    def reclaim_other_boot(self, boot_id: str, *, now: float) -> list[tuple[str, str]]:
        """Record `boot_id` (the machine's current boot) as the store's; if it
        replaces another, every running job was leased before a reboot (its
        worker is gone, its lease deadline is on a clock that restarted): all go
        back to scheduled, in the same transaction, so of several workers
        starting at once only the first reclaims. Returns (id, old owner) pairs."""
        def op(b: Batch):
            stored = b.txn.get(K.META_BOOT, db=b.db["meta"])
            if stored is not None and bytes(stored).decode() == boot_id:
                return []
            b.wrote = True
            b.txn.put(K.META_BOOT, boot_id.encode(), db=b.db["meta"])
            if stored is None:
                return []     # first boot recorded: dead owners are found by flock
            reclaimed = []
            for rec in list(_running_records(b)):
                owner = rec.lease_owner
                b.move(rec, S.SCHEDULED, now, lease_owner="", lease_deadline=0.0, run_at=0.0)
                reclaimed.append((rec.id, owner))
            return reclaimed
        return self._write(op)

    def reader_check(self) -> int:
        """Free the reader slots of dead processes (a killed process leaves its
        slot behind, and the snapshot it names keeps LMDB from reusing pages, so
        the file grows). Returns how many were freed."""
        self._check_open()
        with self._gate.reading():
            return self._env.reader_check() if self._env is not None else 0

    def running_leases(self) -> list[tuple[str, str, float]]:
        """(job id, lease owner, lease deadline) of every running job."""
        with self._read() as txn:
            batchless = _ReadView(self, txn)
            return [(r.id, r.lease_owner, r.lease_deadline) for r in _running_records(batchless)]

    def next_due(self) -> float | None:
        """run_at of the earliest delayed job, or None."""
        with self._read() as txn, txn.cursor(db=self._db["delayed"]) as cur:
            if cur.set_range(K.DELAYED) and bytes(cur.key()).startswith(K.DELAYED):
                return K.parse_delayed_key(cur.key())[0]
        return None

    def states_of(self, job_ids) -> dict[str, tuple[int, int, str]]:
        """(state, attempts, lease_owner) of each job, read without the writer."""
        out = {}
        with self._read() as txn:
            for job_id in job_ids:
                raw = txn.get(job_id.encode(), db=self._db["jobs"])
                if raw is not None:
                    rec = load_record(raw, job_id)
                    out[job_id] = (rec.state, rec.attempts, rec.lease_owner)
        return out

    async def _awrite(self, fn):
        self._check_open()
        return await self._writer.acall(fn, asyncio.get_running_loop())

    def set_paused(self, job_type, paused):
        def op(b: Batch):
            b.wrote = True
            b.ring = True    # workers re-read the paused types at once
            key = _PAUSED + job_type.encode()
            if paused:
                b.txn.put(key, b"1", db=b.db["meta"])
            else:
                b.txn.delete(key, db=b.db["meta"])
            b._paused = None
        self._write(op)

    # -- reads ----------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self):
        """A read transaction, behind the reopen gate; an engine failure is
        counted and reported as PersistenceError."""
        self._check_open()
        with self._gate.reading():
            env = self._env
            if env is None:
                raise StoreUnavailable(f"the store at {self.path} is being reopened "
                                       "after a storage failure; retry shortly")
            try:
                with env.begin() as txn:
                    yield txn
            except (lmdb.Error, OSError) as e:
                if isinstance(e, GQError):
                    raise
                raise self._storage_failed(e, "read") from e

    def get(self, job_id):
        with self._read() as txn:
            raw = txn.get(job_id.encode(), db=self._db["jobs"])
            return None if raw is None else load_record(raw, job_id)

    def list(self, *, state=None, type=None, limit=100):
        with self._read() as txn:
            jobs = self._db["jobs"]
            if type is not None:
                ids = self._scan_listing(txn, K.listing_prefix(type, state), limit)
            elif state is not None:
                types = sorted({t for (st, t) in self._read_counts(txn) if st == state})
                streams = [self._scan_listing(txn, K.listing_prefix(t, state), limit,
                                              with_seq=True) for t in types]
                ids = [job_id for _, job_id in heapq.merge(*streams)][:limit]
            else:
                with txn.cursor(db=jobs) as cur:
                    ids = []
                    for key in cur.iternext(keys=True, values=False):
                        if len(ids) >= limit:
                            break
                        ids.append(bytes(key).decode())
            out = []
            for job_id in ids:
                raw = txn.get(job_id.encode(), db=jobs)
                if raw is not None:
                    out.append(load_record(raw, job_id))
            return out

    def _scan_listing(self, txn, prefix: bytes, limit: int, with_seq: bool = False):
        out = []
        with txn.cursor(db=self._db["listing"]) as cur:
            if cur.set_range(prefix):
                for key, value in cur:
                    if len(out) >= limit or not bytes(key).startswith(prefix):
                        break
                    job_id = bytes(value).decode()
                    out.append((K.unpack_u64(key[-8:]), job_id) if with_seq else job_id)
        return out

    def _read_counts(self, txn) -> dict[tuple[int, str], int]:
        out = {}
        with txn.cursor(db=self._db["meta"]) as cur:
            if cur.set_range(K.COUNT_PREFIX):
                for key, value in cur:
                    if not bytes(key).startswith(K.COUNT_PREFIX):
                        break
                    out[K.parse_count_key(key)] = K.unpack_u64(value)
        return out

    def counts(self):
        with self._read() as txn:
            return self._read_counts(txn)

    def paused_types(self):
        with self._read() as txn:
            return self._read_paused(txn)

    def _read_paused(self, txn) -> frozenset:
        out = set()
        with txn.cursor(db=self._db["meta"]) as cur:
            if cur.set_range(_PAUSED):
                for key in cur.iternext(values=False):
                    if not bytes(key).startswith(_PAUSED):
                        break
                    out.add(bytes(key[len(_PAUSED):]).decode())
        return frozenset(out)

    def ready_after(self, seq, limit):
        out = []
        with self._read() as txn, txn.cursor(db=self._db["ready"]) as cur:
            if cur.set_range(K.ready_key(seq + 1)):
                for key, value in cur:
                    if len(out) >= limit or not bytes(key).startswith(K.READY):
                        break
                    out.append((K.parse_ready_key(key), *K.parse_ready_value(value)))
        return out

    def push_ready_after(self, heap, seq, limit, handled):
        """ready_after straight into a ReadyHeap (rows of types in `handled` only),
        parsed in the core: a worker's start on a big store reads the whole feed.
        Returns (rows read, last seq read; 0 if none)."""
        with self._read() as txn, txn.cursor(db=self._db["ready"]) as cur:
            if not cur.set_range(K.ready_key(seq + 1)):
                return 0, 0
            return push_ready_rows(heap, cur.iternext(), handled, limit)

    def check(self) -> CheckReport:
        """`gq check` (gq.store.lmdb.check): read-only, one snapshot."""
        with self._read() as txn:
            return check_records(txn, self._db, self._read_counts(txn), CheckReport())

    # -- moving between stores (gq export / gq import) ------------------------
    def insert_records(self, records, *, now: float) -> None:
        """Store moved-in records as they are, all of them or none
        (gq.store.lmdb.transfer)."""
        self._write(functools.partial(insert_records, list(records), now))

    # -- closing --------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise GQError(f"the queue at {self.path} is closed")

    def close(self) -> None:
        if self._closed:
            return
        self._writer.close()
        self._closed = True
        self.doorbell.close()
        with self._gate.reopening():
            if self._env is not None:
                self._env.close()


def plan_specs(b: Batch, specs, waits, now: float) -> list[str]:
    """Number, encode and index new jobs into the batch's planned rows (the loop
    is compiled: gq._core.plan); returns their ids."""
    rows = b.rows
    counts: dict[tuple[int, str], int] = {}
    first_seq = b.take_seq(len(specs))
    ids = plan_rows(specs, waits, first_seq, b.store.tag, now,
                    b.store._listing_prefixes, rows["jobs"], rows["listing"],
                    rows["ready"], rows["delayed"], b.planned, counts)
    for (state, job_type), n in counts.items():
        b.add_count(state, job_type, n)
    for n in with_lifetime(specs):   # lifetimes: their deadline index (gq.store.lmdb.expiry)
        rows["expiry"].append((K.expiry_key(now + specs[n].lifetime, first_seq + n),
                               ids[n].encode()))
    return ids


class _SubmitOp:
    """The write op of submit / submit_many: checks everything first, then plans
    the new jobs into the batch (written together with the other submits of the
    same group commit)."""

    __slots__ = ("specs", "max_depth", "now", "plain", "key_window")

    def __init__(self, specs, max_depth, now, key_window=0.0):
        self.specs = specs
        self.max_depth = max_depth
        self.now = now
        self.key_window = key_window
        # Nothing to look up in the store: the batch plans these with its others.
        self.plain = max_depth is None and all_plain(specs)

    def __call__(self, b: Batch) -> list[str]:
        if self.plain:
            b.reserve_room(space.jobs_bytes(self.specs))   # see gq.store.lmdb.space
            return b.defer_plain(self.specs)
        specs = self.specs
        results: list[str | None] = [None] * len(specs)
        fresh = []                         # (index, spec) of jobs to create
        key_creator: dict[str, int] = {}   # key -> index of the spec that creates its job
        folded = []                        # (index, creator index): same key, same job
        # 1. idempotency keys and caller-chosen ids
        for i, spec in enumerate(specs):
            if spec.key:
                if spec.key in key_creator:
                    folded.append((i, key_creator[spec.key]))
                    continue
                existing = self._live_key_owner(b, spec.key, self.now, self.key_window)
                if existing is not None:
                    results[i] = existing
                    continue
                key_creator[spec.key] = i
            if spec.id is not None and self._exists(b, spec.id):
                raise DuplicateJobId(f"job id {spec.id!r} is already used by a stored job")
            fresh.append((i, spec))
        # 2. dependencies: stored and completed, stored and unfinished, or in this batch
        waits = self._check_dependencies(b, fresh) if any(s.depends_on for s in specs) \
            else [False] * len(fresh)
        # 3. the hard depth limit: retries never count here, only new submissions
        if self.max_depth is not None and fresh:
            depth = b.count((S.PENDING, S.SCHEDULED)) - b.requeued()
            if depth + len(fresh) > self.max_depth:
                raise QueueFull(
                    f"the queue holds {depth:,} jobs waiting to run (pending + scheduled, "
                    f"retries not counted) and "
                    f"max_depth is {self.max_depth:,}; {len(fresh)} more would pass it. "
                    "Retry later or add workers"
                )
        # 4. room: keep a reserve for running jobs' outcomes (gq.store.lmdb.space)
        if fresh:
            b.reserve_room(sum(space.job_bytes(spec) for _, spec in fresh))
        # 5. plan the rows (nothing below raises a GQError)
        if fresh:
            self._plan(b, fresh, waits, results)
        for i, creator in folded:
            results[i] = results[creator]
        return results

    def _plan(self, b: Batch, fresh, waits, results) -> None:
        """Number, encode and index the new jobs; dependents and idempotency keys
        are the rare extras."""
        rows = b.rows
        ids = plan_specs(b, [spec for _, spec in fresh], waits, self.now)
        dep_prefixes: dict[str, bytes] = {}
        for (i, spec), job_id, unmet in zip(fresh, ids, waits):
            results[i] = job_id
            if unmet:
                id_bytes = job_id.encode()
                for dep in spec.depends_on:   # many jobs often share dependencies
                    prefix = dep_prefixes.get(dep)
                    if prefix is None:
                        prefix = dep_prefixes[dep] = K.dependents_prefix(dep)
                    rows["dependents"].append((prefix + id_bytes, b""))
                b._has_dependents = True
            if spec.key:
                rows["keys"].append((K.idempotency_key(spec.key), job_id.encode()))
                b.planned_keys[spec.key] = job_id
        # a new job may wait on one that already failed, or on a blocked one
        if any(waits) and (b.doomed_dependency or blocking.blocked_count(b.txn, b.db)):
            self._block_new(b, fresh, ids, waits)

    @staticmethod
    def _block_new(b: Batch, fresh, ids, waits) -> None:
        """Mark new pending jobs blocked where a dependency cannot complete; jobs
        of the batch after the batch jobs they depend on."""
        waiting = {job_id: spec for (_, spec), job_id, unmet in zip(fresh, ids, waits)
                   if unmet}
        done: set[str] = set()
        for start in waiting:   # iterative post-order: batch chains can be long
            stack = [(start, False)]
            while stack:
                job_id, deps_done = stack.pop()
                if deps_done:
                    blocking.block_new(b, job_id, waiting[job_id].depends_on)
                    continue
                if job_id in done:
                    continue
                done.add(job_id)
                stack.append((job_id, True))
                stack.extend((dep, False) for dep in waiting[job_id].depends_on
                             if dep in waiting and dep not in done)

    @staticmethod
    def _exists(b: Batch, job_id: str) -> bool:
        return job_id in b.planned or \
            b.txn.get(job_id.encode(), db=b.db["jobs"]) is not None

    def _check_dependencies(self, b: Batch, fresh) -> list[bool]:
        batch_ids = {s.id for s in self.specs if s.id is not None}
        created = {spec.id for _, spec in fresh if spec.id is not None}
        stored: dict[str, int] = {}
        waits = []
        for i, spec in fresh:
            unmet = False
            for dep in spec.depends_on:
                if dep in created or dep in b.planned:
                    unmet = unmet or b.planned.get(dep) != S.COMPLETED
                    continue
                if dep in batch_ids:   # its spec was folded into an existing job by key
                    raise ValidationError(
                        f"a job depends on {dep!r}, which the batch did not create because "
                        "its idempotency key matched an existing job; depend on that job instead")
                dep_state = stored.get(dep)
                if dep_state is None:   # read each stored dependency once per batch
                    raw = b.txn.get(dep.encode(), db=b.db["jobs"])
                    if raw is None:
                        raise UnknownDependency(spec.id or f"#{i} ({spec.type})", dep)
                    dep_state = stored[dep] = load_record(raw, dep).state
                unmet = unmet or dep_state != S.COMPLETED
                if dep_state in blocking.UNSATISFIABLE:
                    b.doomed_dependency = True
            waits.append(unmet)
        return waits

    @staticmethod
    def _live_key_owner(b: Batch, key: str, now: float, window: float) -> str | None:
        """The job that holds idempotency key `key`: one not finished, or one
        completed less than `window` seconds ago."""
        planned = b.planned_keys.get(key)
        if planned is not None:
            return planned
        raw = b.txn.get(K.idempotency_key(key), db=b.db["keys"])
        if raw is None:
            return None
        job_id = bytes(raw).decode()
        owner = b.txn.get(raw, db=b.db["jobs"])
        if owner is None:
            return None
        rec = load_record(owner, job_id)
        if not S.is_terminal(rec.state):
            return job_id
        if rec.state == S.COMPLETED and window > 0 and now - rec.finished_at < window:
            return job_id
        return None


def _is_engine_failure(e: BaseException) -> bool:
    """An I/O-level failure of the storage engine (a failed write or fsync, a
    panicked environment), as opposed to a full map or a bug in an op."""
    return isinstance(e, (lmdb.Error, OSError)) and not isinstance(
        e, (lmdb.MapFullError, lmdb.BadValsizeError, GQError))


# -- the worker's write ops (run by the group-commit writer) -------------------

def _claim(candidates, owner, lease_deadline, now, b: Batch):
    claimed = []
    paused = b.paused_types()
    for job_id, ready_seq in candidates:
        try:
            rec = b.load(job_id)
        except RecordCorrupted as e:
            # Unreadable: it can never run. Take it out of the ready queue so no
            # worker trips on it again, and say so; `gq check` lists it.
            log.error("%s; job taken out of the ready queue", e,
                      extra={"job_id": job_id, "category": "system"})
            b.wrote = True
            b.txn.delete(K.ready_key(ready_seq), b"", b.db["ready"])
            continue
        if rec is None or rec.state != S.SCHEDULED or rec.ready_seq != ready_seq:
            continue   # stale: someone else moved it since the dispatcher saw it
        if rec.type in paused:
            continue   # paused since the dispatcher looked: the pause wins
        claimed.append(b.move(rec, S.RUNNING, now, attempts=rec.attempts + 1,
                              lease_owner=owner, lease_deadline=lease_deadline,
                              started_at=now))
    return claimed


def _hand_back(jobs, owner, now, b: Batch):
    handed = []
    for job_id, attempt in jobs:
        rec = b.load(job_id)
        if rec is None or rec.state != S.RUNNING or rec.attempts != attempt or \
                rec.lease_owner != owner:
            continue
        b.move(rec, S.SCHEDULED, now, attempts=attempt - 1, lease_owner="",
               lease_deadline=0.0, run_at=0.0)
        handed.append(job_id)
    return handed


def _finish(job_id, attempt, owner, state, now, result, error, run_at, b: Batch):
    rec = b.load_existing(job_id)
    if rec.state != S.RUNNING or rec.attempts != attempt or rec.lease_owner != owner:
        raise LeaseLost(job_id, attempt, S.STATE_NAMES[rec.state], rec.attempts)
    changes = {"lease_owner": "", "lease_deadline": 0.0}
    if state == S.COMPLETED:
        changes.update(result=result, error=b"", finished_at=now)
    elif state == S.SCHEDULED:
        changes.update(error=error, run_at=run_at)
    else:
        changes.update(error=error, finished_at=now)
    b.move(rec, state, now, **changes)
    if state == S.COMPLETED:
        _release_dependents(b, job_id, now)
    return rec


class _ReadView:
    """The two things _running_records needs from a Batch, over a read transaction."""

    def __init__(self, store, txn):
        self.store, self.txn, self.db = store, txn, store._db

    def load(self, job_id):
        raw = self.txn.get(job_id.encode(), db=self.db["jobs"])
        return None if raw is None else load_record(raw, job_id)


def _running_records(b: Batch):
    """Every running job, through the listing index (one prefix per type)."""
    types = {t for (st, t), n in b.store._read_counts(b.txn).items() if st == S.RUNNING}
    ids = []
    with b.txn.cursor(db=b.db["listing"]) as cur:
        for job_type in sorted(types):
            prefix = K.listing_prefix(job_type, S.RUNNING)
            if cur.set_range(prefix):
                for key, value in cur:
                    if not bytes(key).startswith(prefix):
                        break
                    ids.append(bytes(value).decode())
    for job_id in ids:
        rec = b.load(job_id)
        if rec is not None and rec.state == S.RUNNING:
            yield rec


def _reclaim_owner(owner, now, crashed, quarantine_after, b: Batch):
    reclaimed = []
    for rec in list(_running_records(b)):
        if rec.lease_owner != owner:
            continue
        crashes = rec.crashes + (1 if crashed else 0)
        if crashed and crashes >= quarantine_after:
            error = JobError(Category.SYSTEM,
                             f"quarantined: its worker process died while running it "
                             f"{crashes} times (it keeps killing its worker); fix the "
                             "handler or the payload, then `gq retry` it",
                             None, rec.attempts).to_json()
            b.move(rec, S.DEAD_LETTER, now, lease_owner="", lease_deadline=0.0,
                   crashes=crashes, error=error, finished_at=now)
        else:
            b.move(rec, S.SCHEDULED, now, lease_owner="", lease_deadline=0.0, run_at=0.0,
                   crashes=crashes)
        reclaimed.append(rec.id)
    return reclaimed


PURGEABLE = (S.COMPLETED, S.FAILED, S.CANCELLED)


def _purge(cutoff, limit, b: Batch) -> int:
    doomed = []
    types = sorted({t for (st, t) in b.store._read_counts(b.txn) if st in PURGEABLE})
    with b.txn.cursor(db=b.db["listing"]) as cur:
        for job_type in types:
            for state in PURGEABLE:
                prefix = K.listing_prefix(job_type, state)
                if cur.set_range(prefix):
                    for key, value in cur:
                        if len(doomed) >= limit or not bytes(key).startswith(prefix):
                            break
                        doomed.append((bytes(key), bytes(value).decode()))
    purged = 0
    for listing_key, job_id in doomed:
        rec = b.load(job_id)
        if rec is None or rec.state not in PURGEABLE or rec.finished_at > cutoff:
            continue
        b.wrote = True
        b.txn.delete(listing_key, db=b.db["listing"])
        b.txn.delete(job_id.encode(), db=b.db["jobs"])
        for dep in rec.depends_on:
            b.txn.delete(K.dependent_key(dep, job_id), db=b.db["dependents"])
        if rec.key:
            owner = b.txn.get(K.idempotency_key(rec.key), db=b.db["keys"])
            if owner is not None and bytes(owner).decode() == job_id:
                b.txn.delete(K.idempotency_key(rec.key), db=b.db["keys"])
        b.add_count(rec.state, rec.type, -1)
        purged += 1
    return purged


def _finish_many_and_claim(finishes, owner, now, candidates, lease_deadline, b: Batch):
    refused = {}
    for job_id, attempt, state, result, error, run_at in finishes:
        try:
            _finish(job_id, attempt, owner, state, now, result, error, run_at, b)
        except (LeaseLost, JobNotFound, RecordCorrupted) as e:   # before that finish wrote
            refused[job_id] = e
    claimed = _claim(candidates, owner, lease_deadline, now, b) if candidates else []
    return refused, claimed


def _release_dependents(b: Batch, job_id: str, now: float) -> None:
    """The transaction that completes a job moves each dependent whose
    dependencies are now all completed from pending to scheduled."""
    if not b.dependents_exist():
        return
    prefix = K.dependents_prefix(job_id)
    for key in keys_under(b.txn, b.db["dependents"], prefix):
        b.txn.delete(key, db=b.db["dependents"])
        dependent = b.load(key[len(prefix):].decode())
        if dependent is None or dependent.state != S.PENDING:
            continue
        if all(_is_completed(b, dep) for dep in dependent.depends_on):
            b.move(dependent, S.SCHEDULED, now)


def _is_completed(b: Batch, job_id: str) -> bool:
    rec = b.load(job_id)
    return rec is not None and rec.state == S.COMPLETED


def _extend(leases, owner, lease_deadline, b: Batch):
    lost = []
    for job_id, attempt in leases:
        rec = b.load(job_id)
        if rec is None or rec.state != S.RUNNING or rec.attempts != attempt \
                or rec.lease_owner != owner:
            lost.append(job_id)
            continue
        rec.lease_deadline = lease_deadline
        b.put_record(rec)
    return lost


def _promote_due(now, limit, b: Batch) -> int:
    due = due_under(b.txn, b.db["delayed"], K.DELAYED, lambda key: K.parse_delayed_key(key)[0],
                    now, limit)
    for _, job_id in due:
        rec = b.load(job_id)
        if rec is None or rec.state != S.SCHEDULED or rec.ready_seq:
            continue
        b.remove_indexes(rec)
        rec.ready_seq = b.take_seq()
        rec.updated_at = now
        b.add_indexes(rec)
        b.put_record(rec)
    return len(due)


# -- one environment per (process, path) --------------------------------------

def durable_commit(env, txn, visible=None) -> None:
    """Commit `txn` and return once it survives power loss; `visible()`, if
    given, runs in between: the commit is seen by every process, not yet durable.

    LMDB (sync on, metasync off) writes the transaction's pages, syncs them, then
    writes the meta page that makes them current and releases its writer lock;
    the sync here puts that meta page on disk. A crash before it returns undoes
    at most this transaction, which nobody has been told of yet (LMDB keeps the
    previous meta page's tree intact for exactly that). Same two flushes as
    metasync on, but the second is outside the lock, where another process's
    commit runs beside it (submitter and worker processes share one lock)."""
    txn.commit()
    if visible is not None:
        visible()
    env.sync(True)


def _open_env(path: str, map_size: int):
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataDirError(f"data dir {path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise DataDirError(f"cannot create data dir {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise DataDirError(f"data dir {path} is not writable (read-only mount or "
                           "permissions); gq needs to write its lock and data files there")
    try:
        return lmdb.open(path, map_size=map_size, max_dbs=len(TABLES) + 2,
                         max_readers=MAX_READERS, sync=True, metasync=False,
                         writemap=False, map_async=False, readahead=False, subdir=True)
    except lmdb.Error as e:
        text = str(e)
        if "Read-only" in text or "Permission denied" in text:
            raise DataDirError(f"data dir {path} is not writable: {text}") from None
        if "Invalid argument" in text or "MDB_INVALID" in text or "MDB_VERSION" in text:
            raise DataDirError(f"data dir {path} does not hold a gq store this build can "
                               f"read: {text}") from None
        raise DataDirError(f"cannot open data dir {path}: {text}") from None


class _Registry:
    """LMDB forbids opening one environment twice in a process (closing either
    would drop the other's locks), so Queues on one path share one store."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stores: dict[str, list] = {}   # realpath -> [store, refcount]
        os.register_at_fork(after_in_child=self._forget_after_fork)

    def acquire(self, path: str, map_size: int, **options) -> LMDBStore:
        """The store of `path` in this process (opened with `options` if it is
        the first acquire)."""
        real = os.path.realpath(path)
        with self._lock:
            entry = self._stores.get(real)
            if entry is None:
                entry = self._stores[real] = [LMDBStore(path, map_size=map_size, **options), 0]
            entry[1] += 1
            return entry[0]

    def release(self, store: LMDBStore) -> None:
        real = os.path.realpath(store.path)
        with self._lock:
            entry = self._stores.get(real)
            if entry is None or entry[0] is not store:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self._stores[real]
                store.close()

    def _forget_after_fork(self) -> None:
        # The child must not use (or even close) its parent's environments.
        self._lock = threading.Lock()
        self._stores = {}


registry = _Registry()
