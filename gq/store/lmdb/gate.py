"""A gate in front of an LMDB environment, so it can be closed and reopened.

After an I/O error in a commit the environment must be closed and opened again
(LMDB may have marked it unusable, and what it believes is on disk may not be):
closing invalidates every open transaction, so the reopen waits until the read
transactions in flight have ended, and new ones wait for the reopen. Write
transactions need no gate: they run one at a time, and the reopen runs in the
writer that just saw the failure.
"""

from __future__ import annotations

import contextlib
import threading


class EnvGate:
    """Many readers at once, or one reopen."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._reopening = False

    @contextlib.contextmanager
    def reading(self):
        with self._cond:
            while self._reopening:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers and self._reopening:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def reopening(self):
        with self._cond:
            while self._reopening:        # one reopen at a time
                self._cond.wait()
            self._reopening = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._reopening = False
                self._cond.notify_all()
