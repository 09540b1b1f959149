"""The Store contract: everything the queue and its workers need from storage.

This is the design document of the storage layer. Two backends implement it:
LMDB (gq.store.lmdb, the embedded default) and PostgreSQL (gq.store.postgres),
and both pass the one contract suite (tests/store/contract/). Their writes are
written once, in gq.store.service, over each backend's op module; the
decisions those ops apply are gq.store.rules'; only the reads and the way an
op is applied (Batch.move on LMDB, set-based SQL on PostgreSQL) are the
backend's. Every method that changes state is atomic and durable when it
returns: its transaction is committed with sync on. Every state change is
checked against the compiled state table (gq._core.states): on LMDB by
`JobRecord.move_to`, on PostgreSQL by `check_transition` before the write and
by the allowed-source sets (gq.store.postgres.sql) in the UPDATE's WHERE.

Blocking: every method may block (a disk read, a network round trip, the
writer's commit and fsync). Coroutines call the `a`-prefixed twin of a write,
or a read through `asyncio.to_thread`; a store's reads never block on its own
writer. The one read a worker makes on its event loop is `push_ready_after`,
on a store with `capabilities.ready_feed` (a memory-mapped LMDB read that
waits on no lock), on the hot path of start latency.

Records are `gq._core.codec.JobRecord`; states are the integer codes of
`gq._core.states`. Times are wall-clock epoch seconds (only `run_at` and the
timestamps shown to people use them; durations live in memory on the monotonic
clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, ContextManager, Iterable, NamedTuple, Protocol, Sequence, Union

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
    local_reads: bool
    """Reads are of memory-mapped local pages (LMDB: lock-free readers) and never
    wait on the network, a writer or an fsync, so the worker makes the ones on its
    hot path (`next_due`, `paused_types`) on its event loop instead of paying a
    thread hop per dispatch; otherwise they go to a thread."""


class ClaimQuota:
    """A claim request for a store that `claims_by_quota` (the database picks,
    `FOR UPDATE SKIP LOCKED`, best priority first): up to `n` ready jobs, only
    of the types in `caps`; `caps[type]` is the most of that type to take
    (None: no per-type limit)."""

    __slots__ = ("n", "caps")

    def __init__(self, n: int, caps: dict[str, int | None]):
        self.n = n
        self.caps = caps

    def __len__(self) -> int:
        return self.n if self.caps else 0

    def __repr__(self) -> str:
        return f"ClaimQuota(n={self.n}, caps={self.caps!r})"


class Candidate(NamedTuple):
    """A ready job as a dispatcher saw it, named to `claim`: claimed only if it
    is still ready under this `ready_seq` (not claimed elsewhere, cancelled, or
    re-queued since)."""

    id: str
    ready_seq: int


ClaimRequest = Union[Sequence[Candidate], ClaimQuota]
"""What `claim` takes: named candidates (any store), or a ClaimQuota (a store
that `claims_by_quota`)."""


class Finish(NamedTuple):
    """One outcome for `afinish_many_and_claim` (the fields of `finish`)."""

    id: str
    attempt: int
    state: int
    result: bytes
    error: bytes
    run_at: float
    max_attempts: int = 0    # > 0: the job's new max_attempts (a snooze); 0: unchanged


class Lease(NamedTuple):
    """A held lease, for `extend`: the job and the attempt it was claimed at."""

    id: str
    attempt: int


class RunningLease(NamedTuple):
    """A running job as recovery sees it (`running_leases`): its lease owner and
    deadline on this process's monotonic clock (0: none)."""

    id: str
    owner: str
    deadline: float


class DeathWatch(Protocol):
    def noticed(self) -> bool:
        """True if some instance died since the last look (cheap: no store read)."""


class Announcement(Protocol):
    def release(self, leftover: bool = False) -> None:
        """The instance exits after a graceful drain; with `leftover` jobs still
        leased, marked so recovery does not count them as crashes."""


class Liveness(Protocol):
    """Where worker instances announce they are alive (`Store.liveness`): lock
    files on LMDB (gq.store.lmdb.liveness), heartbeat rows on PostgreSQL."""

    def announce(self, instance_id: str) -> Announcement: ...
    def is_alive(self, instance_id: str) -> bool: ...
    def exited_cleanly(self, instance_id: str) -> bool: ...
    def forget(self, instance_id: str) -> None: ...
    def death_watch(self, own_id: str) -> DeathWatch | None:
        """A cheap per-heartbeat check for deaths, or None where only the full
        recovery pass can tell (PostgreSQL: a heartbeat must first grow old)."""


class Doorbell(Protocol):
    """Cross-process wake-ups (`Store.doorbell`): a commit that made work ready
    (or cancelled a running job) rings; workers listen."""

    def listen(self, instance_id: str): ...
    def unlisten(self, sock) -> None: ...
    def ring(self) -> None: ...
    def close(self) -> None: ...


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
    capabilities: Capabilities
    liveness: Liveness
    doorbell: Doorbell
    ended_bell: Doorbell
    """Rung once a commit that ended a job (completed, failed, dead_letter,
    cancelled) is durable; result waiters listen (`watch_ends`)."""

    # -- reads ------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        """The stored record, checksum verified (`RecordCorrupted` if damaged)."""

    def list(self, *, state: int | None = None, type: str | None = None,
             limit: int = 100) -> list[JobRecord]:
        """Records filtered by state and/or type, oldest submission first within
        a (type, state) group."""

    def counts(self) -> dict[tuple[int, str], int]:
        """Number of jobs per (state, type), without scanning the jobs."""

    def paused_types(self) -> frozenset[str]:
        """The job types currently paused."""

    def watch_ends(self, job_id: str) -> ContextManager:
        """A context manager giving a non-blocking socket that becomes readable
        after a commit that ended `job_id` (possibly after others too: the
        waiter re-reads its job). Entered before the waiter's first read, so no
        ending between that read and the wait is missed. May block (PostgreSQL:
        a LISTEN session and a waiter row)."""

    def states_of(self, job_ids: Iterable[str]) -> dict[str, tuple[int, int, str]]:
        """(state, attempts, lease owner) of each job that exists."""

    def running_leases(self) -> list[tuple[str, str, float]]:
        """(id, owner, lease deadline on this process's monotonic clock) of every
        running job (a RunningLease each)."""

    def next_due(self) -> float | None:
        """run_at of the earliest delayed job, or None."""

    def next_expiry(self) -> float | None:
        """The earliest lifetime deadline in the store, or None."""

    def blocked_count(self) -> int:
        """Pending jobs blocked by a dependency that ended failed, dead_letter or
        cancelled."""

    def waiting_on(self, job_id: str) -> tuple[list[tuple[str, str]], list[list[str]]]:
        """A job's dependencies not completed yet, (id, state name), and its
        blocking chains (root first); `JobNotFound`."""

    def ready_after(self, seq: int, limit: int) -> list[tuple[int, int, str, str]]:
        """Ready jobs by ready seq after `seq`: (ready_seq, priority, type, id). A
        gap-free change feed only where `capabilities.ready_feed`."""

    def push_ready_after(self, heap, seq: int, limit: int, handled) -> tuple[int, int]:
        """`ready_after` straight into a ReadyHeap (types in `handled` only);
        (rows read, last seq read). Only where `capabilities.ready_feed`."""

    def health(self) -> tuple[bool, str]:
        """(ready, reason): False while the circuit breaker (gq.store.breaker) is
        open; runs its probe once the cool-down is over."""

    def reader_check(self) -> int:
        """Free what dead processes left behind in the store (LMDB reader slots);
        how many. 0 where the engine does it itself."""

    def check(self) -> CheckReport:
        """`gq check`: every record and index verified, read-only, one snapshot."""

    # -- writes: one op each, atomic and durable; a coroutine twin `a<name>` where a
    # worker calls it from its event loop ------------------------------------------------
    def submit(self, specs: Sequence[JobSpec], *, max_depth: int | None = None,
               now: float, key_window: float = 0.0) -> list[str]:
        """Persist a batch of jobs atomically: all of them or none.

        Returns one id per spec, in order. A spec whose idempotency key belongs to
        a stored unfinished job, to one completed less than `key_window` seconds
        ago, or to an earlier spec of the batch, is not stored again; its slot
        holds the existing job's id. Raises, persisting nothing:
        `DuplicateJobId` (caller-chosen id taken), `UnknownDependency`,
        `QueueFull` (pending + scheduled, not counting jobs waiting to run again,
        would pass `max_depth`), `StorageFull`, `StoreUnavailable` (circuit open).
        A job whose dependencies are not all `completed` starts `pending` (and
        blocked, if one of them can no longer complete); one with `run_at` in the
        future starts `scheduled` but not yet ready."""

    def asubmit(self, specs: Sequence[JobSpec], *, max_depth: int | None = None,
                now: float, key_window: float = 0.0) -> Awaitable[list[str]]:
        """`submit` for coroutines (the commit's future itself on the hot path);
        concurrent callers share one commit."""

    def submit_occurrence(self, name: str, occurrence: float, specs: Sequence[JobSpec], *,
                          max_depth: int | None = None, now: float,
                          key_window: float = 0.0) -> str | None:
        """Submit one job as occurrence `occurrence` of periodic schedule `name`,
        atomically with moving the schedule's cursor: None if that occurrence
        (or a later one) was already submitted, by any process. The first call
        for a schedule only records its start."""

    def insert_records(self, records: Iterable[JobRecord], *, now: float) -> None:
        """`gq import`: records stored as they are, fresh seqs; all or none."""

    def cancel(self, job_id: str, *, now: float) -> JobRecord:
        """pending / scheduled / running -> cancelled. A running job's handler is
        stopped by its worker, whose completion is then refused.
        `JobNotFound`, `InvalidTransition` (already finished, saying how)."""

    def retry(self, job_id: str, *, now: float) -> JobRecord:
        """dead_letter -> scheduled with attempts reset; `NotRetriable` for a
        `failed` job, `InvalidTransition` for any other state (saying why)."""

    def set_paused(self, job_type: str, paused: bool) -> None:
        """Persistently stop (or restart) dispatching one job type."""

    def claim(self, candidates: ClaimRequest, *, owner: str, lease_deadline: float,
              now: float) -> list[JobRecord]:
        """scheduled -> running (attempts + 1, leased to `owner` until the
        monotonic `lease_deadline`); stale candidates and paused types are
        skipped. `aclaim` is its twin."""

    def finish(self, job_id: str, *, attempt: int, owner: str, state: int, now: float,
               result: bytes = b"", error: bytes = b"", run_at: float = 0.0,
               max_attempts: int = 0) -> JobRecord:
        """running -> completed | scheduled (retry or snooze at `run_at`) | failed |
        dead_letter, fenced: `LeaseLost` unless still running under `owner` at
        `attempt`. Completing releases dependents. `max_attempts` > 0 becomes the
        job's own (a snooze allows one more). `afinish` is its twin."""

    def afinish_many_and_claim(self, finishes: Sequence[Finish], *, owner: str, now: float,
                               candidates: ClaimRequest = (), lease_deadline: float = 0.0
                               ) -> Awaitable[tuple[dict, list[JobRecord]]]:
        """Several finishes and a claim in one commit; refused finishes
        ({id: LeaseLost | JobNotFound}) stop neither the others nor the claim."""

    def extend(self, leases: Iterable[Lease], *, owner: str,
               lease_deadline: float) -> list[str]:
        """Push the lease of each held job; returns the ids whose lease is gone.
        `aextend` is its twin."""

    def hand_back(self, jobs: Iterable[Lease], *, owner: str, now: float) -> list[str]:
        """Undo claims that will not run (answered after their worker began to
        stop): each still running under `owner` at that attempt -> scheduled,
        ready at once, attempts back by one. `ahand_back` is its twin."""

    def promote_due(self, *, now: float, limit: int = 1000) -> int:
        """Delayed jobs whose run_at came -> ready, in due order; how many.
        `apromote_due` is its twin."""

    def expire_lifetimes(self, *, now: float, limit: int = 1000) -> list[tuple[str, str, int]]:
        """Jobs still pending / scheduled / running past their lifetime ->
        dead_letter (category timeout). Returns (id, type, previous state).
        `aexpire_lifetimes` is its twin."""

    def reclaim_owner(self, owner: str, *, now: float, crashed: bool = True,
                      quarantine_after: int = ...) -> list[str]:
        """The running jobs of a dead `owner` -> scheduled (or dead_letter once
        its worker died under a job `quarantine_after` times:
        gq.store.rules.crash_verdict). `areclaim_owner` is its twin."""

    def reclaim_expired(self, job_id: str, *, owner: str, now: float,
                        now_mono: float) -> bool:
        """One running job whose lease passed `now_mono` -> scheduled."""

    def reclaim_other_boot(self, boot_id: str, *, now: float) -> list[tuple[str, str]]:
        """Where `capabilities.boot_scoped`: record the machine's boot id; if it
        replaced another, every running job -> scheduled. (id, old owner)."""

    def purge(self, *, older_than: float, now: float, limit: int = 10_000) -> int:
        """Delete finished jobs (completed, failed, cancelled; never dead_letter)
        older than `older_than` seconds; how many. `apurge` is its twin."""

    def close(self) -> None:
        """Finish pending writes and release the store. Idempotent."""
