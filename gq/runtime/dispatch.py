"""Dispatchers: how a worker chooses what to claim for its free slots.

A worker uses one, chosen at start from `store.capabilities`:

- `HeapDispatcher` (`ready_feed`, LMDB): a compiled `ReadyHeap` mirrors the
  store's ready index; the worker pops the best entries and claims them by
  (id, ready_seq), the claim refusing any that went stale.
- `QuotaDispatcher` (`claims_by_quota`, PostgreSQL): the database picks the
  jobs itself; the worker only says how many it can take and of which types,
  a `ClaimQuota` cut by gq.runtime.claims.QuotaBook.

Store calls that can wait on a lock or the network run off the event loop
(gq.store.loop.store_read); see HeapDispatcher.refresh for the reads that
do not.
"""

from __future__ import annotations

from typing import Protocol

from gq._core.heap import ReadyHeap
from gq.runtime.claims import QuotaBook
from gq.store.loop import store_read


class Dispatcher(Protocol):
    """What the worker asks of a dispatcher. `candidates` is whatever `pick`
    returned: heap entries, or a ClaimQuota."""

    lingers: bool    # an outcome may wait briefly for a claim to carry it

    async def refresh(self) -> None:
        """Learn the work that became ready (the doorbell rang, or a poll)."""

    def pick(self, free: int, running_by_type: dict[str, int]):
        """Up to `free` jobs' worth of candidates, honouring per-type limits."""

    def claim_args(self, candidates):
        """`candidates` as the store's claim takes them."""

    def unpick(self, candidates) -> None:
        """A claim of `candidates` failed: give them back."""

    async def settle(self, candidates, claimed) -> bool:
        """A claim of `candidates` returned `claimed`; True if some were stale."""

    def released(self, job_type: str, running: int) -> None:
        """A job of `job_type` let go of its slot; `running` of that type remain."""

    def has_waiting(self) -> bool:
        """Whether work is known to be ready (an outcome should not linger)."""


class HeapDispatcher:
    """A worker-side heap fed from a ready-feed store's index (LMDB)."""

    lingers = True

    def __init__(self, queue, handlers: dict, *, scan_limit: int):
        self.queue = queue
        self.handlers = handlers      # the types this worker serves
        self.heap = ReadyHeap()
        self.scan_limit = scan_limit
        self._last_seen = 0
        self._paused_by_operator: frozenset[str] = frozenset()
        self._paused_by_limit: set[str] = set()

    async def refresh(self) -> None:
        """Read the ready index after the last seq seen into the heap, then sync
        the operator's pauses.

        `push_ready_after` runs on the event loop, the one store call that does:
        on a ready-feed store it is a read of the memory-mapped LMDB index that
        never waits on a lock, the network or an fsync, and it lies on the hot
        path of submit-to-start latency. `paused_types` is read in place too
        where the store's reads are local (store_read)."""
        while True:
            # a ready-feed store parses its rows in the core
            n, last = self.queue.store.push_ready_after(self.heap, self._last_seen,
                                                  self.scan_limit, self.handlers)
            if n:
                self._last_seen = last
            if n < self.scan_limit:
                break
        store = self.queue.store
        self._paused(await store_read(store, store.paused_types))

    def _paused(self, paused) -> None:
        if paused != self._paused_by_operator:
            self._paused_by_operator = paused
            self._sync_pauses()

    def _sync_pauses(self) -> None:
        wanted = set(self._paused_by_operator) | self._paused_by_limit
        for job_type in self.heap.paused_types() - wanted:
            self.heap.resume(job_type)
        for job_type in wanted:
            self.heap.pause(job_type)

    def pick(self, free: int, running_by_type: dict[str, int]) -> list:
        """Pop up to `free` runnable entries (a type at its limit is paused in
        the heap, so it costs nothing to skip)."""
        picked = []
        counts = dict(running_by_type)
        while len(picked) < free:
            entry = self.heap.pop()
            if entry is None:
                break
            job_type = entry[1]
            picked.append(entry)
            counts[job_type] = counts.get(job_type, 0) + 1
            limit = self.handlers[job_type].concurrency
            if limit is not None and counts[job_type] >= limit:
                self._paused_by_limit.add(job_type)
                self.heap.pause(job_type)
        return picked

    def claim_args(self, candidates) -> list:
        """Heap entries as the (id, ready_seq) pairs a claim takes."""
        return [(c[0], c[3]) for c in candidates]

    def unpick(self, candidates) -> None:
        for entry in candidates:
            self.heap.push(*entry)

    async def settle(self, candidates, claimed) -> bool:
        """Candidates a claim skipped because their type was paused in the
        meantime (the claim checks inside its transaction) go back to the heap,
        to run once the type is resumed; the stale ones are dropped."""
        if len(claimed) >= len(candidates):
            return False
        got = {record.id for record in claimed}
        store = self.queue.store
        paused = await store_read(store, store.paused_types)
        for entry in candidates:
            if entry[0] not in got and entry[1] in paused:
                self.heap.push(*entry)
        self._paused(paused)
        return True

    def released(self, job_type: str, running: int) -> None:
        if job_type in self._paused_by_limit:
            limit = self.handlers[job_type].concurrency
            if limit is None or running < limit:
                self._paused_by_limit.discard(job_type)
                self._sync_pauses()

    def has_waiting(self) -> bool:
        return bool(self.heap.peek())


class QuotaDispatcher:
    """A store that picks the jobs itself (PostgreSQL): claims carry a quota."""

    lingers = False

    def __init__(self, queue, handlers: dict):
        self.queue = queue
        self.handlers = handlers      # the types this worker serves
        self.quotas = QuotaBook()     # what claims in flight were promised

    async def refresh(self) -> None:
        """Nothing to learn ahead: the store picks (and skips paused types) itself."""

    def pick(self, free: int, running_by_type: dict[str, int]):
        return self.quotas.take(self.handlers, running_by_type, free)

    def claim_args(self, candidates):
        return candidates

    def unpick(self, candidates) -> None:
        self.quotas.settle(candidates)

    async def settle(self, candidates, claimed) -> bool:
        self.quotas.settle(candidates)
        return False

    def released(self, job_type: str, running: int) -> None:
        pass

    def has_waiting(self) -> bool:
        return False


def dispatcher_for(queue, handlers: dict, *, scan_limit: int) -> Dispatcher:
    """The dispatcher the capabilities of `queue`'s store call for, claiming the
    types of `handlers` (the worker's selection of the queue's handlers)."""
    capabilities = queue.store.capabilities
    if capabilities.claims_by_quota:
        return QuotaDispatcher(queue, handlers)
    if capabilities.ready_feed:
        return HeapDispatcher(queue, handlers, scan_limit=scan_limit)
    raise TypeError(f"{type(queue.store).__name__} offers neither a ready feed nor claims "
                    "by quota: no dispatcher can claim from it")
