"""The chores a worker does on its heartbeat, each a small unit:

- `Sweeps`: lifetimes, blocked and depth gauges (gq.runtime.sweeps);
- `RetentionPurge`: finished jobs past the queue's retention;
- `RecoveryPass`: jobs of dead or frozen workers (gq.runtime.recovery), a full
  pass every `recovery_interval`, and at once when the store's DeathWatch
  notices a death;
- `StateCheck`: stops handlers of jobs no longer ours (cancelled, recovered);
- `LeaseExtension`: extends the leases of the running jobs;
- `LostClaims`: hands back jobs claimed by a commit whose answer was lost.

Every store call that can wait on a lock, the network or an fsync runs off the
event loop: an `a`-prefixed coroutine twin where the store has one (apurge,
aextend), else `asyncio.to_thread` (recover, states_of).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from gq._core import states as S
from gq.errors import GQError
from gq.runtime.recovery import recover
from gq.runtime.sweeps import sweep

log = logging.getLogger("gq.worker")

Stop = Callable[[str, str], None]     # stop(job_id, reason)


class RetentionPurge:
    def __init__(self, queue, interval: float):
        self.queue = queue
        self.interval = interval
        self._last = time.monotonic()

    async def tick(self) -> None:
        if time.monotonic() - self._last < self.interval:
            return
        self._last = time.monotonic()
        retention = self.queue.config.retention
        try:
            n = await self.queue.store.apurge(older_than=retention, now=time.time())
            if n:
                log.info("retention: purged %d finished jobs older than %gs", n, retention)
        except GQError as e:
            log.error("retention purge failed: %s", e)


class RecoveryPass:
    """`wake()` is called when a pass reclaimed jobs (there is work to claim)."""

    def __init__(self, queue, deaths, interval: float, wake: Callable[[], None]):
        self.queue = queue
        self.deaths = deaths       # DeathWatch, or None
        self.interval = interval
        self.wake = wake
        self._last = time.monotonic()

    def done(self) -> None:
        """A pass just ran (the worker's start-up recovery)."""
        self._last = time.monotonic()

    async def tick(self) -> None:
        if time.monotonic() - self._last < self.interval and \
                not (self.deaths is not None and self.deaths.noticed()):
            return
        self._last = time.monotonic()
        try:
            if await asyncio.to_thread(recover, self.queue.store):
                self.wake()
        except GQError as e:
            log.error("recovery pass failed: %s", e)


class StateCheck:
    """Reads the states of the running jobs; stops those no longer ours."""

    def __init__(self, queue, owner: str, running: dict, stop: Stop, min_gap: float):
        self.queue = queue
        self.owner = owner
        self.running = running
        self.stop = stop
        self.min_gap = min_gap
        self.last = 0.0

    def due(self) -> bool:
        """For the doorbell-driven checks: at most one per `min_gap`."""
        return bool(self.running) and time.monotonic() - self.last > self.min_gap

    async def check(self) -> None:
        self.last = time.monotonic()
        held = {job_id: r.record.attempts for job_id, r in self.running.items()}
        if not held:
            return
        try:
            states = await asyncio.to_thread(self.queue.store.states_of, list(held))
        except GQError as e:   # the store failed: the next check asks again
            log.error("state check failed: %s", e)
            return
        for job_id, attempts in held.items():
            running = self.running.get(job_id)
            if running is None or running.record.attempts != attempts:
                continue        # ended while the states were read
            state, attempts, owner = states.get(job_id, (None, None, None))
            if state == S.RUNNING and attempts == running.record.attempts \
                    and owner == self.owner:
                continue
            self.stop(job_id, "cancelled" if state == S.CANCELLED else
                      "lifetime ended" if state == S.DEAD_LETTER else "lease lost")


class LeaseExtension:
    def __init__(self, queue, owner: str, running: dict, stop: Stop):
        self.queue = queue
        self.owner = owner
        self.running = running
        self.stop = stop
        self._last = 0.0

    async def tick(self) -> None:
        visibility = self.queue.config.visibility_timeout
        if time.monotonic() - self._last < visibility / 3:
            return
        self._last = time.monotonic()
        leases = [(job_id, r.record.attempts) for job_id, r in self.running.items()]
        try:
            lost = await self.queue.store.aextend(
                leases, owner=self.owner, lease_deadline=time.monotonic() + visibility)
        except GQError as e:
            log.error("lease extension failed: %s", e)
            return
        for job_id in lost:
            self.stop(job_id, "lease lost")


class LostClaims:
    """Claims whose answer was lost: found and handed back.

    A claim is a write like any other: when the store fails while it commits (the
    PostgreSQL server killed, the connection cut at COMMIT), the worker gets a
    PersistenceError, yet the transaction may have committed. Its jobs are then
    `running` under this worker, which does not know it holds them: they would
    wait for their lease to run out (the visibility timeout, minutes) with
    nothing running them, and this worker's lease extensions (of the jobs it
    knows) would not touch them.

    So after a claim raised a PersistenceError, the next heartbeats look for jobs
    running under this worker's id that it does not hold, and hand them back
    (`ahand_back`: scheduled again, ready at once, the attempt they never used
    given back). A claim in flight would look the same: the audit only runs when
    none is, and drops its answer if one began meanwhile (claims run on the
    event loop, so `generation()` tells). Jobs running under this worker cannot
    be claimed by anyone, so nothing the hand-back touches can be a job a later
    claim returned.

    `running`: the jobs the worker holds (by id); `generation()`: a number
    that changes whenever a claim begins, or None while a claim is in flight."""

    def __init__(self, queue, owner: str, running: dict,
                 generation: Callable[[], int | None]):
        self.queue = queue
        self.owner = owner
        self.running = running
        self.generation = generation
        self.due = False
        self.handed_back = 0

    def suspect(self) -> None:
        """A claim raised a PersistenceError: it may have committed."""
        self.due = True

    async def tick(self) -> None:
        if not self.due:
            return
        generation = self.generation()
        if generation is None:
            return                      # a claim is in flight: next heartbeat
        self.due = False                # (a claim failing meanwhile sets it again)
        store = self.queue.store
        try:
            leases = await asyncio.to_thread(store.running_leases)
            unknown = [job_id for job_id, owner, _ in leases
                       if owner == self.owner and job_id not in self.running]
            states = await asyncio.to_thread(store.states_of, unknown) if unknown else {}
        except GQError as e:
            log.error("looking for claims whose answer was lost failed: %s", e)
            self.due = True
            return
        if self.generation() != generation:
            self.due = True             # a claim began meanwhile: look again
            return
        lost = [(job_id, attempts) for job_id, (state, attempts, owner) in states.items()
                if state == S.RUNNING and owner == self.owner
                and job_id not in self.running]
        if lost:
            try:
                handed = await store.ahand_back(lost, owner=self.owner, now=time.time())
            except GQError as e:
                log.error("could not hand back %d jobs whose claim's answer was lost: %s",
                          len(lost), e)
                self.due = True
                return
            self.handed_back += len(handed)
            log.warning("handed back %d jobs claimed by a commit whose answer was lost "
                        "(the store failed as it committed); they run again at once",
                        len(handed))


class Maintenance:
    """Runs the chores every `interval` seconds (the heartbeat)."""

    def __init__(self, queue, *, interval: float, purge: RetentionPurge,
                 recovery: RecoveryPass, states: StateCheck, leases: LeaseExtension,
                 lost_claims=None):
        self.queue = queue
        self.interval = interval
        self.purge = purge
        self.recovery = recovery
        self.states = states
        self.leases = leases
        self.lost_claims = lost_claims   # LostClaims, or None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await sweep(self.queue)    # lifetimes, blocked and depth gauges
            await self.purge.tick()
            await self.recovery.tick()
            if self.lost_claims is not None:
                await self.lost_claims.tick()
            if not self.states.running:
                continue
            await self.states.check()
            await self.leases.tick()
