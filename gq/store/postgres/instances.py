"""Worker liveness for the PostgreSQL store: heartbeat rows instead of file locks.

Workers on different machines share no file system, so liveness is a row in
`gq_instances` whose `heartbeat_at` a thread of the worker's process renews
every `HEARTBEAT_EVERY` seconds. An instance whose heartbeat is older than
$GQ_POSTGRES_DEAD_AFTER seconds (10; by the database's clock, so machines'
clocks may disagree) is dead, and any live worker reclaims its running jobs. A thread, not the event
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

import psycopg

from gq.errors import PersistenceError
from gq.store.postgres import sql

log = logging.getLogger("gq.recovery")

HEARTBEAT_EVERY = 1.0
DEAD_AFTER_ENV = "GQ_POSTGRES_DEAD_AFTER"
DEAD_AFTER_DEFAULT = 10.0
HOUSEKEEPING_EVERY = 10     # heartbeats between two count foldings


class Instances:
    """The liveness registry of one PostgreSQL store (`PostgresStore.liveness`)."""

    def __init__(self, store):
        self._store = store
        # read when the store opens, not at import: a test or a supervisor may set it
        self.dead_after = float(os.environ.get(DEAD_AFTER_ENV, str(DEAD_AFTER_DEFAULT)))

    def announce(self, instance_id: str) -> "Announcement":
        return Announcement(self._store, instance_id)

    def is_alive(self, instance_id: str) -> bool:
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


class Announcement:
    """This process's heartbeat row for `instance_id`, renewed by a thread."""

    def __init__(self, store, instance_id: str):
        self._store = store
        self.instance_id = instance_id
        self._beat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"gq-heartbeat:{instance_id}")
        self._thread.start()

    def _beat(self) -> None:
        # An upsert: an instance declared dead while frozen comes back to life
        # (its old jobs were reclaimed; fencing refuses its late completions).
        self._store.execute(
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
        if leftover:
            self._store.execute("UPDATE gq_instances SET clean_exit = true WHERE id = %s",
                                 (self.instance_id,))
        else:
            self._store.execute("DELETE FROM gq_instances WHERE id = %s", (self.instance_id,))
