"""Group commit: one writer thread turns many callers' writes into few fsyncs.

Callers (threads or coroutines) hand the writer a *write op*: a function of a
`Batch` (an open write transaction plus per-transaction state). The writer takes
every op that is waiting, runs them in ONE write transaction, commits with sync
on, and only then wakes each caller with its own result or error. While one
commit's fsync runs, the next batch piles up, so throughput grows with the
number of concurrent callers while each caller still waits for exactly one fsync.

An op must do all of its checks before its first write, raising a GQError if the
job is refused: a refused op then leaves nothing behind, and the other ops of the
batch still commit. An op that fails any other way (a bug, an LMDB error) aborts
the whole transaction; the writer then re-runs the batch's ops one per
transaction, so one broken op cannot take its neighbours' writes with it.

Who runs a batch: a synchronous caller that finds no batch in progress leads one
itself, in its own thread (no hand-off to wake, which matters when each commit
is a single job); everything else — coroutines' ops, ops that arrive while a
batch is being written — is led by the writer thread. Writes never run on an
event loop: `begin(write=True)` blocks while another process holds LMDB's
writer lock.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

from gq.errors import GQError

MAX_OPS_PER_BATCH = 4096


class PartialWrite(Exception):
    """An op raised a GQError after it had written: its batch must be aborted
    (the GQError is the cause)."""


def apply_ops(batch, ops) -> None:
    """Run each op on the batch (any store's transaction object with a `wrote`
    flag), setting op.result or op.error. A GQError raised before the op wrote
    refuses that op alone; after it wrote, PartialWrite aborts the batch."""
    for op in ops:
        batch.wrote = False
        try:
            op.result, op.error = op.fn(batch), None
        except GQError as e:
            if batch.wrote:
                raise PartialWrite() from e
            op.result, op.error = None, e


class _Op:
    __slots__ = ("fn", "result", "error", "done", "loop", "future")

    def __init__(self, fn, loop=None, future=None):
        self.fn = fn
        self.result = None
        self.error = None
        self.loop = loop
        self.future = future
        self.done = None
        if loop is None:
            self.done = threading.Lock()
            self.done.acquire()


def _resolve_futures(ops) -> None:
    for op in ops:
        if op.future.cancelled():
            continue   # the caller went away; the write itself is committed
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


class GroupCommitWriter:
    """The single writer thread of one open store."""

    def __init__(self, run_batch: Callable[[list], None], name: str):
        # run_batch(ops) applies each op (setting op.result or op.error) and
        # commits; it raises only if nothing of the batch was committed.
        self._run_batch = run_batch
        self._pending: collections.deque[_Op] = collections.deque()
        # `with self._lock` (a C-level context manager) rather than `with self._cond`:
        # the same lock, at a fraction of the cost on the per-op path.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closing = False
        self._leading = False    # a batch is being written (by a caller or the thread)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call(self, fn):
        """Run `fn(batch)` in the next group commit; return its result once durable."""
        op = _Op(fn)
        if self._enqueue(op, may_lead=True):
            self._lead()
        op.done.acquire()
        if op.error is not None:
            raise op.error
        return op.result

    async def acall(self, fn, loop):
        """`call` for coroutines: the event loop keeps running while the commit happens."""
        return await self.future(fn, loop)

    def future(self, fn, loop):
        """`acall` without its coroutine: a future of `loop` that the commit holding
        `fn`'s write resolves (a submit path awaits it directly: one frame less
        to create and resume per caller)."""
        op = _Op(fn, loop, loop.create_future())
        self._enqueue(op, may_lead=False)
        return op.future

    def _enqueue(self, op: _Op, may_lead: bool) -> bool:
        """Queue `op`; True if the caller must now lead a batch itself."""
        with self._lock:
            if self._closing:
                raise GQError("the queue is closed")
            pending = self._pending
            pending.append(op)
            if self._leading:
                return False
            if may_lead:
                self._leading = True
                return True
            if len(pending) == 1:   # ops already waiting: the writer was woken for them
                self._cond.notify()
            return False

    @property
    def waiting(self) -> bool:
        """Whether ops wait for the next batch (read without the lock: a hint)."""
        return bool(self._pending)

    def _take(self) -> list:
        pending = self._pending
        n = min(len(pending), MAX_OPS_PER_BATCH)
        return [pending.popleft() for _ in range(n)]

    def _lead(self) -> None:
        """Write one batch in the calling thread, then hand leadership back."""
        with self._lock:
            ops = self._take()
        self._write(ops)
        with self._lock:
            self._leading = False
            if self._pending or self._closing:
                self._cond.notify()

    def close(self) -> None:
        """Finish every op already handed in, then stop the thread."""
        with self._lock:
            self._closing = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._leading or not (self._pending or self._closing):
                    self._cond.wait()
                if not self._pending:
                    return   # closing, and nothing left to write
                self._leading = True
                ops = self._take()
            self._write(ops)
            with self._lock:
                self._leading = False

    def _write(self, ops) -> None:
        try:
            self._run_batch(ops)
        except BaseException as e:  # nothing committed; never leave a caller waiting
            error = e if isinstance(e, Exception) else GQError(f"writer stopped: {e!r}")
            for op in ops:
                op.result, op.error = None, error
        self._wake(ops)

    @staticmethod
    def _wake(ops) -> None:
        by_loop: dict = {}
        for op in ops:
            if op.loop is None:
                op.done.release()
            else:
                by_loop.setdefault(op.loop, []).append(op)
        for loop, loop_ops in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_futures, loop_ops)
            except RuntimeError:
                pass  # that loop is closed; nobody is waiting any more
