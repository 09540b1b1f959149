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
syncs the data pages, then writes the meta page synchronously, all under its
writer lock (sync and metasync on, `durable_commit` says why the meta page's
sync must not move out of the lock). writemap stays off (it would turn a full
disk into SIGBUS).
LMDB must be opened once per process, so stores are shared per (process, path).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
import os
import secrets

import lmdb

from gq._core import states as S
from gq._core.codec import FORMAT_VERSION
from gq._core.feed import push_ready_rows
from gq._core.seq import SequenceCounter
from gq.config import CIRCUIT_COOLDOWN_DEFAULT, CIRCUIT_THRESHOLD_DEFAULT
from gq.errors import DataDirError, GQError, JobNotFound, PersistenceError, StorageFull, \
    StoreUnavailable
from gq.metrics import PERSISTENCE_ERRORS
from gq.store.api import Capabilities, CheckReport
from gq.store.breaker import CircuitBreaker
from gq.store.lmdb import blocking, expiry
from gq.store.lmdb import ops as lmdb_ops
from gq.store.lmdb import keys as K
from gq.store.lmdb.batch import Batch, ReadView, load_record, read_counts, read_paused, \
    running_records
from gq.store.lmdb.check import check_records
from gq.store.lmdb.doorbell import ENDED_DIR, Doorbell
from gq.store.lmdb.env import LOGICAL_TABLES, TABLES, durable_commit, is_engine_failure, open_env
from gq.store.lmdb.gate import EnvGate
from gq.store.lmdb.liveness import LockFiles
from gq.store.service import Registry, WriterStore
from gq.store.writer import GroupCommitWriter, PartialWrite, apply_ops

log = logging.getLogger("gq.store")


class LMDBStore(WriterStore):
    """The embedded store (see the module docstring for its tables). Its writes
    are gq.store.service's, over the ops of gq.store.lmdb.ops."""

    ops = lmdb_ops
    capabilities = Capabilities(claims_by_quota=False, ready_feed=True, boot_scoped=True,
                                local_reads=True)

    # -- opening -------------------------------------------------------------
    def __init__(self, path: str, *, map_size: int,
                 circuit_threshold: int = CIRCUIT_THRESHOLD_DEFAULT,
                 circuit_cooldown: float = CIRCUIT_COOLDOWN_DEFAULT):
        self.path = path
        self.map_size = map_size
        self._env = open_env(path, map_size)
        self._db = {}
        try:
            self._prepare()
        except BaseException as e:
            self._env.close()
            if is_engine_failure(e):   # the opening transaction's sync failed
                PERSISTENCE_ERRORS.inc()
                log.error("persistence error during open on %s: %s", path, e)
                raise PersistenceError(f"cannot open the store at {path}: {e}") from e
            raise
        self.listing_prefixes: dict[str, bytes] = {}
        self._gate = EnvGate()
        self.breaker = CircuitBreaker(path, threshold=circuit_threshold,
                                      cooldown=circuit_cooldown)
        self.reopens = 0          # environments reopened after an I/O error
        self.doorbell = Doorbell(path)
        self.ended_bell = Doorbell(path, ENDED_DIR)    # result waiters (watch_ends)
        self.liveness = LockFiles(path)
        self._writer = GroupCommitWriter(self._run_batch, name=f"gq-writer:{path}")
        self._closed = False

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
        stored = txn.get(K.META_FORMAT, db=meta)
        if stored is None:
            if txn.stat(self._db["jobs"])["entries"]:
                raise DataDirError(f"data dir {self.path} holds jobs but no format "
                                   "marker; it was not written by gq")
            txn.put(K.META_FORMAT, str(FORMAT_VERSION).encode(), db=meta)
            txn.put(K.META_TAG, secrets.token_hex(4).encode(), db=meta)
            txn.put(K.META_SEQ, SequenceCounter(0).encode(), db=meta)
        elif stored != str(FORMAT_VERSION).encode():
            raise DataDirError(
                f"data dir {self.path} was written in gq storage format "
                f"{bytes(stored).decode(errors='replace')}; this gq reads format "
                f"{FORMAT_VERSION}. Use the gq version that wrote it (or export and "
                "re-import the jobs)"
            )
        self.tag = bytes(txn.get(K.META_TAG, db=meta)).decode()
        self._check_counter(txn)

    def _check_counter(self, txn) -> None:
        """The persisted counter must be past every seq in use, or ids and order
        would repeat: refuse to open a store whose metadata disagrees."""
        counter = SequenceCounter.decode(txn.get(K.META_SEQ, db=self._db["meta"]))
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
        prefix = self.listing_prefixes.get(job_type)
        if prefix is None:
            if len(self.listing_prefixes) > 10_000:
                self.listing_prefixes.clear()
            prefix = self.listing_prefixes[job_type] = K.listing_prefix(job_type)
        return prefix

    # -- the writer's side ---------------------------------------------------
    def _pick_writer(self) -> GroupCommitWriter:
        return self._writer

    def _run_batch(self, ops) -> None:
        try:
            self._commit(ops)
            self.breaker.succeeded()
            return
        except PartialWrite:
            pass
        except Exception as e:
            if is_engine_failure(e):
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
                    self._storage_failed(e, "commit") if is_engine_failure(e) \
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
                self._env = open_env(self.path, self.map_size)
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
        # The workers are woken once the commit is durable.
        durable_commit(env, txn, visible=self.doorbell.ring if batch.ring else None)
        if batch.ended:        # durable by now: a waiter told a job ended can trust it
            self.ended_bell.ring()
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

    # -- reads (each in one read transaction, behind the reopen gate) --------
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
                types = sorted({t for (st, t) in read_counts(txn, self._db) if st == state})
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

    def counts(self):
        with self._read() as txn:
            return read_counts(txn, self._db)

    @contextlib.contextmanager
    def watch_ends(self, job_id: str):
        """A socket in wake/ended/, readable after a durable commit that ended a
        job (any job: the waiter re-reads its own); see Store.watch_ends."""
        sock = self.ended_bell.listen(f"{os.getpid()}-{secrets.token_hex(4)}")
        try:
            yield sock
        finally:
            self.ended_bell.unlisten(sock)

    def paused_types(self):
        with self._read() as txn:
            return read_paused(txn, self._db)

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

    def next_due(self) -> float | None:
        """run_at of the earliest delayed job, or None."""
        with self._read() as txn, txn.cursor(db=self._db["delayed"]) as cur:
            if cur.set_range(K.DELAYED) and bytes(cur.key()).startswith(K.DELAYED):
                return K.parse_delayed_key(cur.key())[0]
        return None

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

    def running_leases(self) -> list[tuple[str, str, float]]:
        """(job id, lease owner, lease deadline) of every running job."""
        with self._read() as txn:
            batchless = ReadView(self, txn)
            return [(r.id, r.lease_owner, r.lease_deadline) for r in running_records(batchless)]

    def reader_check(self) -> int:
        """Free the reader slots of dead processes (a killed process leaves its
        slot behind, and the snapshot it names keeps LMDB from reusing pages, so
        the file grows). Returns how many were freed."""
        self._check_open()
        with self._gate.reading():
            return self._env.reader_check() if self._env is not None else 0

    def check(self) -> CheckReport:
        """`gq check` (gq.store.lmdb.check): read-only, one snapshot."""
        with self._read() as txn:
            return check_records(txn, self._db, read_counts(txn, self._db), CheckReport())

    # -- closing -------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._writer.close()
        self._closed = True
        self.doorbell.close()
        self.ended_bell.close()
        with self._gate.reopening():
            if self._env is not None:
                self._env.close()


# LMDB forbids opening one environment twice in a process (closing either would
# drop the other's locks): Queues on one path share one store.
registry: Registry[LMDBStore] = Registry(LMDBStore, key=os.path.realpath)
