"""One write batch on a PostgreSQL lane: the transaction (`Tx`) its ops share,
the new jobs it plans (`Planned`), and how a row becomes a JobRecord."""

from __future__ import annotations

import contextlib
import time

from gq._core.codec import JobRecord
from gq.errors import JobNotFound
from gq.store.postgres.insert import insert_planned
from gq.store.records import restore_record

FIELDS = ("id", "type", "state", "priority", "attempts", "max_attempts", "crashes", "seq",
           "coalesce({}ready_seq, 0)", "created_at", "updated_at", "run_at", "started_at",
           "finished_at", "timeout", "lifetime", "lease_deadline", "lease_owner", "payload",
           "result", "error", "extra", "depends_on", "coalesce({}key, '')")
# The select list of a record (to_record's order), plain and for an alias `j`.
COLUMNS = ", ".join(f.format("") if "{}" in f else f for f in FIELDS)
J_COLUMNS = ", ".join(f.format("j.") if "{}" in f else "j." + f for f in FIELDS)


def to_record(row) -> JobRecord:
    (job_id, job_type, state, priority, attempts, max_attempts, crashes, seq, ready_seq,
     created_at, updated_at, run_at, started_at, finished_at, timeout, lifetime,
     lease_deadline, lease_owner, payload, result, error, extra, depends_on, key) = row
    return restore_record(
        job_id, job_type, bytes(payload), state, priority=priority, attempts=attempts,
        max_attempts=max_attempts, crashes=crashes, seq=seq, ready_seq=ready_seq,
        created_at=created_at, updated_at=updated_at, run_at=run_at, started_at=started_at,
        finished_at=finished_at, timeout=timeout, lifetime=lifetime,
        lease_deadline=lease_deadline, result=bytes(result), error=bytes(error),
        extra=bytes(extra), depends_on=depends_on, key=key, lease_owner=lease_owner)


def remaining(lease_deadline: float):
    """A monotonic lease deadline as seconds from now (None: no deadline)."""
    return None if not lease_deadline else lease_deadline - time.monotonic()


# The lease deadline column: the database clock plus the remaining seconds.
LEASE_SQL = "coalesce(extract(epoch FROM clock_timestamp())::float8 + %(remaining)s, 0)"


class Planned:
    """One new job of a transaction, written at flush. `slots` are the places in
    callers' result lists that get its id (an idempotency key can fold several
    specs of one transaction into one job)."""

    __slots__ = ("spec", "state", "slots", "id", "now")

    def __init__(self, spec, state, now):
        self.spec = spec
        self.state = state
        self.now = now
        self.slots: list = []
        self.id = spec.id


class Tx:
    """One write batch of the group-commit writer and the state its ops share.

    The lane's session is in autocommit: a transaction is begun (BEGIN) only
    when an op reads or writes. A batch that does neither, only plans new jobs
    (plain submits), is then ONE statement at flush, its own implicit
    transaction: committed (synchronous_commit on: the WAL flushed) when the
    statement answers, one round trip instead of BEGIN, INSERT, NOTIFY, COMMIT."""

    def __init__(self, store, conn, stack: contextlib.ExitStack):
        self.store = store
        self.conn = conn
        self.cur = conn.cursor()
        self._stack = stack        # holds the transaction once begun
        self.began = False
        self.sent = False          # something of this batch reached the server
        self.wrote = False
        self.ring = False
        self.planned: list[Planned] = []
        self.planned_ids: dict[str, Planned] = {}
        self.planned_keys: dict[str, Planned] = {}
        self.planned_dependents: list[tuple[str, Planned]] = []

    def begin(self) -> None:
        if not self.began:
            self._stack.enter_context(self.conn.transaction())   # BEGIN; COMMIT at exit
            self.began = self.sent = True

    def execute(self, query, params):
        self.begin()
        if self.planned:
            self.write_planned()
        return self.cur.execute(query, params)

    # -- reading --------------------------------------------------------------
    def rows(self, query, params=None):
        return self.execute(query, params).fetchall()

    def load(self, job_id: str, lock: bool = False) -> JobRecord | None:
        rows = self.rows(f"SELECT {COLUMNS} FROM gq_jobs WHERE id = %s"
                         + (" FOR UPDATE" if lock else ""), (job_id,))
        return to_record(rows[0]) if rows else None

    def load_existing(self, job_id: str, lock: bool = False) -> JobRecord:
        rec = self.load(job_id, lock)
        if rec is None:
            raise JobNotFound(job_id)
        return rec

    # -- writing (only after every check of the op passed) -----------------------
    def write(self, query, params=None):
        self.wrote = True
        return self.execute(query, params)

    def write_planned(self) -> None:
        """The planned jobs, inside the transaction (something else runs in it)."""
        self.begin()
        planned, self.planned = self.planned, []
        self.wrote = True
        if insert_planned(self.cur, planned, self.store.tag):
            self.ring = True
        self.planned_ids.clear()
        self.planned_keys.clear()
        if self.planned_dependents:
            deps, self.planned_dependents = self.planned_dependents, []
            self.cur.execute("INSERT INTO gq_dependents (dependency, dependent) "
                             "SELECT * FROM unnest(%s::text[], %s::text[]) "
                             "ON CONFLICT DO NOTHING",
                             ([d for d, _ in deps], [p.id for _, p in deps]))

    def flush(self) -> None:
        if self.planned and not (self.began or self.planned_dependents or self.ring):
            # nothing but new jobs: one statement, its own transaction
            planned, self.planned = self.planned, []
            self.wrote = self.sent = True
            self.ring = insert_planned(self.cur, planned, self.store.tag,
                                       alone=self.store.channel)
            return
        if self.planned:
            self.write_planned()
        if self.ring:
            self.cur.execute("SELECT pg_notify(%s, '')", (self.store.channel,))
