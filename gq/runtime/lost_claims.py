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
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from gq._core import states as S
from gq.errors import GQError

log = logging.getLogger("gq.worker")


class LostClaims:
    """The audit of one worker. `running`: the jobs it holds (by id);
    `generation()`: a number that changes whenever a claim begins, or None
    while a claim is in flight."""

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
