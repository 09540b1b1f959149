"""The new jobs of one PostgreSQL transaction, written by ONE statement.

Every job a write batch plans (gq.store.postgres._SubmitOp) goes in with a
single `INSERT ... SELECT FROM unnest(arrays)`, binary parameters (no text
escaping). The same statement draws the jobs' seqs from `gq_seq`, in the order
planned, and answers the ids of the jobs, in that order (given ids as they are,
the others made from the seq), so a batch of plain submits costs one round trip
and no separate seq query. With `channel` it also sends the wake-up (NOTIFY is
delivered at commit): a batch that is nothing but new jobs is then one
statement, run on its own as one implicit transaction (gq.store.postgres._Tx).
"""

from __future__ import annotations

from gq._core import states as S

SEP = chr(31)         # joins dependency ids for unnest (ids never hold control chars)

# A job's id when its submitter named none: the store's tag and its seq in hex,
# at least 12 digits (as f"{tag}-{seq:012x}" would be).
_NEW_ID = ("coalesce(i, %(tag)s || '-' || lpad(to_hex(q), greatest(12, length(to_hex(q))), "
           "'0'))")

_INSERT = (
    # n: the arrays as rows, each with its place `o` and a fresh seq (a CTE with a
    # volatile function is computed once, in the rows' order)
    "WITH n AS (SELECT u.*, nextval('gq_seq') AS q FROM unnest("
    "%(i)b::text[], %(t)b::text[], %(s)b::int2[], %(p)b::int4[], %(m)b::int4[], "
    "%(r)b::bool[], %(c)b::float8[], %(ra)b::float8[], %(tm)b::float8[], %(lt)b::float8[], "
    "%(pl)b::bytea[], %(d)b::text[], %(k)b::text[]) WITH ORDINALITY "
    "AS u(i, t, s, p, m, r, c, ra, tm, lt, pl, d, k, o)), "
    f"u AS (SELECT n.*, {_NEW_ID} AS id FROM n), "
    "ins AS (INSERT INTO gq_jobs (id, type, state, priority, max_attempts, seq, ready_seq, "
    "created_at, updated_at, run_at, timeout, lifetime, payload, depends_on, key) "
    "SELECT id, t, s, p, m, q, CASE WHEN r THEN q END, c, c, ra, tm, lt, pl, "
    "string_to_array(d, chr(31)), NULLIF(k, '') FROM u) "
    "SELECT array_agg(id ORDER BY o){notify} FROM u")
INSERT = _INSERT.format(notify="")
INSERT_AND_NOTIFY = _INSERT.format(notify=", pg_notify(%(channel)s, '')")


def insert_planned(cur, planned, tag: str, channel: str | None = None) -> bool:
    """Write the planned jobs (gq.store.postgres._Planned) with one statement on
    `cur`, set each one's id and its callers' results. With `channel`, the
    statement also notifies it if a job is ready. Returns whether one is."""
    specs = [p.spec for p in planned]
    due = [p.state == S.SCHEDULED and s.run_at <= p.now for p, s in zip(planned, specs)]
    ring = True in due
    params = {
        "i": [p.id for p in planned], "t": [s.type for s in specs],
        "s": [p.state for p in planned], "p": [s.priority for s in specs],
        "m": [s.max_attempts for s in specs], "r": due, "c": [p.now for p in planned],
        "ra": [s.run_at for s in specs], "tm": [s.timeout for s in specs],
        "lt": [s.lifetime for s in specs], "pl": [s.payload for s in specs],
        "d": [SEP.join(s.depends_on) for s in specs], "k": [s.key for s in specs],
        "tag": tag}
    if channel is not None and ring:
        params["channel"] = channel
        query = INSERT_AND_NOTIFY
    else:
        query = INSERT
    ids = cur.execute(query, params).fetchone()[0]
    for p, job_id in zip(planned, ids):
        p.id = job_id
        for results, i in p.slots:
            results[i] = job_id
    return ring
