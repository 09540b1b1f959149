"""The PostgreSQL store's writer lanes: one writer thread and one session each,
and how a failure of the server (or of the way to it) is told from a refusal
or a conflict with another session."""

from __future__ import annotations

import os
import select
import threading

import psycopg
from psycopg import errors as pg_errors

from gq.store.postgres import insert as pg_insert
from gq.store.writer import GroupCommitWriter

WRITER_LANES_ENV = "GQ_POSTGRES_WRITERS"
WRITER_LANES_DEFAULT = 2


def writer_lanes() -> int:
    """How many lanes a store opens: $GQ_POSTGRES_WRITERS, read when it opens."""
    return int(os.environ.get(WRITER_LANES_ENV, str(WRITER_LANES_DEFAULT)))


class Lane:
    """One writer thread and its session. A store has writer_lanes() of them, so
    an op that comes while one lane's transaction waits for its WAL flush can
    start another on a free lane (PostgresStore._pick_writer), and the server's own
    group commit merges their flushes."""

    def __init__(self, url: str, conn=None):
        self.url = url
        self.lock = threading.Lock()
        self.writing = False   # a batch is being written on this lane
        self.writer: GroupCommitWriter | None = None
        self._conn = conn      # opened by connect(), or on the first batch

    def connection(self):
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken) and has_input(conn):
            # An idle session the server said something to has been ended by it
            # (a restart, pg_terminate_backend, idle_session_timeout: a FATAL
            # message, then EOF). Found out here, before the batch is sent: a
            # batch of new jobs is one statement, and a statement that fails
            # in flight may or may not have committed, so it cannot be retried.
            conn.close()
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            conn = self._conn = self.connect(self.url)
        return conn

    @staticmethod
    def connect(url: str):
        """A writer session: autocommit (see Tx), UTF-8 (gq.store.postgres.insert sends
        its text arrays encoded so), the packed arrays' dumpers registered."""
        conn = psycopg.connect(url, autocommit=True, client_encoding="UTF8")
        pg_insert.register(conn)
        return conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()


def has_input(conn) -> bool:
    """Whether the server sent something to a session that asked nothing
    (poll, not select: a process may hold file descriptors past 1024)."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


class SessionGone(Exception):
    """The writer's session failed before anything of its batch was sent."""


def is_engine_failure(e: Exception) -> bool:
    """The server or the connection failed (not a refusal, not a conflict)."""
    return isinstance(e, psycopg.OperationalError) and not retriable(e) or \
        isinstance(e, (pg_errors.SystemError, SessionGone))


def retriable(e: Exception) -> bool:
    """Aborted by a conflict with another session: running it again may pass."""
    return isinstance(e, (pg_errors.UniqueViolation, pg_errors.DeadlockDetected,
                          pg_errors.SerializationFailure))
