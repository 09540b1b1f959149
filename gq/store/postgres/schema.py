"""The PostgreSQL store's schema, versioned: created or migrated when a store opens.

Everything lives in the connection's current schema (the first entry of its
search_path), so one database can hold several independent queues, one per
schema. `MIGRATIONS[n]` takes a store from version n to n + 1; the version
reached is kept in `gq_meta`. Opening takes an advisory lock first, so several
processes opening a fresh database at once migrate it exactly once.

Tables:
  gq_jobs        one row per job; the record's fields are columns
  gq_counts      (state, type, delta) rows written by statement triggers on
                 gq_jobs (and by gq.store.postgres.insert's lone batch INSERT itself,
                 which the insert trigger then skips: v3); counts() sums them,
                 housekeeping folds them together. Delta rows instead of one
                 counter row per (state, type): a counter row would be a lock
                 every claim and completion of every worker queues on.
  gq_dependents  (dependency, dependent): who waits on an unfinished job
  gq_paused      paused job types
  gq_instances   worker heartbeats: liveness across machines (no file locks)
  gq_meta        schema_version, tag
  gq_periodic    periodic schedule -> last occurrence submitted (v2)
  gq_waiters     jobs a `Queue.result` call waits on (v4): a statement trigger on
                 gq_jobs NOTIFYs "gq:<schema>:ended" when an UPDATE ends one of
                 them, so an ending nobody waits on costs one empty-table probe

Indexes serve exactly the queries of gq.store.postgres.store: the claim (type,
priority DESC, ready_seq) over ready rows only, delayed jobs by run_at,
listings by (type, state, seq), running jobs by owner, purge by finished_at,
and live idempotency keys (unique: two unfinished jobs can never share a key,
whoever submits them). Every index is one more entry to write for each new job
and each state change, so v3 dropped two that only served rare reads: a
listing of one state over all types walks the types through (type, state, seq)
(PostgresStore.list), and ready_after (no change feed on this store, which
claims by quota; gq.testing's only caller reads every ready job) reads the
claim index's ready rows. Their seqs stay unique: every one comes from gq_seq.
"""

from __future__ import annotations

from gq.store.postgres.scheduling import MIGRATION_V2

SCHEMA_VERSION = 4

# State codes (gq._core.states): 0 pending, 1 scheduled, 2 running, 3 completed,
# 4 failed, 5 dead_letter, 6 cancelled.
_V1 = r"""
CREATE TABLE gq_meta (key text PRIMARY KEY, value text NOT NULL);

CREATE SEQUENCE gq_seq AS bigint;

CREATE TABLE gq_jobs (
    id             text PRIMARY KEY,
    type           text NOT NULL,
    state          smallint NOT NULL CHECK (state BETWEEN 0 AND 6),
    priority       integer NOT NULL DEFAULT 0,
    attempts       integer NOT NULL DEFAULT 0,
    max_attempts   integer NOT NULL DEFAULT 0,
    crashes        integer NOT NULL DEFAULT 0,
    seq            bigint NOT NULL,
    ready_seq      bigint,          -- set exactly while scheduled and due
    created_at     float8 NOT NULL,
    updated_at     float8 NOT NULL,
    run_at         float8 NOT NULL DEFAULT 0,
    started_at     float8 NOT NULL DEFAULT 0,
    finished_at    float8 NOT NULL DEFAULT 0,
    timeout        float8 NOT NULL DEFAULT -1,
    lifetime       float8 NOT NULL DEFAULT -1,
    lease_deadline float8 NOT NULL DEFAULT 0,   -- database clock, epoch seconds
    lease_owner    text NOT NULL DEFAULT '',
    payload        bytea NOT NULL,
    result         bytea NOT NULL DEFAULT '',
    error          bytea NOT NULL DEFAULT '',
    extra          bytea NOT NULL DEFAULT '',
    depends_on     text[] NOT NULL DEFAULT '{}',
    key            text,
    CHECK ((ready_seq IS NULL) OR state = 1)
);
CREATE INDEX gq_jobs_claim ON gq_jobs (type, priority DESC, ready_seq)
    WHERE ready_seq IS NOT NULL;
CREATE UNIQUE INDEX gq_jobs_ready_feed ON gq_jobs (ready_seq) WHERE ready_seq IS NOT NULL;
CREATE INDEX gq_jobs_delayed ON gq_jobs (run_at, seq) WHERE state = 1 AND ready_seq IS NULL;
CREATE INDEX gq_jobs_by_type ON gq_jobs (type, state, seq);
CREATE INDEX gq_jobs_by_state ON gq_jobs (state, seq);
CREATE INDEX gq_jobs_running ON gq_jobs (lease_owner) WHERE state = 2;
CREATE INDEX gq_jobs_finished ON gq_jobs (finished_at) WHERE state IN (3, 4, 6);
CREATE UNIQUE INDEX gq_jobs_live_key ON gq_jobs (key)
    WHERE key IS NOT NULL AND state IN (0, 1, 2);

CREATE TABLE gq_dependents (
    dependency text NOT NULL,
    dependent  text NOT NULL,
    PRIMARY KEY (dependency, dependent)
);
CREATE INDEX gq_dependents_by_dependent ON gq_dependents (dependent);

CREATE TABLE gq_paused (type text PRIMARY KEY);

CREATE TABLE gq_instances (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    clean_exit   boolean NOT NULL DEFAULT false
);

CREATE TABLE gq_counts (state smallint NOT NULL, type text NOT NULL, n bigint NOT NULL);
CREATE INDEX gq_counts_key ON gq_counts (state, type);

CREATE FUNCTION gq_count_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO gq_counts SELECT state, type, count(*) FROM new_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE FUNCTION gq_count_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO gq_counts
    SELECT state, type, sum(n) FROM (
        SELECT state, type, 1 AS n FROM new_rows
        UNION ALL SELECT state, type, -1 FROM old_rows) moved
    GROUP BY 1, 2 HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION gq_count_deleted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO gq_counts SELECT state, type, -count(*) FROM old_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE TRIGGER gq_jobs_count_insert AFTER INSERT ON gq_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gq_count_inserted();
CREATE TRIGGER gq_jobs_count_update AFTER UPDATE ON gq_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gq_count_updated();
CREATE TRIGGER gq_jobs_count_delete AFTER DELETE ON gq_jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION gq_count_deleted();
"""

# v3: cheaper new jobs (see the docstring and gq.store.postgres.insert).
_V3 = r"""
DROP TRIGGER gq_jobs_count_insert ON gq_jobs;
CREATE TRIGGER gq_jobs_count_insert AFTER INSERT ON gq_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (current_setting('gq.counted', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gq_count_inserted();
DROP INDEX gq_jobs_by_state;
DROP INDEX gq_jobs_ready_feed;
"""

# v4: result waiters. NOTIFY only when someone waits: a notifying commit takes
# PostgreSQL's global notify lock, which would line every worker's finish up.
_V4 = r"""
CREATE TABLE gq_waiters (
    id     bigserial PRIMARY KEY,
    job_id text NOT NULL,
    since  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX gq_waiters_job ON gq_waiters (job_id);

CREATE FUNCTION gq_notify_ended() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gq_waiters) AND EXISTS (
            SELECT 1 FROM new_rows n JOIN gq_waiters w ON w.job_id = n.id
            WHERE n.state IN (3, 4, 5, 6)) THEN
        PERFORM pg_notify(left('gq:' || current_schema() || ':ended', 63), '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER gq_jobs_notify_ended AFTER UPDATE ON gq_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gq_notify_ended();
"""

MIGRATIONS: list[str] = [_V1, MIGRATION_V2, _V3, _V4]
assert len(MIGRATIONS) == SCHEMA_VERSION
