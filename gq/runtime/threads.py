"""A pool of daemon threads for synchronous handlers.

Not concurrent.futures.ThreadPoolExecutor: its threads are joined at
interpreter exit, so one handler stuck in `time.sleep(10**6)` would keep a
worker from ever exiting after its shutdown timeout. A timed-out sync handler's
thread cannot be killed; it is abandoned (the pool grows a new thread for the
next job) and dies with the process.
"""

from __future__ import annotations

import asyncio
import collections
import threading


class DaemonThreadPool:
    def __init__(self, name: str = "gq-pool"):
        self._name = name
        self._lock = threading.Lock()
        self._idle = 0
        self._work: collections.deque = collections.deque()
        self._available = threading.Semaphore(0)
        self._threads = 0
        self._closed = False

    def submit(self, loop: asyncio.AbstractEventLoop, fn, *args) -> asyncio.Future:
        """Run fn(*args) on a pool thread; the returned future resolves on `loop`."""
        future = loop.create_future()
        with self._lock:
            self._work.append((loop, future, fn, args))
            if self._idle == 0:
                self._threads += 1
                threading.Thread(target=self._serve, name=f"{self._name}-{self._threads}",
                                 daemon=True).start()
            else:
                self._idle -= 1
        self._available.release()
        return future

    def _serve(self) -> None:
        while True:
            self._available.acquire()
            with self._lock:
                if self._closed and not self._work:
                    return
                loop, future, fn, args = self._work.popleft()
            if not future.cancelled():
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - handed to the job's future
                    _resolve(loop, future, None, e)
                else:
                    _resolve(loop, future, result, None)
            with self._lock:
                if self._closed:
                    return
                self._idle += 1

    def shutdown(self) -> None:
        """Let idle threads exit; busy (or stuck) ones finish or die with the process."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._available.release()


def _resolve(loop, future, result, error) -> None:
    def set_outcome():
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    try:
        loop.call_soon_threadsafe(set_outcome)
    except RuntimeError:
        pass   # the loop is closed: nobody waits for this result any more

