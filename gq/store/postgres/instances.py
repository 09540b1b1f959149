"""Worker liveness for the PostgreSQL store: heartbeat rows instead of file locks.

Workers on different machines share no file system, so liveness is a row in
`gq_instances` whose `heartbeat_at` a thread of the worker's process renews
(on a session of its own, HeartbeatSession)
every `HEARTBEAT_EVERY` seconds. An instance whose heartbeat is older than
$GQ_POSTGRES_DEAD_AFTER seconds (10; by the database's clock, so machines'
clocks may disagree) is dead, and any live worker reclaims its running jobs,
unless that worker's own heartbeat failed within dead_after: after a server
outage every heartbeat is old, and the first worker back must not find the
others dead (Instances.in_doubt). A thread, not the event
loop, beats: a handler that hogs the loop does not make its worker look dead;
a frozen process (SIGSTOP, a stalled VM) does, after that, and its late
completions are then refused by fencing.

A graceful exit deletes the row, or marks it `clean_exit` when jobs were still
leased (the shutdown timeout cut them off), so they are rescheduled without
counting a crash — as the LMDB store's lock files do.

The same thread does the store's housekeeping: folding count deltas together,
and deleting the rows of instances dead for an hour that hold no job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref

import psycopg

from gq.errors import PersistenceError
from gq.store.locations import shown as redact
from gq.store.postgres import sql

log = logging.getLogger("gq.recovery")

HEARTBEAT_EVERY = 1.0
DEAD_AFTER_ENV = "GQ_POSTGRES_DEAD_AFTER"
DEAD_AFTER_DEFAULT = 10.0
HOUSEKEEPING_EVERY = 10     # heartbeats between two count foldings
CONNECT_TIMEOUT = 5         # seconds the heartbeat waits for a new session


class Instances:
    """The liveness registry of one PostgreSQL store (`PostgresStore.liveness`)."""

    def __init__(self, store):
        self._store = store
        # read when the store opens, not at import: a test or a supervisor may set it
        self.dead_after = float(os.environ.get(DEAD_AFTER_ENV, str(DEAD_AFTER_DEFAULT)))
        self._announced: weakref.WeakSet = weakref.WeakSet()   # this process's heartbeats

    def announce(self, instance_id: str) -> "Announcement":
        announcement = Announcement(self._store, instance_id)
        self._announced.add(announcement)
        return announcement

    def in_doubt(self) -> bool:
        """Whether a heartbeat of this process failed less than dead_after ago.
        The server (or the way to it) was then away for this process, and
        likely for every other: their heartbeats are old for the same reason,
        and the first process back must not find them all dead (their running
        jobs would run twice). Until this process has beaten for dead_after,
        everyone counts as alive."""
        now = time.monotonic()
        return any(a.failed_at and now - a.failed_at < self.dead_after
                   for a in list(self._announced))

    def is_alive(self, instance_id: str) -> bool:
        if self.in_doubt():
            return True
        row = self._store.query_one(
            "SELECT NOT clean_exit AND heartbeat_at > clock_timestamp() - "
            "make_interval(secs => %s) FROM gq_instances WHERE id = %s",
            (self.dead_after, instance_id))
        return bool(row and row[0])

    def exited_cleanly(self, instance_id: str) -> bool:
        row = self._store.query_one("SELECT clean_exit FROM gq_instances WHERE id = %s",
                                     (instance_id,))
        return bool(row and row[0])

    def forget(self, instance_id: str) -> None:
        self._store.execute("DELETE FROM gq_instances WHERE id = %s", (instance_id,))

    def death_watch(self, own_id: str) -> None:
        """None: a death shows only once its heartbeat is dead_after old, which
        the full recovery pass notices; there is nothing cheaper to watch."""
        return None


class HeartbeatSession:
    """The heartbeats' own session, not one of the read pool's: a beat must not
    wait behind busy reads, nor behind the pool's reconnection back-off after
    a server restart (it waits seconds more between attempts each time one
    fails). A lost session is reopened at the next beat."""

    def __init__(self, url: str):
        self.url = url
        self._conn = None

    def execute(self, query, params=None) -> None:
        for attempt in range(2):
            conn = self._conn
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._conn = psycopg.connect(self.url, autocommit=True,
                                                        connect_timeout=CONNECT_TIMEOUT)
                conn.execute(query, params)
                return
            except psycopg.Error as e:
                self.close()
                # a session the server ended while idle fails at once: one more try
                if attempt or not isinstance(e, psycopg.OperationalError):
                    raise PersistenceError(f"PostgreSQL heartbeat failed at "
                                           f"{redact(self.url)}: {str(e).strip()}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Announcement:
    """This process's heartbeat row for `instance_id`, renewed by a thread on a
    session of its own (`session`, a HeartbeatSession by default)."""

    def __init__(self, store, instance_id: str, session=None):
        self._store = store
        self.instance_id = instance_id
        self._session = session if session is not None else HeartbeatSession(store.path)
        self.failed_at = 0.0   # time.monotonic() of the last failed beat (0: none)
        self._beat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"gq-heartbeat:{instance_id}")
        self._thread.start()

    def _beat(self) -> None:
        # An upsert: an instance declared dead while frozen comes back to life
        # (its old jobs were reclaimed; fencing refuses its late completions).
        self._session.execute(
            "INSERT INTO gq_instances (id, host, pid) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp(), "
            "clean_exit = false", (self.instance_id, socket.gethostname(), os.getpid()))

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                self._beat()
                beats += 1
                if beats % HOUSEKEEPING_EVERY == 0:
                    self._store.fold_counts()
                    self._store.execute(   # rows of long-dead instances holding no job
                        "DELETE FROM gq_instances i WHERE heartbeat_at < clock_timestamp() "
                        "- interval '1 hour' AND NOT EXISTS (SELECT 1 FROM gq_jobs j "
                        f"WHERE j.state = {sql.RUNNING} AND j.lease_owner = i.id)")
            except (psycopg.Error, PersistenceError) as e:
                # the server is away (a restart, a network cut): beat again next
                # time; only a silence of dead_after makes this instance dead
                self.failed_at = time.monotonic()
                log.warning("heartbeat of %s failed: %s", self.instance_id, e)
            except Exception as e:   # the store closed under us
                log.debug("heartbeat thread ends: %s", e)
                return

    def release(self, leftover: bool = False) -> None:
        """Exit after a graceful drain (see the module docstring)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            if leftover:
                self._session.execute("UPDATE gq_instances SET clean_exit = true "
                                      "WHERE id = %s", (self.instance_id,))
            else:
                self._session.execute("DELETE FROM gq_instances WHERE id = %s",
                                      (self.instance_id,))
        finally:
            self._session.close()
