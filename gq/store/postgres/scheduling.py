"""Scheduling on the PostgreSQL store: lifetimes, blocked dependencies, periodic
occurrences — the same behaviour as gq.store.lmdb.expiry / blocking / occurrences on
LMDB, in SQL.

- Lifetime deadlines are the expression `created_at + lifetime`, indexed over
  unfinished jobs with a lifetime (schema v2), so the sweep reads only the
  expired head.
- Blocked jobs are not stored: a pending job is blocked while a walk up its
  dependencies through pending jobs reaches one that ended failed,
  dead_letter or cancelled. `gq_dependents` keeps exactly the edges such a walk
  needs (rows go when their dependency completes; a row whose dependency was
  purged unsatisfied keeps its dependents blocked, as on LMDB). The "Dependency not
  satisfiable" lines are logged by the transaction that ends the root.
- Periodic cursors are rows of `gq_periodic`, locked FOR UPDATE by the
  transaction that submits the occurrence.
"""

from __future__ import annotations

import logging

from gq._core import states as S
from gq.errors import JobNotFound
from gq.store import rules
from gq.store.postgres import sql

log = logging.getLogger("gq.dependencies")

_DEADLINE = "created_at + lifetime"
_EXPIRABLE = f"lifetime > 0 AND state IN {sql.UNFINISHED}"   # the partial index's predicate


def next_expiry(store) -> float | None:
    return store.query_one(f"SELECT min({_DEADLINE}) FROM gq_jobs WHERE {_EXPIRABLE}")[0]


def expire(now: float, limit: int, tx) -> list[tuple[str, str, int]]:
    rows = tx.rows(
        f"SELECT id, type, state, lifetime, created_at, attempts FROM gq_jobs "
        f"WHERE {_EXPIRABLE} AND {_DEADLINE} <= %s ORDER BY {_DEADLINE} LIMIT %s "
        f"FOR UPDATE SKIP LOCKED", (now, limit))
    expired = []
    for job_id, job_type, state, lifetime, created_at, attempts in rows:
        # lifetime = -1: like LMDB's spent expiry entry, an operator retry then
        # runs the job without a lifetime
        tx.write(f"UPDATE gq_jobs SET state = {sql.DEAD_LETTER}, ready_seq = NULL, "
                 "lease_owner = '', lease_deadline = 0, lifetime = -1, finished_at = %s, "
                 "updated_at = %s, error = %s WHERE id = %s",
                 (now, now, rules.lifetime_error(lifetime, state, created_at, attempts, now),
                  job_id))
        if state == S.RUNNING:
            tx.ring = True   # its worker must stop the handler
        expired.append((job_id, job_type, state))
    ended(tx, [job_id for job_id, _, _ in expired], "dead_letter")
    return expired


# A walk down from roots through pending dependents: (job, root, chain). A root
# is a dependency that ended without completing, or one that is gone: an edge
# outlives its dependency only when purge took it unsatisfied (completion deletes
# the edges), so the dependents still wait on something that can never complete.
_BLOCKED_WALK = f"""
WITH RECURSIVE walk(id, root, chain) AS (
    SELECT d.dependent, d.dependency, ARRAY[d.dependency, d.dependent]
    FROM gq_dependents d LEFT JOIN gq_jobs r ON r.id = d.dependency
    WHERE (r.id IS NULL OR r.state IN {sql.any_of(*rules.UNSATISFIABLE)}) {{roots}}
  UNION
    SELECT d.dependent, w.root, w.chain || d.dependent
    FROM walk w JOIN gq_jobs j ON j.id = w.id AND j.state = {sql.PENDING}
    JOIN gq_dependents d ON d.dependency = w.id
    WHERE NOT d.dependent = ANY(w.chain)
)
SELECT w.id, w.root, w.chain FROM walk w JOIN gq_jobs j ON j.id = w.id
WHERE j.state = {sql.PENDING}
"""


def ended(tx, job_ids: list[str], how: str) -> None:
    """Jobs that just ended failed / dead_letter / cancelled: log each pending job
    down their dependency chains as blocked."""
    if not job_ids:
        return
    for job_id, root, chain in tx.rows(_BLOCKED_WALK.format(roots="AND d.dependency = ANY(%s)"),
                                       (job_ids,)):
        log.warning("Dependency not satisfiable: job %s waits on %s, which ended %s "
                    "(chain %s); it stays pending until %s is retried and completes, or "
                    "its lifetime ends", job_id, root, how, " -> ".join(chain), root,
                    extra={"job_id": job_id, "root": root, "chain": list(chain)})


def blocked_count(store) -> int:
    return store.query_one(f"SELECT count(DISTINCT id) FROM ({_BLOCKED_WALK.format(roots='')}"
                            ") b")[0]


def waiting_on(store, job_id: str):
    row = store.query_one("SELECT depends_on FROM gq_jobs WHERE id = %s", (job_id,))
    if row is None:
        raise JobNotFound(job_id)
    states = dict(store.query("SELECT id, state FROM gq_jobs WHERE id = ANY(%s)",
                               (list(row[0]),)))
    waits = [(dep, S.STATE_NAMES[states[dep]] if dep in states else "purged")
             for dep in row[0] if states.get(dep) != S.COMPLETED]
    chains = sorted(list(chain) for blocked, _, chain in store.query(
        _BLOCKED_WALK.format(roots="") + " AND w.id = %s", (job_id,)) if blocked == job_id)
    return waits, chains


def submit_occurrence(name: str, occurrence: float, submit_op, tx):
    row = tx.rows("SELECT last FROM gq_periodic WHERE name = %s FOR UPDATE", (name,))
    if not row:   # first sight: record the start (a concurrent first sight loses)
        tx.write("INSERT INTO gq_periodic VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (name, occurrence))
        return None
    if row[0][0] >= occurrence:
        return None
    ids = submit_op(tx)       # filled in when the transaction inserts its planned jobs
    tx.write("UPDATE gq_periodic SET last = %s WHERE name = %s", (occurrence, name))
    return ids


REQUEUED_SQL = f"SELECT count(*) FROM gq_jobs WHERE state = {sql.SCHEDULED} AND started_at > 0"

# Schema v2: the lifetime sweep's index, the retries left out of max_depth, the
# periodic cursors.
MIGRATION_V2 = f"""
CREATE INDEX gq_jobs_expiry ON gq_jobs (({_DEADLINE})) WHERE {_EXPIRABLE};
CREATE INDEX gq_jobs_requeued ON gq_jobs (seq) WHERE state = 1 AND started_at > 0;
CREATE TABLE gq_periodic (name text PRIMARY KEY, last float8 NOT NULL);
"""
