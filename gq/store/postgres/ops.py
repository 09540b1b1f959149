"""The PostgreSQL store's write ops: one function per operation, run by a lane's
group-commit writer inside a `Tx` (its last argument). gq.store.service calls
them; each applies the backend-neutral decisions of gq.store.rules with
set-based SQL (unnest arrays: one statement for a batch of jobs), its state
codes and allowed sources from gq.store.postgres.sql. Fencing: every
completing UPDATE has `state = running AND attempts = <attempt> AND
lease_owner = <owner>` in its WHERE; no row updated means LeaseLost."""

from __future__ import annotations

import time

from gq._core import states as S
from gq.errors import JobNotFound, LeaseLost
from gq.store.api import ClaimQuota, Finish
from gq.store import rules
from gq.store.postgres import scheduling as pg_scheduling
from gq.store.postgres import sql
from gq.store.postgres.scheduling import expire, submit_occurrence
from gq.store.postgres.submit import SubmitOp
from gq.store.postgres.tx import J_COLUMNS, LEASE_SQL, Tx, remaining, to_record

# The ops written in their own modules are members of this set too.
__all__ = ["SETTLE_AFTER_PURGE", "SubmitOp", "cancel", "claim", "expire", "extend", "finish",
           "finish_many_and_claim", "hand_back", "insert_records", "probe", "promote_due",
           "purge", "reclaim_expired", "reclaim_other_boot", "reclaim_owner", "retry",
           "set_paused", "submit_occurrence"]

# PostgreSQL reuses the space of deleted rows by itself (vacuum): nothing to
# commit after a purge.
SETTLE_AFTER_PURGE = False


def probe(tx: Tx) -> None:
    """One small durable write: the circuit breaker's probe."""
    tx.write("UPDATE gq_meta SET value = value WHERE key = 'schema_version'")


# -- an operator's changes ---------------------------------------------------------

def cancel(job_id, now, tx: Tx):
    rec = tx.load_existing(job_id, lock=True)
    rules.check_cancel(rec)
    S.check_transition(rec.state, S.CANCELLED, job_id)
    if rec.state == S.RUNNING:
        tx.ring = True   # its worker must stop the handler
    cancelled = to_record(tx.write(
        f"UPDATE gq_jobs j SET state = {sql.CANCELLED}, ready_seq = NULL, finished_at = %s, "
        f"updated_at = %s WHERE id = %s AND state IN {sql.sources(S.CANCELLED)} "
        f"RETURNING {J_COLUMNS}",
        (now, now, job_id)).fetchone())
    pg_scheduling.ended(tx, [job_id], "cancelled")
    return cancelled


def retry(job_id, now, tx: Tx):
    rec = tx.load_existing(job_id, lock=True)
    rules.check_retry(rec, now)
    S.check_transition(rec.state, S.SCHEDULED, job_id)
    tx.ring = True
    return to_record(tx.write(
        f"UPDATE gq_jobs j SET state = {sql.SCHEDULED}, ready_seq = nextval('gq_seq'), "
        f"attempts = 0, crashes = 0, run_at = 0, finished_at = 0, updated_at = %s "
        f"WHERE id = %s AND state = {sql.DEAD_LETTER} RETURNING {J_COLUMNS}",
        (now, job_id)).fetchone())


def set_paused(job_type, paused, tx: Tx):
    tx.ring = True   # workers re-read the paused types at once
    if paused:
        tx.write("INSERT INTO gq_paused VALUES (%s) ON CONFLICT DO NOTHING",
                 (job_type,))
    else:
        tx.write("DELETE FROM gq_paused WHERE type = %s", (job_type,))


def insert_records(records, now, tx: Tx) -> None:
    ids = [rec.id for rec in records]
    taken = tx.rows("SELECT id FROM gq_jobs WHERE id = ANY(%s) LIMIT 1", (ids,))
    if taken:
        raise rules.id_taken(taken[0][0])
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


# -- the worker's ops ----------------------------------------------------------------

_CLAIM_UPDATE = (
    f"UPDATE gq_jobs j SET state = {sql.RUNNING}, attempts = j.attempts + 1, "
    "lease_owner = %(owner)s, "
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


def claim(candidates, owner, lease_deadline, now, tx: Tx):
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


def hand_back(jobs, owner, now, tx: Tx):
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


def finish_many(tx: Tx, finishes, owner, now, records: bool = True):
    """Record outcomes, fenced by (state, attempt, owner) in the UPDATE's WHERE.
    Returns ({job_id: LeaseLost | JobNotFound} refused, finished records, or
    (id, state, ready_seq) rows when not `records`). One statement also takes the
    completed jobs' dependents out of gq_dependents (to be released below)."""
    finishes = [Finish(*f) for f in finishes]    # a bare 6-tuple: max_attempts unchanged
    if not finishes:
        return {}, []
    for job_id, _, state, *_ in finishes:
        S.check_transition(S.RUNNING, state, job_id)   # a caller's bug: before any write
    cols = list(zip(*finishes))
    rows = tx.write(
        "WITH done AS (UPDATE gq_jobs j SET state = f.state, "
        f" ready_seq = CASE WHEN f.state = {sql.SCHEDULED} AND f.run_at <= %(now)s "
        " THEN nextval('gq_seq') END,"
        " lease_owner = '', lease_deadline = 0,"
        f" result = CASE WHEN f.state = {sql.COMPLETED} THEN f.result ELSE j.result END,"
        f" error = CASE WHEN f.state = {sql.COMPLETED} THEN ''::bytea ELSE f.error END,"
        f" run_at = CASE WHEN f.state = {sql.SCHEDULED} THEN f.run_at ELSE j.run_at END,"
        f" finished_at = CASE WHEN f.state IN {sql.ENDED} THEN %(now)s "
        " ELSE j.finished_at END,"
        " max_attempts = CASE WHEN f.max_attempts > 0 THEN f.max_attempts "
        " ELSE j.max_attempts END,"
        " updated_at = %(now)s "
        "FROM unnest(%(ids)s::text[], %(attempts)s::int4[], %(states)s::int2[], "
        " %(results)s::bytea[], %(errors)s::bytea[], %(run_ats)s::float8[], "
        " %(max_attempts)s::int4[]) "
        " AS f(id, attempt, state, result, error, run_at, max_attempts) "
        f"WHERE j.id = f.id AND j.state = {sql.RUNNING} AND j.attempts = f.attempt "
        " AND j.lease_owner = %(owner)s RETURNING j.id AS id_, j.state AS state_, "
        f" coalesce(j.ready_seq, 0) AS ready_, {J_COLUMNS if records else 'NULL'}), "
        "gone AS (DELETE FROM gq_dependents WHERE dependency IN "
        f" (SELECT id_ FROM done WHERE state_ = {sql.COMPLETED}) RETURNING dependent) "
        "SELECT *, (SELECT array_agg(DISTINCT dependent) FROM gone) FROM done",
        {"now": now, "owner": owner, "ids": list(cols[0]), "attempts": list(cols[1]),
         "states": list(cols[2]), "results": [bytes(r) for r in cols[3]],
         "errors": [bytes(e) for e in cols[4]], "run_ats": list(cols[5]),
         "max_attempts": list(cols[6])}).fetchall()
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
        release_dependents(tx, sorted(waiting), now)
    for state in (S.FAILED, S.DEAD_LETTER):
        pg_scheduling.ended(tx, [r[0] for r in rows if r[1] == state], S.STATE_NAMES[state])
    return refused, done


def finish_many_and_claim(finishes, owner, now, candidates, lease_deadline, tx: Tx):
    refused, _ = finish_many(tx, finishes, owner, now, records=False)
    claimed = claim(candidates, owner, lease_deadline, now, tx) if len(candidates) else []
    return refused, claimed


def finish(job_id, attempt, owner, state, now, result, error, run_at, max_attempts,
           tx: Tx):
    """One job's outcome (finish / afinish): its record, or LeaseLost / JobNotFound."""
    refused, done = finish_many(
        tx, [(job_id, attempt, state, result, error, run_at, max_attempts)], owner, now)
    if refused:
        raise refused[job_id]
    return done[0]


def release_dependents(tx: Tx, waiting: list[str], now: float) -> None:
    """Pending dependents (of jobs just completed) whose dependencies are now all
    completed -> scheduled. Each dependent row is locked first (in id order: no
    deadlocks), so of two transactions completing its last two dependencies the
    second one, reading after the first committed, sees both completed."""
    tx.write(f"SELECT id FROM gq_jobs WHERE id = ANY(%s) AND state = {sql.PENDING} ORDER BY id "
             "FOR UPDATE", (waiting,))
    released = tx.write(
        f"UPDATE gq_jobs j SET state = {sql.SCHEDULED}, updated_at = %s, "
        " ready_seq = CASE WHEN j.run_at <= %s THEN nextval('gq_seq') END "
        f"WHERE j.id = ANY(%s) AND j.state = {sql.PENDING} AND (SELECT count(*) FROM gq_jobs p "
        f" WHERE p.id = ANY(j.depends_on) AND p.state = {sql.COMPLETED}) "
        " = cardinality(j.depends_on) "
        "RETURNING j.ready_seq", (now, now, waiting)).fetchall()
    if any(r[0] for r in released):
        tx.ring = True


def extend(leases, owner, lease_deadline, tx: Tx):
    leases = list(leases)
    if not leases:
        return []
    kept = {r[0] for r in tx.write(
        f"UPDATE gq_jobs j SET lease_deadline = {LEASE_SQL} "
        "FROM unnest(%(ids)s::text[], %(attempts)s::int4[]) AS l(id, attempt) "
        f"WHERE j.id = l.id AND j.state = {sql.RUNNING} AND j.attempts = l.attempt "
        "AND j.lease_owner = %(owner)s RETURNING j.id",
        {"remaining": remaining(lease_deadline), "owner": owner,
         "ids": [x[0] for x in leases], "attempts": [x[1] for x in leases]}).fetchall()}
    return [job_id for job_id, _ in leases if job_id not in kept]


def promote_due(now, limit, tx: Tx) -> int:
    rows = tx.write(
        "WITH due AS (SELECT id, run_at, seq FROM gq_jobs "
        f" WHERE state = {sql.SCHEDULED} AND ready_seq IS NULL"
        " AND run_at <= %s ORDER BY run_at, seq LIMIT %s FOR UPDATE SKIP LOCKED),"
        " numbered AS (SELECT id, nextval('gq_seq') AS rs FROM"
        "  (SELECT id FROM due ORDER BY run_at, seq) o) "
        "UPDATE gq_jobs j SET ready_seq = numbered.rs, updated_at = %s FROM numbered "
        "WHERE j.id = numbered.id RETURNING j.id", (now, limit, now)).fetchall()
    tx.ring = tx.ring or bool(rows)
    return len(rows)


def reclaim_owner(owner, now, crashed, quarantine_after, tx: Tx):
    rows = tx.rows(f"SELECT id, crashes, attempts FROM gq_jobs WHERE state = {sql.RUNNING} AND "
                   "lease_owner = %s ORDER BY id FOR UPDATE", (owner,))
    for job_id, crashes, attempts in rows:
        crashes, error = rules.crash_verdict(crashes, attempts, crashed, quarantine_after)
        if error is not None:
            tx.write(f"UPDATE gq_jobs SET state = {sql.DEAD_LETTER}, lease_owner = '', "
                     "lease_deadline = 0, "
                     "crashes = %s, error = %s, finished_at = %s, updated_at = %s "
                     "WHERE id = %s", (crashes, error, now, now, job_id))
            pg_scheduling.ended(tx, [job_id], "dead_letter")
        else:
            tx.write(f"UPDATE gq_jobs SET state = {sql.SCHEDULED}, ready_seq = nextval('gq_seq'), "
                     "lease_owner = '', lease_deadline = 0, run_at = 0, crashes = %s, "
                     "updated_at = %s WHERE id = %s", (crashes, now, job_id))
            tx.ring = True
    return [r[0] for r in rows]


def purge(cutoff, limit, tx: Tx) -> int:
    ids = [r[0] for r in tx.write(
        "DELETE FROM gq_jobs WHERE id IN (SELECT id FROM gq_jobs "
        f"WHERE state IN {sql.any_of(*rules.PURGEABLE)} "
        "AND finished_at > 0 AND finished_at <= %s LIMIT %s) RETURNING id",
        (cutoff, limit)).fetchall()]
    if ids:
        tx.write("DELETE FROM gq_dependents WHERE dependent = ANY(%s)", (ids,))
    return len(ids)


# -- recovery ------------------------------------------------------------------------

def reclaim_expired(job_id, owner, now, now_mono, tx: Tx):
    rows = tx.write(
        f"UPDATE gq_jobs SET state = {sql.SCHEDULED}, ready_seq = nextval('gq_seq'), "
        "lease_owner = '', lease_deadline = 0, run_at = 0, updated_at = %s "
        f"WHERE id = %s AND state = {sql.RUNNING} "
        "AND lease_owner = %s AND lease_deadline > 0 AND lease_deadline < "
        "extract(epoch FROM clock_timestamp())::float8 + %s RETURNING id",
        (now, job_id, owner, now_mono - time.monotonic())).fetchall()
    tx.ring = tx.ring or bool(rows)
    return bool(rows)


def reclaim_other_boot(boot_id, now, tx: Tx) -> list[tuple[str, str]]:
    """Never run (capabilities.boot_scoped is False): a store shared by machines
    has no one boot; dead workers are found by their heartbeats."""
    return []
