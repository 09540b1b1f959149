"""The PostgreSQL store: the same contract as the LMDB store, for queues shared by
workers on many machines. Selected by a URL: `gq.Queue("postgresql://...")`.

Schema: gq.store.postgres.schema (versioned, created or migrated on open). A job is a
row of `gq_jobs`, its fields columns, its payload bytea as given (byte-exact).

How the contract maps onto PostgreSQL:

- Writes go through the same group-commit writer as LMDB (gq.store.writer): the
  ops waiting when a transaction starts share it, and the new jobs of every
  submit op in it go in with ONE multi-row INSERT (gq.store.postgres.insert) when the
  transaction flushes. Sequence numbers come from the database (`gq_seq`).
  A batch of nothing but plain submits is that one statement, its own
  transaction (see Tx). Unlike LMDB (one writer at a time, by design) several
  writers, each with its own session, may have transactions in flight
  ($GQ_POSTGRES_WRITERS, 2; PostgresStore._lane picks one per op).
- An op does its checks (SELECTs, with FOR SHARE / FOR UPDATE where another
  session could change the answer before commit) before its first write, and
  raises a GQError there: a refused op leaves nothing behind. A transaction
  aborted by the server (a unique violation from a concurrent submit, a
  deadlock) is re-run op by op, each up to RETRIES times.
- Claims: `FOR UPDATE SKIP LOCKED`, best priority then ready order, served by
  the gq_jobs_claim index. Workers on a PostgreSQL store ask for a quota
  (gq.runtime.claims.ClaimQuota) instead of naming candidates: the database picks.
- Fencing: every completing UPDATE has `state = running AND attempts = <attempt>
  AND lease_owner = <owner>` in its WHERE; no row updated means LeaseLost.
- Wake-ups: NOTIFY in the committing transaction (gq.store.postgres.wake LISTENs).
- Liveness: heartbeat rows (gq.store.postgres.instances), not file locks.
- Leases: the protocol passes lease deadlines on the caller's monotonic clock,
  which means nothing on another machine; the store keeps the remaining time
  added to the database's clock (`lease_deadline` of a record read from this
  store is database epoch seconds) and converts back in running_leases().
- Idempotency keys: a unique index over the keys of unfinished jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import secrets
import select
import threading
import time

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from gq._core import states as S
from gq._core.plan import all_plain
from gq.runtime.claims import ClaimQuota
from gq.config import (CIRCUIT_COOLDOWN_DEFAULT, CIRCUIT_THRESHOLD_DEFAULT,
                       CRASH_QUARANTINE_DEFAULT)
from gq.errors import (DataDirError, DuplicateJobId, GQError, JobNotFound, LeaseLost,
                       PersistenceError, QueueFull, StorageFull,
                       UnknownDependency, ValidationError)
from gq.jobs import Category, JobError
from gq.metrics import PERSISTENCE_ERRORS
from gq.store.api import Capabilities, CheckReport
from gq.store.breaker import BreakerProbes, CircuitBreaker
from gq.store.locations import shown as redact
from gq.store import rules
from gq.store.postgres import scheduling as pg_scheduling
from gq.store.postgres import insert as pg_insert
from gq.store.postgres.check import check_postgres
from gq.store.postgres.instances import Instances
from gq.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from gq.store.postgres.wake import ListenDoorbell
from gq.store.postgres.tx import COLUMNS, J_COLUMNS, LEASE_SQL, Planned, Tx, remaining, to_record
from gq.store.writer import GroupCommitWriter, PartialWrite, apply_ops

log = logging.getLogger("gq.store")

RETRIES = 3            # re-runs of an op whose transaction the server aborted
WRITER_LANES = int(os.environ.get("GQ_POSTGRES_WRITERS", "2"))   # see _Lane
POOL_SIZE = 8          # read connections per store
FOLD_COUNTS_ABOVE = 1000   # delta rows before counts() folds them

_ACTIVE = (S.PENDING, S.SCHEDULED)
PURGEABLE = (S.COMPLETED, S.FAILED, S.CANCELLED)


# One state over all types (schema v3 has no (state, seq) index): the types one
# by one from (type, state, seq) (a recursive walk, one index probe per type),
# the first `limit` jobs in that state of each type, then the first `limit` of all.
_LIST_STATE = (
    "WITH RECURSIVE types AS (SELECT min(type) AS type FROM gq_jobs UNION ALL "
    " SELECT (SELECT min(type) FROM gq_jobs WHERE type > types.type) FROM types "
    " WHERE types.type IS NOT NULL) "
    f"SELECT {J_COLUMNS} FROM types CROSS JOIN LATERAL (SELECT * FROM gq_jobs "
    " WHERE type = types.type AND state = %s ORDER BY seq LIMIT %s) j "
    "ORDER BY j.seq LIMIT %s")


def _probe_op(tx: Tx) -> None:
    """One small durable write: the circuit breaker's probe."""
    tx.write("UPDATE gq_meta SET value = value WHERE key = 'schema_version'")


class PostgresStore(BreakerProbes):
    """A Store (gq.store.api) on a PostgreSQL database; see the module docstring."""

    capabilities = Capabilities(claims_by_quota=True, ready_feed=False, boot_scoped=False)
    _probe_op = staticmethod(_probe_op)   # the breaker's probe (gq.store.breaker)

    def __init__(self, url: str, *, circuit_threshold: int = CIRCUIT_THRESHOLD_DEFAULT,
                 circuit_cooldown: float = CIRCUIT_COOLDOWN_DEFAULT):
        self.path = url
        self.breaker = CircuitBreaker(redact(url), threshold=circuit_threshold,
                                      cooldown=circuit_cooldown)
        first = None
        try:
            first = self._prepare(url)
            self._pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=True,
                                        kwargs={"autocommit": True},
                                        name=f"gq:{self.channel}", timeout=30.0)
        except psycopg.Error as e:
            if first is not None:
                first.close()
            raise DataDirError(f"cannot open the PostgreSQL store at {redact(url)}: "
                               f"{str(e).strip()}") from None
        # the first lane goes on with the session that opened the store
        self._lanes = [_Lane(url, first if i == 0 else None) for i in range(WRITER_LANES)]
        self._next_lane = itertools.count()
        self.doorbell = ListenDoorbell(url, self.channel)
        self.liveness = Instances(self)
        for i, lane in enumerate(self._lanes):
            lane.writer = GroupCommitWriter(functools.partial(self._run_batch, lane),
                                            name=f"gq-writer-{i}:{self.channel}")
        self._closed = False

    # -- opening ----------------------------------------------------------------
    def _prepare(self, url: str):
        """Check the schema, migrate it if older. Returns the session, which goes
        on as the first writer lane's: the first write pays no connection."""
        conn = _Lane.connect(url)
        try:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            if schema is None:
                raise DataDirError(f"the PostgreSQL store at {redact(url)} has no schema to "
                                   "live in: the search_path names no existing schema")
            self.schema = schema
            self.channel = f"gq:{schema}"
            if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
                log.warning("synchronous_commit is off on %s: an acknowledged submit can be "
                            "lost if the server crashes; gq's durability needs it on",
                            redact(url))
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                             (f"gq-migrate:{schema}",))
                exists = conn.execute("SELECT to_regclass(quote_ident(current_schema()) "
                                      "|| '.gq_meta')").fetchone()[0]
                version = 0
                if exists:
                    row = conn.execute("SELECT value FROM gq_meta WHERE key = "
                                       "'schema_version'").fetchone()
                    version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise DataDirError(
                        f"the PostgreSQL store at {redact(url)} has gq schema version "
                        f"{version}; this gq knows up to {SCHEMA_VERSION}. Use the gq "
                        "version that wrote it")
                for step in range(version, SCHEMA_VERSION):
                    log.info("migrating the PostgreSQL store in schema %s to version %d",
                             schema, step + 1)
                    conn.execute(MIGRATIONS[step])
                if version == 0:
                    conn.execute("INSERT INTO gq_meta VALUES ('tag', %s)",
                                 (secrets.token_hex(4),))
                conn.execute("INSERT INTO gq_meta VALUES ('schema_version', %s) ON CONFLICT "
                             "(key) DO UPDATE SET value = excluded.value",
                             (str(SCHEMA_VERSION),))
                self.tag = conn.execute("SELECT value FROM gq_meta WHERE key = 'tag'"
                                        ).fetchone()[0]
        except BaseException:
            conn.close()
            raise
        return conn

    # -- the writer's side --------------------------------------------------------
    def _run_batch(self, lane, ops) -> None:
        lane.writing = True
        try:
            self._run_ops(lane, ops)
        finally:
            lane.writing = False   # before its callers are woken: see _lane

    def _run_ops(self, lane, ops) -> None:
        try:
            self._commit(lane, ops)
            self.breaker.succeeded()
            return
        except PartialWrite:
            pass
        except Exception as e:
            if _is_engine_failure(e):
                # the server or the way to it failed: never retried in place (the
                # callers retry), and counted by the circuit breaker
                error = self._storage_failed(e)
                for op in ops:
                    op.result, op.error = None, error
                return
            if len(ops) == 1 and not _retriable(e):
                ops[0].result, ops[0].error = None, self._translate(e)
                return
        # Aborted as a whole: each op in its own transaction, retried while the
        # server aborts it for a conflict with another session.
        for op in ops:
            for attempt in range(RETRIES):
                try:
                    self._commit(lane, [op])
                    self.breaker.succeeded()
                    break
                except PartialWrite as e:
                    op.result, op.error = None, e.__cause__
                    break
                except Exception as e:
                    op.result, op.error = None, self._storage_failed(e) \
                        if _is_engine_failure(e) else self._translate(e)
                    if not _retriable(e):
                        break

    def _storage_failed(self, e: Exception) -> Exception:
        """Count and log a failure of the server (or of the way to it), feed the
        circuit breaker (a full disk excepted: it has its own answer)."""
        PERSISTENCE_ERRORS.inc()
        error = self._translate(e)
        log.error("persistence error on %s: %s", redact(self.path), str(e).strip())
        if not isinstance(error, StorageFull):
            self.breaker.failed(e)
        return error

    def _commit(self, lane, ops) -> None:
        for attempt in range(2):
            try:
                return self._commit_once(lane, ops)
            except _SessionGone:
                if attempt:
                    raise

    def _commit_once(self, lane, ops) -> None:
        with lane.lock:
            conn = lane.connection()
            tx = None
            try:
                with contextlib.ExitStack() as stack:   # the transaction, once begun
                    tx = Tx(self, conn, stack)
                    apply_ops(tx, ops)
                    tx.flush()
            except psycopg.OperationalError:
                conn.close()   # a broken session is reopened by the next batch
                if tx is None or not tx.sent:
                    # it was gone before anything of the batch was sent (a server
                    # restart, an idle session ended): a new session may retry
                    raise _SessionGone("the server cannot be reached; nothing was "
                                       "written") from None
                raise
        if tx.ring:
            self.doorbell.ring()   # this process's workers, without the round trip

    def _translate(self, e: Exception) -> Exception:
        if isinstance(e, GQError):
            return e
        if isinstance(e, pg_errors.DiskFull):
            return StorageFull(f"the PostgreSQL server of {redact(self.path)} is out of "
                               "disk space; nothing was written")
        if isinstance(e, pg_errors.UniqueViolation):
            return DuplicateJobId(f"a concurrent submit stored the same job id or "
                                  f"idempotency key first: {str(e).strip()}")
        return PersistenceError(f"PostgreSQL write failed at {redact(self.path)}: "
                                f"{str(e).strip()}")

    def _write(self, fn):
        self._check_open()
        return self._lane().writer.call(fn)

    async def _awrite(self, fn):
        self._check_open()
        return await self._lane().writer.acall(fn, asyncio.get_running_loop())

    def _lane(self):
        """The lane for the next op: the batch still forming on a lane whose
        writer is free (it will take every op queued when it next runs), else a
        free lane, else the next in turn. Dealing ops out in turn would split
        the burst of submits that one event-loop turn makes (or the callers a
        commit woke) over every lane: small batches, each paying a statement
        and a commit. Lanes are tried in order, so a lone stream of batches
        keeps to one lane (one thread, one session). A lane is free from the
        end of its batch, before its callers are woken, so they come back to
        it. (Read without the writer's lock, `waiting` being the ops queued in
        gq.store.writer: a stale answer only costs a smaller batch.)"""
        free = None
        for lane in self._lanes:
            if not lane.writing:
                if lane.writer.waiting:    # ops wait for its next batch
                    return lane
                free = free or lane
        return free or self._lanes[next(self._next_lane) % len(self._lanes)]

    # -- reads (a pooled session each, autocommit) ----------------------------------
    def _query(self, query, params=None):
        self._check_open()
        try:
            try:
                with self._pool.connection() as conn:
                    return conn.execute(query, params).fetchall()
            except psycopg.OperationalError:   # a dead pooled session: one more try
                with self._pool.connection() as conn:
                    return conn.execute(query, params).fetchall()
        except psycopg.Error as e:
            raise PersistenceError(f"PostgreSQL read failed at {redact(self.path)}: "
                                   f"{str(e).strip()}") from None

    def _query_one(self, query, params=None):
        rows = self._query(query, params)
        return rows[0] if rows else None

    def _execute(self, query, params=None) -> None:
        """An idempotent statement (heartbeats, housekeeping) on a pooled session."""
        self._check_open()
        try:
            try:
                with self._pool.connection() as conn:
                    conn.execute(query, params)
            except psycopg.OperationalError:   # a dead pooled session: one more try
                with self._pool.connection() as conn:
                    conn.execute(query, params)
        except psycopg.Error as e:
            raise PersistenceError(f"PostgreSQL write failed at {redact(self.path)}: "
                                   f"{str(e).strip()}") from None

    def get(self, job_id):
        rows = self._query(f"SELECT {COLUMNS} FROM gq_jobs WHERE id = %s", (job_id,))
        return to_record(rows[0]) if rows else None

    def list(self, *, state=None, type=None, limit=100):
        if type is not None and state is not None:
            where, order, params = "type = %s AND state = %s", "seq", (type, state)
        elif type is not None:
            where, order, params = "type = %s", "state, seq", (type,)
        elif state is not None:
            return [to_record(r) for r in self._query(_LIST_STATE, (state, limit, limit))]
        else:
            where, order, params = "true", "id", ()
        rows = self._query(f"SELECT {COLUMNS} FROM gq_jobs WHERE {where} ORDER BY {order} "
                           "LIMIT %s", (*params, limit))
        return [to_record(r) for r in rows]

    def counts(self):
        rows = self._query("SELECT state, type, sum(n)::int8, count(*) FROM gq_counts "
                           "GROUP BY 1, 2")
        if sum(r[3] for r in rows) > FOLD_COUNTS_ABOVE:
            self.fold_counts()
        return {(state, job_type): n for state, job_type, n, _ in rows if n}

    def fold_counts(self) -> None:
        """Sum the count deltas into one row per (state, type) (housekeeping)."""
        self._execute("WITH gone AS (DELETE FROM gq_counts RETURNING state, type, n) "
                      "INSERT INTO gq_counts SELECT state, type, sum(n) FROM gone "
                      "GROUP BY 1, 2 HAVING sum(n) <> 0")

    def paused_types(self):
        return frozenset(r[0] for r in self._query("SELECT type FROM gq_paused"))

    def ready_after(self, seq, limit):
        """Ready jobs by ready seq. Unlike LMDB's, this is no gap-free change feed:
        concurrent transactions commit out of seq order, which is why workers on
        this store claim by quota instead (see gq.runtime.claims)."""
        return [tuple(r) for r in self._query(
            "SELECT ready_seq, priority, type, id FROM gq_jobs WHERE ready_seq > %s "
            "ORDER BY ready_seq LIMIT %s", (seq, limit))]

    def next_due(self):
        row = self._query_one("SELECT min(run_at) FROM gq_jobs "
                              "WHERE state = 1 AND ready_seq IS NULL")
        return row[0] if row else None

    def states_of(self, job_ids):
        rows = self._query("SELECT id, state, attempts, lease_owner FROM gq_jobs "
                           "WHERE id = ANY(%s)", (list(job_ids),))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def running_leases(self):
        """(id, owner, lease deadline on this process's monotonic clock)."""
        rows = self._query("SELECT id, lease_owner, lease_deadline, "
                           "extract(epoch FROM clock_timestamp())::float8 "
                           "FROM gq_jobs WHERE state = 2")
        mono = time.monotonic()
        return [(job_id, owner, mono + (deadline - db_now) if deadline else 0.0)
                for job_id, owner, deadline, db_now in rows]

    # -- writes -----------------------------------------------------------------------
    def submit(self, specs, *, max_depth=None, now, key_window=0.0):
        if self.breaker.admit():
            self._probe()
        return self._write(_SubmitOp(specs, max_depth, now, key_window))

    def asubmit(self, specs, *, max_depth=None, now, key_window=0.0):
        """An awaitable: the commit's future itself, no coroutine around it (the
        one awaited per caller on the hot path of concurrent submits)."""
        op = _SubmitOp(specs, max_depth, now, key_window)
        if self.breaker.admit():
            return self._after_probe(op)
        self._check_open()
        return self._lane().writer.future(op, asyncio.get_running_loop())

    async def _after_probe(self, op):
        await self._aprobe()
        self._check_open()
        return await self._lane().writer.acall(op, asyncio.get_running_loop())

    # -- scheduling (gq.store.postgres.scheduling) ---------------------------------------------
    def submit_occurrence(self, name, occurrence, specs, *, max_depth=None, now,
                          key_window=0.0):
        return self._write(functools.partial(pg_scheduling.submit_occurrence, name,
                                             occurrence, _SubmitOp(specs, max_depth, now,
                                                                   key_window)))

    def expire_lifetimes(self, *, now, limit=1000):
        return self._write(functools.partial(pg_scheduling.expire, now, limit))

    async def aexpire_lifetimes(self, *, now, limit=1000):
        return await self._awrite(functools.partial(pg_scheduling.expire, now, limit))

    def next_expiry(self):
        return pg_scheduling.next_expiry(self)

    def blocked_count(self) -> int:
        return pg_scheduling.blocked_count(self)

    def waiting_on(self, job_id):
        return pg_scheduling.waiting_on(self, job_id)

    def cancel(self, job_id, *, now):
        def op(tx: Tx):
            rec = tx.load_existing(job_id, lock=True)
            rules.check_cancel(rec)
            S.check_transition(rec.state, S.CANCELLED, job_id)
            if rec.state == S.RUNNING:
                tx.ring = True   # its worker must stop the handler
            cancelled = to_record(tx.write(
                f"UPDATE gq_jobs j SET state = 6, ready_seq = NULL, finished_at = %s, "
                f"updated_at = %s WHERE id = %s RETURNING {J_COLUMNS}",
                (now, now, job_id)).fetchone())
            pg_scheduling.ended(tx, [job_id], "cancelled")
            return cancelled
        return self._write(op)

    def retry(self, job_id, *, now):
        def op(tx: Tx):
            rec = tx.load_existing(job_id, lock=True)
            rules.check_retry(rec, now)
            tx.ring = True
            return to_record(tx.write(
                f"UPDATE gq_jobs j SET state = 1, ready_seq = nextval('gq_seq'), attempts = 0, "
                f"crashes = 0, run_at = 0, finished_at = 0, updated_at = %s WHERE id = %s "
                f"RETURNING {J_COLUMNS}", (now, job_id)).fetchone())
        return self._write(op)

    def set_paused(self, job_type, paused):
        def op(tx: Tx):
            tx.ring = True   # workers re-read the paused types at once
            if paused:
                tx.write("INSERT INTO gq_paused VALUES (%s) ON CONFLICT DO NOTHING",
                         (job_type,))
            else:
                tx.write("DELETE FROM gq_paused WHERE type = %s", (job_type,))
        self._write(op)

    def claim(self, candidates, *, owner, lease_deadline, now):
        """scheduled -> running. `candidates`: (id, ready_seq) pairs (those still
        ready as named are claimed), or a ClaimQuota (the best ready jobs)."""
        return self._write(functools.partial(_claim, candidates, owner, lease_deadline, now))

    async def aclaim(self, candidates, *, owner, lease_deadline, now):
        return await self._awrite(functools.partial(_claim, candidates, owner,
                                                    lease_deadline, now))

    def hand_back(self, jobs, *, owner, now):
        """See LMDBStore.hand_back: claims that will not run -> scheduled, the
        attempt given back."""
        return self._write(functools.partial(_hand_back, jobs, owner, now))

    async def ahand_back(self, jobs, *, owner, now):
        return await self._awrite(functools.partial(_hand_back, jobs, owner, now))

    def finish(self, job_id, *, attempt, owner, state, now, result=b"", error=b"",
               run_at=0.0):
        return self._write(functools.partial(_finish_one, job_id, attempt, owner, state,
                                             now, result, error, run_at))

    async def afinish(self, job_id, *, attempt, owner, state, now, result=b"", error=b"",
                      run_at=0.0):
        return await self._awrite(functools.partial(_finish_one, job_id, attempt, owner,
                                                    state, now, result, error, run_at))

    async def afinish_many_and_claim(self, finishes, *, owner, now, candidates=(),
                                     lease_deadline=0.0):
        def op(tx: Tx):
            refused, _ = _finish_many(tx, finishes, owner, now, records=False)
            claimed = _claim(candidates, owner, lease_deadline, now, tx) \
                if len(candidates) else []
            return refused, claimed
        return await self._awrite(op)

    def extend(self, leases, *, owner, lease_deadline):
        return self._write(functools.partial(_extend, leases, owner, lease_deadline))

    async def aextend(self, leases, *, owner, lease_deadline):
        return await self._awrite(functools.partial(_extend, leases, owner, lease_deadline))

    def promote_due(self, *, now, limit=1000):
        return self._write(functools.partial(_promote_due, now, limit))

    async def apromote_due(self, *, now, limit=1000):
        return await self._awrite(functools.partial(_promote_due, now, limit))

    def reclaim_owner(self, owner, *, now, crashed=True,
                      quarantine_after=CRASH_QUARANTINE_DEFAULT):
        return self._write(functools.partial(_reclaim_owner, owner, now, crashed,
                                             quarantine_after))

    def reclaim_expired(self, job_id, *, owner, now, now_mono):
        """One running job whose lease has passed `now_mono` (this process's
        monotonic clock, turned into the database's) -> scheduled."""
        def op(tx: Tx):
            rows = tx.write(
                "UPDATE gq_jobs SET state = 1, ready_seq = nextval('gq_seq'), lease_owner = '', "
                "lease_deadline = 0, run_at = 0, updated_at = %s WHERE id = %s AND state = 2 "
                "AND lease_owner = %s AND lease_deadline > 0 AND lease_deadline < "
                "extract(epoch FROM clock_timestamp())::float8 + %s RETURNING id",
                (now, job_id, owner, now_mono - time.monotonic())).fetchall()
            tx.ring = tx.ring or bool(rows)
            return bool(rows)
        return self._write(op)

    def purge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        return self._write(functools.partial(_purge, now - older_than, limit))

    async def apurge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        return await self._awrite(functools.partial(_purge, now - older_than, limit))

    def reader_check(self) -> int:
        """Nothing to free: PostgreSQL ends a dead client's session itself."""
        return 0

    def reclaim_other_boot(self, boot_id: str, *, now: float) -> list[tuple[str, str]]:
        """Never called (capabilities.boot_scoped is False): a store shared by
        machines has no one boot; dead workers are found by their heartbeats."""
        return []

    def check(self) -> CheckReport:
        """`gq check` (gq.store.postgres.check): read-only, one snapshot."""
        with self._pool.connection() as conn:
            return check_postgres(conn, CheckReport())

    # -- moving between stores (gq export / gq import) -----------------------------
    def insert_records(self, records, *, now: float) -> None:
        """Store moved-in records as they are (state, attempts, crashes, result...)
        with fresh seqs in the given order; all of them or none (DuplicateJobId).
        A scheduled job that is due becomes ready. See gq.transfer."""
        records = list(records)

        def op(tx: Tx):
            ids = [rec.id for rec in records]
            taken = tx.rows("SELECT id FROM gq_jobs WHERE id = ANY(%s) LIMIT 1", (ids,))
            if taken:
                raise DuplicateJobId(f"job id {taken[0][0]!r} is already used by a stored job")
            seqs = [r[0] for r in tx.rows(
                "SELECT nextval('gq_seq') FROM generate_series(1, %s)", (len(records),))]
            for rec, seq in zip(records, seqs):
                ready = rec.state == S.SCHEDULED and rec.run_at <= now
                tx.write(
                    "INSERT INTO gq_jobs (id, type, state, priority, attempts, max_attempts, "
                    "crashes, seq, ready_seq, created_at, updated_at, run_at, started_at, "
                    "finished_at, timeout, lifetime, payload, result, error, extra, "
                    "depends_on, key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    "%s, %s, %s, %s, %s, %s, %s, %s, %s, NULLIF(%s, ''))",
                    (rec.id, rec.type, rec.state, rec.priority, rec.attempts, rec.max_attempts,
                     rec.crashes, seq, seq if ready else None, rec.created_at, now,
                     rec.run_at, rec.started_at, rec.finished_at, rec.timeout, rec.lifetime,
                     rec.payload, rec.result, rec.error, rec.extra, list(rec.depends_on),
                     rec.key))
                if rec.state == S.PENDING and rec.depends_on:
                    tx.write("INSERT INTO gq_dependents SELECT d, %s FROM unnest(%s::text[]) d "
                             "ON CONFLICT DO NOTHING", (rec.id, list(rec.depends_on)))
                tx.ring = tx.ring or ready
        self._write(op)

    # -- closing ---------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise GQError(f"the queue at {redact(self.path)} is closed")

    def close(self) -> None:
        if self._closed:
            return
        for lane in self._lanes:
            lane.writer.close()
        self._closed = True
        self.doorbell.close()
        self._pool.close()
        for lane in self._lanes:
            lane.close()


class _Lane:
    """One writer thread and its session. A store has WRITER_LANES of them, so
    an op that comes while one lane's transaction waits for its WAL flush can
    start another on a free lane (PostgresStore._lane), and the server's own
    group commit merges their flushes."""

    def __init__(self, url: str, conn=None):
        self.url = url
        self.lock = threading.Lock()
        self.writing = False   # a batch is being written on this lane
        self.writer: GroupCommitWriter | None = None
        self._conn = conn      # opened by connect(), or on the first batch

    def connection(self):
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken) and _has_input(conn):
            # An idle session the server said something to has been ended by it
            # (a restart, pg_terminate_backend, idle_session_timeout: a FATAL
            # message, then EOF). Found out here, before the batch is sent: a
            # batch of new jobs is one statement, and a statement that fails
            # in flight may or may not have committed, so it cannot be retried.
            conn.close()
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            conn = self._conn = self.connect(self.url)
        return conn

    @staticmethod
    def connect(url: str):
        """A writer session: autocommit (see Tx), UTF-8 (gq.store.postgres.insert sends
        its text arrays encoded so), the packed arrays' dumpers registered."""
        conn = psycopg.connect(url, autocommit=True, client_encoding="UTF8")
        pg_insert.register(conn)
        return conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()


def _has_input(conn) -> bool:
    """Whether the server sent something to a session that asked nothing
    (poll, not select: a process may hold file descriptors past 1024)."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


class _SessionGone(Exception):
    """The writer's session failed before anything of its batch was sent."""


def _is_engine_failure(e: Exception) -> bool:
    """The server or the connection failed (not a refusal, not a conflict)."""
    return isinstance(e, psycopg.OperationalError) and not _retriable(e) or \
        isinstance(e, (pg_errors.SystemError, _SessionGone))


def _retriable(e: Exception) -> bool:
    """Aborted by a conflict with another session: running it again may pass."""
    return isinstance(e, (pg_errors.UniqueViolation, pg_errors.DeadlockDetected,
                          pg_errors.SerializationFailure))


class _SubmitOp:
    """The write op of submit / submit_many: every check first, then the new jobs
    are planned into the transaction (one multi-row INSERT for all its submits)."""

    __slots__ = ("specs", "max_depth", "now", "key_window")

    def __init__(self, specs, max_depth, now, key_window=0.0):
        self.specs = specs
        self.max_depth = max_depth
        self.now = now
        self.key_window = key_window

    def __call__(self, tx: Tx) -> list[str]:
        specs = self.specs
        results: list = [None] * len(specs)
        if self.max_depth is None and all_plain(specs):
            # plain jobs (the common case): nothing to check, each one scheduled
            planned, now = tx.planned, self.now
            for i, spec in enumerate(specs):
                p = Planned(spec, S.SCHEDULED, now)
                p.slots.append((results, i))
                planned.append(p)
            return results
        fresh = []                              # (index, spec) of jobs to create
        key_creator: dict[str, int] = {}
        folded = []                             # (index, creator index)
        keys = [s.key for s in specs if s.key and s.key not in tx.planned_keys]
        # a key is held by its unfinished job, or one completed within key_window
        # (the unfinished one, last in this order, wins)
        owners = dict(tx.rows("SELECT key, id FROM gq_jobs WHERE key = ANY(%s) "
                              "AND (state IN (0, 1, 2) OR (state = 3 AND %s > 0 AND "
                              "finished_at > %s)) ORDER BY state DESC",
                              (keys, self.key_window, self.now - self.key_window))) \
            if keys else {}
        named = [s.id for s in specs if s.id is not None]
        taken = {r[0] for r in tx.rows("SELECT id FROM gq_jobs WHERE id = ANY(%s)",
                                       (named,))} if named else set()
        shares: list[tuple[int, Planned]] = []
        for i, spec in enumerate(specs):
            if spec.key:
                if spec.key in key_creator:
                    folded.append((i, key_creator[spec.key]))
                    continue
                if spec.key in tx.planned_keys:
                    shares.append((i, tx.planned_keys[spec.key]))
                    continue
                if spec.key in owners:
                    results[i] = owners[spec.key]
                    continue
                key_creator[spec.key] = i
            if spec.id is not None and (spec.id in taken or spec.id in tx.planned_ids):
                raise DuplicateJobId(f"job id {spec.id!r} is already used by a stored job")
            fresh.append((i, spec))
        waits = _check_dependencies(tx, specs, fresh)
        if self.max_depth is not None and fresh:
            # One depth check at a time per store: the limit holds across processes.
            tx.rows("SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"gq-depth:{tx.store.schema}",))
            depth = tx.rows("SELECT coalesce(sum(n), 0)::int8 FROM gq_counts "
                            "WHERE state IN (0, 1)")[0][0]
            depth -= tx.rows(pg_scheduling.REQUEUED_SQL)[0][0]   # retries do not count
            depth += sum(1 for p in tx.planned if p.state in _ACTIVE)
            if depth + len(fresh) > self.max_depth:
                raise QueueFull(
                    f"the queue holds {depth:,} jobs waiting to run (pending + scheduled, "
                    f"retries not counted) and max_depth is {self.max_depth:,}; "
                    f"{len(fresh)} more would pass it. Retry later or add workers")
        # plan (nothing below raises a GQError)
        by_index: dict[int, Planned] = {}
        for (i, spec), unmet in zip(fresh, waits):
            p = Planned(spec, S.PENDING if unmet else S.SCHEDULED, self.now)
            p.slots.append((results, i))
            tx.planned.append(p)
            by_index[i] = p
            if spec.id is not None:
                tx.planned_ids[spec.id] = p
            if spec.key:
                tx.planned_keys[spec.key] = p
            if unmet:
                tx.planned_dependents.extend((dep, p) for dep in spec.depends_on)
        for i, creator in folded:
            if creator in by_index:
                by_index[creator].slots.append((results, i))
            else:
                results[i] = results[creator]
        for i, p in shares:
            p.slots.append((results, i))
        return results


def _check_dependencies(tx: Tx, specs, fresh) -> list[bool]:
    """Whether each fresh job waits (some dependency not completed). Stored
    dependencies are read FOR SHARE: their completion (an UPDATE) then waits for
    this commit, and releases the dependents this transaction adds."""
    if not any(spec.depends_on for _, spec in fresh):
        return [False] * len(fresh)
    batch_ids = {s.id for s in specs if s.id is not None}
    created = {spec.id for _, spec in fresh if spec.id is not None}
    wanted = sorted({d for _, s in fresh for d in s.depends_on
                     if d not in created and d not in tx.planned_ids})
    stored = dict(tx.rows("SELECT id, state FROM gq_jobs WHERE id = ANY(%s) ORDER BY id "
                          "FOR SHARE", (wanted,))) if wanted else {}
    waits = []
    for i, spec in fresh:
        unmet = False
        for dep in spec.depends_on:
            if dep in created or dep in tx.planned_ids:
                unmet = True
                continue
            if dep in batch_ids:
                raise ValidationError(
                    f"a job depends on {dep!r}, which the batch did not create because "
                    "its idempotency key matched an existing job; depend on that job instead")
            if dep not in stored:
                raise UnknownDependency(spec.id or f"#{i} ({spec.type})", dep)
            unmet = unmet or stored[dep] != S.COMPLETED
        waits.append(unmet)
    return waits


# -- the worker's write ops -----------------------------------------------------------

_CLAIM_UPDATE = (
    "UPDATE gq_jobs j SET state = 2, attempts = j.attempts + 1, lease_owner = %(owner)s, "
    f"lease_deadline = {LEASE_SQL}, started_at = %(now)s, updated_at = %(now)s, "
    f"ready_seq = NULL FROM picked WHERE j.id = picked.id RETURNING {J_COLUMNS}")

_CLAIM_BEST = (
    "WITH picked AS ("
    " SELECT c.id FROM (SELECT * FROM unnest(%(types)s::text[], %(caps)s::int4[]) AS q(type, cap)"
    "  WHERE NOT EXISTS (SELECT 1 FROM gq_paused p WHERE p.type = q.type)) q"
    " CROSS JOIN LATERAL (SELECT id, priority, ready_seq FROM gq_jobs"
    "  WHERE type = q.type AND ready_seq IS NOT NULL ORDER BY priority DESC, ready_seq"
    "  LIMIT q.cap FOR UPDATE SKIP LOCKED) c"
    " ORDER BY c.priority DESC, c.ready_seq LIMIT %(n)s) " + _CLAIM_UPDATE)

_CLAIM_NAMED = (
    "WITH picked AS ("
    " SELECT j.id FROM gq_jobs j JOIN unnest(%(ids)s::text[], %(seqs)s::int8[]) AS c(id, rs)"
    "  ON j.id = c.id AND j.ready_seq = c.rs"
    " WHERE NOT EXISTS (SELECT 1 FROM gq_paused p WHERE p.type = j.type)"
    " FOR UPDATE OF j SKIP LOCKED) " + _CLAIM_UPDATE)


def _claim(candidates, owner, lease_deadline, now, tx: Tx):
    params = {"owner": owner, "now": now, "remaining": remaining(lease_deadline)}
    if isinstance(candidates, ClaimQuota):
        if not candidates.n or not candidates.caps:
            return []
        types = sorted(candidates.caps)
        params.update(types=types, n=candidates.n,
                      caps=[candidates.caps[t] or candidates.n for t in types])
        rows = tx.write(_CLAIM_BEST, params).fetchall()
    else:
        candidates = list(candidates)
        if not candidates:
            return []
        params.update(ids=[c[0] for c in candidates], seqs=[c[1] for c in candidates])
        rows = tx.write(_CLAIM_NAMED, params).fetchall()
    return [to_record(r) for r in rows]


def _hand_back(jobs, owner, now, tx: Tx):
    jobs = list(jobs)
    if not jobs:
        return []
    S.check_transition(S.RUNNING, S.SCHEDULED)
    rows = tx.write(
        f"UPDATE gq_jobs j SET state = {S.SCHEDULED}, attempts = j.attempts - 1, "
        "ready_seq = nextval('gq_seq'), lease_owner = '', lease_deadline = 0, run_at = 0, "
        "updated_at = %(now)s FROM unnest(%(ids)s::text[], %(attempts)s::int4[]) "
        f"AS h(id, attempt) WHERE j.id = h.id AND j.state = {S.RUNNING} "
        "AND j.attempts = h.attempt AND j.lease_owner = %(owner)s RETURNING j.id",
        {"now": now, "owner": owner, "ids": [j[0] for j in jobs],
         "attempts": [j[1] for j in jobs]}).fetchall()
    tx.ring = tx.ring or bool(rows)
    return [r[0] for r in rows]


def _finish_many(tx: Tx, finishes, owner, now, records: bool = True):
    """Record outcomes, fenced by (state, attempt, owner) in the UPDATE's WHERE.
    Returns ({job_id: LeaseLost | JobNotFound} refused, finished records, or
    (id, state, ready_seq) rows when not `records`). One statement also takes the
    completed jobs' dependents out of gq_dependents (to be released below)."""
    finishes = list(finishes)
    if not finishes:
        return {}, []
    for job_id, _, state, *_ in finishes:
        S.check_transition(S.RUNNING, state, job_id)   # a caller's bug: before any write
    cols = list(zip(*finishes))
    rows = tx.write(
        "WITH done AS (UPDATE gq_jobs j SET state = f.state, "
        " ready_seq = CASE WHEN f.state = 1 AND f.run_at <= %(now)s THEN nextval('gq_seq') END,"
        " lease_owner = '', lease_deadline = 0,"
        " result = CASE WHEN f.state = 3 THEN f.result ELSE j.result END,"
        " error = CASE WHEN f.state = 3 THEN ''::bytea ELSE f.error END,"
        " run_at = CASE WHEN f.state = 1 THEN f.run_at ELSE j.run_at END,"
        " finished_at = CASE WHEN f.state IN (3, 4, 5) THEN %(now)s ELSE j.finished_at END,"
        " updated_at = %(now)s "
        "FROM unnest(%(ids)s::text[], %(attempts)s::int4[], %(states)s::int2[], "
        " %(results)s::bytea[], %(errors)s::bytea[], %(run_ats)s::float8[]) "
        " AS f(id, attempt, state, result, error, run_at) "
        "WHERE j.id = f.id AND j.state = 2 AND j.attempts = f.attempt "
        " AND j.lease_owner = %(owner)s RETURNING j.id AS id_, j.state AS state_, "
        f" coalesce(j.ready_seq, 0) AS ready_, {J_COLUMNS if records else 'NULL'}), "
        "gone AS (DELETE FROM gq_dependents WHERE dependency IN "
        " (SELECT id_ FROM done WHERE state_ = 3) RETURNING dependent) "
        "SELECT *, (SELECT array_agg(DISTINCT dependent) FROM gone) FROM done",
        {"now": now, "owner": owner, "ids": list(cols[0]), "attempts": list(cols[1]),
         "states": list(cols[2]), "results": [bytes(r) for r in cols[3]],
         "errors": [bytes(e) for e in cols[4]], "run_ats": list(cols[5])}).fetchall()
    done = [to_record(r[3:-1]) for r in rows] if records else [r[:3] for r in rows]
    refused = {}
    if len(rows) < len(finishes):
        got = {r[0] for r in rows}
        missing = {f[0]: f[1] for f in finishes if f[0] not in got}
        now_states = {r[0]: (r[1], r[2]) for r in tx.rows(
            "SELECT id, state, attempts FROM gq_jobs WHERE id = ANY(%s)", (list(missing),))}
        for job_id, attempt in missing.items():
            if job_id not in now_states:
                refused[job_id] = JobNotFound(job_id)
            else:
                state, attempts = now_states[job_id]
                refused[job_id] = LeaseLost(job_id, attempt, S.STATE_NAMES[state], attempts)
    if any(r[2] for r in rows):
        tx.ring = True
    waiting = rows[0][-1] if rows else None
    if waiting:
        _release_dependents(tx, sorted(waiting), now)
    for state in (S.FAILED, S.DEAD_LETTER):
        pg_scheduling.ended(tx, [r[0] for r in rows if r[1] == state], S.STATE_NAMES[state])
    return refused, done


def _finish_one(job_id, attempt, owner, state, now, result, error, run_at, tx: Tx):
    """One job's outcome (finish / afinish): its record, or LeaseLost / JobNotFound."""
    refused, done = _finish_many(tx, [(job_id, attempt, state, result, error, run_at)],
                                 owner, now)
    if refused:
        raise refused[job_id]
    return done[0]


def _release_dependents(tx: Tx, waiting: list[str], now: float) -> None:
    """Pending dependents (of jobs just completed) whose dependencies are now all
    completed -> scheduled. Each dependent row is locked first (in id order: no
    deadlocks), so of two transactions completing its last two dependencies the
    second one, reading after the first committed, sees both completed."""
    tx.write("SELECT id FROM gq_jobs WHERE id = ANY(%s) AND state = 0 ORDER BY id FOR UPDATE",
             (waiting,))
    released = tx.write(
        "UPDATE gq_jobs j SET state = 1, updated_at = %s, "
        " ready_seq = CASE WHEN j.run_at <= %s THEN nextval('gq_seq') END "
        "WHERE j.id = ANY(%s) AND j.state = 0 AND (SELECT count(*) FROM gq_jobs p "
        " WHERE p.id = ANY(j.depends_on) AND p.state = 3) = cardinality(j.depends_on) "
        "RETURNING j.ready_seq", (now, now, waiting)).fetchall()
    if any(r[0] for r in released):
        tx.ring = True


def _extend(leases, owner, lease_deadline, tx: Tx):
    leases = list(leases)
    if not leases:
        return []
    kept = {r[0] for r in tx.write(
        f"UPDATE gq_jobs j SET lease_deadline = {LEASE_SQL} "
        "FROM unnest(%(ids)s::text[], %(attempts)s::int4[]) AS l(id, attempt) "
        "WHERE j.id = l.id AND j.state = 2 AND j.attempts = l.attempt "
        "AND j.lease_owner = %(owner)s RETURNING j.id",
        {"remaining": remaining(lease_deadline), "owner": owner,
         "ids": [x[0] for x in leases], "attempts": [x[1] for x in leases]}).fetchall()}
    return [job_id for job_id, _ in leases if job_id not in kept]


def _promote_due(now, limit, tx: Tx) -> int:
    rows = tx.write(
        "WITH due AS (SELECT id, run_at, seq FROM gq_jobs WHERE state = 1 AND ready_seq IS NULL"
        " AND run_at <= %s ORDER BY run_at, seq LIMIT %s FOR UPDATE SKIP LOCKED),"
        " numbered AS (SELECT id, nextval('gq_seq') AS rs FROM"
        "  (SELECT id FROM due ORDER BY run_at, seq) o) "
        "UPDATE gq_jobs j SET ready_seq = numbered.rs, updated_at = %s FROM numbered "
        "WHERE j.id = numbered.id RETURNING j.id", (now, limit, now)).fetchall()
    tx.ring = tx.ring or bool(rows)
    return len(rows)


def _reclaim_owner(owner, now, crashed, quarantine_after, tx: Tx):
    rows = tx.rows("SELECT id, crashes, attempts FROM gq_jobs WHERE state = 2 AND "
                   "lease_owner = %s ORDER BY id FOR UPDATE", (owner,))
    for job_id, crashes, attempts in rows:
        crashes += 1 if crashed else 0
        if crashed and crashes >= quarantine_after:
            error = JobError(Category.SYSTEM,
                             f"quarantined: its worker process died while running it "
                             f"{crashes} times (it keeps killing its worker); fix the "
                             "handler or the payload, then `gq retry` it",
                             None, attempts).to_json()
            tx.write("UPDATE gq_jobs SET state = 5, lease_owner = '', lease_deadline = 0, "
                     "crashes = %s, error = %s, finished_at = %s, updated_at = %s "
                     "WHERE id = %s", (crashes, error, now, now, job_id))
            pg_scheduling.ended(tx, [job_id], "dead_letter")
        else:
            tx.write("UPDATE gq_jobs SET state = 1, ready_seq = nextval('gq_seq'), "
                     "lease_owner = '', lease_deadline = 0, run_at = 0, crashes = %s, "
                     "updated_at = %s WHERE id = %s", (crashes, now, job_id))
            tx.ring = True
    return [r[0] for r in rows]


def _purge(cutoff, limit, tx: Tx) -> int:
    ids = [r[0] for r in tx.write(
        "DELETE FROM gq_jobs WHERE id IN (SELECT id FROM gq_jobs WHERE state IN (3, 4, 6) "
        "AND finished_at > 0 AND finished_at <= %s LIMIT %s) RETURNING id",
        (cutoff, limit)).fetchall()]
    if ids:
        tx.write("DELETE FROM gq_dependents WHERE dependent = ANY(%s)", (ids,))
    return len(ids)


# -- one store per (process, URL) ------------------------------------------------------

class _Registry:
    """Queues on one URL in one process share a store (one pool, one writer).
    A forked child opens its own; the parent's sessions must never be touched
    there, not even closed (that would end them for the parent too), so the
    child keeps its copies referenced and unused."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stores: dict[str, list] = {}
        self._inherited: list = []
        os.register_at_fork(after_in_child=self._forget_after_fork)

    def acquire(self, url: str, **options) -> PostgresStore:
        with self._lock:
            entry = self._stores.get(url)
            if entry is None:
                entry = self._stores[url] = [PostgresStore(url, **options), 0]
            entry[1] += 1
            return entry[0]

    def release(self, store: PostgresStore) -> None:
        with self._lock:
            entry = self._stores.get(store.path)
            if entry is None or entry[0] is not store:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self._stores[store.path]
                store.close()

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._inherited.append(self._stores)
        self._stores = {}


registry = _Registry()
