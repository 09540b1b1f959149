"""Wake-ups for the PostgreSQL store: LISTEN/NOTIFY, bridged to a local socket.

A transaction that makes work ready (or cancels a running job, or pauses a
type) sends `NOTIFY` on the store's channel; PostgreSQL delivers it at commit
to every listening session, on any machine. In each process one thread holds a
session that LISTENs and turns each notification into a datagram on a
socketpair per local worker, so the worker's event loop sees the same kind of
readable socket as with the LMDB doorbell (gq.store.lmdb.doorbell): no polling.

A lost session is reopened (with a wake-up right after, as notifications sent
while it was gone are lost; the worker's slow safety-net poll covers the gap).
"""

from __future__ import annotations

import logging
import socket
import threading

import psycopg
from psycopg import sql

log = logging.getLogger("gq.store")

RECONNECT_DELAY = 1.0
STOP_CHECK_INTERVAL = 0.5   # how long one wait for notifications lasts


class ListenDoorbell:
    """The `doorbell` of a PostgreSQL store (listen / unlisten / ring / close)."""

    def __init__(self, conninfo: str, channel: str):
        self._conninfo = conninfo
        self.channel = channel
        self._lock = threading.Lock()
        self._targets: dict[int, socket.socket] = {}   # fileno of read end -> write end
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()

    def listen(self, name: str) -> socket.socket:
        """A socket that becomes readable at each notification (one per worker)."""
        reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        reader.setblocking(False)
        writer.setblocking(False)
        with self._lock:
            self._targets[reader.fileno()] = writer
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"gq-listen:{self.channel}")
                self._thread.start()
        self._listening.wait(10.0)   # so work committed after listen() wakes it
        return reader

    def unlisten(self, sock: socket.socket) -> None:
        with self._lock:
            writer = self._targets.pop(sock.fileno(), None)
        sock.close()
        if writer is not None:
            writer.close()

    def ring(self) -> None:
        """Wake this process's listeners (other processes learn by NOTIFY)."""
        with self._lock:
            writers = list(self._targets.values())
        for writer in writers:
            try:
                writer.send(b"!")
            except (BlockingIOError, OSError):
                pass   # full: a wake-up is already pending; closed: it left

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._thread = None
        with self._lock:
            for writer in self._targets.values():
                writer.close()
            self._targets.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._listening.set()
                    self.ring()   # anything committed while nobody listened
                    while not self._stop.is_set():
                        # ring as each notification arrives: the generator only
                        # ends when its timeout does, up to half a second later
                        for _ in conn.notifies(timeout=STOP_CHECK_INTERVAL):
                            self.ring()
            except psycopg.Error as e:
                if self._stop.is_set():
                    return
                log.warning("PostgreSQL notification session lost (%s); reconnecting", e)
                self._listening.set()   # don't hold listen() up while the server is away
                self._stop.wait(RECONNECT_DELAY)
