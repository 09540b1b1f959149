"""Wake-ups across processes without polling: one datagram socket per worker.

Each worker instance binds a Unix datagram socket in `<data dir>/wake/`. A
commit that makes work ready (or cancels a running job) sends one byte to every
socket there; a worker blocked in its event loop wakes at once. A datagram to a
socket nobody holds any more fails with ECONNREFUSED: that file is removed.
A full socket buffer (EAGAIN) means a wake-up is already pending: nothing lost.

Result waiters (`Queue.result`) listen the same way in `<data dir>/wake/ended/`,
rung once a commit that ended a job is durable.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket

WAKE_DIR = "wake"
ENDED_DIR = os.path.join(WAKE_DIR, "ended")   # result waiters


class Doorbell:
    def __init__(self, data_dir: str, subdir: str = WAKE_DIR):
        self.dir = os.path.join(data_dir, subdir)
        os.makedirs(self.dir, exist_ok=True)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._listing_mtime = None
        self._targets: list[str] = []

    def listen(self, name: str) -> socket.socket:
        """Bind this instance's socket; the caller reads it from its event loop."""
        path = os.path.join(self.dir, name + ".sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        if len(path.encode()) >= 108:   # sun_path limit: fall back to a short name
            path = os.path.join(self.dir, f"{os.getpid()}-{secrets.token_hex(3)}.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock.bind(path)
        self._listing_mtime = None
        return sock

    @staticmethod
    def unlisten(sock: socket.socket) -> None:
        path = sock.getsockname()
        sock.close()
        try:
            os.unlink(path)
        except (FileNotFoundError, TypeError):
            pass

    def _current_targets(self) -> list[str]:
        try:
            mtime = os.stat(self.dir).st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime != self._listing_mtime:
            self._listing_mtime = mtime
            self._targets = [e.path for e in os.scandir(self.dir) if e.name.endswith(".sock")]
        return self._targets

    def ring(self) -> None:
        """Wake every listening worker (of any process). Never raises."""
        for path in self._current_targets():
            try:
                self._sender.sendto(b"!", path)
            except BlockingIOError:
                pass                        # its buffer is full: already woken
            except OSError as e:
                if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    try:
                        os.unlink(path)     # nobody holds it: a dead worker's socket
                    except OSError:
                        pass
                    self._listing_mtime = None

    def close(self) -> None:
        self._sender.close()
