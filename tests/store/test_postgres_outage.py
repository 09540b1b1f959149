"""What a PostgreSQL store does when the server ends its sessions (a restart, a
crash, an administrator's pg_terminate_backend): the pool replaces every dead
session it holds instead of failing a read on each in turn, and a worker's
heartbeat thread beats on through a failure, on a session of its own that it
reopens at once; a worker back from an outage does not find the others dead.
(The whole story, with the postmaster SIGKILLed under load:
tests/crash/test_postgres_kill.py.)
"""

from __future__ import annotations

import threading
import time

import psycopg

from gq.errors import PersistenceError
from gq.store.postgres import instances
from gq.store.postgres.store import PostgresStore


def test_reads_go_on_after_every_pooled_session_was_ended(postgres_url):
    store = PostgresStore(postgres_url)
    try:
        held = [store._pool.getconn() for _ in range(4)]   # the pool now keeps 4
        pids = [conn.info.backend_pid for conn in held]
        for conn in held:
            store._pool.putconn(conn)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid",
                          (pids,))
        time.sleep(0.2)   # their FATAL messages arrive
        assert store.query("SELECT 1") == [(1,)]
        assert store.get("no-such-job") is None
        assert store.check().ok
    finally:
        store.close()


class AwayStore:
    """A store (and heartbeat session) whose statements fail while `away` is set."""

    def __init__(self):
        self.away = threading.Event()
        self.beats = 0

    def execute(self, query, params=None):
        if self.away.is_set():
            raise PersistenceError("PostgreSQL write failed: the server is away")
        self.beats += 1

    def fold_counts(self):
        pass

    def close(self):
        pass


def test_a_heartbeat_beats_on_after_the_store_failed(monkeypatch):
    monkeypatch.setattr(instances, "HEARTBEAT_EVERY", 0.01)
    store = AwayStore()
    announcement = instances.Announcement(store, "w1", session=store)
    try:
        store.away.set()
        time.sleep(0.1)        # several beats fail
        store.away.clear()
        before = store.beats
        deadline = time.monotonic() + 5
        while store.beats < before + 3:
            assert time.monotonic() < deadline, "the heartbeat thread stopped beating"
            time.sleep(0.01)
    finally:
        announcement.release()


def test_a_heartbeat_reopens_its_own_session_at_once(postgres_url):
    store = PostgresStore(postgres_url)
    try:
        session = instances.HeartbeatSession(postgres_url)
        announcement = instances.Announcement(store, "w2", session=session)
        try:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)",
                              (session._conn.info.backend_pid,))
                time.sleep(0.1)
                session.execute("SELECT 1")     # a new session, on the first try
                age = admin.execute("SELECT extract(epoch FROM clock_timestamp() - "
                                    "heartbeat_at) FROM gq_instances WHERE id = 'w2'"
                                    ).fetchone()[0]
            assert age < 2 * instances.HEARTBEAT_EVERY + 1
        finally:
            announcement.release()
        assert session._conn is None
    finally:
        store.close()


def test_a_worker_back_from_an_outage_finds_nobody_dead_yet(postgres_url, monkeypatch):
    """After an outage every heartbeat is old: a worker whose own heartbeat
    failed less than dead_after ago counts the others alive (else the first one
    back would reclaim every other worker's running jobs, to run them twice)."""
    monkeypatch.setenv(instances.DEAD_AFTER_ENV, "2")
    store = PostgresStore(postgres_url)
    try:
        store.execute("INSERT INTO gq_instances (id, host, pid, heartbeat_at) VALUES "
                      "('other', 'h', 1, clock_timestamp() - interval '5 seconds')")
        me = store.liveness.announce("me")
        try:
            assert not store.liveness.is_alive("other")
            me.failed_at = time.monotonic()          # a beat of ours just failed
            assert store.liveness.is_alive("other")
            me.failed_at = time.monotonic() - 2.5    # and we beat for dead_after since
            assert not store.liveness.is_alive("other")
        finally:
            me.release()
    finally:
        store.close()
