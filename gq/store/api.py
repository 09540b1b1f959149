"""The Store protocol: everything the queue needs from durable storage.

This is the design document of the storage layer. LMDB (`gq.store.lmdb.store`) is the
embedded default; a PostgreSQL store will implement the same methods and pass
the same contract tests (tests/store/). Every method that changes state is
atomic and durable when it returns: its transaction is committed with sync on.
Every state change goes through the compiled gate (`JobRecord.move_to`).

Records are `gq._core.codec.JobRecord`; states are the integer codes of
`gq._core.states`. Times are wall-clock epoch seconds (only `run_at` and the
timestamps shown to people use them; durations live in memory on the monotonic
clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Iterable, Protocol, Sequence

from gq._core.codec import JobRecord
from gq.submission import JobSpec


@dataclass(frozen=True)
class Capabilities:
    """What a backend does differently, declared instead of probed for."""

    claims_by_quota: bool
    """Workers ask for a number of jobs and the store picks them (PostgreSQL:
    `FOR UPDATE SKIP LOCKED`), instead of naming candidates read from a feed."""
    ready_feed: bool
    """`ready_after` is a gap-free change feed, and `push_ready_after` fills a
    worker's ReadyHeap from it (LMDB: one writer, so seqs commit in order)."""
    boot_scoped: bool
    """The store lives on one machine: `reclaim_other_boot` applies."""


@dataclass
class CheckReport:
    """What `gq check` found (Store.check)."""

    records: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)      # (job id, reason)
    index_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.index_problems


class Store(Protocol):
    path: str
    tag: str
    """Short random identity of this store; generated ids start with it."""

    def submit(self, specs: Sequence[JobSpec], *, max_depth: int | None,
               now: float, key_window: float = 0.0) -> list[str]:
        """Persist a batch of jobs atomically: all of them or none.

        Returns one id per spec, in order. A spec whose idempotency key belongs to
        a stored unfinished job, to one completed less than `key_window` seconds
        ago, or to an earlier spec of the batch, is not stored again; its slot
        holds the existing job's id. Raises, persisting nothing:
        `DuplicateJobId` (caller-chosen id taken), `UnknownDependency`,
        `QueueFull` (pending + scheduled, not counting jobs waiting to run again,
        would pass `max_depth`), `StorageFull`.
        A job whose dependencies are not all `completed` starts `pending` (and
        blocked, if one of them can no longer complete); one with `run_at` in the
        future starts `scheduled` but not yet ready. A spec with a lifetime gets
        its expiry entry.
        """

    def asubmit(self, specs: Sequence[JobSpec], *, max_depth: int | None,
                now: float, key_window: float = 0.0) -> Awaitable[list[str]]:
        """`submit` for coroutines (an awaitable: a coroutine, or the commit's
        future itself); concurrent callers share one commit."""

    def submit_occurrence(self, name: str, occurrence: float, specs: Sequence[JobSpec], *,
                          max_depth: int | None, now: float,
                          key_window: float = 0.0) -> str | None:
        """Submit one job as occurrence `occurrence` of periodic schedule `name`,
        atomically with moving the schedule's cursor: None if that occurrence
        (or a later one) was already submitted, by any process. The first call
        for a schedule only records its start."""

    def expire_lifetimes(self, *, now: float, limit: int = 1000) -> list[tuple[str, str, int]]:
        """Jobs still pending / scheduled / running past their lifetime ->
        dead_letter (category timeout). Returns (id, type, previous state)."""

    def next_expiry(self) -> float | None:
        """The earliest lifetime deadline in the store, or None."""

    def blocked_count(self) -> int:
        """Pending jobs blocked by a dependency that ended failed, dead_letter or
        cancelled (see gq.store.lmdb.blocking)."""

    def waiting_on(self, job_id: str) -> tuple[list[tuple[str, str]], list[list[str]]]:
        """A job's dependencies not completed yet, (id, state name), and its
        blocking chains (root first); `JobNotFound`."""

    def get(self, job_id: str) -> JobRecord | None:
        """The stored record, checksum verified (`RecordCorrupted` if damaged)."""

    def list(self, *, state: int | None = None, type: str | None = None,
             limit: int = 100) -> list[JobRecord]:
        """Records filtered by state and/or type, oldest submission first within
        a (type, state) group."""

    def counts(self) -> dict[tuple[int, str], int]:
        """Number of jobs per (state, type), without scanning the jobs."""

    def cancel(self, job_id: str, *, now: float) -> JobRecord:
        """pending / scheduled / running -> cancelled. A running job's handler is
        stopped by its worker, whose completion is then refused.
        `JobNotFound`, `InvalidTransition` (already finished)."""

    def retry(self, job_id: str, *, now: float) -> JobRecord:
        """dead_letter -> scheduled with attempts reset; `NotRetriable` for a
        `failed` job, `InvalidTransition` for any other state."""

    def set_paused(self, job_type: str, paused: bool) -> None:
        """Persistently stop (or restart) dispatching one job type."""

    def paused_types(self) -> frozenset[str]:
        """The job types currently paused."""

    def ready_after(self, seq: int, limit: int) -> list[tuple[int, int, str, str]]:
        """Ready jobs that became ready after `seq`, in that order:
        (ready_seq, priority, type, id). A dispatcher that keeps the highest seq
        it has seen learns about new work from any process with one range read."""

    # Optional fast path, used by the worker when present:
    # push_ready_after(heap, seq, limit, handled) -> (rows read, last seq read)
    # does ready_after() and pushes the rows of handled types into a ReadyHeap.

    # Optional, used by Queue.readiness() when present (else a counts() read):
    # health() -> (ready, reason): False while the store's circuit breaker
    # (gq.store.breaker) is open; runs the breaker's probe
    # transaction once its cool-down is over. A store that has it also refuses
    # submissions with StoreUnavailable while the circuit is open.
    #
    # Optional, used at a worker's start when present (a store on one machine):
    # reclaim_other_boot(boot_id, now) -> [(job id, old owner)]: record the
    # machine's boot id; if it replaces another, reclaim every running job.

    def hand_back(self, jobs: Iterable[tuple[str, int]], *, owner: str,
                  now: float) -> list[str]:
        """Undo claims that will not run (answered after their worker began to
        stop): each (id, attempt) still running under `owner` at that attempt ->
        scheduled, ready at once, attempts back to attempt - 1. Jobs moved
        meanwhile are left alone. Returns the ids handed back. `ahand_back` is
        its coroutine twin."""

    def close(self) -> None:
        """Finish pending writes and release the store. Idempotent."""


def spec_ids(specs: Iterable[JobSpec]) -> set[str]:
    """The caller-chosen ids of a batch."""
    return {spec.id for spec in specs if spec.id is not None}
