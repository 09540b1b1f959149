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
  ($GQ_POSTGRES_WRITERS, 2; PostgresStore._pick_writer picks one per op).
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

import contextlib
import functools
import itertools
import logging
import secrets
import time

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from gq.config import CIRCUIT_COOLDOWN_DEFAULT, CIRCUIT_THRESHOLD_DEFAULT
from gq.errors import DataDirError, DuplicateJobId, GQError, PersistenceError, StorageFull
from gq.metrics import PERSISTENCE_ERRORS
from gq.store.api import Capabilities, CheckReport
from gq.store.breaker import CircuitBreaker
from gq.store.locations import shown as redact
from gq.store.postgres import ops as pg_ops
from gq.store.postgres import scheduling as pg_scheduling
from gq.store.postgres import sql
from gq.store.postgres.check import check_postgres
from gq.store.postgres.instances import Instances
from gq.store.postgres.lanes import Lane, SessionGone, is_engine_failure, retriable, writer_lanes
from gq.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from gq.store.postgres.tx import COLUMNS, J_COLUMNS, Tx, to_record
from gq.store.postgres.wake import ListenDoorbell
from gq.store.service import Registry, WriterStore
from gq.store.writer import GroupCommitWriter, PartialWrite, apply_ops

log = logging.getLogger("gq.store")

RETRIES = 3            # re-runs of an op whose transaction the server aborted
POOL_SIZE = 8          # read connections per store
READ_WAIT = 5.0        # seconds a read waits for a pooled session (the server may be down)
FOLD_COUNTS_ABOVE = 1000   # delta rows before counts() folds them



# One state over all types (schema v3 has no (state, seq) index): the types one
# by one from (type, state, seq) (a recursive walk, one index probe per type),
# the first `limit` jobs in that state of each type, then the first `limit` of all.
LIST_STATE = (
    "WITH RECURSIVE types AS (SELECT min(type) AS type FROM gq_jobs UNION ALL "
    " SELECT (SELECT min(type) FROM gq_jobs WHERE type > types.type) FROM types "
    " WHERE types.type IS NOT NULL) "
    f"SELECT {J_COLUMNS} FROM types CROSS JOIN LATERAL (SELECT * FROM gq_jobs "
    " WHERE type = types.type AND state = %s ORDER BY seq LIMIT %s) j "
    "ORDER BY j.seq LIMIT %s")


class PostgresStore(WriterStore):
    """A Store (gq.store.api) on a PostgreSQL database; see the module docstring.
    Its writes are gq.store.service's, over the ops of gq.store.postgres.ops."""

    ops = pg_ops
    capabilities = Capabilities(claims_by_quota=True, ready_feed=False, boot_scoped=False,
                                local_reads=False)

    # -- opening -------------------------------------------------------------
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
                                        name=f"gq:{self.channel}", timeout=READ_WAIT)
        except psycopg.Error as e:
            if first is not None:
                first.close()
            raise DataDirError(f"cannot open the PostgreSQL store at {redact(url)}: "
                               f"{str(e).strip()}") from None
        # the first lane goes on with the session that opened the store
        self._lanes = [Lane(url, first if i == 0 else None) for i in range(writer_lanes())]
        self._next_lane = itertools.count()
        self.doorbell = ListenDoorbell(url, self.channel)
        self.ended_bell = ListenDoorbell(url, f"{self.channel}:ended")   # watch_ends
        self.liveness = Instances(self)
        for i, lane in enumerate(self._lanes):
            lane.writer = GroupCommitWriter(functools.partial(self._run_batch, lane),
                                            name=f"gq-writer-{i}:{self.channel}")
        self._closed = False

    def _prepare(self, url: str):
        """Check the schema, migrate it if older. Returns the session, which goes
        on as the first writer lane's: the first write pays no connection."""
        conn = Lane.connect(url)
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

    # -- the writer's side ---------------------------------------------------
    def _pick_writer(self) -> GroupCommitWriter:
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
                    return lane.writer
                free = free or lane
        return (free or self._lanes[next(self._next_lane) % len(self._lanes)]).writer

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
            if is_engine_failure(e):
                # the server or the way to it failed: never retried in place (the
                # callers retry), and counted by the circuit breaker
                error = self._storage_failed(e)
                for op in ops:
                    op.result, op.error = None, error
                return
            if len(ops) == 1 and not retriable(e):
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
                        if is_engine_failure(e) else self._translate(e)
                    if not retriable(e):
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
            except SessionGone:
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
                    raise SessionGone("the server cannot be reached; nothing was "
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

    # -- reads (a pooled session each, autocommit) ---------------------------
    def _pooled(self, work, what: str):
        """`work(conn)` on a pooled session. A server restart ends every session
        the pool holds idle, which it only learns by using them: after a failure
        the pool checks its idle sessions (dropping the dead ones, opening new
        ones in their place), and `work` runs once more on a live one. While
        the server is down no session can be had: the call fails after waiting
        READ_WAIT seconds for one (the pool keeps reconnecting meanwhile)."""
        self._check_open()
        try:
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except PoolTimeout:
                raise
            except psycopg.OperationalError:
                self._pool.check()
                with self._pool.connection() as conn:
                    return work(conn)
        except psycopg.Error as e:
            raise PersistenceError(f"PostgreSQL {what} failed at {redact(self.path)}: "
                                   f"{str(e).strip()}") from None

    def query(self, query, params=None):
        return self._pooled(lambda conn: conn.execute(query, params).fetchall(), "read")

    def query_one(self, query, params=None):
        rows = self.query(query, params)
        return rows[0] if rows else None

    def execute(self, query, params=None) -> None:
        """An idempotent statement (heartbeats, housekeeping) on a pooled session."""
        self._pooled(lambda conn: conn.execute(query, params), "write")

    def get(self, job_id):
        rows = self.query(f"SELECT {COLUMNS} FROM gq_jobs WHERE id = %s", (job_id,))
        return to_record(rows[0]) if rows else None

    def list(self, *, state=None, type=None, limit=100):
        if type is not None and state is not None:
            where, order, params = "type = %s AND state = %s", "seq", (type, state)
        elif type is not None:
            where, order, params = "type = %s", "state, seq", (type,)
        elif state is not None:
            return [to_record(r) for r in self.query(LIST_STATE, (state, limit, limit))]
        else:
            where, order, params = "true", "id", ()
        rows = self.query(f"SELECT {COLUMNS} FROM gq_jobs WHERE {where} ORDER BY {order} "
                           "LIMIT %s", (*params, limit))
        return [to_record(r) for r in rows]

    def counts(self):
        rows = self.query("SELECT state, type, sum(n)::int8, count(*) FROM gq_counts "
                           "GROUP BY 1, 2")
        if sum(r[3] for r in rows) > FOLD_COUNTS_ABOVE:
            self.fold_counts()
        return {(state, job_type): n for state, job_type, n, _ in rows if n}

    def fold_counts(self) -> None:
        """Sum the count deltas into one row per (state, type) (housekeeping)."""
        self.execute("WITH gone AS (DELETE FROM gq_counts RETURNING state, type, n) "
                      "INSERT INTO gq_counts SELECT state, type, sum(n) FROM gone "
                      "GROUP BY 1, 2 HAVING sum(n) <> 0")

    @contextlib.contextmanager
    def watch_ends(self, job_id: str):
        """A socket readable after a commit that ended `job_id` (schema v4's
        trigger NOTIFYs while a gq_waiters row names it); see Store.watch_ends.
        Rows older than a day are a dead waiter's: the next waiter clears them."""
        sock = self.ended_bell.listen(job_id)   # LISTENing before the row: no ring missed
        try:
            (row,) = self.query(
                "WITH stale AS (DELETE FROM gq_waiters WHERE since < clock_timestamp() - "
                "interval '1 day') INSERT INTO gq_waiters (job_id) VALUES (%s) RETURNING id",
                (job_id,))
            try:
                yield sock
            finally:
                try:
                    self.execute("DELETE FROM gq_waiters WHERE id = %s", (row[0],))
                except GQError as e:    # the server is away: the row goes stale, harmless
                    log.warning("could not remove result waiter %s: %s", row[0], e)
        finally:
            self.ended_bell.unlisten(sock)

    def paused_types(self):
        return frozenset(r[0] for r in self.query("SELECT type FROM gq_paused"))

    def ready_after(self, seq, limit):
        """Ready jobs by ready seq. Unlike LMDB's, this is no gap-free change feed:
        concurrent transactions commit out of seq order, which is why workers on
        this store claim by quota instead (see gq.runtime.claims)."""
        return [tuple(r) for r in self.query(
            "SELECT ready_seq, priority, type, id FROM gq_jobs WHERE ready_seq > %s "
            "ORDER BY ready_seq LIMIT %s", (seq, limit))]

    def push_ready_after(self, heap, seq, limit, handled):
        """`ready_after` into a ReadyHeap, for the contract's sake: workers on this
        store claim by quota (capabilities.claims_by_quota) and keep no heap."""
        rows = self.ready_after(seq, limit)
        for ready_seq, priority, job_type, job_id in rows:
            if job_type in handled:
                heap.push(job_id, job_type, priority, ready_seq)
        return len(rows), rows[-1][0] if rows else 0

    def next_due(self):
        row = self.query_one("SELECT min(run_at) FROM gq_jobs "
                              f"WHERE state = {sql.SCHEDULED} AND ready_seq IS NULL")
        return row[0] if row else None

    def states_of(self, job_ids):
        rows = self.query("SELECT id, state, attempts, lease_owner FROM gq_jobs "
                           "WHERE id = ANY(%s)", (list(job_ids),))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def running_leases(self):
        """(id, owner, lease deadline on this process's monotonic clock)."""
        rows = self.query("SELECT id, lease_owner, lease_deadline, "
                           "extract(epoch FROM clock_timestamp())::float8 "
                           f"FROM gq_jobs WHERE state = {sql.RUNNING}")
        mono = time.monotonic()
        return [(job_id, owner, mono + (deadline - db_now) if deadline else 0.0)
                for job_id, owner, deadline, db_now in rows]

    def next_expiry(self):
        return pg_scheduling.next_expiry(self)

    def blocked_count(self) -> int:
        return pg_scheduling.blocked_count(self)

    def waiting_on(self, job_id):
        return pg_scheduling.waiting_on(self, job_id)

    def reader_check(self) -> int:
        """Nothing to free: PostgreSQL ends a dead client's session itself."""
        return 0

    def check(self) -> CheckReport:
        """`gq check` (gq.store.postgres.check): read-only, one snapshot."""
        return self._pooled(lambda conn: check_postgres(conn, CheckReport()), "check")

    # -- closing -------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        for lane in self._lanes:
            lane.writer.close()
        self._closed = True
        self.doorbell.close()
        self.ended_bell.close()
        self._pool.close()
        for lane in self._lanes:
            lane.close()


# Queues on one URL in one process share a store (one pool, its writer lanes).
registry: Registry[PostgresStore] = Registry(PostgresStore)
