"""`gq check` on a PostgreSQL store.

PostgreSQL guards its own pages (page checksums when the cluster has them, WAL),
and the schema's constraints keep ready_seq, states and live idempotency keys
consistent, so there is no record checksum to verify here. What can still
disagree is checked: every row must make a valid JobRecord, the count deltas
must sum to the real counts, and no pending job may wait on dependencies that
are all completed (it would never be released).
"""

from __future__ import annotations

from gq.errors import GQError
from gq.store.postgres import sql
from gq.store.postgres.tx import COLUMNS, to_record


def check_postgres(conn, report):
    """Every check, in one read-only snapshot on the pooled session `conn`."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with conn.cursor(name="gq_check") as cur:
            cur.execute(f"SELECT {COLUMNS} FROM gq_jobs")
            for row in cur:
                report.records += 1
                try:
                    to_record(row)
                except (GQError, ValueError, TypeError, KeyError) as e:
                    report.damaged.append((row[0], f"{type(e).__name__}: {e}"))
        real = dict(((s, t), n) for s, t, n in conn.execute(
            "SELECT state, type, count(*) FROM gq_jobs GROUP BY 1, 2"))
        kept = dict(((s, t), n) for s, t, n in conn.execute(
            "SELECT state, type, sum(n)::int8 FROM gq_counts GROUP BY 1, 2 "
            "HAVING sum(n) <> 0"))
        if real != kept:
            report.index_problems.append(f"counts: stored {kept} but the jobs are {real}")
        for (job_id,) in conn.execute(
                f"SELECT id FROM gq_jobs j WHERE state = {sql.PENDING} "
                "AND cardinality(depends_on) > 0 "
                "AND (SELECT count(*) FROM gq_jobs p WHERE p.id = ANY(j.depends_on) "
                f"AND p.state = {sql.COMPLETED}) = cardinality(j.depends_on)"):
            report.index_problems.append(f"job {job_id} is pending though every "
                                         "dependency completed")
    return report
